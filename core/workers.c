/*
 * workers.c: a master and worker processes, for [server] workers > 1.
 *
 * The nginx model, because it keeps the plugin contract single-threaded:
 * the master reads and checks the configuration, opens the log, binds
 * every listener and the admin listener, and forks N workers.  Each worker
 * is today's whole server (main.c's serve) with its own event loop and its
 * own copy of the plugins; the master serves nothing, it supervises.
 *
 * Spreading connections: for every [server] listen address the master
 * binds N sockets in one SO_REUSEPORT group, one per worker, and keeps
 * them all.  The kernel hashes each new connection to one socket of the
 * group, so exactly one worker wakes for it (no accept thundering herd),
 * and a worker that dies is replaced by one that inherits the very same
 * socket, with the connections already queued on it.  The alternative, one
 * shared socket with EPOLLEXCLUSIVE, is not open to us: libevent 2.1's
 * epoll backend has no way to set EPOLLEXCLUSIVE on an event, and it
 * would wake the busiest worker as readily as an idle one.  The price of
 * the group: a worker's queue is its own, so a worker stuck in a plugin
 * holds the connections hashed to it until the watchdog replaces it.
 *
 * Limits: max_connections and max_connections_per_ip count every
 * worker's connections, in limits.c's shared counters; a dead worker's
 * places are given back before its replacement starts.
 *
 * The admin listener is one socket, served by worker 1 (and by its
 * replacement after a crash).  Its /metrics sums the workers: each
 * publishes its counts into its slot with every heartbeat (a seqlock,
 * so at most WORKER_BEAT_MS old), the master keeps a dead worker's
 * counters in a spare slot, and worker 1 adds them all to its own;
 * /healthz says how many workers are alive (their loop turned within
 * WORKER_STALE_MS).  /connections lists every
 * worker's: worker 1 asks the others over their control sockets, through
 * the master, and waits at most WORKER_LIST_WAIT_MS for them.
 *
 * Crashes and stalls: each worker has a slot in memory shared with the
 * master (an anonymous MAP_SHARED mapping made before the first fork): a
 * heartbeat it bumps from a timer of its loop, and the plugin callback it
 * is in (plugin.c stores it around each call).  The master reaps a dead
 * worker on SIGCHLD, logs worker.exit with its status or signal and the
 * plugin and callback from the slot, and forks its replacement at once, or
 * after a backoff doubling from 100 ms to 5 s while it keeps dying within
 * a second of its start.  A worker whose heartbeat stops for
 * worker_watchdog is killed with SIGKILL (worker.watchdog) and replaced.
 * The slot also holds the log lines a worker has gathered and not yet
 * written (log.c); the master writes what a dead one left there before
 * its worker.exit, so a worker killed or crashed loses none.
 *
 * SIGHUP, all or nothing: the master reads and checks the file (workers
 * and the listen addresses cannot change: they fail the reload with
 * FILE:LINE) and prepares its log, then says P to every worker over its
 * control socketpair (one byte each way); each runs reload.c's prepare
 * and answers p or f.  Only when all said p does each get C (commit);
 * otherwise, or when one dies or stays silent for WORKER_RELOAD_WAIT_S,
 * all get A (abort).  A worker replaced later forks from the master's
 * configuration, which is the committed one.
 *
 * The bus: the store of the channels (offsets, epochs, history, every
 * worker's members) is kept here in the master (bus_local.c's hub), and
 * each worker talks to it over a second socketpair made with its control
 * one; see bus_local.c for why this gives each subscriber every message
 * once and in order.  A dead worker's members leave every channel when it
 * is reaped; its replacement starts with none.  The master's reload
 * commit applies the new history limits to the store.  With [bus]
 * backend = redis (chosen at start; a reload may not change it) there
 * is no socketpair: each worker is a node of its own on Redis
 * (bus_redis.c), and the store here stays empty.
 *
 * SIGUSR2, the hand-over to a new binary: every worker's connections go
 * to the new master's worker of the same number, all or nothing; see
 * master_handover below for the steps and why the bus is quieted first.
 * The worker count and the listen addresses cannot change in one, since
 * a worker's connections and its socket of each group go together.
 *
 * SIGTERM or SIGINT: the master sends SIGTERM to every worker, each drains
 * as a single process does (close 1001, up to shutdown_timeout), and the
 * master exits once the last one is gone: 0, or 1 if one of them did not
 * exit 0 (a sanitizer's report, a kill past the grace period).  SIGQUIT,
 * the graceful restart, is the same with SIGQUIT passed on: each worker
 * closes its connections with 1012 spread over restart_spread (drain.c).
 * SIGUSR1 reopens the master's
 * log and is passed on.  The master alone talks to systemd (READY, the
 * watchdog, STATUS with the workers' total); workers run without
 * NOTIFY_SOCKET.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "wsplugd.h"

#define WORKER_BEAT_MS 100     /* how often a worker's loop stamps its slot */
#define WORKER_QUICK_MS 1000   /* dying sooner than this is "keeps dying" */
#define WORKER_BACKOFF_MS 100  /* the first delay once it keeps dying */
#define WORKER_BACKOFF_MAX_MS 5000
#define WORKER_KILL_GRACE_MS 10000 /* past shutdown_timeout: SIGKILL */
#define LISTEN_BACKLOG 511
#define ADMIN_BACKLOG 64
#define WORKER_RELOAD_WAIT_S 60 /* a worker's prepare answers within */
/* A worker whose loop has not turned for this long is not counted alive
 * (/healthz, wsplugd_workers_alive) until it turns again: 20 heartbeats,
 * so a busy machine does not make a healthy worker flap. */
#define WORKER_STALE_MS 2000

struct worker_shm {
	_Atomic uint64_t beat; /* monotonic ms of its last timer; 0: starting */
	struct plugin_calls calls;
	_Atomic int alive;     /* set by the master: ready and not reaped */
	_Atomic uint32_t seq;  /* odd while snap is being written */
	struct metrics_snap snap; /* published with each heartbeat */
	/* the spare slot: the master's bus store, for /metrics */
	_Atomic uint64_t bus_channels, bus_history_bytes;
	_Atomic uint64_t backlogged; /* workers replaced for their backlog */
	struct log_pending log; /* its gathered log lines (log_salvage) */
};

struct worker {
	int n;               /* 1..N, as logged */
	pid_t pid;           /* 0: not running */
	int ready;           /* its loop has turned */
	int *fds;            /* its socket of each listen address's group */
	uint64_t started;    /* monotonic ms of the fork */
	uint64_t beat_seen, beat_changed;
	unsigned fails;      /* quick deaths in a row */
	int ctl;             /* the master's end of its control socket */
	int cfd;             /* the worker's end, in the worker */
	int bfd;             /* its end of the bus socket, in the worker */
	struct bufferevent *ctl_bev; /* on ctl, in the master */
	int asked;           /* a reload's prepare is awaited from it */
	struct event *respawn;
	struct worker_shm *shm;
	/* hand-over: a third socket pair, frames of handover_io.c */
	int hom;             /* the master's end */
	int how;             /* the worker's end, in the worker */
	int succ;            /* new master: its predecessor's channel, for
	                      * its first start only */
	int hub_fd;          /* new master: its bus socket, attached to the
	                      * hub once the old master's history is in */
	int ho_state;        /* old master: 1 channel given, 2 READY,
	                      * 3 PAUSED, 4 ADOPTED */
	struct event *ho_ev; /* old master: hom readable */
};

static struct master {
	struct wsp_server srv; /* the master's loop and systemd notification */
	struct wsp_config *cfg;
	const char *file;
	int level;
	workers_serve_fn *serve;
	struct worker *w;
	size_t nw, alive;
	struct worker_shm *shm;
	size_t shm_size;
	struct limits *limits; /* max_connections and _per_ip, shared */
	char (*addr)[64];     /* each listen address, as bound */
	/* The addresses bound (their sockaddr; a reload cannot change them),
	 * kept apart from any configuration, which a reload frees. */
	struct wsp_listen_addr *lconf, *aconf;
	size_t nlisten;
	int *admin_fds;       /* handed to worker 1 */
	char (*admin_addr)[64];
	int starting;         /* not every worker was ready yet */
	int failed;           /* a worker failed its start: exit 1 */
	int unclean;          /* one exited non-zero while stopping: exit 1 */
	int draining;
	size_t saved_nadmin;  /* the admin addresses bound, as admin_fds */
	struct event *sig[7], *tick, *kill_timer;
	struct event beat_ev; /* in a worker: its heartbeat */
	struct event ctl_ev;  /* in a worker: the master's words */
	struct event ctl_wev; /* in a worker: ctl_out waits to be written */
	struct evbuffer *ctl_in, *ctl_out;
	struct wsp_server *wsrv; /* in a worker: its server */
	/* a reload in the master: the configuration every worker prepares */
	struct wsp_config *staged;
	int reloading;
	size_t awaited;
	struct wsp_errors reload_errs; /* which workers failed it */
	struct event *reload_timer;
	struct worker *self;  /* in a worker: its own entry */
	struct bus_hub *hub;  /* the bus's store, in the master */
	int bus_redis;        /* [bus] backend = redis at start: no hub */
	const struct workers_exec *ex; /* SIGUSR2's binary */
	/* a hand-over, in the old master: the new master and the steps */
	struct {
		pid_t pid;
		int fd;
		struct event *ev, *timer, *quiet;
		size_t nready, npaused, nadopted;
		uint64_t moved, started;
	} ho;
	/* in a new master: the old master's channel, until GO */
	struct handover_child *hc;
	struct event *hc_ev;
	int hub_wait;         /* the old master's history has not come yet */
	struct event ho_wev;  /* in a worker: its hand-over socket */
	struct handover_peer peer;
} M;

static uint64_t
workers_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A seqlock: the one writer makes seq odd while it copies. */
static void
shm_publish(struct worker_shm *slot, const struct metrics_snap *snap)
{
	atomic_fetch_add_explicit(&slot->seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
	slot->snap = *snap;
	atomic_fetch_add_explicit(&slot->seq, 1, memory_order_release);
}

static void
shm_read(struct worker_shm *slot, struct metrics_snap *out)
{
	uint32_t a, b;
	int tries = 0;

	do {
		a = atomic_load_explicit(&slot->seq, memory_order_acquire);
		*out = slot->snap;
		atomic_thread_fence(memory_order_acquire);
		b = atomic_load_explicit(&slot->seq, memory_order_relaxed);
	} while ((a != b || (a & 1)) && ++tries < 1000);
}

/*
 * In a worker.
 */

/* srv->metrics_sum in worker 1: every worker's published counts, those
 * of workers that died (kept by the master), and its own, live. */
static void
worker_metrics_sum(struct wsp_server *srv, struct metrics_snap *s)
{
	struct worker *me = srv->worker;
	struct metrics_snap x;
	size_t i, alive = 0;

	for (i = 0; i <= M.nw; i++) { /* M.nw: the dead ones' counters */
		alive += i < M.nw && atomic_load(&M.shm[i].alive);
		if (&M.shm[i] == me->shm)
			continue;
		shm_read(&M.shm[i], &x);
		metrics_add(s, &x);
	}
	s->workers = M.nw;
	s->workers_alive = alive;
	if (!M.bus_redis) { /* the master's store; with Redis, the sum */
		s->m.bus_channels = atomic_load(&M.shm[M.nw].bus_channels);
		s->m.bus_history_bytes =
		    atomic_load(&M.shm[M.nw].bus_history_bytes);
	}
	s->workers_backlogged = atomic_load(&M.shm[M.nw].backlogged);
}

static void
worker_beat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (!w->ready) {
		struct log_line *l = log_begin(WSP_LOG_INFO, "worker.ready");

		log_int(l, "pid", getpid());
		log_end(l);
		w->ready = 1;
	}
	atomic_store_explicit(&w->shm->beat, workers_now(),
	    memory_order_relaxed);
	if (M.wsrv != NULL) {
		struct metrics_snap snap;

		/* an idle worker asked to shed for another sheds here */
		conn_mem_poll(M.wsrv);
		metrics_snapshot(M.wsrv, &snap);
		shm_publish(w->shm, &snap);
	}
}

