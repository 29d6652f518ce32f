// Communication between ranks: an MPI implementation and a single-process one with the same interface.
import Base
import CMPI

#if canImport(Glibc)
  import Glibc
#endif

/// The operations training needs: in-place sum allreduce, broadcast, barrier.
public protocol Communicator: AnyObject {
  var rank: Int { get }
  var size: Int { get }
  /// Sums `buffer` elementwise over all ranks, in place.
  func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>)
  /// Starts summing `buffer` over all ranks in place (MPI_Iallreduce, in pieces), on a communicator of its own so
  /// that these reductions never wait on the order of the blocking collectives issued meanwhile; every rank starts
  /// the same buffers in the same order. `progressReductions` advances them where MPI has no thread support;
  /// `finishReductions` waits for all.
  func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>)
  func progressReductions()
  func finishReductions()
  func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>)
  /// Copies root's bytes to every rank.
  func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int)
  func barrier()
  /// Every rank's bytes, in rank order, on root (empty elsewhere).
  func gather(_ bytes: [UInt8], root: Int) -> [[UInt8]]
  /// Ends every rank of the job with `code` (MPI_Abort); a single process just exits.
  func abort(code: Int32) -> Never
  /// The ranks of the same `color` as a communicator of their own, in rank order (`MPI_Comm_split`); every rank
  /// calls it.
  func split(color: Int) -> Communicator
}

extension Communicator {
  public var isRoot: Bool { rank == 0 }

  /// This rank's share of `items`: positions rank, rank + size, ... (every rank's share is as long as any other's, or
  /// one shorter).
  public func share<C: RandomAccessCollection>(_ items: C) -> [C.Element] where C.Index == Int {
    Swift.stride(from: items.startIndex + rank, to: items.endIndex, by: size).map { items[$0] }
  }

  public func allreduceSum(_ values: inout [Double]) {
    values.withUnsafeMutableBufferPointer { allreduceSum($0) }
  }

  /// `value` summed over all ranks.
  public func sum(_ value: Double) -> Double {
    var values = [value]
    allreduceSum(&values)
    return values[0]
  }

  /// Broadcasts a value of trivial layout from root.
  public func broadcast<T: BitwiseCopyable>(_ value: inout T, root: Int = 0) {
    withUnsafeMutableBytes(of: &value) { broadcast($0, root: root) }
  }

  /// Broadcasts a string from root (length first, then bytes).
  public func broadcast(_ s: inout String, root: Int = 0) {
    var bytes = Array(s.utf8)
    var n = bytes.count
    broadcast(&n, root: root)
    if rank != root { bytes = [UInt8](repeating: 0, count: n) }
    bytes.withUnsafeMutableBytes { broadcast($0, root: root) }
    s = String(decoding: bytes, as: UTF8.self)
  }

  /// What rank 0 decides, for every rank: `body` runs on rank 0 and its value is broadcast; an error it throws is
  /// every rank's, thrown as an `AgreedFailure` that carries rank 0's message (no rank aborts, none waits).
  public func decidedByRoot<T: Codable>(_ body: () throws -> T) throws -> T {
    var text = ""
    if rank == 0 {
      do { text = "value " + jsonText(try body()) } catch { text = "error \(error)" }
    }
    broadcast(&text, root: 0)
    guard text.hasPrefix("value "), let value = try? decodeJSON(T.self, from: String(text.dropFirst(6))) else {
      throw AgreedFailure(rank == 0 ? String(text.dropFirst(6)) : nil)
    }
    return value
  }

  /// Rank 0's verdict on `body`, for every rank: it returns on all ranks or throws rank 0's error on all of them.
  public func decidedByRoot(_ body: () throws -> Void) throws {
    _ = try decidedByRoot { () throws -> Bool in
      try body()
      return true
    }
  }
}

/// One process, no MPI: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {}
  public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {}
  public func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {}
  public func progressReductions() {}
  public func finishReductions() {}
  public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {}
  public func barrier() {}
  public func gather(_ bytes: [UInt8], root: Int) -> [[UInt8]] { [bytes] }
  public func abort(code: Int32) -> Never { exit(code) }
  public func split(color: Int) -> Communicator { self }
}

/// MPI_COMM_WORLD. MPI is initialised once per process and finalised at exit.
public final class MPICommunicator: Communicator {
  public let rank: Int
  public let size: Int
  private let comm: MPI_Comm
  /// The nonblocking reductions, on a duplicate of `comm`.
  private let progress: ReductionProgress

  nonisolated(unsafe) private static var shared: MPICommunicator?
  nonisolated(unsafe) private static var threadMultiple = false

