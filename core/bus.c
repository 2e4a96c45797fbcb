/*
 * bus.c: channels for plugins, the front of the bus.
 *
 * A plugin subscribes a connection to a channel, unsubscribes it, and
 * publishes a JSON object on a channel (host.c's ABI 3 calls).  This file
 * keeps which of this process's connections are on which channel, and
 * delivers what the backend hands it to them; everything that spans
 * processes (offsets, epochs, history, members in other workers, presence)
 * is the backend's.
 *
 * The seam is struct bus_backend (wsplugd.h), a table of functions:
 *
 *   configure(limits)                      [bus] history_* at start and
 *                                          on a committed reload
 *   publish(channel, conn, flags, data,    number the message, deliver it
 *           done(offset, epoch, subs))     everywhere (here through the
 *                                          sink too), then answer
 *   subscribe(channel, conn, first, since, conn joins (presence); first:
 *             replay(offset, data),        no member here had it yet; with
 *             done(recovered, offset,      since, the messages after it
 *                  epoch, subs))           through replay, then the answer
 *   unsubscribe(channel, conn, last)       conn leaves; last: none is left
 *   presence(channel, max, done(ids))      every worker's members
 *   stats, free
 *
 * and the sink, which the backend calls for every message to deliver in
 * this process: deliver(channel, offset, epoch, except, data).  Every
 * answer is a callback, even where the backend is synchronous (the local
 * one in a single process answers before the call returns): a backend that
 * goes over a socket (to the master, or to Redis: bus_redis.c)
 * plugs in without a second path here.
 *
 * Ordering and exactly once: the backend gives each process one copy of a
 * message, in channel order; the front hands it to each local member once,
 * and never one whose offset is not past the member's last (so a replay
 * and the live stream cannot double up).  A member is pending from its
 * subscribe until the answer: live messages skip it, the replay feeds it,
 * and then it is live.  The text a subscriber receives is the published
 * object with "offset" and "epoch" appended, built once per message, not
 * once per subscriber.
 *
 * Lifetimes: requests carry the plugin context and the connection they
 * answer to; a connection that closes leaves every channel and its
 * answers come with the connection NULL (so the plugin frees its
 * argument); a plugin that is unloaded loses its pending answers.  Either
 * way the backend still holds the request until it answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <uthash.h>

#include "wsplugd.h"

struct bus_chan;
struct bus_cmem;
struct bus_req;

struct bus_member {
	TAILQ_ENTRY(bus_member) in_chan;
	TAILQ_ENTRY(bus_member) in_conn;
	struct bus_chan *ch;
	struct bus_cmem *cm;
	uint64_t last;       /* the highest offset handed to it */
	struct bus_req *req; /* its subscribe, while pending */
};

struct bus_chan {
	UT_hash_handle hh; /* keyed by name */
	TAILQ_HEAD(, bus_member) members;
	size_t n;
	/* the epoch its members' last offsets are of ("" none yet): what a
	 * hand-over takes along so that the new process can recover */
	char epoch[WSP_BUS_EPOCH_MAX + 1];
	char name[];
};

struct bus_cmem {
	UT_hash_handle hh; /* keyed by the connection pointer */
	struct wsp_conn *conn;
	TAILQ_HEAD(, bus_member) members;
	size_t n;
};

enum bus_req_kind { REQ_SUB, REQ_PUB, REQ_PRES };

struct bus_req {
	TAILQ_ENTRY(bus_req) entry;
	struct bus *bus;
	enum bus_req_kind kind;
	struct wsp_plugin_ctx *ctx; /* NULL: nobody to answer any more */
	struct wsp_conn *conn;
	struct bus_member *m;       /* REQ_SUB: the member it made */
	union {
		void (*sub)(void *, struct wsp_conn *,
		    const struct wsp_bus_subscribed *);
		void (*pub)(void *, struct wsp_conn *,
		    const struct wsp_bus_published *);
		void (*pres)(void *, struct wsp_conn *, const char *const *,
		    size_t, uint64_t);
	} done;
	void *arg;
	char channel[WSP_BUS_CHANNEL_MAX + 1];
	char epoch[WSP_BUS_EPOCH_MAX + 1]; /* REQ_SUB: since's, for replays */
	uint64_t since;  /* REQ_SUB: since's offset */
	int adopted;     /* REQ_SUB: bus_adopt's, with since */
};

