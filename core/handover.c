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
#include <event2/listener.h>

#include "wsplugd.h"

#define HO_BATCH_FDS 64
#define HO_BATCH_BYTES (4 * 1024 * 1024)
#define HO_MAX_SOCKS 256

/* The server counters that continue across a hand-over, in this order on
 * the wire (appended to, never reordered). */
enum {
	HOC_OPENED, HOC_CLOSED, HOC_REFUSED, HOC_REAPED, HOC_MSGS_IN,
	HOC_MSGS_OUT, HOC_BYTES_IN, HOC_BYTES_OUT, HOC_PINGS, HOC_REAPS,
	HOC_RELOADS_OK, HOC_RELOADS_FAILED, HOC_HANDOVERS_OK,
	HOC_HANDOVERS_FAILED, HOC_N
};

/* The old process's side, while a hand-over runs. */
struct handover {
	struct wsp_server *srv;
	pid_t pid;
	int fd;
	struct event *ev;    /* fd readable: READY, FAIL or EOF */
	struct event *timer; /* handover_timeout */
	uint64_t started;    /* monotonic ms */
};

/* A listener the old process passed on, until the new one's bind hook
 * takes it. */
struct ho_inherit {
	struct ho_listen l;
	int fd; /* -1 once taken */
};

/* The new process's side, from its start to GO. */
struct handover_child {
	int fd;
	uint16_t peer_version; /* of the old process's frames */
	struct ho_inherit socks[HO_MAX_SOCKS];
	size_t nsocks;
	struct wsp_conn **conns;
	size_t nconns, cap;
	uint64_t counters[HOC_N];
};

static uint64_t
ho_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
ho_set_timeout(int fd, uint64_t ms)
{
	struct timeval tv;

	if (ms == 0)
		ms = 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void
ho_close_fds(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* One frame, with nfds descriptors on its first byte.  -1 with errno. */
static int
ho_send(int fd, uint16_t type, const void *payload, size_t len,
    const int *fds, size_t nfds)
{
	uint8_t hdr[HO_HDR_LEN];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * HO_BATCH_FDS)];
	} cm;
	struct iovec iov[2];
	struct msghdr mh;
	size_t off = 0, total = HO_HDR_LEN + len, skip;
	ssize_t n;
	int i;

	ho_frame_header(hdr, type, payload, len);
	while (off < total) {
		memset(&mh, 0, sizeof(mh));
		i = 0;
		if (off < HO_HDR_LEN) {
			iov[i].iov_base = hdr + off;
			iov[i++].iov_len = HO_HDR_LEN - off;
		}
		if (len > 0) {
			skip = off > HO_HDR_LEN ? off - HO_HDR_LEN : 0;
			iov[i].iov_base = (uint8_t *)payload + skip;
			iov[i++].iov_len = len - skip;
		}
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)i;
		if (off == 0 && nfds > 0) {
			memset(&cm, 0, sizeof(cm));
			mh.msg_control = cm.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm.h.cmsg_level = SOL_SOCKET;
			cm.h.cmsg_type = SCM_RIGHTS;
			cm.h.cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(&cm.h), fds, sizeof(int) * nfds);
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

