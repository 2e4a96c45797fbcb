/*
 * keepalive.c: deadlines and the idle sweep.
 *
 * Every connection waits on at most one deadline at a time: the handshake
 * timeout, its next keepalive ping, the peer's answer to our close frame,
 * or the end of its lingering close.  All
 * entries of one queue share the same interval, so appending at the tail
 * keeps a queue sorted by deadline: adding, moving and removing are O(1),
 * and each queue needs a single timer armed for its head.  This is the idea
 * behind libevent's common timeouts, without a struct event per connection.
 *
 * The sweep walks the registry every sweep_interval and hands connections
 * that have been silent longer than idle_timeout to the server's
 * sweep_expire hook (conn_reap).  Expiry of a queue entry is the queue's
 * expire hook: this file calls nothing above it.  It is O(N) once a
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
		q->armed = 0;
		return;
	}
	now = clock_mono_ms();
	wait = head->deadline > now ? head->deadline - now : 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	event_add(q->timer, &tv);
	q->armed = head->deadline;
}

static void
dq_fire_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deadline_queue *q = arg;
	struct wsp_conn *c;
	uint64_t now = clock_mono_ms();

	(void)fd;
	(void)what;
	q->armed = 0;
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
	q->armed = 0;
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
	q->armed = 0;
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
	/* A queue that emptied by removals kept its timer (dq_remove): if
	 * that fires no later than c is due, it will find c and re-arm for
	 * it then.  Under churn a queue empties and fills a thousand times
	 * a second, and an event_add each time was 1.2 % of a handshake's
	 * instructions. */
	if (was_empty && (q->armed == 0 || q->armed > c->deadline))
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
	 * nothing due and re-arms.  Cheaper than re-arming on every removal,
	 * and dq_push leaves it armed too while it is not late for the new
	 * head. */
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
			srv->sweep_expire(c, idle);
	}
}

/* Entries already queued keep their place: clamping every deadline to
 * now + the new interval keeps the FIFO sorted. */
static void
dq_set_interval(struct deadline_queue *q, uint64_t interval)
{
	struct wsp_conn *c;
	uint64_t limit = clock_mono_ms() + interval;

	if (q->interval == interval)
		return;
	q->interval = interval;
	TAILQ_FOREACH(c, &q->head, dq_link)
		if (c->deadline > limit)
			c->deadline = limit;
	dq_rearm(q);
}

/* A sweep every cfg->sweep_interval, armed; NULL when out of memory. */
static struct event *
sweep_new(struct wsp_server *srv, const struct wsp_config *cfg)
{
	struct event *ev;
	struct timeval tv;
	uint64_t ms = cfg->sweep_interval;

	if ((ev = event_new(srv->base, -1, EV_PERSIST, sweep_cb, srv)) == NULL)
		return NULL;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (event_add(ev, &tv) == -1) {
		event_free(ev);
		return NULL;
	}
	return ev;
}

int
keepalive_start(struct wsp_server *srv)
{
	return (srv->sweep = sweep_new(srv, srv->cfg)) == NULL ? -1 : 0;
}

void
keepalive_stop(struct wsp_server *srv)
{
	keepalive_reload_abort(srv);
	if (srv->sweep != NULL)
		event_free(srv->sweep);
	srv->sweep = NULL;
}

/*
 * Armed here, in prepare, so that commit cannot fail: the reload runs
 * inside one event callback and the interval is at least 100 ms, so the
 * new sweep cannot fire before commit or abort.
 */
int
keepalive_reload_prepare(struct wsp_server *srv, const struct wsp_config *cfg,
    struct wsp_errors *errs)
{
	keepalive_reload_abort(srv);
	if ((srv->sweep_staged = sweep_new(srv, cfg)) == NULL) {
		errors_add(errs, cfg->file, 0, "[keepalive] cannot start the "
		    "idle sweep: out of memory");
		return -1;
	}
	return 0;
}

void
keepalive_reload_commit(struct wsp_server *srv)
{
	const struct wsp_config *cfg = srv->cfg;
	int pings_were_off = srv->dq_ping.interval == 0;
	struct wsp_conn *c;

	if (srv->sweep != NULL)
		event_free(srv->sweep);
	srv->sweep = srv->sweep_staged;
	srv->sweep_staged = NULL;
	dq_set_interval(&srv->dq_handshake, cfg->handshake_timeout);
	dq_set_interval(&srv->dq_ping, cfg->ping_interval);
	/* pings turned off: none is due; turned on: every open connection
	 * without a deadline (lingering ones have theirs) is owed one */
	if (cfg->ping_interval == 0)
		while ((c = TAILQ_FIRST(&srv->dq_ping.head)) != NULL)
			dq_remove(c);
	else if (pings_were_off)
		TAILQ_FOREACH(c, &srv->reg.conns, link)
			if (c->state == CONN_OPEN && c->dq == NULL)
				dq_push(&srv->dq_ping, c);
}

void
keepalive_reload_abort(struct wsp_server *srv)
{
	if (srv->sweep_staged != NULL)
		event_free(srv->sweep_staged);
	srv->sweep_staged = NULL;
}
