// Small system helpers that Swift's Glibc overlay does not expose.
#pragma once

/// The number of CPUs in this process's affinity mask (what mpirun's binding left us), at least 1.
int sertrain_available_cores(void);
