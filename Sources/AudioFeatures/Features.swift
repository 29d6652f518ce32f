import CAudioKernels
import CFFTW
import COpenBLAS

#if canImport(Glibc)
  import Glibc
#endif

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
  /// The clip's STFT, when asked for (`keepSpectrum`).
  public var spectrum: Spectrum?
}

/// Computes feature rows (immutable after `init`: threads may share one).
public final class FeatureExtractor: Sendable {
  public let recipe: FeatureRecipe
  /// librosa's `power_to_db` floor below the peak.
  let topDB: Float = 80
  let nFFT: Int
  let bins: Int
  /// `[nMels][bins]`, float32 as librosa builds it (in double, then cast).
  let melBasis: [Float]
  /// `[nMFCC][nMels]`, orthonormal DCT-II.
  let dct: [Float]
  /// The mel basis's nonzero runs: per band its first bin, its length and where its weights start in
  /// `melWeights`.
  let melBands: [(first: Int, count: Int, offset: Int)]
  let melWeights: [Float]

  public init(recipe: FeatureRecipe = FeatureRecipe()) {
    self.recipe = recipe
    nFFT = recipe.frameLength
    bins = nFFT / 2 + 1
    melBasis = slaneyMelFilterbank(sampleRate: Double(recipe.sampleRate), nFFT: nFFT, nMels: recipe.nMels)
    var bands: [(first: Int, count: Int, offset: Int)] = []
    var weights: [Float] = []
    for band in 0..<recipe.nMels {
      let row = melBasis[(band * bins)..<((band + 1) * bins)]
      let first = row.firstIndex { $0 != 0 } ?? row.startIndex
      let last = row.lastIndex { $0 != 0 } ?? (first - 1)
      bands.append((first - row.startIndex, last - first + 1, weights.count))
      weights += row[first...max(first, last)].prefix(last - first + 1)
    }
    melBands = bands
    melWeights = weights
    var d = [Float](repeating: 0, count: recipe.nMFCC * recipe.nMels)
    let n = Double(recipe.nMels)
    for k in 0..<recipe.nMFCC {
      let scale = k == 0 ? (1 / n).squareRoot() : (2 / n).squareRoot()
      for i in 0..<recipe.nMels {
        d[k * recipe.nMels + i] = Float(scale * cos(Double.pi * Double(k) * (2 * Double(i) + 1) / (2 * n)))
      }
    }
    dct = d
  }

  /// Frames of a centred analysis: `1 + n / hop`.
  public func frameCount(_ n: Int) -> Int { 1 + n / recipe.hopLength }

  /// The seed's row for a clip at `sampleRate`: 2376 floats.
  public func row(_ y: [Float]) -> [Float] { parts(y).row }

