/*
 * keepalive.c: deadlines and the idle sweep.
 *
 * Every connection waits on at most one deadline at a time: the handshake
 * timeout, its next keepalive ping, or the end of its lingering close.  All
 * entries of one queue share the same interval, so appending at the tail
 * keeps a queue sorted by deadline: adding, moving and removing are O(1),
 * and each queue needs a single timer armed for its head.  This is the idea
 * behind libevent's common timeouts, without a struct event per connection.
 *
 * The sweep walks the registry every sweep_interval and reaps connections
 * that have been silent longer than idle_timeout.  It is O(N) once a
 * minute, which is cheaper than keeping a second per-connection deadline
 * refreshed on every inbound frame.
 */
#include <event2/event.h>

#include "wsplugd.h"

void
dq_rearm(struct deadline_queue *q)
{
	struct wsp_conn *head = TAILQ_FIRST(&q->head);
	struct timeval tv;
	uint64_t now, wait;

	if (head == NULL) {
		event_del(q->timer);
		return;
	}
	now = clock_mono_ms();
	wait = head->deadline > now ? head->deadline - now : 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	event_add(q->timer, &tv);
}

static void
dq_fire_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deadline_queue *q = arg;
	struct wsp_conn *c;
	uint64_t now = clock_mono_ms();

	(void)fd;
	(void)what;
	/* expire() may push c back (a ping) onto this queue's tail: its new
	 * deadline is in the future, so the loop stops there. */
	while ((c = TAILQ_FIRST(&q->head)) != NULL && c->deadline <= now) {
		dq_remove(c);
		q->expire(c);
	}
	dq_rearm(q);
}

int
dq_init(struct deadline_queue *q, struct event_base *base, const char *name,
    uint64_t interval, void (*expire)(struct wsp_conn *))
{
	TAILQ_INIT(&q->head);
	q->interval = interval;
	q->expire = expire;
	q->name = name;
	q->timer = evtimer_new(base, dq_fire_cb, q);
	return q->timer == NULL ? -1 : 0;
}

void
dq_fini(struct deadline_queue *q)
{
	struct wsp_conn *c;

	while ((c = TAILQ_FIRST(&q->head)) != NULL)
		dq_remove(c);
	if (q->timer != NULL)
		event_free(q->timer);
	q->timer = NULL;
}

void
dq_push(struct deadline_queue *q, struct wsp_conn *c)
{
	int was_empty;

	dq_remove(c);
	if (q == NULL)
		return;
	was_empty = TAILQ_EMPTY(&q->head);
	c->deadline = clock_mono_ms() + q->interval;
	c->dq = q;
	TAILQ_INSERT_TAIL(&q->head, c, dq_link);
	if (was_empty)
		dq_rearm(q);
}

void
dq_remove(struct wsp_conn *c)
{
	struct deadline_queue *q = c->dq;

	if (q == NULL)
		return;
	TAILQ_REMOVE(&q->head, c, dq_link);
	c->dq = NULL;
	/* A queue whose head left keeps its timer: it fires early, finds
	 * nothing due and re-arms.  Cheaper than re-arming on every removal. */
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;
	struct wsp_conn *c, *next;
	uint64_t now = clock_mono_ms(), idle;
	uint64_t limit = srv->cfg->idle_timeout;

	(void)fd;
	(void)what;
	if (limit == 0)
		return;
	TAILQ_FOREACH_SAFE(c, &srv->reg.conns, link, next) {
		idle = now - c->last_activity;
		if (idle > limit)
			conn_reap(c, idle);
	}
}

int
keepalive_start(struct wsp_server *srv)
{
	struct timeval tv;
	uint64_t ms = srv->cfg->sweep_interval;

	srv->sweep = event_new(srv->base, -1, EV_PERSIST, sweep_cb, srv);
	if (srv->sweep == NULL)
		return -1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return event_add(srv->sweep, &tv);
}

void
keepalive_stop(struct wsp_server *srv)
{
	if (srv->sweep != NULL)
		event_free(srv->sweep);
	srv->sweep = NULL;
}
