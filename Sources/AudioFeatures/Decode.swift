import CSndfile
import CSoxr

#if canImport(Glibc)
  import Glibc
#endif

/// A file that cannot be used, with why.
public struct AudioError: Error, CustomStringConvertible, Sendable {
  public var path: String
  public var message: String
  public init(_ path: String, _ message: String) {
    self.path = path
    self.message = message
  }
  public var description: String { "\(path): \(message)" }
}

/// An open libsndfile handle (any format libsndfile reads, whatever the file's extension says).
final class SoundFile {
  let handle: OpaquePointer
  let info: SF_INFO
  let path: String

  init(path: String) throws {
    self.path = path
    var info = SF_INFO()
    guard let h = sf_open(path, Int32(SFM_READ), &info) else {
      var why = String(cString: sf_strerror(nil))
      var st = stat()
      if stat(path, &st) != 0 {
        why = String(cString: strerror(errno))
      } else if (st.st_mode & S_IFMT) != S_IFREG {
        why = "not a regular file"
      } else if why.hasPrefix("File does not exist") {
        // What libsndfile says when its MPEG decoder gives up on a file that is there.
        why = "corrupt, truncated, or not audio that libsndfile reads"
      }
      throw AudioError(path, "cannot decode: \(why)")
    }
    handle = h
    self.info = info
    guard info.samplerate > 0, info.channels > 0 else { throw AudioError(path, "no sample rate or channels") }
  }

  deinit { sf_close(handle) }

  var sampleRate: Int { Int(info.samplerate) }
  var channels: Int { Int(info.channels) }
  var frames: Int { Int(info.frames) }
}

/// What `loadClip` read.
public struct Clip: Sendable {
  /// Mono samples at the target rate.
  public var samples: [Float]
  public var nativeRate: Int
  public var channels: Int
  /// Frames the file has, at its own rate.
  public var nativeFrames: Int

  /// Why its rows say little, if they do: the file ends before the offset (rows of zeros), or the window is silent.
  /// `extract` flags such files and `predict` says so beside its answer.
  public func flag(offset: Double) -> String? {
    if samples.isEmpty {
      return "shorter than the \(offset) s offset (\(nativeFrames) frames at \(nativeRate) Hz): its rows are zeros"
    }
    return samples.allSatisfy({ $0 == 0 }) ? "silent: every sample of the window is zero" : nil
  }
}

/// librosa's `load(path, sr=recipe.sampleRate, mono=True, offset=recipe.offset, duration=recipe.duration)` with the
/// soundfile backend and `res_type="soxr_hq"`: seek `int(offset*sr)` frames, read up to `int(duration*sr)`, average
/// the channels in float32, resample with libsoxr's HQ recipe.
public func loadClip(_ path: String, recipe: FeatureRecipe = FeatureRecipe()) throws -> Clip {
  let f = try SoundFile(path: path)
  let sr = f.sampleRate
  let start = Int(recipe.offset * Double(sr))
  let wanted = Int(recipe.duration * Double(sr))
  var mono: [Float] = []
  if start < f.frames {
    guard sf_seek(f.handle, sf_count_t(start), SEEK_SET) >= 0 else {
      throw AudioError(path, "cannot seek to frame \(start): \(String(cString: sf_strerror(f.handle)))")
    }
    let n = min(wanted, f.frames - start)
    var interleaved = [Float](repeating: 0, count: n * f.channels)
    let got = Int(
      interleaved.withUnsafeMutableBufferPointer { sf_readf_float(f.handle, $0.baseAddress, sf_count_t(n)) })
    if got < n && sf_error(f.handle) != 0 {
      throw AudioError(path, "read failed after \(got) of \(n) frames: \(String(cString: sf_strerror(f.handle)))")
    }
    let c = f.channels
    if c == 1 {
      mono = Array(interleaved[0..<got])
    } else {
      mono = [Float](repeating: 0, count: got)
      for i in 0..<got {
        // numpy's mean over the channel axis: a float32 sum in channel order, then one division.
        var s: Float = 0
        for k in 0..<c { s += interleaved[i * c + k] }
        mono[i] = s / Float(c)
      }
    }
    // Beyond 1e6 (120 dB over full scale) a float file holds garbage, and power spectra would overflow float32.
    if let bad = mono.firstIndex(where: { !(abs($0) <= 1e6) }) {
      let what =
        mono[bad].isFinite ? "beyond ±1e6 (float audio's full scale is ±1)" : "a float file holding NaN or infinity"
      throw AudioError(path, "sample \(start + bad) is \(mono[bad]): \(what)")
    }
  }
  let target = recipe.sampleRate
  let y = sr == target ? mono : try resample(mono, from: Double(sr), to: Double(target), path: path)
  return Clip(samples: y, nativeRate: sr, channels: f.channels, nativeFrames: f.frames)
}

/// libsoxr's HQ recipe (linear phase), float32 in and out, as librosa's `soxr_hq` calls it; the output is fixed to
/// `ceil(n * to / from)` samples (zero-padded at the end), as `librosa.resample` fixes it.
public func resample(_ x: [Float], from: Double, to: Double, path: String = "") throws -> [Float] {
  let target = Int((Double(x.count) * to / from).rounded(.up))
  if x.isEmpty { return [Float](repeating: 0, count: target) }
  var out = [Float](repeating: 0, count: target + 64)
  var io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I)
  var q = soxr_quality_spec(UInt(SOXR_HQ), 0)
  var done = 0
  let err = x.withUnsafeBufferPointer { input in
    out.withUnsafeMutableBufferPointer { output in
      soxr_oneshot(from, to, 1, input.baseAddress, x.count, nil, output.baseAddress, output.count, &done, &io, &q, nil)
    }
  }
  if let err { throw AudioError(path, "resampling \(from) Hz to \(to) Hz failed: \(String(cString: err))") }
  if done < target { for i in done..<target { out[i] = 0 } }
  return Array(out[0..<target])
}
