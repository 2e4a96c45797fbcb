/*
 * admin.c: the admin listener, for the operator and the monitoring.
 *
 *   GET /healthz      200 "ok" while serving, 503 "draining" once shutdown
 *                     began (a load balancer stops sending clients here);
 *                     with workers > 1, "ok: N of M workers alive"
 *   GET /metrics      the counters in the Prometheus text format (metrics.c)
 *   GET /connections  the registry as JSON, at most ?limit=N (default 100,
 *                     at most 10000) entries, so 100,000 connections never
 *                     make an unbounded response; with workers > 1 every
 *                     worker's, oldest first, each entry naming its worker
 *
 * With workers > 1 the worker serving this listener asks the others for
 * their connections through its master (srv->conns_gather, workers.c) and
 * answers once every one has, or after a second without the silent ones,
 * which the answer names as "missing": a stopped worker delays the page,
 * it does not hang it.  Each worker sends at most limit entries and
 * ADMIN_LINES_MAX bytes, so the answer is bounded by workers times that.
 *
 * HTTP is libevent's evhttp on the daemon's own event loop, so a handler
 * reads the server's state between two events with no locking.  HEAD is
 * answered like GET (without the body); any other method gets 405, any
 * other path 404.  The listener is on loopback unless configured
 * otherwise, because /connections shows client addresses and user agents.
 *
 * Hostile clients are bounded three ways.  At most [admin] max_connections
 * are open: at the cap the sockets stop accepting and further clients wait
 * in the kernel's queue.  Each connection has an absolute deadline,
 * [admin] timeout from its accept, which bytes arriving do not extend
 * (evhttp's own timeout restarts with each read; it stays, as the idle
 * limit).  evhttp 2.1 has neither a cap nor a hook per connection, so a
 * connection is seen through the bufferevent evhttp asks us for
 * (evhttp_set_bevcb), held by a reference until, one loop turn later,
 * evhttp has made it a connection we can watch close.  And a request is
 * answered only when its Host names the address it came to (or localhost
 * on loopback, or an [admin] allowed_hosts entry): a browser page whose
 * name was rebound to 127.0.0.1 sends its own name, and gets 421.
 *
 * The sockets are made here rather than by evhttp_bind_socket so that a
 * failed bind names its address and configuration line, IPv6 sockets are
 * IPV6_V6ONLY like the WebSocket listeners, and port 0 logs the port the
 * kernel chose (admin.start addr=...), which is how the tests find it.
 *
 * On reload the addresses the new configuration adds are bound first and
 * those it drops are closed only once the reload succeeded: a failed bind
 * fails the whole reload and the running listener is untouched.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "wsplugd.h"

#define ADMIN_BACKLOG 64
#define ADMIN_MAX_HEADERS (8 * 1024) /* bytes of a request head */
#define ADMIN_MAX_BODY 1024         /* no endpoint reads a body */
#define CONNECTIONS_DEFAULT 100
#define CONNECTIONS_MAX 10000

#define TYPE_TEXT "text/plain; charset=utf-8"
#define TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define TYPE_JSON "application/json"

struct admin_sock {
	TAILQ_ENTRY(admin_sock) entry;
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage conf; /* as configured: reload matches it */
	socklen_t conf_len;
	char addr[64]; /* bound address, with the kernel's port */
};
TAILQ_HEAD(admin_socks, admin_sock);

/* One connection, from the bufferevent evhttp asked for to its close. */
struct admin_conn {
	TAILQ_ENTRY(admin_conn) entry;
	struct admin *ad;
	struct bufferevent *bev; /* referenced until evcon is known */
	struct evhttp_connection *evcon;
	struct event *timer; /* first at once (find evcon), then the deadline */
};
TAILQ_HEAD(admin_conns, admin_conn);

/* A /connections request waiting for the other workers. */
struct admin_wait {
	TAILQ_ENTRY(admin_wait) entry;
	struct admin *ad;
	struct evhttp_request *req;
	struct evhttp_connection *evcon; /* closing it cancels the wait */
	uint64_t limit;
};
TAILQ_HEAD(admin_waits, admin_wait);