struct bus {
	struct wsp_server *srv;
	struct bus_backend be;
	struct bus_chan *chans;
	struct bus_cmem *conns;
	TAILQ_HEAD(, bus_req) reqs;
	struct outbuf out; /* a message as delivered, offset and epoch added */
};

void
bus_limits_of(const struct wsp_config *cfg, struct bus_limits *lim)
{
	lim->history_size = cfg->bus_history_size;
	lim->history_ttl = cfg->bus_history_ttl;
	lim->history_memory = cfg->bus_history_memory;
}

int
bus_channel_valid(const char *name)
{
	size_t n = strlen(name), i;

	if (n == 0 || n > WSP_BUS_CHANNEL_MAX ||
	    utf8_validate(UTF8_ACCEPT, (const uint8_t *)name, n) != UTF8_ACCEPT)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return 0;
	return 1;
}

static void
bus_stats_sync(struct bus *bus)
{
	struct metrics *m = &bus->srv->metrics;

	bus->be.stats(bus->be.be, &m->bus_channels, &m->bus_history_bytes);
}

/* The message as its subscribers get it, in bus->out. */
static int
bus_format(struct bus *bus, const char *data, size_t n, uint64_t offset,
    const char *epoch)
{
	struct outbuf *b = &bus->out;
	char tail[96];
	size_t end = n, need;
	int k;

	b->len = 0;
	if (offset == 0) { /* transient: as published */
		need = n;
		tail[0] = '\0';
		k = 0;
	} else {
		/* the object's closing brace (publish checked it is one) */
		while (end > 0 && data[end - 1] != '}')
			end--;
		if (end == 0)
			return -1;
		end--;
		k = snprintf(tail, sizeof(tail), "%s\"offset\":%llu,"
		    "\"epoch\":\"%s\"}", memchr(data, ':', end) != NULL ? "," :
		    "", (unsigned long long)offset, epoch);
		if (k < 0 || (size_t)k >= sizeof(tail))
			return -1;
		need = end + (size_t)k;
	}
	if (need > b->cap) {
		char *p = realloc(b->p, need);

		if (p == NULL)
			return -1;
		b->p = p;
		b->cap = need;
	}
	memcpy(b->p, data, offset == 0 ? n : end);
	memcpy(b->p + (offset == 0 ? n : end), tail, (size_t)k);
	b->len = need;
	return 0;
}

static void
bus_send(struct bus *bus, struct bus_member *m, uint64_t offset)
{
	if (offset > 0)
		m->last = offset;
	if (conn_send_text(m->cm->conn, bus->out.p, bus->out.len) == 0)
		bus->srv->metrics.bus_delivered++;
}

/* The sink: a message for this process's members of channel. */
static void
bus_deliver(void *arg, const char *channel, uint64_t offset,
    const char *epoch, const char *except, const char *data, size_t n)
{
	struct bus *bus = arg;
	struct bus_member *m, *next;
	struct bus_chan *ch;
	int formatted = 0;

	HASH_FIND(hh, bus->chans, channel, strlen(channel), ch);
	if (ch == NULL)
		return; /* the last member left while it was on its way */
	if (offset > 0 && strcmp(ch->epoch, epoch) != 0)
		snprintf(ch->epoch, sizeof(ch->epoch), "%s", epoch);
	/* conn_send never frees a connection, so the list holds still */
	TAILQ_FOREACH_SAFE(m, &ch->members, in_chan, next) {
		if (m->req != NULL || (offset > 0 && offset <= m->last) ||
		    (except[0] != '\0' && strcmp(m->cm->conn->id, except) == 0))
			continue;
		if (!formatted) {
			if (bus_format(bus, data, n, offset, epoch) == -1) {
				log_msg(WSP_LOG_ERROR, "bus.error", "channel %s: "
				    "cannot deliver offset %llu: out of memory",
				    channel, (unsigned long long)offset);
				return;
			}
			formatted = 1;
		}
		bus_send(bus, m, offset);
	}
}

