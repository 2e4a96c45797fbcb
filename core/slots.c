/*
 * slots.c: retry slots, so that clients sent away come back one by one.
 *
 * Whenever the daemon turns clients away — a graceful restart closing
 * every connection with 1012, a reload shedding the connections above a
 * lowered max_connections with 1013, a handshake refused with 503 — it
 * tells each one when to come back.  If every client were told the same
 * thing, they would all come back at the same instant: the reconnection
 * storm.  So each is handed the next slot of a schedule: slots are spaced
 * so that the clients return no faster than the daemon has shown it can
 * accept them.
 *
 * That rate is measured here: the connections opened in each second, and
 * the most seen in any second of this process's life (the peak says what
 * the daemon can take; the current second would say only how busy the
 * clients are).  Below SLOTS_MIN_RATE a measurement says little (a
 * daemon whose clients arrived slowly), so the rate is never taken lower.
 *
 * Pure arithmetic on monotonic milliseconds, no I/O and no clock of its
 * own: the callers pass the time, so the unit tests drive it (test_drain).
 * Slot times are kept in microseconds, so that thousands of slots in a
 * second do not round to the same millisecond.
 */
#include "wsplugd.h"

void
slots_opened(struct retry_slots *s, uint64_t now_ms)
{
	uint64_t sec = now_ms / 1000;

	if (sec != s->sec) {
		s->sec = sec;
		s->count = 0;
	}
	if (s->count < UINT32_MAX)
		s->count++;
	if (s->count > s->peak)
		s->peak = s->count;
}

uint32_t
slots_rate(const struct retry_slots *s)
{
	return s->peak > SLOTS_MIN_RATE ? s->peak : SLOTS_MIN_RATE;
}

uint64_t
slots_window(uint64_t n, uint32_t rate, uint64_t spread_ms)
{
	uint64_t need, cap;

	if (rate == 0)
		rate = SLOTS_MIN_RATE;
	/* n clients at rate a second take n / rate seconds, rounded up. */
	need = (n * 1000 + rate - 1) / rate;
	cap = spread_ms * SLOTS_MAX_STRETCH;
	if (cap < SLOTS_MIN_CAP_MS)
		cap = SLOTS_MIN_CAP_MS;
	if (need > cap)
		need = cap;
	return need > spread_ms ? need : spread_ms;
}

void
slots_plan(struct retry_slots *s, uint64_t start_ms, uint64_t window_ms,
    uint64_t n)
{
	s->next_us = start_ms * 1000;
	s->step_us = n > 0 ? window_ms * 1000 / n : window_ms * 1000;
	s->planned = 1;
}

uint64_t
slots_take(struct retry_slots *s, uint64_t now_ms)
{
	uint64_t now_us = now_ms * 1000, at;

	if (!s->planned)
		slots_plan(s, now_ms, 1000, slots_rate(s));
	at = s->next_us > now_us ? s->next_us : now_us;
	s->next_us = at + s->step_us;
	/* Rounded up: a client must never be told a time before its slot. */
	return (at - now_us + 999) / 1000;
}

uint64_t
slots_take_later(struct retry_slots *s, uint64_t now_ms, uint64_t min_ms)
{
	uint32_t rate = slots_rate(s);

	/* A schedule already in the future (a restart's, or earlier
	 * refusals') is continued; otherwise start one min_ms from now,
	 * with the slots spaced at the accept rate. */
	if (!s->planned || s->next_us < (now_ms + min_ms) * 1000)
		slots_plan(s, now_ms + min_ms, 1000, rate);
	return slots_take(s, now_ms);
}

int
slots_reason(char *buf, size_t size, uint64_t retry_ms)
{
	int n = snprintf(buf, size, "{\"retry_after_ms\":%llu}",
	    (unsigned long long)retry_ms);

	return n < 0 || (size_t)n >= size ? -1 : n;
}

unsigned
slots_retry_after_s(uint64_t retry_ms)
{
	uint64_t s = (retry_ms + 999) / 1000;

	if (s < 1)
		s = 1;
	return s > SLOTS_MAX_RETRY_AFTER_S ? SLOTS_MAX_RETRY_AFTER_S :
	    (unsigned)s;
}