struct admin {
	struct wsp_server *srv;
	struct admin_waits waits;
	struct evhttp *http;
	struct admin_socks socks;  /* serving, committed */
	struct admin_socks staged; /* bound by a reload not yet committed */
	struct event *resume;      /* after an accept error */
	int paused;
	struct admin_conns conns;
	size_t nconns;
};

/* evhttp owns the listeners and gives their error callback its own
 * pointer, not ours: the one admin listener of the process is found
 * here. */
static struct admin *admin_running;

/*
 * Replies.
 */

static void
admin_log(struct evhttp_request *req, const char *path, int status)
{
	static const char *const methods[] = { "GET", "POST", "HEAD", "PUT",
	    "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH" };
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	unsigned cmd = (unsigned)evhttp_request_get_command(req);
	const char *method = "?";
	struct log_line *l;
	char *ip = NULL;
	ev_uint16_t port = 0;
	size_t i;

	if ((l = log_begin(WSP_LOG_DEBUG, "admin.request")) == NULL)
		return;
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (cmd == 1u << i)
			method = methods[i];
	if (evcon != NULL)
		evhttp_connection_get_peer(evcon, &ip, &port);
	log_str(l, "method", method);
	log_str(l, "path", path);
	log_int(l, "status", status);
	log_str(l, "ip", ip);
	log_end(l);
}

/* Send what the handler wrote into the request's output buffer. */
static void
admin_send(struct evhttp_request *req, const char *path, int status,
    const char *type)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	admin_log(req, path, status);
	evhttp_send_reply(req, status, http_status_text(status), NULL);
}

static void
admin_text(struct evhttp_request *req, const char *path, int status,
    const char *text)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add_printf(out, "%s\n", text);
	admin_send(req, path, status, TYPE_TEXT);
}

/*
 * /healthz and /metrics
 */

static void
admin_healthz(struct admin *ad, struct evhttp_request *req, const char *path,
    const char *query)
{
	struct metrics_snap snap;
	char text[64];

	(void)query;
	if (ad->srv->draining)
		admin_text(req, path, 503, "draining");
	else if (ad->srv->metrics_sum != NULL) { /* workers > 1 */
		memset(&snap, 0, sizeof(snap));
		ad->srv->metrics_sum(ad->srv, &snap);
		snprintf(text, sizeof(text), "ok: %llu of %llu workers alive",
		    (unsigned long long)snap.workers_alive,
		    (unsigned long long)snap.workers);
		admin_text(req, path, 200, text);
	} else
		admin_text(req, path, 200, "ok");
}

static void
admin_metrics(struct admin *ad, struct evhttp_request *req, const char *path,
    const char *query)
{
	(void)query; /* scrapers may add parameters; there is one view */
	if (metrics_render(ad->srv, evhttp_request_get_output_buffer(req)) ==
	    -1) {
		admin_text(req, path, 500, "out of memory");
		return;
	}
	admin_send(req, path, 200, TYPE_METRICS);
}

/*
 * /connections
 */

/* A JSON string, or null for NULL.  User agents are whatever the client
 * sent, cut to a byte length: invalid UTF-8 becomes U+FFFD and a
 * character cut short at the end is dropped, so the document parses. */
static void
json_str(struct evbuffer *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;
	int k;

	if (s == NULL) {
		evbuffer_add(b, "null", 4);
		return;
	}
	evbuffer_add(b, "\"", 1);
	for (n = strlen(s); n > 0; p += k, n -= (size_t)k) {
		k = 1;
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			evbuffer_add_printf(b, "\\u%04x", *p);
		else if (*p < 0x80)
			evbuffer_add(b, p, 1);
		else if ((k = utf8_char_len(p, n)) < 0)
			break;
		else if (k == 0) {
			evbuffer_add(b, "\\ufffd", 6);
			k = 1;
		} else
			evbuffer_add(b, p, (size_t)k);
	}
	evbuffer_add(b, "\"", 1);
}

