/*
 * handover.c: SIGUSR2, a new binary takes every connection.
 *
 * nginx's binary upgrade keeps the old workers until their connections
 * end; HAProxy and Envoy pass on their listening sockets.  Here the live
 * WebSocket connections move too, so an upgrade closes nothing:
 *
 *   old                                    new (fork + exec of our path)
 *   socketpair, fork, exec ------------->  WSPLUGD_HANDOVER_FD=N
 *   LISTEN: listeners' fds  ------------>  config checked whole, plugins
 *   (serving all along)                    loaded, listeners from LISTEN
 *                            <-----------  READY (its version) or FAIL
 *   --- from here the old loop stops: nothing is read or written ---
 *   HISTORY: the local bus's ----------->  channels, epochs, offsets,
 *   channels and messages                  messages (bus_history_load)
 *   CONNS: 64 fds + records  ----------->  each connection rebuilt, not
 *   ... END: counters        ----------->  served yet; plugins' adopt
 *                            <-----------  ADOPTED (a count)
 *   MAINPID= to systemd, GO  ----------->  serves: events on, listeners
 *   forgets the moved connections,         accept, READY=1 to systemd
 *   closes its listeners, ends the
 *   rest (TLS, deflate with context
 *   takeover) with 1012, exits.
 *
 * Failure is safe because the old process changes nothing before GO: it
 * only reads its connections' state, and while it waits for READY it
 * serves as usual.  A new binary that dies, refuses its configuration
 * (FAIL, or an exit), or does not answer within [server]
 * handover_timeout is killed, `handover.failed` says why, and the old
 * one carries on with every connection.  The new one touches no socket
 * before GO: if GO never comes it exits without a word to any client.
 *
 * The records are handover_state.c's.  A new binary that reads another
 * version of them still takes the listeners (their format never changes)
 * and the old one falls back to a graceful restart of every connection:
 * close 1012 through srv->restart_fallback, as it does for the
 * connections that cannot move.  TLS state cannot move without kernel
 * TLS, which this build does not use; a deflate stream moves only when
 * neither side keeps a context between messages (and none is half-way
 * through one), since zlib's window cannot be carried.
 *
 * The pause the clients can see is the transfer alone (from READY to GO):
 * the new binary's start, configuration and plugin loading happen while
 * the old one still serves.
 *
 * With workers > 1 each worker runs this side too, on a channel its
 * master passes it (handover_peer_start): the peer is the new master's
 * worker of the same number, already started, so there is no exec and no
 * LISTEN (both masters hold the sockets), and the master stands between
 * READY and the transfer, and between ADOPTED and GO (struct
 * handover_peer), so that every worker transfers at once and none says
 * GO unless every one can: workers.c says why and how.
 *
 * This file is the old process's side; the new process's is
 * handover_child.c, the channel between them handover_io.c and the
 * records handover_state.c.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "wsplugd.h"

#define HO_BATCH_BYTES (4 * 1024 * 1024)

/* The old process's side, while a hand-over runs. */
struct handover {
	struct wsp_server *srv;
	pid_t pid;           /* 0: a worker's successor, its master's child */
	int fd;
	struct event *ev;    /* fd readable: READY, FAIL or EOF */
	struct event *timer; /* handover_timeout */
	uint64_t started;    /* monotonic ms */
	/* A worker's hand-over (handover_peer_start): its master decides
	 * when it transfers and whether it may say GO. */
	const struct handover_peer *peer;
	uint16_t version;    /* the successor's, from its READY */
	int ready;           /* READY came, the transfer waits for the master */
	int aborted;         /* called off by the master: nothing to report */
};

static uint64_t
ho_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
ho_refuse(const char *why)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_WARN, "handover.refused")) == NULL)
		return;
	log_str(l, "why", why);
	log_end(l);
}

void
handover_refuse(struct wsp_server *srv, const char *why)
{
	(void)srv;
	ho_refuse(why);
}

/*
 * The old process.
 */

static void
handover_free(struct handover *h)
{
	if (h == NULL)
		return;
	if (h->ev != NULL)
		event_free(h->ev);
	if (h->timer != NULL)
		event_free(h->timer);
	if (h->fd >= 0)
		close(h->fd);
	h->srv->handover = NULL;
	free(h);
}

