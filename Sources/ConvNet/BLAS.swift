import COpenBLAS
import CSupport

/// OpenBLAS's thread count, set in code from the cores this process may use unless `OPENBLAS_NUM_THREADS`
/// (or `OMP_NUM_THREADS`) says otherwise. Returns the count in effect.
@discardableResult
public func configureBLASThreads(environment: [String: String]) -> Int {
  if let s = environment["OPENBLAS_NUM_THREADS"] ?? environment["OMP_NUM_THREADS"], let n = Int(s), n > 0 {
    openblas_set_num_threads(Int32(n))
    return n
  }
  let cores = max(1, Int(sertrain_available_cores()))
  openblas_set_num_threads(Int32(cores))
  return cores
}

/// The thread count OpenBLAS will use.
public var blasThreads: Int { Int(openblas_get_num_threads()) }

/// Row-major `C = alpha * op(A) * op(B) + beta * C` with `op(A)` M×K and `op(B)` K×N.
@inline(__always)
func sgemm(
  transA: Bool = false, transB: Bool = false, _ m: Int, _ n: Int, _ k: Int,
  _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
  beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, alpha: Float = 1
) {
  if m == 0 || n == 0 { return }
  cblas_sgemm(
    CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Row-major sgemm on public buffers, for benchmarks and tests: `C[m×n] = A[m×k] · B[k×n]`.
public func matrixMultiply(
  _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int
) {
  sgemm(m, n, k, a, k, b, n, beta: 0, c, n)
}