static void
json_conn(struct evbuffer *b, const struct wsp_conn *c)
{
	evbuffer_add(b, "{\"id\":", 6);
	json_str(b, c->id);
	evbuffer_add(b, ",\"ip\":", 6);
	json_str(b, c->ip);
	evbuffer_add_printf(b, ",\"port\":%u,\"user_agent\":", c->port);
	json_str(b, c->user_agent);
	evbuffer_add(b, ",\"origin\":", 10);
	json_str(b, c->origin);
	evbuffer_add(b, ",\"path\":", 8);
	json_str(b, c->path != NULL ? c->path->s : NULL);
	evbuffer_add(b, ",\"subprotocol\":", 15);
	json_str(b, c->subprotocol);
	evbuffer_add(b, ",\"user\":", 8);
	json_str(b, c->user);
	evbuffer_add(b, ",\"tls\":", 7);
	json_str(b, tls_version(c));
	evbuffer_add(b, ",\"cipher\":", 10);
	json_str(b, tls_cipher(c));
	evbuffer_add_printf(b, ",\"connected_at_ms\":%lld,"
	    "\"last_activity_ms\":%lld,\"msgs_in\":%llu,\"msgs_out\":%llu,"
	    "\"bytes_in\":%llu,\"bytes_out\":%llu}",
	    (long long)c->connected_at_ms, (long long)c->last_activity_ms,
	    (unsigned long long)c->msgs_in, (unsigned long long)c->msgs_out,
	    (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out);
}

/* ?limit=N, the only parameter; 0 or -1 with *why_r set. */
static int
connections_limit(const char *query, uint64_t *limit_r, const char **why_r)
{
	struct evkeyvalq kv;
	struct evkeyval *e;
	int seen = 0, rv = 0;

	*limit_r = CONNECTIONS_DEFAULT;
	if (query == NULL || *query == '\0')
		return 0;
	TAILQ_INIT(&kv);
	if (evhttp_parse_query_str(query, &kv) == -1) {
		*why_r = "malformed query string";
		return -1;
	}
	TAILQ_FOREACH(e, &kv, next) {
		if (strcmp(e->key, "limit") != 0) {
			*why_r = "unknown parameter (the only one is limit)";
			rv = -1;
		} else if (seen++) {
			*why_r = "limit given twice";
			rv = -1;
		} else if (config_parse_uint(e->value, CONNECTIONS_MAX,
		    limit_r) == -1) {
			*why_r = "limit must be an integer from 0 to 10000";
			rv = -1;
		}
		if (rv == -1)
			break;
	}
	evhttp_clear_headers(&kv);
	return rv;
}

size_t
admin_conns_lines(struct wsp_server *srv, uint64_t limit,
    struct evbuffer *out)
{
	const struct wsp_conn *c;
	size_t n = 0, start = evbuffer_get_length(out);

	TAILQ_FOREACH(c, &srv->reg.conns, link) {
		if (n == limit ||
		    evbuffer_get_length(out) - start >= ADMIN_LINES_MAX)
			break;
		evbuffer_add_printf(out, "%lld ", (long long)c->connected_at_ms);
		json_conn(out, c);
		evbuffer_add(out, "\n", 1);
		n++;
	}
	return n;
}

/* The leading connected_at_ms of a part's next line. */
static long long
part_ms(const struct conns_part *p, size_t at)
{
	long long v = 0;

	for (; at < p->len && p->lines[at] >= '0' && p->lines[at] <= '9'; at++)
		v = v * 10 + (p->lines[at] - '0');
	return v;
}

/* The workers' parts merged oldest first, each entry given "worker". */
static void
admin_conns_done(void *arg, const struct conns_part *parts, size_t n)
{
	struct admin_wait *w = arg;
	struct evhttp_request *req = w->req;
	struct evbuffer *b;
	uint64_t active = 0, listed = 0;
	size_t *at, i, best;
	const char *line, *sp, *nl;
	int missing = 0;

	TAILQ_REMOVE(&w->ad->waits, w, entry);
	if ((at = calloc(n + 1, sizeof(*at))) == NULL) {
		admin_text(req, "/connections", 500, "out of memory");
		free(w);
		return;
	}
	b = evhttp_request_get_output_buffer(req);
	for (i = 0; i < n; i++)
		active += parts[i].answered ? parts[i].active : 0;
	evbuffer_add_printf(b, "{\"active\":%llu,\"workers\":%zu,"
	    "\"missing\":[", (unsigned long long)active, n);
	for (i = 0; i < n; i++)
		if (!parts[i].answered)
			evbuffer_add_printf(b, "%s%d", missing++ ? "," : "",
			    parts[i].worker);
	evbuffer_add(b, "],\"connections\":[", 17);
	while (listed < w->limit) {
		best = n;
		for (i = 0; i < n; i++)
			if (parts[i].answered && at[i] < parts[i].len &&
			    (best == n || part_ms(&parts[i], at[i]) <
			    part_ms(&parts[best], at[best])))
				best = i;
		if (best == n)
			break;
		line = parts[best].lines + at[best];
		nl = memchr(line, '\n', parts[best].len - at[best]);
		sp = memchr(line, ' ', parts[best].len - at[best]);
		if (nl == NULL || sp == NULL || sp > nl || sp[1] != '{') {
			at[best] = parts[best].len; /* cannot be: both ours */
			continue;
		}
		evbuffer_add_printf(b, "%s{\"worker\":%d,", listed++ ? "," : "",
		    parts[best].worker);
		evbuffer_add(b, sp + 2, (size_t)(nl - sp - 2));
		at[best] = (size_t)(nl - parts[best].lines) + 1;
	}
	evbuffer_add_printf(b, "],\"truncated\":%s}\n",
	    active > listed || missing > 0 ? "true" : "false");
	free(at);
	admin_send(req, "/connections", 200, TYPE_JSON);
	free(w);
}

/* The client went away (or timed out) before the workers answered. */
static void
admin_waits_cancel(struct admin *ad, struct evhttp_connection *evcon)
{
	struct admin_wait *w, *next;

	TAILQ_FOREACH_SAFE(w, &ad->waits, entry, next)
		if (evcon == NULL || w->evcon == evcon) {
			TAILQ_REMOVE(&ad->waits, w, entry);
			ad->srv->conns_cancel(ad->srv, w);
			free(w);
		}
}

/* Oldest first, as the registry keeps them: O(limit), not O(active). */
static void
admin_connections(struct admin *ad, struct evhttp_request *req,
    const char *path, const char *query)
{
	struct evbuffer *b = evhttp_request_get_output_buffer(req);
	struct wsp_server *srv = ad->srv;
	const struct wsp_conn *c;
	const char *why = NULL;
	uint64_t limit, n = 0;
	struct admin_wait *w;

	if (connections_limit(query, &limit, &why) == -1) {
		admin_text(req, path, 400, why);
		return;
	}
	if (srv->conns_gather != NULL) { /* workers > 1 */
		if ((w = calloc(1, sizeof(*w))) == NULL) {
			admin_text(req, path, 500, "out of memory");
			return;
		}
		w->ad = ad;
		w->req = req;
		w->evcon = evhttp_request_get_connection(req);
		w->limit = limit;
		TAILQ_INSERT_TAIL(&ad->waits, w, entry);
		if (srv->conns_gather(srv, limit, admin_conns_done, w) == -1) {
			TAILQ_REMOVE(&ad->waits, w, entry);
			free(w);
			admin_text(req, path, 500, "out of memory");
		}
		return;
	}
	evbuffer_add_printf(b, "{\"active\":%zu,\"connections\":[",
	    srv->reg.count);
	TAILQ_FOREACH(c, &srv->reg.conns, link) {
		if (n == limit)
			break;
		if (n++ > 0)
			evbuffer_add(b, ",", 1);
		json_conn(b, c);
	}
	evbuffer_add_printf(b, "],\"truncated\":%s}\n",
	    srv->reg.count > n ? "true" : "false");
	admin_send(req, path, 200, TYPE_JSON);
}

/*
 * Routing
 */

static const struct admin_route {
	const char *path;
	void (*fn)(struct admin *, struct evhttp_request *, const char *,
	    const char *);
} admin_routes[] = {
	{ "/healthz", admin_healthz },
	{ "/metrics", admin_metrics },
	{ "/connections", admin_connections },
};

/* ASCII only: a locale a plugin set must not change the answer. */
static int
admin_host_eq(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i;
	unsigned char x, y;

	if (an != bn)
		return 0;
	for (i = 0; i < an; i++) {
		x = (unsigned char)a[i];
		y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x += 'a' - 'A';
		if (y >= 'A' && y <= 'Z')
			y += 'a' - 'A';
		if (x != y)
			return 0;
	}
	return 1;
}

/* Length of the host part of a Host value: up to the port's colon. */
static size_t
admin_host_len(const char *h)
{
	const char *e;

	if (*h == '[')
		return (e = strchr(h, ']')) != NULL ? (size_t)(e - h) + 1 :
		    strlen(h);
	return (e = strchr(h, ':')) != NULL ? (size_t)(e - h) : strlen(h);
}

static int
admin_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)ss)->
		    sin_addr.s_addr) >> 24) == 127;
	return ss->ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(
	    &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr);
}