/* The sink's gap: members that may have missed messages are told so,
 * and take whatever offset comes next (a new epoch starts again at 1). */
/* {"type":"gap","channel":channel} in bus->out; 0 or -1 (logged). */
static int
gap_format(struct bus *bus, const char *channel)
{
	json_t *v;

	v = json_pack("{s:s, s:s}", "type", "gap", "channel", channel);
	bus->out.len = 0;
	if (v == NULL || json_write(&bus->out, v) == -1) {
		json_decref(v);
		log_msg(WSP_LOG_ERROR, "bus.error", "channel %s: cannot tell "
		    "its subscribers of a gap: out of memory", channel);
		return -1;
	}
	json_decref(v);
	return 0;
}

static void
bus_gap(void *arg, const char *channel)
{
	struct bus *bus = arg;
	struct bus_member *m, *next;
	struct bus_chan *ch;

	HASH_FIND(hh, bus->chans, channel, strlen(channel), ch);
	if (ch == NULL)
		return;
	ch->epoch[0] = '\0';
	if (gap_format(bus, channel) == -1)
		return;
	TAILQ_FOREACH_SAFE(m, &ch->members, in_chan, next) {
		m->last = 0;
		if (m->req == NULL)
			conn_send_text(m->cm->conn, bus->out.p, bus->out.len);
	}
}

struct bus *
bus_new(struct wsp_server *srv, int fd)
{
	struct bus_sink sink;
	struct bus_limits lim;
	struct bus *bus;
	int rc;

	if ((bus = calloc(1, sizeof(*bus))) == NULL) {
		if (fd != -1)
			close(fd);
		return NULL;
	}
	bus->srv = srv;
	TAILQ_INIT(&bus->reqs);
	sink.deliver = bus_deliver;
	sink.gap = bus_gap;
	sink.arg = bus;
	bus_limits_of(srv->cfg, &lim);
	/* a worker given the master's store uses it (its master chose the
	 * backend at start); with Redis, every process is its own node */
	if (fd != -1)
		rc = bus_local_connect(&bus->be, srv->base, fd, &sink);
	else if (srv->cfg->bus_backend == BUS_BACKEND_REDIS)
		rc = bus_redis_open(&bus->be, srv->base, srv->cfg, &lim, &sink,
		    &srv->metrics);
	else
		rc = bus_local_open(&bus->be, srv->base, &lim, &sink);
	if (rc == -1) {
		free(bus);
		return NULL;
	}
	return bus;
}

void
bus_configure(struct bus *bus, const struct wsp_config *cfg)
{
	struct bus_limits lim;

	if (bus == NULL)
		return;
	bus_limits_of(cfg, &lim);
	bus->be.configure(bus->be.be, &lim);
	if (strcmp(bus->be.name, "redis") == 0) {
		if (cfg->bus_backend == BUS_BACKEND_REDIS)
			bus_redis_reconfigure(bus->be.be, cfg);
		else
			log_msg(WSP_LOG_WARN, "bus.restart_needed", "[bus] "
			    "backend changed: it takes effect on a restart");
	} else if (cfg->bus_backend != BUS_BACKEND_LOCAL)
		log_msg(WSP_LOG_WARN, "bus.restart_needed", "[bus] backend "
		    "changed: it takes effect on a restart");
	bus_stats_sync(bus);
}

static void
member_free(struct bus *bus, struct bus_member *m)
{
	struct bus_chan *ch = m->ch;
	struct bus_cmem *cm = m->cm;

	if (m->req != NULL)
		m->req->m = NULL;
	TAILQ_REMOVE(&ch->members, m, in_chan);
	TAILQ_REMOVE(&cm->members, m, in_conn);
	free(m);
	if (--ch->n == 0) {
		HASH_DEL(bus->chans, ch);
		free(ch);
	}
	if (--cm->n == 0) {
		HASH_DEL(bus->conns, cm);
		free(cm);
	}
}

