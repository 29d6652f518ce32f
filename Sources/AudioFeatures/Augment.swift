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

/// The seed's noise: `x + 0.035 * U(0,1) * max(x) * N(0,1)` per sample, from `rng` (Box–Muller, two normals per
/// pair of uniforms). Inlinable so that it is specialised for the caller's generator.
@inlinable
public func addNoise<R: RandomNumberGenerator>(_ x: [Float], rng: inout R) -> [Float] {
  let amplitude = 0.035 * Double(rng.next() >> 11) * 0x1p-53 * Double(x.max() ?? 0)
  var out = x
  var i = 0
  while i < out.count {
    let u1 = 1 - Double(rng.next() >> 11) * 0x1p-53
    let u2 = Double(rng.next() >> 11) * 0x1p-53
    let radius = (-2 * log(u1)).squareRoot() * amplitude
    let angle = 2 * Double.pi * u2
    out[i] = Float(Double(out[i]) + radius * cos(angle))
    if i + 1 < out.count { out[i + 1] = Float(Double(out[i + 1]) + radius * sin(angle)) }
    i += 2
  }
  return out
}

/// `librosa.effects.pitch_shift(y, sr, n_steps)`: a phase-vocoder time stretch by `2^(-n_steps/12)` (STFT 2048/512,
/// Hann), resampling with soxr HQ from `sr/rate` back to `sr`, and the original length. The vocoder keeps librosa's
/// float32 phase accumulator, so the result follows librosa's, rounding included, closely.
public func pitchShift(_ y: [Float], sampleRate: Int, steps: Double) throws -> [Float] {
  if y.isEmpty { return y }
  let rate = pow(2.0, -steps / 12)
  let stretched = timeStretch(y, rate: rate)
  let shifted = try resample(stretched, from: Double(sampleRate) / rate, to: Double(sampleRate))
  var out = [Float](repeating: 0, count: y.count)
  for i in 0..<min(out.count, shifted.count) { out[i] = shifted[i] }
  return out
}

/// `librosa.effects.time_stretch`: STFT, phase vocoder at `rate`, inverse STFT of length `round(n / rate)`.
public func timeStretch(_ y: [Float], rate: Double) -> [Float] {
  let nFFT = 2048
  let hop = 512
  let bins = nFFT / 2 + 1
  let half = nFFT / 2
  let n = y.count
  let frames = 1 + n / hop
  let window = (0..<nFFT).map { 0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(nFFT)) }
  // STFT as librosa computes it: the window (double) times the float32 frame, a double FFT, stored as complex64.
  var re = [Float](repeating: 0, count: (frames + 2) * bins)
  var im = [Float](repeating: 0, count: (frames + 2) * bins)
  let input = fftwf_alloc_real(nFFT)!
  let spectrum = fftwf_alloc_complex(bins)!
  let inputD = fftw_alloc_real(nFFT)!
  let spectrumD = fftw_alloc_complex(bins)!
  defer {
    fftwf_free(input)
    fftwf_free(spectrum)
    fftw_free(inputD)
    fftw_free(spectrumD)
  }
  let forward = fftFactory.lock { fftw_plan_dft_r2c_1d(Int32(nFFT), inputD, spectrumD, UInt32(FFTW_ESTIMATE))! }
  let inverse = fftFactory.lock { fftwf_plan_dft_c2r_1d(Int32(nFFT), spectrum, input, UInt32(FFTW_ESTIMATE))! }
  defer {
    fftFactory.lock {
      fftw_destroy_plan(forward)
      fftwf_destroy_plan(inverse)
    }
  }
  for t in 0..<frames {
    for i in 0..<nFFT {
      let j = t * hop + i - half
      inputD[i] = window[i] * Double(j >= 0 && j < n ? y[j] : 0)
    }
    fftw_execute(forward)
    for k in 0..<bins {
      re[t * bins + k] = Float(spectrumD[k].0)
      im[t * bins + k] = Float(spectrumD[k].1)
    }
  }
  // Phase vocoder (librosa.phase_vocoder), with its float32 phase accumulator.
  var steps: [Double] = []
  var s = 0.0
  while s < Double(frames) {
    steps.append(s)
    s = Double(steps.count) * rate
  }
  let phiAdvance = (0..<bins).map { Double.pi * Double(hop) * Double($0) / Double(bins - 1) }
  // Every column's magnitude and angle once (each is used by two consecutive steps), as numpy computes them.
  var magnitude = [Float](repeating: 0, count: re.count)
  var angle = [Float](repeating: 0, count: re.count)
  for i in 0..<re.count {
    magnitude[i] = hypotf(re[i], im[i])
    angle[i] = atan2f(im[i], re[i])
  }
  var phase = Array(angle[0..<bins])
  var outRe = [Float](repeating: 0, count: steps.count * bins)
  var outIm = [Float](repeating: 0, count: steps.count * bins)
  for (t, step) in steps.enumerated() {
    let c0 = Int(step)
    let alpha = step.truncatingRemainder(dividingBy: 1)
    let a = c0 * bins
    let b = (c0 + 1) * bins
    for k in 0..<bins {
      let mag = (1 - alpha) * Double(magnitude[a + k]) + alpha * Double(magnitude[b + k])
      outRe[t * bins + k] = Float(Double(cosf(phase[k])) * mag)
      outIm[t * bins + k] = Float(Double(sinf(phase[k])) * mag)
      var dphase = Double(angle[b + k] - angle[a + k]) - phiAdvance[k]
      dphase -= 2 * Double.pi * (dphase / (2 * Double.pi)).rounded(.toNearestOrEven)
      phase[k] = Float(Double(phase[k]) + (phiAdvance[k] + dphase))
    }
  }
  // Inverse STFT with the window-sum-square normalisation, centred, fixed to round(n / rate).
  let length = Int((Double(n) / rate).rounded(.toNearestOrEven))
  let outFrames = min(steps.count, Int((Double(length + 2 * half) / Double(hop)).rounded(.up)))
  let total = nFFT + hop * (outFrames - 1)
  var signal = [Float](repeating: 0, count: total)
  var norm = [Float](repeating: 0, count: total)
  for t in 0..<outFrames {
    for k in 0..<bins {
      spectrum[k].0 = outRe[t * bins + k]
      spectrum[k].1 = k == 0 || k == bins - 1 ? 0 : outIm[t * bins + k]
    }
    fftwf_execute(inverse)
    for i in 0..<nFFT {
      // float32 accumulators, float64 addends (librosa's overlap-add and window-sum-square).
      signal[t * hop + i] = Float(Double(signal[t * hop + i]) + window[i] * Double(input[i] / Float(nFFT)))
      norm[t * hop + i] = Float(Double(norm[t * hop + i]) + window[i] * window[i])
    }
  }
  let tiny = Float.leastNormalMagnitude
  for i in 0..<total where norm[i] > tiny { signal[i] /= norm[i] }
  var out = [Float](repeating: 0, count: length)
  for i in 0..<length where half + i < total { out[i] = signal[half + i] }
  return out
}
