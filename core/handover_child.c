/*
 * handover_child.c: the new process's side of a hand-over (SIGUSR2).
 *
 * Started by the old process (handover.c) with HANDOVER_ENV naming a
 * socket pair, it first receives the listening sockets, before its server
 * is built, so that listen.c and admin.c take them through the bind hook
 * instead of binding (an address the new configuration adds is bound;
 * one it drops is closed once the new process serves).  The configuration
 * was read and checked whole by main.c like any start; a failure there is
 * sent back as FAIL.  Then it answers READY and receives the connections:
 * each record is checked (handover_state.c) and rebuilt as an open,
 * registered connection with no event yet (conn_adopt), so nothing is
 * read or written while the old process still owns them, and joins its
 * bus channels again (bus_adopt).  Before the first connection comes the
 * local bus's history (HO_T_HISTORY), so the channels keep their epoch
 * and offsets here and a client's since still recovers; a history this
 * process refuses costs only that (channels start a new epoch), never
 * the hand-over.  Every plugin's adopt() sees every
 * connection, ADOPTED goes back, and on GO the
 * connections are watched and the loop may start.  Anything wrong before
 * GO: the connections are forgotten untouched (conn_release) and the
 * process exits 1 without a word to any client; the old one still has
 * them all.
 *
 * With workers > 1 the new master takes the listeners
 * (handover_child_take, the k-th socket of an address for worker k) and
 * each new worker runs the rest on its own channel (handover_child_peer):
 * no history (the store is the master's), and its channels' subscribes
 * answered by the new master before ADOPTED.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "wsplugd.h"

#define HO_MAX_SOCKS 256

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
	int history; /* HO_T_HISTORY came */
	int counts;  /* this process counts the hand-over (not workers 2..N) */
};

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
	hc->counts = 1;
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

/*
 * A new worker (workers > 1, workers.c): its listeners are its master's,
 * so nothing comes before READY on fd; the records that follow are the
 * single process's.
 */
struct handover_child *
handover_child_peer(int fd, uint64_t timeout_ms, int counts)
{
	struct handover_child *hc;

	if ((hc = calloc(1, sizeof(*hc))) == NULL) {
		close(fd);
		return NULL;
	}
	hc->fd = fd;
	hc->peer_version = HO_VERSION;
	hc->counts = counts;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	ho_set_timeout(fd, timeout_ms);
	return hc;
}

/* The first socket passed for a not taken yet: passed in the old
 * master's worker order, so the k-th call gets worker k's socket of a
 * SO_REUSEPORT group. */
int
handover_child_take(struct handover_child *hc,
    const struct wsp_listen_addr *a, int backlog, char *addr, size_t addrlen)
{
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
	errno = ENOENT;
	return -1;
}

/* How many sockets of one SO_REUSEPORT group came: the old daemon's
 * workers (1 for a single process, 0 without a [server] listen). */
size_t
handover_child_group(const struct handover_child *hc)
{
	size_t i, j, n, most = 0;

	for (i = 0; i < hc->nsocks; i++) {
		if (hc->socks[i].l.kind != HO_LISTEN_WS)
			continue;
		for (n = 0, j = 0; j < hc->nsocks; j++)
			n += hc->socks[j].l.kind == HO_LISTEN_WS &&
			    hc->socks[j].l.conf_len == hc->socks[i].l.conf_len &&
			    memcmp(&hc->socks[j].l.conf, &hc->socks[i].l.conf,
			    hc->socks[i].l.conf_len) == 0;
		if (n > most)
			most = n;
	}
	return most;
}

/* Listening sockets passed and not taken. */
size_t
handover_child_left(const struct handover_child *hc)
{
	size_t i, n = 0;

	for (i = 0; i < hc->nsocks; i++)
		n += hc->socks[i].fd >= 0 && hc->socks[i].l.kind == HO_LISTEN_WS;
	return n;
}

int
handover_child_fd(const struct handover_child *hc)
{
	return hc->fd;
}

/* The new master's: the channel and the sockets no one took. */
void
handover_child_done(struct handover_child *hc)
{
	ho_child_free(hc);
}

/* srv->bind in the new process: the old one's socket for an address it
 * had, a new one for an address the configuration adds. */
