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
  let window: [Float]
  /// `[nMels][bins]`, float32 as librosa builds it (in double, then cast).
  let melBasis: [Float]
  /// `[nMFCC][nMels]`, orthonormal DCT-II.
  let dct: [Float]
  let fftIn: UnsafeMutablePointer<Float>
  let fftOut: UnsafeMutablePointer<fftwf_complex>
  let plan: fftwf_plan

  public init(settings: FeatureSettings = FeatureSettings()) {
    self.settings = settings
    nFFT = settings.frameLength
    bins = nFFT / 2 + 1
    window = (0..<nFFT).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(settings.frameLength))) }
    melBasis = slaneyMelFilterbank(sampleRate: Double(settings.sampleRate), nFFT: nFFT, nMels: settings.nMels)
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
      fftwf_alloc_real(settings.frameLength)!, fftwf_alloc_complex(bins)!, settings.frameLength
    )
    fftIn = input
    fftOut = output
    plan = fftFactory.lock { fftwf_plan_dft_r2c_1d(Int32(size), input, output, UInt32(FFTW_ESTIMATE))! }
  }

  deinit {
    fftFactory.lock { fftwf_destroy_plan(plan) }
    fftwf_free(fftIn)
    fftwf_free(fftOut)
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
    // ZCR: edge padding, |x| <= 1e-10 counts as +0, sign changes within the frame / frame length.
    var negative = [Bool](repeating: false, count: n + 2 * half)
    if n > 0 {
      for i in 0..<(n + 2 * half) {
        let v = y[min(max(i - half, 0), n - 1)]
        negative[i] = abs(v) <= 1e-10 ? false : v.sign == .minus
      }
    }
    var zcr = [Double](repeating: 0, count: frames)
    var rms = [Float](repeating: 0, count: frames)
    var power = [Float](repeating: 0, count: bins * frames)  // [frames][bins]
    for t in 0..<frames {
      let start = t * hop
      if n > 0 {
        var changes = 0
        for i in (start + 1)..<(start + nFFT) where negative[i] != negative[i - 1] { changes += 1 }
        zcr[t] = Double(changes) / Double(nFFT)
      }
      // RMS and the STFT frame: zero padding.
      var sum = 0.0
      for i in 0..<nFFT {
        let j = start + i - half
        let v: Float = j >= 0 && j < n ? y[j] : 0
        sum += Double(v) * Double(v)
        fftIn[i] = v * window[i]
      }
      rms[t] = Float((sum / Double(nFFT)).squareRoot())
      fftwf_execute(plan)
      for k in 0..<bins {
        let re = fftOut[k].0
        let im = fftOut[k].1
        power[t * bins + k] = re * re + im * im
      }
    }
    // Mel [nMels][frames] = basis [nMels][bins] · powerᵀ.
    let m = settings.nMels
    var mel = [Float](repeating: 0, count: m * frames)
    melBasis.withUnsafeBufferPointer { b in
      power.withUnsafeBufferPointer { p in
        mel.withUnsafeMutableBufferPointer { o in
          cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(frames), Int32(bins), 1, b.baseAddress,
            Int32(bins), p.baseAddress, Int32(bins), 0, o.baseAddress, Int32(frames))
        }
      }
    }
    var peak = -Float.infinity
    for i in 0..<mel.count {
      mel[i] = 10 * log10f(max(1e-10, mel[i]))
      peak = max(peak, mel[i])
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
