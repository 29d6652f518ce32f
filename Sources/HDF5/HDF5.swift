// A thin, safe Swift wrapper over the HDF5 C library: files, groups, datasets, attributes, hyperslab reads and
// writes of rows. Every handle is owned by a final class and closed in deinit. HDF5's own error printing is
// switched off; failures become `HDF5Error` values that carry the file, the object and HDF5's error stack.
// Every dataset with data is chunked with HDF5's Fletcher-32 filter, so a flipped bit in it fails the read that
// meets it; `write(_:_:digest:)` adds a SHA-256 of the values, checked by every whole read.
import CHDF5
import CSystem

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - Errors

/// A failed HDF5 call: what was being done, to which object of which file, and HDF5's innermost messages.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
  public let file: String
  public let object: String
  public let operation: String
  public let detail: String

  public var description: String {
    var s = "\(file)"
    if !object.isEmpty { s += ": \(object)" }
    s += ": \(operation) failed"
    if !detail.isEmpty { s += " (\(detail))" }
    return s
  }
}

/// Collects HDF5's error stack (innermost first) into one line, then clears it.
private func takeErrorStack() -> String {
  final class Box { var lines: [String] = [] }
  let box = Box()
  let stack = H5Eget_current_stack()
  guard stack >= 0 else { return "" }
  withExtendedLifetime(box) {
    _ = H5Ewalk2(
      stack, H5E_WALK_UPWARD,
      { _, err, data in
        guard let err, let data else { return 0 }
        let box = Unmanaged<Box>.fromOpaque(data).takeUnretainedValue()
        if let desc = err.pointee.desc {
          var text = String(cString: desc)
          // The file driver's message is a long record; its 'error message' field is the part people need.
          if let r = text.firstRange(of: "error message = '") {
            let rest = text[r.upperBound...]
            text = String(rest.prefix { $0 != "'" })
          }
          text = text.split(whereSeparator: \.isNewline).joined(separator: " ")
          if !text.isEmpty && !box.lines.contains(text) { box.lines.append(text) }
        }
        return 0
      }, Unmanaged.passUnretained(box).toOpaque())
  }
  H5Eclose_stack(stack)
  return box.lines.prefix(3).joined(separator: "; ")
}

/// HDF5's automatic error printing off for the calling thread (HDF5 keeps error stacks per thread, and convert
/// writes on a thread of its own): our errors carry the file, object and HDF5's own words instead. Every public
/// entry point calls it first.
private let quietKey: pthread_key_t = {
  var key = pthread_key_t()
  pthread_key_create(&key, nil)
  return key
}()

@inline(__always) func ensureQuiet() {
  guard pthread_getspecific(quietKey) == nil else { return }
  H5Eset_auto2(sertrain_H5E_DEFAULT(), nil, nil)
  pthread_setspecific(quietKey, UnsafeRawPointer(bitPattern: 1))
}

@discardableResult
func check(_ status: herr_t, _ file: String, _ object: String, _ operation: String) throws -> herr_t {
  if status < 0 {
    throw HDF5Error(file: file, object: object, operation: operation, detail: takeErrorStack())
  }
  return status
}

@discardableResult
func checkID(_ id: hid_t, _ file: String, _ object: String, _ operation: String) throws -> hid_t {
  if id < 0 {
    throw HDF5Error(file: file, object: object, operation: operation, detail: takeErrorStack())
  }
  return id
}

// MARK: - Element types

/// A Swift scalar with a native HDF5 type.
public protocol H5Scalar {
  static var h5Type: hid_t { get }
}
extension Float: H5Scalar { public static var h5Type: hid_t { sertrain_H5T_NATIVE_FLOAT() } }
extension Double: H5Scalar { public static var h5Type: hid_t { sertrain_H5T_NATIVE_DOUBLE() } }
extension Int8: H5Scalar { public static var h5Type: hid_t { sertrain_H5T_NATIVE_INT8() } }
extension Int32: H5Scalar { public static var h5Type: hid_t { sertrain_H5T_NATIVE_INT32() } }
extension Int64: H5Scalar { public static var h5Type: hid_t { sertrain_H5T_NATIVE_INT64() } }

/// An owned handle to a variable-length UTF-8 string type.
final class StringType {
  let id: hid_t
  init() {
    id = H5Tcopy(sertrain_H5T_C_S1())
    H5Tset_size(id, sertrain_H5T_VARIABLE())
    H5Tset_cset(id, H5T_CSET_UTF8)
  }
  deinit { H5Tclose(id) }
}

/// An owned dataspace handle.
final class Dataspace {
  let id: hid_t
  init(id: hid_t) { self.id = id }
  convenience init(dims: [Int], maxDims: [Int]? = nil) {
    if dims.isEmpty {
      self.init(id: H5Screate(H5S_SCALAR))
    } else {
      let d = dims.map { hsize_t($0) }
      let m = maxDims.map { $0.map { $0 < 0 ? sertrain_H5S_UNLIMITED() : hsize_t($0) } }
      self.init(id: H5Screate_simple(Int32(d.count), d, m))
    }
  }
  var dims: [Int] {
    let rank = Int(H5Sget_simple_extent_ndims(id))
    guard rank > 0 else { return [] }
    var d = [hsize_t](repeating: 0, count: rank)
    H5Sget_simple_extent_dims(id, &d, nil)
    return d.map { Int($0) }
  }
  deinit { H5Sclose(id) }
}

