/*
 * metrics.c: what the daemon counts, and its Prometheus rendering.
 *
 * Plain integers bumped on the event loop thread: no atomics, no locks.
 * Refusals are counted by a fixed set of reasons and closes by close code,
 * so the set of series stays bounded whatever clients send.
 *
 * metrics_render() writes them in the Prometheus text exposition format
 * 0.0.4 for the admin listener's /metrics: every family with its HELP and
 * TYPE lines, counters named *_total, label values escaped as the format
 * asks (backslash, double quote, newline) and made valid UTF-8, since a
 * plugin's version string is whatever its author wrote.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "wsplugd.h"

const char *const metrics_refuse_reasons[METRICS_REASONS] = {
	"bad_request", "not_found", "method", "version", "origin",
	"max_connections", "max_connections_per_ip", "header_too_large",
	"handshake_timeout", "shutting_down", "tls_on_plain_port",
	"plain_on_tls_port", "gone", "plugin", "other",
};

/* Why a TLS handshake failed; the last is "other". */
const char *const metrics_tls_reasons[METRICS_TLS_FAILS] = {
	"protocol", "eof", "handshake_timeout", "plain_on_tls_port", "other",
};

/* The index of reason among names, the last of which is "other". */
static size_t
metrics_slot(const char *const *names, size_t n, const char *reason)
{
	size_t i;

	for (i = 0; i < n - 1; i++)
		if (strcmp(names[i], reason) == 0)
			break;
	return i;
}

void
metrics_tls_handshake(struct wsp_server *srv)
{
	srv->metrics.tls_handshakes++;
}

void
metrics_tls_failed(struct wsp_server *srv, const char *reason)
{
	srv->metrics.tls_failed[metrics_slot(metrics_tls_reasons,
	    METRICS_TLS_FAILS, reason)]++;
}

void
metrics_refused(struct wsp_server *srv, const char *reason)
{
	srv->metrics.refused[metrics_slot(metrics_refuse_reasons,
	    METRICS_REASONS, reason)]++;
}

void
metrics_closed(struct wsp_server *srv, uint16_t code)
{
	size_t i;

	for (i = 0; i < METRICS_CODES - 1; i++) {
		if (srv->metrics.closed[i].code == code)
			break;
		if (srv->metrics.closed[i].code == 0) {
			srv->metrics.closed[i].code = code;
			break;
		}
	}
	srv->metrics.closed[i].n++; /* i == METRICS_CODES - 1: "other" */
}

void
metrics_message_in(struct wsp_server *srv, size_t bytes)
{
	srv->metrics.msgs_in++;
	srv->metrics.bytes_in += bytes;
}

void
metrics_message_out(struct wsp_server *srv, size_t bytes)
{
	srv->metrics.msgs_out++;
	srv->metrics.bytes_out += bytes;
}

void
metrics_ping(struct wsp_server *srv)
{
	srv->metrics.pings++;
}

void
metrics_reaped(struct wsp_server *srv)
{
	srv->metrics.reaps++;
}

void
metrics_shed(struct wsp_server *srv, int partial)
{
	srv->metrics.shed[partial ? 1 : 0]++;
}

static const char *const metrics_shed_reasons[2] = { "output", "partial" };

uint64_t
metrics_reloaded(struct wsp_server *srv, int ok)
{
	return ok ? ++srv->metrics.reloads_ok : ++srv->metrics.reloads_failed;
}

/* The output and whether any append failed, so the renderer can write
 * straight on and check once. */
struct render {
	struct evbuffer *out;
	int failed;
};

static void emit(struct render *r, const char *fmt, ...) WSP_PRINTFLIKE(2, 3);

static void
emit(struct render *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(r->out, fmt, ap) == -1)
		r->failed = 1;
	va_end(ap);
}