  /// The row and what it is made of; with `keepSpectrum`, also the clip's STFT (`Spectrum(y)`, computed on the way
  /// for the vocoder).
  public func parts(_ y: [Float], keepSpectrum: Bool = false) -> FeatureParts {
    let n = y.count
    if n == 0 {
      // An empty read (a clip shorter than the offset): a row of zeros, which the extractor flags.
      return FeatureParts(
        zcr: [], rms: [], logMel: [], mfcc: [], frames: 0, row: [Float](repeating: 0, count: recipe.width))
    }
    let frames = frameCount(n)
    let half = nFFT / 2
    let hop = recipe.hopLength
    var zcr = [Double](repeating: 0, count: frames)
    var rms = [Float](repeating: 0, count: frames)
    y.withUnsafeBufferPointer { yb in
      if nFFT % hop == 0 && half % hop == 0 {
        zcrAndRMSByBlocks(yb, zcr: &zcr, rms: &rms)
      } else {
        zcrAndRMSByFrames(yb, zcr: &zcr, rms: &rms)
      }
    }
    // The power of the spectrum rounded to complex64, in float32 (librosa's `np.abs(S)**2` bar an ulp; in C, as the
    // vocoder's vector math), frame by frame into a block of four frames interleaved by bin. Each full block (and
    // the last) goes straight into Mel [nMels][frames] = basis [nMels][bins] · power, over each filter's nonzero
    // bins only (a triangle spans a few bins: 2 k products per frame instead of 131 k), four frames per vector.
    // Each value is summed over its bins in ascending order.
    let m = recipe.nMels
    var mel = [Float](repeating: 0, count: m * frames)
    var kept = keepSpectrum ? Spectrum(frames: frames, nFFT: nFFT, hop: hop) : nil
    let block = UnsafeMutablePointer<Float>.allocate(capacity: 4 * bins)  // [bins][4 frames]
    defer { block.deallocate() }
    block.initialize(repeating: 0, count: 4 * bins)
    melBands.withUnsafeBufferPointer { bands in
      melWeights.withUnsafeBufferPointer { weights in
        mel.withUnsafeMutableBufferPointer { ob in
          forEachFrame(of: y, nFFT: nFFT, hop: hop) { t, spectrum in
            let lane = t & 3
            sertrain_power_strided(spectrum, bins, block + lane, 4)
            kept?.store(frame: t, spectrum)
            guard lane == 3 || t == frames - 1 else { return }
            // The block's frames t0...t (lanes beyond `lane` hold an earlier block's: not stored).
            let t0 = t - lane
            for band in 0..<m {
              let (first, count, offset) = bands[band]
              let w = weights.baseAddress! + offset
              let rows = block + 4 * first
              var acc = F4()
              for k in 0..<count { acc += F4(repeating: w[k]) * loadF4(rows + 4 * k) }
              let out = ob.baseAddress! + band * frames + t0
              if lane == 3 {
                storeF4(acc, out)
              } else {
                for j in 0...lane { out[j] = acc[j] }
              }
            }
          }
        }
      }
    }
    // dB: 10·log10(max(1e-10, power)), log10 evaluated in double and rounded once (as log10f, bar a rare ulp).
    let peak = mel.withUnsafeMutableBufferPointer { sertrain_power_db($0.baseAddress!, $0.count) }
    let floor = peak - topDB
    for i in 0..<mel.count { mel[i] = max(mel[i], floor) }
    let k = recipe.nMFCC
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
    var row = [Float](repeating: 0, count: recipe.width)
    func put(_ at: Int, _ v: Float) { if at < row.count { row[at] = v } }
    if recipe.layout == .frames {
      let n = recipe.featuresPerFrame
      for t in 0..<min(frames, recipe.framesPerRow) {
        put(t * n, Float(zcr[t]))
        put(t * n + 1, rms[t])
        for c in 0..<k { put(t * n + 2 + c, mfcc[c * frames + t]) }
      }
    } else {
      // The blocks start `stride` values apart: the clip's frames (seed) or a full clip's (aligned).
      let stride = recipe.layout == .aligned ? recipe.framesPerRow : frames
      for t in 0..<min(frames, stride) {
        put(t, Float(zcr[t]))
        put(stride + t, rms[t])
        for c in 0..<k { put(2 * stride + t * k + c, mfcc[c * frames + t]) }
      }
    }
    return FeatureParts(
      zcr: zcr, rms: rms, logMel: mel, mfcc: mfcc, frames: frames, row: row, spectrum: kept)
  }
}

extension FeatureExtractor {
  /// ZCR (edge padding, |x| <= 1e-10 counts as +0, sign changes within the frame / frame length) and RMS (squares
  /// summed in double over the zero-padded frame), frame by frame.
  func zcrAndRMSByFrames(_ yb: UnsafeBufferPointer<Float>, zcr: inout [Double], rms: inout [Float]) {
    let (n, y) = (yb.count, yb.baseAddress!)
    let (hop, half) = (recipe.hopLength, nFFT / 2)
    // changes[i] counts the changes among the first i+1 padded samples, so a frame's count is a difference.
    let padded = n + 2 * half
    let changes = UnsafeMutablePointer<Int32>.allocate(capacity: padded)
    defer { changes.deallocate() }
    var count: Int32 = 0
    var previous = negativeFlag(y[0])
    for i in 0..<half { changes[i] = 0 }  // the left edge repeats y[0]
    for i in 0..<n {
      let flag = negativeFlag(y[i])
      count &+= flag ^ previous
      previous = flag
      changes[half + i] = count
    }
    for i in (half + n)..<padded { changes[i] = count }  // the right edge repeats y[n-1]: no change
    for t in zcr.indices {
      zcr[t] = Double(changes[t * hop + nFFT - 1] - changes[t * hop]) / Double(nFFT)
      let start = t * hop - half
      var sum = 0.0
      for j in max(0, start)..<min(n, start + nFFT) { sum += Double(y[j]) * Double(y[j]) }
      rms[t] = Float((sum / Double(nFFT)).squareRoot())
    }
  }