/*
 * Does Host name this listener?  The address the client connected to
 * (so a wildcard listen address works), localhost with that port on
 * loopback, or an [admin] allowed_hosts entry: with a port, exactly; without,
 * on any port.
 */
static int
admin_host_allowed(struct admin *ad, struct evhttp_request *req)
{
	const struct wsp_config *cfg = ad->srv->cfg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const char *host, *a, *port;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char local[64];
	size_t i, n, hn;
	int fd = -1;

	host = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Host");
	if (host == NULL)
		return 0;
	n = strlen(host);
	hn = admin_host_len(host);
	if (evcon != NULL)
		fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
	if (fd != -1 && getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0) {
		listen_format_addr((struct sockaddr *)&ss, local, sizeof(local));
		if (admin_host_eq(host, n, local, strlen(local)))
			return 1;
		port = strrchr(local, ':');
		if (admin_is_loopback(&ss) && port != NULL &&
		    admin_host_eq(host, hn, "localhost", 9) &&
		    strcmp(host + hn, port) == 0)
			return 1;
	}
	for (i = 0; i < cfg->nadmin_hosts; i++) {
		a = cfg->admin_hosts[i];
		if (admin_host_eq(host, n, a, strlen(a)) ||
		    (admin_host_len(a) == strlen(a) &&
		    admin_host_eq(host, hn, a, strlen(a))))
			return 1;
	}
	return 0;
}