/* srv->bind: the sockets the master bound for this worker. */
static int
worker_bind(struct wsp_server *srv, const struct wsp_listen_addr *a,
    int backlog, char *addr, size_t addrlen)
{
	struct worker *w = srv->worker;
	size_t i;
	int fd;

	(void)backlog;
	for (i = 0; i < M.nlisten; i++)
		if (w->fds[i] != -1 && config_listen_same(&M.lconf[i].ss,
		    M.lconf[i].sslen, a)) {
			fd = w->fds[i];
			w->fds[i] = -1; /* the listener closes it */
			snprintf(addr, addrlen, "%s", M.addr[i]);
			return fd;
		}
	for (i = 0; w->n == 1 && i < M.saved_nadmin; i++)
		if (M.admin_fds[i] != -1 && config_listen_same(
		    &M.aconf[i].ss, M.aconf[i].sslen, a)) {
			fd = M.admin_fds[i];
			M.admin_fds[i] = -1;
			snprintf(addr, addrlen, "%s", M.admin_addr[i]);
			return fd;
		}
	errno = EADDRNOTAVAIL; /* not bound by the master */
	return -1;
}

/*
 * The control socket.  The master says P (prepare a reload of the file),
 * C (commit it) or A (abort it); a worker answers a P with p (prepared) or
 * f (failed, its errors logged by itself): one byte each.
 *
 * /connections crosses it too, in messages with fixed big-endian fields:
 * the worker serving the admin listener says G id limit (gather); the
 * master says L from id limit to every other running worker (list) and
 * X worker id back for each that is not running; a worker answers an L
 * with R from id active len and len bytes of lines (admin.c's), which the
 * master passes on to worker `from` as R worker id active len lines.  The
 * master keeps nothing: an answer that comes after the gather gave up on
 * it finds no gather and is dropped.  ctl_msg.c cuts the messages.
 */
#define WORKER_LIST_WAIT_MS 1000 /* a worker silent this long is missing */

/* One /connections request of worker 1's admin listener. */
struct gather {
	TAILQ_ENTRY(gather) entry;
	uint32_t id;
	conns_done_fn *done;
	void *arg;
	size_t waiting;
	struct event *timer;
	struct conns_part *parts;  /* one per worker */
	struct evbuffer **bufs;
	uint8_t *settled;          /* answered, or said not running */
};
static TAILQ_HEAD(, gather) gathers = TAILQ_HEAD_INITIALIZER(gathers);
static uint32_t gather_next;

static void
gather_free(struct gather *g)
{
	size_t i;

	TAILQ_REMOVE(&gathers, g, entry);
	if (g->timer != NULL)
		event_free(g->timer);
	for (i = 0; g->bufs != NULL && i < M.nw; i++)
		if (g->bufs[i] != NULL)
			evbuffer_free(g->bufs[i]);
	free(g->bufs);
	free(g->settled);
	free(g->parts);
	free(g);
}

static void
gather_finish(struct gather *g)
{
	size_t i;

	for (i = 0; i < M.nw; i++) {
		g->parts[i].len = evbuffer_get_length(g->bufs[i]);
		g->parts[i].lines = (const char *)evbuffer_pullup(g->bufs[i],
		    -1);
		if (g->parts[i].lines == NULL)
			g->parts[i].len = 0;
	}
	g->done(g->arg, g->parts, M.nw);
	gather_free(g);
}

static void
gather_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	gather_finish(arg); /* the silent ones stay unanswered: missing */
}

static struct gather *
gather_find(uint32_t id)
{
	struct gather *g;

	TAILQ_FOREACH(g, &gathers, entry)
		if (g->id == id)
			return g;
	return NULL;
}

/* An answer (or X: not running) for part worker of gather id. */
static void
gather_part(uint32_t id, uint32_t worker, int answered, uint64_t active,
    struct evbuffer *in, size_t len)
{
	struct gather *g = gather_find(id);
	struct conns_part *p;

	if (g == NULL || worker < 1 || worker > M.nw ||
	    g->settled[worker - 1]) {
		evbuffer_drain(in, len); /* too late, or stray */
		return;
	}
	p = &g->parts[worker - 1];
	p->answered = answered;
	p->active = active;
	if (evbuffer_remove_buffer(in, g->bufs[worker - 1], len) != (int)len)
		evbuffer_drain(in, len);
	g->settled[worker - 1] = 1;
	if (--g->waiting == 0)
		gather_finish(g);
}

static void
worker_ctl_send(const void *p, size_t n)
{
	if (evbuffer_add(M.ctl_out, p, n) == -1)
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot answer the "
		    "master: out of memory");
	/* at once if the socket takes it, as the master does */
	evbuffer_write(M.ctl_out, M.self->cfd);
	if (evbuffer_get_length(M.ctl_out) > 0)
		event_add(&M.ctl_wev, NULL);
}

/* srv->conns_gather, in worker 1. */
static int
worker_conns_gather(struct wsp_server *srv, uint64_t limit,
    conns_done_fn *done, void *arg)
{
	struct worker *me = srv->worker;
	struct timeval tv = { WORKER_LIST_WAIT_MS / 1000,
	    (WORKER_LIST_WAIT_MS % 1000) * 1000 };
	uint8_t m[CTL_G_LEN];
	struct gather *g;
	size_t i;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return -1;
	TAILQ_INSERT_TAIL(&gathers, g, entry);
	if ((g->parts = calloc(M.nw, sizeof(*g->parts))) == NULL ||
	    (g->bufs = calloc(M.nw, sizeof(*g->bufs))) == NULL ||
	    (g->settled = calloc(M.nw, 1)) == NULL ||
	    (g->timer = evtimer_new(srv->base, gather_timeout_cb, g)) ==
	    NULL) {
		gather_free(g);
		return -1;
	}
	for (i = 0; i < M.nw; i++) {
		g->parts[i].worker = (int)i + 1;
		if ((g->bufs[i] = evbuffer_new()) == NULL) {
			gather_free(g);
			return -1;
		}
	}
	if (++gather_next == 0)
		gather_next = 1;
	g->id = gather_next;
	g->done = done;
	g->arg = arg;
	g->waiting = M.nw - 1;
	g->parts[me->n - 1].answered = 1;
	g->settled[me->n - 1] = 1;
	g->parts[me->n - 1].active = srv->reg.count;
	admin_conns_lines(srv, limit, g->bufs[me->n - 1]);
	if (g->waiting == 0) {
		gather_finish(g);
		return 0;
	}
	m[0] = 'G';
	ctl_put32(m + 1, g->id);
	ctl_put32(m + 5, (uint32_t)limit);
	worker_ctl_send(m, sizeof(m));
	evtimer_add(g->timer, &tv);
	return 0;
}

/* srv->conns_cancel: the admin client went away. */
static void
worker_conns_cancel(struct wsp_server *srv, void *arg)
{
	struct gather *g, *next;

	(void)srv;
	TAILQ_FOREACH_SAFE(g, &gathers, entry, next)
		if (g->arg == arg)
			gather_free(g);
}

/* L: this worker's lines for worker `from`'s gather id. */
static void
worker_list(struct wsp_server *srv, const uint8_t *m)
{
	struct evbuffer *b = evbuffer_new();
	uint8_t h[CTL_R_LEN];
	size_t len;

	if (b == NULL)
		return; /* the gather calls this worker missing */
	admin_conns_lines(srv, ctl_get32(m + 9), b);
	len = evbuffer_get_length(b);
	ctl_put_r(h, ctl_get32(m + 1), ctl_get32(m + 5), srv->reg.count,
	    (uint32_t)len);
	if (evbuffer_add(M.ctl_out, h, sizeof(h)) == 0 &&
	    evbuffer_add_buffer(M.ctl_out, b) == 0)
		event_add(&M.ctl_wev, NULL);
	evbuffer_free(b);
}

static void
worker_ctl_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (evbuffer_write(M.ctl_out, fd) == -1 && errno != EAGAIN &&
	    errno != EINTR) {
		evbuffer_drain(M.ctl_out, evbuffer_get_length(M.ctl_out));
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot write to the "
		    "master: %s", strerror(errno));
	}
	if (evbuffer_get_length(M.ctl_out) == 0)
		event_del(&M.ctl_wev);
}

/* The whole message at the head of in (ctl_msg_len). */
static ssize_t
worker_ctl_len(struct evbuffer *in)
{
	uint8_t h[CTL_R_LEN];
	size_t have = evbuffer_get_length(in);

	evbuffer_copyout(in, h, have < sizeof(h) ? have : sizeof(h));
	return ctl_msg_len(h, have, CTL_TO_WORKER);
}

static void
worker_ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;
	struct evbuffer *in = M.ctl_in;
	struct log_line *l;
	uint8_t m[CTL_R_LEN];
	ssize_t n;
	int rd;
	char r;

	(void)what;
	if ((rd = evbuffer_read(in, fd, -1)) == -1 && (errno == EAGAIN ||
	    errno == EINTR))
		return;
	if (rd <= 0) { /* the master is gone: stop as on SIGTERM */
		event_del(&M.ctl_ev);
		event_del(&M.ctl_wev);
		log_msg(WSP_LOG_ERROR, "daemon.shutdown", "the master is gone");
		kill(getpid(), SIGTERM);
		return;
	}
	while (evbuffer_get_length(in) > 0 && (n = worker_ctl_len(in)) != 0) {
		if (n == -1) {
			log_msg(WSP_LOG_ERROR, "daemon.error", "the master sent "
			    "a message this worker does not know: ignored");
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		}
		evbuffer_copyout(in, m, (size_t)n < sizeof(m) ? (size_t)n :
		    sizeof(m));
		switch (m[0]) {
		case 'P':
			r = srv->cfg_staged == NULL && !srv->draining &&
			    server_reload_prepare(srv) == 0 ? 'p' : 'f';
			worker_ctl_send(&r, 1);
			break;
		case 'C':
			if (srv->cfg_staged != NULL)
				server_reload_commit(srv);
			break;
		case 'A':
			if (srv->cfg_staged == NULL)
				break;
			server_reload_abort(srv);
			if ((l = log_begin(WSP_LOG_WARN, "reload")) != NULL) {
				log_str(l, "result", "aborted");
				log_str(l, "msg", "another worker failed to "
				    "prepare: the running configuration and "
				    "plugins are unchanged");
				log_end(l);
			}
			break;
		case 'L':
			worker_list(srv, m);
			break;
		case 'X':
			evbuffer_drain(in, CTL_X_LEN);
			gather_part(ctl_get32(m + 5), ctl_get32(m + 1), 0, 0,
			    in, 0);
			continue;
		case 'R':
			evbuffer_drain(in, CTL_R_LEN);
			gather_part(ctl_get32(m + 5), ctl_get32(m + 1), 1,
			    (uint64_t)ctl_get32(m + 9) << 32 |
			    ctl_get32(m + 13), in, (size_t)n - CTL_R_LEN);
			continue;
		}
		evbuffer_drain(in, (size_t)n);
	}
}

