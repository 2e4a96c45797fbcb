/*
 * test_deadlines.c: keepalive.c's deadline queues on a real event loop.
 * An entry expires once, never before its deadline; a queue that emptied
 * by removals keeps its timer and is not re-armed by a push due later
 * (the timer fires early, finds nothing due, and re-arms for the new
 * head); a push due before the armed time re-arms at once.
 */
#include <event2/event.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

#define INTERVAL 60 /* ms */

static struct {
	struct wsp_conn *c[4];
	uint64_t at[4];
	int n;
} expired;

static struct event_base *base;

static void
expire(struct wsp_conn *c)
{
	if (expired.n < 4) {
		expired.c[expired.n] = c;
		expired.at[expired.n] = clock_mono_ms();
	}
	expired.n++;
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* The loop until q is empty and its timer spent, or 2 s at most. */
static void
run(struct deadline_queue *q)
{
	struct timeval limit = { 2, 0 }, turn = { 0, 5000 };
	struct event *stop = evtimer_new(base, stop_cb, base);
	struct timespec t0, t;

	CU_ASSERT_PTR_NOT_NULL_FATAL(stop);
	evtimer_add(stop, &limit);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		event_base_loopexit(base, &turn);
		event_base_dispatch(base);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((!TAILQ_EMPTY(&q->head) || q->armed != 0) &&
	    t.tv_sec - t0.tv_sec < 2);
	event_free(stop);
}

static struct wsp_conn *
conn_new(void)
{
	struct wsp_conn *c = calloc(1, sizeof(*c));

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	return c;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000 };

	nanosleep(&ts, NULL);
}

static void
test_expires_once_not_early(void)
{
	struct deadline_queue q;
	struct wsp_conn *a = conn_new();

	memset(&expired, 0, sizeof(expired));
	CU_ASSERT_EQUAL_FATAL(dq_init(&q, base, "t", INTERVAL, expire), 0);
	dq_push(&q, a);
	CU_ASSERT_EQUAL(q.armed, a->deadline);
	run(&q);
	CU_ASSERT_EQUAL(expired.n, 1);
	CU_ASSERT_PTR_EQUAL(expired.c[0], a);
	CU_ASSERT(expired.at[0] >= a->deadline);
	CU_ASSERT_PTR_NULL(a->dq);
	CU_ASSERT_EQUAL(q.armed, 0);
	dq_fini(&q);
	free(a);
}

static void
test_emptied_queue_keeps_its_timer(void)
{
	struct deadline_queue q;
	struct wsp_conn *a = conn_new(), *b = conn_new();
	uint64_t first;

	memset(&expired, 0, sizeof(expired));
	CU_ASSERT_EQUAL_FATAL(dq_init(&q, base, "t", INTERVAL, expire), 0);
	dq_push(&q, a);
	first = q.armed;
	dq_remove(a); /* the queue is empty; its timer stays set for a */
	CU_ASSERT(TAILQ_EMPTY(&q.head));
	CU_ASSERT_EQUAL(q.armed, first);
	sleep_ms(20);
	dq_push(&q, b); /* due after the timer: no re-arm */
	CU_ASSERT(b->deadline > first);
	CU_ASSERT_EQUAL(q.armed, first);
	run(&q);
	/* a, removed, never expires; b does, once, not before its time */
	CU_ASSERT_EQUAL(expired.n, 1);
	CU_ASSERT_PTR_EQUAL(expired.c[0], b);
	CU_ASSERT(expired.at[0] >= b->deadline);
	dq_fini(&q);
	free(a);
	free(b);
}

/* A queue whose interval shrank (a reload's handshake_timeout): a push
 * due before the armed time must re-arm, or it would expire late. */
static void
test_earlier_push_rearms(void)
{
	struct deadline_queue q;
	struct wsp_conn *a = conn_new(), *b = conn_new();

	memset(&expired, 0, sizeof(expired));
	CU_ASSERT_EQUAL_FATAL(dq_init(&q, base, "t", 1500, expire), 0);
	dq_push(&q, a);
	dq_remove(a);
	q.interval = INTERVAL; /* as dq_set_interval leaves it */
	dq_push(&q, b);
	CU_ASSERT_EQUAL(q.armed, b->deadline);
	run(&q);
	CU_ASSERT_EQUAL(expired.n, 1);
	CU_ASSERT_PTR_EQUAL(expired.c[0], b);
	CU_ASSERT(expired.at[0] >= b->deadline);
	/* late by far less than the old interval */
	CU_ASSERT(expired.at[0] < b->deadline + 1000);
	dq_fini(&q);
	free(a);
	free(b);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "an entry expires once, not before its deadline",
		    test_expires_once_not_early },
		{ "an emptied queue keeps its timer for a later push",
		    test_emptied_queue_keeps_its_timer },
		{ "a push due before the armed time re-arms",
		    test_earlier_push_rearms },
	};
	int rc;

	if ((base = event_base_new()) == NULL)
		return 1;
	rc = suite_run("deadlines", tests, nitems(tests));
	event_base_free(base);
	return rc;
}
