import CFFTW
import COpenBLAS

#if canImport(Glibc)
  import Glibc
#endif

/// The seed's feature recipe at 22,050 Hz: ZCR and RMS over frames of 2048 with hop 512, and 20 MFCCs of a
/// 128-band Slaney mel spectrogram in dB; a row is `zcr, rms, mfcc` frame-major, zero-padded to 2376.
public struct FeatureSettings: Sendable {
  public var sampleRate = 22050
  public var frameLength = 2048
  public var hopLength = 512
  public var nMels = 128
  public var nMFCC = 20
  public var width = 2376
  public var topDB: Float = 80
  public init() {}
}

/// Everything one clip's features are made of (for tests and inspection), float32 unless noted.
public struct FeatureParts {
  public var zcr: [Double]
  public var rms: [Float]
  /// `[nMels][frames]`, dB.
  public var logMel: [Float]
  /// `[nMFCC][frames]`.
  public var mfcc: [Float]
  public var frames: Int
  public var row: [Float]
}

/// Computes feature rows; owns FFTW plans and scratch, so use one per thread.
public final class FeatureExtractor {
  public let settings: FeatureSettings
  let nFFT: Int
  let bins: Int
  /// The periodic Hann window in double, as librosa multiplies the float32 frames by it.
  let window: [Double]
  /// `[nMels][bins]`, float32 as librosa builds it (in double, then cast).
  let melBasis: [Float]
  /// `[nMFCC][nMels]`, orthonormal DCT-II.
  let dct: [Float]
  /// The mel basis's nonzero runs: per band its first bin, its length and where its weights start in
  /// `melWeights`.
  let melBands: [(first: Int, count: Int, offset: Int)]
  let melWeights: [Float]
  let fftIn: UnsafeMutablePointer<Double>
  let fftOut: UnsafeMutablePointer<fftw_complex>
  let plan: fftw_plan

