/*
 * test_drain.c: the arithmetic of retry slots (slots.c) that a graceful
 * restart, a shed and a refused handshake hand out (drain.c): the accept
 * rate measured, the window sized to it, slots evenly spaced and never
 * earlier than promised, and a whole restart played on a clock to check
 * that its clients come back no faster than they left and none before
 * the restart has finished closing.
 */
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "suite.h"
#include "wsplugd.h"

static void
test_meter_peak(void)
{
	struct retry_slots s;
	int i;

	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(slots_rate(&s), SLOTS_MIN_RATE); /* nothing seen */
	for (i = 0; i < 300; i++) /* 300 in the second 5 */
		slots_opened(&s, 5000 + (uint64_t)i);
	for (i = 0; i < 40; i++) /* 40 in the second 6 */
		slots_opened(&s, 6000 + (uint64_t)i * 20);
	CU_ASSERT_EQUAL(s.peak, 300);
	CU_ASSERT_EQUAL(s.count, 40);
	CU_ASSERT_EQUAL(slots_rate(&s), 300);
	/* a slow second does not lower what the daemon has shown */
	slots_opened(&s, 90000);
	CU_ASSERT_EQUAL(slots_rate(&s), 300);
}

static void
test_window(void)
{
	/* few clients: the spread itself */
	CU_ASSERT_EQUAL(slots_window(1000, 500, 10000), 10000);
	CU_ASSERT_EQUAL(slots_window(0, 500, 10000), 10000);
	/* many: as long as the rate needs, rounded up */
	CU_ASSERT_EQUAL(slots_window(100000, 1000, 10000), 100000);
	CU_ASSERT_EQUAL(slots_window(1001, 100, 1000), 10010);
	/* a rate of 0 is taken as the floor */
	CU_ASSERT_EQUAL(slots_window(1000, 0, 1000), 1000 * 1000 /
	    SLOTS_MIN_RATE);
	/* bounded: 10 x the spread, or a minute */
	CU_ASSERT_EQUAL(slots_window(10000000, 100, 10000), 10000 *
	    SLOTS_MAX_STRETCH);
	CU_ASSERT_EQUAL(slots_window(10000000, 100, 1000), SLOTS_MIN_CAP_MS);
	CU_ASSERT_EQUAL(slots_window(5, 100, 0), 50);
}

static void
test_take_even(void)
{
	struct retry_slots s;
	uint64_t i, prev = 0, at;

	memset(&s, 0, sizeof(s));
	/* 1000 slots over [10 s, 20 s), taken all at time 0 */
	slots_plan(&s, 10000, 10000, 1000);
	for (i = 0; i < 1200; i++) {
		at = slots_take(&s, 0);
		CU_ASSERT_EQUAL(at, 10000 + i * 10);
		if (i > 0)
			CU_ASSERT_EQUAL(at - prev, 10);
		prev = at;
	}
}

static void
test_take_rounds_up(void)
{
	struct retry_slots s;
	uint64_t i, at, now;

	memset(&s, 0, sizeof(s));
	/* 3 slots in 1 ms: 333 us apart, in milliseconds rounded up */
	slots_plan(&s, 100, 1, 3);
	CU_ASSERT_EQUAL(slots_take(&s, 100), 0);
	CU_ASSERT_EQUAL(slots_take(&s, 100), 1); /* 100.333 */
	CU_ASSERT_EQUAL(slots_take(&s, 100), 1); /* 100.666 */
	/* a slot in the past is never handed out: now instead */
	slots_plan(&s, 100, 1000, 10);
	CU_ASSERT_EQUAL(slots_take(&s, 5000), 0);
	/* and the schedule goes on from there */
	CU_ASSERT_EQUAL(slots_take(&s, 5000), 100);
	memset(&s, 0, sizeof(s));
	slots_plan(&s, 0, 7, 3); /* 2333 us apart */
	for (i = 0, now = 0; i < 50; i++, now += 3) {
		at = slots_take(&s, now);
		/* at + now is at or after the slot, by less than 1 ms */
		CU_ASSERT((now + at) * 1000 >= i * 2333 || at == 0);
	}
}