/*
 * The hand-over, in a worker: the master passes it the channel to its
 * successor (HO_T_PEER) and says when to transfer (HO_T_TRANSFER), to
 * say GO (HO_T_GO) or to give up (HO_T_ABORT); the worker tells it each
 * step (handover.c's handover_peer).  Frames of handover_io.c on the
 * third socket pair, blocking with handover_timeout.
 */
static void
worker_ho_report(void *arg, uint16_t type, uint32_t count, const char *why)
{
	uint8_t c[4];

	(void)arg;
	if (type == HO_T_FAIL) {
		ho_send(M.self->how, type, why, strlen(why), NULL, 0);
		return;
	}
	c[0] = (uint8_t)count;
	c[1] = (uint8_t)(count >> 8);
	c[2] = (uint8_t)(count >> 16);
	c[3] = (uint8_t)(count >> 24);
	ho_send(M.self->how, type, c, 4, NULL, 0);
}

/* Between ADOPTED and GO, the loop standing still: GO (0), or anything
 * else, the master gone or silent past handover_timeout (-1). */
static int
worker_ho_await(void *arg)
{
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;

	(void)arg;
	if (ho_recv_plain(M.self->how, &f, &payload, &why) == -1)
		return -1;
	free(payload);
	return f.type == HO_T_GO ? 0 : -1;
}

/*
 * HO_T_PAUSE: from here this worker's loop stands still until its
 * transfer is done or called off.  Its bus frames go to the master first
 * (a publish, a subscribe), then it says PAUSED and keeps reading what
 * the master sends (deliveries, answers: written to its connections'
 * output, which moves with them) until the master, with every worker
 * paused and nothing left in flight on any bus socket, says TRANSFER.
 * So a message published before the pause reaches every subscriber
 * here, and one published after it reaches them through the new master:
 * once each, in order.
 */
static void
worker_ho_pause(struct wsp_server *srv)
{
	struct pollfd p[2];
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;
	uint64_t end = workers_now() + srv->cfg->handover_timeout, now;
	int bfd = -1, n;

	if (srv->handover == NULL)
		return; /* it failed already, and said so */
	if (bus_pump(srv->bus, 1, &bfd) == -1)
		bfd = -1;
	worker_ho_report(NULL, HO_T_PAUSED, 0, NULL);
	for (;;) {
		now = workers_now();
		p[0].fd = M.self->how;
		p[0].events = POLLIN;
		p[1].fd = bfd;
		p[1].events = POLLIN;
		p[0].revents = p[1].revents = 0;
		n = now < end ? poll(p, bfd >= 0 ? 2 : 1, (int)(end - now)) : 0;
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			worker_ho_report(NULL, HO_T_FAIL, 0, "no word from "
			    "the master within handover_timeout");
			handover_peer_abort(srv);
			return;
		}
		if (bfd >= 0 && p[1].revents != 0 &&
		    bus_pump(srv->bus, 0, &bfd) == -1)
			bfd = -1;
		if (p[0].revents == 0)
			continue;
		if (ho_recv_plain(M.self->how, &f, &payload, &why) == -1 ||
		    f.type != HO_T_TRANSFER) {
			free(payload);
			handover_peer_abort(srv);
			return;
		}
		free(payload);
		if (bfd >= 0)
			bus_pump(srv->bus, 0, &bfd);
		handover_peer_transfer(srv);
		return;
	}
}

static void
worker_ho_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;
	size_t nfds = 0;
	int fds[1];

	(void)what;
	if (ho_recv(fd, &f, &payload, fds, 1, &nfds, &why) == -1) {
		event_del(&M.ho_wev); /* the master is gone: ctl says so */
		return;
	}
	free(payload);
	switch (f.type) {
	case HO_T_PEER:
		if (nfds == 1)
			handover_peer_start(srv, fds[0], &M.peer);
		else
			worker_ho_report(NULL, HO_T_FAIL, 0, "no channel");
		return;
	case HO_T_PAUSE:
		worker_ho_pause(srv);
		break;
	case HO_T_ABORT:
		handover_peer_abort(srv);
		break;
	}
	ho_close_fds(fds, nfds);
}

static void
worker_setup(struct wsp_server *srv, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, WORKER_BEAT_MS * 1000 };

	srv->worker = w;
	srv->bind = worker_bind;
	srv->calls = &w->shm->calls;
	srv->bus_fd = w->bfd; /* server_init hands it to the bus */
	w->bfd = -1;
	srv->admin_off = w->n != 1;
	if (w->n == 1) {
		srv->metrics_sum = worker_metrics_sum;
		srv->conns_gather = worker_conns_gather;
		srv->conns_cancel = worker_conns_cancel;
		/* a replacement's ids differ from its predecessor's, whose
		 * late answers may still come */
		gather_next = (uint32_t)getpid() << 12;
	}
	M.wsrv = srv;
	srv->limits = M.limits;
	limits_set_worker(M.limits, (size_t)w->n - 1);
	event_assign(&M.beat_ev, srv->base, -1, EV_PERSIST, worker_beat_cb, w);
	event_add(&M.beat_ev, &tv);
	event_assign(&M.ctl_ev, srv->base, w->cfd, EV_READ | EV_PERSIST,
	    worker_ctl_cb, srv);
	event_assign(&M.ctl_wev, srv->base, w->cfd, EV_WRITE | EV_PERSIST,
	    worker_ctl_write_cb, NULL);
	if (M.ctl_in == NULL)
		M.ctl_in = evbuffer_new();
	if (M.ctl_out == NULL)
		M.ctl_out = evbuffer_new();
	if (M.ctl_in == NULL || M.ctl_out == NULL)
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot read the "
		    "master's control socket: out of memory");
	else
		event_add(&M.ctl_ev, NULL);
	M.peer.report = worker_ho_report;
	M.peer.await = worker_ho_await;
	ho_set_timeout(w->how, srv->cfg->handover_timeout);
	event_assign(&M.ho_wev, srv->base, w->how, EV_READ | EV_PERSIST,
	    worker_ho_cb, srv);
	event_add(&M.ho_wev, NULL);
	/* A new master's worker: its predecessor's connections first
	 * (main.c's serve runs handover_child_run before the loop); the
	 * first worker alone counts the hand-over. */
	if (w->succ != -1) {
		srv->handover_child = handover_child_peer(w->succ,
		    srv->cfg->handover_timeout, w->n == 1);
		w->succ = -1;
		if (srv->handover_child == NULL) {
			/* serving anew would take what is queued for the
			 * old one: the old daemon keeps everything */
			log_msg(WSP_LOG_ERROR, "handover.failed", "worker %d: "
			    "out of memory", w->n);
			log_detach();
			_exit(1);
		}
	}
}

static void master_free(void);
static void master_ho_fail(const char *why);
static void master_ho_clear(void);
static void master_close_sockets(void);
static void master_ctl_close(struct worker *);
static void master_ctl_cb(struct bufferevent *, void *);
static void master_ctl_event_cb(struct bufferevent *, short, void *);

/* The child side of a fork: drop the master's loop and every socket that
 * is not this worker's, then serve. */
static void
worker_main(struct worker *w)
{
	struct server_hooks hooks = { worker_setup, w };
	char n[16];
	size_t i, j;
	int rc;

	M.self = w;
	/* The loop is shared with the master until reinit: only then may
	 * its events be deleted without touching the master's epoll set. */
	event_reinit(M.srv.base);
	for (i = 0; i < M.nw; i++) {
		master_ctl_close(&M.w[i]); /* its events first, then the fd */
		/* the other workers' hand-over and bus ends, and this one's
		 * master end: only the master may hold them */
		if (M.w[i].hom != -1)
			close(M.w[i].hom);
		M.w[i].hom = -1;
		if (&M.w[i] != w && M.w[i].succ != -1) {
			close(M.w[i].succ);
			M.w[i].succ = -1;
		}
		if (M.w[i].hub_fd != -1)
			close(M.w[i].hub_fd);
		M.w[i].hub_fd = -1;
	}
	for (i = 0; i < M.nw; i++)
		for (j = 0; M.w[i].fds != NULL && j < M.nlisten; j++)
			if (&M.w[i] != w && M.w[i].fds[j] != -1) {
				close(M.w[i].fds[j]);
				M.w[i].fds[j] = -1;
			}
	if (w->n != 1) {
		for (i = 0; i < M.saved_nadmin; i++)
			if (M.admin_fds[i] != -1) {
				close(M.admin_fds[i]);
				M.admin_fds[i] = -1;
			}
	}
	master_free();
	unsetenv("NOTIFY_SOCKET");
	snprintf(n, sizeof(n), "%d", w->n);
	setenv("WSPLUGD_WORKER", n, 1);
	log_set_worker(w->n, &w->shm->log);
	rc = M.serve(&M.cfg, M.file, M.level, &hooks);
	close(w->cfd);
	close(w->how);
	if (M.ctl_in != NULL)
		evbuffer_free(M.ctl_in);
	if (M.ctl_out != NULL)
		evbuffer_free(M.ctl_out);
	config_free(M.cfg); /* the one in force: a reload may have replaced it */
	log_fini(); /* before the shared slots, where its lines gather, go */
	master_close_sockets(); /* what is left of the master's tables */
	libevent_global_shutdown();
	exit(rc);
}

/*
 * In the master.
 */

static void
master_free(void)
{
	size_t i;

	for (i = 0; i < nitems(M.sig); i++)
		if (M.sig[i] != NULL) {
			event_free(M.sig[i]);
			M.sig[i] = NULL;
		}
	for (i = 0; i < M.nw; i++) {
		if (M.w[i].respawn != NULL) {
			event_free(M.w[i].respawn);
			M.w[i].respawn = NULL;
		}
		if (M.w[i].ctl_bev != NULL) {
			bufferevent_free(M.w[i].ctl_bev);
			M.w[i].ctl_bev = NULL;
		}
	}
	if (M.reload_timer != NULL)
		event_free(M.reload_timer);
	M.reload_timer = NULL;
	if (M.tick != NULL)
		event_free(M.tick);
	if (M.kill_timer != NULL)
		event_free(M.kill_timer);
	M.tick = M.kill_timer = NULL;
	bus_hub_free(M.hub); /* in a worker: closes the others' sockets */
	M.hub = NULL;
	/* a hand-over's channels: in a worker, the master's alone */
	M.ho.pid = 0;
	master_ho_clear();
	if (M.hc_ev != NULL)
		event_free(M.hc_ev);
	M.hc_ev = NULL;
	if (M.hc != NULL)
		handover_child_done(M.hc);
	M.hc = NULL;
	server_free(&M.srv);
}

