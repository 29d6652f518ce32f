// What runs before `main`: only the sertrain executable links this target.
#include "CSystem.h"
#include "CEntry.h"

// A stop signal (SIGUSR1, SIGTERM) is recorded from the first constructor on, before the Swift runtime and the
// libraries initialise; until then (the dynamic loader mapping the libraries) the default action applies.
__attribute__((constructor(101))) static void sertrain_entry(void) { sertrain_install_stop_handlers(); }

int sertrain_entry_linked(void) { return 1; }