  /// The world communicator, initialising MPI on first use.
  public static func world() -> MPICommunicator {
    if let s = shared { return s }
    var initialized: Int32 = 0
    MPI_Initialized(&initialized)
    if initialized == 0 {
      // Multiple: a thread of ours drives the nonblocking reductions while the main one computes.
      var provided: Int32 = 0
      MPI_Init_thread(nil, nil, sertrain_MPI_THREAD_MULTIPLE(), &provided)
      threadMultiple = provided >= sertrain_MPI_THREAD_MULTIPLE()
      atexit {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if finalized == 0 { MPI_Finalize() }
      }
    }
    let c = MPICommunicator(comm: sertrain_MPI_COMM_WORLD())
    shared = c
    return c
  }

  public func split(color: Int) -> Communicator {
    var part: MPI_Comm?
    MPI_Comm_split(comm, Int32(color), Int32(rank), &part)
    return MPICommunicator(comm: part!, owned: true)
  }

  /// A part that `split` made frees its two handles (its own and the duplicate for the nonblocking reductions) when
  /// its last reference goes, on every rank of it at the same point (`cv` drops its groups' as it returns, so that
  /// `cv --repeats` does not accumulate them); the world's live as long as MPI.
  private let owned: Bool

  /// MPI's table index of the communicator (its Fortran handle): a freed communicator's index is given to the next
  /// one made, which is how a test sees that `split`'s parts are freed.
  public var handleIndex: Int { Int(MPI_Comm_c2f(comm)) }

  deinit {
    var finalized: Int32 = 0
    MPI_Finalized(&finalized)
    guard owned, finalized == 0 else { return }
    progress.finish()
    var handles = [comm, progress.comm]
    for i in handles.indices { MPI_Comm_free(&handles[i]) }
  }

  private init(comm: MPI_Comm, owned: Bool = false) {
    self.comm = comm
    self.owned = owned
    var dup: MPI_Comm?
    MPI_Comm_dup(comm, &dup)
    progress = ReductionProgress(comm: dup)
    var r: Int32 = 0
    var s: Int32 = 0
    MPI_Comm_rank(comm, &r)
    MPI_Comm_size(comm, &s)
    rank = Int(r)
    size = Int(s)
  }

  public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
    guard size > 1, buffer.count > 0 else { return }
    chunked(buffer.count) { off, n in
      MPI_Allreduce(
        sertrain_MPI_IN_PLACE(), buffer.baseAddress! + off, Int32(n), sertrain_MPI_FLOAT(), sertrain_MPI_SUM(),
        comm)
    }
  }

  public func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
    guard size > 1, buffer.count > 0 else { return }
    progress.add(buffer)
    if MPICommunicator.threadMultiple { progress.startThread() }
  }

  /// Without a progress thread (MPI without thread support), MPI advances the reductions only inside MPI calls.
  public func progressReductions() { if !MPICommunicator.threadMultiple { progress.test() } }

  public func finishReductions() { progress.finish() }

  public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {
    guard size > 1, buffer.count > 0 else { return }
    chunked(buffer.count) { off, n in
      MPI_Allreduce(
        sertrain_MPI_IN_PLACE(), buffer.baseAddress! + off, Int32(n), sertrain_MPI_DOUBLE(), sertrain_MPI_SUM(),
        comm)
    }
  }

  public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
    guard size > 1, buffer.count > 0 else { return }
    chunked(buffer.count) { off, n in
      MPI_Bcast(buffer.baseAddress! + off, Int32(n), sertrain_MPI_BYTE(), Int32(root), comm)
    }
  }

  public func barrier() { MPI_Barrier(comm) }

  public func gather(_ bytes: [UInt8], root: Int) -> [[UInt8]] {
    // Sizes first (an allreduce of a vector with one slot per rank), then one message per rank to root.
    var sizes = [Double](repeating: 0, count: size)
    sizes[rank] = Double(bytes.count)
    sizes.withUnsafeMutableBufferPointer { allreduceSum($0) }
    var out: [[UInt8]] = []
    if rank == root {
      for r in 0..<size {
        if r == rank {
          out.append(bytes)
          continue
        }
        var part = [UInt8](repeating: 0, count: Int(sizes[r]))
        var off = 0
        while off < part.count {
          let n = min(1 << 30, part.count - off)
          part.withUnsafeMutableBytes {
            _ = MPI_Recv(
              $0.baseAddress! + off, Int32(n), sertrain_MPI_BYTE(), Int32(r), 7, comm, sertrain_MPI_STATUS_IGNORE())
          }
          off += n
        }
        out.append(part)
      }
    } else {
      var off = 0
      while off < bytes.count {
        let n = min(1 << 30, bytes.count - off)
        bytes.withUnsafeBytes {
          _ = MPI_Send($0.baseAddress! + off, Int32(n), sertrain_MPI_BYTE(), Int32(root), 7, comm)
        }
        off += n
      }
    }
    return out
  }

  public func abort(code: Int32) -> Never {
    MPI_Abort(comm, code)
    exit(code)
  }

  /// MPI counts are Int32: split larger buffers.
  private func chunked(_ count: Int, _ body: (Int, Int) -> Int32) {
    let limit = 1 << 30
    var off = 0
    while off < count {
      let n = min(limit, count - off)
      _ = body(off, n)
      off += n
    }
  }
}