static void
family(struct render *r, const char *name, const char *type,
    const char *help)
{
	emit(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, quoted and escaped; invalid UTF-8 becomes U+FFFD and a
 * character cut short at the end is dropped. */
static void
label_value(struct render *r, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	int k;

	emit(r, "\"");
	for (; n > 0; p += k, n -= (size_t)k) {
		k = 1;
		if (*p == '\\' || *p == '"')
			emit(r, "\\%c", *p);
		else if (*p == '\n')
			emit(r, "\\n");
		else if ((k = utf8_char_len(p, n)) < 0)
			break;
		else if (k == 0) {
			emit(r, "\xef\xbf\xbd");
			k = 1;
		} else if (evbuffer_add(r->out, p, (size_t)k) == -1)
			r->failed = 1;
	}
	emit(r, "\"");
}

static void
counter(struct render *r, const char *name, const char *help, uint64_t v)
{
	family(r, name, "counter", help);
	emit(r, "%s %llu\n", name, (unsigned long long)v);
}

static void
gauge(struct render *r, const char *name, const char *help, uint64_t v)
{
	family(r, name, "gauge", help);
	emit(r, "%s %llu\n", name, (unsigned long long)v);
}

/* Connections still reading their request head.  O(pending) per scrape,
 * which is fine: the pending list holds only connections that are not
 * established, and a scrape is rare beside the traffic. */
static size_t
handshakes_pending(struct wsp_server *srv)
{
	struct wsp_conn *c;
	size_t n = 0;

	TAILQ_FOREACH(c, &srv->pending, link)
		if (c->state == CONN_HANDSHAKE)
			n++;
	return n;
}

/* A counter family with one series per reason, every one present. */
static void
by_reason(struct render *r, const char *name, const char *help,
    const char *const *reasons, const uint64_t *v, size_t n)
{
	size_t i;

	family(r, name, "counter", help);
	for (i = 0; i < n; i++)
		emit(r, "%s{reason=\"%s\"} %llu\n", name, reasons[i],
		    (unsigned long long)v[i]);
}

void
metrics_snapshot(struct wsp_server *srv, struct metrics_snap *out)
{
	memset(out, 0, sizeof(*out));
	out->m = srv->metrics;
	out->active = srv->reg.count;
	out->pending = handshakes_pending(srv);
	out->lingering = srv->npending - out->pending;
	out->opened = srv->total_opened;
	out->z = *zstream_stats(srv);
	out->mem_bytes = srv->mem.used;
	out->mem_limit = srv->cfg->max_buffer_memory;
}

void
metrics_add(struct metrics_snap *sum, const struct metrics_snap *x)
{
	struct metrics *a = &sum->m;
	const struct metrics *b = &x->m;
	size_t i, j;

	a->msgs_in += b->msgs_in;
	a->msgs_out += b->msgs_out;
	a->bytes_in += b->bytes_in;
	a->bytes_out += b->bytes_out;
	a->pings += b->pings;
	a->reaps += b->reaps;
	a->reloads_ok += b->reloads_ok;
	a->reloads_failed += b->reloads_failed;
	a->handovers_ok += b->handovers_ok;
	a->handovers_failed += b->handovers_failed;
	for (i = 0; i < METRICS_REASONS; i++)
		a->refused[i] += b->refused[i];
	a->tls_handshakes += b->tls_handshakes;
	a->shed[0] += b->shed[0];
	a->shed[1] += b->shed[1];
	a->bus_published += b->bus_published;
	a->bus_delivered += b->bus_delivered;
	a->bus_channels += b->bus_channels;
	a->bus_history_bytes += b->bus_history_bytes;
	a->redis_state += b->redis_state;
	a->redis_reconnects += b->redis_reconnects;
	a->redis_published += b->redis_published;
	a->redis_delivered += b->redis_delivered;
	a->redis_dropped += b->redis_dropped;
	a->redis_replayed += b->redis_replayed;
	/* each worker has its own connections: the slowest one's */
	if (b->redis_rtt_us > a->redis_rtt_us)
		a->redis_rtt_us = b->redis_rtt_us;
	for (i = 0; i < METRICS_TLS_FAILS; i++)
		a->tls_failed[i] += b->tls_failed[i];
	for (i = 0; i < METRICS_CODES - 1 && b->closed[i].code != 0; i++) {
		for (j = 0; j < METRICS_CODES - 1; j++)
			if (a->closed[j].code == b->closed[i].code ||
			    a->closed[j].code == 0)
				break;
		a->closed[j].code = j < METRICS_CODES - 1 ?
		    b->closed[i].code : 0;
		a->closed[j].n += b->closed[i].n;
	}
	a->closed[METRICS_CODES - 1].n += b->closed[METRICS_CODES - 1].n;
	sum->active += x->active;
	sum->pending += x->pending;
	sum->lingering += x->lingering;
	sum->opened += x->opened;
	sum->mem_bytes += x->mem_bytes;
	if (x->mem_limit > sum->mem_limit) /* the same in every worker */
		sum->mem_limit = x->mem_limit;
	sum->z.conns += x->z.conns;
	sum->z.full_conns += x->z.full_conns;
	sum->z.full_bytes += x->z.full_bytes;
	sum->z.zlib_bytes += x->z.zlib_bytes;
	sum->z.compressed += x->z.compressed;
	sum->z.reused += x->z.reused;
	sum->z.tight += x->z.tight;
}

void
metrics_snap_gone(struct metrics_snap *s)
{
	s->active = s->pending = s->lingering = 0;
	s->mem_bytes = 0;
	s->m.bus_channels = s->m.bus_history_bytes = 0;
	s->m.redis_state = s->m.redis_rtt_us = 0;
	s->z.conns = s->z.full_conns = 0;
	s->z.full_bytes = s->z.zlib_bytes = 0;
}

static void
render_connections(struct render *r, const struct metrics_snap *s)
{
	const struct metrics *m = &s->m;
	size_t i;

	if (s->workers > 0) {
		gauge(r, "wsplugd_workers", "Worker processes configured.",
		    s->workers);
		gauge(r, "wsplugd_workers_alive",
		    "Worker processes running and serving.", s->workers_alive);
		counter(r, "wsplugd_workers_backlogged_total",
		    "Workers replaced because the master held more bus "
		    "messages for them than their budget.",
		    s->workers_backlogged);
	}
	gauge(r, "wsplugd_connections_active",
	    "WebSocket connections open now.", s->active);
	gauge(r, "wsplugd_handshakes_pending",
	    "Connections accepted and still in the opening handshake.",
	    s->pending);
	gauge(r, "wsplugd_connections_lingering",
	    "Sockets refused or closed, waiting up to 1 s for the client to "
	    "hang up; they count toward max_connections.", s->lingering);
	counter(r, "wsplugd_connections_opened_total",
	    "WebSocket connections established (101 sent).", s->opened);
	family(r, "wsplugd_connections_closed_total", "counter",
	    "WebSocket connections closed, by close code (1006: the peer "
	    "went away without a close frame).");
	for (i = 0; i < METRICS_CODES - 1 && m->closed[i].code != 0; i++)
		emit(r, "wsplugd_connections_closed_total{code=\"%u\"} %llu\n",
		    m->closed[i].code, (unsigned long long)m->closed[i].n);
	if (m->closed[METRICS_CODES - 1].n > 0)
		emit(r, "wsplugd_connections_closed_total{code=\"other\"} "
		    "%llu\n", (unsigned long long)m->closed[METRICS_CODES - 1].n);
	by_reason(r, "wsplugd_handshakes_refused_total",
	    "Opening handshakes refused, by reason.", metrics_refuse_reasons,
	    m->refused, METRICS_REASONS);
	counter(r, "wsplugd_tls_handshakes_total",
	    "TLS handshakes completed on tls listeners.", m->tls_handshakes);
	by_reason(r, "wsplugd_tls_handshakes_failed_total",
	    "TLS handshakes that failed, by reason.", metrics_tls_reasons,
	    m->tls_failed, METRICS_TLS_FAILS);
}

static void
render_traffic(struct render *r, const struct metrics_snap *s)
{
	const struct metrics *m = &s->m;

	counter(r, "wsplugd_messages_received_total",
	    "Complete text and binary messages received.", m->msgs_in);
	counter(r, "wsplugd_messages_sent_total",
	    "Text and binary messages queued to clients.", m->msgs_out);
	counter(r, "wsplugd_bytes_received_total",
	    "Payload bytes of the messages received.", m->bytes_in);
	counter(r, "wsplugd_bytes_sent_total",
	    "Payload bytes of the messages queued to clients.", m->bytes_out);
	gauge(r, "wsplugd_buffer_memory_bytes",
	    "Bytes of queued output and partial messages, against "
	    "max_buffer_memory.", s->mem_bytes);
	gauge(r, "wsplugd_buffer_memory_limit_bytes",
	    "max_buffer_memory: the budget of every output buffer and "
	    "partial message.", s->mem_limit);
	by_reason(r, "wsplugd_memory_shed_total", "Connections closed to "
	    "stay within max_buffer_memory, by what they held most of: "
	    "output (1008) or a partial message (1009).",
	    metrics_shed_reasons, m->shed, 2);
	counter(r, "wsplugd_keepalive_pings_sent_total",
	    "Keepalive pings sent.", m->pings);
	counter(r, "wsplugd_connections_reaped_total",
	    "Connections closed for staying silent past idle_timeout.",
	    m->reaps);
	family(r, "wsplugd_reloads_total", "counter",
	    "Configuration reloads (SIGHUP), by result.");
	emit(r, "wsplugd_reloads_total{result=\"ok\"} %llu\n"
	    "wsplugd_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)m->reloads_ok,
	    (unsigned long long)m->reloads_failed);
	family(r, "wsplugd_handovers_total", "counter",
	    "Hand-overs of every connection to a new binary (SIGUSR2), by "
	    "result; carried across them.");
	emit(r, "wsplugd_handovers_total{result=\"ok\"} %llu\n"
	    "wsplugd_handovers_total{result=\"failed\"} %llu\n",
	    (unsigned long long)m->handovers_ok,
	    (unsigned long long)m->handovers_failed);
}

static void
render_deflate(struct render *r, const struct metrics_snap *s)
{
	const struct zstream_stats *z = &s->z;

	gauge(r, "wsplugd_deflate_connections",
	    "Open connections that negotiated permessage-deflate.", z->conns);
	gauge(r, "wsplugd_deflate_full_contexts",
	    "Of those, connections that agreed to context takeover and may "
	    "hold a full context.", z->full_conns);
	gauge(r, "wsplugd_deflate_full_context_bytes",
	    "Memory reserved for full contexts, against context_budget.",
	    z->full_bytes);
	gauge(r, "wsplugd_deflate_zlib_bytes",
	    "Memory zlib holds now, in every stream.", z->zlib_bytes);
	counter(r, "wsplugd_deflate_messages_compressed_total",
	    "Messages compressed.", z->compressed);
	counter(r, "wsplugd_deflate_compressions_reused_total",
	    "Messages sent with the compression just made for another "
	    "connection.", z->reused);
	counter(r, "wsplugd_deflate_tight_answers_total",
	    "Handshakes answered without context takeover for the budget.",
	    z->tight);
}

static void
render_bus(struct render *r, const struct metrics_snap *s)
{
	const struct metrics *m = &s->m;

	counter(r, "wsplugd_bus_published_total",
	    "Messages published on bus channels by plugins.",
	    m->bus_published);
	counter(r, "wsplugd_bus_delivered_total",
	    "Bus messages queued to subscribed connections, replays "
	    "included.", m->bus_delivered);
	gauge(r, "wsplugd_bus_channels",
	    "Bus channels with subscribers or history.", m->bus_channels);
	gauge(r, "wsplugd_bus_history_bytes",
	    "Memory held by channel history, against history_memory.",
	    m->bus_history_bytes);
	/* [bus] backend = redis; all 0 with the local one */
	gauge(r, "wsplugd_redis_state",
	    "Processes connected to Redis (1 per worker), else 0.",
	    m->redis_state);
	counter(r, "wsplugd_redis_reconnects_total",
	    "Times the Redis connections came back after a loss.",
	    m->redis_reconnects);
	counter(r, "wsplugd_redis_published_total",
	    "Messages this node published on Redis.", m->redis_published);
	counter(r, "wsplugd_redis_delivered_total",
	    "Messages this node received from Redis for its subscribers.",
	    m->redis_delivered);
	counter(r, "wsplugd_redis_dropped_total",
	    "Publishes refused: Redis away past redis_queue, or an error.",
	    m->redis_dropped);
	counter(r, "wsplugd_redis_replayed_total",
	    "Messages replayed from Redis history to a subscribe with since.",
	    m->redis_replayed);
	/* kept in microseconds, shown in seconds */
	family(r, "wsplugd_redis_roundtrip_seconds", "gauge",
	    "Round trip of the last PING to Redis.");
	emit(r, "wsplugd_redis_roundtrip_seconds %llu.%06llu\n",
	    (unsigned long long)(m->redis_rtt_us / 1000000),
	    (unsigned long long)(m->redis_rtt_us % 1000000));
}

static void
render_process(struct render *r, struct wsp_server *srv)
{
	const struct plugin_set *set = srv->plugins;
	const struct wsp_plugin_ctx *ctx;
	size_t i;

	family(r, "wsplugd_plugin_info", "gauge",
	    "Plugins loaded, with their version and the plugin generation "
	    "(bumped by each successful reload); always 1.");
	for (i = 0; set != NULL && i < set->nplugins; i++) {
		ctx = set->plugins[i];
		emit(r, "wsplugd_plugin_info{plugin=");
		label_value(r, ctx->name);
		emit(r, ",version=");
		label_value(r, ctx->desc->version != NULL ?
		    ctx->desc->version : "");
		emit(r, ",generation=\"%u\"} 1\n", set->generation);
	}
	family(r, "wsplugd_process_start_time_seconds", "gauge",
	    "Start time of the process since the Unix epoch, in seconds.");
	emit(r, "wsplugd_process_start_time_seconds %lld.%03lld\n",
	    (long long)(srv->started_wall_ms / 1000),
	    (long long)(srv->started_wall_ms % 1000));
	family(r, "wsplugd_build_info", "gauge",
	    "The daemon's version and plugin ABI; always 1.");
	emit(r, "wsplugd_build_info{version=");
	label_value(r, PACKAGE_VERSION);
	emit(r, ",abi=\"%d\"} 1\n", WSPLUGD_PLUGIN_ABI);
}

int
metrics_render(struct wsp_server *srv, struct evbuffer *out)
{
	struct render r = { out, 0 };
	struct metrics_snap s;

	metrics_snapshot(srv, &s);
	if (srv->metrics_sum != NULL)
		srv->metrics_sum(srv, &s);
	render_connections(&r, &s);
	render_traffic(&r, &s);
	render_deflate(&r, &s);
	render_bus(&r, &s);
	render_process(&r, srv);
	return r.failed ? -1 : 0;
}
