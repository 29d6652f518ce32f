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
  public var train: [Int] { rows(0) }
  public var validation: [Int] { rows(1) }
  public var test: [Int] { rows(2) }
  public func rows(_ part: Int8) -> [Int] { membership.indices.filter { membership[$0] == part } }
  public static let names = ["train", "val", "test"]
}

extension DataSplit {
  /// Each row's group, numbered from 0: the row itself (random), its recording, or its speaker (in order of first
  /// appearance).
  public static func groups(_ file: FeatureFile, _ kind: SplitKind) throws -> [Int] {
    switch kind {
    case .random: return Array(0..<file.rowCount)
    case .recording: return file.source.map(Int.init)
    case .speaker:
      let speakers = try file.recordings().map(\.speaker)
      guard !speakers.isEmpty, speakers.allSatisfy({ !$0.isEmpty }) else {
        throw Failure(
          file.path, "has no speaker for its recordings (a converted CSV): use --split recording or random")
      }
      var ids: [String: Int] = [:]
      return file.source.map { s in
        let speaker = speakers[Int(s)]
        if let id = ids[speaker] { return id }
        ids[speaker] = ids.count
        return ids.count - 1
      }
    }
  }

  /// Assigns groups of rows (recordings, speakers, or single rows) to test, validation and train in a shuffled
  /// order drawn from `seed`, until each side holds its fraction of the rows. With `testRows`, those rows are the
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
    let n = among?.count ?? file.rowCount
    var rng = RandomStream(seed: seed, stream: [0x5_9117])
    let groups = members.keys.sorted()
    let order = rng.permutation(groups.count).map { groups[$0] }
    var membership = [Int8](repeating: among == nil ? 0 : 3, count: file.rowCount)
    for r in testRows ?? [] { membership[r] = 2 }
    let testTarget = testRows == nil ? Int((Double(n) * test).rounded()) : 0
    let validationTarget = Int((Double(n - (testRows?.count ?? 0)) * validation).rounded())
    var (inTest, inValidation) = (0, 0)
    for g in order {
      let rows = members[g]!
      if rows.contains(where: { membership[$0] == 2 }) { continue }
      let part: Int8
      if inTest < testTarget {
        part = 2
        inTest += rows.count
      } else if inValidation < validationTarget {
        part = 1
        inValidation += rows.count
      } else {
        part = 0
      }
      for r in rows { membership[r] = part }
    }
    return DataSplit(membership: membership)
  }
}