static int
worker_spawn(struct worker *w)
{
	struct log_line *l;
	pid_t pid;
	int sv[2], bsv[2], hsv[2];

	atomic_store(&w->shm->beat, 0);
	atomic_store(&w->shm->calls.now, 0);
	w->shm->calls.next = 0;
	w->ready = 0;
	w->beat_seen = 0;
	w->started = workers_now();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot make a control "
		    "socket for worker %d: %s", w->n, strerror(errno));
		return -1;
	}
	/* the bus: frames to and from the store kept here (bus_local.c);
	 * with Redis, each worker talks to Redis itself (bus_redis.c) */
	bsv[0] = bsv[1] = -1;
	if (!M.bus_redis &&
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, bsv) == -1) {
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot make a bus "
		    "socket for worker %d: %s", w->n, strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	/* the hand-over's (SIGUSR2): blocking, with handover_timeout */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hsv) == -1) {
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot make a hand-over "
		    "socket for worker %d: %s", w->n, strerror(errno));
		close(sv[0]);
		close(sv[1]);
		if (bsv[0] != -1) {
			close(bsv[0]);
			close(bsv[1]);
		}
		return -1;
	}
	if ((pid = fork()) == -1) {
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot fork worker %d: "
		    "%s", w->n, strerror(errno));
		close(sv[0]);
		close(sv[1]);
		if (bsv[0] != -1) {
			close(bsv[0]);
			close(bsv[1]);
		}
		close(hsv[0]);
		close(hsv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		if (bsv[0] != -1)
			close(bsv[0]);
		close(hsv[0]);
		w->bfd = bsv[1];
		w->cfd = sv[1];
		w->how = hsv[1];
		evutil_make_socket_nonblocking(w->cfd);
		worker_main(w);
	}
	close(sv[1]);
	if (bsv[0] != -1)
		close(bsv[1]);
	close(hsv[1]);
	if (w->hom != -1)
		close(w->hom);
	w->hom = hsv[0];
	ho_set_timeout(w->hom, M.cfg->handover_timeout);
	if (w->succ != -1) { /* the worker has it now */
		close(w->succ);
		w->succ = -1;
	}
	if (bsv[0] == -1) /* Redis: no store here */
		;
	else if (M.hub_wait) /* the old master's history first */
		w->hub_fd = bsv[0];
	else if (bus_hub_attach(M.hub, (size_t)w->n - 1, bsv[0]) == -1)
		log_msg(WSP_LOG_ERROR, "bus.error", "cannot watch worker %d's "
		    "bus socket: out of memory", w->n);
	w->ctl = sv[0];
	evutil_make_socket_nonblocking(w->ctl);
	if ((w->ctl_bev = bufferevent_socket_new(M.srv.base, w->ctl, 0)) ==
	    NULL)
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot watch worker "
		    "%d's control socket: out of memory", w->n);
	else {
		bufferevent_setcb(w->ctl_bev, master_ctl_cb, NULL,
		    master_ctl_event_cb, w);
		bufferevent_enable(w->ctl_bev, EV_READ | EV_WRITE);
	}
	w->pid = pid;
	M.alive++;
	if ((l = log_begin(WSP_LOG_INFO, "worker.start")) != NULL) {
		log_int(l, "worker", w->n);
		log_int(l, "pid", pid);
		log_end(l);
	}
	return 0;
}

static void
worker_respawn_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (!M.draining)
		worker_spawn(arg);
}

static void
master_signal_workers(int sig)
{
	size_t i;

	for (i = 0; i < M.nw; i++)
		if (M.w[i].pid > 0)
			kill(M.w[i].pid, sig);
}

static void
master_kill_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_msg(WSP_LOG_WARN, "daemon.shutdown", "%zu workers still running "
	    "past shutdown_timeout: killing them", M.alive);
	master_signal_workers(SIGKILL);
}

static void
master_drain(void)
{
	uint64_t ms = M.cfg->shutdown_timeout + WORKER_KILL_GRACE_MS;
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	master_ho_fail("the daemon is stopping");
	M.draining = 1;
	notify_stopping(&M.srv);
	log_msg(WSP_LOG_INFO, "daemon.shutdown", "stopping %zu workers",
	    M.alive);
	master_signal_workers(SIGTERM);
	if ((M.kill_timer = evtimer_new(M.srv.base, master_kill_cb, NULL)) !=
	    NULL)
		evtimer_add(M.kill_timer, &tv);
	if (M.alive == 0)
		event_base_loopbreak(M.srv.base);
}

/* SIGQUIT, the graceful restart: every worker closes its own
 * connections with 1012, spread over restart_spread with their slots
 * (drain.c); the master waits for them as for a shutdown, the spread
 * added to its patience. */
static void
master_restart(void)
{
	uint64_t ms = M.cfg->restart_spread + M.cfg->shutdown_timeout +
	    WORKER_KILL_GRACE_MS;
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	master_ho_fail("the daemon is restarting");
	M.draining = 1;
	notify_stopping(&M.srv);
	log_msg(WSP_LOG_INFO, "daemon.restart", "restarting %zu workers "
	    "over %llu ms", M.alive,
	    (unsigned long long)M.cfg->restart_spread);
	master_signal_workers(SIGQUIT);
	if ((M.kill_timer = evtimer_new(M.srv.base, master_kill_cb, NULL)) !=
	    NULL)
		evtimer_add(M.kill_timer, &tv);
	if (M.alive == 0)
		event_base_loopbreak(M.srv.base);
}

/* A dead worker's counters carry on in the spare slot M.shm[M.nw], so
 * the sums on /metrics never go back; its gauges are gone with it. */
static void
master_retire_metrics(struct worker *w)
{
	struct metrics_snap dead, sum, zero;

	atomic_store(&w->shm->alive, 0);
	shm_read(w->shm, &dead);
	metrics_snap_gone(&dead);
	shm_read(&M.shm[M.nw], &sum);
	metrics_add(&sum, &dead);
	shm_publish(&M.shm[M.nw], &sum);
	memset(&zero, 0, sizeof(zero));
	shm_publish(w->shm, &zero);
}

static void
master_ctl_close(struct worker *w)
{
	if (w->ctl_bev != NULL)
		bufferevent_free(w->ctl_bev);
	if (w->ctl != -1)
		close(w->ctl);
	w->ctl_bev = NULL;
	w->ctl = -1;
}

/* Into the socket now when nothing waits before it, not on the loop's
 * next turn: a reload's commit is in the socket before the master logs
 * the reload done.  What the socket does not take, the bufferevent
 * writes later (its output buffer can be drained by it alone). */
static void
master_ctl_write(struct worker *w, const void *p, size_t n)
{
	ssize_t k = 0;

	if (w->ctl_bev == NULL)
		return;
	if (evbuffer_get_length(bufferevent_get_output(w->ctl_bev)) == 0 &&
	    (k = write(w->ctl, p, n)) == -1)
		k = 0; /* EAGAIN, or an error its event will report */
	if ((size_t)k < n && bufferevent_write(w->ctl_bev,
	    (const char *)p + k, n - (size_t)k) == -1)
		log_msg(WSP_LOG_ERROR, "daemon.error", "cannot write to worker "
		    "%d's control socket: out of memory", w->n);
}

static void
master_tell(struct worker *w, char b)
{
	master_ctl_write(w, &b, 1);
}

/* Every worker asked has answered (or died): all commit, or all abort. */
static void
master_reload_done(void)
{
	struct wsp_config *old;
	struct log_line *l;
	uint64_t total;
	size_t i;
	int ok = M.reload_errs.n == 0;

	M.reloading = 0;
	if (M.reload_timer != NULL)
		evtimer_del(M.reload_timer);
	for (i = 0; i < M.nw; i++)
		if (M.w[i].pid > 0)
			master_tell(&M.w[i], ok ? 'C' : 'A');
	total = metrics_reloaded(&M.srv, ok);
	if (ok) {
		struct bus_limits lim;

		old = M.cfg;
		M.cfg = M.srv.cfg = M.staged; /* replacements start with it */
		bus_limits_of(M.cfg, &lim);
		bus_hub_configure(M.hub, &lim);
		log_reload_commit(M.cfg);
		config_free(old);
	} else {
		log_reload_abort();
		config_free(M.staged);
	}
	M.staged = NULL;
	l = log_begin(ok ? WSP_LOG_INFO : WSP_LOG_ERROR, "reload");
	log_str(l, "result", ok ? "ok" : "failed");
	log_uint(l, "workers", M.nw);
	log_uint(l, ok ? "ok_total" : "failed_total", total);
	if (!ok) {
		for (i = 0; i < M.reload_errs.n; i++)
			log_str(l, i == 0 ? "failed_in" : "also",
			    M.reload_errs.msg[i]);
		log_str(l, "msg", "every worker aborted: the running "
		    "configuration and plugins are unchanged");
	}
	log_end(l);
	errors_clear(&M.reload_errs);
	notify_ready(&M.srv);
}

static void
master_answered(struct worker *w, int ok)
{
	if (!w->asked)
		return;
	w->asked = 0;
	if (!ok && w->pid > 0)
		errors_add(&M.reload_errs, NULL, 0, "worker %d", w->n);
	if (--M.awaited == 0)
		master_reload_done();
}

/* G from w: every other worker is asked for its list (L), and w is told
 * at once of those not running (X). */
static void
master_gather(struct worker *w, const uint8_t *m)
{
	uint8_t l[CTL_L_LEN], x[CTL_X_LEN];
	size_t i;

	l[0] = 'L';
	ctl_put32(l + 1, (uint32_t)w->n);
	memcpy(l + 5, m + 1, 8); /* id, limit */
	x[0] = 'X';
	memcpy(x + 5, m + 1, 4);
	for (i = 0; i < M.nw; i++) {
		if (&M.w[i] == w)
			continue;
		if (M.w[i].pid > 0 && M.w[i].ctl_bev != NULL)
			master_ctl_write(&M.w[i], l, sizeof(l));
		else {
			ctl_put32(x + 1, (uint32_t)M.w[i].n);
			master_ctl_write(w, x, sizeof(x));
		}
	}
}

/* R from w for worker `from`: passed on with w's number instead. */
static void
master_relay(struct worker *w, struct evbuffer *in, const uint8_t *m,
    size_t len)
{
	uint32_t from = ctl_get32(m + 1);
	struct worker *to = from >= 1 && from <= M.nw ? &M.w[from - 1] : NULL;
	uint8_t h[CTL_R_LEN];

	evbuffer_drain(in, CTL_R_LEN);
	if (to == NULL || to->ctl_bev == NULL) {
		evbuffer_drain(in, len);
		return;
	}
	memcpy(h, m, sizeof(h));
	ctl_put32(h + 1, (uint32_t)w->n);
	master_ctl_write(to, h, sizeof(h));
	if (evbuffer_remove_buffer(in, bufferevent_get_output(to->ctl_bev),
	    len) != (int)len)
		evbuffer_drain(in, len);
}

