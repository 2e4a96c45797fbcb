/*
 * bus_local.c: the local backend of the bus, for the workers of one daemon.
 *
 * The store: per channel, the last offset given (one sequence per
 * channel), an epoch, the history and the members (connection ids, by
 * worker).  A channel is made by its first publish or subscribe and
 * forgotten once it has neither members nor history; a channel made again
 * starts at offset 1 under a new random epoch, so a client holding an
 * offset of the old one is told it did not recover, never handed the
 * wrong messages.  History is one list per channel and one list of every
 * message in publish order: the oldest message anywhere is the head of
 * the second, so history_ttl and history_memory trim from one end in
 * O(1) per message dropped, and history_size from the channel's own head.
 *
 * Where the store lives:
 *
 *   workers = 1   in the process (bus_local_open); every answer and every
 *                 delivery happens before the call returns.
 *   workers > 1   in the master (bus_hub_*), and each worker reaches it
 *                 over its own socketpair (bus_local_connect) in the frames
 *                 of bus_frame.c.  The master is the one place that
 *                 numbers a channel's messages, and it writes each message
 *                 once to the socket of each worker that has members of
 *                 the channel; a socket is a FIFO, and a worker delivers
 *                 in the order it reads, so every subscriber in every
 *                 worker gets each message exactly once, in publish order.
 *                 A publishing worker delivers to its own subscribers only
 *                 when the master's copy comes back, like every other
 *                 worker: there is no faster local path that could
 *                 overtake an earlier message.  The answer to a subscribe
 *                 with since, its replayed messages and any later message
 *                 are written by the master in that order on one socket,
 *                 so nothing published meanwhile is lost or doubled.
 *
 * Why the master and not shared memory: the master already outlives its
 * workers and restarts them; a store in it survives a worker's crash
 * without a lock a dying worker could leave held, and the same frames are
 * what a successor binary would read on a hand-over.  The cost is one
 * hop through the master per message and per worker, paid only with
 * workers > 1.
 *
 * A worker that dies loses its members (the master drops them); a new
 * worker starts with none.  If the master goes away, a worker's pending
 * answers fail (bus.error) and the worker stops as its control socket
 * tells it to.
 *
 * The master's output to a worker is bounded: a worker that stops reading
 * (stopped, stuck in a plugin, or too slow for the traffic) would
 * otherwise make the master hold every message for it until the watchdog
 * acts, or forever if its loop still turns.  Past BUS_HUB_BACKLOG bytes
 * queued for it, plus history_memory (a whole replay may legitimately
 * wait in the socket), the hub writes it nothing more and tells its owner
 * (bus_hub_on_overflow), which replaces the worker: its clients reconnect
 * and resume their channels from history with "since", where dropping
 * messages silently would break the promise of every message once, in
 * order, and a new kind of message would be one every client must learn.
 */
#include <sys/ioctl.h>
#include <sys/random.h>

#include <poll.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <uthash.h>
#include <zlib.h>

#include "wsplugd.h"

#define BUS_TICK_MS 1000 /* how often history_ttl is applied */

/*
 * The store.
 */

struct hentry {
	TAILQ_ENTRY(hentry) all;
	TAILQ_ENTRY(hentry) in_chan;
	struct schan *ch;
	uint64_t offset;
	uint64_t at; /* monotonic ms of the publish */
	size_t n;
	char data[];
};

struct smember {
	UT_hash_handle hh; /* keyed by id */
	size_t worker;
	char id[BUS_CONN_ID_MAX + 1];
};

struct schan {
	UT_hash_handle hh; /* keyed by name */
	TAILQ_HEAD(hhead, hentry) hist;
	size_t nhist;
	uint64_t index; /* bus_store_save's numbering */
	uint64_t top; /* the last offset given */
	char epoch[17];
	struct smember *members;
	uint64_t nmembers;
	uint32_t *per_worker;
	char name[];
};

struct bus_store {
	struct bus_limits lim;
	size_t nworkers;
	struct schan *chans;
	uint64_t nchans;
	TAILQ_HEAD(, hentry) all;
	uint64_t bytes;
	char epoch[17]; /* the last result's, which outlives its channel */
	const char **ids; /* presence's answer */
	size_t idscap;
};