static struct bus_member *
member_find(struct bus *bus, const struct wsp_conn *c, const char *channel)
{
	struct bus_cmem *cm;
	struct bus_member *m;

	HASH_FIND_PTR(bus->conns, &c, cm);
	if (cm == NULL)
		return NULL;
	/* O(channels of c), at most the plugin's own limit */
	TAILQ_FOREACH(m, &cm->members, in_conn)
		if (strcmp(m->ch->name, channel) == 0)
			return m;
	return NULL;
}

static struct bus_member *
member_new(struct bus *bus, struct wsp_conn *c, const char *channel,
    int *first_r)
{
	size_t n = strlen(channel);
	struct bus_member *m;
	struct bus_chan *ch;
	struct bus_cmem *cm;

	HASH_FIND(hh, bus->chans, channel, n, ch);
	HASH_FIND_PTR(bus->conns, &c, cm);
	*first_r = ch == NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	if (ch == NULL) {
		if ((ch = calloc(1, sizeof(*ch) + n + 1)) == NULL)
			goto nomem;
		memcpy(ch->name, channel, n + 1);
		TAILQ_INIT(&ch->members);
		HASH_ADD_KEYPTR(hh, bus->chans, ch->name, n, ch);
	}
	if (cm == NULL) {
		if ((cm = calloc(1, sizeof(*cm))) == NULL) {
			if (ch->n == 0) {
				HASH_DEL(bus->chans, ch);
				free(ch);
			}
			goto nomem;
		}
		cm->conn = c;
		TAILQ_INIT(&cm->members);
		HASH_ADD_PTR(bus->conns, conn, cm);
	}
	m->ch = ch;
	m->cm = cm;
	TAILQ_INSERT_TAIL(&ch->members, m, in_chan);
	TAILQ_INSERT_TAIL(&cm->members, m, in_conn);
	ch->n++;
	cm->n++;
	return m;
nomem:
	free(m);
	return NULL;
}

static struct bus_req *
req_new(struct bus *bus, enum bus_req_kind kind, struct wsp_plugin_ctx *ctx,
    struct wsp_conn *c, const char *channel, void *arg)
{
	struct bus_req *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->bus = bus;
	q->kind = kind;
	q->ctx = ctx;
	q->conn = c;
	q->arg = arg;
	snprintf(q->channel, sizeof(q->channel), "%s", channel);
	TAILQ_INSERT_TAIL(&bus->reqs, q, entry);
	return q;
}

static void
req_free(struct bus_req *q)
{
	if (q->m != NULL)
		q->m->req = NULL;
	TAILQ_REMOVE(&q->bus->reqs, q, entry);
	free(q);
}

/* Around a call into the plugin that is answered: timed and named like
 * every other plugin callback. */
static int
req_enter(struct bus_req *q)
{
	if (q->ctx == NULL)
		return 0;
	plugin_calls_mark(q->bus->srv->calls, q->ctx->call_id, PLUGIN_CB_BUS);
	return 1;
}

static void
req_leave(struct bus_req *q, uint64_t t0)
{
	struct wsp_plugin_ctx *ctx = q->ctx;
	uint64_t took = clock_mono_ms() - t0;

	plugin_calls_mark(q->bus->srv->calls, ctx->call_id, PLUGIN_CB_NONE);
	if (took >= q->bus->srv->cfg->slow_callback)
		log_msg(WSP_LOG_WARN, "plugin.slow", "[plugin:%s] bus callback "
		    "took %llu ms", ctx->name, (unsigned long long)took);
}

static void
sub_replay_cb(void *arg, uint64_t offset, const char *data, size_t n)
{
	struct bus_req *q = arg;
	struct bus_member *m = q->m;

	if (m == NULL || offset <= m->last)
		return;
	/* replayed only when recovered: the epoch is the one asked with */
	if (bus_format(q->bus, data, n, offset, q->epoch) == -1)
		return;
	bus_send(q->bus, m, offset);
}

