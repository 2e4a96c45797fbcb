/*
 * conn.c: one client connection, from accept to close.
 *
 *   HANDSHAKE --101--> OPEN --close sent--> CLOSING --peer's close--> LINGER
 *       |                 \--peer's close, protocol error, EOF------^   |
 *       \--4xx/5xx refusal-----------------------------------------^   v
 *                                                  flush, SHUT_WR, drain to
 *                                                  EOF or timeout, close(2)
 *
 * Deadlines: the handshake's (handshake_timeout), CLOSING's (5 s for the
 * peer's close frame) and LINGER's (1 s, short because a lingering socket
 * still holds a descriptor and a place in the connection limits, which
 * admit.c takes at accept and conn_free alone gives back).
 *
 * A connection is a lower layer: it calls nothing above it.  What it has
 * to tell goes through the hooks its owner set in srv->conn_hooks
 * (server.c): opened (the plugins greet it), message (each complete
 * message, to dispatch.c), closed (the plugins say goodbye) and gone (the
 * shutdown may be done).  Whether a client may connect or upgrade is the
 * handshake policy's, admit.c; this file only parses the request, writes
 * the refusal and lingers.  What the plugins say before the 101 goes
 * through the vet hooks (upgrade.c); when a plugin takes its time the
 * connection stops reading and waits, under the handshake deadline, for
 * conn_upgrade_resume, and acts on the answer in its own handler.
 *
 * One text message: conn_event_cb reads it into the server's buffer,
 * conn_feed hands the bytes to ws_codec.c, conn_on_data reassembles the
 * fragments, conn_deliver passes the whole message to the message hook;
 * a reply comes back down through host.c into conn_send, which queues
 * the frame, and conn_write sends it when the read handler returns.
 *
 * Reads go into the server's single read buffer, so an idle connection
 * holds no input buffer; a request head gets a buffer of its own only
 * when it comes in pieces or a plugin answers it later, and a message
 * only while its fragments arrive.  A message that fits in one read is
 * dispatched in place, unmasked, without a copy.
 *
 * On a TLS listener the same descriptor carries an SSL object (tls.c):
 * the TLS handshake is the first part of CONN_HANDSHAKE, under the same
 * deadline and limits, and conn_recv/conn_out_write are the only places
 * that pick between the socket and TLS.
 *
 * Output is queued in the connection's evbuffer.  Replies made while the
 * connection's own read is processed are written once at the end of that
 * event; anything queued from elsewhere (a broadcast, a timer) schedules
 * the connection's event as active, so it is written once per loop turn.
 * The common case skips the evbuffer: while a plaintext connection with
 * nothing queued reads, its small frames are gathered flat in the
 * server's stage (srv->stage, CONN_STAGE_SIZE) and written by one
 * write(2) as the read ends; only what the socket does not take goes to
 * the evbuffer.  The evbuffer's reserve and commit, and the memory
 * budget's update, were a fifth of a ping's instructions.  Control
 * frames (a pong, our close) are staged like data.  The 101 of a plaintext
 * upgrade starts it (as bytes that are not a frame, the head of the
 * output the way conn_upgrade queues it otherwise), so the greeting
 * leaves with it in one write(2).  A large frame sent during that read
 * first moves the stage to the evbuffer, and the end of the session
 * writes it at once, so the order on the wire never changes.  The stage
 * is the process's, a fixed size like the read buffer, so it is not
 * counted against max_buffer_memory; what stays queued after the write
 * is.
 *
 * The evbuffer (c->out, 144 bytes with malloc's due, a sixth of an idle
 * connection) is made only when something must wait in it: a connection
 * whose replies all leave through the stage never has one.  A keepalive
 * ping to a connection with nothing queued goes through the stage from
 * the timer, for the same reason.  Once made, it is kept.
 *
 * Memory: what a connection holds (its queued output and the buffer of
 * the message it is reassembling) is reported to membudget.c after every
 * change; past max_buffer_memory, the connections holding the most are
 * shed (doomed, their memory dropped at once), whichever one asked.  A
 * frame of CONN_EXACT_MIN bytes or more is queued in a block of exactly
 * its size: an evbuffer chain is rounded up to a power of two, which
 * would let a 16 MiB frame hold 32 MiB.  max_output_buffer judges what
 * the peer has not taken: the bytes still queued after a write attempt,
 * not counting the rest of a frame being written, so one message larger
 * than the limit goes out as fast as the peer reads it, and only a peer
 * that stops reading is shed.  A large send to a connection that is not
 * in its own handler is written at once, so that a broadcast to readers
 * does not pile every copy up in memory before the first write.
 *
 * A connection is freed only from its own event callback or a timer, never
 * from inside a host call a plugin made: plugins may hold a connection
 * pointer for the whole of a callback.  Closing from a plugin queues a
 * close frame; a slow consumer is marked doomed and ended in its handler.
 */
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "wsplugd.h"

#define CONN_MAX_UA 512
#define CONN_MAX_ORIGIN 256
/* Frames this large are queued at their exact size. */
#define CONN_EXACT_MIN (16 * 1024)
/* Output this large is written at once by a send from outside the
 * connection's handler, instead of at the next turn of the loop. */
#define CONN_WRITE_NOW (16 * 1024)
/* A shed finishes a frame the peer has begun up to this many bytes. */
#define CONN_KEEP_MAX (16 * 1024)

static void conn_event_cb(evutil_socket_t, short, void *);
static void conn_mem_sync(struct wsp_conn *c);
static void conn_stage_spill(struct wsp_conn *c);
static void conn_stage_end(struct wsp_conn *c);

/* What c has queued; NULL c->out is nothing. */
static size_t
conn_out_len(const struct wsp_conn *c)
{
	return c->out != NULL ? evbuffer_get_length(c->out) : 0;
}

struct evbuffer *
conn_out(struct wsp_conn *c)
{
	if (c->out == NULL)
		c->out = evbuffer_new();
	return c->out;
}

static int
conn_set_events(struct wsp_conn *c, int want_write)
{
	short evs;

	want_write |= c->tls_wants_write;
	evs = EV_READ | EV_PERSIST | (want_write ? EV_WRITE : 0);

	if (c->want_write == (unsigned)!!want_write)
		return 0;
	event_del(&c->ev);
	event_assign(&c->ev, c->srv->base, c->fd, evs, conn_event_cb, c);
	c->want_write = !!want_write;
	/* Waiting on a plugin: not a byte is read until it answers
	 * (conn_wait_end adds the event again). */
	if (c->upgrade_wait)
		return 0;
	return event_add(&c->ev, NULL);
}

static void
conn_schedule_flush(struct wsp_conn *c)
{
	if (c->in_read || c->flush_pending)
		return; /* the running handler writes on its way out */
	c->flush_pending = 1;
	event_active(&c->ev, EV_WRITE, 1);
}

/* Reading again after a plugin's wait (the event was deleted). */
static void
conn_wait_end(struct wsp_conn *c)
{
	if (!c->upgrade_wait)
		return;
	c->upgrade_wait = 0;
	event_add(&c->ev, NULL);
}

static void
conn_leave_handshake(struct wsp_conn *c)
{
	conn_wait_end(c);
	c->upgrade_ready = 0;
	if (c->vetting != NULL)
		c->srv->conn_hooks.vet_end(c);
}

