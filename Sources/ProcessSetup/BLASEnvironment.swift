// Process setup: what OpenBLAS is told before it loads (its kernel family and idle threads) and the thread counts
// of OpenBLAS and of ConvNet's own kernels. The command line runs it once at start-up; the network's code only calls
// sgemm (ConvNet/SGEMM.swift).

import Base
import COpenBLAS
import CSystem
import ConvNet

/// The process's thread count: OpenBLAS's and ConvNet's own kernels' (`Parallel.threads`), the cores this process
/// may use unless `OPENBLAS_NUM_THREADS` (or `OMP_NUM_THREADS`) says otherwise. Returns the count in effect.
@discardableResult
public func configureThreads(environment: [String: String]) -> Int {
  let cores = availableCores()
  Parallel.threads = cores
  if let s = environment["OPENBLAS_NUM_THREADS"] ?? environment["OMP_NUM_THREADS"], let n = Int(s), n > 0 {
    openblas_set_num_threads(Int32(n))
    Parallel.threads = n
    return n
  }
  openblas_set_num_threads(Int32(cores))
  return cores
}

/// The thread count OpenBLAS will use.
public var blasThreads: Int { Int(openblas_get_num_threads()) }

/// The OpenBLAS kernel family in use (e.g. `Haswell`, `SkylakeX`).
public var blasCoreName: String { String(cString: openblas_get_corename()) }

/// The kernel family OpenBLAS should use instead of the one it detected, or nil when its choice is right.
///
/// OpenBLAS releases older than the CPU (Debian 12 ships 0.3.21) fall back to older kernels on CPUs they do not
/// know: AMD Zen 4 and Zen 5 come out as `Haswell` or `Zen` (256-bit AVX2), and Intel Emerald Rapids (family 6,
/// model 207) as `Prescott` (SSE3), although both execute AVX-512. The fallback costs 2x to 10x of sgemm's speed
/// (BENCHMARKS.md, the Zen 5 and Emerald Rapids entries). So the choice is made from
/// what the CPU runs, not from its name: `SkylakeX` kernels where AVX-512 (F, CD, BW, DQ, VL) is there, `Haswell`
/// where AVX2 and FMA are, and only when OpenBLAS picked something weaker. OpenBLAS reads `OPENBLAS_CORETYPE`
/// when the library loads, so the caller must re-execute the process with it set (`sertrain` does so at
/// start-up). An explicit `OPENBLAS_CORETYPE` in the environment always wins.
public func preferredBLASCoreType(environment: [String: String]) -> String? {
  guard environment["OPENBLAS_CORETYPE"] == nil, environment["SERTRAIN_KEEP_BLAS_CORE"] == nil else { return nil }
  let cpuLevel =
    sertrain_cpu_has_avx512_skylakex() != 0 ? 3 : sertrain_cpu_has_avx2_fma() != 0 ? 2 : 0
  return preferredBLASCoreType(cpuLevel: cpuLevel, detected: blasCoreName)
}

/// The decision itself: the family for what the CPU runs (`cpuLevel`: 3 AVX-512, 2 AVX2 with FMA, 0 neither) when
/// OpenBLAS `detected` a weaker one; nil when its choice is as good or its name is one this table does not know.
func preferredBLASCoreType(cpuLevel: Int, detected: String) -> String? {
  guard let level = blasKernelLevel(detected), cpuLevel > level, cpuLevel >= 2 else { return nil }
  return cpuLevel == 3 ? "SkylakeX" : "Haswell"
}

/// How long an idle OpenBLAS worker thread spins (yielding) before it sleeps, as OpenBLAS reads
/// `OPENBLAS_THREAD_TIMEOUT` when it loads: 2^n cycles, n from 4 to 30, 28 by default (about 0.1 s). sertrain's own
/// element-wise passes (BatchNorm, pooling) run on the same cores right after each convolution's GEMMs, and workers
/// still spinning from the GEMM take cores from them: on 2 cores the seed model's first BatchNorm backward took
/// 0.23-0.26 s per step with the default and 0.20-0.21 s with 4, and a step 3.8-4.7 s against 3.6-4.4 s (runs
/// interleaved). A sleeping worker is woken in microseconds, once per GEMM call.
public let blasThreadTimeout = "4"

/// What the environment should add before OpenBLAS loads: `OPENBLAS_CORETYPE` when `preferredBLASCoreType` gives
/// one, and `OPENBLAS_THREAD_TIMEOUT` (`blasThreadTimeout`) unless it is set. Empty when nothing is to change.
public func preferredBLASEnvironment(environment: [String: String]) -> [String: String] {
  var changes: [String: String] = [:]
  if let core = preferredBLASCoreType(environment: environment) { changes["OPENBLAS_CORETYPE"] = core }
  if environment["OPENBLAS_THREAD_TIMEOUT"] == nil { changes["OPENBLAS_THREAD_TIMEOUT"] = blasThreadTimeout }
  return changes
}

/// How wide the vector kernels of an OpenBLAS x86-64 core family are: 3 for the AVX-512 families, 2 for AVX2 with
/// FMA, 1 for AVX, 0 for SSE; nil for a name this table does not know (a newer OpenBLAS's), which is trusted.
func blasKernelLevel(_ coreName: String) -> Int? {
  switch coreName.lowercased() {
  case "skylakex", "cooperlake", "sapphirerapids": return 3
  case "haswell", "zen", "excavator", "steamroller": return 2
  case "sandybridge", "bulldozer", "piledriver": return 1
  case "generic", "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn", "dunnington",
    "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano", "bobcat":
    return 0
  default: return nil
  }
}