// MARK: - Objects: groups (a file is its root group) and datasets

/// What groups and datasets share: a handle, where it is (for messages), and attributes.
public class H5Object {
  public let id: hid_t
  /// The file's path, for messages.
  public let filePath: String
  /// The object's path inside the file, for messages.
  public let name: String
  /// Closes `id` when the object goes (nil: the subclass closes it).
  private let release: ((hid_t) -> herr_t)?

  init(id: hid_t, filePath: String, name: String, close: ((hid_t) -> herr_t)?) {
    (self.id, self.filePath, self.name, self.release) = (id, filePath, name, close)
  }
  deinit { _ = release?(id) }

  // MARK: Attributes

  public func hasAttribute(_ key: String) -> Bool { H5Aexists(id, key) > 0 }

  /// Writes (replacing) a numeric attribute, a scalar when `values` has one element and `scalar` is true.
  public func setAttribute<T: H5Scalar>(_ key: String, _ values: [T], scalar: Bool = false) throws {
    try replaceAttribute(key, type: T.h5Type, dims: scalar ? [] : [values.count]) { a in
      values.withUnsafeBufferPointer { H5Awrite(a, T.h5Type, $0.baseAddress) }
    }
  }
  public func setAttribute<T: H5Scalar>(_ key: String, _ value: T) throws {
    try setAttribute(key, [value], scalar: true)
  }
  public func setAttribute(_ key: String, _ value: Int) throws { try setAttribute(key, [Int64(value)], scalar: true) }

  /// Writes (replacing) a scalar variable-length UTF-8 string attribute.
  public func setAttribute(_ key: String, _ value: String) throws { try setStrings(key, [value], dims: []) }

  /// Writes (replacing) a 1-D attribute of variable-length UTF-8 strings (Keras's `layer_names`,
  /// `weight_names`); an empty list gives an empty attribute.
  public func setAttribute(_ key: String, strings: [String]) throws {
    try setStrings(key, strings, dims: [strings.count])
  }

  private func setStrings(_ key: String, _ strings: [String], dims: [Int]) throws {
    let type = StringType()
    try replaceAttribute(key, type: type.id, dims: dims) { a in
      guard !strings.isEmpty else { return 0 }
      let copies = strings.map { strdup($0) }
      defer { copies.forEach { free($0) } }
      var pointers = copies.map { UnsafePointer<CChar>($0) }
      return H5Awrite(a, type.id, &pointers)
    }
  }

  /// Deletes attribute `key` if there is one, creates it with `type` and `dims`, and fills it with `write`.
  private func replaceAttribute(_ key: String, type: hid_t, dims: [Int], _ write: (hid_t) -> herr_t) throws {
    ensureQuiet()
    if hasAttribute(key) { H5Adelete(id, key) }
    let space = Dataspace(dims: dims)
    let a = try checkID(
      H5Acreate2(id, key, type, space.id, sertrain_H5P_DEFAULT(), sertrain_H5P_DEFAULT()),
      filePath, name, "create attribute '\(key)'")
    defer { H5Aclose(a) }
    _ = try check(write(a), filePath, name, "write attribute '\(key)'")
  }

  func openAttribute(_ key: String) throws -> hid_t {
    ensureQuiet()
    guard hasAttribute(key) else {
      throw HDF5Error(file: filePath, object: name, operation: "read attribute '\(key)'", detail: "no such attribute")
    }
    return try checkID(H5Aopen(id, key, sertrain_H5P_DEFAULT()), filePath, name, "open attribute '\(key)'")
  }

  /// Reads a numeric attribute (scalar or 1-D), converting to `T`.
  public func attribute<T: H5Scalar>(_ key: String, as: T.Type = T.self) throws -> [T] {
    let a = try openAttribute(key)
    defer { H5Aclose(a) }
    let space = Dataspace(id: H5Aget_space(a))
    let n = Int(H5Sget_simple_extent_npoints(space.id))
    let type = H5Aget_type(a)
    defer { H5Tclose(type) }
    guard H5Tget_class(type) == H5T_INTEGER || H5Tget_class(type) == H5T_FLOAT else {
      throw HDF5Error(file: filePath, object: name, operation: "read attribute '\(key)'", detail: "not numeric")
    }
    var out = [T](unsafeUninitializedCapacity: n) { buf, count in
      count = n
      _ = H5Aread(a, T.h5Type, buf.baseAddress)
    }
    if out.count != n { out = [] }
    return out
  }

  /// Reads the first value of a numeric attribute as `T`.
  public func scalarAttribute<T: H5Scalar>(_ key: String, as: T.Type = T.self) throws -> T {
    guard let v = try attribute(key, as: T.self).first else {
      throw HDF5Error(file: filePath, object: name, operation: "read attribute '\(key)'", detail: "empty")
    }
    return v
  }
  public func intAttribute(_ key: String) throws -> Int { Int(try scalarAttribute(key, as: Int64.self)) }
  public func doubleAttribute(_ key: String) throws -> Double { try scalarAttribute(key) }

  /// Reads a string attribute, variable or fixed length (as h5py and Keras write them); an array's strings joined by
  /// newlines.
  public func stringAttribute(_ key: String) throws -> String {
    try stringArrayAttribute(key).joined(separator: "\n")
  }

