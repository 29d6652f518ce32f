import Base
import ConvNet
import FeatureStore

/// How rows are divided into train, validation and test.
public enum SplitKind: String, Codable, Sendable, CaseIterable {
  /// Rows shuffled after augmentation, as the seed did: augmented copies of one recording land on both sides
  /// (leakage); for comparison with the seed only.
  case random
  /// Every augmented row of a recording on the same side (the default).
  case recording
  /// Every recording of a speaker on the same side.
  case speaker
}

/// Row membership: 0 train, 1 validation, 2 test, 3 left out (`--limit-rows`).
public struct DataSplit: Equatable, Sendable {
  public var membership: [Int8]
  public init(membership: [Int8]) { self.membership = membership }
  public var train: [Int] { rows(0) }
  public var validation: [Int] { rows(1) }
  public var test: [Int] { rows(2) }
  public func rows(_ part: Int8) -> [Int] { membership.indices.filter { membership[$0] == part } }
  /// Rows of each part: train, validation, test, left out (other values, from a damaged file, are not counted).
  public var sizes: [Int] {
    membership.reduce(into: [0, 0, 0, 0]) { counts, part in if (0..<4).contains(part) { counts[Int(part)] += 1 } }
  }
  public static let names = ["train", "val", "test"]
}

extension DataSplit {
  /// Each row's group, numbered from 0: the row itself (random), its recording, or its speaker (in order of first
  /// appearance).
  public static func groups(_ file: FeatureFile, _ kind: SplitKind) throws -> [Int] {
    switch kind {
    case .random: return Array(0..<file.rowCount)
    case .recording: return file.source.map(Int.init)
    case .speaker: return try groups(file, by: \.speaker, "speaker", unless: "use --split recording or random")
    }
  }

  /// Each row's group by a field of its recording (speaker, corpus), numbered from 0 in order of first appearance;
  /// a file whose recordings lack the field (a converted CSV) is an error that ends with `unless`.
  public static func groups(
    _ file: FeatureFile, by field: KeyPath<RecordingInfo, String>, _ name: String, unless: String
  ) throws -> [Int] {
    let values = try file.recordings().map { $0[keyPath: field] }
    guard !values.isEmpty, values.allSatisfy({ !$0.isEmpty }) else {
      throw Failure(file.path, "has no \(name) for its recordings (a converted CSV): \(unless)")
    }
    var ids: [String: Int] = [:]
    return file.source.map { s in
      let value = values[Int(s)]
      if let id = ids[value] { return id }
      ids[value] = ids.count
      return ids.count - 1
    }
  }

  /// Assigns groups of rows (recordings, speakers, or single rows) to test, validation and train in a shuffled
  /// order drawn from `seed`, until each side holds its fraction of the rows: of each class's rows when every group
  /// has one class (recordings, rows), of all rows for speakers. With `testRows`, those rows are the
  /// test side (`test` is not used) and validation takes its fraction of the others, from groups without test rows.
  /// With `limitRows`, only whole recordings drawn from `seed` up to that many rows take part; the rest are left out.
  public static func make(
    _ file: FeatureFile, kind: SplitKind, validation: Double, test: Double, seed: UInt64, testRows: [Int]? = nil,
    limitRows: Int? = nil
  ) throws -> DataSplit {
    guard let limit = limitRows, limit < file.rowCount else {
      return try make(file, kind: kind, validation: validation, test: test, seed: seed, testRows: testRows, among: nil)
    }
    var recordings: [Int: [Int]] = [:]
    for (row, s) in file.source.enumerated() { recordings[Int(s), default: []].append(row) }
    var rng = RandomStream(seed: seed, stream: [0x11_0175])
    let keys = recordings.keys.sorted()
    var kept: [Int] = []
    for i in rng.permutation(keys.count) where kept.count < limit { kept += recordings[keys[i]]! }
    return try make(
      file, kind: kind, validation: validation, test: test, seed: seed, testRows: testRows, among: Set(kept))
  }

  private static func make(
    _ file: FeatureFile, kind: SplitKind, validation: Double, test: Double, seed: UInt64, testRows: [Int]?,
    among: Set<Int>?
  ) throws -> DataSplit {
    var members: [Int: [Int]] = [:]
    for (row, g) in try groups(file, kind).enumerated() where among?.contains(row) ?? true {
      members[g, default: []].append(row)
    }
    var rng = RandomStream(seed: seed, stream: [0x5_9117])
    let groups = members.keys.sorted()
    let order = rng.permutation(groups.count).map { groups[$0] }
    var membership = [Int8](repeating: among == nil ? 0 : 3, count: file.rowCount)
    for r in testRows ?? [] { membership[r] = 2 }
    // Stratified by class where every group has one class (recordings, rows): each class gives its fractions to
    // test and validation; speakers, which span classes, fill the sides as they come.
    let labels = file.labels
    let oneClass = members.values.allSatisfy { rows in rows.allSatisfy { labels[$0] == labels[rows[0]] } }
    func stratum(_ g: Int) -> Int { oneClass ? Int(labels[members[g]![0]]) : 0 }
    var sizes: [Int: Int] = [:]
    for g in groups where !members[g]!.contains(where: { membership[$0] == 2 }) {
      sizes[stratum(g), default: 0] += members[g]!.count
    }
    var inTest: [Int: Int] = [:]
    var inValidation: [Int: Int] = [:]
    for g in order {
      let rows = members[g]!
      if rows.contains(where: { membership[$0] == 2 }) { continue }
      let c = stratum(g)
      let total = Double(sizes[c]!)  // the stratum's rows outside a fixed test side
      let testTarget = testRows == nil ? Int((total * test).rounded()) : 0
      let validationTarget = Int((total * validation).rounded())
      // The last rows of a class stay in train, however small the class (the targets are rounded).
      let taken = inTest[c, default: 0] + inValidation[c, default: 0]
      let part: Int8
      if taken + rows.count >= sizes[c]! {
        part = 0
      } else if inTest[c, default: 0] < testTarget {
        part = 2
        inTest[c, default: 0] += rows.count
      } else if inValidation[c, default: 0] < validationTarget {
        part = 1
        inValidation[c, default: 0] += rows.count
      } else {
        part = 0
      }
      for r in rows { membership[r] = part }
    }
    return DataSplit(membership: membership)
  }
}
