/*
 * drain.c: sending clients away without a storm.
 *
 * Two ways the daemon ends connections on purpose, each telling every
 * client when to come back (a retry slot from slots.c), so that they do
 * not all reconnect in the same instant:
 *
 *   drain_restart  a graceful restart (SIGQUIT, and the fallback of a
 *                  hand-over that cannot proceed): every connection is
 *                  closed with 1012 (Service Restart), the closes spread
 *                  evenly over [server] restart_spread, each reason
 *                  {"retry_after_ms":N}.  The slots start a second after
 *                  the last close (when the next process is serving) and
 *                  spread over a window as long as restart_spread or as
 *                  the measured accept rate needs for this many clients,
 *                  whichever is longer; so the clients come back at the
 *                  rate they left or slower.  The listeners stay open until the last
 *                  close: a client arriving meanwhile gets a 503 whose
 *                  Retry-After is a slot too.  Then the process waits up
 *                  to shutdown_timeout for the close handshakes and ends
 *                  its loop, as on SIGTERM.
 *   drain_shed     after a reload that lowered max_connections: the
 *                  connections above the new limit, newest first (they
 *                  lose the least), are closed with 1013 (Try Again
 *                  Later) and a slot at least SLOTS_REFUSAL_MS away.
 *
 * Closing one connection costs little, but 10,000 in one event would
 * still stall the loop and send every FIN at once: the closes go out from
 * a timer, in batches of what is due, every DRAIN_TICK_MS at the most.
 * The registry keeps its order: a connection closed is moved to its tail,
 * so the next to close is always at its head.
 *
 * This file sits above conn.c (it closes connections) and below server.c
 * and reload.c, which call it; it reaches the loop's end through the gone
 * hook, as a freed connection does.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "wsplugd.h"

#define DRAIN_TICK_MS 10
/* The slots start this long after the last close: the time the next
 * process takes to exit the old one's way and start serving (systemd
 * starts it only once this one has exited), so that the first clients
 * back find it listening rather than a refused connection and a backoff. */
#define DRAIN_NEXT_START_MS 1000

struct drain {
	struct event *tick;
	struct event *timeout;
	uint64_t started;  /* monotonic ms */
	uint64_t spread;   /* ms */
	uint64_t window;   /* ms of slots */
	uint64_t n;        /* connections to close */
	uint64_t closed;
	uint16_t code;
	int done;          /* every close sent */
};

/* Send c a close with code and its slot. */
static void
drain_close_one(struct wsp_server *srv, struct wsp_conn *c, uint16_t code,
    uint64_t retry_ms)
{
	char reason[WS_MAX_CONTROL];

	if (slots_reason(reason, sizeof(reason), retry_ms) == -1)
		reason[0] = '\0';
	conn_close(c, code, reason);
	registry_move_tail(&srv->reg, c);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;

	(void)fd;
	(void)what;
	log_msg(WSP_LOG_WARN, "daemon.restart",
	    "shutdown_timeout reached with %zu connections open",
	    srv->reg.count + srv->npending);
	event_base_loopbreak(srv->base);
}

/* Every close is sent: stop listening (the next process will) and wait
 * for the close handshakes. */
static void
drain_finish(struct wsp_server *srv)
{
	struct drain *d = srv->drain;
	uint64_t ms = srv->cfg->shutdown_timeout;
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };
	struct log_line *l;

	d->done = 1;
	if (d->tick != NULL)
		event_del(d->tick);
	listen_close_all(&srv->listeners);
	if ((l = log_begin(WSP_LOG_INFO, "daemon.restart")) != NULL) {
		log_str(l, "phase", "closed");
		log_uint(l, "closed", d->closed);
		log_uint(l, "elapsed_ms", clock_mono_ms() - d->started);
		log_uint(l, "open", srv->reg.count);
		log_end(l);
	}
	if ((d->timeout = evtimer_new(srv->base, drain_timeout_cb, srv)) ==
	    NULL || evtimer_add(d->timeout, &tv) == -1)
		event_base_loopbreak(srv->base);
	srv->conn_hooks.gone(srv);
}

static void
drain_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;
	struct drain *d = srv->drain;
	struct wsp_conn *c;
	uint64_t now = clock_mono_ms(), due, elapsed = now - d->started;
	size_t walked = 0, count = srv->reg.count;

	(void)fd;
	(void)what;
	/* Connection i closes at i x spread / n: at elapsed ms, those with
	 * i <= elapsed x n / spread are due. */
	due = d->spread == 0 || elapsed >= d->spread ? d->n :
	    elapsed * d->n / d->spread + 1;
	if (due > d->n)
		due = d->n;
	while (d->closed < due && walked < count &&
	    (c = TAILQ_FIRST(&srv->reg.conns)) != NULL) {
		walked++;
		if (c->state != CONN_OPEN) {
			/* closing on its own: not ours to count */
			registry_move_tail(&srv->reg, c);
			continue;
		}
		drain_close_one(srv, c, d->code, slots_take(&srv->slots, now));
		d->closed++;
	}
	if (d->closed >= d->n || walked >= count) {
		/* The planned n are closed, or none is left open: anything
		 * still open (a handshake that completed meanwhile) too. */
		TAILQ_FOREACH(c, &srv->reg.conns, link)
			if (c->state == CONN_OPEN) {
				drain_close_one(srv, c, d->code,
				    slots_take(&srv->slots, now));
				d->closed++;
				break; /* the list moved: start again */
			}
		if (c == NULL) {
			drain_finish(srv);
			return;
		}
	}
}