static void
admin_request_cb(struct evhttp_request *req, void *arg)
{
	struct admin *ad = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	size_t i;

	if (path == NULL || *path == '\0')
		path = "/";
	/* Before anything else: a page of another site learns nothing,
	 * not even which paths exist. */
	if (!admin_host_allowed(ad, req)) {
		admin_text(req, path, 421, "the Host header does not name this "
		    "listener (see [admin] allowed_hosts)");
		return;
	}
	for (i = 0; i < sizeof(admin_routes) / sizeof(admin_routes[0]); i++)
		if (strcmp(path, admin_routes[i].path) == 0)
			break;
	if (i == sizeof(admin_routes) / sizeof(admin_routes[0])) {
		admin_text(req, path, 404, "not found (try /healthz, /metrics "
		    "or /connections)");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		admin_text(req, path, 405, "method not allowed (GET or HEAD)");
		return;
	}
	admin_routes[i].fn(ad, req, path,
	    uri != NULL ? evhttp_uri_get_query(uri) : NULL);
}

/*
 * Sockets
 */

static void
admin_bind_error(struct wsp_errors *errs, const struct wsp_config *cfg,
    const struct wsp_listen_addr *a, int err)
{
	/* The default address has no line: say where it came from. */
	errors_add(errs, cfg->file, a->line, "[admin] listen %s: %s%s%s",
	    a->text, strerror(err), privdrop_hint(err), a->line != 0 ? "" :
	    " (the default; set [admin] listen to another address, or empty "
	    "to turn it off)");
}