static const char *
conn_str(const char *s)
{
	return s == NULL ? "" : s;
}

static char *
strndup_capped(const struct http_str *s, size_t cap)
{
	if (s->p == NULL)
		return NULL;
	return strndup(s->p, s->n < cap ? s->n : cap);
}

static struct conn_path *
conn_path_new(const char *s, size_t n)
{
	struct conn_path *p;

	if ((p = malloc(sizeof(*p) + n + 1)) == NULL)
		return NULL;
	p->refs = 1;
	memcpy(p->s, s, n);
	p->s[n] = '\0';
	return p;
}

void
conn_path_unref(struct conn_path *p)
{
	if (p != NULL && --p->refs == 0)
		free(p);
}

/*
 * The target a connection reports.  It is the configured path on all but
 * those that add a query, so it is the server's copy, shared, when it is
 * exactly that, and the connection's own otherwise.  A reload that changes
 * the path replaces the server's copy rather than changing it: connections
 * keep the one they upgraded on.  NULL when out of memory.
 */
static struct conn_path *
conn_path_get(struct wsp_server *srv, const struct http_str *target)
{
	const char *cp = srv->cfg->path;
	struct conn_path *p;
	size_t n = target->n < CONN_MAX_ORIGIN ? target->n : CONN_MAX_ORIGIN;

	if (target->n != strlen(cp) || memcmp(target->p, cp, n) != 0)
		return conn_path_new(target->p, n);
	if (srv->path == NULL || strcmp(srv->path->s, cp) != 0) {
		if ((p = conn_path_new(cp, n)) == NULL)
			return NULL;
		conn_path_unref(srv->path);
		srv->path = p;
	}
	srv->path->refs++;
	return srv->path;
}

/* The I/O seams: read(2) or TLS, evbuffer_write or TLS. */
static ssize_t
conn_recv(struct wsp_conn *c, void *buf, size_t len)
{
	ssize_t n;

	if (c->ssl == NULL)
		return read(c->fd, buf, len);
	n = tls_read(c, buf, len);
	/* A record decrypted but not taken (buf was full) is not in the
	 * socket any more: come back for it without waiting for EV_READ. */
	if (n > 0 && tls_pending(c))
		event_active(&c->ev, EV_READ, 1);
	return n;
}

static int
conn_out_write(struct wsp_conn *c, size_t most)
{
	if (c->ssl != NULL)
		return tls_write(c, c->out);
	return evbuffer_write_atmost(c->out, c->fd, (ssize_t)most);
}

/* The dotted quad of a[4] into out (at least 16 bytes).  glibc's
 * inet_ntop formats IPv4 with sprintf: about 1,600 instructions, a
 * twentieth of an accepted handshake's. */
static void
ipv4_text(const uint8_t a[4], char *out)
{
	size_t i;
	unsigned v;

	for (i = 0; i < 4; i++) {
		v = a[i];
		if (v >= 100)
			*out++ = (char)('0' + v / 100);
		if (v >= 10)
			*out++ = (char)('0' + v / 10 % 10);
		*out++ = (char)('0' + v % 10);
		*out++ = i < 3 ? '.' : '\0';
	}
}

int
conn_accept(struct wsp_server *srv, int fd, const struct sockaddr *sa,
    socklen_t salen, int tls)
{
	struct wsp_conn *c;
	const char *reason, *why;
	int status;

	(void)salen;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	c->srv = srv;
	c->fd = fd;
	c->state = CONN_HANDSHAKE;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, c->ip, sizeof(c->ip));
		c->port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;

		ipv4_text((const uint8_t *)&s4->sin_addr, c->ip);
		c->port = ntohs(s4->sin_port);
	}
	/* Over a limit (or shutting down): answered and closed now, since a
	 * linger would keep a descriptor beyond the limit.  A TLS client gets
	 * no answer it could read, only the close. */
	if ((status = admit_accept(srv, c, &reason, &why)) != 0) {
		admit_refused(srv, c->ip, c->port, status, reason, why);
		/* The 503's Retry-After is the client's slot, spaced at
		 * the accept rate, or the restart's schedule. */
		fdlimit_refuse(fd, tls ? 0 : status, status != 503 ? 0 :
		    slots_retry_after_s(slots_take_later(&srv->slots,
		    clock_mono_ms(), SLOTS_REFUSAL_MS)), why);
		free(c);
		return 0;
	}
	/* struct event is embedded, so this ties us to the libevent ABI we
	 * are built against, which the soname already does. */
	event_assign(&c->ev, srv->base, fd, EV_READ | EV_PERSIST,
	    conn_event_cb, c);
	if (event_add(&c->ev, NULL) == -1) {
		admit_release(c);
		free(c);
		return -1;
	}
	TAILQ_INSERT_TAIL(&srv->pending, c, link);
	srv->npending++;
	c->last_activity = clock_mono_ms();

	if (tls && tls_conn_new(c) == -1) {
		conn_free(c); /* closes fd: the caller must not */
		return 0;
	}
	dq_push(&srv->dq_handshake, c);
	return 0;
}

/* The response is queued: flush it and linger-close. */
static void
conn_answered(struct wsp_conn *c)
{
	conn_leave_handshake(c);
	c->state = CONN_LINGER;
	free(c->head);
	c->head = NULL;
	dq_push(&c->srv->dq_linger, c);
	conn_schedule_flush(c);
}

/* Answer the handshake with an error status and linger-close; by names
 * the plugin that refused, or is NULL. */
static void
conn_refuse_by(struct wsp_conn *c, int status, const char *reason,
    const char *why, const char *by)
{
	/* The places it holds are kept until conn_free: a lingering socket
	 * counts toward the limits. */
	admit_refused_by(c->srv, c->ip, c->port, status, reason, why, by);
	if (c->ssl != NULL && !c->tls_open) {
		/* No TLS session to answer in: a plain close. */
		if (strcmp(reason, "handshake_timeout") == 0)
			metrics_tls_failed(c->srv, reason);
		tls_conn_free(c);
	} else if (conn_out(c) == NULL)
		; /* out of memory: the client gets the close alone */
	else if (status == 503)
		/* The client's slot: the restart's schedule while one is
		 * under way, else one spaced at the accept rate. */
		http_response_retry(c->out, status, why, slots_retry_after_s(
		    slots_take_later(&c->srv->slots, clock_mono_ms(),
		    SLOTS_REFUSAL_MS)));
	else
		http_response_error(c->out, status, why);
	/* last: the end of the handshake frees what why and by point to */
	conn_answered(c);
}

void
conn_refuse(struct wsp_conn *c, int status, const char *reason,
    const char *why)
{
	conn_refuse_by(c, status, reason, why, NULL);
}

/* A GET of the discovery document (http_upgrade.c) is answered, not
 * refused: it is a client asking how to connect, not a failed upgrade. */
static int
conn_wellknown(struct wsp_conn *c, const struct http_request *req)
{
	const struct wsp_config *cfg = c->srv->cfg;
	struct log_line *l;
	int status;

	if (conn_out(c) == NULL)
		return 0;
	status = http_wellknown_gone(req, cfg->path, cfg->gone, cfg->ngone,
	    admit_origin_allowed(cfg, &req->origin), c->out);
	if (status == 0)
		return 0;
	if ((l = log_begin(WSP_LOG_DEBUG, "http.wellknown")) != NULL) {
		log_str(l, "ip", c->ip);
		log_uint(l, "port", c->port);
		log_int(l, "status", status);
		log_end(l);
	}
	conn_answered(c);
	return 1;
}

