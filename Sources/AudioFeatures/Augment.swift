import CAudioKernels
import CFFTW

#if canImport(Glibc)
  import Glibc
#endif

/// The seed's four rows per recording, and the augmentations behind them.
public enum Augmentation: String, CaseIterable, Sendable {
  case original
  case noise
  case pitch
  case pitchNoise = "pitch+noise"
  /// The seed notebook's other two: `time_stretch(rate=0.8)` and `np.roll` by `U(-5, 5) * 1000` samples.
  case stretch
  case shift

  /// The seed's four rows per recording.
  public static let seedRows: [Augmentation] = [.original, .noise, .pitch, .pitchNoise]

  /// The feature file's code (0 original, 1 noise, 2 pitch, 3 pitch+noise, 4 stretch, 5 shift).
  public var code: Int8 { Int8(Augmentation.allCases.firstIndex(of: self)!) }
}

/// The seed's shift: `np.roll(x, int(U(-5, 5) * 1000))`, from `rng`.
@inlinable
public func rollShift<R: RandomNumberGenerator>(_ x: [Float], rng: inout R) -> [Float] {
  guard !x.isEmpty else { return x }
  let amount = Int((Double(rng.next() >> 11) * 0x1p-53 * 10 - 5) * 1000)
  let n = x.count
  let k = ((amount % n) + n) % n
  return Array(x[(n - k)...] + x[..<(n - k)])
}

/// The seed's noise: `x + 0.035 * U(0,1) * max(x) * N(0,1)` per sample, from `rng`. The normals come from
/// Box–Muller in float32, eight pairs from eight draws at a time (`addBoxMullerNoise`); the seed's numpy stream
/// cannot be reproduced anyway, so what matters is that the normals are normal and the same on every rank and
/// platform. Inlinable so that it is specialised for the caller's generator.
@inlinable
public func addNoise<R: RandomNumberGenerator>(_ x: [Float], rng: inout R) -> [Float] {
  let amplitude = Float(0.035 * Double(rng.next() >> 11) * 0x1p-53 * Double(x.max() ?? 0))
  // Blocks of 16 samples, each taking eight draws; the last block is padded and its tail dropped.
  let blocks = (x.count + 15) / 16
  var draws = [UInt64](repeating: 0, count: 8 * blocks)
  for i in draws.indices { draws[i] = rng.next() }
  return addBoxMullerNoise(x, draws: draws, amplitude: amplitude)
}

/// `x + amplitude·z` with standard normals `z` by Box–Muller in float32. Per block of 16 samples, eight draws read
/// as 16 little-endian 32-bit words `w`: pair `i` takes `u₁ = 1 - a·2⁻²³` and `u₂ = b·2⁻²³` from the top 23 bits
/// `a`, `b` of `w[i]` and `w[8 + i]`, and `r·cos θ`, `r·sin θ` (`r = sqrt(-2 ln u₁)`, `θ = 2π u₂`) go to samples
/// `i` and `8 + i`. `|z|` reaches 5.7.
@usableFromInline
func addBoxMullerNoise(_ x: [Float], draws: [UInt64], amplitude: Float) -> [Float] {
  let n = x.count
  precondition(draws.count == 8 * ((n + 15) / 16), "eight draws per block of 16 samples")
  var out = x + [Float](repeating: 0, count: 2 * draws.count - n)
  draws.withUnsafeBytes { db in
    out.withUnsafeMutableBufferPointer { ob in
      let one = SIMD8<UInt32>(repeating: 0x3f80_0000)
      for block in 0..<(db.count / 64) {
        let words = db.baseAddress! + 64 * block
        // [1, 2) from 23 random mantissa bits: u₁ = 2 - that, in (0, 1]; u₂ = that - 1, in [0, 1).
        let u1 = 2 - unsafeBitCast(one | (words.loadUnaligned(as: SIMD8<UInt32>.self) &>> 9), to: F8.self)
        let u2 =
          unsafeBitCast(one | (words.loadUnaligned(fromByteOffset: 32, as: SIMD8<UInt32>.self) &>> 9), to: F8.self) - 1
        let r = squareRoot(-2 * naturalLog(u1)) * amplitude
        let (c, s) = cosSinOfTurns(u2)
        let (first, second) = (
          UnsafeMutableRawPointer(ob.baseAddress! + 16 * block),
          UnsafeMutableRawPointer(ob.baseAddress! + 16 * block + 8)
        )
        first.storeBytes(of: first.loadUnaligned(as: F8.self) + r * c, as: F8.self)
        second.storeBytes(of: second.loadUnaligned(as: F8.self) + r * s, as: F8.self)
      }
    }
  }
  out.removeLast(out.count - n)
  return out
}