/* Called off: the new process is killed and reaped; nothing else moved.
 * How it ended is added to why when it ended by itself. */
static void
handover_fail(struct handover *h, const char *why)
{
	char buf[384];
	int st = 0;

	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		if (waitpid(h->pid, &st, 0) == h->pid) {
			if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
				snprintf(buf, sizeof(buf), "%s (it exited with "
				    "status %d)", why, WEXITSTATUS(st));
				why = buf;
			} else if (WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL) {
				snprintf(buf, sizeof(buf), "%s (it died of %s)",
				    why, strsignal(WTERMSIG(st)));
				why = buf;
			}
		}
	}
	if (h->peer == NULL)
		h->srv->metrics.handovers_failed++; /* else the master counts */
	else if (!h->aborted)
		h->peer->report(h->peer->arg, HO_T_FAIL, 0, why);
	/* called off by its master, which says why */
	if (!h->aborted)
		ho_log_failed("old", h->pid > 0 ? h->pid : getpid(), why);
	handover_free(h);
}

static void
ho_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	handover_fail(arg, "no answer within handover_timeout");
}

/* Can c move?  TLS cannot (no kernel TLS), nor a deflate context. */
static const char *
ho_unmovable(const struct wsp_conn *c)
{
	if (c->ssl != NULL)
		return "tls";
	if (c->zs != NULL && !zstream_conn_movable(c->zs))
		return "deflate";
	if (c->doomed || c->state == CONN_LINGER)
		return "closing"; /* this process finishes it */
	return NULL;
}

struct ho_subs_arg {
	struct outbuf b;
	int failed;
};

static void
ho_subs_cb(const char *channel, uint64_t last, const char *epoch, void *arg)
{
	struct ho_subs_arg *a = arg;

	/* an epoch the record cannot carry (Redis's keys written by
	 * hand): the channel goes without its position, joined live */
	if (ho_subs_add(&a->b, channel, last, epoch) == -1 &&
	    ho_subs_add(&a->b, channel, 0, "") == -1)
		a->failed = 1;
}

/* c's record onto b; -1 when it cannot be written (then it stays). */
static int
ho_encode(struct wsp_conn *c, struct outbuf *b)
{
	struct ho_subs_arg subs = { { NULL, 0, 0 }, 0 };
	struct ho_conn h;
	char *attrs = NULL;
	size_t olen, nsubs;
	int rc;

	memset(&h, 0, sizeof(h));
	h.state = c->state == CONN_OPEN ? HO_STATE_OPEN :
	    c->state == CONN_CLOSING ? HO_STATE_CLOSING : HO_STATE_HANDSHAKE;
	if (h.state == HO_STATE_HANDSHAKE) {
		/* no id, path or codec yet: what it sent so far */
		memset(h.id, '0', 32);
		h.path.p = (const uint8_t *)"";
		h.head.p = (const uint8_t *)(c->head != NULL ? c->head : "");
		h.head.n = c->head_len;
		memcpy(h.ip, c->ip, sizeof(h.ip));
		h.port = c->port;
		h.last_activity = c->last_activity;
		return ho_conn_encode(b, &h);
	}
	memcpy(h.id, c->id, sizeof(h.id));
	memcpy(h.ip, c->ip, sizeof(h.ip));
	h.port = c->port;
#define HO_STR(f, s) do { if ((s) != NULL) { h.f.p = (const uint8_t *)(s); \
	h.f.n = strlen(s); } } while (0)
	HO_STR(user_agent, c->user_agent);
	HO_STR(origin, c->origin);
	HO_STR(path, c->path != NULL ? c->path->s : "");
	HO_STR(subprotocol, c->subprotocol);
	HO_STR(close_reason, c->close_reason);