/*
 * Accepting
 */

static struct evconnlistener *
admin_lev(const struct admin_sock *s)
{
	return evhttp_bound_socket_get_listener(s->bound);
}

/* Accept on every socket unless resting after an accept error or at the
 * cap. */
static void
admin_listening(struct admin *ad)
{
	struct admin_socks *lists[] = { &ad->socks, &ad->staged };
	struct admin_sock *s;
	size_t i;
	int off = ad->paused ||
	    ad->nconns >= ad->srv->cfg->admin_max_connections;

	for (i = 0; i < nitems(lists); i++)
		TAILQ_FOREACH(s, lists[i], entry) {
			if (off)
				evconnlistener_disable(admin_lev(s));
			else
				evconnlistener_enable(admin_lev(s));
		}
}

static void
admin_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *ad = arg;

	(void)fd;
	(void)what;
	ad->paused = 0;
	admin_listening(ad);
}

/* As the WebSocket listeners do (fdlimit.c): answer, log, rest. */
static void
admin_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct timeval tv = { 0, FDLIMIT_PAUSE_MS * 1000 };
	struct admin *ad = admin_running;
	int err = EVUTIL_SOCKET_ERROR();
	const char *addr = "admin";
	struct admin_sock *s;

	(void)arg;
	TAILQ_FOREACH(s, &ad->socks, entry)
		if (admin_lev(s) == lev)
			addr = s->addr;
	TAILQ_FOREACH(s, &ad->staged, entry)
		if (admin_lev(s) == lev)
			addr = s->addr;
	fdlimit_accept_error(evconnlistener_get_fd(lev), addr, err);
	ad->paused = 1;
	admin_listening(ad);
	event_add(ad->resume, &tv);
}

/*
 * Connections
 */

static void
admin_conn_free(struct admin_conn *ac)
{
	struct admin *ad = ac->ad;

	TAILQ_REMOVE(&ad->conns, ac, entry);
	ad->nconns--;
	if (ac->bev != NULL)
		bufferevent_decref(ac->bev);
	event_free(ac->timer);
	free(ac);
	admin_listening(ad);
}

static void
admin_conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct admin_conn *ac = arg;

	evhttp_connection_set_closecb(evcon, NULL, NULL);
	admin_waits_cancel(ac->ad, evcon);
	admin_conn_free(ac);
}

static void
admin_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin_conn *ac = arg;
	struct evhttp_connection *evcon = ac->evcon;
	struct timeval tv;
	struct log_line *l;
	uint64_t ms = ac->ad->srv->cfg->admin_timeout;
	void *cbarg;
	bufferevent_event_cb errorcb;
	char *ip = NULL;
	ev_uint16_t port = 0;

	(void)fd;
	(void)what;
	if (evcon == NULL) {
		/* The turn after the accept: evhttp has made its connection
		 * out of our bufferevent, which names it as the callbacks'
		 * argument; none means evhttp already gave up on it. */
		bufferevent_getcb(ac->bev, NULL, NULL, &errorcb, &cbarg);
		if (errorcb == NULL) {
			admin_conn_free(ac);
			return;
		}
		ac->evcon = cbarg;
		bufferevent_decref(ac->bev);
		ac->bev = NULL;
		evhttp_connection_set_closecb(ac->evcon, admin_conn_closed_cb,
		    ac);
		/* The deadline runs from the accept, a turn ago. */
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
		event_add(ac->timer, &tv);
		return;
	}
	if ((l = log_begin(WSP_LOG_INFO, "admin.timeout")) != NULL) {
		evhttp_connection_get_peer(evcon, &ip, &port);
		log_str(l, "ip", ip);
		log_uint(l, "port", port);
		log_uint(l, "timeout_ms", ms);
		log_end(l);
	}
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	admin_waits_cancel(ac->ad, evcon);
	evhttp_connection_free(evcon);
	admin_conn_free(ac);
}

