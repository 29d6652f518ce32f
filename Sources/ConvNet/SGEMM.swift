import COpenBLAS

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
