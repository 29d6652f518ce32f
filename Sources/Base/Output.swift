#if canImport(Glibc)
  import Glibc
#endif

/// Standard output written by a thread of its own, so that a reader that stops reading never stalls the caller.
/// Under `mpirun` a rank's output is a pipe that `mpirun` stops draining while it sleeps through its kill grace:
/// a rank printing into it would block in `write` with a stop signal pending and never reach the step at which it
/// writes its checkpoint. Lines are kept in order; past `capacity` waiting lines the newest are dropped and counted
/// (said in the next line that gets through). The thread writes with `write(2)`, never through stdio's locks. On a
/// terminal lines are written at once instead.
public final class Output: @unchecked Sendable {
  public static let shared = Output()

  private var mutex = pthread_mutex_t()
  private var changed = pthread_cond_t()
  private var waiting: [String] = []
  private var writing = false
  private var dropped = 0
  private var started = false
  private let capacity = 10_000

  private init() {
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&changed, nil)
  }

  /// A terminal is always read, and a progress bar shares it: lines go to it at once, in order with the bar.
  private let direct = isatty(1) != 0

  /// Queues `line` (a newline is added) for standard output.
  public func line(_ line: String) {
    if direct {
      fputs(line + "\n", stdout)
      return
    }
    pthread_mutex_lock(&mutex)
    defer { pthread_mutex_unlock(&mutex) }
    if !started { start() }
    if waiting.count >= capacity {
      dropped += 1
      return
    }
    waiting.append(line + "\n")
    pthread_cond_broadcast(&changed)
  }

  /// Waits until every queued line is written, or `timeout` seconds; true when all were.
  @discardableResult
  public func flush(timeout: Double = 5) -> Bool {
    let deadline = monotonicSeconds() + timeout
    pthread_mutex_lock(&mutex)
    defer { pthread_mutex_unlock(&mutex) }
    while !waiting.isEmpty || writing {
      let left = deadline - monotonicSeconds()
      if left <= 0 { return false }
      var ts = timespec()
      clock_gettime(CLOCK_REALTIME, &ts)
      let ns = Int(ts.tv_nsec) + Int(min(left, 0.05) * 1e9)
      ts.tv_sec += ns / 1_000_000_000
      ts.tv_nsec = ns % 1_000_000_000
      pthread_cond_timedwait(&changed, &mutex, &ts)
    }
    return true
  }

  /// Called with the mutex held.
  private func start() {
    started = true
    var thread = pthread_t()
    let me = Unmanaged.passRetained(self).toOpaque()
    pthread_create(
      &thread, nil,
      { context in
        Unmanaged<Output>.fromOpaque(context!).takeUnretainedValue().run()
        return nil
      }, me)
    pthread_detach(thread)
  }

  private func run() {
    // Stop signals go to the threads that compute, never here: this thread may sit in a blocked write.
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGUSR1)
    sigaddset(&signals, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &signals, nil)
    pthread_mutex_lock(&mutex)
    while true {
      while waiting.isEmpty { pthread_cond_wait(&changed, &mutex) }
      var text = waiting.joined()
      if dropped > 0 {
        text += "(\(dropped) lines of output dropped: standard output was not being read)\n"
        dropped = 0
      }
      waiting.removeAll(keepingCapacity: true)
      writing = true
      pthread_mutex_unlock(&mutex)
      Output.writeAll(text)
      pthread_mutex_lock(&mutex)
      writing = false
      pthread_cond_broadcast(&changed)
    }
  }

  private static func writeAll(_ text: String) {
    var bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
      let n = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + done, $0.count - done) }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { return }  // a closed or broken output: nothing more can be written
      done += n
    }
    bytes.removeAll()
  }
}