void
bus_epoch_new(char out[17])
{
	static const char hex[] = "0123456789abcdef";
	static uint64_t counter;
	uint8_t b[8];
	uint64_t v;
	size_t i;

	if (getrandom(b, sizeof(b), GRND_NONBLOCK) != (ssize_t)sizeof(b)) {
		/* no entropy yet: unlikely to repeat is all an epoch needs */
		v = (uint64_t)time(NULL) * 1000003 + (uint64_t)getpid() +
		    ++counter * 0x9e3779b97f4a7c15ULL;
		for (i = 0; i < 8; i++)
			b[i] = (uint8_t)(v >> (8 * i));
	}
	for (i = 0; i < 8; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[16] = '\0';
}

struct bus_store *
bus_store_new(const struct bus_limits *lim, size_t nworkers)
{
	struct bus_store *st;

	if (nworkers == 0 || (st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->lim = *lim;
	st->nworkers = nworkers;
	TAILQ_INIT(&st->all);
	return st;
}

static void
schan_free(struct bus_store *st, struct schan *ch)
{
	struct smember *m, *tmp;

	HASH_ITER(hh, ch->members, m, tmp) {
		HASH_DEL(ch->members, m);
		free(m);
	}
	HASH_DEL(st->chans, ch);
	st->nchans--;
	free(ch->per_worker);
	free(ch);
}

static void
schan_maybe_free(struct bus_store *st, struct schan *ch)
{
	if (ch->nmembers == 0 && ch->nhist == 0)
		schan_free(st, ch);
}

static void
hentry_drop(struct bus_store *st, struct hentry *e)
{
	TAILQ_REMOVE(&st->all, e, all);
	TAILQ_REMOVE(&e->ch->hist, e, in_chan);
	e->ch->nhist--;
	st->bytes -= sizeof(*e) + e->n;
	free(e);
}

void
bus_store_free(struct bus_store *st)
{
	struct schan *ch, *tmp;
	struct hentry *e;

	if (st == NULL)
		return;
	while ((e = TAILQ_FIRST(&st->all)) != NULL)
		hentry_drop(st, e);
	HASH_ITER(hh, st->chans, ch, tmp)
		schan_free(st, ch);
	free(st->ids);
	free(st);
}

static struct schan *
schan_get(struct bus_store *st, const char *name, int create)
{
	struct schan *ch;
	size_t n = strlen(name);

	HASH_FIND(hh, st->chans, name, n, ch);
	if (ch != NULL || !create)
		return ch;
	if ((ch = calloc(1, sizeof(*ch) + n + 1)) == NULL)
		return NULL;
	if ((ch->per_worker = calloc(st->nworkers, sizeof(uint32_t))) == NULL) {
		free(ch);
		return NULL;
	}
	memcpy(ch->name, name, n + 1);
	TAILQ_INIT(&ch->hist);
	bus_epoch_new(ch->epoch);
	HASH_ADD_KEYPTR(hh, st->chans, ch->name, n, ch);
	st->nchans++;
	return ch;
}

/* Trim the oldest messages past the limits; channels left empty go. */
static void
store_trim(struct bus_store *st, uint64_t now, struct schan *keep)
{
	struct hentry *e;
	struct schan *ch;

	while ((e = TAILQ_FIRST(&st->all)) != NULL &&
	    (st->bytes > st->lim.history_memory ||
	    e->at + st->lim.history_ttl <= now)) {
		ch = e->ch;
		hentry_drop(st, e);
		if (ch != keep)
			schan_maybe_free(st, ch);
	}
}

void
bus_store_configure(struct bus_store *st, const struct bus_limits *lim)
{
	struct schan *ch, *tmp;

	st->lim = *lim;
	HASH_ITER(hh, st->chans, ch, tmp) {
		while (ch->nhist > st->lim.history_size)
			hentry_drop(st, TAILQ_FIRST(&ch->hist));
		schan_maybe_free(st, ch);
	}
	/* a shorter ttl is applied by the next expiry */
	store_trim(st, 0, NULL);
}

static void
result_of(struct bus_store *st, struct schan *ch, struct bus_store_result *r)
{
	memcpy(st->epoch, ch->epoch, sizeof(st->epoch));
	r->epoch = st->epoch;
	r->subscribers = ch->nmembers;
	r->per_worker = ch->per_worker;
}

int
bus_store_publish(struct bus_store *st, const char *channel, const char *data,
    size_t n, int transient, uint64_t now, struct bus_store_result *r)
{
	struct schan *ch;
	struct hentry *e;

	memset(r, 0, sizeof(*r));
	r->epoch = "";
	if (transient) { /* to the members there are, nothing kept */
		if ((ch = schan_get(st, channel, 0)) != NULL)
			result_of(st, ch, r);
		return 0;
	}
	if ((ch = schan_get(st, channel, 1)) == NULL)
		return -1;
	r->offset = ++ch->top;
	result_of(st, ch, r);
	if (st->lim.history_size > 0 &&
	    sizeof(*e) + n <= st->lim.history_memory) {
		if ((e = malloc(sizeof(*e) + n)) == NULL) {
			/* the offset is given: history just has a hole,
			 * which recovery reports as not recovered */
			return 0;
		}
		e->ch = ch;
		e->offset = r->offset;
		e->at = now;
		e->n = n;
		memcpy(e->data, data, n);
		TAILQ_INSERT_TAIL(&st->all, e, all);
		TAILQ_INSERT_TAIL(&ch->hist, e, in_chan);
		ch->nhist++;
		st->bytes += sizeof(*e) + n;
		while (ch->nhist > st->lim.history_size)
			hentry_drop(st, TAILQ_FIRST(&ch->hist));
	} else {
		/* nothing kept: what came before is no longer recoverable */
		while ((e = TAILQ_FIRST(&ch->hist)) != NULL)
			hentry_drop(st, e);
	}
	store_trim(st, now, ch);
	/* r->per_worker must stay valid for the caller's delivery */
	if (ch->nmembers == 0 && ch->nhist == 0) {
		r->per_worker = NULL;
		schan_free(st, ch);
	}
	return 0;
}

/* Are the messages after since all in ch's history? */
static int
store_recoverable(const struct schan *ch, const struct wsp_bus_since *since)
{
	const struct hentry *first = TAILQ_FIRST(&ch->hist);

	if (since->epoch == NULL || strcmp(since->epoch, ch->epoch) != 0 ||
	    since->offset > ch->top)
		return 0;
	if (since->offset == ch->top)
		return 1;
	/* history is contiguous: from its first entry to top */
	return first != NULL && first->offset <= since->offset + 1 &&
	    ch->nhist == ch->top - first->offset + 1;
}

int
bus_store_subscribe(struct bus_store *st, const char *channel, size_t worker,
    const char *conn, const struct wsp_bus_since *since,
    struct bus_store_result *r)
{
	struct schan *ch;
	struct smember *m;
	size_t n = strlen(conn);

	memset(r, 0, sizeof(*r));
	r->epoch = "";
	if (worker >= st->nworkers || n > BUS_CONN_ID_MAX ||
	    (ch = schan_get(st, channel, 1)) == NULL)
		return -1;
	HASH_FIND(hh, ch->members, conn, n, m);
	if (m == NULL) {
		if ((m = calloc(1, sizeof(*m))) == NULL) {
			schan_maybe_free(st, ch);
			return -1;
		}
		memcpy(m->id, conn, n + 1);
		m->worker = worker;
		HASH_ADD(hh, ch->members, id, n, m);
		ch->nmembers++;
		ch->per_worker[worker]++;
	}
	r->offset = ch->top;
	r->recovered = since != NULL && store_recoverable(ch, since);
	result_of(st, ch, r);
	return 0;
}

void
bus_store_replay(struct bus_store *st, const char *channel, uint64_t after,
    void (*fn)(void *, uint64_t, const char *, size_t), void *arg)
{
	struct schan *ch = schan_get(st, channel, 0);
	struct hentry *e;

	if (ch == NULL)
		return;
	/* O(history_size) from the head; a replay is per subscribe */
	TAILQ_FOREACH(e, &ch->hist, in_chan)
		if (e->offset > after)
			fn(arg, e->offset, e->data, e->n);
}

static void
smember_remove(struct bus_store *st, struct schan *ch, struct smember *m)
{
	HASH_DEL(ch->members, m);
	ch->nmembers--;
	ch->per_worker[m->worker]--;
	free(m);
	(void)st;
}

void
bus_store_unsubscribe(struct bus_store *st, const char *channel,
    size_t worker, const char *conn)
{
	struct schan *ch = schan_get(st, channel, 0);
	struct smember *m;

	if (ch == NULL)
		return;
	HASH_FIND(hh, ch->members, conn, strlen(conn), m);
	if (m == NULL || m->worker != worker)
		return;
	smember_remove(st, ch, m);
	schan_maybe_free(st, ch);
}

void
bus_store_worker_gone(struct bus_store *st, size_t worker)
{
	struct schan *ch, *tmp;
	struct smember *m, *mtmp;

	if (worker >= st->nworkers)
		return;
	/* O(members of every channel): once per worker death */
	HASH_ITER(hh, st->chans, ch, tmp) {
		if (ch->per_worker[worker] == 0)
			continue;
		HASH_ITER(hh, ch->members, m, mtmp)
			if (m->worker == worker)
				smember_remove(st, ch, m);
		schan_maybe_free(st, ch);
	}
}

size_t
bus_store_presence(struct bus_store *st, const char *channel, size_t max,
    const char **ids_r, uint64_t *total_r)
{
	struct schan *ch = schan_get(st, channel, 0);
	struct smember *m, *tmp;
	size_t n = 0;

	*total_r = 0;
	if (ch == NULL)
		return 0;
	*total_r = ch->nmembers;
	HASH_ITER(hh, ch->members, m, tmp) {
		if (n == max)
			break;
		ids_r[n++] = m->id;
	}
	return n;
}

void
bus_store_expire(struct bus_store *st, uint64_t now)
{
	store_trim(st, now, NULL);
}

void
bus_store_stats(const struct bus_store *st, uint64_t *channels_r,
    uint64_t *bytes_r)
{
	*channels_r = st->nchans;
	*bytes_r = st->bytes;
}

/*
 * The store as bytes, for the process that comes after this one: a
 * hand-over's successor (handover.c) or, under systemd, this daemon
 * started again after a crash (histstore.c).  Members are not in it (a
 * successor adopts its connections again; after a crash there are
 * none); every channel is, with its epoch and its last offset, so that
 * offsets continue and a client's since finds the same epoch.
 *
 *   header   magic "WSBH", version, 0, payload length, CRC-32 of payload
 *   payload  u32 channels; each: u8 name length, name, 16 epoch digits,
 *            u64 top
 *            u32 messages, oldest first (the store's own order); each:
 *            u32 channel index, u64 offset, u64 age in ms, u32 length,
 *            the message
 *
 * Little-endian.  The reader trusts nothing: the CRC, every length
 * against what is left, names as bus.c takes them, epochs as 16 hex
 * digits, offsets rising within a channel and never past its top, no
 * name twice, nothing after the last message.  What it accepts is then
 * cut to this process's limits (history_size, history_ttl,
 * history_memory) as a publish would.
 */

#define BH_MAGIC 0x48425357u /* "WSBH" as little-endian bytes */
#define BH_VERSION 1

int
bus_store_save(struct bus_store *st, uint64_t now, struct outbuf *b)
{
	struct schan *ch, *tmp;
	struct hentry *e;
	size_t start = b->len, len;
	uint64_t i = 0, nent = 0;
	uint32_t crc;
	int rc = 0;

	rc |= outbuf_put_le(b, BH_MAGIC, 4);
	rc |= outbuf_put_le(b, BH_VERSION, 2);
	rc |= outbuf_put_le(b, 0, 2);
	rc |= outbuf_put_le(b, 0, 8); /* length and CRC, filled in below */
	rc |= outbuf_put_le(b, st->nchans, 4);
	/* a channel's index is its place in this walk */
	HASH_ITER(hh, st->chans, ch, tmp) {
		size_t n = strlen(ch->name);

		ch->index = i++;
		rc |= outbuf_put_le(b, n, 1);
		rc |= outbuf_put(b, ch->name, n);
		rc |= outbuf_put(b, ch->epoch, 16);
		rc |= outbuf_put_le(b, ch->top, 8);
	}
	TAILQ_FOREACH(e, &st->all, all)
		nent++;
	rc |= outbuf_put_le(b, nent, 4);
	TAILQ_FOREACH(e, &st->all, all) {
		rc |= outbuf_put_le(b, e->ch->index, 4);
		rc |= outbuf_put_le(b, e->offset, 8);
		rc |= outbuf_put_le(b, e->at < now ? now - e->at : 0, 8);
		rc |= outbuf_put_le(b, e->n, 4);
		rc |= outbuf_put(b, e->data, e->n);
		if (b->len - start > BUS_HISTORY_MAX)
			break; /* history_memory may be larger: fail early */
	}
	if (rc != 0 || b->len - start > BUS_HISTORY_MAX) {
		b->len = start;
		return -1;
	}
	len = b->len - start - 16;
	crc = (uint32_t)crc32(0L, Z_NULL, 0);
	if (len > 0)
		crc = (uint32_t)crc32(crc, (const Bytef *)b->p + start + 16,
		    (uInt)len);
	outbuf_set_le(b->p + start + 8, len, 4);
	outbuf_set_le(b->p + start + 12, crc, 4);
	return 0;
}

/* Everything goes: the store is as bus_store_new left it. */
static void
store_clear(struct bus_store *st)
{
	struct schan *ch, *tmp;
	struct hentry *e;

	while ((e = TAILQ_FIRST(&st->all)) != NULL)
		hentry_drop(st, e);
	HASH_ITER(hh, st->chans, ch, tmp)
		schan_free(st, ch);
}

static int
bh_valid_name(const uint8_t *p, size_t n)
{
	size_t i;

	if (n == 0 || n > WSP_BUS_CHANNEL_MAX ||
	    utf8_validate(UTF8_ACCEPT, p, n) != UTF8_ACCEPT)
		return 0;
	for (i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

static int
bh_valid_epoch(const uint8_t *p)
{
	size_t i;

	for (i = 0; i < 16; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

int
bus_store_load(struct bus_store *st, const uint8_t *p, size_t n,
    uint64_t now, const char **why_r)
{
	struct le_rd r = { p, n, NULL };
	struct schan **chans = NULL, *ch, *tmp;
	struct hentry *e, *last;
	const uint8_t *name, *epoch, *data;
	uint64_t offset, age, nchans, nent, i, idx, top;
	uint32_t len, crc, size;
	char buf[WSP_BUS_CHANNEL_MAX + 1];

	if (st->nchans != 0 || !TAILQ_EMPTY(&st->all)) {
		*why_r = "the store is not empty";
		return -1;
	}
	if (le_get(&r, 4) != BH_MAGIC) {
		*why_r = r.why != NULL ? r.why : "not a bus history (bad magic)";
		return -1;
	}
	if (le_get(&r, 2) != BH_VERSION || le_get(&r, 2) != 0) {
		*why_r = r.why != NULL ? r.why : "a bus history of another version";
		return -1;
	}
	len = (uint32_t)le_get(&r, 4);
	crc = (uint32_t)le_get(&r, 4);
	if (r.why == NULL && len != r.n)
		r.why = "length differs from the bytes given";
	if (r.why == NULL && (uint32_t)crc32(crc32(0L, Z_NULL, 0),
	    (const Bytef *)r.p, (uInt)r.n) != crc)
		r.why = "CRC mismatch";
	nchans = le_get(&r, 4);
	/* each channel takes 26 bytes at least: a count past that lies */
	if (r.why == NULL && nchans > r.n / 26)
		r.why = "more channels than bytes";
	if (r.why == NULL && nchans > 0 &&
	    (chans = calloc(nchans, sizeof(*chans))) == NULL)
		r.why = "out of memory";
	for (i = 0; i < nchans && r.why == NULL; i++) {
		size = (uint32_t)le_get(&r, 1);
		name = le_take(&r, size);
		epoch = le_take(&r, 16);
		top = le_get(&r, 8);
		if (r.why != NULL)
			break;
		if (!bh_valid_name(name, size)) {
			r.why = "bad channel name";
			break;
		}
		if (!bh_valid_epoch(epoch)) {
			r.why = "bad epoch";
			break;
		}
		memcpy(buf, name, size);
		buf[size] = '\0';
		if (schan_get(st, buf, 0) != NULL) {
			r.why = "a channel twice";
			break;
		}
		if ((ch = schan_get(st, buf, 1)) == NULL) {
			r.why = "out of memory";
			break;
		}
		memcpy(ch->epoch, epoch, 16);
		ch->epoch[16] = '\0';
		ch->top = top;
		chans[i] = ch;
	}
	nent = le_get(&r, 4);
	for (i = 0; i < nent && r.why == NULL; i++) {
		idx = le_get(&r, 4);
		offset = le_get(&r, 8);
		age = le_get(&r, 8);
		size = (uint32_t)le_get(&r, 4);
		data = le_take(&r, size);
		if (r.why != NULL)
			break;
		if (idx >= nchans) {
			r.why = "a message of no channel";
			break;
		}
		ch = chans[idx];
		last = TAILQ_LAST(&ch->hist, hhead);
		if (offset == 0 || offset > ch->top ||
		    (last != NULL && offset <= last->offset)) {
			r.why = "bad message offset";
			break;
		}
		if ((e = malloc(sizeof(*e) + size)) == NULL) {
			r.why = "out of memory";
			break;
		}
		e->ch = ch;
		e->offset = offset;
		e->at = age < now ? now - age : 0;
		e->n = size;
		if (size > 0)
			memcpy(e->data, data, size);
		TAILQ_INSERT_TAIL(&st->all, e, all);
		TAILQ_INSERT_TAIL(&ch->hist, e, in_chan);
		ch->nhist++;
		st->bytes += sizeof(*e) + size;
	}
	if (r.why == NULL && r.n != 0)
		r.why = "bytes after the last message";
	free(chans);
	if (r.why != NULL) {
		store_clear(st);
		*why_r = r.why;
		return -1;
	}
	/* this process's limits, which may be smaller than the writer's;
	 * channels without history stay for their members to come back */
	HASH_ITER(hh, st->chans, ch, tmp)
		while (ch->nhist > st->lim.history_size)
			hentry_drop(st, TAILQ_FIRST(&ch->hist));
	while ((e = TAILQ_FIRST(&st->all)) != NULL &&
	    (st->bytes > st->lim.history_memory ||
	    e->at + st->lim.history_ttl <= now))
		hentry_drop(st, e);
	return 0;
}

void
bus_store_sweep(struct bus_store *st)
{
	struct schan *ch, *tmp;

	HASH_ITER(hh, st->chans, ch, tmp)
		schan_maybe_free(st, ch);
}

/* presence's answer: room for max ids */
static const char **
store_ids(struct bus_store *st, size_t max)
{
	const char **p;

	if (max <= st->idscap)
		return st->ids;
	if ((p = realloc(st->ids, max * sizeof(*p))) == NULL)
		return NULL;
	st->ids = p;
	st->idscap = max;
	return p;
}

#define PRESENCE_MAX 10000 /* ids in one answer, whatever is asked */

/*
 * One process: the store right here.
 */

struct bus_inproc {
	struct bus_store *st;
	struct bus_sink sink;
	struct event *tick;
};

static void
inproc_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bus_inproc *b = arg;

	(void)fd;
	(void)what;
	bus_store_expire(b->st, clock_mono_ms());
}

static void
inproc_configure(void *be, const struct bus_limits *lim)
{
	struct bus_inproc *b = be;

	bus_store_configure(b->st, lim);
}

static void
inproc_publish(void *be, const char *channel, const char *conn,
    unsigned flags, const char *data, size_t n, bus_done_fn *done, void *arg)
{
	struct bus_inproc *b = be;
	struct bus_store_result r;
	struct bus_answer a;
	char epoch[17];

	memset(&a, 0, sizeof(a));
	if (bus_store_publish(b->st, channel, data, n,
	    (flags & WSP_BUS_TRANSIENT) != 0, clock_mono_ms(), &r) == -1) {
		a.error = -1;
		a.epoch = "";
		if (done != NULL)
			done(arg, &a);
		return;
	}
	snprintf(epoch, sizeof(epoch), "%s", r.epoch);
	if (r.subscribers > 0)
		b->sink.deliver(b->sink.arg, channel, r.offset, epoch,
		    (flags & WSP_BUS_NOT_SELF) ? conn : "", data, n);
	a.offset = r.offset;
	a.epoch = epoch;
	a.subscribers = r.subscribers;
	if (done != NULL)
		done(arg, &a);
}

static void
inproc_subscribe(void *be, const char *channel, const char *conn, int first,
    const struct wsp_bus_since *since, bus_replay_fn *replay,
    bus_done_fn *done, void *arg)
{
	struct bus_inproc *b = be;
	struct bus_store_result r;
	struct bus_answer a;
	char epoch[17];

	(void)first;
	memset(&a, 0, sizeof(a));
	if (bus_store_subscribe(b->st, channel, 0, conn, since, &r) == -1) {
		a.error = -1;
		a.epoch = "";
		done(arg, &a);
		return;
	}
	snprintf(epoch, sizeof(epoch), "%s", r.epoch);
	a.recovered = r.recovered;
	a.offset = r.offset;
	a.epoch = epoch;
	a.subscribers = r.subscribers;
	if (r.recovered)
		bus_store_replay(b->st, channel, since->offset, replay, arg);
	done(arg, &a);
}

static void
inproc_unsubscribe(void *be, const char *channel, const char *conn, int last)
{
	struct bus_inproc *b = be;

	(void)last;
	bus_store_unsubscribe(b->st, channel, 0, conn);
}

static void
inproc_presence(void *be, const char *channel, size_t max, bus_done_fn *done,
    void *arg)
{
	struct bus_inproc *b = be;
	struct bus_answer a;
	const char **ids;

	memset(&a, 0, sizeof(a));
	a.epoch = "";
	if (max > PRESENCE_MAX)
		max = PRESENCE_MAX;
	if ((ids = store_ids(b->st, max > 0 ? max : 1)) == NULL) {
		a.error = -1;
		done(arg, &a);
		return;
	}
	a.nids = bus_store_presence(b->st, channel, max, ids, &a.subscribers);
	a.ids = ids;
	done(arg, &a);
}

static void
inproc_stats(void *be, uint64_t *channels_r, uint64_t *bytes_r)
{
	struct bus_inproc *b = be;

	bus_store_stats(b->st, channels_r, bytes_r);
}

static int
inproc_save(void *be, struct outbuf *b)
{
	struct bus_inproc *bi = be;

	return bus_store_save(bi->st, clock_mono_ms(), b);
}

static int
inproc_load(void *be, const uint8_t *p, size_t n, int keep_empty,
    const char **why_r)
{
	struct bus_inproc *b = be;

	if (bus_store_load(b->st, p, n, clock_mono_ms(), why_r) == -1)
		return -1;
	if (!keep_empty)
		bus_store_sweep(b->st);
	return 0;
}

static void
inproc_sweep(void *be)
{
	struct bus_inproc *b = be;

	bus_store_sweep(b->st);
}

static void
inproc_free(void *be)
{
	struct bus_inproc *b = be;

	if (b->tick != NULL)
		event_free(b->tick);
	bus_store_free(b->st);
	free(b);
}

/* The in-process backend's table; bus_local_open fills in be. */
static const struct bus_backend inproc_ops = {
	.name = "local",
	.configure = inproc_configure,
	.publish = inproc_publish,
	.subscribe = inproc_subscribe,
	.unsubscribe = inproc_unsubscribe,
	.presence = inproc_presence,
	.stats = inproc_stats,
	.save = inproc_save,
	.load = inproc_load,
	.sweep = inproc_sweep,
	.free = inproc_free,
};

int
bus_local_open(struct bus_backend *bk, struct event_base *base,
    const struct bus_limits *lim, const struct bus_sink *sink)
{
	struct timeval tv = { BUS_TICK_MS / 1000, 0 };
	struct bus_inproc *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return -1;
	b->sink = *sink;
	if ((b->st = bus_store_new(lim, 1)) == NULL ||
	    (b->tick = event_new(base, -1, EV_PERSIST, inproc_tick_cb, b)) ==
	    NULL || event_add(b->tick, &tv) == -1) {
		inproc_free(b);
		return -1;
	}
	*bk = inproc_ops;
	bk->be = b;
	return 0;
}

/*
 * Frames on a bufferevent, both sides.
 */

static int
frame_send(struct bufferevent *bev, const struct bus_frame *f)
{
	uint8_t head[BUS_FRAME_HEAD_MAX];
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t hn = bus_frame_encode_head(f, head);

	if (evbuffer_add(out, head, hn) == -1 ||
	    (f->len > 0 && evbuffer_add(out, f->data, f->len) == -1))
		return -1;
	return 0;
}

/* Hand every complete frame in to fn; -1 on a bad one (why_r set) or
 * when fn says to stop reading. */
static int
frames_read(struct evbuffer *in, int (*fn)(void *, const struct bus_frame *),
    void *arg, const char **why_r)
{
	uint8_t prefix[BUS_FRAME_PREFIX];
	struct bus_frame f;
	uint32_t n;
	uint8_t *p;

	while (evbuffer_get_length(in) >= BUS_FRAME_PREFIX) {
		evbuffer_copyout(in, prefix, sizeof(prefix));
		if (bus_frame_length(prefix, &n) == -1) {
			*why_r = "bad frame length";
			return -1;
		}
		if (evbuffer_get_length(in) < BUS_FRAME_PREFIX + (size_t)n)
			break;
		if ((p = evbuffer_pullup(in, BUS_FRAME_PREFIX + (ssize_t)n)) ==
		    NULL) {
			*why_r = "out of memory";
			return -1;
		}
		if (bus_frame_decode(p + BUS_FRAME_PREFIX, n, &f, why_r) == -1)
			return -1;
		if (fn(arg, &f) == -1) {
			*why_r = NULL;
			return -1;
		}
		evbuffer_drain(in, BUS_FRAME_PREFIX + (size_t)n);
	}
	return 0;
}

/*
 * A worker: the store is the master's.
 */

struct remote_req {
	TAILQ_ENTRY(remote_req) entry;
	uint32_t id;
	bus_replay_fn *replay;
	bus_done_fn *done;
	void *arg;
};

struct bus_remote {
	struct bufferevent *bev;
	struct bus_sink sink;
	TAILQ_HEAD(, remote_req) reqs;
	uint32_t next_id;
};

static void
remote_fail_all(struct bus_remote *b)
{
	struct remote_req *q;
	struct bus_answer a;

	memset(&a, 0, sizeof(a));
	a.error = -1;
	a.epoch = "";
	while ((q = TAILQ_FIRST(&b->reqs)) != NULL) {
		TAILQ_REMOVE(&b->reqs, q, entry);
		q->done(q->arg, &a);
		free(q);
	}
}

static void
remote_lost(struct bus_remote *b, const char *why)
{
	log_msg(WSP_LOG_ERROR, "bus.error", "the master's bus: %s: channels "
	    "stop working in this worker", why);
	if (b->bev != NULL)
		bufferevent_free(b->bev);
	b->bev = NULL;
	remote_fail_all(b);
}

static struct remote_req *
remote_req_new(struct bus_remote *b, bus_replay_fn *replay, bus_done_fn *done,
    void *arg)
{
	struct remote_req *q;

	if (b->bev == NULL || (q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if (++b->next_id == 0)
		b->next_id = 1; /* 0: no answer wanted */
	q->id = b->next_id;
	q->replay = replay;
	q->done = done;
	q->arg = arg;
	TAILQ_INSERT_TAIL(&b->reqs, q, entry);
	return q;
}

static struct remote_req *
remote_req_find(struct bus_remote *b, uint32_t id)
{
	struct remote_req *q;

	/* answers come in request order: the head, but for a stray id */
	TAILQ_FOREACH(q, &b->reqs, entry)
		if (q->id == id)
			return q;
	return NULL;
}

static int
remote_frame(void *arg, const struct bus_frame *f)
{
	struct bus_remote *b = arg;
	struct remote_req *q = NULL;
	struct bus_answer a;
	const char *ids[PRESENCE_MAX], *p, *end, *nl;

	if (f->type != BF_MSG && (q = remote_req_find(b, f->id)) == NULL) {
		log_msg(WSP_LOG_ERROR, "bus.error", "the master answered "
		    "request %u, which is not pending", (unsigned)f->id);
		return 0;
	}
	memset(&a, 0, sizeof(a));
	a.error = (f->flags & BFF_ERR) ? -1 : 0;
	a.recovered = (f->flags & BFF_RECOVERED) != 0;
	a.offset = f->n1;
	a.epoch = f->epoch;
	a.subscribers = f->n2;
	switch (f->type) {
	case BF_MSG:
		b->sink.deliver(b->sink.arg, f->channel, f->n1, f->epoch,
		    f->conn, f->data, f->len);
		return b->bev == NULL ? -1 : 0;
	case BF_REPLAY:
		q->replay(q->arg, f->n1, f->data, f->len);
		return b->bev == NULL ? -1 : 0;
	case BF_PRESACK:
		a.subscribers = f->n1;
		a.ids = ids;
		/* the ids end at their '\n': C strings in place (the
		 * frame is in the input buffer, ours until drained) */
		for (p = f->data, end = f->data + f->len; p < end &&
		    a.nids < PRESENCE_MAX; p = nl + 1) {
			if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
				break;
			*(char *)(uintptr_t)nl = '\0';
			ids[a.nids++] = p;
		}
		break;
	case BF_PUBACK:
	case BF_SUBACK:
		break;
	default:
		log_msg(WSP_LOG_ERROR, "bus.error", "the master sent a frame "
		    "of type %u", f->type);
		return 0;
	}
	TAILQ_REMOVE(&b->reqs, q, entry);
	q->done(q->arg, &a);
	free(q);
	return b->bev == NULL ? -1 : 0;
}

static void
remote_read_cb(struct bufferevent *bev, void *arg)
{
	struct bus_remote *b = arg;
	const char *why = NULL;

	if (frames_read(bufferevent_get_input(bev), remote_frame, b, &why) ==
	    -1 && why != NULL)
		remote_lost(b, why);
}

static void
remote_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		remote_lost(arg, (what & BEV_EVENT_EOF) ? "closed" :
		    strerror(EVUTIL_SOCKET_ERROR()));
}

static void
remote_send(struct bus_remote *b, const struct bus_frame *f)
{
	if (b->bev != NULL && frame_send(b->bev, f) == -1)
		remote_lost(b, "out of memory");
}

static void
frame_init(struct bus_frame *f, uint8_t type, const char *channel)
{
	memset(f, 0, sizeof(*f));
	f->type = type;
	snprintf(f->channel, sizeof(f->channel), "%s", channel);
}

static void
remote_configure(void *be, const struct bus_limits *lim)
{
	(void)be; /* the master's store has the master's configuration */
	(void)lim;
}

static void
remote_publish(void *be, const char *channel, const char *conn,
    unsigned flags, const char *data, size_t n, bus_done_fn *done, void *arg)
{
	struct bus_remote *b = be;
	struct remote_req *q = NULL;
	struct bus_answer a;
	struct bus_frame f;

	if (done != NULL && (q = remote_req_new(b, NULL, done, arg)) == NULL) {
		memset(&a, 0, sizeof(a));
		a.error = -1;
		a.epoch = "";
		done(arg, &a);
		return;
	}
	frame_init(&f, BF_PUB, channel);
	f.flags = (uint8_t)flags;
	f.id = q != NULL ? q->id : 0;
	snprintf(f.conn, sizeof(f.conn), "%s", conn);
	f.data = data;
	f.len = n;
	remote_send(b, &f);
}

static void
remote_subscribe(void *be, const char *channel, const char *conn, int first,
    const struct wsp_bus_since *since, bus_replay_fn *replay,
    bus_done_fn *done, void *arg)
{
	struct bus_remote *b = be;
	struct remote_req *q;
	struct bus_answer a;
	struct bus_frame f;

	(void)first;
	if ((q = remote_req_new(b, replay, done, arg)) == NULL) {
		memset(&a, 0, sizeof(a));
		a.error = -1;
		a.epoch = "";
		done(arg, &a);
		return;
	}
	frame_init(&f, BF_SUB, channel);
	f.id = q->id;
	snprintf(f.conn, sizeof(f.conn), "%s", conn);
	if (since != NULL) {
		f.flags = BFF_SINCE;
		f.n1 = since->offset;
		snprintf(f.epoch, sizeof(f.epoch), "%s",
		    since->epoch != NULL ? since->epoch : "");
	}
	remote_send(b, &f);
}

static void
remote_unsubscribe(void *be, const char *channel, const char *conn, int last)
{
	struct bus_frame f;

	(void)last;
	frame_init(&f, BF_UNSUB, channel);
	snprintf(f.conn, sizeof(f.conn), "%s", conn);
	remote_send(be, &f);
}

static void
remote_presence(void *be, const char *channel, size_t max, bus_done_fn *done,
    void *arg)
{
	struct bus_remote *b = be;
	struct remote_req *q;
	struct bus_answer a;
	struct bus_frame f;

	if ((q = remote_req_new(b, NULL, done, arg)) == NULL) {
		memset(&a, 0, sizeof(a));
		a.error = -1;
		a.epoch = "";
		done(arg, &a);
		return;
	}
	frame_init(&f, BF_PRES, channel);
	f.id = q->id;
	f.n1 = max;
	remote_send(b, &f);
}

static void
remote_stats(void *be, uint64_t *channels_r, uint64_t *bytes_r)
{
	(void)be; /* the master's: summed into /metrics from its slot */
	*channels_r = *bytes_r = 0;
}

static void
remote_free(void *be)
{
	struct bus_remote *b = be;

	if (b->bev != NULL)
		bufferevent_free(b->bev);
	b->bev = NULL;
	remote_fail_all(b);
	free(b);
}

/*
 * A worker's hand-over: the loop stands still, so the bufferevent does
 * not move the bytes; this does, through the buffers the bufferevent
 * keeps frozen at the end it moves itself.  Flushing blocks (a second
 * at most without progress): the master reads all along.
 */
static int
remote_pump(void *be, int flush, int *fd_r)
{
	struct bus_remote *b = be;
	struct evbuffer *buf;
	struct pollfd p;
	int fd, n, rc = 0;

	if (b->bev == NULL)
		return -1;
	*fd_r = fd = bufferevent_getfd(b->bev);
	if (flush == 2) {
		/* settle: sent, and every request answered (a connection
		 * adopted is a member from its subscribe's answer on) */
		if (remote_pump(be, 1, fd_r) == -1)
			return -1;
		while (!TAILQ_EMPTY(&b->reqs)) {
			p.fd = fd;
			p.events = POLLIN;
			if (poll(&p, 1, 5000) <= 0 ||
			    remote_pump(be, 0, fd_r) == -1)
				return -1;
		}
		return 0;
	}
	if (flush) {
		buf = bufferevent_get_output(b->bev);
		evbuffer_unfreeze(buf, 1);
		while (evbuffer_get_length(buf) > 0 && rc == 0) {
			if (evbuffer_write(buf, fd) >= 0)
				continue;
			if (errno != EAGAIN && errno != EINTR)
				rc = -1;
			p.fd = fd;
			p.events = POLLOUT;
			if (rc == 0 && poll(&p, 1, 1000) <= 0)
				rc = -1;
		}
		evbuffer_freeze(buf, 1);
		return rc;
	}
	buf = bufferevent_get_input(b->bev);
	evbuffer_unfreeze(buf, 0);
	while ((n = evbuffer_read(buf, fd, -1)) > 0)
		;
	evbuffer_freeze(buf, 0);
	remote_read_cb(b->bev, b);
	return n == 0 ? -1 : 0; /* 0 read: the master is gone */
}

/* The master's backend's table; bus_local_connect fills in be. */
static const struct bus_backend remote_ops = {
	.name = "local",
	.configure = remote_configure,
	.publish = remote_publish,
	.subscribe = remote_subscribe,
	.unsubscribe = remote_unsubscribe,
	.presence = remote_presence,
	.stats = remote_stats,
	.pump = remote_pump,
	.free = remote_free,
};

int
bus_local_connect(struct bus_backend *bk, struct event_base *base, int fd,
    const struct bus_sink *sink)
{
	struct bus_remote *b;

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		close(fd);
		return -1;
	}
	TAILQ_INIT(&b->reqs);
	b->sink = *sink;
	evutil_make_socket_nonblocking(fd);
	if ((b->bev = bufferevent_socket_new(base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		free(b);
		return -1;
	}
	bufferevent_setcb(b->bev, remote_read_cb, NULL, remote_event_cb, b);
	bufferevent_enable(b->bev, EV_READ | EV_WRITE);
	*bk = remote_ops;
	bk->be = b;
	return 0;
}

/*
 * The master: the store and every worker's socket.
 */

struct hub_worker {
	struct bus_hub *h;
	size_t i;
	struct bufferevent *bev;
	int over; /* past its backlog: written nothing until replaced */
};

struct bus_hub {
	struct bus_store *st;
	bus_overflow_fn *overflow;
	void *overflow_arg;
	struct event_base *base;
	struct hub_worker *w;
	size_t nw;
	struct event *tick;
	struct evbuffer *ids; /* a presence answer being built */
};

static void
hub_answer(struct hub_worker *w, uint8_t type, const struct bus_frame *q,
    const struct bus_store_result *r, int ok)
{
	struct bus_frame f;

	frame_init(&f, type, q->channel);
	f.id = q->id;
	f.flags = (uint8_t)(ok ? 0 : BFF_ERR);
	if (ok) {
		f.flags |= r->recovered ? BFF_RECOVERED : 0;
		f.n1 = r->offset;
		f.n2 = r->subscribers;
		snprintf(f.epoch, sizeof(f.epoch), "%s", r->epoch);
	}
	if (w->bev != NULL)
		frame_send(w->bev, &f);
}

/* May w be sent one more message?  Not once its socket holds more than
 * its budget: then its owner is told, once. */
static int
hub_room(struct hub_worker *w)
{
	size_t queued = evbuffer_get_length(bufferevent_get_output(w->bev));
	uint64_t budget = BUS_HUB_BACKLOG + w->h->st->lim.history_memory;

	if (w->over)
		return 0;
	if (queued <= budget)
		return 1;
	w->over = 1;
	if (w->h->overflow != NULL)
		w->h->overflow(w->h->overflow_arg, w->i, queued, budget);
	else
		log_msg(WSP_LOG_ERROR, "bus.error", "worker %zu's bus socket "
		    "holds %zu bytes: it gets no more messages", w->i + 1,
		    queued);
	return 0;
}

static void
hub_publish(struct hub_worker *w, const struct bus_frame *q)
{
	struct bus_hub *h = w->h;
	struct bus_store_result r;
	struct bus_frame f;
	size_t j;
	int ok;

	ok = bus_store_publish(h->st, q->channel, q->data, q->len,
	    (q->flags & WSP_BUS_TRANSIENT) != 0, clock_mono_ms(), &r) == 0;
	if (ok && r.per_worker != NULL) {
		frame_init(&f, BF_MSG, q->channel);
		f.n1 = r.offset;
		snprintf(f.epoch, sizeof(f.epoch), "%s", r.epoch);
		if (q->flags & WSP_BUS_NOT_SELF)
			memcpy(f.conn, q->conn, sizeof(f.conn));
		f.data = q->data;
		f.len = q->len;
		/* once to each worker with members: its subscribers each
		 * get it from there */
		for (j = 0; j < h->nw; j++)
			if (r.per_worker[j] > 0 && h->w[j].bev != NULL &&
			    hub_room(&h->w[j]))
				frame_send(h->w[j].bev, &f);
	}
	if (q->id != 0)
		hub_answer(w, BF_PUBACK, q, &r, ok);
}

struct hub_replay {
	struct hub_worker *w;
	const struct bus_frame *q;
};

static void
hub_replay_cb(void *arg, uint64_t offset, const char *data, size_t n)
{
	struct hub_replay *hr = arg;
	struct bus_frame f;

	if (hr->w->bev == NULL)
		return;
	frame_init(&f, BF_REPLAY, hr->q->channel);
	f.id = hr->q->id;
	f.n1 = offset;
	f.data = data;
	f.len = n;
	frame_send(hr->w->bev, &f);
}

static void
hub_subscribe(struct hub_worker *w, const struct bus_frame *q)
{
	struct wsp_bus_since since = { q->n1, q->epoch };
	struct hub_replay hr = { w, q };
	struct bus_store_result r;
	int ok;

	ok = bus_store_subscribe(w->h->st, q->channel, w->i, q->conn,
	    (q->flags & BFF_SINCE) ? &since : NULL, &r) == 0;
	if (ok && r.recovered)
		bus_store_replay(w->h->st, q->channel, since.offset,
		    hub_replay_cb, &hr);
	hub_answer(w, BF_SUBACK, q, &r, ok);
}

static void
hub_presence(struct hub_worker *w, const struct bus_frame *q)
{
	struct bus_hub *h = w->h;
	struct bus_frame f;
	const char **ids;
	uint64_t total = 0;
	size_t max = q->n1 > PRESENCE_MAX ? PRESENCE_MAX : (size_t)q->n1;
	size_t n = 0, i;

	frame_init(&f, BF_PRESACK, q->channel);
	f.id = q->id;
	evbuffer_drain(h->ids, evbuffer_get_length(h->ids));
	if ((ids = store_ids(h->st, max > 0 ? max : 1)) == NULL)
		f.flags = BFF_ERR;
	else
		n = bus_store_presence(h->st, q->channel, max, ids, &total);
	for (i = 0; i < n; i++)
		evbuffer_add_printf(h->ids, "%s\n", ids[i]);
	f.n1 = total;
	f.len = evbuffer_get_length(h->ids);
	f.data = (const char *)evbuffer_pullup(h->ids, -1);
	if (f.data == NULL)
		f.len = 0;
	if (w->bev != NULL)
		frame_send(w->bev, &f);
}

static int
hub_frame(void *arg, const struct bus_frame *f)
{
	struct hub_worker *w = arg;

	switch (f->type) {
	case BF_PUB:
		hub_publish(w, f);
		break;
	case BF_SUB:
		hub_subscribe(w, f);
		break;
	case BF_UNSUB:
		bus_store_unsubscribe(w->h->st, f->channel, w->i, f->conn);
		break;
	case BF_PRES:
		hub_presence(w, f);
		break;
	default:
		log_msg(WSP_LOG_ERROR, "bus.error", "worker %zu sent a frame "
		    "of type %u", w->i + 1, f->type);
		break;
	}
	return 0;
}

static void
hub_drop(struct hub_worker *w, const char *why)
{
	if (why != NULL)
		log_msg(WSP_LOG_ERROR, "bus.error", "worker %zu's bus socket: "
		    "%s: its channels are dropped", w->i + 1, why);
	if (w->bev != NULL)
		bufferevent_free(w->bev);
	w->bev = NULL;
	bus_store_worker_gone(w->h->st, w->i);
}

static void
hub_read_cb(struct bufferevent *bev, void *arg)
{
	const char *why = NULL;

	if (frames_read(bufferevent_get_input(bev), hub_frame, arg, &why) ==
	    -1)
		hub_drop(arg, why);
}

static void
hub_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	/* a worker's socket closes when it exits: SIGCHLD tells how */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		hub_drop(arg, NULL);
}

static void
hub_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bus_hub *h = arg;

	(void)fd;
	(void)what;
	bus_store_expire(h->st, clock_mono_ms());
}

struct bus_hub *
bus_hub_new(struct event_base *base, const struct bus_limits *lim,
    size_t nworkers)
{
	struct timeval tv = { BUS_TICK_MS / 1000, 0 };
	struct bus_hub *h;
	size_t i;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->base = base;
	h->nw = nworkers;
	if ((h->st = bus_store_new(lim, nworkers)) == NULL ||
	    (h->w = calloc(nworkers, sizeof(*h->w))) == NULL ||
	    (h->ids = evbuffer_new()) == NULL ||
	    (h->tick = event_new(base, -1, EV_PERSIST, hub_tick_cb, h)) ==
	    NULL || event_add(h->tick, &tv) == -1) {
		bus_hub_free(h);
		return NULL;
	}
	for (i = 0; i < nworkers; i++) {
		h->w[i].h = h;
		h->w[i].i = i;
	}
	return h;
}

int
bus_hub_attach(struct bus_hub *h, size_t i, int fd)
{
	struct hub_worker *w = &h->w[i];

	if (w->bev != NULL)
		hub_drop(w, NULL);
	w->over = 0;
	evutil_make_socket_nonblocking(fd);
	if ((w->bev = bufferevent_socket_new(h->base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		return -1;
	}
	bufferevent_setcb(w->bev, hub_read_cb, NULL, hub_event_cb, w);
	bufferevent_enable(w->bev, EV_READ | EV_WRITE);
	return 0;
}

void
bus_hub_detach(struct bus_hub *h, size_t i)
{
	if (h != NULL && i < h->nw)
		hub_drop(&h->w[i], NULL);
}

void
bus_hub_on_overflow(struct bus_hub *h, bus_overflow_fn *fn, void *arg)
{
	h->overflow = fn;
	h->overflow_arg = arg;
}

void
bus_hub_configure(struct bus_hub *h, const struct bus_limits *lim)
{
	if (h != NULL)
		bus_store_configure(h->st, lim);
}

int
bus_hub_save(struct bus_hub *h, struct outbuf *b)
{
	return bus_store_save(h->st, clock_mono_ms(), b);
}

/* keep_empty: the channels of the connections on their way keep their
 * epoch until the new workers have joined them (bus_hub_sweep). */
int
bus_hub_load(struct bus_hub *h, const uint8_t *p, size_t n,
    const char **why_r)
{
	return bus_store_load(h->st, p, n, clock_mono_ms(), why_r);
}

void
bus_hub_sweep(struct bus_hub *h)
{
	if (h != NULL)
		bus_store_sweep(h->st);
}

int
bus_hub_idle(struct bus_hub *h)
{
	struct bufferevent *bev;
	size_t i;
	int n;

	for (i = 0; i < h->nw; i++) {
		if ((bev = h->w[i].bev) == NULL)
			continue;
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0 ||
		    evbuffer_get_length(bufferevent_get_output(bev)) > 0 ||
		    ioctl(bufferevent_getfd(bev), FIONREAD, &n) == -1 || n > 0)
			return 0;
	}
	return 1;
}

void
bus_hub_stats(struct bus_hub *h, uint64_t *channels_r, uint64_t *bytes_r)
{
	*channels_r = *bytes_r = 0;
	if (h != NULL)
		bus_store_stats(h->st, channels_r, bytes_r);
}

void
bus_hub_free(struct bus_hub *h)
{
	size_t i;

	if (h == NULL)
		return;
	for (i = 0; h->w != NULL && i < h->nw; i++)
		if (h->w[i].bev != NULL)
			bufferevent_free(h->w[i].bev);
	if (h->tick != NULL)
		event_free(h->tick);
	if (h->ids != NULL)
		evbuffer_free(h->ids);
	bus_store_free(h->st);
	free(h->w);
	free(h);
}