static void
conn_log_open(struct wsp_conn *c)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_INFO, "ws.open")) == NULL)
		return;
	log_str(l, "conn", c->id);
	log_str(l, "ip", c->ip);
	log_uint(l, "port", c->port);
	log_str(l, "ua", conn_str(c->user_agent));
	if (c->origin != NULL)
		log_str(l, "origin", c->origin);
	log_str(l, "path", c->path->s);
	if (c->subprotocol != NULL)
		log_str(l, "subprotocol", c->subprotocol);
	if (c->user != NULL)
		log_str(l, "user", c->user);
	if (c->ssl != NULL) {
		log_str(l, "tls", tls_version(c));
		log_str(l, "cipher", tls_cipher(c));
		log_str(l, "ktls", tls_ktls(c));
	}
	log_uint(l, "active", c->srv->reg.count);
	log_end(l);
}

static int conn_feed(struct wsp_conn *c, uint8_t *buf, size_t len);

/* A valid upgrade the policy admitted: answer 101, register, tell the
 * owner (the plugins greet it), then process any frames the client
 * pipelined behind its request: what of the len bytes read into buf (the
 * read buffer, or c->head) follows the head_len of the request. */
static int
conn_upgrade(struct wsp_conn *c, const struct http_request *req,
    const char *buf, size_t len, size_t head_len, const char *proto)
{
	struct wsp_server *srv = c->srv;
	const struct wsp_config *cfg = srv->cfg;
	char accept[29], *head, ext[DEFLATE_ANSWER_MAX];
	size_t n;
	int rc;

	if ((c->user_agent = strndup_capped(&req->user_agent, CONN_MAX_UA)) ==
	    NULL && req->user_agent.p != NULL)
		return -1;
	if ((c->origin = strndup_capped(&req->origin, CONN_MAX_ORIGIN)) ==
	    NULL && req->origin.p != NULL)
		return -1;
	if ((c->path = conn_path_get(srv, &req->target)) == NULL)
		return -1;
	/* A plugin that took its time had it copied already. */
	if (proto != NULL && c->subprotocol == NULL &&
	    (c->subprotocol = strdup(proto)) == NULL)
		return -1;

	/* permessage-deflate seam: zstream.c negotiates */
	if (zstream_accept(srv, req, &c->zs, ext) == -1)
		return -1;
	http_accept_key(&req->key, accept);
	/* Plaintext, the 101 starts the stage: the greeting and any reply
	 * to frames pipelined behind the request join it, and the handler
	 * writes them all with one write(2). */
	if (c->ssl == NULL && srv->stage_conn == NULL &&
	    conn_out_len(c) == 0 &&
	    (n = http_response_101_flat((char *)srv->stage, CONN_STAGE_SIZE,
	    accept, proto, c->zs != NULL ? ext : NULL)) <= CONN_STAGE_SIZE) {
		srv->stage_conn = c;
		srv->stage_len = srv->stage_raw = n;
	} else {
		if (conn_out(c) == NULL)
			return -1;
		http_response_101(c->out, accept, proto,
		    c->zs != NULL ? ext : NULL);
		/* frames follow it */
		c->out_head = conn_out_len(c);
		c->out_head_size = c->out_head;
		c->out_lost = 0;
	}
	ws_decoder_init(&c->dec, cfg->max_message_size);
	c->dec.rsv1_ok = c->zs != NULL;
	registry_new_id(&srv->reg, c->id);
	c->connected_at_ms = clock_wall_ms();
	c->last_activity_ms = c->connected_at_ms;
	c->opened_mono = clock_mono_ms();
	slots_opened(&srv->slots, c->opened_mono); /* the accept rate */
	conn_leave_handshake(c);
	c->state = CONN_OPEN;
	TAILQ_REMOVE(&srv->pending, c, link);
	srv->npending--;
	registry_add(&srv->reg, c);
	srv->total_opened++;
	if (cfg->ping_interval > 0)
		dq_push(&srv->dq_ping, c);
	else
		dq_remove(c);
	conn_log_open(c);
	c->mem_tracked = 1;
	conn_mem_sync(c);
	c->opened = 1;
	srv->conn_hooks.opened(c);

	/* Detach the head first: ending the connection frees c->head. */
	head = c->head;
	c->head = NULL;
	c->head_len = 0;
	rc = 0;
	if (len > head_len) {
		/* Frames the client sent right behind its request. */
		c->bytes_in += len - head_len;
		rc = conn_feed(c, (uint8_t *)buf + head_len, len - head_len);
	}
	free(head);
	return rc;
}

/* What of a request was read into the read buffer, moved to a buffer of
 * c's own for the reads to come (or for the plugins' late answer). */
static int
conn_keep_head(struct wsp_conn *c, const char *buf, size_t len)
{
	size_t cap = c->srv->cfg->max_header_size;

	if ((c->head = malloc(cap)) == NULL)
		return -1;
	memcpy(c->head, buf, len);
	c->head_cap = cap;
	c->head_len = len;
	return 0;
}

static int
conn_read_head(struct wsp_conn *c)
{
	const struct wsp_config *cfg = c->srv->cfg;
	struct http_request req;
	const char *why = NULL, *reason = NULL, *proto = NULL;
	char *buf;
	size_t cap, end, len;
	ssize_t n;
	int status;

	if (c->upgrade_wait)
		return 0; /* the request is read; a plugin decides on it */
	if (c->ssl != NULL && !c->tls_open) {
		switch (tls_accept(c)) {
		case TLS_AGAIN:
			return 0;
		case TLS_GONE:
			return -1;
		case TLS_PLAIN:
			conn_refuse(c, 400, "plain_on_tls_port", "this port "
			    "speaks TLS: use https:// or wss://");
			return 0;
		}
	}
	if (c->head == NULL) {
		/* The first read goes to the process's read buffer, where a
		 * request that comes whole (nearly every one) is parsed and
		 * answered: a buffer of its own, max_header_size bytes
		 * allocated and freed per connection, only for one that
		 * comes in pieces, or that a plugin answers later. */
		buf = (char *)c->srv->rbuf;
		cap = cfg->max_header_size;
		len = 0;
	} else {
		/* The buffer keeps the size it was made with: a reload may
		 * change max_header_size while this client is mid-request. */
		buf = c->head;
		cap = c->head_cap;
		len = c->head_len;
	}
	n = conn_recv(c, buf + len, cap - len);
	if (n == -1)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0)
		return -1; /* gone before asking anything: nothing to log */
	if (len == 0 && c->ssl == NULL && buf[0] == 0x16) {
		/* A TLS ClientHello on a plain port: no answer it could
		 * read, so log and close. */
		admit_refused(c->srv, c->ip, c->port, 400,
		    "tls_on_plain_port", "TLS sent to a plain listener");
		return -1;
	}
	len += (size_t)n;
	if (buf == c->head)
		c->head_len = len;
	if ((end = http_head_length(buf, len)) == 0) {
		if (len == cap)
			conn_refuse(c, 431, "header_too_large",
			    "request header fields too large");
		else if (buf != c->head && conn_keep_head(c, buf, len) == -1)
			return -1;
		return 0;
	}
	status = http_request_parse(buf, end, &req, &why);
	if (status == 0)
		status = http_upgrade_check(&req, cfg->path, &why);
	if (status == 404 && conn_wellknown(c, &req))
		return 0;
	/* A path the operator retired: 410 tells a client to stop, where
	 * a 404 might be a deployment still in progress. */
	if (status == 404 && admit_gone(cfg, &req.path)) {
		status = 410;
		why = "this endpoint is gone";
	}
	if (status != 0)
		reason = admit_reason(status);
	else
		status = admit_request(c->srv, &req, &proto, &reason, &why);
	if (status != 0) {
		conn_refuse(c, status, reason, why);
		return 0;
	}
	if (c->srv->conn_hooks.vet != NULL) {
		const char *by = NULL;

		status = c->srv->conn_hooks.vet(c, &req, buf, end,
		    proto, &why, &by);
		if (status == CONN_UPGRADE_WAIT) {
			/* The request is parsed again from c->head when the
			 * answer comes; proto may not outlive a reload. */
			if (buf != c->head && conn_keep_head(c, buf, len) == -1)
				return -1;
			if (proto != NULL &&
			    (c->subprotocol = strdup(proto)) == NULL)
				return -1;
			/* Nothing more is read until then: not the frames
			 * a client pipelines, not its EOF.  The handshake
			 * deadline still runs. */
			event_del(&c->ev);
			c->upgrade_wait = 1;
			return 0;
		}
		if (status != 0) {
			conn_refuse_by(c, status, "plugin", why, by);
			return 0;
		}
	}
	return conn_upgrade(c, &req, buf, len, end, proto);
}