static void
test_take_later(void)
{
	struct retry_slots s;
	uint64_t a, b, c;
	int i;

	memset(&s, 0, sizeof(s));
	for (i = 0; i < 500; i++)
		slots_opened(&s, 2000);
	/* refused at 10 s: the first comes back a second later, the
	 * next ones 1/500 s apart */
	a = slots_take_later(&s, 10000, SLOTS_REFUSAL_MS);
	b = slots_take_later(&s, 10000, SLOTS_REFUSAL_MS);
	c = slots_take_later(&s, 10000, SLOTS_REFUSAL_MS);
	CU_ASSERT_EQUAL(a, 1000);
	CU_ASSERT_EQUAL(b, 1002);
	CU_ASSERT_EQUAL(c, 1004);
	/* long after: a fresh schedule, not a slot left in the past */
	CU_ASSERT_EQUAL(slots_take_later(&s, 60000, SLOTS_REFUSAL_MS), 1000);
	/* a restart's schedule far ahead is continued, not restarted */
	slots_plan(&s, 80000, 10000, 1000);
	CU_ASSERT_EQUAL(slots_take_later(&s, 70000, SLOTS_REFUSAL_MS), 10000);
	CU_ASSERT_EQUAL(slots_take_later(&s, 70000, SLOTS_REFUSAL_MS), 10010);
}

static void
test_reason_and_header(void)
{
	char buf[WS_MAX_CONTROL], small[10];

	CU_ASSERT_EQUAL(slots_reason(buf, sizeof(buf), 12345), 24);
	CU_ASSERT_STRING_EQUAL(buf, "{\"retry_after_ms\":12345}");
	CU_ASSERT_EQUAL(slots_reason(buf, sizeof(buf), 0), 20);
	CU_ASSERT_STRING_EQUAL(buf, "{\"retry_after_ms\":0}");
	/* the largest fits a close frame's reason */
	CU_ASSERT(slots_reason(buf, WS_MAX_CONTROL - 2, UINT64_MAX) > 0);
	CU_ASSERT_EQUAL(slots_reason(small, sizeof(small), 5), -1);
	CU_ASSERT_EQUAL(slots_retry_after_s(0), 1);
	CU_ASSERT_EQUAL(slots_retry_after_s(1), 1);
	CU_ASSERT_EQUAL(slots_retry_after_s(1000), 1);
	CU_ASSERT_EQUAL(slots_retry_after_s(1001), 2);
	CU_ASSERT_EQUAL(slots_retry_after_s(UINT64_MAX / 2),
	    SLOTS_MAX_RETRY_AFTER_S);
}

/* A restart as drain.c runs it, on a simulated clock: n connections
 * closed at i x spread / n, each taking the next slot at its close. */
static void
restart_play(uint64_t n, uint64_t spread, uint32_t measured)
{
	struct retry_slots s;
	uint64_t t0 = 50000, window, i, close_at, back, *backs, bucket;
	uint64_t per_bucket_max, nb, *counts;

	memset(&s, 0, sizeof(s));
	for (i = 0; i < measured; i++)
		slots_opened(&s, 1000);
	window = slots_window(n, slots_rate(&s), spread);
	slots_plan(&s, t0 + spread, window, n);
	CU_ASSERT_FATAL((backs = calloc(n, sizeof(*backs))) != NULL);
	for (i = 0; i < n; i++) {
		close_at = t0 + i * spread / n;
		back = close_at + slots_take(&s, close_at);
		/* none before the last close */
		CU_ASSERT(back >= t0 + spread);
		/* none later than the window's end */
		CU_ASSERT(back <= t0 + spread + window);
		if (i > 0)
			CU_ASSERT(back >= backs[i - 1]);
		backs[i] = back;
	}
	/* evenly: in any 100 ms, no more than the window's share (+1 for
	 * where the buckets cut) */
	nb = window / 100 + 2;
	CU_ASSERT_FATAL((counts = calloc(nb, sizeof(*counts))) != NULL);
	for (i = 0; i < n; i++) {
		bucket = (backs[i] - t0 - spread) / 100;
		CU_ASSERT_FATAL(bucket < nb);
		counts[bucket]++;
	}
	per_bucket_max = (n * 100 + window - 1) / window + 1;
	for (i = 0; i < nb; i++)
		CU_ASSERT(counts[i] <= per_bucket_max);
	/* and never faster than the rate measured (or the floor) */
	CU_ASSERT(per_bucket_max <= (uint64_t)slots_rate(&s) / 10 + 2 ||
	    window == spread);
	free(counts);
	free(backs);
}

static void
test_restart_spread(void)
{
	restart_play(1000, 10000, 500);  /* the spread suffices */
	restart_play(1000, 2000, 0);     /* 1000 at the floor rate: 10 s */
	restart_play(50000, 10000, 2000); /* 25 s at the measured rate */
	restart_play(7, 10000, 0);
	restart_play(1, 0, 0);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "the accept rate is the peak second", test_meter_peak },
		{ "the window fits the rate, bounded", test_window },
		{ "slots are evenly spaced", test_take_even },
		{ "slots round up, never into the past", test_take_rounds_up },
		{ "refusals come back a second later at the rate",
		    test_take_later },
		{ "the close reason and Retry-After", test_reason_and_header },
		{ "a restart's clients come back spread, none early",
		    test_restart_spread },
	};

	return suite_run("drain", tests, nitems(tests));
}
