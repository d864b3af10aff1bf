/* clock.h — wall-clock time for the engine's timings and event stamps. */
#ifndef DT_CLOCK_H
#define DT_CLOCK_H

#include <sys/time.h>

/* Unix time in seconds, with microseconds. */
static inline double dt_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

#endif