static int
ho_bind(struct wsp_server *srv, const struct wsp_listen_addr *a, int backlog,
    char *addr, size_t addrlen)
{
	int fd;

	if ((fd = handover_child_take(srv->handover_child, a, backlog, addr,
	    addrlen)) != -1 || errno != ENOENT)
		return fd;
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
/* A handshake in progress: the request so far, in a buffer of the size
 * this process reads heads into, under its handshake deadline. */
static int
ho_adopt_handshake(struct wsp_server *srv, const struct ho_conn *h, int fd,
    struct wsp_conn **c_r, const char **why_r)
{
	struct wsp_conn *c;

	if (h->head.n >= srv->cfg->max_header_size) {
		close(fd);
		*why_r = "a request head longer than max_header_size";
		return -1;
	}
	if ((c = conn_adopt(srv, fd, NULL, 0)) == NULL) {
		close(fd);
		*why_r = "out of memory";
		return -1;
	}
	TAILQ_INSERT_TAIL(&srv->pending, c, link);
	srv->npending++;
	c->state = CONN_HANDSHAKE;
	memcpy(c->ip, h->ip, sizeof(c->ip));
	c->port = h->port;
	if (admit_adopt(srv, c) == -1) {
		*why_r = "out of memory";
		conn_release(c);
		return -1;
	}
	c->last_activity = h->last_activity;
	if (h->head.n > 0) {
		if ((c->head = malloc(srv->cfg->max_header_size)) == NULL) {
			*why_r = "out of memory";
			conn_release(c);
			return -1;
		}
		c->head_cap = srv->cfg->max_header_size;
		memcpy(c->head, h->head.p, h->head.n);
		c->head_len = h->head.n;
	}
	dq_push(&srv->dq_handshake, c);
	*c_r = c;
	return 0;
}

static int
ho_adopt_one(struct wsp_server *srv, const struct ho_conn *h, int fd,
    struct wsp_conn **c_r, const char **why_r)
{
	char name[WSP_BUS_CHANNEL_MAX + 1], epoch[WSP_BUS_EPOCH_MAX + 1];
	uint64_t last;
	struct wsp_conn *c;
	json_error_t jerr;
	size_t cap, off;

	if (h->state == HO_STATE_HANDSHAKE)
		return ho_adopt_handshake(srv, h, fd, c_r, why_r);
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
	if (h->out.n > 0 && (conn_out(c) == NULL ||
	    evbuffer_add(c->out, h->out.p, h->out.n) == -1))
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
	if (admit_adopt(srv, c) == -1)
		goto nomem;
	c->state = h->state == HO_STATE_OPEN ? CONN_OPEN : CONN_CLOSING;
	TAILQ_REMOVE(&srv->pending, c, link);
	srv->npending--;
	registry_add(&srv->reg, c);
	c->opened = 1;
	if (c->state == CONN_CLOSING)
		dq_push(&srv->dq_closing, c);
	else if (srv->cfg->ping_interval > 0)
		dq_push(&srv->dq_ping, c);
	/* back on its channels, before any plugin hears of it: the plugin
	 * that subscribed it finds them through bus_channels as before */
	off = 0;
	while (c->state == CONN_OPEN && ho_subs_next(&h->subs, &off, name,
	    &last, epoch))
		if (bus_adopt(srv->bus, c, name, last, epoch) == -1) {
			*why_r = "cannot join a bus channel again";
			bus_conn_closed(srv->bus, c);
			conn_release(c);
			return -1;
		}
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
ho_child_counters(struct wsp_server *srv, const uint64_t *v, int counts)
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
	srv->metrics.handovers_ok += v[HOC_HANDOVERS_OK] + (uint64_t)counts;
	srv->metrics.handovers_failed += v[HOC_HANDOVERS_FAILED];
}

/* Forget what was adopted: the old process still serves it. */
static void
ho_child_abandon(struct wsp_server *srv, struct handover_child *hc)
{
	size_t i;

	for (i = 0; i < hc->nconns; i++) {
		bus_conn_closed(srv->bus, hc->conns[i]); /* no dangling member */
		conn_release(hc->conns[i]);
	}
	hc->nconns = 0;
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
	int fds[HO_BATCH_FDS], done = 0, tell = 0, bfd;
	size_t nfds, i, j;

	/* The loop has not turned yet, and the adoption waits outside it:
	 * what the start logged (its plugins, its listeners) is written as
	 * it happened, not when the loop first turns. */
	log_sync();
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
		case HO_T_HISTORY:
			/* before any connection joins its channels, once */
			if (f.version != HO_VERSION || hc->nconns > 0 ||
			    hc->history) {
				ho_close_fds(fds, nfds);
				why = "unexpected bus history";
				goto fail;
			}
			hc->history = 1;
			if (bus_history_load(srv->bus, payload, f.len, 1,
			    &why) == -1)
				log_msg(WSP_LOG_WARN, "handover.history",
				    "bus history refused, channels start a "
				    "new epoch: %s", why);
			why = NULL;
			break;
		case HO_T_END:
			if (f.version == HO_VERSION && ho_counters_decode(
			    payload, f.len, hc->counters, HOC_N, &why) == -1)
				goto fail;
			/* channels no connection came back to go now */
			bus_history_settled(srv->bus);
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
	/* With workers, the store is the new master's: every connection
	 * is a member of its channels again (its subscribe answered)
	 * before ADOPTED, so that nothing published after GO misses it. */
	if (bus_pump(srv->bus, 2, &bfd) == -1) {
		why = "the bus did not take the connections' channels back";
		tell = 1;
		goto fail;
	}
	/* Plugins know the connections before anything is said on them
	 * (not the handshakes: they will be opened). */
	for (i = 0; i < hc->nconns; i++)
		for (j = 0; j < srv->plugins->nplugins; j++)
			if (hc->conns[i]->registered)
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
	ho_child_counters(srv, hc->counters, hc->counts);
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