void
conn_upgrade_resume(struct wsp_conn *c)
{
	if (c->state != CONN_HANDSHAKE || !c->upgrade_wait)
		return;
	c->upgrade_ready = 1;
	event_active(&c->ev, EV_WRITE, 1);
}

/* In the connection's own handler: the plugins' late answer. */
static int
conn_upgrade_answered(struct wsp_conn *c)
{
	struct http_request req;
	const char *why = NULL, *by = NULL;
	size_t end = 0;
	int status;

	c->upgrade_ready = 0;
	conn_wait_end(c);
	status = c->srv->conn_hooks.vet_result(c, &end, &why, &by);
	if (status != 0) {
		conn_refuse_by(c, status, "plugin", why, by);
		return 0;
	}
	/* The same head parsed the same way: it cannot fail now. */
	if (http_request_parse(c->head, end, &req, &why) != 0) {
		conn_refuse(c, 500, "other", "internal error");
		return 0;
	}
	return conn_upgrade(c, &req, c->head, c->head_len, end,
	    c->subprotocol);
}

/* The peer's session is over: unregister, tell the owner (the closed
 * hook), log, and go lingering.  Safe to call in any state; only the
 * first call counts. */
void
conn_end_n(struct wsp_conn *c, uint16_t code, const char *reason,
    size_t reason_len)
{
	struct wsp_server *srv = c->srv;
	struct log_line *l;

	/* What its read staged, a close frame last, goes now: nothing
	 * follows it, so no evbuffer need hold it for the linger. */
	conn_stage_end(c);
	if (c->state == CONN_LINGER)
		return;
	c->state = CONN_LINGER;
	dq_remove(c);
	free(c->msg);
	c->msg = NULL;
	c->msg_len = c->msg_cap = 0;
	c->msg_open = 0;
	conn_mem_sync(c);
	free(c->head);
	c->head = NULL;
	if (c->registered) {
		registry_remove(&srv->reg, c);
		TAILQ_INSERT_TAIL(&srv->pending, c, link);
		srv->npending++;
		srv->total_closed++;
		metrics_closed(srv, code);
		if (c->opened) {
			c->opened = 0;
			srv->conn_hooks.closed(c, code);
		}
		if ((l = log_begin(WSP_LOG_INFO, "ws.close")) != NULL) {
			log_str(l, "conn", c->id);
			log_str(l, "ip", c->ip);
			if (c->user != NULL)
				log_str(l, "user", c->user);
			log_uint(l, "code", code);
			log_strn(l, "reason", reason, reason_len);
			log_uint(l, "duration_ms",
			    clock_mono_ms() - c->opened_mono);
			log_uint(l, "msgs_in", c->msgs_in);
			log_uint(l, "msgs_out", c->msgs_out);
			log_uint(l, "bytes_in", c->bytes_in);
			log_uint(l, "bytes_out", c->bytes_out);
			log_uint(l, "active", srv->reg.count);
			log_end(l);
		}
	}
	dq_push(&srv->dq_linger, c);
}

void
conn_end(struct wsp_conn *c, uint16_t code, const char *reason)
{
	if (reason == NULL)
		reason = "";
	conn_end_n(c, code, reason, strlen(reason));
}

static void
conn_frame_free(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)(uintptr_t)data);
}

/* Queue a frame, a large one in a block of exactly its size. */
static int
conn_queue(struct wsp_conn *c, const uint8_t *hdr, size_t hl,
    const void *data, size_t len)
{
	struct evbuffer_iovec v;
	uint8_t *p;

	if (conn_out(c) == NULL)
		return -1;
	/* One contiguous reservation: header and payload land together or
	 * not at all, for about a third of the instructions of an expand
	 * and two adds. */
	if (hl + len < CONN_EXACT_MIN) {
		if (evbuffer_reserve_space(c->out, (ev_ssize_t)(hl + len), &v,
		    1) != 1 || v.iov_len < hl + len)
			return -1;
		memcpy(v.iov_base, hdr, hl);
		if (len > 0)
			memcpy((uint8_t *)v.iov_base + hl, data, len);
		v.iov_len = hl + len;
		return evbuffer_commit_space(c->out, &v, 1);
	}
	if ((p = malloc(hl + len)) == NULL)
		return -1;
	memcpy(p, hdr, hl);
	memcpy(p + hl, data, len);
	if (evbuffer_add_reference(c->out, p, hl + len, conn_frame_free,
	    NULL) == -1) {
		free(p);
		return -1;
	}
	return 0;
}

/* The size of the server frame whose first have bytes are at h: its
 * header and payload, or 0 while the header is not all there. */
static size_t
conn_frame_len(const uint8_t *h, size_t have)
{
	uint64_t n;
	size_t i, hl;

	if (have < 2)
		return 0;
	n = h[1] & 0x7f;
	hl = n == 126 ? 4 : n == 127 ? 10 : 2;
	if (have < hl)
		return 0;
	if (hl > 2)
		for (n = 0, i = 2; i < hl; i++)
			n = n << 8 | h[i];
	return hl + (size_t)n;
}

/* The size of the frame at the start of c->out, which conn_send queued
 * whole: its header tells. */
static size_t
conn_next_frame(struct wsp_conn *c)
{
	uint8_t h[10];
	size_t have = c->out == NULL ||
	    evbuffer_copyout(c->out, h, sizeof(h)) < 0 ? 0 : conn_out_len(c);

	return conn_frame_len(h, have);
}