static void
master_ctl_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct worker *w = arg;
	uint8_t m[CTL_R_LEN];
	size_t have;
	ssize_t n;

	while ((have = evbuffer_get_length(in)) > 0 && w->ctl_bev != NULL) {
		evbuffer_copyout(in, m, have < sizeof(m) ? have : sizeof(m));
		if ((n = ctl_msg_len(m, have, CTL_TO_MASTER)) == 0)
			return; /* the rest is on its way */
		if (n == -1) {
			log_msg(WSP_LOG_ERROR, "daemon.error", "worker %d sent a "
			    "control message the master does not know: "
			    "ignored", w->n);
			evbuffer_drain(in, have);
			return;
		}
		switch (m[0]) {
		case 'p':
		case 'f':
			evbuffer_drain(in, 1);
			master_answered(w, m[0] == 'p');
			break;
		case 'G':
			master_gather(w, m);
			evbuffer_drain(in, CTL_G_LEN);
			break;
		case 'R':
			master_relay(w, in, m, (size_t)n - CTL_R_LEN);
			break;
		}
	}
}

static void
master_ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	/* it is dying: SIGCHLD will say how */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		master_ctl_close(arg);
}

static void
master_reload_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t i;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < M.nw; i++)
		if (M.w[i].asked) {
			errors_add(&M.reload_errs, NULL, 0, "worker %d did not "
			    "answer", M.w[i].n);
			master_answered(&M.w[i], 0);
		}
}

/* A reload's addresses must be those bound (same order), else an error
 * at the first one's line. */
static void
master_same_addrs(const struct wsp_config *cfg, const char *what,
    const struct wsp_listen_addr *bound, size_t nbound,
    const struct wsp_listen_addr *a, size_t n, struct wsp_errors *errs)
{
	size_t i;
	int same = n == nbound;

	for (i = 0; same && i < n; i++)
		same = config_listen_same(&bound[i].ss, bound[i].sslen, &a[i]);
	if (!same)
		errors_add(errs, cfg->file, n > 0 ? a[0].line : 0, "%s listen: "
		    "with workers > 1 a reload does not change the addresses "
		    "(restart the daemon)", what);
}

/* What a reload cannot change while workers run: FILE:LINE errors. */
static void
master_reload_check(const struct wsp_config *cfg, struct wsp_errors *errs)
{
	if (cfg->workers != M.nw)
		errors_add(errs, cfg->file, cfg->workers_line, "[server] "
		    "workers: %llu, but %zu are running: a reload does not "
		    "change the number of workers (restart the daemon)",
		    (unsigned long long)cfg->workers, M.nw);
	/* the workers' bus is the master's store or Redis from the start,
	 * and a replacement must join the same one */
	if ((cfg->bus_backend == BUS_BACKEND_REDIS) != M.bus_redis)
		errors_add(errs, cfg->file, cfg->bus_backend_line, "[bus] "
		    "backend: %s, but the workers run with %s: a reload does "
		    "not change the bus backend (restart the daemon)",
		    M.bus_redis ? "local" : "redis",
		    M.bus_redis ? "redis" : "local");
	master_same_addrs(cfg, "[server]", M.lconf, M.nlisten, cfg->listen,
	    cfg->nlisten, errs);
	master_same_addrs(cfg, "[admin]", M.aconf, M.saved_nadmin,
	    cfg->admin_listen, cfg->nadmin_listen, errs);
}

/* SIGHUP: the master reads and checks the file, then every worker
 * prepares it; master_reload_done decides once all have answered. */
static void
master_reload(void)
{
	struct wsp_errors errs = { NULL, 0 };
	struct timeval tv = { WORKER_RELOAD_WAIT_S, 0 };
	struct wsp_config *cfg;
	struct log_line *l;
	size_t i;

	if (M.draining || M.reloading || M.ho.fd != -1) {
		log_msg(WSP_LOG_WARN, "reload", "SIGHUP ignored while %s",
		    M.draining ? "shutting down" : M.reloading ?
		    "a reload is under way" : "a hand-over is under way");
		return;
	}
	log_msg(WSP_LOG_INFO, "reload", "SIGHUP: reloading %s", M.file);
	notify_reloading(&M.srv);
	if ((cfg = config_load(M.file, M.srv.default_plugin_dir, &errs)) !=
	    NULL) {
		if (M.level != -1)
			cfg->log_level = M.level;
		master_reload_check(cfg, &errs);
		/* the master's own log; on failure nothing is left open */
		if (errs.n == 0)
			log_reload_prepare(cfg, &errs);
	}
	if (errs.n > 0) {
		for (i = 0; i < errs.n; i++)
			log_msg(WSP_LOG_ERROR, "config.error", "%s",
			    errs.msg[i]);
		if ((l = log_begin(WSP_LOG_ERROR, "reload")) != NULL) {
			log_str(l, "result", "failed");
			log_uint(l, "workers", M.nw);
			log_uint(l, "errors", errs.n);
			log_uint(l, "failed_total", metrics_reloaded(&M.srv, 0));
			log_str(l, "msg", "the running configuration and "
			    "plugins are unchanged");
			log_end(l);
		}
		config_free(cfg);
		errors_clear(&errs);
		notify_ready(&M.srv);
		return;
	}
	M.staged = cfg;
	M.reloading = 1;
	for (i = 0; i < M.nw; i++)
		if (M.w[i].pid > 0 && M.w[i].ctl != -1) {
			M.w[i].asked = 1;
			M.awaited++;
			master_tell(&M.w[i], 'P');
		} else
			errors_add(&M.reload_errs, NULL, 0, "worker %d is not "
			    "running", M.w[i].n);
	if (M.reload_timer == NULL)
		M.reload_timer = evtimer_new(M.srv.base,
		    master_reload_timeout_cb, NULL);
	if (M.reload_timer != NULL)
		evtimer_add(M.reload_timer, &tv);
	if (M.awaited == 0)
		master_reload_done();
}

static void
master_reaped(struct worker *w, int status)
{
	uint32_t now = atomic_load(&w->shm->calls.now);
	uint64_t lived = workers_now() - w->started, delay = 0;
	struct timeval tv;
	struct log_line *l;
	int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	pid_t pid = w->pid;

	/* what it logged and had not written yet comes before the news of
	 * its end: after the watchdog's SIGKILL or a crash, the lines of
	 * its last moments (the connection that hung it) */
	log_salvage(&w->shm->log);
	w->pid = 0;
	M.alive--;
	master_ctl_close(w);
	if (w->ho_state > 0) {
		char why[64];

		snprintf(why, sizeof(why), "worker %d died", w->n);
		master_ho_fail(why);
	}
	if (w->asked) {
		errors_add(&M.reload_errs, NULL, 0, "worker %d died", w->n);
		master_answered(w, 0);
	}
	/* every place its connections held in the limits is free again */
	limits_worker_gone(M.limits, (size_t)w->n - 1);
	/* and its subscribers leave every channel */
	bus_hub_detach(M.hub, (size_t)w->n - 1);
	master_retire_metrics(w);
	if (!M.draining && !M.starting) {
		if (lived < WORKER_QUICK_MS)
			w->fails++;
		else
			w->fails = 0;
		if (w->fails > 1) {
			delay = (uint64_t)WORKER_BACKOFF_MS << (w->fails - 2 < 6 ?
			    w->fails - 2 : 6);
			if (delay > WORKER_BACKOFF_MAX_MS)
				delay = WORKER_BACKOFF_MAX_MS;
		}
	}
	l = log_begin(M.draining && clean ? WSP_LOG_INFO : WSP_LOG_WARN,
	    "worker.exit");
	log_int(l, "worker", w->n);
	log_int(l, "pid", pid);
	if (WIFSIGNALED(status)) {
		log_str(l, "signal", sigabbrev_np(WTERMSIG(status)) != NULL ?
		    sigabbrev_np(WTERMSIG(status)) : "?");
		log_str(l, "detail", strsignal(WTERMSIG(status)));
	} else
		log_int(l, "status", WEXITSTATUS(status));
	if (now != 0) {
		log_str(l, "plugin", plugin_call_plugin(&w->shm->calls, now));
		log_str(l, "callback", plugin_callback_name(now));
	}
	if (!M.draining && !M.starting)
		log_uint(l, "respawn_ms", delay);
	log_end(l);
	if (M.draining) {
		M.unclean |= !clean;
		if (M.alive == 0)
			event_base_loopbreak(M.srv.base);
		return;
	}
	if (M.starting) { /* a worker that cannot start: none will */
		M.failed = 1;
		master_drain();
		return;
	}
	if (delay == 0) {
		worker_spawn(w);
		return;
	}
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	if (w->respawn == NULL)
		w->respawn = evtimer_new(M.srv.base, worker_respawn_cb, w);
	if (w->respawn == NULL || evtimer_add(w->respawn, &tv) == -1)
		worker_spawn(w);
}

static void
master_sigchld(void)
{
	pid_t pid;
	size_t i;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (M.ho.pid > 0 && pid == M.ho.pid) {
			char why[128];

			M.ho.pid = 0;
			if (WIFSIGNALED(status))
				snprintf(why, sizeof(why), "the new master died "
				    "of %s", strsignal(WTERMSIG(status)));
			else
				snprintf(why, sizeof(why), "the new master "
				    "exited with status %d",
				    WEXITSTATUS(status));
			master_ho_fail(why);
			continue;
		}
		for (i = 0; i < M.nw; i++)
			if (M.w[i].pid == pid) {
				master_reaped(&M.w[i], status);
				break;
			}
	}
}

static size_t
master_active(void)
{
	struct metrics_snap x;
	size_t i, n = 0;

	for (i = 0; i < M.nw; i++) {
		shm_read(&M.shm[i], &x);
		n += x.active;
	}
	return n;
}