#undef HO_STR
	h.close_code = c->close_code;
	h.connected_at_ms = c->connected_at_ms;
	h.last_activity_ms = c->last_activity_ms;
	h.msgs_in = c->msgs_in;
	h.msgs_out = c->msgs_out;
	h.bytes_in = c->bytes_in;
	h.bytes_out = c->bytes_out;
	h.last_activity = c->last_activity;
	h.opened_mono = c->opened_mono;
	h.ping_sent = c->ping_sent;
	h.pings_missed = c->pings_missed;
	h.dec = c->dec;
	h.dec.ctl = NULL;
	if (c->dec.ctl != NULL && c->dec.in_payload) {
		h.ctl.p = c->dec.ctl;
		h.ctl.n = c->dec.ctl_len;
	} else
		h.dec.ctl_len = 0; /* a split control frame already given */
	h.msg_open = c->msg_open;
	h.msg_opcode = c->msg_open ? c->dec.msg_opcode : 0;
	if (c->msg_open) {
		h.msg.p = c->msg != NULL ? c->msg : (const uint8_t *)"";
		h.msg.n = c->msg_len;
	}
	if (c->out != NULL && (olen = evbuffer_get_length(c->out)) > 0) {
		if ((h.out.p = evbuffer_pullup(c->out, -1)) == NULL)
			return -1;
		h.out.n = olen;
	}
	if (c->attrs != NULL) {
		if ((attrs = json_dumps(c->attrs, JSON_COMPACT)) == NULL)
			return -1;
		h.attrs.p = (const uint8_t *)attrs;
		h.attrs.n = strlen(attrs);
	}
	/* its channels, joined again on the other side */
	nsubs = c->state == CONN_OPEN ? bus_channels(c->srv->bus, c, NULL,
	    NULL) : 0;
	if (nsubs > 0) {
		if (nsubs <= HO_MAX_SUBS)
			bus_positions(c->srv->bus, c, ho_subs_cb, &subs);
		if (nsubs > HO_MAX_SUBS || subs.failed) {
			free(subs.b.p);
			free(attrs);
			return -1;
		}
		h.subs.p = (const uint8_t *)subs.b.p;
		h.subs.n = subs.b.len;
	}
	if (c->zs != NULL) {
		h.has_zs = 1;
		h.zp = c->zs->p;
		h.z_level = c->zs->level;
		h.z_mem_level = c->zs->mem_level;
		h.z_threshold = c->zs->threshold;
	}
	rc = ho_conn_encode(b, &h);
	free(subs.b.p);
	free(attrs);
	return rc;
}

static int
ho_send_batch(struct handover *h, struct outbuf *b, const int *fds,
    size_t n)
{
	b->p[0] = (char)(uint8_t)n; /* the count, reserved at the front */
	b->p[1] = (char)(uint8_t)(n >> 8);
	b->p[2] = (char)(uint8_t)(n >> 16);
	b->p[3] = (char)(uint8_t)(n >> 24);
	return ho_send(h->fd, HO_T_CONNS, b->p, b->len, fds, n);
}

static void
ho_counters(struct wsp_server *srv, uint64_t v[HOC_N])
{
	v[HOC_OPENED] = srv->total_opened;
	v[HOC_CLOSED] = srv->total_closed;
	v[HOC_REFUSED] = srv->total_refused;
	v[HOC_REAPED] = srv->total_reaped;
	v[HOC_MSGS_IN] = srv->metrics.msgs_in;
	v[HOC_MSGS_OUT] = srv->metrics.msgs_out;
	v[HOC_BYTES_IN] = srv->metrics.bytes_in;
	v[HOC_BYTES_OUT] = srv->metrics.bytes_out;
	v[HOC_PINGS] = srv->metrics.pings;
	v[HOC_REAPS] = srv->metrics.reaps;
	v[HOC_RELOADS_OK] = srv->metrics.reloads_ok;
	v[HOC_RELOADS_FAILED] = srv->metrics.reloads_failed;
	v[HOC_HANDOVERS_OK] = srv->metrics.handovers_ok;
	v[HOC_HANDOVERS_FAILED] = srv->metrics.handovers_failed;
}

static void
ho_drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;

	(void)fd;
	(void)what;
	log_msg(WSP_LOG_WARN, "daemon.shutdown", "shutdown_timeout reached "
	    "with %zu connections open after the hand-over",
	    srv->reg.count + srv->npending);
	event_base_loopbreak(srv->base);
}

/*
 * The graceful-restart fallback, the one place it is decided: every
 * connection still here after GO (those that could not move, or all of
 * them when the new binary reads another version of the records) is
 * closed with 1012 Service Restart, handshakes in progress are dropped,
 * and the process leaves once they are gone or after shutdown_timeout.
 * srv->restart_fallback points here unless the owner wires something
 * better (a restart spread over a window with retry slots).
 */