  public init(settings: FeatureSettings = FeatureSettings()) {
    self.settings = settings
    nFFT = settings.frameLength
    bins = nFFT / 2 + 1
    window = (0..<nFFT).map { 0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(settings.frameLength)) }
    melBasis = slaneyMelFilterbank(sampleRate: Double(settings.sampleRate), nFFT: nFFT, nMels: settings.nMels)
    var bands: [(first: Int, count: Int, offset: Int)] = []
    var weights: [Float] = []
    for band in 0..<settings.nMels {
      let row = melBasis[(band * bins)..<((band + 1) * bins)]
      let first = row.firstIndex { $0 != 0 } ?? row.startIndex
      let last = row.lastIndex { $0 != 0 } ?? (first - 1)
      bands.append((first - row.startIndex, last - first + 1, weights.count))
      weights += row[first...max(first, last)].prefix(last - first + 1)
    }
    melBands = bands
    melWeights = weights
    var d = [Float](repeating: 0, count: settings.nMFCC * settings.nMels)
    let n = Double(settings.nMels)
    for k in 0..<settings.nMFCC {
      let scale = k == 0 ? (1 / n).squareRoot() : (2 / n).squareRoot()
      for i in 0..<settings.nMels {
        d[k * settings.nMels + i] = Float(scale * cos(Double.pi * Double(k) * (2 * Double(i) + 1) / (2 * n)))
      }
    }
    dct = d
    let (input, output, size) = (
      fftw_alloc_real(settings.frameLength)!, fftw_alloc_complex(bins)!, settings.frameLength
    )
    fftIn = input
    fftOut = output
    plan = fftFactory.lock { fftw_plan_dft_r2c_1d(Int32(size), input, output, UInt32(FFTW_ESTIMATE))! }
  }

  deinit {
    fftFactory.lock { fftw_destroy_plan(plan) }
    fftw_free(fftIn)
    fftw_free(fftOut)
  }

  /// Frames of a centred analysis: `1 + n / hop`.
  public func frameCount(_ n: Int) -> Int { 1 + n / settings.hopLength }

  /// The seed's row for a clip at `sampleRate`: 2376 floats.
  public func row(_ y: [Float]) -> [Float] { parts(y).row }

  public func parts(_ y: [Float]) -> FeatureParts {
    let n = y.count
    if n == 0 {
      // An empty read (a clip shorter than the offset): a row of zeros, which the extractor flags.
      return FeatureParts(
        zcr: [], rms: [], logMel: [], mfcc: [], frames: 0, row: [Float](repeating: 0, count: settings.width))
    }
    let frames = frameCount(n)
    let half = nFFT / 2
    let hop = settings.hopLength
    let padded = n + 2 * half
    var zcr = [Double](repeating: 0, count: frames)
    var rms = [Float](repeating: 0, count: frames)
    var power = [Float](repeating: 0, count: bins * frames)  // [bins][frames]
    y.withUnsafeBufferPointer { yb in
      let y = yb.baseAddress!
      // ZCR: edge padding, |x| <= 1e-10 counts as +0, sign changes within the frame / frame length. changes[i]
      // counts the changes among the first i+1 padded samples, so a frame's count is a difference.
      let changes = UnsafeMutablePointer<Int32>.allocate(capacity: padded)
      defer { changes.deallocate() }
      @inline(__always) func negative(_ v: Float) -> Int32 {
        abs(v) <= 1e-10 ? 0 : Int32(truncatingIfNeeded: v.bitPattern >> 31)
      }
      var count: Int32 = 0
      var previous = negative(y[0])
      for i in 0..<half { changes[i] = 0 }  // the left edge repeats y[0]
      for i in 0..<n {
        let flag = negative(y[i])
        count &+= flag ^ previous
        previous = flag
        changes[half + i] = count
      }
      for i in (half + n)..<padded { changes[i] = count }  // the right edge repeats y[n-1]: no change
      let window = self.window
      window.withUnsafeBufferPointer { wb in
        let w = wb.baseAddress!
        power.withUnsafeMutableBufferPointer { pb in
          for t in 0..<frames {
            zcr[t] = Double(changes[t * hop + nFFT - 1] - changes[t * hop]) / Double(nFFT)
            // RMS (squares summed in double) and the windowed STFT frame, zero-padded at the edges. As librosa
            // computes it: the double window times the float32 frame, a double FFT, rounded to complex64, and
            // the power of that in float32.
            let start = t * hop - half
            var sum = 0.0
            if start >= 0 && start + nFFT <= n {
              var acc = D4()
              var i = 0
              while i < nFFT {
                let d = widen(loadF4(y + start + i))
                acc += d * d
                UnsafeMutableRawPointer(fftIn + i).storeBytes(
                  of: d * UnsafeRawPointer(w + i).loadUnaligned(as: D4.self), as: D4.self)
                i += 4
              }
              sum = (acc[0] + acc[1]) + (acc[2] + acc[3])
            } else {
              for i in 0..<nFFT {
                let j = start + i
                let v = j >= 0 && j < n ? Double(y[j]) : 0
                sum += v * v
                fftIn[i] = v * w[i]
              }
            }
            rms[t] = Float((sum / Double(nFFT)).squareRoot())
            fftw_execute(plan)
            let p = pb.baseAddress! + t
            for k in 0..<bins {
              let (re, im) = (Float(fftOut[k].0), Float(fftOut[k].1))
              p[k * frames] = re * re + im * im
            }
          }
        }
      }
    }
    // Mel [nMels][frames] = basis [nMels][bins] · power, over each filter's nonzero bins only (a triangle spans a
    // few bins: 2 k products per frame instead of 131 k), four frames at a time; each value is summed over its
    // bins in ascending order.
    let m = settings.nMels
    var mel = [Float](repeating: 0, count: m * frames)
    melBands.withUnsafeBufferPointer { bands in
      melWeights.withUnsafeBufferPointer { weights in
        power.withUnsafeBufferPointer { pb in
          mel.withUnsafeMutableBufferPointer { ob in
            for band in 0..<m {
              let (first, count, offset) = bands[band]
              let w = weights.baseAddress! + offset
              let out = ob.baseAddress! + band * frames
              let rows = pb.baseAddress! + first * frames
              var t = 0
              while t + 4 <= frames {
                var acc = SIMD4<Float>()
                for k in 0..<count {
                  acc +=
                    SIMD4(repeating: w[k])
                    * loadF4(rows + k * frames + t)
                }
                storeF4(acc, out + t)
                t += 4
              }
              while t < frames {
                var acc: Float = 0
                for k in 0..<count { acc += w[k] * rows[k * frames + t] }
                out[t] = acc
                t += 1
              }
            }
          }
        }
      }
    }
    // dB: 10·log10(max(1e-10, power)), log10 evaluated in double and rounded once (as log10f, bar a rare ulp).
    var peak = -Float.infinity
    mel.withUnsafeMutableBufferPointer { mb in
      let p = mb.baseAddress!
      var i = 0
      var top = SIMD4<Float>(repeating: -.infinity)
      while i + 4 <= mb.count {
        var v = loadF4(p + i)
        v.replace(with: 1e-10, where: .!(v .>= 1e-10))  // max(1e-10, v), NaN included, as Swift.max
        let db = 10 * narrow(naturalLog(widen(v)) / 2.302585092994045684)
        storeF4(db, p + i)
        top.replace(with: db, where: db .> top)
        i += 4
      }
      peak = max(max(top[0], top[1]), max(top[2], top[3]))
      while i < mb.count {
        p[i] = 10 * Float(naturalLog(SIMD4<Double>(repeating: Double(max(1e-10, p[i]))))[0] / 2.302585092994045684)
        peak = max(peak, p[i])
        i += 1
      }
    }
    let floor = peak - settings.topDB
    for i in 0..<mel.count { mel[i] = max(mel[i], floor) }
    let k = settings.nMFCC
    var mfcc = [Float](repeating: 0, count: k * frames)
    dct.withUnsafeBufferPointer { d in
      mel.withUnsafeBufferPointer { l in
        mfcc.withUnsafeMutableBufferPointer { o in
          cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(k), Int32(frames), Int32(m), 1, d.baseAddress, Int32(m),
            l.baseAddress, Int32(frames), 0, o.baseAddress, Int32(frames))
        }
      }
    }
    var row = [Float](repeating: 0, count: settings.width)
    var at = 0
    func put(_ v: Float) {
      if at < row.count { row[at] = v }
      at += 1
    }
    for v in zcr { put(Float(v)) }
    for v in rms { put(v) }
    for t in 0..<frames { for c in 0..<k { put(mfcc[c * frames + t]) } }
    return FeatureParts(zcr: zcr, rms: rms, logMel: mel, mfcc: mfcc, frames: frames, row: row)
  }
}