/* Every WORKER_BEAT_MS: readiness, the watchdog, the total for systemd. */
static void
master_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = workers_now(), beat, wd = M.cfg->worker_watchdog;
	uint64_t channels, bytes;
	struct log_line *l;
	struct worker *w;
	size_t i, ready = 0;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < M.nw; i++) {
		w = &M.w[i];
		if (w->pid <= 0)
			continue;
		beat = atomic_load_explicit(&w->shm->beat,
		    memory_order_relaxed);
		if (beat != w->beat_seen) {
			w->beat_seen = beat;
			w->beat_changed = now;
			w->ready = 1;
			atomic_store(&w->shm->alive, 1);
		}
		if (w->ready && now - w->beat_changed > WORKER_STALE_MS)
			atomic_store(&w->shm->alive, 0);
		if (w->ready && wd > 0 && now - w->beat_changed > wd &&
		    !M.draining) {
			if ((l = log_begin(WSP_LOG_ERROR, "worker.watchdog")) !=
			    NULL) {
				log_int(l, "worker", w->n);
				log_int(l, "pid", w->pid);
				log_uint(l, "ms", now - w->beat_changed);
				log_end(l);
			}
			kill(w->pid, SIGKILL);
			w->ready = 0; /* once */
		}
		ready += w->ready;
	}
	/* The master has no connections of its own: its registry count is
	 * the workers' total, which notify.c reports as STATUS= (so that
	 * `systemctl status` shows the daemon's). */
	M.srv.reg.count = master_active();
	bus_hub_stats(M.hub, &channels, &bytes);
	atomic_store(&M.shm[M.nw].bus_channels, channels);
	atomic_store(&M.shm[M.nw].bus_history_bytes, bytes);
	/* started by a hand-over: not before GO */
	if (M.starting && ready == M.nw && M.hc == NULL) {
		M.starting = 0;
		log_msg(WSP_LOG_INFO, "master.ready", "%zu workers serving",
		    M.nw);
		if (notify_start(&M.srv) == -1)
			log_msg(WSP_LOG_WARN, "notify.error", "cannot set up "
			    "systemd notification: out of memory");
	}
}

/* The bus hub holds more for worker i than its budget: the worker is not
 * reading (stopped, stuck, or slower than the traffic).  It is replaced,
 * as the watchdog would, so that the master's memory stays bounded and its
 * clients resume from history on a worker that keeps up (bus_local.c). */
static void
master_backlog(void *arg, size_t i, size_t queued, uint64_t budget)
{
	struct worker *w = &M.w[i];
	struct log_line *l;

	(void)arg;
	if (w->pid <= 0)
		return;
	if ((l = log_begin(WSP_LOG_ERROR, "worker.backlog")) != NULL) {
		log_int(l, "worker", w->n);
		log_int(l, "pid", w->pid);
		log_uint(l, "bytes", queued);
		log_uint(l, "budget", budget);
		log_str(l, "msg", "the worker does not read its bus messages: "
		    "replacing it");
		log_end(l);
	}
	atomic_fetch_add(&M.shm[M.nw].backlogged, 1);
	kill(w->pid, SIGKILL);
	w->ready = 0; /* the watchdog need not kill it too */
}

/*
 * The hand-over (SIGUSR2), in the old master.  Every connection of every
 * worker moves, all or nothing:
 *
 *   old master                  new master (exec)        new worker i
 *   LISTEN: every socket of --> takes them, config
 *   every group, worker order   checked whole; the
 *   (and the admin's)           worker count must match
 *                          <--  READY + a_i (i < N)      b_i (forked)
 *   a_i to old worker i (HO_T_PEER); it waits for READY on it, serving
 *   every worker READY: PAUSE to each; each stops, writes out its bus
 *   frames, says PAUSED and goes on reading the bus (deliveries and
 *   answers into its connections' output, which moves with them)
 *   all PAUSED and no byte in flight on any bus socket (bus_hub_idle):
 *   HISTORY, the store's, final --> loaded, then the new workers' bus
 *   now                              sockets are read
 *   TRANSFER to every old worker, each runs handover.c's transfer
 *   (CONNS, END) to its successor, which adopts, has its channels'
 *   subscribes answered and says ADOPTED; each old worker reports it
 *   and waits
 *   all ADOPTED: counters, MAINPID=, GO --> READY=1 once its workers turn
 *   GO to every old worker, each says GO to its successor and leaves
 *
 * Why the pause: a message the master wrote to a worker that has stopped
 * would be lost with the moved connections, and one published after the
 * history was saved would be missing from the new master's.  With every
 * worker stopped and the bus sockets empty, each message was delivered by
 * the old daemon or will be by the new one, never both, never neither.
 *
 * Anything else (a FAIL, an exit, a worker's failure, handover_timeout):
 * ABORT to every old worker, which carries on serving; the new master is
 * killed; its workers, who touched nothing, see their channel close and
 * exit without a word to any client.
 */
static void
master_ho_count_failed(void)
{
	struct metrics_snap sum;

	/* in the spare slot, which /metrics adds (workers count nothing) */
	shm_read(&M.shm[M.nw], &sum);
	sum.m.handovers_failed++;
	shm_publish(&M.shm[M.nw], &sum);
}

static void
master_ho_clear(void)
{
	size_t i;

	for (i = 0; M.w != NULL && i < M.nw; i++) {
		if (M.w[i].ho_ev != NULL)
			event_free(M.w[i].ho_ev);
		M.w[i].ho_ev = NULL;
		M.w[i].ho_state = 0;
	}
	if (M.ho.ev != NULL)
		event_free(M.ho.ev);
	if (M.ho.timer != NULL)
		event_free(M.ho.timer);
	if (M.ho.quiet != NULL)
		event_free(M.ho.quiet);
	if (M.ho.fd != -1)
		close(M.ho.fd);
	M.ho.ev = M.ho.timer = M.ho.quiet = NULL;
	M.ho.fd = -1;
	M.ho.pid = 0;
	M.ho.nready = M.ho.npaused = M.ho.nadopted = 0;
	M.ho.moved = 0;
}

static void
master_ho_fail(const char *why)
{
	char buf[384];
	size_t i;
	int st = 0;

	if (M.ho.fd == -1 && M.ho.pid == 0)
		return;
	for (i = 0; i < M.nw; i++)
		if (M.w[i].ho_state > 0 && M.w[i].pid > 0)
			ho_send(M.w[i].hom, HO_T_ABORT, NULL, 0, NULL, 0);
	if (M.ho.pid > 0) {
		kill(M.ho.pid, SIGKILL);
		if (waitpid(M.ho.pid, &st, 0) != M.ho.pid)
			;
		else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
			snprintf(buf, sizeof(buf), "%s (it exited with status "
			    "%d)", why, WEXITSTATUS(st));
			why = buf;
		} else if (WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL) {
			snprintf(buf, sizeof(buf), "%s (it died of %s)", why,
			    strsignal(WTERMSIG(st)));
			why = buf;
		}
	}
	master_ho_count_failed();
	ho_log_failed("old", M.ho.pid, why);
	master_ho_clear();
}

static void
master_ho_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	master_ho_fail("no answer within handover_timeout");
}

/* Every worker paused and no bus frame in flight: the store's history
 * (final now) to the new master, then every worker transfers at once. */
static void master_ho_transfer(void);

static void
master_ho_quiet_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	master_ho_transfer();
}

static void
master_ho_transfer(void)
{
	struct outbuf b = { NULL, 0, 0 };
	size_t i;
	char buf[512];

	if (!bus_hub_idle(M.hub)) {
		struct timeval tv = { 0, 1000 };

		/* the loop moves the bytes; look again in a moment */
		if (M.ho.quiet == NULL && (M.ho.quiet = evtimer_new(
		    M.srv.base, master_ho_quiet_cb, NULL)) == NULL) {
			master_ho_fail("out of memory");
			return;
		}
		evtimer_add(M.ho.quiet, &tv);
		return;
	}

	if (bus_hub_save(M.hub, &b) == -1)
		log_msg(WSP_LOG_WARN, "handover.history", "cannot write the "
		    "bus history: channels start a new epoch");
	if (ho_send(M.ho.fd, HO_T_HISTORY, b.p, b.len, NULL, 0) == -1) {
		free(b.p);
		master_ho_fail(ho_why_gone(M.ho.fd, "cannot send the bus "
		    "history", buf, sizeof(buf)));
		return;
	}
	free(b.p);
	for (i = 0; i < M.nw; i++)
		if (ho_send(M.w[i].hom, HO_T_TRANSFER, NULL, 0, NULL, 0) ==
		    -1) {
			master_ho_fail("cannot reach a worker");
			return;
		}
}

/* Every connection adopted: GO, everywhere; this master leaves once
 * its workers have. */
static void
master_ho_commit(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct metrics_snap dead;
	struct log_line *l;
	uint64_t v[HOC_N];
	size_t i;
	pid_t pid = M.ho.pid;

	/* what the spare slot carries on (workers that died, hand-overs
	 * that failed) goes on in the new master's */
	shm_read(&M.shm[M.nw], &dead);
	memset(v, 0, sizeof(v));
	v[HOC_OPENED] = dead.opened;
	v[HOC_MSGS_IN] = dead.m.msgs_in;
	v[HOC_MSGS_OUT] = dead.m.msgs_out;
	v[HOC_BYTES_IN] = dead.m.bytes_in;
	v[HOC_BYTES_OUT] = dead.m.bytes_out;
	v[HOC_PINGS] = dead.m.pings;
	v[HOC_REAPS] = dead.m.reaps;
	v[HOC_RELOADS_OK] = dead.m.reloads_ok;
	v[HOC_RELOADS_FAILED] = dead.m.reloads_failed;
	v[HOC_HANDOVERS_OK] = dead.m.handovers_ok;
	v[HOC_HANDOVERS_FAILED] = dead.m.handovers_failed;
	if (ho_counters_encode(&b, v, HOC_N) == -1 ||
	    ho_send(M.ho.fd, HO_T_END, b.p, b.len, NULL, 0) == -1) {
		free(b.p);
		master_ho_fail("cannot send the counters to the new master");
		return;
	}
	free(b.p);
	notify_mainpid(&M.srv, (long)pid);
	if (ho_send(M.ho.fd, HO_T_GO, NULL, 0, NULL, 0) == -1) {
		master_ho_fail("cannot send GO to the new master");
		return;
	}
	for (i = 0; i < M.nw; i++)
		ho_send(M.w[i].hom, HO_T_GO, NULL, 0, NULL, 0);
	if ((l = log_begin(WSP_LOG_INFO, "handover.done")) != NULL) {
		log_int(l, "pid", pid);
		log_uint(l, "workers", M.nw);
		log_uint(l, "moved", M.ho.moved);
		log_uint(l, "took_ms", workers_now() - M.ho.started);
		log_end(l);
	}
	M.ho.pid = 0; /* its own now: never killed from here */
	master_ho_clear();
	M.draining = 1; /* no worker replaced: they leave */
	if (M.alive == 0)
		event_base_loopbreak(M.srv.base);
}

static void
master_ho_worker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;
	char buf[512];
	size_t i;

	(void)what;
	if (ho_recv_plain(fd, &f, &payload, &why) == -1) {
		snprintf(buf, sizeof(buf), "worker %d: %s", w->n, why);
		master_ho_fail(buf);
		return;
	}
	if (f.type == HO_T_READY && w->ho_state == 1) {
		w->ho_state = 2;
		if (++M.ho.nready == M.nw)
			for (i = 0; i < M.nw; i++)
				ho_send(M.w[i].hom, HO_T_PAUSE, NULL, 0, NULL,
				    0);
	} else if (f.type == HO_T_PAUSED && w->ho_state == 2) {
		w->ho_state = 3;
		if (++M.ho.npaused == M.nw)
			master_ho_transfer();
	} else if (f.type == HO_T_ADOPTED && w->ho_state == 3 && f.len == 4) {
		w->ho_state = 4;
		M.ho.moved += (uint32_t)payload[0] |
		    (uint32_t)payload[1] << 8 | (uint32_t)payload[2] << 16 |
		    (uint32_t)payload[3] << 24;
		if (++M.ho.nadopted == M.nw)
			master_ho_commit();
	} else {
		snprintf(buf, sizeof(buf), "worker %d: %.*s", w->n,
		    f.type == HO_T_FAIL ? (int)(f.len < 400 ? f.len : 400) :
		    20, f.type != HO_T_FAIL ? "unexpected frame" :
		    payload != NULL ? (const char *)payload : "");
		master_ho_fail(buf);
	}
	free(payload);
}