  /// Reads a string-array attribute (such as Keras's `layer_names`).
  public func stringArrayAttribute(_ key: String) throws -> [String] {
    let a = try openAttribute(key)
    defer { H5Aclose(a) }
    let ftype = H5Aget_type(a)
    defer { H5Tclose(ftype) }
    let space = Dataspace(id: H5Aget_space(a))
    let n = Int(H5Sget_simple_extent_npoints(space.id))
    if n == 0 { return [] }  // h5py writes an empty list as an empty float array
    guard H5Tget_class(ftype) == H5T_STRING else {
      throw HDF5Error(file: filePath, object: name, operation: "read attribute '\(key)'", detail: "not a string")
    }
    return try readStrings(
      count: n, fileType: ftype,
      read: { mem, buf in H5Aread(a, mem, buf) },
      reclaim: { mem, buf in H5Dvlen_reclaim(mem, space.id, sertrain_H5P_DEFAULT(), buf) },
      what: "attribute '\(key)'")
  }

  func readStrings(
    count n: Int, fileType: hid_t, read: (hid_t, UnsafeMutableRawPointer) -> herr_t,
    reclaim: (hid_t, UnsafeMutableRawPointer) -> herr_t, what: String
  ) throws -> [String] {
    if H5Tis_variable_str(fileType) > 0 {
      // HDF5 does not convert between character sets: read in the file's (h5py writes ASCII or UTF-8).
      let mem = StringType()
      H5Tset_cset(mem.id, H5Tget_cset(fileType))
      var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
      try ptrs.withUnsafeMutableBytes { raw in
        _ = try check(read(mem.id, raw.baseAddress!), filePath, name, "read \(what)")
      }
      let out = ptrs.map { $0.map { String(cString: $0) } ?? "" }
      ptrs.withUnsafeMutableBytes { raw in _ = reclaim(mem.id, raw.baseAddress!) }
      return out
    }
    let size = H5Tget_size(fileType)
    let mem = H5Tcopy(sertrain_H5T_C_S1())
    defer { H5Tclose(mem) }
    H5Tset_size(mem, size)
    H5Tset_strpad(mem, H5T_STR_NULLPAD)  // all `size` bytes are text (a NUL-terminated type would drop the last)
    H5Tset_cset(mem, H5Tget_cset(fileType))
    var bytes = [UInt8](repeating: 0, count: n * size)
    try bytes.withUnsafeMutableBytes { raw in
      _ = try check(read(mem, raw.baseAddress!), filePath, name, "read \(what)")
    }
    return (0..<n).map { i in
      let slice = bytes[(i * size)..<((i + 1) * size)]
      let end = slice.firstIndex(of: 0) ?? slice.endIndex
      return String(decoding: bytes[slice.startIndex..<end], as: UTF8.self)
    }
  }

}

/// The names an iteration over links or attributes collects (`H5Object.names`).
private final class NameBox { var names: [String] = [] }

/// An iteration's callback: adds `name` to the `NameBox` behind `box`.
private func collectName(_ name: UnsafePointer<CChar>?, _ box: UnsafeMutableRawPointer?) -> herr_t {
  guard let name, let box else { return 0 }
  Unmanaged<NameBox>.fromOpaque(box).takeUnretainedValue().names.append(String(cString: name))
  return 0
}

extension H5Object {
  /// The names of this object's attributes, in name order.
  public func attributeNames() throws -> [String] {
    try names("list attributes") {
      H5Aiterate2(id, H5_INDEX_NAME, H5_ITER_INC, $0, { _, name, _, box in collectName(name, box) }, $1)
    }
  }

  /// The names an HDF5 iteration gives: `iterate` calls HDF5's with the index and the box `collectName` fills.
  func names(_ operation: String, _ iterate: (UnsafeMutablePointer<hsize_t>, UnsafeMutableRawPointer) -> herr_t)
    throws -> [String]
  {
    ensureQuiet()
    let box = NameBox()
    var idx: hsize_t = 0
    try withExtendedLifetime(box) {
      _ = try check(iterate(&idx, Unmanaged.passUnretained(box).toOpaque()), filePath, name, operation)
    }
    return box.names
  }

  /// A SHA-256 over every attribute but `excluding`, in name order: each name, then its strings (each with its byte
  /// count) or its numbers (as float64 bits), so that a changed, added or removed attribute changes it. Files store
  /// it beside the attributes it covers (`metadata_sha256`) and check it when they are opened.
  public func attributeDigest(excluding: String) throws -> String {
    var bytes: [UInt8] = []
    func append(_ text: String) {
      withUnsafeBytes(of: UInt64(text.utf8.count).littleEndian) { bytes += $0 }
      bytes += text.utf8
    }
    for key in try attributeNames() where key != excluding {
      append(key)
      let a = try openAttribute(key)
      let type = H5Aget_type(a)
      let typeClass = H5Tget_class(type)
      H5Tclose(type)
      H5Aclose(a)
      if typeClass == H5T_STRING {
        bytes.append(UInt8(ascii: "s"))
        for text in try stringArrayAttribute(key) { append(text) }
      } else if typeClass == H5T_INTEGER || typeClass == H5T_FLOAT {
        bytes.append(UInt8(ascii: "n"))
        for v in try attribute(key, as: Double.self) { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
      } else {
        throw HDF5Error(
          file: filePath, object: name, operation: "read attribute '\(key)'", detail: "neither text nor numbers")
      }
    }
    return bytes.withUnsafeBytes { sha256Hex($0) }
  }

  /// Stores `attributeDigest` as attribute `key`: the last attribute to write.
  public func sealAttributes(_ key: String = "metadata_sha256") throws {
    try setAttribute(key, try attributeDigest(excluding: key))
  }

  /// Checks the attributes against the digest `sealAttributes` stored.
  public func verifyAttributes(_ key: String = "metadata_sha256") throws {
    guard hasAttribute(key) else {
      throw HDF5Error(
        file: filePath, object: name, operation: "verify attributes", detail: "no metadata checksum (\(key))")
    }
    guard try stringAttribute(key) == (try attributeDigest(excluding: key)) else {
      throw HDF5Error(
        file: filePath, object: name, operation: "verify attributes",
        detail: "the attributes' SHA-256 is not the one stored with them (\(key)): the file's metadata is corrupt")
    }
  }
}

/// A group: links to groups and datasets. Closed when it goes.
public class H5Group: H5Object {
  init(id: hid_t, filePath: String, name: String) {
    super.init(id: id, filePath: filePath, name: name, close: H5Gclose)
  }
  init(file id: hid_t, path: String) { super.init(id: id, filePath: path, name: "/", close: nil) }