/// librosa's `filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2, htk=False, norm="slaney")`: triangles on the
/// Slaney mel scale (linear below 1 kHz, logarithmic above), each scaled to unit area; built in double, cast.
public func slaneyMelFilterbank(sampleRate: Double, nFFT: Int, nMels: Int) -> [Float] {
  let fSp = 200.0 / 3
  let minLogHz = 1000.0
  let minLogMel = minLogHz / fSp
  let logStep = log(6.4) / 27
  func hzToMel(_ f: Double) -> Double { f >= minLogHz ? minLogMel + log(f / minLogHz) / logStep : f / fSp }
  func melToHz(_ m: Double) -> Double { m >= minLogMel ? minLogHz * exp(logStep * (m - minLogMel)) : fSp * m }
  let bins = nFFT / 2 + 1
  let maxMel = hzToMel(sampleRate / 2)
  let melF = (0..<(nMels + 2)).map { melToHz(maxMel * Double($0) / Double(nMels + 1)) }
  let fft = (0..<bins).map { sampleRate / 2 * Double($0) / Double(bins - 1) }
  var weights = [Float](repeating: 0, count: nMels * bins)
  for i in 0..<nMels {
    let enorm = 2 / (melF[i + 2] - melF[i])
    for k in 0..<bins {
      let lower = (fft[k] - melF[i]) / (melF[i + 1] - melF[i])
      let upper = (melF[i + 2] - fft[k]) / (melF[i + 2] - melF[i + 1])
      weights[i * bins + k] = Float(max(0, min(lower, upper)) * enorm)
    }
  }
  return weights
}

/// FFTW's planner is not thread-safe: plans are made and destroyed under this lock.
final class FFTFactory: @unchecked Sendable {
  private var mutex = pthread_mutex_t()
  init() { pthread_mutex_init(&mutex, nil) }
  func lock<T>(_ body: () -> T) -> T {
    pthread_mutex_lock(&mutex)
    defer { pthread_mutex_unlock(&mutex) }
    return body()
  }
}

let fftFactory = FFTFactory()
