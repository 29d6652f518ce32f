// Code that runs before `main` in the sertrain executable (see entry.c).
#pragma once

/// 1: the constructor that installs the stop handlers is linked in.
int sertrain_entry_linked(void);