  func childName(_ n: String) -> String { name == "/" ? "/" + n : name + "/" + n }

  // MARK: Links

  public func exists(_ path: String) -> Bool {
    ensureQuiet()
    // Check each component so that a missing intermediate group is not an error.
    var prefix = ""
    for part in path.split(separator: "/") {
      prefix += prefix.isEmpty ? String(part) : "/" + part
      if H5Lexists(id, prefix, sertrain_H5P_DEFAULT()) <= 0 { return false }
    }
    return true
  }

  /// Names of the links directly below this group, in name order.
  public func children() throws -> [String] {
    try names("list members") {
      H5Literate(id, H5_INDEX_NAME, H5_ITER_INC, $0, { _, name, _, box in collectName(name, box) }, $1)
    }
  }

  /// Reads every dataset below this group in full (`H5Dataset.verifiedBytes`); returns how many, their bytes, and
  /// a SHA-256 over their paths and bytes (equal for files whose datasets hold the same values).
  public func verifyContents() throws -> (datasets: Int, bytes: Int, digest: String) {
    var all: [UInt8] = []
    var datasets = 0
    func visit(_ group: H5Group) throws {
      for child in try group.children() {
        if group.isGroup(child) {
          try visit(try group.openGroup(child))
        } else {
          let d = try group.openDataset(child)
          all += Array(d.name.utf8) + [0] + (try d.verifiedBytes())
          datasets += 1
        }
      }
    }
    try visit(self)
    return (datasets, all.count, sha256Hex(all))
  }

  public func isGroup(_ path: String) -> Bool {
    ensureQuiet()
    guard exists(path) else { return false }
    var info = H5O_info_t()
    guard H5Oget_info_by_name2(id, path, &info, UInt32(H5O_INFO_BASIC), sertrain_H5P_DEFAULT()) >= 0 else {
      return false
    }
    return info.type == H5O_TYPE_GROUP
  }

  public func createGroup(_ path: String) throws -> H5Group {
    ensureQuiet()
    let lcpl = H5Pcreate(sertrain_H5P_LINK_CREATE())
    defer { H5Pclose(lcpl) }
    H5Pset_create_intermediate_group(lcpl, 1)
    let g = try checkID(
      H5Gcreate2(id, path, lcpl, sertrain_H5P_DEFAULT(), sertrain_H5P_DEFAULT()),
      filePath, childName(path), "create group")
    return H5Group(id: g, filePath: filePath, name: childName(path))
  }

  public func openGroup(_ path: String) throws -> H5Group {
    ensureQuiet()
    guard exists(path) else {
      throw HDF5Error(file: filePath, object: childName(path), operation: "open group", detail: "not found")
    }
    let g = try checkID(H5Gopen2(id, path, sertrain_H5P_DEFAULT()), filePath, childName(path), "open group")
    return H5Group(id: g, filePath: filePath, name: childName(path))
  }

  /// Opens a dataset. `chunkCacheBytes`: HDF5's cache of decoded chunks for this handle, up to that many bytes (or
  /// the dataset's chunks, if fewer) with a slot for every chunk, so that no two chunks evict each other. Rows read
  /// again come from memory without their chunk's read and checksum (the default cache, 1 MiB, holds three chunks of
  /// a feature file).
  public func openDataset(_ path: String, chunkCacheBytes: Int = 0) throws -> H5Dataset {
    ensureQuiet()
    guard exists(path) else {
      throw HDF5Error(file: filePath, object: childName(path), operation: "open dataset", detail: "not found")
    }
    func open(_ dapl: hid_t) throws -> H5Dataset {
      let d = try checkID(H5Dopen2(id, path, dapl), filePath, childName(path), "open dataset")
      return H5Dataset(id: d, filePath: filePath, name: childName(path))
    }
    // The cache is the open dataset's, set by its first handle: the layout is read through a handle that is closed
    // (at the latest when `layout` returns) before the cached one opens.
    func layout() throws -> (count: Int, bytes: Int)? { try open(sertrain_H5P_DEFAULT()).chunkLayout }
    guard chunkCacheBytes > 0, let chunks = try layout() else { return try open(sertrain_H5P_DEFAULT()) }
    let dapl = H5Pcreate(sertrain_H5P_DATASET_ACCESS())
    defer { H5Pclose(dapl) }
    try check(
      H5Pset_chunk_cache(dapl, max(1, chunks.count), min(chunkCacheBytes, chunks.count * chunks.bytes), 0.75),
      filePath, childName(path), "set the chunk cache")
    return try open(dapl)
  }

