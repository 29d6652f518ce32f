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
/// pair of uniforms). Inlinable so that it is specialised for the caller's generator; the arithmetic is
/// vectorised (`addBoxMullerNoise`).
@inlinable
public func addNoise<R: RandomNumberGenerator>(_ x: [Float], rng: inout R) -> [Float] {
  let amplitude = 0.035 * Double(rng.next() >> 11) * 0x1p-53 * Double(x.max() ?? 0)
  // The pairs' uniforms, padded to whole blocks of four with (1, 0), which adds nothing.
  let pairs = (x.count + 1) / 2
  let padded = (pairs + 3) & ~3
  var radial = [Double](repeating: 1, count: padded)
  var angular = [Double](repeating: 0, count: padded)
  for i in 0..<pairs {
    radial[i] = 1 - Double(rng.next() >> 11) * 0x1p-53
    angular[i] = Double(rng.next() >> 11) * 0x1p-53
  }
  return addBoxMullerNoise(x, radial: radial, angular: angular, amplitude: amplitude)
}

/// `x[2i] + r·cos θ` and `x[2i+1] + r·sin θ` with `r = amplitude·sqrt(-2 ln u₁)`, `θ = 2π u₂` for the pairs
/// `(radial[i], angular[i])` (whole blocks of four), in double, rounded once to float.
@usableFromInline
func addBoxMullerNoise(_ x: [Float], radial: [Double], angular: [Double], amplitude: Double) -> [Float] {
  let n = x.count
  // Room for whole blocks of eight samples; the tail beyond n is dropped.
  var out = x + [Float](repeating: 0, count: 2 * radial.count - n)
  radial.withUnsafeBufferPointer { rb in
    angular.withUnsafeBufferPointer { ab in
      out.withUnsafeMutableBufferPointer { ob in
        let amplitude4 = D4(repeating: amplitude)
        for p in stride(from: 0, to: rb.count, by: 4) {
          let u1 = UnsafeRawPointer(rb.baseAddress! + p).loadUnaligned(as: D4.self)
          let u2 = UnsafeRawPointer(ab.baseAddress! + p).loadUnaligned(as: D4.self)
          let radius = (-2 * naturalLog(u1)).squareRoot() * amplitude4
          let (c, s) = cosSin(2 * Double.pi * u2)
          let o = ob.baseAddress! + 2 * p
          let (lo, hi) = (loadF4(o), loadF4(o + 4))
          let even = D4(Double(lo[0]), Double(lo[2]), Double(hi[0]), Double(hi[2])) + radius * c
          let odd = D4(Double(lo[1]), Double(lo[3]), Double(hi[1]), Double(hi[3])) + radius * s
          storeF4(F4(Float(even[0]), Float(odd[0]), Float(even[1]), Float(odd[1])), o)
          storeF4(F4(Float(even[2]), Float(odd[2]), Float(even[3]), Float(odd[3])), o + 4)
        }
      }
    }
  }
  out.removeLast(out.count - n)
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

/// The vocoder's FFT plans, made once (planning is not thread-safe) and executed concurrently on each call's own
/// buffers with FFTW's new-array functions; buffers from `fftw_alloc` have the alignment the plans assume.
private let vocoderPlans: (forward: fftw_plan, inverse: fftwf_plan) = fftFactory.lock {
  let inputD = fftw_alloc_real(2048)!
  let spectrumD = fftw_alloc_complex(1025)!
  let input = fftwf_alloc_real(2048)!
  let spectrum = fftwf_alloc_complex(1025)!
  defer {
    fftw_free(inputD)
    fftw_free(spectrumD)
    fftwf_free(input)
    fftwf_free(spectrum)
  }
  return (
    fftw_plan_dft_r2c_1d(2048, inputD, spectrumD, UInt32(FFTW_ESTIMATE))!,
    fftwf_plan_dft_c2r_1d(2048, spectrum, input, UInt32(FFTW_ESTIMATE))!
  )
}

/// The periodic Hann window of 2048 points, in double (scipy's `get_window('hann', 2048)`).
private let vocoderWindow: [Double] = (0..<2048).map { 0.5 - 0.5 * cos(2 * Double.pi * Double($0) / 2048) }

/// `librosa.effects.time_stretch`: STFT, phase vocoder at `rate`, inverse STFT of length `round(n / rate)`.
public func timeStretch(_ y: [Float], rate: Double) -> [Float] {
  let nFFT = 2048
  let hop = 512
  let bins = nFFT / 2 + 1
  let half = nFFT / 2
  let n = y.count
  let frames = 1 + n / hop
  // Every buffer of the call in one allocation: the STFT (two zero columns after the last, as librosa pads),
  // its magnitudes and angles, the phase accumulator with its cosines and sines, and phiAdvance.
  let columns = frames + 2
  let storage = UnsafeMutablePointer<Float>.allocate(capacity: 4 * columns * bins + 3 * bins)
  defer { storage.deallocate() }
  let (re, im) = (storage, storage + columns * bins)
  let (magnitude, angle) = (storage + 2 * columns * bins, storage + 3 * columns * bins)
  let (phase, cosPhase, sinPhase) = (
    storage + 4 * columns * bins, storage + 4 * columns * bins + bins, storage + 4 * columns * bins + 2 * bins
  )
  (re + frames * bins).initialize(repeating: 0, count: 2 * bins)
  (im + frames * bins).initialize(repeating: 0, count: 2 * bins)
  let inputD = fftw_alloc_real(nFFT)!
  let spectrumD = fftw_alloc_complex(bins)!
  let input = fftwf_alloc_real(nFFT)!
  let spectrum = fftwf_alloc_complex(bins)!
  defer {
    fftw_free(inputD)
    fftw_free(spectrumD)
    fftwf_free(input)
    fftwf_free(spectrum)
  }
  let window = vocoderWindow
  // STFT as librosa computes it: the window (double) times the float32 frame, a double FFT, stored as complex64.
  window.withUnsafeBufferPointer { w in
    y.withUnsafeBufferPointer { yp in
      for t in 0..<frames {
        let start = t * hop - half
        if start >= 0 && start + nFFT <= n {
          for i in 0..<nFFT { inputD[i] = w[i] * Double(yp[start + i]) }
        } else {
          for i in 0..<nFFT {
            let j = start + i
            inputD[i] = j >= 0 && j < n ? w[i] * Double(yp[j]) : 0
          }
        }
        fftw_execute_dft_r2c(vocoderPlans.forward, inputD, spectrumD)
        for k in 0..<bins {
          re[t * bins + k] = Float(spectrumD[k].0)
          im[t * bins + k] = Float(spectrumD[k].1)
        }
      }
    }
  }
  // Phase vocoder (librosa.phase_vocoder), with its float32 phase accumulator. Every column's magnitude and angle
  // once (each is used by two consecutive steps), as numpy computes them.
  var steps: [Double] = []
  var s = 0.0
  while s < Double(frames) {
    steps.append(s)
    s = Double(steps.count) * rate
  }
  let phiAdvance = (0..<bins).map { Double.pi * Double(hop) * Double($0) / Double(bins - 1) }
  magnitudeAndAngle(re: re, im: im, magnitude: magnitude, angle: angle, count: columns * bins)
  phase.update(from: angle, count: bins)
  let out = UnsafeMutablePointer<Float>.allocate(capacity: 2 * steps.count * bins)
  defer { out.deallocate() }
  let (outRe, outIm) = (out, out + steps.count * bins)
  let twoPi = 2 * Double.pi
  phiAdvance.withUnsafeBufferPointer { advance in
    for (t, step) in steps.enumerated() {
      let c0 = Int(step)
      let alpha = step.truncatingRemainder(dividingBy: 1)
      let (a, b) = (c0 * bins, (c0 + 1) * bins)
      cosSin(phase, cos: cosPhase, sin: sinPhase, count: bins)
      // Four bins at a time, then the rest one by one: the same double arithmetic either way.
      let (oneMinusAlpha4, alpha4) = (D4(repeating: 1 - alpha), D4(repeating: alpha))
      let (twoPi4, magic) = (D4(repeating: twoPi), D4(repeating: 0x1.8p52))
      var k = 0
      while k + 4 <= bins {
        let mag = oneMinusAlpha4 * widen(loadF4(magnitude + a + k)) + alpha4 * widen(loadF4(magnitude + b + k))
        storeF4(narrow(widen(loadF4(cosPhase + k)) * mag), outRe + t * bins + k)
        storeF4(narrow(widen(loadF4(sinPhase + k)) * mag), outIm + t * bins + k)
        let adv = UnsafeRawPointer(advance.baseAddress! + k).loadUnaligned(as: D4.self)
        var dphase = widen(loadF4(angle + b + k) - loadF4(angle + a + k)) - adv
        // np.round: to nearest, ties to even (|dphase| is far below 2^51).
        dphase -= twoPi4 * ((dphase / twoPi4 + magic) - magic)
        storeF4(narrow(widen(loadF4(phase + k)) + (adv + dphase)), phase + k)
        k += 4
      }
      while k < bins {
        let mag = (1 - alpha) * Double(magnitude[a + k]) + alpha * Double(magnitude[b + k])
        outRe[t * bins + k] = Float(Double(cosPhase[k]) * mag)
        outIm[t * bins + k] = Float(Double(sinPhase[k]) * mag)
        var dphase = Double(angle[b + k] - angle[a + k]) - advance[k]
        dphase -= twoPi * ((dphase / twoPi + 0x1.8p52) - 0x1.8p52)
        phase[k] = Float(Double(phase[k]) + (advance[k] + dphase))
        k += 1
      }
    }
  }
  // Inverse STFT with the window-sum-square normalisation, centred, fixed to round(n / rate).
  let length = Int((Double(n) / rate).rounded(.toNearestOrEven))
  let outFrames = min(steps.count, Int((Double(length + 2 * half) / Double(hop)).rounded(.up)))
  let total = nFFT + hop * (outFrames - 1)
  var signal = [Float](repeating: 0, count: total)
  var norm = [Float](repeating: 0, count: total)
  window.withUnsafeBufferPointer { w in
    signal.withUnsafeMutableBufferPointer { sig in
      norm.withUnsafeMutableBufferPointer { nrm in
        for t in 0..<outFrames {
          for k in 0..<bins {
            spectrum[k].0 = outRe[t * bins + k]
            spectrum[k].1 = k == 0 || k == bins - 1 ? 0 : outIm[t * bins + k]
          }
          fftwf_execute_dft_c2r(vocoderPlans.inverse, spectrum, input)
          let (sp, np) = (sig.baseAddress! + t * hop, nrm.baseAddress! + t * hop)
          for i in 0..<nFFT {
            // float32 accumulators, float64 addends (librosa's overlap-add and window-sum-square).
            sp[i] = Float(Double(sp[i]) + w[i] * Double(input[i] / Float(nFFT)))
            np[i] = Float(Double(np[i]) + w[i] * w[i])
          }
        }
      }
    }
  }
  let tiny = Float.leastNormalMagnitude
  for i in 0..<total where norm[i] > tiny { signal[i] /= norm[i] }
  var result = [Float](repeating: 0, count: length)
  for i in 0..<length where half + i < total { result[i] = signal[half + i] }
  return result
}
