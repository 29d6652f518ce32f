// What a feature row is, shared by everything that reads or writes one, with no audio library beneath it: the
// recipe (how a row is computed and laid out), the seven emotions, and CSV cells as RFC 4180 quotes them. Feature
// files (FeatureStore) and checkpoints (ModelFiles) store the recipe; AudioFeatures computes rows by it.

/// The seven classes, in the order a sorted one-hot encoder gives them.
public let emotions = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]

/// How a row is computed, the one definition every part of sertrain uses: the seed's recipe by default. A clip is
/// `duration` seconds from `offset`, resampled to `sampleRate` (soxr HQ); ZCR and RMS over frames of
/// `frameLength` with hop `hopLength`, and `nMFCC` MFCCs of an `nMels`-band Slaney mel spectrogram in dB (80 dB
/// floor); a row holds `zcr, rms, mfcc` (frame-major) as `layout` places them in `width` values. Feature files and
/// checkpoints store it (`FeatureStore`, `ModelFiles`).
public struct FeatureRecipe: Equatable, Sendable, Codable {
  /// Where a clip's values go in its row.
  public enum Layout: String, Codable, Sendable, CaseIterable {
    /// The seed study's: the clip's ZCR, then its RMS, then its MFCCs frame by frame, the whole row zero-padded. A
    /// clip with fewer frames than a full one starts its RMS and MFCC blocks early, so a column means different
    /// things in different rows.
    case seed
    /// Each block padded to a full clip's frames (`framesPerRow`): ZCR of frame t at t, RMS at F + t, MFCC c at
    /// 2F + t*nMFCC + c, for every clip.
    case aligned
    /// Frame by frame: frame t's values side by side, `zcr, rms, mfcc 0..<nMFCC` at `t*(2+nMFCC)`, a short clip's
    /// missing frames zero at the end. A row is a `framesPerRow x (2+nMFCC)` sequence a convolution over time reads
    /// with the frame's values as channels (`ModelSpec.frames`).
    case frames
  }

  /// The seed's row width (108 frames x 22 values).
  public static let seedWidth = 2376

  public var sampleRate = 22050
  public var offset = 0.6
  public var duration = 2.5
  public var frameLength = 2048
  public var hopLength = 512
  public var nMFCC = 20
  public var nMels = 128
  public var resampler = "soxr_hq"
  public var width = FeatureRecipe.seedWidth
  /// "extract" (computed by sertrain) or "convert" (imported from a CSV whose recipe is assumed to be the seed's).
  public var origin = "extract"
  public var layout = Layout.seed

  public init() {}

  /// A full clip's frames: the frames a row has room for (108 in the seed's).
  public var framesPerRow: Int { width / (2 + nMFCC) }
  /// The values of one frame: ZCR, RMS and the MFCCs (22 in the seed's).
  public var featuresPerFrame: Int { 2 + nMFCC }

  /// The feature (0 ZCR, 1 RMS, 2 + c MFCC c) that each column of a row holds, or nil when the row is not whole
  /// frames. In the seed layout the full clip's placement (a short clip's columns mean other features).
  public var columnFeatures: [Int]? {
    let (f, n) = (framesPerRow, featuresPerFrame)
    guard f > 0, f * n == width else { return nil }
    return (0..<width).map { i in
      switch layout {
      case .frames: return i % n
      case .seed, .aligned: return i < f ? 0 : i < 2 * f ? 1 : 2 + (i - 2 * f) % nMFCC
      }
    }
  }

  /// Files and checkpoints written before a field existed read as the seed's value of it.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    func take<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
      value = try c.decodeIfPresent(T.self, forKey: key) ?? value
    }
    try take(.sampleRate, &sampleRate)
    try take(.offset, &offset)
    try take(.duration, &duration)
    try take(.frameLength, &frameLength)
    try take(.hopLength, &hopLength)
    try take(.nMFCC, &nMFCC)
    try take(.nMels, &nMels)
    try take(.resampler, &resampler)
    try take(.width, &width)
    try take(.origin, &origin)
    try take(.layout, &layout)
  }

  /// The fields that change the numbers in a row (origin does not).
  public func sameFeatures(as other: FeatureRecipe) -> Bool {
    var a = self
    var b = other
    a.origin = ""
    b.origin = ""
    return a == b
  }
}

/// A CSV cell as RFC 4180 writes it: in double quotes, its quotes doubled, when it holds a comma or a quote.
public func csvCell(_ s: String) -> String {
  s.contains(",") || s.contains("\"") ? "\"" + s.replacing("\"", with: "\"\"") + "\"" : s
}

/// The cells of one CSV line as RFC 4180 quotes them: a cell in double quotes may hold the separator, and `""` inside
/// it is one quote.
public func csvCells(_ line: String, separator: Character) -> [String] {
  var cells: [String] = []
  var cell = ""
  var quoted = false
  var chars = line.makeIterator()
  while let c = chars.next() {
    if quoted {
      if c == "\"" {
        // A doubled quote is a quote; a single one ends the quoted part.
        var look = chars
        if look.next() == "\"" {
          cell.append("\"")
          chars = look
        } else {
          quoted = false
        }
      } else {
        cell.append(c)
      }
    } else if c == "\"" && cell.allSatisfy(\.isWhitespace) {
      quoted = true
      cell = ""
    } else if c == separator {
      cells.append(cell)
      cell = ""
    } else {
      cell.append(c)
    }
  }
  cells.append(cell)
  return cells
}