  /// Creates a dataset of `T`. `maxDims` entries of -1 are unlimited; `chunk` turns on chunked layout, with a
  /// Fletcher-32 checksum per chunk.
  public func createDataset<T: H5Scalar>(
    _ path: String, of: T.Type, dims: [Int], maxDims: [Int]? = nil, chunk: [Int]? = nil
  ) throws -> H5Dataset {
    ensureQuiet()
    return try createDataset(path, type: T.h5Type, dims: dims, maxDims: maxDims, chunk: chunk)
  }

  func createDataset(_ path: String, type: hid_t, dims: [Int], maxDims: [Int]?, chunk: [Int]?) throws
    -> H5Dataset
  {
    let space = Dataspace(dims: dims, maxDims: maxDims)
    let dcpl = H5Pcreate(sertrain_H5P_DATASET_CREATE())
    defer { H5Pclose(dcpl) }
    if let chunk {
      let c = chunk.map { hsize_t(max(1, $0)) }
      try check(H5Pset_chunk(dcpl, Int32(c.count), c), filePath, childName(path), "set chunking")
      try check(H5Pset_fletcher32(dcpl), filePath, childName(path), "set the Fletcher-32 checksum")
    }
    let lcpl = H5Pcreate(sertrain_H5P_LINK_CREATE())
    defer { H5Pclose(lcpl) }
    H5Pset_create_intermediate_group(lcpl, 1)
    let d = try checkID(
      H5Dcreate2(id, path, type, space.id, lcpl, dcpl, sertrain_H5P_DEFAULT()),
      filePath, childName(path), "create dataset")
    return H5Dataset(id: d, filePath: filePath, name: childName(path))
  }

  /// Writes a whole 1-D (or shaped) numeric dataset in one call, in checksummed chunks of up to 1 MiB; `digest`
  /// stores a SHA-256 of the values (attribute `sha256`) that `read` and `readAll` check.
  @discardableResult
  public func write<T: H5Scalar>(_ path: String, _ values: [T], shape: [Int]? = nil, digest: Bool = false) throws
    -> H5Dataset
  {
    ensureQuiet()
    let dims = shape ?? [values.count]
    precondition(dims.reduce(1, *) == values.count, "shape \(dims) does not hold \(values.count) values")
    let d = try createDataset(
      path, of: T.self, dims: dims, chunk: chunkShape(dims, elementSize: MemoryLayout<T>.size))
    try d.writeAll(values)
    if digest {
      try d.setAttribute("sha256", sha256Hex(values))
    }
    return d
  }

  /// Writes a 1-D dataset of fixed-length UTF-8 strings (padded with NULs to the longest; chunked and checksummed
  /// like numbers, where variable-length strings would live unchecked in HDF5's global heap).
  @discardableResult
  public func write(_ path: String, strings: [String]) throws -> H5Dataset {
    ensureQuiet()
    let width = max(1, strings.map(\.utf8.count).max() ?? 1)
    let type = H5Tcopy(sertrain_H5T_C_S1())
    defer { H5Tclose(type) }
    H5Tset_size(type, width)
    H5Tset_strpad(type, H5T_STR_NULLPAD)
    H5Tset_cset(type, H5T_CSET_UTF8)
    let d = try createDataset(
      path, type: type, dims: [strings.count], maxDims: nil, chunk: chunkShape([strings.count], elementSize: width))
    if strings.isEmpty { return d }
    var bytes = [UInt8](repeating: 0, count: strings.count * width)
    for (i, s) in strings.enumerated() { bytes.replaceSubrange((i * width)..<(i * width + s.utf8.count), with: s.utf8) }
    try check(
      H5Dwrite(d.id, type, sertrain_H5S_ALL(), sertrain_H5S_ALL(), sertrain_H5P_DEFAULT(), bytes),
      filePath, d.name, "write strings")
    return d
  }

  /// Reads a whole numeric dataset, converting to `T`.
  public func read<T: H5Scalar>(_ path: String, as: T.Type = T.self) throws -> [T] {
    ensureQuiet()
    return try openDataset(path).readAll(as: T.self)
  }

  /// Removes the link `path` (a dataset or group) from the file.
  public func remove(_ path: String) throws {
    ensureQuiet()
    _ = try check(H5Ldelete(id, path, sertrain_H5P_DEFAULT()), filePath, childName(path), "remove")
  }

  /// Reads a whole 1-D dataset stored as `T` exactly (no conversion: a float64 or int32 `parameters` is an error,
  /// not silently converted), with its values checked against its `sha256` attribute, which `digest` requires.
  public func readExactly<T: H5Scalar>(_ path: String, as: T.Type = T.self, digest: Bool) throws -> [T] {
    ensureQuiet()
    let d = try openDataset(path)
    let stored = H5Dget_type(d.id)
    defer { H5Tclose(stored) }
    func fail(_ detail: String) -> HDF5Error {
      HDF5Error(file: filePath, object: d.name, operation: "read", detail: detail)
    }
    guard H5Tequal(stored, T.h5Type) > 0 else {
      throw fail(
        "stored as another type (\(H5Tget_size(stored)) bytes, class \(H5Tget_class(stored).rawValue)); "
          + "expected \(T.self)")
    }
    guard d.shape.count == 1 else { throw fail("has shape \(d.shape); expected one dimension") }
    if digest && !d.hasAttribute("sha256") { throw fail("has no SHA-256 (attribute sha256) of its values") }
    return try d.readAll(as: T.self)
  }