/// The nonblocking reductions of one step, in order: a thread of ours starts them one piece of at most `window`
/// floats at a time, the next when the last is done (MPI_Test every 100 us), while the main thread computes.
/// OpenMPI advances a nonblocking collective only inside MPI calls; and a whole bucket in flight would queue the
/// small blocking BatchNorm reductions of backward behind megabytes on the link (measured: BENCHMARKS.md, "bench
/// scale"). Without thread support, pieces start and advance in `test` (between layers) instead.
final class ReductionProgress: @unchecked Sendable {
  private var pending: [(UnsafeMutablePointer<Float>, Int)] = []
  private var inFlight: MPI_Request? = nil
  private var lock = pthread_mutex_t()
  private var thread: pthread_t?
  private var draining = false
  let window = 1 << 16  // 256 KiB
  let comm: MPI_Comm?

  init(comm: MPI_Comm?) {
    self.comm = comm
    pthread_mutex_init(&lock, nil)
  }

  func add(_ buffer: UnsafeMutableBufferPointer<Float>) {
    pthread_mutex_lock(&lock)
    for off in stride(from: 0, to: buffer.count, by: window) {
      pending.append((buffer.baseAddress! + off, min(window, buffer.count - off)))
    }
    pthread_mutex_unlock(&lock)
  }

  /// Completes the piece in flight if it is done and starts the next; true when nothing is left.
  @discardableResult
  func test() -> Bool {
    pthread_mutex_lock(&lock)
    defer { pthread_mutex_unlock(&lock) }
    if inFlight != nil && inFlight != sertrain_MPI_REQUEST_NULL() {
      var done: Int32 = 0
      MPI_Test(&inFlight, &done, sertrain_MPI_STATUS_IGNORE())
      if done == 0 { return false }
    }
    inFlight = nil
    guard !pending.isEmpty else { return true }
    let (p, n) = pending.removeFirst()
    var request: MPI_Request? = sertrain_MPI_REQUEST_NULL()
    MPI_Iallreduce(sertrain_MPI_IN_PLACE(), p, Int32(n), sertrain_MPI_FLOAT(), sertrain_MPI_SUM(), comm, &request)
    inFlight = request
    return false
  }

  func startThread() {
    guard thread == nil else { return }
    draining = false
    var t = pthread_t()
    let context = Unmanaged.passRetained(self).toOpaque()
    pthread_create(
      &t, nil,
      { context in
        let me = Unmanaged<ReductionProgress>.fromOpaque(context!).takeRetainedValue()
        while !(me.test() && me.isDraining) { usleep(100) }
        return nil
      }, context)
    thread = t
  }

  private var isDraining: Bool {
    pthread_mutex_lock(&lock)
    defer { pthread_mutex_unlock(&lock) }
    return draining
  }

  /// Waits until every piece is reduced.
  func finish() {
    if let t = thread {
      pthread_mutex_lock(&lock)
      draining = true
      pthread_mutex_unlock(&lock)
      pthread_join(t, nil)
      thread = nil
    }
    while !test() {}
  }
}

/// True when a launcher (mpirun, srun with PMIx/PMI) started this process as part of a parallel job.
public func launchedByMPI(_ env: [String: String] = environment()) -> Bool {
  ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"].contains { env[$0] != nil }
}

/// The communicator for this process: MPI when a launcher started it, otherwise a single process (no MPI
/// initialisation at all, so a laptop needs no MPI runtime set up). Fails when a scheduler asked for several
/// tasks but MPI sees one, which would run P independent copies of the same job.
public func makeCommunicator(_ env: [String: String] = environment()) throws -> Communicator {
  let comm: Communicator = launchedByMPI(env) ? MPICommunicator.world() : SingleProcessCommunicator()
  let expected = ["SLURM_NTASKS", "PBS_NP", "OMPI_COMM_WORLD_SIZE"].lazy.compactMap { env[$0].flatMap { Int($0) } }
    .first
  if let expected, expected > 1, comm.size == 1 {
    throw Failure(
      "the scheduler asked for \(expected) tasks but MPI sees 1: launch with 'srun --mpi=pmix sertrain …' or 'mpirun -n \(expected) sertrain …' inside the allocation"
    )
  }
  return comm
}
