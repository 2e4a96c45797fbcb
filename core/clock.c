/*
 * clock.c: the two clocks the daemon reads.
 *
 * Deadlines use CLOCK_MONOTONIC_COARSE: a vDSO read with no system call,
 * millisecond-accurate enough for ping intervals and timeouts, and immune
 * to the wall clock jumping.  Timestamps shown to clients and operators use
 * the wall clock.
 */
#include <time.h>

#include "wsplugd.h"

uint64_t
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t
clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