/*
 * Write what the socket takes now: 0, or -1 when the peer is gone.
 *
 * c->out_head follows the frame at the head of the output, so that the
 * output limit can leave it out and a shed can finish it before the close
 * frame.  A large head frame is written up to its end and no further, so
 * the next frame's header is read where it starts; smaller ones are
 * written together, and once a write crosses a frame's end unseen
 * (out_lost) the head is known again only when the output is empty.
 */
static int
conn_flush_out(struct wsp_conn *c)
{
	size_t before, sent, most;
	int n, rc = 0;

	while (conn_out_len(c) > 0) {
		before = conn_out_len(c);
		most = !c->out_lost && c->out_head_size >= CONN_EXACT_MIN ?
		    c->out_head : SIZE_MAX;
		n = conn_out_write(c, most);
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			rc = -1;
		sent = before - conn_out_len(c);
		if (conn_out_len(c) == 0) {
			c->out_head = c->out_head_size = 0;
			c->out_lost = 0;
		} else if (c->out_lost)
			;
		else if (sent < c->out_head)
			c->out_head -= sent;
		else if (sent == c->out_head)
			c->out_head = c->out_head_size = conn_next_frame(c);
		else {
			c->out_head = c->out_head_size = 0;
			c->out_lost = 1;
		}
		if (n <= 0)
			break;
	}
	return rc;
}

/* Drop what c will never get and end it from its own handler.  What is
 * left of a frame the peer has begun to take is kept, so the close frame
 * that follows is a frame (for a shed only up to CONN_KEEP_MAX bytes of
 * it); when that frame is cut short, or where it ends was lost, the peer
 * gets no close frame at all (conn_end_doomed), only the end of TCP. */
static void
conn_doom(struct wsp_conn *c, enum conn_doom why)
{
	size_t keep = c->out_lost || c->out == NULL ? 0 : c->out_head;
	struct evbuffer *rest;
	int begun;

	c->doomed = 1;
	c->doom = (uint8_t)why;
	/* What it keeps (the rest of a frame begun) stays counted, but it
	 * is never a victim again. */
	membudget_pin(&c->srv->mem, &c->mem);
	/* a head frame not begun is dropped with the rest */
	if (keep > 0 && keep == conn_next_frame(c))
		keep = 0;
	begun = c->out_lost || keep > 0;
	/* A shed is for memory: finishing a large frame would keep it. */
	if (why != CONN_DOOM_SLOW && keep > CONN_KEEP_MAX)
		keep = 0;
	/* Keep the first bytes: move them to a buffer of their own (the
	 * chains move, nothing is copied) and free the rest with the old. */
	if (keep > 0) {
		if ((rest = evbuffer_new()) != NULL &&
		    evbuffer_remove_buffer(c->out, rest, keep) == (int)keep) {
			evbuffer_free(c->out);
			c->out = rest;
		} else {
			if (rest != NULL)
				evbuffer_free(rest);
			keep = 0;
		}
	}
	if (c->out != NULL)
		evbuffer_drain(c->out, conn_out_len(c) - keep);
	c->out_head = keep;
	if (keep == 0)
		c->out_head_size = 0;
	c->out_lost = begun && keep == 0; /* a frame cut short: no close */
	c->flush_pending = 0;
	event_active(&c->ev, EV_WRITE, 1);
	conn_mem_sync(c);
}

/* After a write attempt: has the peer left more than max_output_buffer
 * untaken, beyond the frame being written? */
static int
conn_output_stalled(const struct wsp_conn *c)
{
	size_t len = conn_out_len(c);

	return (c->state == CONN_OPEN || c->state == CONN_CLOSING) &&
	    len > c->out_head &&
	    len - c->out_head > c->srv->cfg->max_output_buffer;
}

/* Shed c for max_buffer_memory: whichever of its output and its partial
 * message is larger names the reason. */
static void
conn_shed(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;
	size_t out = conn_out_len(c);
	int partial = c->msg_cap > out;
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_WARN, "ws.memory_shed")) != NULL) {
		log_str(l, "conn", c->id);
		log_str(l, "ip", c->ip);
		log_str(l, "reason", partial ? "partial" : "output");
		log_uint(l, "bytes", c->mem.bytes);
		log_uint(l, "used", srv->mem.used);
		log_uint(l, "limit", srv->mem.limit);
		log_end(l);
	}
	metrics_shed(srv, partial);
	free(c->msg);
	c->msg = NULL;
	c->msg_len = c->msg_cap = 0;
	c->msg_open = 0;
	conn_doom(c, partial ? CONN_DOOM_PARTIAL : CONN_DOOM_OUTPUT);
}

/* Count what c holds against max_buffer_memory; past it, shed the
 * heaviest, which may be c itself: callers check c->doomed. */
static void
conn_mem_sync(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;
	uint64_t held;

	if (!c->mem_tracked)
		return;
	held = conn_out_len(c) + c->msg_cap;
	/* A frame queued at its exact size is one block, freed only when
	 * all of it is written: what was sent of it is still held. */
	if (!c->out_lost && c->out_head_size >= CONN_EXACT_MIN)
		held += c->out_head_size - c->out_head;
	if (membudget_set(&srv->mem, &c->mem, held) == 0)
		return;
	conn_mem_shed(srv);
}

void
conn_mem_shed(struct wsp_server *srv)
{
	struct membudget_holder *h;

	if (srv->mem.shedding)
		return;
	srv->mem.shedding = 1;
	while ((h = membudget_victim(&srv->mem)) != NULL)
		conn_shed((struct wsp_conn *)(void *)((char *)h -
		    offsetof(struct wsp_conn, mem)));
	srv->mem.shedding = 0;
}

void
conn_mem_poll(struct wsp_server *srv)
{
	if (membudget_poll(&srv->mem) == -1)
		conn_mem_shed(srv);
}

/* len bytes of the stage, from its byte skip on, into c's empty
 * evbuffer; the head frame is the one byte skip falls in, and a 101 in
 * front (raw bytes) is a head of its own, as conn_upgrade queues it. */
static void
conn_stage_queue(struct wsp_conn *c, size_t skip, size_t len, size_t raw)
{
	const uint8_t *st = c->srv->stage;
	size_t pos = 0, f = raw;

	/* The stage holds whole frames only, so each header is there. */
	if (raw == 0 || raw <= skip) {
		pos = raw;
		while (pos + (f = conn_frame_len(st + pos, len - pos)) <= skip)
			pos += f;
	}
	if (conn_out(c) == NULL ||
	    evbuffer_add(c->out, st + skip, len - skip) == -1) {
		/* Out of memory: what is lost is replies, so c goes, with
		 * no close frame if a frame was cut. */
		c->out_lost = skip > pos;
		conn_doom(c, CONN_DOOM_OUTPUT);
		return;
	}
	c->out_head = pos + f - skip;
	c->out_head_size = f;
	c->out_lost = 0;
}

/* Leave the stage: what it holds for c goes to c's evbuffer. */
static void
conn_stage_spill(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;
	size_t len = srv->stage_len, raw = srv->stage_raw;

	srv->stage_conn = NULL;
	srv->stage_len = srv->stage_raw = 0;
	if (len > 0)
		conn_stage_queue(c, 0, len, raw);
}

/* c's read is over: write what it staged, queue what the socket did not
 * take.  A write error leaves everything queued, for conn_write's flush
 * to meet again and report. */