  /// Reads a 1-D string dataset.
  public func readStrings(_ path: String) throws -> [String] {
    ensureQuiet()
    return try openDataset(path).readStrings()
  }
}

/// An open HDF5 file. Closing happens in deinit (or `close()`), after every object opened from it.
public final class H5File: H5Group {
  public enum Mode { case readOnly, readWrite }
  private var open = true

  /// Opens an existing file. `locking: false` disables HDF5's file locks (NFS, Lustre); nil follows
  /// `HDF5_USE_FILE_LOCKING` as the library does.
  public init(path: String, mode: Mode = .readOnly, locking: Bool? = nil) throws {
    ensureQuiet()
    guard access(path, F_OK) == 0 else {
      throw HDF5Error(file: path, object: "", operation: "open", detail: "no such file")
    }
    let fapl = try H5File.accessList(locking: locking, path: path)
    defer { H5Pclose(fapl) }
    if H5Fis_hdf5(path) <= 0 {
      _ = takeErrorStack()
      throw HDF5Error(file: path, object: "", operation: "open", detail: "not an HDF5 file")
    }
    let flags = mode == .readOnly ? sertrain_H5F_ACC_RDONLY() : sertrain_H5F_ACC_RDWR()
    super.init(file: try checkID(H5Fopen(path, flags, fapl), path, "", "open"), path: path)
  }

  /// Creates (truncating) a file.
  public init(creating path: String, locking: Bool? = nil) throws {
    ensureQuiet()
    let fapl = try H5File.accessList(locking: locking, path: path)
    defer { H5Pclose(fapl) }
    super.init(
      file: try checkID(H5Fcreate(path, sertrain_H5F_ACC_TRUNC(), sertrain_H5P_DEFAULT(), fapl), path, "", "create"),
      path: path)
  }

  static func accessList(locking: Bool?, path: String) throws -> hid_t {
    let fapl = H5Pcreate(sertrain_H5P_FILE_ACCESS())
    // The 1.10 formats, which checksum all metadata, chunk indexes included (with 1.8's, a flipped bit in a
    // chunk's B-tree key could change values unnoticed); h5py and Keras read them.
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110)
    if let locking {
      try check(H5Pset_file_locking(fapl, locking, true), path, "", "set file locking")
    }
    return fapl
  }

  /// Flushes HDF5's buffers to the operating system.
  public func flush() throws {
    ensureQuiet()
    try check(H5Fflush(id, H5F_SCOPE_GLOBAL), filePath, "", "flush")
  }

  /// Closes the file now; further use is an error. Throws if HDF5 could not write what it held.
  public func close() throws {
    ensureQuiet()
    guard open else { return }
    open = false
    try check(H5Fclose(id), filePath, "", "close")
  }

  deinit { if open { H5Fclose(id) } }
}

// MARK: - Datasets

/// A dataset: numeric N-D or 1-D strings. Row operations work on the first dimension.
public final class H5Dataset: H5Object {
  init(id: hid_t, filePath: String, name: String) {
    super.init(id: id, filePath: filePath, name: name, close: H5Dclose)
  }

  public var shape: [Int] { Dataspace(id: H5Dget_space(id)).dims }
  public var count: Int { shape.reduce(1, *) }

  /// For a chunked dataset, how many chunks cover its extent and the bytes of one in memory; nil otherwise.
  var chunkLayout: (count: Int, bytes: Int)? {
    guard let dims = chunkDims else { return nil }
    let type = H5Dget_type(id)
    defer { H5Tclose(type) }
    let count = zip(shape, dims).reduce(1) { $0 * (($1.0 + $1.1 - 1) / max(1, $1.1)) }
    return (count, dims.reduce(H5Tget_size(type), *))
  }

  /// A chunked dataset's chunk shape; nil for other layouts.
  var chunkDims: [Int]? {
    let dcpl = H5Dget_create_plist(id)
    defer { H5Pclose(dcpl) }
    let rank = Int(H5Pget_chunk(dcpl, 0, nil))
    guard rank >= 1 else { return nil }
    var dims = [hsize_t](repeating: 0, count: rank)
    H5Pget_chunk(dcpl, Int32(rank), &dims)
    return dims.map(Int.init)
  }

  /// The bytes of HDF5's chunk cache for this handle (`H5Group.openDataset`'s `chunkCacheBytes`, or the file's
  /// default).
  public var chunkCacheBytes: Int {
    let dapl = H5Dget_access_plist(id)
    defer { H5Pclose(dapl) }
    var (slots, bytes, w0) = (0, 0, 0.0)
    H5Pget_chunk_cache(dapl, &slots, &bytes, &w0)
    return bytes
  }

  public func readAll<T: H5Scalar>(as: T.Type = T.self) throws -> [T] {
    ensureQuiet()
    let n = count
    var out = [T]()
    out.reserveCapacity(n)
    var failed: herr_t = 0
    out = [T](unsafeUninitializedCapacity: n) { buf, c in
      failed =
        n == 0
        ? 0 : H5Dread(id, T.h5Type, sertrain_H5S_ALL(), sertrain_H5S_ALL(), sertrain_H5P_DEFAULT(), buf.baseAddress)
      c = n
    }
    try check(failed, filePath, name, "read")
    try verifyDigest(out)
    return out
  }

