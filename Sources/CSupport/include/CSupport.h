// Small system helpers that Swift's Glibc overlay does not expose.
#pragma once

/// The number of CPUs in this process's affinity mask (what mpirun's binding left us), at least 1.
int sertrain_available_cores(void);

/// 1 if the CPU runs the AVX-512 subsets OpenBLAS's SkylakeX kernels use (F, CD, BW, DQ, VL), else 0.
int sertrain_cpu_has_avx512_skylakex(void);