static void
conn_stage_end(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;
	size_t len = srv->stage_len, raw = srv->stage_raw;
	ssize_t n;

	if (srv->stage_conn != c)
		return;
	srv->stage_conn = NULL;
	srv->stage_len = srv->stage_raw = 0;
	/* Shed during its read (another's send can pick it): its unsent
	 * output goes, as conn_doom drops what is queued. */
	if (len == 0 || c->doomed)
		return;
	if ((n = write(c->fd, srv->stage, len)) < 0)
		n = 0;
	if ((size_t)n < len)
		conn_stage_queue(c, (size_t)n, len, raw);
}

int
conn_send(struct wsp_conn *c, uint8_t opcode, const void *data, size_t len)
{
	struct wsp_server *srv = c->srv;
	uint8_t hdr[WS_MAX_HEADER], rsv1 = 0;
	size_t hl, msg_len = len;
	const uint8_t *z;
	int was_empty, alone;

	if (c->doomed)
		return -1;
	if (c->state != CONN_OPEN &&
	    !(c->state == CONN_CLOSING && opcode == WS_OP_CLOSE))
		return -1;
	/* permessage-deflate seam: zstream.c compresses data messages at or
	 * above the threshold */
	if (c->zs != NULL && opcode <= WS_OP_BINARY && len >= c->zs->threshold &&
	    zstream_compress(c->srv, c->zs, data, len, &z, &len) == 1) {
		data = z;
		rsv1 = WS_RSV1;
	}
	hl = ws_frame_header(hdr, 1, opcode, len, NULL);
	hdr[0] |= rsv1;
	/* A keepalive ping to a connection with nothing queued, from the
	 * timer: staged like a reply and written at once, so an idle
	 * connection never needs an evbuffer. */
	alone = opcode == WS_OP_PING && !c->in_read && c->ssl == NULL &&
	    srv->stage_conn == NULL && conn_out_len(c) == 0;
	if (alone)
		srv->stage_conn = c;
	if (srv->stage_conn == c) {
		if (hl + len < CONN_EXACT_MIN &&
		    hl + len <= CONN_STAGE_SIZE - srv->stage_len &&
		    sizeof(hdr) <= CONN_STAGE_SIZE - srv->stage_len) {
			/* the whole of hdr, a fixed size copied without a
			 * call; what is past hl is written over or unused */
			memcpy(srv->stage + srv->stage_len, hdr, sizeof(hdr));
			if (len > 0) /* a bare ping or close passes NULL */
				memcpy(srv->stage + srv->stage_len + hl, data,
				    len);
			srv->stage_len += hl + len;
			c->bytes_out += hl + len;
			if (opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) {
				c->msgs_out++;
				metrics_message_out(srv, msg_len);
			}
			if (!alone)
				return 0;
			conn_stage_end(c);
			if (conn_out_len(c) == 0)
				return 0;
			goto queued; /* the socket did not take it all */
		}
		conn_stage_spill(c);
		if (c->doomed)
			return -1;
	}
	was_empty = conn_out_len(c) == 0;
	if (conn_queue(c, hdr, hl, data, len) == -1)
		return -1;
	if (was_empty)
		c->out_head = c->out_head_size = hl + len;
	c->bytes_out += hl + len;
	if (opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) {
		c->msgs_out++;
		metrics_message_out(c->srv, msg_len);
	}
	/* TLS waits for the handler: a record may be half written. */
	if (!c->in_read && c->ssl == NULL &&
	    conn_out_len(c) >= CONN_WRITE_NOW) {
		/* A peer gone shows again when the handler writes. */
		(void)conn_flush_out(c);
		if (conn_output_stalled(c)) {
			conn_doom(c, CONN_DOOM_SLOW);
			return -1;
		}
	}
queued:
	conn_mem_sync(c);
	if (c->doomed)
		return -1;
	conn_schedule_flush(c);
	return 0;
}

int
conn_send_text(struct wsp_conn *c, const char *data, size_t len)
{
	return conn_send(c, WS_OP_TEXT, data, len);
}

static void
conn_send_close(struct wsp_conn *c, uint16_t code, const char *reason,
    size_t reason_len)
{
	uint8_t body[WS_MAX_CONTROL] = { 0 };
	size_t n = 0;

	if (code != WS_CLOSE_NO_STATUS)
		n = ws_close_payload(body, code, reason, reason_len);
	conn_send(c, WS_OP_CLOSE, body, n);
}

/* Start the close handshake: our close frame now, the peer's answer
 * within the closing time (dq_closing). */
int
conn_close(struct wsp_conn *c, uint16_t code, const char *reason)
{
	if (c->state != CONN_OPEN)
		return -1;
	c->state = CONN_CLOSING;
	conn_send_close(c, code, reason, reason == NULL ? 0 : strlen(reason));
	c->close_code = code;
	/* Only for the log line, so out of memory just leaves it empty. */
	if (reason != NULL && *reason != '\0')
		c->close_reason = strndup(reason, WS_MAX_CONTROL - 2);
	dq_push(&c->srv->dq_closing, c);
	return 0;
}

/* Fail the WebSocket connection (RFC 6455 7.1.7) with a close frame. */
static void
conn_fail(struct wsp_conn *c, uint16_t code, const char *reason)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_WARN, "ws.error")) != NULL) {
		log_str(l, "conn", c->id);
		log_str(l, "ip", c->ip);
		log_uint(l, "code", code);
		log_str(l, "reason", reason);
		log_end(l);
	}
	if (c->state == CONN_OPEN) {
		c->state = CONN_CLOSING; /* allows the close frame out */
		conn_send_close(c, code, reason, strlen(reason));
	}
	conn_end(c, code, reason);
}

static int
conn_deliver(struct wsp_conn *c, uint8_t opcode, uint8_t *data, size_t len)
{
	c->msgs_in++;
	metrics_message_in(c->srv, len);
	c->srv->conn_hooks.message(c->srv, c, opcode, data, len);
	return 0;
}

/* The reassembled message is complete: detach it first (the plugin may
 * close c while holding it), then deliver. */
static void
conn_deliver_assembled(struct wsp_conn *c, uint8_t opcode)
{
	uint8_t *m = c->msg;
	size_t len = c->msg_len;

	c->msg = NULL;
	c->msg_len = c->msg_cap = 0;
	c->msg_open = 0;
	/* No longer counted while it is delivered: whatever the plugin's
	 * sends shed, it is not the sender for a buffer about to go. */
	conn_mem_sync(c);
	conn_deliver(c, opcode, m, len);
	free(m);
}

/* permessage-deflate seam: a compressed message is inflated by zstream.c
 * into the reassembly buffer, and delivered from there when it ends. */
static int
conn_on_compressed(struct wsp_conn *c, const struct ws_event *ev)
{
	/* the limit the connection was opened with, as the decoder's */
	struct zstream_msg zm = { &c->msg, &c->msg_len, &c->msg_cap,
	    c->dec.max_message, ev->opcode == WS_OP_TEXT };
	const char *why = NULL;
	int code;

	c->msg_open = 1;
	code = zstream_inflate(c->srv, c->zs, ev->data, ev->len, ev->fin, &zm,
	    &why);
	if (code != 0) {
		conn_fail(c, (uint16_t)code, why);
		return 0;
	}
	conn_mem_sync(c);
	if (c->doomed)
		return 0;
	if (ev->fin)
		conn_deliver_assembled(c, ev->opcode);
	return 0;
}

