import CAudioKernels
import CFFTW

#if canImport(Glibc)
  import Glibc
#endif

/// A clip's centred short-time Fourier transform as librosa's `stft(y, n_fft, hop_length)` computes it for the
/// seed's recipe (periodic Hann window, zero padding of `n_fft / 2` at both ends): the double window times the
/// float32 frame, a double FFT, the result stored as complex64. The feature rows' mel spectrogram and the pitch
/// shift's phase vocoder both start from this transform of the same clip, so one is computed and shared.
public struct Spectrum: Sendable {
  public let nFFT: Int
  public let hop: Int
  /// `1 + n / hop` for `n` samples.
  public let frames: Int
  /// `[frames][bins]`, bins `nFFT / 2 + 1`: the real and the imaginary parts.
  public var re: [Float]
  public var im: [Float]

  public var bins: Int { nFFT / 2 + 1 }

  public init(_ y: [Float], nFFT: Int = 2048, hop: Int = 512) {
    self.init(frames: 1 + y.count / hop, nFFT: nFFT, hop: hop)
    forEachFrame(of: y, nFFT: nFFT, hop: hop) { t, spectrum in store(frame: t, spectrum) }
  }

  /// All zeros.
  init(frames: Int, nFFT: Int, hop: Int) {
    self.nFFT = nFFT
    self.hop = hop
    self.frames = frames
    re = [Float](repeating: 0, count: frames * (nFFT / 2 + 1))
    im = re
  }

  /// Frame `t` from FFTW's double output (`bins` interleaved complex numbers), rounded to complex64.
  mutating func store(frame t: Int, _ spectrum: UnsafePointer<Double>) {
    let bins = self.bins
    re.withUnsafeMutableBufferPointer { rb in
      im.withUnsafeMutableBufferPointer { ib in
        let (r, m) = (rb.baseAddress! + t * bins, ib.baseAddress! + t * bins)
        let raw = UnsafeRawPointer(spectrum)
        var k = 0
        while k + 4 <= bins {
          // Two complex numbers per double vector, four per float store.
          let a = raw.loadUnaligned(fromByteOffset: 16 * k, as: D4.self)
          let b = raw.loadUnaligned(fromByteOffset: 16 * k + 32, as: D4.self)
          storeF4(narrow(D4(lowHalf: a.evenHalf, highHalf: b.evenHalf)), r + k)
          storeF4(narrow(D4(lowHalf: a.oddHalf, highHalf: b.oddHalf)), m + k)
          k += 4
        }
        while k < bins {
          (r[k], m[k]) = (Float(spectrum[2 * k]), Float(spectrum[2 * k + 1]))
          k += 1
        }
      }
    }
  }
}

/// The frames of `y`'s centred STFT, one at a time: `body(t, spectrum)` gets frame `t`'s `nFFT / 2 + 1` complex
/// numbers in double, interleaved, valid until it returns. As librosa computes them: the double window times the
/// float32 frame (zero beyond the clip), a double FFT.
func forEachFrame(of y: [Float], nFFT: Int, hop: Int, _ body: (Int, UnsafePointer<Double>) -> Void) {
  let n = y.count
  let half = nFFT / 2
  let (plan, window) = realFourier.forward(nFFT)
  let input = fftw_alloc_real(nFFT)!
  let output = fftw_alloc_complex(nFFT / 2 + 1)!
  defer {
    fftw_free(input)
    fftw_free(output)
  }
  y.withUnsafeBufferPointer { yb in
    let w = window.baseAddress!
    for t in 0...(n / hop) {
      let start = t * hop - half
      if start >= 0 && start + nFFT <= n {
        sertrain_window_frame(yb.baseAddress! + start, w, input, nFFT)
      } else {
        for i in 0..<nFFT {
          let j = start + i
          input[i] = j >= 0 && j < n ? w[i] * Double(yb[j]) : 0
        }
      }
      fftw_execute_dft_r2c(plan, input, output)
      body(t, UnsafeRawPointer(output).assumingMemoryBound(to: Double.self))
    }
  }
}

/// FFTW plans for real transforms of a size, made once (FFTW's planner is not thread-safe) and run concurrently
/// with the new-array functions on buffers from `fftw_alloc`, which have the alignment the plans assume; with
/// each size's periodic Hann window in double (scipy's `get_window('hann', n)`).
final class RealFourier: @unchecked Sendable {
  private var mutex = pthread_mutex_t()
  private var forwardPlans: [Int: (fftw_plan, UnsafeMutableBufferPointer<Double>)] = [:]
  private var inversePlans: [Int: fftwf_plan] = [:]

  init() { pthread_mutex_init(&mutex, nil) }

  /// Runs `body` holding the planner's lock.
  private func lock<T>(_ body: () -> T) -> T {
    pthread_mutex_lock(&mutex)
    defer { pthread_mutex_unlock(&mutex) }
    return body()
  }

  /// The double real-to-complex plan of size `n`, and the window.
  func forward(_ n: Int) -> (fftw_plan, UnsafeBufferPointer<Double>) {
    lock {
      if let (plan, window) = forwardPlans[n] { return (plan, UnsafeBufferPointer(window)) }
      let input = fftw_alloc_real(n)!
      let output = fftw_alloc_complex(n / 2 + 1)!
      defer {
        fftw_free(input)
        fftw_free(output)
      }
      let plan = fftw_plan_dft_r2c_1d(Int32(n), input, output, UInt32(FFTW_ESTIMATE))!
      let window = UnsafeMutableBufferPointer<Double>.allocate(capacity: n)
      for i in 0..<n { window[i] = 0.5 - 0.5 * cos(2 * Double.pi * Double(i) / Double(n)) }
      forwardPlans[n] = (plan, window)
      return (plan, UnsafeBufferPointer(window))
    }
  }

  /// The float complex-to-real plan of size `n` (numpy's float32 `irfft`).
  func inverse(_ n: Int) -> fftwf_plan {
    lock {
      if let plan = inversePlans[n] { return plan }
      let input = fftwf_alloc_complex(n / 2 + 1)!
      let output = fftwf_alloc_real(n)!
      defer {
        fftwf_free(input)
        fftwf_free(output)
      }
      let plan = fftwf_plan_dft_c2r_1d(Int32(n), input, output, UInt32(FFTW_ESTIMATE))!
      inversePlans[n] = plan
      return plan
    }
  }
}

/// The process's plans: they live as long as it does.
let realFourier = RealFourier()