/* The new master's READY, with each new worker's channel, or its FAIL. */
static void
master_ho_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;
	char buf[512];
	size_t nfds = 0, i;
	int fds[HO_BATCH_FDS];

	(void)what;
	(void)arg;
	if (ho_recv(fd, &f, &payload, fds, HO_BATCH_FDS, &nfds, &why) == -1) {
		master_ho_fail(why);
		return;
	}
	if (f.type == HO_T_FAIL) {
		ho_fail_text(&f, payload, buf, sizeof(buf));
		free(payload);
		master_ho_fail(buf);
		return;
	}
	free(payload);
	if (f.type != HO_T_READY || nfds != M.nw) {
		ho_close_fds(fds, nfds);
		master_ho_fail(f.type != HO_T_READY ? "unexpected frame from "
		    "the new process" : "the new master has another number "
		    "of workers");
		return;
	}
	for (i = 0; i < M.nw; i++) {
		if (M.w[i].pid <= 0 || ho_send(M.w[i].hom, HO_T_PEER, NULL, 0,
		    &fds[i], 1) == -1 || (M.w[i].ho_ev = event_new(M.srv.base,
		    M.w[i].hom, EV_READ | EV_PERSIST, master_ho_worker_cb,
		    &M.w[i])) == NULL || event_add(M.w[i].ho_ev, NULL) == -1) {
			ho_close_fds(fds, nfds);
			snprintf(buf, sizeof(buf), "cannot reach worker %d",
			    M.w[i].n);
			master_ho_fail(buf);
			return;
		}
		M.w[i].ho_state = 1;
		close(fds[i]);
		fds[i] = -1;
	}
}

static void
master_handover(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct timeval tv;
	struct log_line *l;
	size_t nfds = 0, i, j;
	int fds[HO_BATCH_FDS];
	const char *why = NULL;
	char buf[512];

	if (M.ho.fd != -1)
		why = "a hand-over is already running";
	else if (M.draining)
		why = "shutting down";
	else if (M.starting || M.reloading)
		why = M.starting ? "the workers are starting" :
		    "a reload is under way";
	else if (M.ex == NULL || M.ex->path == NULL)
		why = "the daemon's own path is not known";
	for (i = 0; why == NULL && i < M.nw; i++)
		if (M.w[i].pid <= 0 || !M.w[i].ready)
			why = "a worker is not running";
	/* every socket of every group, in worker order (the new master
	 * gives worker k the k-th of each address), then the admin's */
	for (i = 0; why == NULL && i < M.nw; i++)
		for (j = 0; why == NULL && j < M.nlisten; j++)
			if (handover_listen_add(&b, fds, &nfds, HO_LISTEN_WS,
			    (uint8_t)M.lconf[j].tls, &M.lconf[j].ss,
			    M.lconf[j].sslen, M.w[i].fds[j]) == -1)
				why = "out of memory, or too many listeners";
	for (i = 0; why == NULL && i < M.saved_nadmin; i++)
		if (M.admin_fds[i] != -1 && handover_listen_add(&b, fds,
		    &nfds, HO_LISTEN_ADMIN, 0, &M.aconf[i].ss,
		    M.aconf[i].sslen, M.admin_fds[i]) == -1)
			why = "out of memory, or too many listeners";
	if (why != NULL) {
		free(b.p);
		handover_refuse(&M.srv, why);
		return;
	}
	M.ho.started = workers_now();
	if (handover_exec(M.ex->path, M.ex->argv, &M.ho.fd, &M.ho.pid) ==
	    -1) {
		free(b.p);
		M.ho.fd = -1;
		M.ho.pid = 0;
		master_ho_count_failed();
		ho_log_failed("old", getpid(), strerror(errno));
		return;
	}
	if ((l = log_begin(WSP_LOG_INFO, "handover.start")) != NULL) {
		log_str(l, "binary", M.ex->path);
		log_int(l, "pid", M.ho.pid);
		log_uint(l, "workers", M.nw);
		log_uint(l, "connections", master_active());
		log_end(l);
	}
	ho_set_timeout(M.ho.fd, M.cfg->handover_timeout);
	if (ho_send(M.ho.fd, HO_T_LISTEN, b.p, b.len, fds, nfds) == -1) {
		free(b.p);
		master_ho_fail(ho_why_gone(M.ho.fd, "cannot pass the "
		    "listeners on", buf, sizeof(buf)));
		return;
	}
	free(b.p);
	tv.tv_sec = (time_t)(M.cfg->handover_timeout / 1000);
	tv.tv_usec = (suseconds_t)(M.cfg->handover_timeout % 1000) * 1000;
	if ((M.ho.ev = event_new(M.srv.base, M.ho.fd, EV_READ | EV_PERSIST,
	    master_ho_read_cb, NULL)) == NULL ||
	    event_add(M.ho.ev, NULL) == -1 ||
	    (M.ho.timer = evtimer_new(M.srv.base, master_ho_timeout_cb,
	    NULL)) == NULL || evtimer_add(M.ho.timer, &tv) == -1)
		master_ho_fail("out of memory");
}

static void
master_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	switch (sig) {
	case SIGCHLD:
		master_sigchld();
		break;
	case SIGTERM:
	case SIGINT:
		if (M.draining) {
			log_msg(WSP_LOG_WARN, "daemon.shutdown",
			    "second %s: workers exit now", strsignal(sig));
			master_signal_workers(SIGTERM);
		} else
			master_drain();
		break;
	case SIGQUIT:
		if (M.draining)
			log_msg(WSP_LOG_WARN, "daemon.restart",
			    "SIGQUIT ignored while stopping");
		else
			master_restart();
		break;
	case SIGHUP:
		master_reload();
		break;
	case SIGUSR1:
		if (log_reopen() == -1)
			log_msg(WSP_LOG_ERROR, "log.reopen",
			    "cannot reopen the log file: %s", strerror(errno));
		master_signal_workers(SIGUSR1);
		break;
	case SIGUSR2:
		master_handover();
		break;
	}
}

/* Bind n sockets of one SO_REUSEPORT group for a: the first on a's port
 * (0 lets the kernel choose), the others on the port it got. */
static int
master_bind_group(const struct wsp_listen_addr *a, size_t li,
    struct wsp_errors *errs)
{
	struct wsp_listen_addr at = *a;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char addr[64];
	size_t k;
	int fd;

	for (k = 0; k < M.nw; k++) {
		/* a hand-over's: the old master's socket of worker k */
		if ((fd = handover_child_take(M.hc, a, LISTEN_BACKLOG, addr,
		    sizeof(addr))) == -1 && errno == ENOENT) {
			if (M.hc != NULL) {
				/* worker k's connections come from the old
				 * worker k, with its sockets: all of them */
				errors_add(errs, M.cfg->file, a->line, "listen "
				    "%s: not an address of the running daemon: "
				    "with workers > 1 a hand-over keeps the "
				    "listen addresses (restart the daemon)",
				    a->text);
				return -1;
			}
			fd = listen_bind(&at, LISTEN_BACKLOG, 1, addr,
			    sizeof(addr));
		}
		if (fd == -1) {
			errors_add(errs, M.cfg->file, a->line, "listen %s: %s",
			    a->text, strerror(errno));
			return -1;
		}
		M.w[k].fds[li] = fd;
		if (k == 0) {
			memcpy(M.addr[li], addr, sizeof(M.addr[li]));
			if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
				if (ss.ss_family == AF_INET6)
					((struct sockaddr_in6 *)&at.ss)->sin6_port =
					    ((struct sockaddr_in6 *)&ss)->sin6_port;
				else
					((struct sockaddr_in *)&at.ss)->sin_port =
					    ((struct sockaddr_in *)&ss)->sin_port;
			}
		}
	}
	return 0;
}

static int
master_setup(struct wsp_errors *errs)
{
	const struct wsp_config *cfg = M.cfg;
	int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD, SIGQUIT,
	    SIGUSR2 };
	struct timeval tv = { 0, WORKER_BEAT_MS * 1000 };
	struct bus_limits lim;
	struct log_line *l;
	size_t i, j;

	M.nw = cfg->workers;
	M.shm_size = (M.nw + 1) * sizeof(struct worker_shm);
	M.shm = mmap(NULL, M.shm_size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (M.shm == MAP_FAILED)
		M.shm = NULL;
	if (M.shm == NULL || (M.limits = limits_new(M.nw)) == NULL) {
		errors_add(errs, NULL, 0, "cannot map shared memory for %zu "
		    "workers: %s", M.nw, strerror(errno));
		return -1;
	}
	if ((M.w = calloc(M.nw, sizeof(*M.w))) == NULL ||
	    (M.addr = calloc(cfg->nlisten, sizeof(*M.addr))) == NULL ||
	    (M.lconf = calloc(cfg->nlisten + 1, sizeof(*M.lconf))) == NULL ||
	    (M.aconf = calloc(cfg->nadmin_listen + 1, sizeof(*M.aconf))) ==
	    NULL ||
	    (M.admin_fds = calloc(cfg->nadmin_listen + 1, sizeof(int))) ==
	    NULL || (M.admin_addr = calloc(cfg->nadmin_listen + 1,
	    sizeof(*M.admin_addr))) == NULL)
		goto nomem;
	bus_limits_of(cfg, &lim);
	M.bus_redis = cfg->bus_backend == BUS_BACKEND_REDIS;
	if ((M.hub = bus_hub_new(M.srv.base, &lim, M.nw)) == NULL)
		goto nomem;
	bus_hub_on_overflow(M.hub, master_backlog, NULL);
	for (i = 0; i < M.nw; i++) {
		M.w[i].n = (int)i + 1;
		M.w[i].ctl = M.w[i].cfd = M.w[i].bfd = -1;
		M.w[i].hom = M.w[i].how = M.w[i].succ = M.w[i].hub_fd = -1;
		M.w[i].shm = &M.shm[i];
		if ((M.w[i].fds = malloc((cfg->nlisten + 1) * sizeof(int))) ==
		    NULL)
			goto nomem;
		for (j = 0; j < cfg->nlisten; j++)
			M.w[i].fds[j] = -1;
	}
	M.saved_nadmin = cfg->nadmin_listen;
	M.nlisten = cfg->nlisten;
	for (i = 0; i < cfg->nlisten; i++)
		M.lconf[i] = cfg->listen[i];
	for (i = 0; i < cfg->nadmin_listen; i++)
		M.aconf[i] = cfg->admin_listen[i];
	for (i = 0; i < cfg->nadmin_listen; i++)
		M.admin_fds[i] = -1;
	for (i = 0; i < cfg->nlisten; i++) {
		if (master_bind_group(&cfg->listen[i], i, errs) == 0 &&
		    (l = log_begin(WSP_LOG_INFO, "listen.start")) != NULL) {
			log_str(l, "addr", M.addr[i]);
			log_uint(l, "sockets", M.nw);
			log_end(l);
		}
	}
	for (i = 0; i < cfg->nadmin_listen; i++)
		if (((M.admin_fds[i] = handover_child_take(M.hc,
		    &cfg->admin_listen[i], ADMIN_BACKLOG, M.admin_addr[i],
		    sizeof(M.admin_addr[i]))) == -1 && errno == ENOENT &&
		    (M.admin_fds[i] = listen_bind(&cfg->admin_listen[i],
		    ADMIN_BACKLOG, 0, M.admin_addr[i],
		    sizeof(M.admin_addr[i]))) == -1) || M.admin_fds[i] == -1)
			errors_add(errs, cfg->file, cfg->admin_listen[i].line,
			    "[admin] listen %s: %s", cfg->admin_listen[i].text,
			    strerror(errno));
	if (errs->n == 0 && M.hc != NULL && handover_child_left(M.hc) > 0)
		errors_add(errs, cfg->file, cfg->nlisten > 0 ?
		    cfg->listen[0].line : 0, "[server] listen: the running "
		    "daemon listens on an address this configuration drops: "
		    "with workers > 1 a hand-over keeps the listen addresses "
		    "(restart the daemon)");
	if (errs->n > 0)
		return -1;
	for (i = 0; i < nitems(sigs); i++)
		if ((M.sig[i] = evsignal_new(M.srv.base, sigs[i],
		    master_signal_cb, NULL)) == NULL ||
		    evsignal_add(M.sig[i], NULL) == -1)
			goto nomem;
	if ((M.tick = event_new(M.srv.base, -1, EV_PERSIST, master_tick_cb,
	    NULL)) == NULL || event_add(M.tick, &tv) == -1)
		goto nomem;
	return 0;
nomem:
	errors_add(errs, NULL, 0, "cannot start the master: out of memory");
	return -1;
}