static int
conn_on_data(struct wsp_conn *c, const struct ws_event *ev)
{
	size_t need, cap;
	uint8_t *m;

	if (c->state != CONN_OPEN || c->doomed)
		return 0; /* after our close frame, data is discarded */
	if (ev->compressed)
		return conn_on_compressed(c, ev);
	if (ev->fin && !c->msg_open)
		return conn_deliver(c, ev->opcode, ev->data, ev->len);
	need = c->msg_len + ev->len;
	if (need > c->msg_cap) {
		cap = c->msg_cap == 0 ? 4096 : c->msg_cap;
		while (cap < need)
			cap *= 2;
		if ((m = realloc(c->msg, cap)) == NULL) {
			conn_fail(c, WSP_CLOSE_INTERNAL_ERROR, "out of memory");
			return 0;
		}
		c->msg = m;
		c->msg_cap = cap;
		conn_mem_sync(c);
		if (c->doomed)
			return 0; /* shed for it: the buffer is gone */
	}
	if (ev->len > 0)
		memcpy(c->msg + c->msg_len, ev->data, ev->len);
	c->msg_len += ev->len;
	c->msg_open = 1;
	if (ev->fin)
		conn_deliver_assembled(c, ev->opcode);
	return 0;
}

static void
conn_on_control(struct wsp_conn *c, const struct ws_event *ev)
{
	struct log_line *l;
	char reason[WS_MAX_CONTROL];
	size_t rlen;

	switch (ev->opcode) {
	case WS_OP_PING:
		if (c->state == CONN_OPEN)
			conn_send(c, WS_OP_PONG, ev->data, ev->len);
		break;
	case WS_OP_PONG:
		if (c->ping_sent != 0) {
			if ((l = log_begin(WSP_LOG_DEBUG, "ws.pong")) != NULL) {
				log_str(l, "conn", c->id);
				log_uint(l, "rtt_ms",
				    clock_mono_ms() - c->ping_sent);
				log_end(l);
			}
			c->ping_sent = 0;
			c->pings_missed = 0;
		}
		break;
	case WS_OP_CLOSE:
		rlen = ev->len >= 2 ? ev->len - 2 : 0;
		memcpy(reason, ev->len >= 2 ? ev->data + 2 : ev->data, rlen);
		reason[rlen] = '\0';
		if (c->state == CONN_OPEN) {
			/* Echo the peer's code and reason, then we close TCP
			 * first, as RFC 6455 7.1.1 asks of a server. */
			c->state = CONN_CLOSING;
			if (ev->close_code == WS_CLOSE_NO_STATUS)
				conn_send(c, WS_OP_CLOSE, NULL, 0);
			else
				conn_send_close(c, ev->close_code, reason, rlen);
			conn_end_n(c, ev->close_code, reason, rlen);
		} else
			conn_end(c, c->close_code, conn_str(c->close_reason));
		break;
	}
}

static int
conn_feed(struct wsp_conn *c, uint8_t *buf, size_t len)
{
	struct ws_event ev;
	size_t used;

	/* Until NONE rather than until len is 0: the call after a control
	 * frame split across reads frees the decoder's copy of it, which an
	 * idle connection should not keep. */
	do {
		used = ws_decode(&c->dec, buf, len, &ev);
		buf += used;
		len -= used;
		switch (ev.kind) {
		case WS_EV_NONE:
			break;
		case WS_EV_DATA:
			conn_on_data(c, &ev);
			break;
		case WS_EV_CONTROL:
			conn_on_control(c, &ev);
			break;
		case WS_EV_ERROR:
			conn_fail(c, ev.close_code, ev.reason);
			return 0;
		}
	} while (ev.kind != WS_EV_NONE &&
	    (c->state == CONN_OPEN || c->state == CONN_CLOSING));
	return 0;
}

static int
conn_read_frames(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;
	ssize_t n;

	n = conn_recv(c, srv->rbuf, srv->rbuf_size);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		conn_end(c, WS_CLOSE_ABNORMAL,
		    n == 0 ? "connection closed without close frame" :
		    strerror(errno));
		return -1;
	}
	c->bytes_in += (size_t)n;
	c->last_activity = clock_mono_ms();
	c->last_activity_ms = clock_wall_ms();
	return conn_feed(c, srv->rbuf, (size_t)n);
}

/* Lingering: discard what the peer still sends until its EOF. */
static int
conn_read_discard(struct wsp_conn *c)
{
	ssize_t n;

	n = read(c->fd, c->srv->rbuf, c->srv->rbuf_size);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	return n <= 0 ? -1 : 0;
}

/* A doomed connection: its close frame, and the end. */
static void
conn_end_doomed(struct wsp_conn *c)
{
	static const char *const why[] = {
		[CONN_DOOM_SLOW] = "output buffer limit exceeded",
		[CONN_DOOM_OUTPUT] = "memory budget exceeded",
		[CONN_DOOM_PARTIAL] = "message too big for the memory budget",
	};
	uint16_t code = c->doom == CONN_DOOM_PARTIAL ? WSP_CLOSE_TOO_BIG :
	    WSP_CLOSE_POLICY;
	const char *reason = why[c->doom];
	struct log_line *l;

	if (c->doom == CONN_DOOM_SLOW &&
	    (l = log_begin(WSP_LOG_WARN, "ws.slow_consumer")) != NULL) {
		log_str(l, "conn", c->id);
		log_str(l, "ip", c->ip);
		log_uint(l, "limit", c->srv->cfg->max_output_buffer);
		log_end(l);
	}
	/* What it never read is dropped; the close frame is all that is
	 * queued, and the linger timeout bounds the wait for it. */
	c->doomed = 0;
	if (c->state == CONN_OPEN) {
		c->state = CONN_CLOSING;
		if (!c->out_lost)
			conn_send_close(c, code, reason, strlen(reason));
	}
	conn_end(c, code, reason);
}

/* Write what is queued, judge what the peer left; -1 when it is gone. */
static int
conn_write(struct wsp_conn *c)
{
	if (conn_flush_out(c) == -1)
		return -1;
	if (!c->doomed && conn_output_stalled(c))
		conn_doom(c, CONN_DOOM_SLOW);
	if (c->doomed) {
		conn_end_doomed(c);
		if (conn_flush_out(c) == -1)
			return -1;
	}
	conn_mem_sync(c);
	if (conn_out_len(c) > 0)
		return conn_set_events(c, 1);
	if (c->state == CONN_LINGER && !c->shut_wr) {
		tls_close_notify(c);
		shutdown(c->fd, SHUT_WR);
		c->shut_wr = 1;
	}
	return conn_set_events(c, 0);
}