int
drain_restart(struct wsp_server *srv, int code)
{
	struct timeval tv = { 0, DRAIN_TICK_MS * 1000 };
	struct drain *d;
	struct log_line *l;
	uint64_t now = clock_mono_ms(), step;
	uint32_t rate;

	if (srv->drain != NULL || srv->draining) {
		log_msg(WSP_LOG_WARN, "daemon.restart",
		    "already stopping: restart ignored");
		return -1;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		log_msg(WSP_LOG_ERROR, "daemon.restart",
		    "out of memory: cannot spread the restart");
		return -1;
	}
	srv->drain = d;
	srv->draining = 1; /* new handshakes are refused, with a slot */
	notify_stopping(srv);
	d->started = now;
	d->spread = srv->cfg->restart_spread;
	d->code = (uint16_t)code;
	d->n = srv->reg.count;
	rate = slots_rate(&srv->slots);
	d->window = slots_window(d->n, rate, d->spread);
	slots_plan(&srv->slots, now + d->spread + DRAIN_NEXT_START_MS,
	    d->window, d->n);
	/* Batches of what is due: a tick per close when they are sparse
	 * (rounded up, so that each tick finds the next close due),
	 * DRAIN_TICK_MS when they are dense. */
	if (d->n > 0 && (step = (d->spread + d->n - 1) / d->n) >
	    DRAIN_TICK_MS) {
		tv.tv_sec = (time_t)(step / 1000);
		tv.tv_usec = (suseconds_t)(step % 1000) * 1000;
	}
	if ((l = log_begin(WSP_LOG_INFO, "daemon.restart")) != NULL) {
		log_str(l, "phase", "start");
		log_int(l, "code", code);
		log_uint(l, "connections", d->n);
		log_uint(l, "spread_ms", d->spread);
		log_uint(l, "window_ms", d->window);
		log_uint(l, "rate", rate);
		log_end(l);
	}
	if ((d->tick = event_new(srv->base, -1, EV_PERSIST, drain_tick_cb,
	    srv)) == NULL || event_add(d->tick, &tv) == -1) {
		/* No timer: close them all now, still with their slots. */
		d->spread = 0;
		drain_tick_cb(-1, 0, srv);
		return 0;
	}
	drain_tick_cb(-1, 0, srv); /* the first close is due at once */
	return 0;
}

void
drain_shed(struct wsp_server *srv)
{
	uint64_t max = srv->cfg->max_connections, total, excess, now;
	struct wsp_conn *c, *prev;
	struct log_line *l;
	uint64_t retry = 0, shed = 0;

	if (srv->draining)
		return;
	/* With workers > 1 the limit is the daemon's: each worker sheds its
	 * share of the excess, in proportion to what it holds, rounded up
	 * (so up to one more per worker than the excess, never fewer: the
	 * workers cannot agree on who sheds the last one without asking
	 * each other). */
	total = srv->limits != NULL ? limits_conn_count(srv->limits) :
	    srv->reg.count;
	if (total <= max || srv->reg.count == 0)
		return;
	excess = total - max;
	if (srv->limits != NULL)
		excess = (excess * srv->reg.count + total - 1) / total;
	now = clock_mono_ms();
	for (c = TAILQ_LAST(&srv->reg.conns, wsp_conn_list);
	    c != NULL && shed < excess; c = prev) {
		prev = TAILQ_PREV(c, wsp_conn_list, link);
		if (c->state != CONN_OPEN)
			continue;
		retry = slots_take_later(&srv->slots, now, SLOTS_REFUSAL_MS);
		drain_close_one(srv, c, WS_CLOSE_TRY_AGAIN, retry);
		shed++;
	}
	if ((l = log_begin(WSP_LOG_WARN, "daemon.shed")) != NULL) {
		log_uint(l, "shed", shed);
		log_uint(l, "max_connections", max);
		log_uint(l, "active", srv->reg.count);
		log_uint(l, "last_retry_ms", retry);
		log_end(l);
	}
}

void
drain_free(struct wsp_server *srv)
{
	struct drain *d = srv->drain;

	if (d == NULL)
		return;
	if (d->tick != NULL)
		event_free(d->tick);
	if (d->timeout != NULL)
		event_free(d->timeout);
	free(d);
	srv->drain = NULL;
}
