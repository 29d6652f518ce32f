// System helpers that Swift's Glibc overlay does not expose: the CPU, malloc and the stop signals (support.c).
#pragma once
#include <stdint.h>

/// The number of CPUs in this process's affinity mask (what mpirun's binding left us), at least 1.
int sertrain_available_cores(void);

/// 1 if the CPU runs the AVX-512 subsets OpenBLAS's SkylakeX kernels use (F, CD, BW, DQ, VL), else 0.
int sertrain_cpu_has_avx512_skylakex(void);

/// 1 if the CPU runs AVX2 and FMA (what OpenBLAS's Haswell kernels use), else 0.
int sertrain_cpu_has_avx2_fma(void);

/// Starts writing the file's dirty pages to disk without waiting (Linux's sync_file_range; a no-op returning 0
/// elsewhere). 0 or -1 with errno.
int sertrain_start_writeback(int fd);

/// glibc's malloc: blocks up to `mmap_threshold` bytes come from the heap, which is trimmed only when more than
/// `trim_threshold` bytes at its top are free (see `keepFreedMemory` in the command-line target).
void sertrain_keep_freed_memory(int mmap_threshold, int trim_threshold);

/// Installs handlers for SIGUSR1, SIGTERM and SIGINT that only record the request (async-signal-safe), and unblocks
/// them; SIGINT's for once (a second Ctrl-C ends the process as by default).
void sertrain_install_stop_handlers(void);
/// Blocks SIGUSR1, SIGTERM and SIGINT before an exec, so that one arriving in between waits for the new image's handlers
/// (a request already recorded is raised again, to be pending across the exec).
void sertrain_hold_stop_signals_across_exec(void);
/// Gives SIGUSR1, SIGTERM and SIGINT their default action again (commands that cannot stop cleanly), and raises a request
/// already recorded.
void sertrain_default_stop_signals(void);
/// The signal that asked to stop (SIGUSR1, SIGTERM or SIGINT), or 0.
int sertrain_stop_requested(void);
/// Clears the request (tests).
void sertrain_clear_stop_request(void);
/// Starts `argv` (searched in PATH) and waits for it to end, sending it SIGUSR1 whenever this process has recorded a
/// stop signal meanwhile (SIGUSR1, SIGTERM and, from here on, SIGINT). With `rank_name`, a launcher that has had
/// processes of that name below it and outlives the last of them by `grace` seconds is killed (SIGKILL) and
/// `outlived` set. 0 with its wait status, or -1 with errno.
int sertrain_supervise(char *const argv[], const char *rank_name, double grace, int *wait_status, int *outlived);

/// Compiles a C kernel for AVX-512, AVX2 and baseline x86-64 in one binary, the loader picking the variant the CPU
/// runs (target_clones); CAudioKernels and CConvKernels mark their entry points with it. Tests define
/// SERTRAIN_NO_TARGET_CLONES to build one variant per instruction set and compare their bits.
#if defined(__x86_64__) && !defined(SERTRAIN_NO_TARGET_CLONES)
#define SERTRAIN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SERTRAIN_CLONES
#endif

/// The git commit this binary was built from (SERTRAIN_COMMIT when the package was built; "unknown" otherwise).
const char *sertrain_build_commit(void);

/// The variant of the SERTRAIN_CLONES kernels this CPU runs: "AVX-512", "AVX2" or "x86-64" (for benchmark records).
const char *sertrain_clone_level(void);

/// HDF5's Fletcher-32 of `count` bytes, the same value as HDF5's H5_checksum_fletcher32, vectorised (fletcher32.c):
/// the HDF5 module registers it as the library's Fletcher-32 filter.
uint32_t sertrain_fletcher32(const void *bytes, unsigned long count);

/// SHA-256 (FIPS 180-4) of `count` bytes into `digest` (32 bytes): the checkpoints' integrity check (sha256.c).
void sertrain_sha256(const void *bytes, unsigned long count, unsigned char digest[32]);