static void
sub_done_cb(void *arg, const struct bus_answer *a)
{
	struct bus_req *q = arg;
	struct bus_member *m = q->m;
	struct wsp_bus_subscribed r;
	uint64_t t0 = clock_mono_ms();

	if (m != NULL && m->req == q) {
		/* A member handed over that could not recover what was
		 * published while it moved is told, as after an outage; one
		 * that missed nothing (its offset still the top, in the same
		 * epoch) is not. */
		if (q->adopted && !a->error && !a->recovered &&
		    (a->offset > q->since || a->epoch == NULL ||
		    strcmp(a->epoch, q->epoch) != 0) &&
		    gap_format(q->bus, q->channel) == 0)
			conn_send_text(m->cm->conn, q->bus->out.p,
			    q->bus->out.len);
		/* live from here: past what it recovered, or from now */
		if (!a->recovered && a->offset > m->last)
			m->last = a->offset;
		if (!a->error && a->epoch != NULL && a->epoch[0] != '\0')
			snprintf(m->ch->epoch, sizeof(m->ch->epoch), "%s",
			    a->epoch);
		m->req = NULL;
		q->m = NULL;
		if (a->error) /* not a member after all */
			bus_unsubscribe(q->bus, m->cm->conn, q->channel);
	}
	q->m = NULL;
	if (a->error)
		log_msg(WSP_LOG_ERROR, "bus.error", "channel %s: subscribe "
		    "failed", q->channel);
	if (req_enter(q)) {
		memset(&r, 0, sizeof(r));
		r.channel = q->channel;
		r.error = a->error;
		r.recovered = a->recovered;
		r.offset = a->offset;
		r.epoch = a->epoch;
		r.subscribers = a->subscribers;
		q->done.sub(q->arg, q->conn, &r);
		req_leave(q, t0);
	}
	bus_stats_sync(q->bus);
	req_free(q);
}

/* A subscribe; ctx NULL: nobody answered (bus_adopt). */
static int
bus_join(struct bus *bus, struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel, const struct wsp_bus_since *since,
    void (*done)(void *, struct wsp_conn *, const struct wsp_bus_subscribed *),
    void *arg)
{
	struct bus_member *m;
	struct bus_req *q;
	int first = 0;

	if (bus == NULL || c->state != CONN_OPEN ||
	    !bus_channel_valid(channel) || (since != NULL &&
	    (since->epoch == NULL || strlen(since->epoch) > WSP_BUS_EPOCH_MAX)))
		return -1;
	if ((q = req_new(bus, REQ_SUB, ctx, c, channel, arg)) == NULL)
		return -1;
	q->done.sub = done;
	if ((m = member_find(bus, c, channel)) == NULL) {
		if ((m = member_new(bus, c, channel, &first)) == NULL) {
			req_free(q);
			return -1;
		}
		m->req = q;
		q->m = m;
		if (since != NULL)
			m->last = since->offset;
	} else
		since = NULL; /* subscribed already: nothing to replay */
	if (since != NULL) {
		snprintf(q->epoch, sizeof(q->epoch), "%s", since->epoch);
		q->since = since->offset;
		q->adopted = ctx == NULL;
	}
	bus->be.subscribe(bus->be.be, channel, c->id, first, since,
	    sub_replay_cb, sub_done_cb, q);
	return 0;
}

int
bus_subscribe(struct bus *bus, struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel, const struct wsp_bus_since *since,
    void (*done)(void *, struct wsp_conn *, const struct wsp_bus_subscribed *),
    void *arg)
{
	if (done == NULL)
		return -1;
	return bus_join(bus, ctx, c, channel, since, done, arg);
}

int
bus_adopt(struct bus *bus, struct wsp_conn *c, const char *channel,
    uint64_t last, const char *epoch)
{
	struct wsp_bus_since since = { last, epoch };

	if (bus != NULL && member_find(bus, c, channel) != NULL)
		return 0;
	/* A subscribe with since its last offset: what was published
	 * while it moved comes from the history (the local store's came
	 * before, bus_history_load; Redis keeps its own), and nothing
	 * twice.  Without a position, live from the backend's answer. */
	return bus_join(bus, NULL, c, channel, last > 0 && epoch != NULL &&
	    epoch[0] != '\0' ? &since : NULL, NULL, NULL);
}