/* evhttp asks for the bufferevent of each connection it accepts. */
static struct bufferevent *
admin_bev_cb(struct event_base *base, void *arg)
{
	struct admin *ad = arg;
	struct admin_conn *ac;
	struct bufferevent *bev;

	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL)
		return NULL; /* evhttp tries itself, and fails likewise */
	if ((ac = calloc(1, sizeof(*ac))) == NULL ||
	    (ac->timer = evtimer_new(base, admin_conn_timer_cb, ac)) ==
	    NULL) {
		free(ac);
		bufferevent_free(bev);
		return NULL;
	}
	ac->ad = ad;
	ac->bev = bev;
	bufferevent_incref(bev);
	TAILQ_INSERT_TAIL(&ad->conns, ac, entry);
	ad->nconns++;
	admin_listening(ad);
	event_active(ac->timer, EV_TIMEOUT, 1);
	return bev;
}

/* Bind, listen and serve a; on success it is appended to list. */
static int
admin_bind(struct admin *ad, const struct wsp_config *cfg,
    const struct wsp_listen_addr *a, struct admin_socks *list,
    struct wsp_errors *errs)
{
	struct admin_sock *s;
	struct log_line *l;
	char addr[64];
	int fd;

	if (ad->srv->admin_off)
		return 0; /* a worker other than the one serving it */
	if ((fd = ad->srv->bind != NULL ? ad->srv->bind(ad->srv, a,
	    ADMIN_BACKLOG, addr, sizeof(addr)) : listen_bind(a, ADMIN_BACKLOG,
	    0, addr, sizeof(addr))) == -1) {
		admin_bind_error(errs, cfg, a, errno);
		return -1;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->bound = evhttp_accept_socket_with_handle(ad->http, fd)) ==
	    NULL) {
		free(s);
		close(fd);
		errors_add(errs, cfg->file, a->line, "[admin] listen %s: out "
		    "of memory", a->text);
		return -1;
	}
	memcpy(&s->conf, &a->ss, a->sslen);
	s->conf_len = a->sslen;
	memcpy(s->addr, addr, sizeof(s->addr));
	evconnlistener_set_error_cb(admin_lev(s), admin_accept_error_cb);
	TAILQ_INSERT_TAIL(list, s, entry);
	admin_listening(ad);
	if ((l = log_begin(WSP_LOG_INFO, "admin.start")) != NULL) {
		log_str(l, "addr", s->addr);
		log_end(l);
	}
	return 0;
}

/* Stop serving s; evhttp closes its socket. */
static void
admin_sock_free(struct admin *ad, struct admin_sock *s)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_INFO, "admin.stop")) != NULL) {
		log_str(l, "addr", s->addr);
		log_end(l);
	}
	evhttp_del_accept_socket(ad->http, s->bound);
	free(s);
}

static void
admin_close_all(struct admin *ad, struct admin_socks *list)
{
	struct admin_sock *s;

	while ((s = TAILQ_FIRST(list)) != NULL) {
		TAILQ_REMOVE(list, s, entry);
		admin_sock_free(ad, s);
	}
}