void
handover_restart_fallback(struct wsp_server *srv)
{
	struct wsp_conn *c, *next;
	struct timeval tv;
	uint64_t ms = srv->cfg->shutdown_timeout;

	srv->draining = 1;
	TAILQ_FOREACH_SAFE(c, &srv->reg.conns, link, next)
		conn_close(c, WS_CLOSE_SERVICE_RESTART, "service restart");
	TAILQ_FOREACH_SAFE(c, &srv->pending, link, next)
		if (c->state == CONN_HANDSHAKE)
			conn_free(c);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (srv->shutdown_timer == NULL)
		srv->shutdown_timer = evtimer_new(srv->base,
		    ho_drain_timeout_cb, srv);
	if (srv->shutdown_timer == NULL ||
	    evtimer_add(srv->shutdown_timer, &tv) == -1)
		event_base_loopbreak(srv->base);
	srv->conn_hooks.gone(srv); /* server_maybe_done, as conn_free's */
}

/*
 * After GO no plugin code runs here any more: the plugins live on in the
 * new process, and here they hold pointers to connections about to be
 * forgotten without a close() to tell them (a close would be a lie: the
 * client is still connected, to the other process).  So they are
 * unloaded (their timers cancelled first) while every connection is
 * still valid, and an empty set takes their place for the connections
 * that stay to close: their messages meet no handler, and they are in
 * CLOSING, so nothing is answered.
 */
static void
ho_plugins_retire(struct wsp_server *srv)
{
	struct plugin_set *none;

	if ((none = plugin_set_new()) == NULL)
		return; /* out of memory: they stay, as they were */
	none->generation = srv->plugins->generation;
	plugin_set_free(srv->plugins);
	srv->plugins = none;
}