/// `librosa.effects.pitch_shift(y, sr, n_steps)`: a phase-vocoder time stretch by `2^(-n_steps/12)` (STFT 2048/512,
/// Hann), resampling with soxr HQ from `sr/rate` back to `sr`, and the original length. The vocoder keeps librosa's
/// float32 phase accumulator, so the result follows librosa's, rounding included, closely. `spectrum`, when given,
/// is `Spectrum(y)`.
public func pitchShift(_ y: [Float], sampleRate: Int, steps: Double, spectrum: Spectrum? = nil) throws -> [Float] {
  if y.isEmpty { return y }
  let rate = pow(2.0, -steps / 12)
  let stretched = timeStretch(y, rate: rate, spectrum: spectrum)
  let shifted = try resample(stretched, from: Double(sampleRate) / rate, to: Double(sampleRate))
  var out = [Float](repeating: 0, count: y.count)
  for i in 0..<min(out.count, shifted.count) { out[i] = shifted[i] }
  return out
}

/// `librosa.effects.time_stretch`: STFT, phase vocoder at `rate`, inverse STFT of length `round(n / rate)`.
/// `spectrum`, when given, is `Spectrum(y)`.
public func timeStretch(_ y: [Float], rate: Double, spectrum given: Spectrum? = nil) -> [Float] {
  let nFFT = 2048
  let hop = 512
  let bins = nFFT / 2 + 1
  let half = nFFT / 2
  let n = y.count
  let spectrum = given ?? Spectrum(y, nFFT: nFFT, hop: hop)
  precondition(spectrum.nFFT == nFFT && spectrum.hop == hop && spectrum.frames == 1 + n / hop, "another clip's STFT")
  let frames = spectrum.frames
  // The columns' magnitudes and angles (two zero columns after the last, as librosa pads the STFT) and the phase
  // accumulator, in one allocation.
  let columns = frames + 2
  let storage = UnsafeMutablePointer<Float>.allocate(capacity: 2 * columns * bins + bins)
  defer { storage.deallocate() }
  let (magnitude, angle, phase) = (storage, storage + columns * bins, storage + 2 * columns * bins)
  // Phase vocoder (librosa.phase_vocoder), with its float32 phase accumulator. Every column's magnitude and angle
  // once (each is used by two consecutive steps), as numpy computes them.
  spectrum.re.withUnsafeBufferPointer { re in
    spectrum.im.withUnsafeBufferPointer { im in
      magnitudeAndAngle(
        re: re.baseAddress!, im: im.baseAddress!, magnitude: magnitude, angle: angle, count: frames * bins)
    }
  }
  (magnitude + frames * bins).initialize(repeating: 0, count: 2 * bins)
  (angle + frames * bins).initialize(repeating: 0, count: 2 * bins)
  var steps: [Double] = []
  var s = 0.0
  while s < Double(frames) {
    steps.append(s)
    s = Double(steps.count) * rate
  }
  let phiAdvance = (0..<bins).map { Double.pi * Double(hop) * Double($0) / Double(bins - 1) }
  phase.update(from: angle, count: bins)
  // The stretched STFT, one complex64 column per step in FFTW's interleaved layout; columns 32-byte aligned, as
  // the inverse plan's arrays were (the new-array execute requires the same alignment).
  let stride = (bins + 3) & ~3
  let out = fftwf_alloc_complex(steps.count * stride)!
  defer { fftwf_free(out) }
  phiAdvance.withUnsafeBufferPointer { advance in
    for (t, step) in steps.enumerated() {
      let c0 = Int(step)
      let (a, b) = (c0 * bins, (c0 + 1) * bins)
      let column = UnsafeMutableRawPointer(out + t * stride).assumingMemoryBound(to: Float.self)
      vocoderStep(
        magnitudeA: magnitude + a, magnitudeB: magnitude + b, angleA: angle + a, angleB: angle + b,
        advance: advance.baseAddress!, alpha: step.truncatingRemainder(dividingBy: 1), phase: phase, column: column,
        bins: bins)
      // irfft ignores the imaginary parts of the DC and Nyquist bins.
      column[1] = 0
      column[2 * bins - 1] = 0
    }
  }
  // Inverse STFT with the window-sum-square normalisation, centred, fixed to round(n / rate).
  let length = Int((Double(n) / rate).rounded(.toNearestOrEven))
  let outFrames = min(steps.count, Int((Double(length + 2 * half) / Double(hop)).rounded(.up)))
  let total = nFFT + hop * (outFrames - 1)
  var signal = [Float](repeating: 0, count: total)
  var norm = [Float](repeating: 0, count: total)
  let inverse = realFourier.inverse(nFFT)
  let window = realFourier.forward(nFFT).1
  let frame = fftwf_alloc_real(nFFT)!
  defer { fftwf_free(frame) }
  signal.withUnsafeMutableBufferPointer { sig in
    norm.withUnsafeMutableBufferPointer { nrm in
      for t in 0..<outFrames {
        // FFTW's inverse may overwrite its input: each column is used once.
        fftwf_execute_dft_c2r(inverse, out + t * stride, frame)
        sertrain_overlap_add(
          frame, window.baseAddress!, Float(nFFT), sig.baseAddress! + t * hop, nrm.baseAddress! + t * hop, nFFT)
      }
    }
  }
  let tiny = Float.leastNormalMagnitude
  for i in 0..<total where norm[i] > tiny { signal[i] /= norm[i] }
  var result = [Float](repeating: 0, count: length)
  for i in 0..<length where half + i < total { result[i] = signal[half + i] }
  return result
}