int
admin_init(struct wsp_server *srv, struct wsp_errors *errs)
{
	struct admin *ad;
	size_t i;

	if ((ad = calloc(1, sizeof(*ad))) == NULL ||
	    (ad->http = evhttp_new(srv->base)) == NULL ||
	    (ad->resume = evtimer_new(srv->base, admin_resume_cb, ad)) ==
	    NULL) {
		if (ad != NULL && ad->http != NULL)
			evhttp_free(ad->http);
		free(ad);
		errors_add(errs, NULL, 0, "cannot initialise the admin "
		    "listener: out of memory");
		return -1;
	}
	ad->srv = srv;
	TAILQ_INIT(&ad->socks);
	TAILQ_INIT(&ad->staged);
	TAILQ_INIT(&ad->conns);
	TAILQ_INIT(&ad->waits);
	srv->admin = ad;
	admin_running = ad;
	/* Every method reaches the handler, which answers 405 itself:
	 * evhttp would say 501 for the ones it was not told about. */
	evhttp_set_allowed_methods(ad->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_timeout(ad->http, (int)((srv->cfg->admin_timeout + 999) /
	    1000));
	evhttp_set_bevcb(ad->http, admin_bev_cb, ad);
	evhttp_set_max_headers_size(ad->http, ADMIN_MAX_HEADERS);
	evhttp_set_max_body_size(ad->http, ADMIN_MAX_BODY);
	evhttp_set_gencb(ad->http, admin_request_cb, ad);
	for (i = 0; i < srv->cfg->nadmin_listen; i++)
		admin_bind(ad, srv->cfg, &srv->cfg->admin_listen[i], &ad->socks,
		    errs);
	return errs->n > 0 ? -1 : 0;
}

int
admin_reload_prepare(struct wsp_server *srv, const struct wsp_config *cfg,
    struct wsp_errors *errs)
{
	struct admin *ad = srv->admin;
	struct admin_sock *s;
	size_t i, before = errs->n;
	int found;

	for (i = 0; i < cfg->nadmin_listen; i++) {
		found = 0;
		TAILQ_FOREACH(s, &ad->socks, entry)
			if (config_listen_same(&s->conf, s->conf_len,
			    &cfg->admin_listen[i]))
				found = 1;
		if (!found)
			admin_bind(ad, cfg, &cfg->admin_listen[i], &ad->staged,
			    errs);
	}
	return errs->n > before ? -1 : 0;
}

void
admin_reload_commit(struct wsp_server *srv)
{
	const struct wsp_config *cfg = srv->cfg;
	struct admin *ad = srv->admin;
	struct admin_sock *s, *next;
	size_t i;
	int found;

	TAILQ_FOREACH_SAFE(s, &ad->socks, entry, next) {
		found = 0;
		for (i = 0; i < cfg->nadmin_listen; i++)
			if (config_listen_same(&s->conf, s->conf_len,
			    &cfg->admin_listen[i]))
				found = 1;
		if (!found) {
			TAILQ_REMOVE(&ad->socks, s, entry);
			admin_sock_free(ad, s);
		}
	}
	while ((s = TAILQ_FIRST(&ad->staged)) != NULL) {
		TAILQ_REMOVE(&ad->staged, s, entry);
		TAILQ_INSERT_TAIL(&ad->socks, s, entry);
	}
	/* New limits: the cap at once, the deadline for new connections. */
	evhttp_set_timeout(ad->http, (int)((cfg->admin_timeout + 999) / 1000));
	admin_listening(ad);
}

void
admin_reload_abort(struct wsp_server *srv)
{
	admin_close_all(srv->admin, &srv->admin->staged);
}

/* The i-th serving listener's descriptor (borrowed) and the address it
 * was configured as, for a hand-over (handover.c); -1 past the last. */
int
admin_socket(struct wsp_server *srv, size_t i, struct sockaddr_storage *conf,
    socklen_t *len)
{
	struct admin_sock *s;

	if (srv->admin == NULL)
		return -1;
	TAILQ_FOREACH(s, &srv->admin->socks, entry)
		if (i-- == 0) {
			memcpy(conf, &s->conf, s->conf_len);
			*len = s->conf_len;
			return evconnlistener_get_fd(admin_lev(s));
		}
	return -1;
}

void
admin_free(struct wsp_server *srv)
{
	struct admin *ad = srv->admin;

	if (ad == NULL)
		return;
	admin_waits_cancel(ad, NULL); /* their requests go with evhttp */
	admin_close_all(ad, &ad->staged);
	admin_close_all(ad, &ad->socks);
	evhttp_free(ad->http); /* and every admin connection still open */
	while (!TAILQ_EMPTY(&ad->conns)) /* those evhttp gave up at once */
		admin_conn_free(TAILQ_FIRST(&ad->conns));
	event_free(ad->resume);
	free(ad);
	admin_running = NULL;
	srv->admin = NULL;
}