int
bus_unsubscribe(struct bus *bus, struct wsp_conn *c, const char *channel)
{
	struct bus_member *m;
	char name[WSP_BUS_CHANNEL_MAX + 1];
	int last;

	if (bus == NULL || (m = member_find(bus, c, channel)) == NULL)
		return 0;
	snprintf(name, sizeof(name), "%s", m->ch->name);
	last = m->ch->n == 1;
	member_free(bus, m);
	bus->be.unsubscribe(bus->be.be, name, c->id, last);
	bus_stats_sync(bus);
	return 1;
}

static void
pub_done_cb(void *arg, const struct bus_answer *a)
{
	struct bus_req *q = arg;
	struct wsp_bus_published r;
	uint64_t t0 = clock_mono_ms();

	if (a->error)
		log_msg(WSP_LOG_ERROR, "bus.error", "channel %s: publish "
		    "failed (out of memory, or refused by the backend)",
		    q->channel);
	if (req_enter(q)) {
		memset(&r, 0, sizeof(r));
		r.channel = q->channel;
		r.error = a->error;
		r.offset = a->offset;
		r.epoch = a->epoch;
		r.subscribers = a->subscribers;
		q->done.pub(q->arg, q->conn, &r);
		req_leave(q, t0);
	}
	bus_stats_sync(q->bus);
	req_free(q);
}

int
bus_publish(struct bus *bus, struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel, const char *text, size_t len, unsigned flags,
    void (*done)(void *, struct wsp_conn *, const struct wsp_bus_published *),
    void *arg)
{
	struct bus_req *q;
	size_t i = 0, j = len;

	if (bus == NULL || !bus_channel_valid(channel) ||
	    (flags & ~(unsigned)(WSP_BUS_TRANSIENT | WSP_BUS_NOT_SELF)) != 0)
		return -1;
	/* a JSON object, so that offset and epoch can be added to it */
	while (i < len && config_is_space((unsigned char)text[i]))
		i++;
	while (j > i && config_is_space((unsigned char)text[j - 1]))
		j--;
	if (j - i < 2 || text[i] != '{' || text[j - 1] != '}' ||
	    utf8_validate(UTF8_ACCEPT, (const uint8_t *)text, len) !=
	    UTF8_ACCEPT)
		return -1;
	bus->srv->metrics.bus_published++;
	if (done == NULL) { /* no answer wanted: none asked of the backend */
		bus->be.publish(bus->be.be, channel, c != NULL ? c->id : "",
		    flags, text, len, NULL, NULL);
		bus_stats_sync(bus);
		return 0;
	}
	/* a closing connection may still publish (a plugin's close says
	 * goodbye), but has nobody to answer to */
	if ((q = req_new(bus, REQ_PUB, ctx, c != NULL && c->state == CONN_OPEN ?
	    c : NULL, channel, arg)) == NULL)
		return -1;
	q->done.pub = done;
	bus->be.publish(bus->be.be, channel, c != NULL ? c->id : "", flags,
	    text, len, pub_done_cb, q);
	return 0;
}

static struct bus_cmem *
cmem_find(struct bus *bus, const struct wsp_conn *c)
{
	struct bus_cmem *cm = NULL;

	if (bus != NULL)
		HASH_FIND_PTR(bus->conns, &c, cm);
	return cm;
}

size_t
bus_channels(struct bus *bus, const struct wsp_conn *c,
    void (*fn)(const char *, void *), void *arg)
{
	struct bus_member *m, *next;
	struct bus_cmem *cm = cmem_find(bus, c);

	if (cm == NULL)
		return 0;
	if (fn != NULL)
		TAILQ_FOREACH_SAFE(m, &cm->members, in_conn, next)
			fn(m->ch->name, arg);
	return cm->n;
}

size_t
bus_positions(struct bus *bus, const struct wsp_conn *c,
    void (*fn)(const char *, uint64_t, const char *, void *), void *arg)
{
	struct bus_member *m;
	struct bus_cmem *cm = cmem_find(bus, c);

	if (cm == NULL)
		return 0;
	TAILQ_FOREACH(m, &cm->members, in_conn)
		fn(m->ch->name, m->last, m->ch->epoch, arg);
	return cm->n;
}

