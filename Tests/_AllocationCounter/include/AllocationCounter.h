#ifndef ALLOCATION_COUNTER_H
#define ALLOCATION_COUNTER_H

/// Whether this platform's allocator can be counted (glibc on Linux: the counter defines
/// malloc and friends and forwards them to glibc's `__libc_*` functions).
int allocation_counter_supported(void);

/// Starts counting heap allocations (malloc, calloc, realloc, memalign, aligned_alloc,
/// posix_memalign) made by any thread of the process.
void allocation_counter_start(void);

/// Stops counting and returns the number of allocations since `allocation_counter_start`.
long allocation_counter_stop(void);

#endif