static int
ho_read_full(int fd, uint8_t *p, size_t n, const char **why_r)
{
	ssize_t r;

	while (n > 0) {
		r = read(fd, p, n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			*why_r = r == 0 || errno == ECONNRESET ? "the other "
			    "process closed the channel" : errno == EAGAIN ?
			    "timed out" : strerror(errno);
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One frame: its header in f, its payload (malloc'd, checked against the
 * CRC) in *payload_r, the descriptors that came with it in fds (at most
 * maxfds: more is an error).  -1 with *why_r, nothing left open. */
static int
ho_recv(int fd, struct ho_frame *f, uint8_t **payload_r, int *fds,
    size_t maxfds, size_t *nfds_r, const char **why_r)
{
	uint8_t hdr[HO_HDR_LEN], *payload = NULL;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * HO_BATCH_FDS)];
	} cm;
	struct cmsghdr *ch;
	struct iovec iov;
	struct msghdr mh;
	size_t got = 0, k, nfds = 0;
	ssize_t n;
	int extra[HO_BATCH_FDS], bad = 0;

	*payload_r = NULL;
	*nfds_r = 0;
	while (got < HO_HDR_LEN) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = hdr + got;
		iov.iov_len = HO_HDR_LEN - got;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			*why_r = n == 0 || errno == ECONNRESET ? "the other "
			    "process closed the channel" : errno == EAGAIN ?
			    "timed out" : strerror(errno);
			goto fail;
		}
		for (ch = CMSG_FIRSTHDR(&mh); ch != NULL;
		    ch = CMSG_NXTHDR(&mh, ch)) {
			if (ch->cmsg_level != SOL_SOCKET ||
			    ch->cmsg_type != SCM_RIGHTS)
				continue;
			k = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (k > HO_BATCH_FDS)
				k = HO_BATCH_FDS;
			memcpy(extra, CMSG_DATA(ch), k * sizeof(int));
			if (nfds + k > maxfds) {
				ho_close_fds(extra, k);
				bad = 1;
			} else {
				memcpy(fds + nfds, extra, k * sizeof(int));
				nfds += k;
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			bad = 1;
		got += (size_t)n;
	}
	if (bad) {
		*why_r = "more descriptors than the frame may carry";
		goto fail;
	}
	if (ho_frame_parse(hdr, f, why_r) == -1)
		goto fail;
	if (f->len > 0) {
		if ((payload = malloc(f->len)) == NULL) {
			*why_r = "out of memory";
			goto fail;
		}
		if (ho_read_full(fd, payload, f->len, why_r) == -1)
			goto fail;
	}
	if (ho_frame_verify(f, payload) == -1) {
		*why_r = "frame CRC mismatch";
		goto fail;
	}
	*payload_r = payload;
	*nfds_r = nfds;
	return 0;
fail:
	free(payload);
	ho_close_fds(fds, nfds);
	return -1;
}

static void
ho_log_failed(const char *side, pid_t pid, const char *why)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_ERROR, "handover.failed")) == NULL)
		return;
	log_str(l, "side", side);
	log_int(l, "pid", pid);
	log_str(l, "why", why);
	if (strcmp(side, "old") == 0)
		log_str(l, "msg", "every connection stays with this process");
	log_end(l);
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
	h->srv->metrics.handovers_failed++;
	ho_log_failed("old", h->pid, why);
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
	if (c->doomed || (c->state != CONN_OPEN && c->state != CONN_CLOSING))
		return "closing";
	return NULL;
}

