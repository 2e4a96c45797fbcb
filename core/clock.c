/*
 * clock.c: the two clocks the daemon reads, and how late its timers may
 * fire.
 *
 * Deadlines use CLOCK_MONOTONIC_COARSE: a vDSO read with no system call,
 * millisecond-accurate enough for ping intervals and timeouts, and immune
 * to the wall clock jumping.  Timestamps shown to clients and operators use
 * the wall clock.
 *
 * The event loop sleeps in epoll_wait() until its next timer, and the
 * kernel keeps that timeout to its default slack of 50 us: when the
 * timeout falls before the CPU's next tick, the kernel reprograms the
 * timer hardware as the loop goes to sleep, and again as it wakes early
 * for a socket.  Under a virtual machine each of those is an exit to the
 * hypervisor.  A handshake load keeps a timer a few milliseconds out (the
 * log's flush) and sleeps between bursts: a slack of [server] timer_slack
 * (4 ms, a tick of Debian's kernel and the resolution of the coarse clock
 * every deadline here is computed from) lets the kernel fire it with the
 * tick, and cut the CPU a handshake took by 3 to 4 % under KVM
 * (bench/README.md).
 */
#include <sys/prctl.h>

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

/* Let every timer of this process fire up to ms late (0: the slack it
 * started with again, systemd's TimerSlackNSec= or the kernel's 50 us).
 * PR_SET_TIMERSLACK takes any value; should it fail anyway, timers stay
 * as precise as they were, which is harmless. */
void
clock_timer_slack(uint64_t ms)
{
	(void)prctl(PR_SET_TIMERSLACK, (unsigned long)(ms * 1000000));
}
