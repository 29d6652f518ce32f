#if canImport(Glibc)
  import Glibc
#endif

/// Zero-initialised storage of plain values (float32, or the bfloat16 kernels' packed `UInt16`s) with a stable,
/// 64-byte aligned address, owned by a class so that layers can keep raw pointers into it for the storage's lifetime.
public final class AlignedBuffer<Element> {
  public let count: Int
  public let pointer: UnsafeMutablePointer<Element>

  public init(count: Int) {
    self.count = count
    var raw: UnsafeMutableRawPointer?
    let bytes = max(count, 1) * MemoryLayout<Element>.stride
    guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
      fatalError("out of memory allocating \(bytes) bytes")
    }
    memset(raw, 0, bytes)
    pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
  }

  deinit { free(pointer) }

  public var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: pointer, count: count) }

  public func zero() { memset(pointer, 0, count * MemoryLayout<Element>.stride) }

  public func copy(from other: UnsafeBufferPointer<Element>) {
    precondition(other.count == count, "copying \(other.count) values into a buffer of \(count)")
    if count > 0 { pointer.update(from: other.baseAddress!, count: count) }
  }

  public var array: [Element] { Array(buffer) }
}

/// The network's parameters, gradients, activations and scratch.
public typealias FloatBuffer = AlignedBuffer<Float>

/// One named tensor inside a flat buffer: `name` is `layer/variable` (Keras's names, e.g. `conv1/kernel`).
public struct ParameterView: Equatable, Sendable {
  public var name: String
  public var shape: [Int]
  public var offset: Int
  public var count: Int { shape.reduce(1, *) }

  public init(name: String, shape: [Int], offset: Int) {
    self.name = name
    self.shape = shape
    self.offset = offset
  }

  public var layer: String { String(name.split(separator: "/").first ?? "") }
  public var variable: String { String(name.split(separator: "/").last ?? "") }
}

/// The layout of a flat buffer: views in order, packed without gaps.
public struct ParameterLayout: Equatable, Sendable {
  public private(set) var views: [ParameterView] = []
  public private(set) var count = 0

  public init() {}

  /// Appends a view and returns its offset.
  @discardableResult
  public mutating func append(_ name: String, shape: [Int]) -> Int {
    let view = ParameterView(name: name, shape: shape, offset: count)
    views.append(view)
    count += view.count
    return view.offset
  }

  public subscript(name: String) -> ParameterView? { views.first { $0.name == name } }
}