/* c's record onto b; -1 when it cannot be written (then it stays). */
static int
ho_encode(struct wsp_conn *c, struct outbuf *b)
{
	struct ho_conn h;
	char *attrs = NULL;
	size_t olen;
	int rc;

	memset(&h, 0, sizeof(h));
	h.state = c->state == CONN_OPEN ? HO_STATE_OPEN : HO_STATE_CLOSING;
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
	if ((olen = evbuffer_get_length(c->out)) > 0) {
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
	if (c->zs != NULL) {
		h.has_zs = 1;
		h.zp = c->zs->p;
		h.z_level = c->zs->level;
		h.z_mem_level = c->zs->mem_level;
		h.z_threshold = c->zs->threshold;
	}
	rc = ho_conn_encode(b, &h);
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
	server_maybe_done(srv);
}

/* READY came: the transfer, in one go (the loop stands still). */
static void
handover_transfer(struct handover *h, uint16_t version)
{
	struct wsp_server *srv = h->srv;
	struct outbuf b = { NULL, 0, 0 };
	struct wsp_conn *c, **moved = NULL;
	struct ho_frame f;
	struct log_line *l;
	uint64_t t0 = ho_now_us(), v[HOC_N], left, nmoved = 0, nkept = 0;
	uint64_t elapsed = clock_mono_ms() - h->started;
	uint8_t *payload = NULL;
	size_t nfds = 0, nb = 0, i, nrecv;
	int fds[HO_BATCH_FDS], all = version == HO_VERSION;
	const char *why = NULL;
	char buf[256];
	uint32_t adopted;

	left = srv->cfg->handover_timeout > elapsed ?
	    srv->cfg->handover_timeout - elapsed : 1;
	ho_set_timeout(h->fd, left);
	if (!all)
		log_msg(WSP_LOG_WARN, "handover.version", "the new binary "
		    "reads hand-over version %u, this one writes %u: it takes "
		    "the listeners, every connection gets 1012", version,
		    HO_VERSION);
	if (all && srv->reg.count > 0 &&
	    (moved = calloc(srv->reg.count, sizeof(*moved))) == NULL) {
		why = "out of memory";
		goto fail;
	}
	if (ho_buf_put(&b, "\0\0\0\0", 4) == -1) {
		why = "out of memory";
		goto fail;
	}
	TAILQ_FOREACH(c, &srv->reg.conns, link) {
		if (!all || ho_unmovable(c) != NULL || ho_encode(c, &b) == -1) {
			nkept++;
			continue;
		}
		fds[nfds++] = c->fd;
		moved[nmoved++] = c;
		nb++;
		if (nfds == HO_BATCH_FDS || b.len >= HO_BATCH_BYTES) {
			if (ho_send_batch(h, &b, fds, nfds) == -1) {
				why = strerror(errno);
				goto fail;
			}
			b.len = 4; /* the count's place, filled when sent */
			nfds = nb = 0;
		}
	}
	if (nfds > 0 && ho_send_batch(h, &b, fds, nfds) == -1) {
		why = strerror(errno);
		goto fail;
	}
	b.len = 0;
	ho_counters(srv, v);
	if (ho_counters_encode(&b, v, HOC_N) == -1 ||
	    ho_send(h->fd, HO_T_END, b.p, b.len, NULL, 0) == -1) {
		why = errno == EAGAIN ? "timed out" :
		    "cannot send the counters";
		goto fail;
	}
	if (ho_recv(h->fd, &f, &payload, fds, 0, &nrecv, &why) == -1)
		goto fail;
	if (f.type == HO_T_FAIL) {
		snprintf(buf, sizeof(buf), "the new process refused the "
		    "connections: %.*s", (int)(f.len < 200 ? f.len : 200),
		    (const char *)payload);
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
	notify_mainpid(srv, (long)h->pid);
	if (ho_send(h->fd, HO_T_GO, NULL, 0, NULL, 0) == -1) {
		why = "cannot send GO";
		goto fail;
	}
	/* From here the new process serves them: forget, never close. */
	srv->metrics.handovers_ok++;
	if ((l = log_begin(WSP_LOG_INFO, "handover.done")) != NULL) {
		log_int(l, "pid", h->pid);
		log_uint(l, "moved", nmoved);
		log_uint(l, "restarted", nkept);
		log_uint(l, "pause_us", ho_now_us() - t0);
		log_uint(l, "took_ms", clock_mono_ms() - h->started);
		log_end(l);
	}
	for (i = 0; i < nmoved; i++)
		conn_release(moved[i]);
	free(moved);
	free(payload);
	free(b.p);
	handover_free(h);
	listen_close_all(&srv->listeners);
	admin_free(srv);
	srv->restart_fallback(srv);
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
	ho_set_timeout(h->fd, limit > elapsed ? limit - elapsed : 1);
	if (ho_recv(h->fd, &f, &payload, fds, 0, &nfds, &why) == -1) {
		handover_fail(h, why);
		return;
	}
	switch (f.type) {
	case HO_T_READY:
		free(payload);
		handover_transfer(h, f.version);
		return;
	case HO_T_FAIL:
		snprintf(buf, sizeof(buf), "the new process refused: %.*s",
		    (int)(f.len < 400 ? f.len : 400), (const char *)payload);
		free(payload);
		handover_fail(h, buf);
		return;
	default:
		free(payload);
		handover_fail(h, "unexpected frame from the new process");
	}
}

static int
ho_listen_add(struct outbuf *b, int *fds, size_t *n, uint8_t kind,
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

void
handover_start(struct wsp_server *srv)
{
	struct handover *h;
	struct outbuf b = { NULL, 0, 0 };
	struct listener *li;
	struct sockaddr_storage ss;
	struct timeval tv;
	struct log_line *l;
	socklen_t sl;
	size_t nfds = 0, i;
	int sv[2] = { -1, -1 }, fds[HO_BATCH_FDS], fd;
	char env[32];
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
		if (ho_listen_add(&b, fds, &nfds, HO_LISTEN_WS,
		    (uint8_t)li->tls, &li->conf, li->conf_len,
		    evconnlistener_get_fd(li->lev)) == -1)
			goto nomem;
	for (i = 0; (fd = admin_socket(srv, i, &ss, &sl)) != -1; i++)
		if (ho_listen_add(&b, fds, &nfds, HO_LISTEN_ADMIN, 0, &ss, sl,
		    fd) == -1)
			goto nomem;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		goto nomem;
	h->srv = srv;
	h->fd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		ho_refuse(strerror(errno));
		free(h);
		free(b.p);
		return;
	}
	h->fd = sv[0];
	srv->handover = h;
	h->started = clock_mono_ms();
	if ((pid = fork()) == -1) {
		close(sv[1]);
		free(b.p);
		handover_fail(h, strerror(errno));
		return;
	}
	if (pid == 0) {
		/* The child of a single-threaded process: setenv is safe
		 * here, and exec replaces everything else. */
		fcntl(sv[1], F_SETFD, 0);
		snprintf(env, sizeof(env), "%d", sv[1]);
		setenv(HANDOVER_ENV, env, 1);
		execv(srv->exec_path, srv->exec_argv);
		_exit(127);
	}
	close(sv[1]);
	h->pid = pid;
	if ((l = log_begin(WSP_LOG_INFO, "handover.start")) != NULL) {
		log_str(l, "binary", srv->exec_path);
		log_int(l, "pid", pid);
		log_uint(l, "connections", srv->reg.count);
		log_end(l);
	}
	ho_set_timeout(h->fd, srv->cfg->handover_timeout);
	tv.tv_sec = (time_t)(srv->cfg->handover_timeout / 1000);
	tv.tv_usec = (suseconds_t)(srv->cfg->handover_timeout % 1000) * 1000;
	if (ho_send(h->fd, HO_T_LISTEN, b.p, b.len, fds, nfds) == -1) {
		free(b.p);
		handover_fail(h, "cannot pass the listeners on");
		return;
	}
	free(b.p);
	if ((h->ev = event_new(srv->base, h->fd, EV_READ | EV_PERSIST,
	    ho_read_cb, h)) == NULL || event_add(h->ev, NULL) == -1 ||
	    (h->timer = evtimer_new(srv->base, ho_timeout_cb, h)) == NULL ||
	    evtimer_add(h->timer, &tv) == -1)
		handover_fail(h, "out of memory");
	return;
nomem:
	free(b.p);
	ho_refuse("out of memory, or too many listeners");
}

void
handover_stop(struct wsp_server *srv)
{
	if (srv->handover != NULL)
		handover_fail(srv->handover, "the daemon is stopping");
}

/*
 * The new process.
 */

static void
ho_child_free(struct handover_child *hc)
{
	size_t i;

	if (hc == NULL)
		return;
	for (i = 0; i < hc->nsocks; i++)
		if (hc->socks[i].fd >= 0)
			close(hc->socks[i].fd);
	if (hc->fd >= 0)
		close(hc->fd);
	free(hc->conns);
	free(hc);
}

/* Tell the old process why not (best effort: it also sees us exit). */
void
handover_child_refuse(int fd, const struct wsp_errors *errs, const char *why)
{
	struct outbuf b = { NULL, 0, 0 };
	size_t i, n;

	for (i = 0; errs != NULL && i < errs->n && i < 4; i++) {
		n = strlen(errs->msg[i]);
		if (b.len + n + 2 > 400)
			break;
		if ((b.p = realloc(b.p, b.len + n + 3)) == NULL)
			return;
		if (b.len > 0) {
			memcpy(b.p + b.len, "; ", 2);
			b.len += 2;
		}
		memcpy(b.p + b.len, errs->msg[i], n);
		b.len += n;
	}
	if (b.len == 0 && why != NULL) {
		ho_send(fd, HO_T_FAIL, why, strlen(why), NULL, 0);
		return;
	}
	ho_send(fd, HO_T_FAIL, b.p, b.len, NULL, 0);
	free(b.p);
}

struct handover_child *
handover_child_new(int fd, uint64_t timeout_ms, struct wsp_errors *errs)
{
	struct handover_child *hc;
	struct ho_frame f;
	uint8_t *payload = NULL;
	const char *why = NULL;
	int fds[HO_BATCH_FDS];
	size_t nfds = 0, off = 0, used, i;

	if ((hc = calloc(1, sizeof(*hc))) == NULL) {
		errors_add(errs, NULL, 0, "hand-over: out of memory");
		return NULL;
	}
	hc->fd = fd;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	ho_set_timeout(fd, timeout_ms);
	if (ho_recv(fd, &f, &payload, fds, HO_BATCH_FDS, &nfds, &why) == -1)
		goto fail;
	if (f.type != HO_T_LISTEN) {
		why = "expected the listeners first";
		goto fail;
	}
	hc->peer_version = f.version;
	for (i = 0; i < nfds; i++)
		hc->socks[i].fd = fds[i];
	hc->nsocks = nfds;
	nfds = 0;
	for (i = 0; off < f.len; i++) {
		if (i >= hc->nsocks) {
			why = "more listeners than descriptors";
			goto fail;
		}
		if (ho_listen_decode(payload + off, f.len - off, &used,
		    &hc->socks[i].l, &why) == -1)
			goto fail;
		off += used;
	}
	if (i != hc->nsocks) {
		why = "more descriptors than listeners";
		goto fail;
	}
	free(payload);
	return hc;
fail:
	ho_close_fds(fds, nfds);
	free(payload);
	errors_add(errs, NULL, 0, "hand-over: %s", why);
	ho_child_free(hc);
	return NULL;
}

/* srv->bind in the new process: the old one's socket for an address it
 * had, a new one for an address the configuration adds. */
static int
ho_bind(struct wsp_server *srv, const struct wsp_listen_addr *a, int backlog,
    char *addr, size_t addrlen)
{
	struct handover_child *hc = srv->handover_child;
	struct ho_inherit *s;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	size_t i;
	int fd;

	for (i = 0; hc != NULL && i < hc->nsocks; i++) {
		s = &hc->socks[i];
		if (s->fd < 0 || !config_listen_same(&s->l.conf,
		    s->l.conf_len, a))
			continue;
		if ((backlog > 0 && listen(s->fd, backlog) == -1) ||
		    getsockname(s->fd, (struct sockaddr *)&ss, &sl) == -1)
			return -1;
		listen_format_addr((struct sockaddr *)&ss, addr, addrlen);
		fd = s->fd;
		s->fd = -1;
		return fd;
	}
	return listen_bind(a, backlog, 0, addr, addrlen);
}

void
handover_child_setup(struct wsp_server *srv, void *arg)
{
	srv->handover_child = arg;
	srv->bind = ho_bind;
}

static char *
ho_dup(const struct ho_bytes *s)
{
	return s->p == NULL ? NULL : strndup((const char *)s->p, s->n);
}

/* One record and its descriptor: an open connection, registered, not yet
 * served.  -1 (fd closed) when it cannot be rebuilt. */
static int
ho_adopt_one(struct wsp_server *srv, const struct ho_conn *h, int fd,
    struct wsp_conn **c_r, const char **why_r)
{
	struct wsp_conn *c;
	json_error_t jerr;
	size_t cap;

	if ((c = conn_adopt(srv, fd, (const char *)h->path.p,
	    h->path.n)) == NULL) {
		close(fd);
		*why_r = "out of memory";
		return -1;
	}
	TAILQ_INSERT_TAIL(&srv->pending, c, link); /* until registered */
	srv->npending++;
	memcpy(c->id, h->id, sizeof(c->id));
	memcpy(c->ip, h->ip, sizeof(c->ip));
	c->port = h->port;
	c->user_agent = ho_dup(&h->user_agent);
	c->origin = ho_dup(&h->origin);
	c->subprotocol = ho_dup(&h->subprotocol);
	c->close_reason = ho_dup(&h->close_reason);
	c->close_code = h->close_code;
	c->connected_at_ms = h->connected_at_ms;
	c->last_activity_ms = h->last_activity_ms;
	c->msgs_in = h->msgs_in;
	c->msgs_out = h->msgs_out;
	c->bytes_in = h->bytes_in;
	c->bytes_out = h->bytes_out;
	c->last_activity = h->last_activity;
	c->opened_mono = h->opened_mono;
	c->ping_sent = h->ping_sent;
	c->pings_missed = h->pings_missed;
	c->dec = h->dec;
	c->dec.ctl = NULL;
	if (h->ctl.p != NULL) {
		/* sized for the whole body, as ws_codec.c makes it */
		c->dec.ctl = malloc(h->ctl.n + (size_t)h->dec.remaining);
		if (c->dec.ctl == NULL)
			goto nomem;
		memcpy(c->dec.ctl, h->ctl.p, h->ctl.n);
		c->dec.ctl_len = (uint8_t)h->ctl.n;
	} else
		c->dec.ctl_len = 0;
	if (h->msg_open) {
		for (cap = 4096; cap < h->msg.n; cap *= 2)
			;
		if ((c->msg = malloc(cap)) == NULL)
			goto nomem;
		if (h->msg.n > 0)
			memcpy(c->msg, h->msg.p, h->msg.n);
		c->msg_len = h->msg.n;
		c->msg_cap = cap;
		c->msg_open = 1;
		c->msg_opcode = h->msg_opcode;
	}
	if (h->out.n > 0 && evbuffer_add(c->out, h->out.p, h->out.n) == -1)
		goto nomem;
	if (h->attrs.p != NULL) {
		c->attrs = json_loadb((const char *)h->attrs.p, h->attrs.n, 0,
		    &jerr);
		if (c->attrs == NULL || !json_is_object(c->attrs)) {
			*why_r = "bad attributes";
			conn_release(c);
			return -1;
		}
	}
	if (h->has_zs && zstream_conn_restore(srv, &h->zp, h->z_level,
	    h->z_mem_level, (size_t)h->z_threshold, &c->zs) == -1) {
		*why_r = "cannot restore permessage-deflate";
		conn_release(c);
		return -1;
	}
	if (registry_ip_ref(&srv->reg, c->ip) == -1)
		goto nomem;
	c->ip_counted = 1;
	c->state = h->state == HO_STATE_OPEN ? CONN_OPEN : CONN_CLOSING;
	TAILQ_REMOVE(&srv->pending, c, link);
	srv->npending--;
	registry_add(&srv->reg, c);
	c->opened = 1;
	if (c->state == CONN_CLOSING)
		dq_push(&srv->dq_linger, c);
	else if (srv->cfg->ping_interval > 0)
		dq_push(&srv->dq_ping, c);
	*c_r = c;
	return 0;
nomem:
	*why_r = "out of memory";
	conn_release(c);
	return -1;
}

static int
ho_child_batch(struct wsp_server *srv, struct handover_child *hc,
    const uint8_t *p, size_t n, int *fds, size_t nfds, const char **why_r)
{
	struct wsp_conn **grown;
	struct ho_conn h;
	uint32_t count;
	size_t i, off = 4, used, k;

	if (n < 4) {
		*why_r = "short batch";
		goto fail;
	}
	count = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
	if (count != nfds) {
		*why_r = "records and descriptors differ in number";
		goto fail;
	}
	if (hc->nconns + nfds > hc->cap) {
		k = hc->cap == 0 ? 256 : hc->cap;
		while (k < hc->nconns + nfds)
			k *= 2;
		if ((grown = realloc(hc->conns, k * sizeof(*grown))) == NULL) {
			*why_r = "out of memory";
			goto fail;
		}
		hc->conns = grown;
		hc->cap = k;
	}
	for (i = 0; i < nfds; i++) {
		if (ho_conn_decode(p + off, n - off, &used, &h, why_r) == -1)
			goto fail;
		off += used;
		if (ho_adopt_one(srv, &h, fds[i], &hc->conns[hc->nconns],
		    why_r) == -1) {
			fds[i] = -1;
			goto fail;
		}
		fds[i] = -1;
		hc->nconns++;
	}
	if (off != n) {
		*why_r = "bytes after the last record";
		return -1;
	}
	return 0;
fail:
	ho_close_fds(fds, nfds);
	return -1;
}

static void
ho_child_counters(struct wsp_server *srv, const uint64_t *v)
{
	srv->total_opened += v[HOC_OPENED];
	srv->total_closed += v[HOC_CLOSED];
	srv->total_refused += v[HOC_REFUSED];
	srv->total_reaped += v[HOC_REAPED];
	srv->metrics.msgs_in += v[HOC_MSGS_IN];
	srv->metrics.msgs_out += v[HOC_MSGS_OUT];
	srv->metrics.bytes_in += v[HOC_BYTES_IN];
	srv->metrics.bytes_out += v[HOC_BYTES_OUT];
	srv->metrics.pings += v[HOC_PINGS];
	srv->metrics.reaps += v[HOC_REAPS];
	srv->metrics.reloads_ok += v[HOC_RELOADS_OK];
	srv->metrics.reloads_failed += v[HOC_RELOADS_FAILED];
	srv->metrics.handovers_ok += v[HOC_HANDOVERS_OK] + 1;
	srv->metrics.handovers_failed += v[HOC_HANDOVERS_FAILED];
}

/* Forget what was adopted: the old process still serves it. */
static void
ho_child_abandon(struct wsp_server *srv, struct handover_child *hc)
{
	size_t i;

	for (i = 0; i < hc->nconns; i++)
		conn_release(hc->conns[i]);
	hc->nconns = 0;
	(void)srv;
}

int
handover_child_run(struct wsp_server *srv)
{
	struct handover_child *hc = srv->handover_child;
	struct log_line *l;
	struct ho_frame f;
	uint8_t *payload = NULL, cnt[4];
	uint64_t t0 = clock_mono_ms();
	const char *why = NULL;
	int fds[HO_BATCH_FDS], done = 0, tell = 0;
	size_t nfds, i, j;

	if (ho_send(hc->fd, HO_T_READY, NULL, 0, NULL, 0) == -1) {
		why = "cannot answer READY";
		goto fail;
	}
	while (!done) {
		if (ho_recv(hc->fd, &f, &payload, fds, HO_BATCH_FDS, &nfds,
		    &why) == -1)
			goto fail;
		switch (f.type) {
		case HO_T_CONNS:
			if (f.version != HO_VERSION) {
				ho_close_fds(fds, nfds);
				why = "connections in another version";
				goto fail;
			}
			if (ho_child_batch(srv, hc, payload, f.len, fds, nfds,
			    &why) == -1) {
				tell = 1;
				goto fail;
			}
			break;
		case HO_T_END:
			if (f.version == HO_VERSION && ho_counters_decode(
			    payload, f.len, hc->counters, HOC_N, &why) == -1)
				goto fail;
			done = 1;
			break;
		default:
			ho_close_fds(fds, nfds);
			why = "unexpected frame";
			goto fail;
		}
		free(payload);
		payload = NULL;
	}
	/* Plugins know the connections before anything is said on them. */
	for (i = 0; i < hc->nconns; i++)
		for (j = 0; j < srv->plugins->nplugins; j++)
			plugin_call_adopt(srv->plugins->plugins[j],
			    hc->conns[i]);
	cnt[0] = (uint8_t)hc->nconns;
	cnt[1] = (uint8_t)(hc->nconns >> 8);
	cnt[2] = (uint8_t)(hc->nconns >> 16);
	cnt[3] = (uint8_t)(hc->nconns >> 24);
	if (ho_send(hc->fd, HO_T_ADOPTED, cnt, 4, NULL, 0) == -1) {
		why = "cannot answer ADOPTED";
		goto fail;
	}
	if (ho_recv(hc->fd, &f, &payload, fds, 0, &nfds, &why) == -1)
		goto fail;
	free(payload);
	payload = NULL;
	if (f.type != HO_T_GO) {
		why = "expected GO";
		goto fail;
	}
	for (i = 0; i < hc->nconns; i++)
		if (conn_adopt_start(hc->conns[i]) == -1)
			log_msg(WSP_LOG_ERROR, "handover.error", "cannot "
			    "watch an adopted connection: %s",
			    strerror(errno));
	ho_child_counters(srv, hc->counters);
	if ((l = log_begin(WSP_LOG_INFO, "handover.adopted")) != NULL) {
		log_uint(l, "connections", hc->nconns);
		log_uint(l, "took_ms", clock_mono_ms() - t0);
		log_uint(l, "handovers", srv->metrics.handovers_ok);
		log_end(l);
	}
	srv->handover_child = NULL;
	ho_child_free(hc); /* closes the listeners no one took */
	return 0;
fail:
	free(payload);
	ho_log_failed("new", getpid(), why != NULL ? why : "failed");
	/* Written before the old process hears of it: it kills us then. */
	log_detach();
	if (tell)
		handover_child_refuse(hc->fd, NULL, why);
	ho_child_abandon(srv, hc);
	srv->handover_child = NULL;
	ho_child_free(hc);
	return -1;
}

void
handover_child_free(struct wsp_server *srv)
{
	ho_child_free(srv->handover_child);
	srv->handover_child = NULL;
}