  /// The same from blocks of `hop` samples, when frames are whole blocks (the seed's 2048/512): each block's
  /// sign changes and squares once, and a frame adds its `nFFT / hop` blocks' (the changes exactly; the squares in
  /// double, so the float RMS matches the frame-by-frame sum bar a tie). Sign flags and changes four samples at a
  /// time.
  func zcrAndRMSByBlocks(_ yb: UnsafeBufferPointer<Float>, zcr: inout [Double], rms: inout [Float]) {
    let (n, y) = (yb.count, yb.baseAddress!)
    let (hop, half) = (recipe.hopLength, nFFT / 2)
    let blocks = (n + hop - 1) / hop
    var squares = [Double](repeating: 0, count: blocks)
    // changes[b]: sign changes between samples i-1 and i for i in block b (i >= 1).
    var changes = [Int32](repeating: 0, count: blocks)
    // The flag as bits: the sign, and |x| above 1e-10 (an integer comparison of the magnitudes' bit patterns).
    let threshold = SIMD4<UInt32>(repeating: Float(1e-10).bitPattern)
    @inline(__always) func flags(_ v: F4) -> SIMD4<UInt32> {
      let bits = unsafeBitCast(v, to: SIMD4<UInt32>.self)
      return (bits &>> 31) & ((threshold &- (bits & 0x7fff_ffff)) &>> 31)
    }
    for b in 0..<blocks {
      let (first, end) = (b * hop, min(n, (b + 1) * hop))
      var acc = D4()
      var count = SIMD4<UInt32>()
      var i = max(first, 1)  // no change into the first sample (the edge repeats it)
      while i + 4 <= end {
        count &+= flags(loadF4(y + i)) ^ flags(loadF4(y + i - 1))
        i += 4
      }
      while i < end {
        count[0] &+= UInt32(negativeFlag(y[i]) ^ negativeFlag(y[i - 1]))
        i += 1
      }
      var j = first
      while j + 4 <= end {
        let d = widen(loadF4(y + j))
        acc += d * d
        j += 4
      }
      var sum = (acc[0] + acc[1]) + (acc[2] + acc[3])
      while j < end {
        sum += Double(y[j]) * Double(y[j])
        j += 1
      }
      squares[b] = sum
      changes[b] = Int32(count.wrappedSum())
    }
    let span = nFFT / hop
    for t in zcr.indices {
      // Frame t covers blocks t - half/hop ..< t - half/hop + span (zero beyond the clip); its changes are its
      // blocks' but the one into its first sample.
      let firstBlock = t - half / hop
      var sum = 0.0
      var count: Int32 = 0
      for b in firstBlock..<(firstBlock + span) where b >= 0 && b < blocks {
        sum += squares[b]
        count += changes[b]
      }
      let start = firstBlock * hop
      if start >= 1 && start < n { count -= negativeFlag(y[start]) ^ negativeFlag(y[start - 1]) }
      zcr[t] = Double(count) / Double(nFFT)
      rms[t] = Float((sum / Double(nFFT)).squareRoot())
    }
  }
}

/// 1 for a sample below -1e-10 (ZCR's sign, with |x| <= 1e-10 as +0), else 0.
@inline(__always) func negativeFlag(_ v: Float) -> Int32 {
  abs(v) <= 1e-10 ? 0 : Int32(truncatingIfNeeded: v.bitPattern >> 31)
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
