import Base
import FoundationEssentials

#if canImport(Glibc)
  import Glibc
#endif

/// TensorBoard's event files for a run, as Keras's `TensorBoard` callback lays them out: `RUN_DIR/tensorboard/train`
/// and `.../validation`, each an `events.out.tfevents.*` file of TFRecords (a length, its masked CRC-32C, an `Event`
/// protocol buffer, its masked CRC-32C). Scalars per epoch under Keras's tags (`epoch_loss`, `epoch_accuracy`,
/// `epoch_learning_rate`) and the running loss every `everySteps` steps (`batch_loss`, by global step).
///
/// The five fields of the two messages written here are encoded directly (`Event.wall_time`, `step`,
/// `file_version`, `summary`; `Summary.Value.tag`, `simple_value`): a protocol-buffer library would bring a
/// generated schema and a plugin build for two messages that TensorBoard's own reader checks in the tests
/// (`Tests/Shell/tensorboard.sh`).
final class TensorBoardWriter {
  private var files: [String: UnsafeMutablePointer<FILE>] = [:]
  let directory: String
  let everySteps: Int

  /// Opens new event files in `runDir/tensorboard/{train,validation}` (a resumed run adds files beside the old ones;
  /// TensorBoard reads them all).
  init(runDir: String, everySteps: Int = 10) throws {
    directory = runDir + "/tensorboard"
    self.everySteps = everySteps
    let stamp = Int(unixTime())
    let host = hostName().filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
    for part in ["train", "validation"] {
      try makeDirectories(directory + "/" + part)
      let path = "\(directory)/\(part)/events.out.tfevents.\(stamp).\(host).\(getpid()).sertrain"
      guard let f = fopen(path, "ab") else {
        throw Failure(path, "cannot write TensorBoard's events: \(String(cString: strerror(errno)))")
      }
      files[part] = f
      write(part, event(wallTime: unixTime(), step: 0, fileVersion: "brain.Event:2"))
    }
    flush()
  }

  deinit { for f in files.values { fclose(f) } }

  /// The epoch's metrics (`epoch` counted from 1, as Keras's callback counts from 0: the step is `epoch - 1`).
  func epoch(_ row: HistoryRow) {
    let step = Int64(row.epoch - 1)
    var train = [("epoch_loss", row.loss), ("epoch_accuracy", row.accuracy), ("epoch_learning_rate", row.learningRate)]
    train = train.filter { $0.1.isFinite }
    write("train", event(wallTime: row.end ?? unixTime(), step: step, scalars: train))
    let validation = [("epoch_loss", row.valLoss), ("epoch_accuracy", row.valAccuracy)].compactMap { tag, value in
      value.map { (tag, $0) }
    }
    if !validation.isEmpty {
      write("validation", event(wallTime: row.end ?? unixTime(), step: step, scalars: validation))
    }
    flush()
  }

  /// The running loss of the epoch so far, at `globalStep` (every `everySteps` steps).
  func step(_ globalStep: Int, loss: Double) {
    guard everySteps > 0, globalStep % everySteps == 0, loss.isFinite else { return }
    write("train", event(wallTime: unixTime(), step: Int64(globalStep), scalars: [("batch_loss", loss)]))
  }

  func flush() { for f in files.values { fflush(f) } }

  private func write(_ part: String, _ record: [UInt8]) {
    guard let f = files[part] else { return }
    var framed: [UInt8] = []
    let length = withUnsafeBytes(of: UInt64(record.count).littleEndian) { Array($0) }
    framed += length
    framed += littleEndian(maskedCRC32C(length))
    framed += record
    framed += littleEndian(maskedCRC32C(record))
    _ = fwrite(framed, 1, framed.count, f)
  }

  // MARK: Protocol buffers (wire format: a key `field << 3 | type`, then the value)

  private func event(
    wallTime: Double, step: Int64, fileVersion: String? = nil, scalars: [(String, Double)] = []
  ) -> [UInt8] {
    var out: [UInt8] = [0x09] + withUnsafeBytes(of: wallTime.bitPattern.littleEndian) { Array($0) }  // 1: double
    out += [0x10] + varint(UInt64(bitPattern: step))  // 2: int64
    if let fileVersion { out += lengthDelimited(3, Array(fileVersion.utf8)) }
    if !scalars.isEmpty {
      let values = scalars.flatMap { tag, value in
        // Summary.Value: 1 tag (string), 2 simple_value (float).
        lengthDelimited(1, lengthDelimited(1, Array(tag.utf8)) + [0x15] + littleEndian(Float(value).bitPattern))
      }
      out += lengthDelimited(5, values)  // 5: Summary
    }
    return out
  }

  private func lengthDelimited(_ field: UInt64, _ bytes: [UInt8]) -> [UInt8] {
    varint(field << 3 | 2) + varint(UInt64(bytes.count)) + bytes
  }

  private func varint(_ value: UInt64) -> [UInt8] {
    var (v, out) = (value, [UInt8]())
    repeat {
      out.append(UInt8(v & 0x7f) | (v > 0x7f ? 0x80 : 0))
      v >>= 7
    } while v > 0
    return out
  }

  private func littleEndian(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

/// TFRecord's checksum: CRC-32C (Castagnoli), rotated right by 15 bits plus 0xa282ead8.
func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
  let crc = crc32c(bytes)
  return ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `bytes`.
func crc32c(_ bytes: [UInt8]) -> UInt32 {
  var crc: UInt32 = 0xffff_ffff
  for b in bytes { crc = crc32cTable[Int((crc ^ UInt32(b)) & 0xff)] ^ (crc >> 8) }
  return ~crc
}

private let crc32cTable: [UInt32] = (0..<256).map { i in
  var c = UInt32(i)
  for _ in 0..<8 { c = c & 1 != 0 ? 0x82f6_3b78 ^ (c >> 1) : c >> 1 }
  return c
}