  /// Checks the values read against the dataset's `sha256` attribute, when it has one (and `T` is its type).
  private func verifyDigest<T: H5Scalar>(_ values: [T]) throws {
    let stored = H5Dget_type(id)
    defer { H5Tclose(stored) }
    guard H5Tequal(stored, T.h5Type) > 0 else { return }
    try values.withUnsafeBytes { try verifyDigest($0) }
  }

  private func verifyDigest(_ bytes: UnsafeRawBufferPointer) throws {
    guard H5Aexists(id, "sha256") > 0 else { return }
    let expected = try stringAttribute("sha256")
    guard sha256Hex(bytes) == expected else {
      throw HDF5Error(
        file: filePath, object: name, operation: "verify",
        detail: "the values' SHA-256 is not the one stored with them: the file is corrupt")
    }
  }

  /// The whole dataset's bytes as stored (strings: their UTF-8, each ended by a NUL), read in full so that every
  /// chunk's checksum and the stored SHA-256, if any, are checked.
  public func verifiedBytes() throws -> [UInt8] {
    ensureQuiet()
    let type = H5Dget_type(id)
    defer { H5Tclose(type) }
    if H5Tget_class(type) == H5T_STRING {
      return try readStrings().flatMap { Array($0.utf8) + [0] }
    }
    let n = count * H5Tget_size(type)
    var bytes = [UInt8](repeating: 0, count: n)
    if n > 0 {
      try check(
        H5Dread(id, type, sertrain_H5S_ALL(), sertrain_H5S_ALL(), sertrain_H5P_DEFAULT(), &bytes), filePath, name,
        "read")
    }
    try bytes.withUnsafeBytes { try verifyDigest($0) }
    return bytes
  }

  public func writeAll<T: H5Scalar>(_ values: [T]) throws {
    ensureQuiet()
    guard count == values.count else {
      throw HDF5Error(
        file: filePath, object: name, operation: "write",
        detail: "dataset holds \(count) values, got \(values.count)")
    }
    if values.isEmpty { return }
    try values.withUnsafeBufferPointer {
      _ = try check(
        H5Dwrite(id, T.h5Type, sertrain_H5S_ALL(), sertrain_H5S_ALL(), sertrain_H5P_DEFAULT(), $0.baseAddress),
        filePath, name, "write")
    }
  }

  /// Reads a 1-D string dataset (variable or fixed length).
  public func readStrings() throws -> [String] {
    ensureQuiet()
    let ftype = H5Dget_type(id)
    defer { H5Tclose(ftype) }
    guard H5Tget_class(ftype) == H5T_STRING else {
      throw HDF5Error(file: filePath, object: name, operation: "read strings", detail: "not a string dataset")
    }
    let space = Dataspace(id: H5Dget_space(id))
    let n = Int(H5Sget_simple_extent_npoints(space.id))
    if n == 0 { return [] }
    return try readStrings(
      count: n, fileType: ftype,
      read: { mem, buf in H5Dread(id, mem, sertrain_H5S_ALL(), sertrain_H5S_ALL(), sertrain_H5P_DEFAULT(), buf) },
      reclaim: { mem, buf in H5Dvlen_reclaim(mem, space.id, sertrain_H5P_DEFAULT(), buf) },
      what: "strings")
  }

  /// Elements per row (the product of all dimensions but the first).
  public var rowSize: Int { shape.dropFirst().reduce(1, *) }

  private func rowSelection(_ rows: Range<Int>) throws -> (file: Dataspace, memory: Dataspace) {
    let dims = shape
    guard let n = dims.first, rows.lowerBound >= 0, rows.upperBound <= n else {
      throw HDF5Error(
        file: filePath, object: name, operation: "select rows \(rows.lowerBound)..<\(rows.upperBound)",
        detail: "dataset has \(dims.first ?? 0) rows")
    }
    let fileSpace = Dataspace(id: H5Dget_space(id))
    var start = [hsize_t](repeating: 0, count: dims.count)
    start[0] = hsize_t(rows.lowerBound)
    var cnt = dims.map { hsize_t($0) }
    cnt[0] = hsize_t(rows.count)
    try check(
      H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, start, nil, cnt, nil), filePath, name, "select rows")
    return (fileSpace, Dataspace(dims: cnt.map { Int($0) }))
  }

  /// Reads rows `rows` into `buffer` (rows.count * rowSize elements), reading nothing else from disk.
  public func readRows<T: H5Scalar>(_ rows: Range<Int>, into buffer: UnsafeMutableBufferPointer<T>) throws {
    ensureQuiet()
    if rows.isEmpty { return }
    precondition(buffer.count >= rows.count * rowSize)
    let (fs, ms) = try rowSelection(rows)
    try check(
      H5Dread(id, T.h5Type, ms.id, fs.id, sertrain_H5P_DEFAULT(), buffer.baseAddress), filePath, name,
      "read rows \(rows.lowerBound)..<\(rows.upperBound)")
  }

  public func readRows<T: H5Scalar>(_ rows: Range<Int>, as: T.Type = T.self) throws -> [T] {
    ensureQuiet()
    let n = rows.count * rowSize
    var out = [T](repeating: T.zeroValue, count: n)
    try out.withUnsafeMutableBufferPointer { try readRows(rows, into: $0) }
    return out
  }

  /// Grows the first dimension to `rows` if it is shorter.
  private func extend(toRows rows: Int) throws {
    var dims = shape
    guard rows > dims[0] else { return }
    dims[0] = rows
    try check(H5Dset_extent(id, dims.map { hsize_t($0) }), filePath, name, "extend to \(rows) rows")
  }

  /// Writes rows starting at `start` (extending an unlimited dataset if needed).
  public func writeRows<T: H5Scalar>(at start: Int, _ buffer: UnsafeBufferPointer<T>) throws {
    ensureQuiet()
    let rs = rowSize
    precondition(rs > 0 && buffer.count % rs == 0)
    let n = buffer.count / rs
    if n == 0 { return }
    try extend(toRows: start + n)
    let (fs, ms) = try rowSelection(start..<(start + n))
    try check(
      H5Dwrite(id, T.h5Type, ms.id, fs.id, sertrain_H5P_DEFAULT(), buffer.baseAddress), filePath, name,
      "write rows \(start)..<\(start + n)")
  }
}