static void
pres_done_cb(void *arg, const struct bus_answer *a)
{
	struct bus_req *q = arg;
	uint64_t t0 = clock_mono_ms();

	if (req_enter(q)) {
		q->done.pres(q->arg, q->conn, a->error ? NULL : a->ids,
		    a->error ? 0 : a->nids, a->subscribers);
		req_leave(q, t0);
	}
	req_free(q);
}

int
bus_presence(struct bus *bus, struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel, size_t max,
    void (*done)(void *, struct wsp_conn *, const char *const *, size_t,
    uint64_t), void *arg)
{
	struct bus_req *q;

	if (bus == NULL || done == NULL || !bus_channel_valid(channel) ||
	    (c != NULL && c->state != CONN_OPEN))
		return -1;
	if ((q = req_new(bus, REQ_PRES, ctx, c, channel, arg)) == NULL)
		return -1;
	q->done.pres = done;
	bus->be.presence(bus->be.be, channel, max, pres_done_cb, q);
	return 0;
}

void
bus_conn_closed(struct bus *bus, struct wsp_conn *c)
{
	struct bus_member *m;
	struct bus_cmem *cm;
	struct bus_req *q;
	char name[WSP_BUS_CHANNEL_MAX + 1];
	int last;

	if (bus == NULL)
		return;
	TAILQ_FOREACH(q, &bus->reqs, entry)
		if (q->conn == c)
			q->conn = NULL;
	HASH_FIND_PTR(bus->conns, &c, cm);
	while (cm != NULL && (m = TAILQ_FIRST(&cm->members)) != NULL) {
		snprintf(name, sizeof(name), "%s", m->ch->name);
		last = m->ch->n == 1;
		if (cm->n == 1)
			cm = NULL; /* freed with its last member */
		member_free(bus, m);
		bus->be.unsubscribe(bus->be.be, name, c->id, last);
	}
	bus_stats_sync(bus);
}

void
bus_forget_plugin(struct bus *bus, struct wsp_plugin_ctx *ctx)
{
	struct bus_req *q;

	if (bus == NULL)
		return;
	TAILQ_FOREACH(q, &bus->reqs, entry)
		if (q->ctx == ctx)
			q->ctx = NULL;
}

void
bus_free(struct bus *bus)
{
	struct bus_member *m;
	struct bus_cmem *cm, *tmp;
	struct bus_req *q;

	if (bus == NULL)
		return;
	TAILQ_FOREACH(q, &bus->reqs, entry)
		q->ctx = NULL;
	HASH_ITER(hh, bus->conns, cm, tmp) {
		while (cm != NULL && (m = TAILQ_FIRST(&cm->members)) != NULL) {
			if (cm->n == 1)
				cm = NULL;
			member_free(bus, m);
		}
	}
	/* answers still owed come now, with error set, to nobody */
	bus->be.free(bus->be.be);
	while ((q = TAILQ_FIRST(&bus->reqs)) != NULL)
		req_free(q);
	free(bus->out.p);
	free(bus);
}

int
bus_history_save(struct bus *bus, struct outbuf *b)
{
	if (bus == NULL || bus->be.save == NULL)
		return 0;
	return bus->be.save(bus->be.be, b) == -1 ? -1 : 1;
}

int
bus_history_load(struct bus *bus, const uint8_t *p, size_t n, int keep_empty,
    const char **why_r)
{
	int rc;

	if (bus == NULL || bus->be.load == NULL) {
		*why_r = "this bus keeps no history here";
		return -1;
	}
	rc = bus->be.load(bus->be.be, p, n, keep_empty, why_r);
	bus_stats_sync(bus);
	return rc;
}

int
bus_pump(struct bus *bus, int flush, int *fd_r)
{
	*fd_r = -1;
	if (bus == NULL || bus->be.pump == NULL)
		return 0;
	return bus->be.pump(bus->be.be, flush, fd_r);
}

void
bus_history_settled(struct bus *bus)
{
	if (bus == NULL || bus->be.sweep == NULL)
		return;
	bus->be.sweep(bus->be.be);
	bus_stats_sync(bus);
}