/* READY came: the transfer, in one go (the loop stands still). */
static void
handover_transfer(struct handover *h, uint16_t version)
{
	struct wsp_server *srv = h->srv;
	struct outbuf b = { NULL, 0, 0 };
	struct wsp_conn *c, *next, **moved = NULL;
	struct ho_frame f;
	struct log_line *l;
	uint64_t t0 = ho_now_us(), v[HOC_N], left, nmoved = 0, nkept = 0;
	uint64_t elapsed = clock_mono_ms() - h->started;
	uint8_t *payload = NULL;
	size_t nfds = 0, nb = 0, i, nrecv;
	int fds[HO_BATCH_FDS], all = version == HO_VERSION, rc, bfd;
	const char *why = NULL;
	char buf[256];
	uint32_t adopted;

	/* A bus whose answers come from elsewhere (Redis) gives them now,
	 * into output that moves; a worker did so as it paused. */
	if (h->peer == NULL) {
		bus_pump(srv->bus, 1, &bfd);
		elapsed = clock_mono_ms() - h->started;
	}
	left = srv->cfg->handover_timeout > elapsed ?
	    srv->cfg->handover_timeout - elapsed : 1;
	ho_set_timeout(h->fd, left);
	if (!all)
		log_msg(WSP_LOG_WARN, "handover.version", "the new binary "
		    "reads hand-over version %u, this one writes %u: it takes "
		    "the listeners, every connection gets 1012", version,
		    HO_VERSION);
	if (all && srv->reg.count + srv->npending > 0 &&
	    (moved = calloc(srv->reg.count + srv->npending,
	    sizeof(*moved))) == NULL) {
		why = "out of memory";
		goto fail;
	}
	/* The bus's history first, so that the channels the connections
	 * join again already have their epoch and offsets.  Without it
	 * (out of memory) the hand-over still goes on: losing history is
	 * what a restart does anyway, losing the connections is not. */
	if (all && (rc = bus_history_save(srv->bus, &b)) != 0) {
		if (rc == -1)
			log_msg(WSP_LOG_WARN, "handover.history", "cannot "
			    "write the bus history: channels start a new "
			    "epoch");
		else if (ho_send(h->fd, HO_T_HISTORY, b.p, b.len, NULL,
		    0) == -1) {
			why = ho_why_gone(h->fd, "cannot send the bus "
			    "history", buf, sizeof(buf));
			goto fail;
		}
		b.len = 0;
	}
	if (ho_buf_put(&b, "\0\0\0\0", 4) == -1) {
		why = "out of memory";
		goto fail;
	}
	/* The open connections, then the handshakes in progress (a client
	 * half-way through its request finishes it with the new process);
	 * those lingering are this process's to finish. */
	if ((c = TAILQ_FIRST(&srv->reg.conns)) == NULL)
		c = TAILQ_FIRST(&srv->pending);
	for (; c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (next == NULL && c->registered)
			next = TAILQ_FIRST(&srv->pending);
		if (!c->registered && c->state != CONN_HANDSHAKE)
			continue;
		if (!all || ho_unmovable(c) != NULL || ho_encode(c, &b) == -1) {
			nkept += c->registered;
			continue;
		}
		fds[nfds++] = c->fd;
		moved[nmoved++] = c;
		nb++;
		if (nfds == HO_BATCH_FDS || b.len >= HO_BATCH_BYTES) {
			if (ho_send_batch(h, &b, fds, nfds) == -1) {
				why = ho_why_gone(h->fd, "cannot send the "
				    "connections", buf, sizeof(buf));
				goto fail;
			}
			b.len = 4; /* the count's place, filled when sent */
			nfds = nb = 0;
		}
	}
	if (nfds > 0 && ho_send_batch(h, &b, fds, nfds) == -1) {
		why = ho_why_gone(h->fd, "cannot send the connections", buf,
		    sizeof(buf));
		goto fail;
	}
	b.len = 0;
	ho_counters(srv, v);
	if (ho_counters_encode(&b, v, HOC_N) == -1) {
		why = "out of memory";
		goto fail;
	}
	if (ho_send(h->fd, HO_T_END, b.p, b.len, NULL, 0) == -1) {
		why = ho_why_gone(h->fd, "cannot send the counters", buf,
		    sizeof(buf));
		goto fail;
	}
	if (ho_recv(h->fd, &f, &payload, fds, 0, &nrecv, &why) == -1)
		goto fail;
	if (f.type == HO_T_FAIL) {
		snprintf(buf, sizeof(buf), "the new process refused the "
		    "connections: %.*s", (int)(f.len < 200 ? f.len : 200),
		    payload != NULL ? (const char *)payload : "");
		why = buf;
		goto fail;
	}
	if (f.type != HO_T_ADOPTED || f.len != 4) {
		why = "unexpected answer to the connections";
		goto fail;
	}
	adopted = (uint32_t)payload[0] | (uint32_t)payload[1] << 8 |
	    (uint32_t)payload[2] << 16 | (uint32_t)payload[3] << 24;
	if (adopted != nmoved) {
		why = "the new process adopted another count of connections";
		goto fail;
	}
	/* A worker waits here for every other one: GO only when all of
	 * them have had every connection adopted (workers.c). */
	if (h->peer != NULL) {
		h->peer->report(h->peer->arg, HO_T_ADOPTED, adopted, NULL);
		if (h->peer->await(h->peer->arg) != 0) {
			h->aborted = 1;
			why = "called off by the master: another worker's "
			    "hand-over failed";
			goto fail;
		}
	} else
		notify_mainpid(srv, (long)h->pid);
	if (ho_send(h->fd, HO_T_GO, NULL, 0, NULL, 0) == -1) {
		why = "cannot send GO";
		goto fail;
	}
	/* From here the new process serves them: forget, never close.
	 * With workers the master counts the hand-over, once. */
	if (h->peer == NULL)
		srv->metrics.handovers_ok++;
	/* a worker's share is handover.moved; its master logs the
	 * hand-over's handover.done once every worker has said GO */
	if ((l = h->peer != NULL ? log_begin(WSP_LOG_INFO, "handover.moved") :
	    log_begin(WSP_LOG_INFO, "handover.done")) != NULL) {
		if (h->peer == NULL)
			log_int(l, "pid", h->pid);
		log_uint(l, "moved", nmoved);
		log_uint(l, "restarted", nkept);
		log_uint(l, "pause_us", ho_now_us() - t0);
		log_uint(l, "took_ms", clock_mono_ms() - h->started);
		log_end(l);
	}
	ho_plugins_retire(srv);
	for (i = 0; i < nmoved; i++)
		conn_release(moved[i]);
	free(moved);
	free(payload);
	free(b.p);
	handover_free(h);
	listen_close_all(&srv->listeners);
	admin_free(srv);
	if (srv->reg.count + srv->npending > 0)
		srv->restart_fallback(srv);
	else { /* all moved: no restart to log, just leave */
		srv->draining = 1;
		srv->conn_hooks.gone(srv);
	}
	return;
fail:
	free(moved);
	free(payload);
	free(b.p);
	handover_fail(h, why != NULL ? why : "transfer failed");
}