extension H5Dataset {
  /// The rows of one chunk when this dataset's chunks are whole rows whose only filter is Fletcher-32 and whose
  /// stored type is `T`'s (so that a chunk's bytes are the rows' bytes); else nil.
  func directChunkRows<T: H5Scalar>(_: T.Type) -> Int? {
    let dcpl = H5Dget_create_plist(id)
    defer { H5Pclose(dcpl) }
    let type = H5Dget_type(id)
    defer { H5Tclose(type) }
    guard let dims = chunkDims, H5Pget_nfilters(dcpl) == 1, H5Tequal(type, T.h5Type) > 0 else { return nil }
    var flags: UInt32 = 0
    var values = 0
    guard H5Pget_filter2(dcpl, 0, &flags, &values, nil, 0, nil, nil) == H5Z_FILTER_FLETCHER32 else { return nil }
    guard Array(dims.dropFirst()) == Array(shape.dropFirst()) else { return nil }
    return dims[0]
  }

  /// Writes rows from `start`, a chunk boundary: the whole chunks among them straight into the file, each with its
  /// Fletcher-32 (`sertrain_fletcher32`, vectorised, where HDF5 adds a word at a time) appended as the filter would
  /// (H5Dwrite_chunk: no copy through HDF5's chunk cache and filter pipeline, which convert paid for: BENCHMARKS.md),
  /// the rest through `writeRows`. Datasets of other layouts are written through `writeRows` alone.
  public func writeRowsByChunk<T: H5Scalar>(at start: Int, _ buffer: UnsafeBufferPointer<T>) throws {
    ensureQuiet()
    let rs = rowSize
    precondition(rs > 0 && buffer.count % rs == 0)
    let n = buffer.count / rs
    guard let c = directChunkRows(T.self), start % c == 0, n >= c else { return try writeRows(at: start, buffer) }
    let whole = n / c * c
    try extend(toRows: start + whole)
    let bytes = c * rs * MemoryLayout<T>.stride
    let chunk = UnsafeMutableRawPointer.allocate(byteCount: bytes + 4, alignment: 64)
    defer { chunk.deallocate() }
    var offset = [hsize_t](repeating: 0, count: shape.count)
    for row in Swift.stride(from: 0, to: whole, by: c) {
      chunk.copyMemory(from: buffer.baseAddress! + row * rs, byteCount: bytes)
      chunk.storeBytes(of: sertrain_fletcher32(chunk, UInt(bytes)).littleEndian, toByteOffset: bytes, as: UInt32.self)
      offset[0] = hsize_t(start + row)
      try check(
        H5Dwrite_chunk(id, sertrain_H5P_DEFAULT(), 0, offset, bytes + 4, chunk), filePath, name,
        "write rows \(start + row)..<\(start + row + c)")
    }
    if whole < n { try writeRows(at: start + whole, UnsafeBufferPointer(rebasing: buffer[(whole * rs)...])) }
  }
}

/// Chunks of whole rows of at most 1 MiB (at least one row), or none for an empty dataset (contiguous, no data).
func chunkShape(_ dims: [Int], elementSize: Int) -> [Int]? {
  guard let rows = dims.first, rows > 0, dims.allSatisfy({ $0 > 0 }) else { return nil }
  let rowBytes = dims.dropFirst().reduce(elementSize, *)
  return [min(rows, max(1, (1 << 20) / rowBytes))] + dims.dropFirst()
}

/// The SHA-256 of the values' bytes, as 64 lowercase hex digits.
public func sha256Hex<T>(_ values: [T]) -> String { values.withUnsafeBytes { sha256Hex($0) } }

public func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
  var digest = [UInt8](repeating: 0, count: 32)
  sertrain_sha256(bytes.baseAddress, UInt(bytes.count), &digest)
  let hex = Array("0123456789abcdef".utf8)
  return String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
}

extension H5Scalar {
  static var zeroValue: Self {
    withUnsafeTemporaryAllocation(of: Self.self, capacity: 1) { p in
      UnsafeMutableRawPointer(p.baseAddress!).initializeMemory(
        as: UInt8.self, repeating: 0, count: MemoryLayout<Self>.size)
      return p[0]
    }
  }
}
