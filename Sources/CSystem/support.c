#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include "CSystem.h"

int sertrain_available_cores(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int sertrain_start_writeback(int fd) {
#if defined(__linux__)
  return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
  (void)fd;
  return 0;
#endif
}

const char *sertrain_clone_level(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") ? "AVX-512" : __builtin_cpu_supports("avx2") ? "AVX2" : "x86-64";
#else
  return "generic";
#endif
}

int sertrain_cpu_has_avx512_skylakex(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
#else
  return 0;
#endif
}

int sertrain_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return 0;
#endif
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_signal = 0;

static void record_stop(int sig) { stop_signal = sig; }

static void stop_signal_set(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGUSR1);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
}

// Signal `sig` from now on only records a stop request (`once`: the first time; the next one acts as by default, so
// that a second Ctrl-C ends a process that is slow to stop).
static void record_stops_of(int sig, int once) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = record_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | (once ? SA_RESETHAND : 0);
  sigaction(sig, &sa, NULL);
}

void sertrain_install_stop_handlers(void) {
  record_stops_of(SIGUSR1, 0);
  record_stops_of(SIGTERM, 0);
  record_stops_of(SIGINT, 1);
  // A signal that arrived while they were blocked for an exec is delivered here, to the handler.
  sigset_t set;
  stop_signal_set(&set);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
}

void sertrain_hold_stop_signals_across_exec(void) {
  sigset_t set;
  stop_signal_set(&set);
  sigprocmask(SIG_BLOCK, &set, NULL);
  // Blocked signals stay pending across execve, recorded ones would be lost with this image: raise them again.
  if (stop_signal != 0) raise(stop_signal);
}

void sertrain_default_stop_signals(void) {
  signal(SIGUSR1, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  if (stop_signal != 0) raise(stop_signal);
}

int sertrain_stop_requested(void) { return stop_signal; }

void sertrain_clear_stop_request(void) { stop_signal = 0; }

#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
extern char **environ;

/// Whether a process below `root` (a child, a child's child, ...) is named `name` and is not a zombie: 1 or 0, from
/// /proc (-1 where it cannot be read).
static int has_live_descendant(pid_t root, const char *name) {
  DIR *proc = opendir("/proc");
  if (proc == NULL) return -1;
  struct entry {
    pid_t pid, ppid;
    int named, below;
  };
  size_t count = 0, capacity = 512;
  struct entry *e = malloc(capacity * sizeof *e);
  struct dirent *d;
  while (e != NULL && (d = readdir(proc)) != NULL) {
    char *end;
    long pid = strtol(d->d_name, &end, 10);
    if (*end != 0 || pid <= 0) continue;
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;  // gone meanwhile
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so it ends at the last ')'.
    char *open = strchr(text, '('), *close = strrchr(text, ')');
    char state;
    long ppid;
    if (open == NULL || close == NULL || sscanf(close + 1, " %c %ld", &state, &ppid) != 2) continue;
    *close = 0;
    if (count == capacity) {
      struct entry *grown = realloc(e, 2 * capacity * sizeof *e);
      if (grown == NULL) break;
      e = grown;
      capacity *= 2;
    }
    e[count++] = (struct entry){(pid_t)pid, (pid_t)ppid, state != 'Z' && strcmp(open + 1, name) == 0, ppid == root};
  }
  closedir(proc);
  if (e == NULL) return -1;
  for (int changed = 1; changed;) {
    changed = 0;
    for (size_t i = 0; i < count; i++) {
      if (e[i].below) continue;
      for (size_t j = 0; j < count; j++) {
        if (e[j].below && e[j].pid == e[i].ppid) {
          e[i].below = changed = 1;
          break;
        }
      }
    }
  }
  int found = 0;
  for (size_t i = 0; i < count && !found; i++) found = e[i].below && e[i].named;
  free(e);
  return found;
}

int sertrain_supervise(char *const argv[], const char *rank_name, double grace, int *wait_status, int *outlived) {
  record_stops_of(SIGINT, 0);  // a terminal's Ctrl-C too, while the launcher runs
  *outlived = 0;
  pid_t child;
  int rc = posix_spawnp(&child, argv[0], NULL, NULL, argv, environ);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  // Polled, not waited for with sigwaitinfo: OpenBLAS's threads exist already, and a signal sent to the process
  // may run the handler on any of them.
  int seen = 0;
  double idle = 0;
  for (long poll = 0;; poll++) {
    if (stop_signal != 0) {
      stop_signal = 0;
      kill(child, SIGUSR1);
    }
    pid_t done = waitpid(child, wait_status, WNOHANG);
    if (done == child) return 0;
    if (done < 0 && errno != EINTR) return -1;
    if (rank_name != NULL && poll % 25 == 0) {  // every 0.5 s
      int live = has_live_descendant(child, rank_name);
      if (live > 0) seen = 1, idle = 0;
      if (live == 0 && seen) idle += 0.5;
      if (seen && idle > grace && !*outlived) {
        *outlived = 1;
        kill(child, SIGKILL);
      }
    }
    usleep(20000);
  }
}

void sertrain_keep_freed_memory(int mmap_threshold, int trim_threshold) {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, mmap_threshold);
  mallopt(M_TRIM_THRESHOLD, trim_threshold);
#else
  (void)mmap_threshold;
  (void)trim_threshold;
#endif
}

#ifndef SERTRAIN_COMMIT
#define SERTRAIN_COMMIT "unknown"
#endif

const char *sertrain_build_commit(void) { return SERTRAIN_COMMIT; }