static void
ho_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct handover *h = arg;
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;
	char buf[512];
	size_t nfds;
	int fds[1];
	uint64_t elapsed = clock_mono_ms() - h->started;
	uint64_t limit = h->srv->cfg->handover_timeout;

	(void)fd;
	(void)what;
	/* The loop waits on this read: a frame cut short by a new process
	 * that hangs holds it for a second at most, not handover_timeout. */
	ho_set_timeout(h->fd, limit > elapsed ? limit - elapsed < 1000 ?
	    limit - elapsed : 1000 : 1);
	if (ho_recv(h->fd, &f, &payload, fds, 0, &nfds, &why) == -1) {
		handover_fail(h, why);
		return;
	}
	switch (f.type) {
	case HO_T_READY:
		free(payload);
		if (h->peer != NULL && !h->ready) {
			/* the master says when: every worker at once */
			h->ready = 1;
			h->version = f.version;
			event_del(h->ev);
			h->peer->report(h->peer->arg, HO_T_READY, 0, NULL);
			return;
		}
		handover_transfer(h, f.version);
		return;
	case HO_T_FAIL:
		ho_fail_text(&f, payload, buf, sizeof(buf));
		free(payload);
		handover_fail(h, buf);
		return;
	default:
		free(payload);
		handover_fail(h, "unexpected frame from the new process");
	}
}

int
handover_listen_add(struct outbuf *b, int *fds, size_t *n, uint8_t kind,
    uint8_t tls, const struct sockaddr_storage *conf, socklen_t len, int fd)
{
	struct ho_listen l;

	if (*n == HO_BATCH_FDS)
		return -1;
	memset(&l, 0, sizeof(l));
	l.kind = kind;
	l.tls = tls;
	l.conf_len = (uint16_t)len;
	memcpy(&l.conf, conf, len);
	if (ho_listen_encode(b, &l) == -1)
		return -1;
	fds[(*n)++] = fd;
	return 0;
}

/*
 * The new binary, started with one end of a socket pair as its
 * HANDOVER_ENV: the single process's successor here, a master's in
 * workers.c.  0 with *fd_r (ours, blocking, close-on-exec) and *pid_r,
 * or -1 with errno.
 */
int
handover_exec(const char *path, char *const argv[], int *fd_r, pid_t *pid_r)
{
	int sv[2], e;
	char env[32];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	log_sync(); /* the lines before the successor's, in that order */
	if ((pid = fork()) == -1) {
		e = errno;
		close(sv[0]);
		close(sv[1]);
		errno = e;
		return -1;
	}
	if (pid == 0) {
		/* The child of a single-threaded process: setenv is safe
		 * here, and exec replaces everything else. */
		fcntl(sv[1], F_SETFD, 0);
		snprintf(env, sizeof(env), "%d", sv[1]);
		setenv(HANDOVER_ENV, env, 1);
		/* systemd's watchdog is meant for the main process, which
		 * this one becomes (MAINPID=): sd_watchdog_enabled() checks
		 * WATCHDOG_PID against getpid(). */
		if (getenv("WATCHDOG_PID") != NULL) {
			snprintf(env, sizeof(env), "%ld", (long)getpid());
			setenv("WATCHDOG_PID", env, 1);
		}
		execv(path, argv);
		_exit(127);
	}
	close(sv[1]);
	*fd_r = sv[0];
	*pid_r = pid;
	return 0;
}

static int
ho_watch(struct handover *h)
{
	struct wsp_server *srv = h->srv;
	struct timeval tv;

	ho_set_timeout(h->fd, srv->cfg->handover_timeout);
	tv.tv_sec = (time_t)(srv->cfg->handover_timeout / 1000);
	tv.tv_usec = (suseconds_t)(srv->cfg->handover_timeout % 1000) * 1000;
	if ((h->ev = event_new(srv->base, h->fd, EV_READ | EV_PERSIST,
	    ho_read_cb, h)) == NULL || event_add(h->ev, NULL) == -1 ||
	    (h->timer = evtimer_new(srv->base, ho_timeout_cb, h)) == NULL ||
	    evtimer_add(h->timer, &tv) == -1)
		return -1;
	return 0;
}