static void
master_close_sockets(void)
{
	size_t i, j;

	for (i = 0; M.w != NULL && i < M.nw; i++) {
		for (j = 0; M.w[i].fds != NULL && j < M.nlisten; j++)
			if (M.w[i].fds[j] != -1)
				close(M.w[i].fds[j]);
		free(M.w[i].fds);
	}
	for (i = 0; M.admin_fds != NULL && i < M.saved_nadmin; i++)
		if (M.admin_fds[i] != -1)
			close(M.admin_fds[i]);
	free(M.w);
	free(M.addr);
	free(M.admin_fds);
	free(M.admin_addr);
	free(M.lconf);
	free(M.aconf);
	if (M.shm != NULL)
		munmap(M.shm, M.shm_size);
	limits_free(M.limits);
}

/*
 * The hand-over, in the new master (started by an old one's SIGUSR2):
 * its sockets were taken from the old master's (master_setup); now one
 * socket pair per worker, a_i to the old master (READY), b_i to new
 * worker i; then it waits for HISTORY (the bus store, loaded before any
 * new worker's bus socket is read, so that channels keep their epoch and
 * offsets) and GO, after which the workers' loops turn and READY=1 goes
 * to systemd.  An old master that goes away before GO: exit 1.
 */
static void
master_hc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_snap sum;
	uint64_t v[HOC_N];
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;
	size_t i;

	(void)what;
	(void)arg;
	if (ho_recv_plain(fd, &f, &payload, &why) == -1 ||
	    (f.type != HO_T_HISTORY && f.type != HO_T_GO &&
	    f.type != HO_T_END) ||
	    (f.type == HO_T_END && ho_counters_decode(payload, f.len, v,
	    HOC_N, &why) == -1) ||
	    (f.type == HO_T_HISTORY && !M.hub_wait) ||
	    (f.type == HO_T_GO && M.hub_wait)) {
		free(payload);
		ho_log_failed("new", getpid(), why != NULL ? why :
		    "unexpected frame from the old master");
		event_del(M.hc_ev);
		M.failed = 1;
		master_drain();
		return;
	}
	if (f.type == HO_T_HISTORY) {
		if (f.len > 0 && bus_hub_load(M.hub, payload, f.len,
		    &why) == -1)
			log_msg(WSP_LOG_WARN, "handover.history", "bus history "
			    "refused, channels start a new epoch: %s", why);
		M.hub_wait = 0;
		for (i = 0; i < M.nw; i++)
			if (M.w[i].hub_fd != -1) {
				if (bus_hub_attach(M.hub, i, M.w[i].hub_fd) ==
				    -1)
					log_msg(WSP_LOG_ERROR, "bus.error",
					    "cannot watch worker %d's bus "
					    "socket: out of memory", M.w[i].n);
				M.w[i].hub_fd = -1;
			}
		free(payload);
		return;
	}
	free(payload);
	if (f.type == HO_T_END) {
		shm_read(&M.shm[M.nw], &sum);
		sum.opened += v[HOC_OPENED];
		sum.m.msgs_in += v[HOC_MSGS_IN];
		sum.m.msgs_out += v[HOC_MSGS_OUT];
		sum.m.bytes_in += v[HOC_BYTES_IN];
		sum.m.bytes_out += v[HOC_BYTES_OUT];
		sum.m.pings += v[HOC_PINGS];
		sum.m.reaps += v[HOC_REAPS];
		sum.m.reloads_ok += v[HOC_RELOADS_OK];
		sum.m.reloads_failed += v[HOC_RELOADS_FAILED];
		sum.m.handovers_ok += v[HOC_HANDOVERS_OK];
		sum.m.handovers_failed += v[HOC_HANDOVERS_FAILED];
		shm_publish(&M.shm[M.nw], &sum);
		return;
	}
	/* GO: the channels no connection came back to go now */
	bus_hub_sweep(M.hub);
	event_free(M.hc_ev);
	M.hc_ev = NULL;
	handover_child_done(M.hc);
	M.hc = NULL;
}

/* 0, or -1 (FAIL said, logged). */
static int
master_hc_start(void)
{
	int a[HO_BATCH_FDS], sv[2], fd = handover_child_fd(M.hc);
	size_t i, n = 0;

	for (i = 0; i < M.nw && i < HO_BATCH_FDS; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
		    sv) == -1)
			goto fail;
		a[n++] = sv[0];
		M.w[i].succ = sv[1];
	}
	if (n != M.nw) {
		errno = EMFILE;
		goto fail;
	}
	M.hub_wait = 1;
	/* a_i go before any fork, so that no new worker holds one: its
	 * old worker closing it is what tells it the hand-over is off */
	if (ho_send(fd, HO_T_READY, NULL, 0, a, n) == -1)
		goto fail;
	ho_close_fds(a, n);
	if ((M.hc_ev = event_new(M.srv.base, fd, EV_READ | EV_PERSIST,
	    master_hc_cb, NULL)) == NULL || event_add(M.hc_ev, NULL) == -1) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
fail:
	ho_close_fds(a, n);
	handover_child_refuse(fd, NULL, strerror(errno));
	return -1;
}

int
workers_run(struct wsp_config **cfgp, const char *file, int level,
    const char *plugin_dir, workers_serve_fn *serve,
    const struct workers_exec *ex)
{
	struct wsp_errors errs = { NULL, 0 };
	struct log_line *l;
	size_t i;
	int rc = 1;

	memset(&M, 0, sizeof(M));
	M.cfg = *cfgp;
	M.file = file;
	M.level = level;
	M.serve = serve;
	M.ex = ex;
	M.hc = ex->hc;
	M.ho.fd = -1;
	/* A hand-over keeps each worker's connections with its successor:
	 * the worker count cannot change in one (wsplugd(8)). */
	if (M.hc != NULL && handover_child_group(M.hc) != M.cfg->workers) {
		errors_add(&errs, M.cfg->file, M.cfg->workers_line, "[server] "
		    "workers: %llu, but the running daemon has %zu: a "
		    "hand-over does not change the number of workers "
		    "(restart the daemon)",
		    (unsigned long long)M.cfg->workers,
		    handover_child_group(M.hc));
		handover_child_refuse(handover_child_fd(M.hc), &errs, NULL);
		ho_log_failed("new", getpid(), errs.msg[0]);
		errors_clear(&errs);
		handover_child_done(M.hc);
		return 1;
	}
	if (server_setup(&M.srv, M.cfg) == -1) {
		errors_add(&errs, NULL, 0, "cannot initialise: out of memory");
		goto fail;
	}
	M.srv.config_file = file;
	M.srv.default_plugin_dir = plugin_dir;
	if ((l = log_begin(WSP_LOG_INFO, "master.start")) != NULL) {
		log_uint(l, "workers", M.cfg->workers);
		log_int(l, "pid", getpid());
		log_end(l);
	}
	if (master_setup(&errs) == -1)
		goto fail;
	/* Every socket is bound and the log is open: the master needs root
	 * for nothing more (a reload cannot bind), so it switches to
	 * [server] user before forking, and every worker, first or
	 * respawned, starts as that user. */
	if (privdrop_apply(M.cfg, &errs) == -1)
		goto fail;
	if (M.hc != NULL && master_hc_start() == -1) {
		ho_log_failed("new", getpid(), strerror(errno));
		goto fail;
	}
	M.starting = 1;
	for (i = 0; i < M.nw; i++)
		if (worker_spawn(&M.w[i]) == -1) {
			M.failed = 1;
			master_drain();
			break;
		}
	if (M.alive > 0)
		event_base_dispatch(M.srv.base);
	rc = M.failed || M.unclean ? 1 : 0;
	l = log_begin(rc == 0 ? WSP_LOG_INFO : WSP_LOG_ERROR, "daemon.stop");
	log_str(l, "msg", M.failed ? "a worker could not start" : M.unclean ?
	    "every worker has stopped, not every one cleanly" :
	    "every worker has stopped");
	log_end(l);
fail:
	if (M.hc != NULL && errs.n > 0) /* before the first fork */
		handover_child_refuse(handover_child_fd(M.hc), &errs, NULL);
	for (i = 0; i < errs.n; i++)
		log_msg(WSP_LOG_ERROR, "config.error", "%s", errs.msg[i]);
	errors_clear(&errs);
	if (M.hc_ev != NULL)
		event_free(M.hc_ev);
	M.hc_ev = NULL;
	if (M.hc != NULL)
		handover_child_done(M.hc);
	M.hc = NULL;
	for (i = 0; M.w != NULL && i < M.nw; i++) {
		if (M.w[i].hom != -1)
			close(M.w[i].hom);
		if (M.w[i].succ != -1)
			close(M.w[i].succ);
		if (M.w[i].hub_fd != -1)
			close(M.w[i].hub_fd);
	}
	if (M.staged != NULL) { /* stopped in the middle of a reload */
		log_reload_abort();
		config_free(M.staged);
	}
	errors_clear(&M.reload_errs);
	master_free();
	master_close_sockets();
	*cfgp = M.cfg;
	return rc;
}