static void
conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_conn *c = arg;
	int rc = 0;

	(void)fd;
	c->flush_pending = 0;
	if (c->upgrade_ready && c->state == CONN_HANDSHAKE) {
		c->in_read = 1;
		rc = conn_upgrade_answered(c);
		conn_stage_end(c);
		c->in_read = 0;
		if (rc == -1)
			goto gone;
		what &= ~EV_READ;
	}
	/* A TLS read that waited for writability is retried on it. */
	if ((what & EV_READ) || (c->tls_wants_write && (what & EV_WRITE))) {
		c->in_read = 1;
		switch (c->state) {
		case CONN_HANDSHAKE:
			rc = conn_read_head(c);
			conn_stage_end(c); /* the 101, from conn_upgrade */
			break;
		case CONN_OPEN:
		case CONN_CLOSING:
			if (c->ssl == NULL && conn_out_len(c) == 0)
				c->srv->stage_conn = c;
			rc = conn_read_frames(c);
			/* After an end (rc -1 too) conn_end_n emptied it. */
			conn_stage_end(c);
			break;
		case CONN_LINGER:
			rc = conn_read_discard(c);
			break;
		}
		c->in_read = 0;
		if (rc == -1)
			goto gone;
	}
	if (conn_write(c) == -1) {
		conn_end(c, WS_CLOSE_ABNORMAL, strerror(errno));
		goto gone;
	}
	return;
gone:
	conn_free(c);
}

void
conn_ping(struct wsp_conn *c)
{
	struct log_line *l;
	uint64_t now = clock_mono_ms();

	if (c->state != CONN_OPEN)
		return;
	if (c->ping_sent != 0) {
		c->pings_missed++;
		if ((l = log_begin(WSP_LOG_INFO, "ws.ping_missed")) != NULL) {
			log_str(l, "conn", c->id);
			log_str(l, "ip", c->ip);
			log_uint(l, "missed", c->pings_missed);
			log_uint(l, "idle_ms", now - c->last_activity);
			log_end(l);
		}
	} else
		c->ping_sent = now;
	if ((l = log_begin(WSP_LOG_DEBUG, "ws.ping")) != NULL) {
		log_str(l, "conn", c->id);
		log_end(l);
	}
	metrics_ping(c->srv);
	conn_send(c, WS_OP_PING, NULL, 0);
}

void
conn_expire_ping(struct wsp_conn *c)
{
	conn_ping(c);
	if (c->state == CONN_OPEN)
		dq_push(&c->srv->dq_ping, c);
}

void
conn_expire_handshake(struct wsp_conn *c)
{
	conn_refuse(c, 408, "handshake_timeout", "handshake timed out");
}

/* Our close frame went unanswered: no more waiting, not even a linger. */
void
conn_expire_closing(struct wsp_conn *c)
{
	conn_end(c, c->close_code, "close handshake timed out");
	conn_free(c);
}

void
conn_expire_linger(struct wsp_conn *c)
{
	conn_free(c);
}

/* The sweep found c silent past idle_timeout: the peer is presumed dead,
 * so there is no close handshake to wait for. */
void
conn_reap(struct wsp_conn *c, uint64_t idle_ms)
{
	struct log_line *l;

	c->srv->total_reaped++;
	metrics_reaped(c->srv);
	if ((l = log_begin(WSP_LOG_INFO, "ws.reap")) != NULL) {
		log_str(l, "conn", c->id);
		log_str(l, "ip", c->ip);
		log_uint(l, "idle_ms", idle_ms);
		log_uint(l, "pings_missed", c->pings_missed);
		log_end(l);
	}
	if (c->state == CONN_OPEN) {
		c->state = CONN_CLOSING;
		conn_send_close(c, WSP_CLOSE_GOING_AWAY, "idle timeout", 12);
		conn_out_write(c, SIZE_MAX); /* one try, never wait */
	}
	conn_end(c, WSP_CLOSE_GOING_AWAY, "idle timeout");
	conn_free(c);
}

/* What every end of a connection frees, once it has left the registry or
 * the pending list: its places, its deadlines, its descriptor and memory. */
static void
conn_destroy(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;

	if (srv->stage_conn == c) { /* not reached: its read ends first */
		srv->stage_conn = NULL;
		srv->stage_len = srv->stage_raw = 0;
	}
	membudget_set(&srv->mem, &c->mem, 0);
	c->mem_tracked = 0;
	admit_release(c); /* the one place the limits' counts go down */
	dq_remove(c);
	if (event_initialized(&c->ev))
		event_del(&c->ev);
	if (c->out != NULL)
		evbuffer_free(c->out);
	tls_conn_free(c);
	close(c->fd);
	ws_decoder_fini(&c->dec);
	free(c->head);
	free(c->msg);
	free(c->user_agent);
	free(c->origin);
	conn_path_unref(c->path);
	free(c->subprotocol);
	free(c->close_reason);
	free(c->user);
	attrs_free(c);
	zstream_conn_free(srv, c->zs);
	free(c);
}

void
conn_free(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;

	if (c->registered)
		conn_end(c, WS_CLOSE_ABNORMAL, "connection dropped");
	conn_leave_handshake(c);
	TAILQ_REMOVE(&srv->pending, c, link);
	srv->npending--;
	conn_destroy(c);
	srv->conn_hooks.gone(srv);
}

/*
 * Hand-over (handover.c).  A connection another process served arrives as
 * a descriptor: conn_adopt makes it an open connection with no event
 * registered yet (its owner fills in the state it was sent), so that
 * nothing is read or written before the old process has let go;
 * conn_adopt_start then serves it.  conn_release is the old process's
 * side: the connection now lives elsewhere, so it leaves without a close
 * frame, a shutdown(2), a log line or a plugin's close: only our copy of
 * the descriptor and our memory go.
 */
struct wsp_conn *
conn_adopt(struct wsp_server *srv, int fd, const char *path, size_t path_len)
{
	struct http_str target = { path, path_len };
	struct wsp_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->srv = srv;
	c->fd = fd;
	c->state = CONN_OPEN;
	if (path != NULL && (c->path = conn_path_get(srv, &target)) == NULL) {
		free(c);
		return NULL;
	}
	event_assign(&c->ev, srv->base, fd, EV_READ | EV_PERSIST,
	    conn_event_cb, c);
	/* Until conn_adopt_start: what a plugin's adopt queues waits. */
	c->in_read = 1;
	return c;
}

/* c was filled in and registered: serve it, writing what it carries. */
int
conn_adopt_start(struct wsp_conn *c)
{
	c->in_read = 0;
	if (event_add(&c->ev, NULL) == -1)
		return -1;
	if (c->registered) { /* its output counts as an opened one's */
		c->mem_tracked = 1;
		conn_mem_sync(c);
	}
	if (conn_out_len(c) > 0 || c->doomed)
		conn_schedule_flush(c);
	return 0;
}

/* A connection adopted but never started (the hand-over was called off):
 * freed without a trace, as conn_release. */
void
conn_release(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;

	if (c->registered)
		registry_remove(&srv->reg, c);
	else {
		conn_leave_handshake(c);
		TAILQ_REMOVE(&srv->pending, c, link);
		srv->npending--;
	}
	conn_destroy(c);
}

void
conn_info(const struct wsp_conn *c, struct wsp_conn_info *info)
{
	info->id = c->id;
	info->ip = c->ip;
	info->port = c->port;
	info->user_agent = conn_str(c->user_agent);
	info->origin = conn_str(c->origin);
	info->path = c->path != NULL ? c->path->s : "";
	info->subprotocol = conn_str(c->subprotocol);
	info->connected_at_ms = c->connected_at_ms;
	info->last_activity_ms = c->last_activity_ms;
	info->msgs_in = c->msgs_in;
	info->msgs_out = c->msgs_out;
	info->bytes_in = c->bytes_in;
	info->bytes_out = c->bytes_out;
	info->user = conn_str(c->user);
}