void
handover_start(struct wsp_server *srv)
{
	struct handover *h;
	struct outbuf b = { NULL, 0, 0 };
	struct listener *li;
	struct sockaddr_storage ss;
	struct log_line *l;
	socklen_t sl;
	size_t nfds = 0, i;
	int fds[HO_BATCH_FDS], fd;
	char buf[512];
	pid_t pid;

	if (srv->handover != NULL) {
		ho_refuse("a hand-over is already running");
		return;
	}
	if (srv->draining) {
		ho_refuse("shutting down");
		return;
	}
	if (srv->exec_path == NULL) {
		ho_refuse("the daemon's own path is not known");
		return;
	}
	TAILQ_FOREACH(li, &srv->listeners, entry)
		if (handover_listen_add(&b, fds, &nfds, HO_LISTEN_WS,
		    (uint8_t)li->tls, &li->conf, li->conf_len,
		    li->fd) == -1)
			goto nomem;
	for (i = 0; (fd = admin_socket(srv, i, &ss, &sl)) != -1; i++)
		if (handover_listen_add(&b, fds, &nfds, HO_LISTEN_ADMIN, 0,
		    &ss, sl, fd) == -1)
			goto nomem;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		goto nomem;
	h->srv = srv;
	h->fd = -1;
	srv->handover = h;
	h->started = clock_mono_ms();
	if (handover_exec(srv->exec_path, srv->exec_argv, &h->fd,
	    &pid) == -1) {
		free(b.p);
		handover_fail(h, strerror(errno));
		return;
	}
	h->pid = pid;
	if ((l = log_begin(WSP_LOG_INFO, "handover.start")) != NULL) {
		log_str(l, "binary", srv->exec_path);
		log_int(l, "pid", pid);
		log_uint(l, "connections", srv->reg.count);
		log_end(l);
	}
	ho_set_timeout(h->fd, srv->cfg->handover_timeout);
	if (ho_send(h->fd, HO_T_LISTEN, b.p, b.len, fds, nfds) == -1) {
		free(b.p);
		handover_fail(h, ho_why_gone(h->fd, "cannot pass the "
		    "listeners on", buf, sizeof(buf)));
		return;
	}
	free(b.p);
	if (ho_watch(h) == -1)
		handover_fail(h, "out of memory");
	return;
nomem:
	free(b.p);
	ho_refuse("out of memory, or too many listeners");
}

/*
 * A worker's hand-over (workers > 1): fd is the channel to its successor,
 * a worker of the new master, which the old master passed on.  The steps
 * are the single process's, without the exec and the listeners (each
 * side's master has them); peer's report and await put the master between
 * READY and the transfer, and between ADOPTED and GO.
 */
void
handover_peer_start(struct wsp_server *srv, int fd,
    const struct handover_peer *peer)
{
	struct handover *h;

	if (srv->handover != NULL || srv->draining ||
	    (h = calloc(1, sizeof(*h))) == NULL) {
		close(fd);
		peer->report(peer->arg, HO_T_FAIL, 0, srv->draining ?
		    "a worker is shutting down" : srv->handover != NULL ?
		    "a hand-over is already running" : "out of memory");
		return;
	}
	h->srv = srv;
	h->fd = fd;
	h->peer = peer;
	h->started = clock_mono_ms();
	srv->handover = h;
	if (ho_watch(h) == -1)
		handover_fail(h, "out of memory");
}

/* Every worker's successor is ready: the transfer, now. */
void
handover_peer_transfer(struct wsp_server *srv)
{
	struct handover *h = srv->handover;

	if (h == NULL || h->peer == NULL || !h->ready)
		return;
	handover_transfer(h, h->version);
}

/* The master calls it off before the transfer. */
void
handover_peer_abort(struct wsp_server *srv)
{
	struct handover *h = srv->handover;

	if (h == NULL || h->peer == NULL)
		return;
	h->aborted = 1;
	handover_fail(h, "called off by the master");
}

void
handover_stop(struct wsp_server *srv)
{
	if (srv->handover != NULL)
		handover_fail(srv->handover, "the daemon is stopping");
}
