/*
 * test_bus.c: the local bus's store (offsets, epochs, history limits,
 * recovery, members by worker), the frames a worker and its master
 * exchange, and the front (bus.c) over the in-process backend on the
 * shared in-memory server: what a subscriber's connection is sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include <CUnit/CUnit.h>

#include "fake.h"
#include "suite.h"

static const struct bus_limits lim100 = { 100, 300000, 64 * 1024 * 1024 };

static struct bus_store_result
pub(struct bus_store *st, const char *ch, const char *text, uint64_t now)
{
	struct bus_store_result r;

	CU_ASSERT_EQUAL(bus_store_publish(st, ch, text, strlen(text), 0, now,
	    &r), 0);
	return r;
}

struct collect {
	uint64_t offsets[64];
	size_t n;
};

static void
collect_cb(void *arg, uint64_t offset, const char *data, size_t n)
{
	struct collect *c = arg;

	(void)data;
	(void)n;
	if (c->n < 64)
		c->offsets[c->n++] = offset;
}

static void
test_offsets_per_channel(void)
{
	struct bus_store *st = bus_store_new(&lim100, 1);
	struct bus_store_result r;
	char epoch[17];

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	r = pub(st, "a", "{}", 0);
	CU_ASSERT_EQUAL(r.offset, 1);
	CU_ASSERT_EQUAL(strlen(r.epoch), 16);
	snprintf(epoch, sizeof(epoch), "%s", r.epoch);
	CU_ASSERT_EQUAL(pub(st, "a", "{}", 0).offset, 2);
	CU_ASSERT_EQUAL(pub(st, "b", "{}", 0).offset, 1);
	r = pub(st, "a", "{}", 0);
	CU_ASSERT_EQUAL(r.offset, 3);
	CU_ASSERT_STRING_EQUAL(r.epoch, epoch);
	CU_ASSERT_EQUAL(r.subscribers, 0);
	/* transient: no offset, nothing kept, no channel made */
	CU_ASSERT_EQUAL(bus_store_publish(st, "c", "{}", 2, 1, 0, &r), 0);
	CU_ASSERT_EQUAL(r.offset, 0);
	bus_store_free(st);
}

static void
test_recovery(void)
{
	struct bus_store *st = bus_store_new(&lim100, 1);
	struct bus_store_result r;
	struct wsp_bus_since since;
	struct collect c = { { 0 }, 0 };
	char epoch[17];
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	for (i = 0; i < 10; i++)
		r = pub(st, "a", "{\"x\":1}", 0);
	snprintf(epoch, sizeof(epoch), "%s", r.epoch);
	since.offset = 6;
	since.epoch = epoch;
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "c1", &since, &r), 0);
	CU_ASSERT_TRUE(r.recovered);
	CU_ASSERT_EQUAL(r.offset, 10);
	CU_ASSERT_EQUAL(r.subscribers, 1);
	bus_store_replay(st, "a", since.offset, collect_cb, &c);
	CU_ASSERT_EQUAL(c.n, 4);
	CU_ASSERT_EQUAL(c.offsets[0], 7);
	CU_ASSERT_EQUAL(c.offsets[3], 10);
	/* at the top: recovered, nothing to replay */
	since.offset = 10;
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "c2", &since, &r), 0);
	CU_ASSERT_TRUE(r.recovered);
	/* past the top, or another epoch: not recovered */
	since.offset = 11;
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "c3", &since, &r), 0);
	CU_ASSERT_FALSE(r.recovered);
	since.offset = 5;
	since.epoch = "0000000000000000";
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "c4", &since, &r), 0);
	CU_ASSERT_FALSE(r.recovered);
	/* subscribing again is no second member */
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "c4", NULL, &r), 0);
	CU_ASSERT_EQUAL(r.subscribers, 4);
	bus_store_free(st);
}

static void
test_history_size_and_ttl(void)
{
	struct bus_limits lim = { 3, 1000, 64 * 1024 };
	struct bus_store *st = bus_store_new(&lim, 1);
	struct bus_store_result r;
	struct wsp_bus_since since;
	uint64_t chans, bytes;
	char epoch[17];
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "keep", NULL, &r), 0);
	for (i = 0; i < 5; i++)
		r = pub(st, "a", "{}", 100);
	snprintf(epoch, sizeof(epoch), "%s", r.epoch);
	since.epoch = epoch;
	since.offset = 1; /* 2 was dropped: 3..5 kept */
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "x", &since, &r), 0);
	CU_ASSERT_FALSE(r.recovered);
	since.offset = 2;
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "y", &since, &r), 0);
	CU_ASSERT_TRUE(r.recovered);
	bus_store_stats(st, &chans, &bytes);
	CU_ASSERT_EQUAL(chans, 1);
	CU_ASSERT_TRUE(bytes > 0);
	/* past the ttl: gone, but the members keep the channel and its
	 * offsets */
	bus_store_expire(st, 1099);
	bus_store_stats(st, &chans, &bytes);
	CU_ASSERT_TRUE(bytes > 0);
	bus_store_expire(st, 1100);
	bus_store_stats(st, &chans, &bytes);
	CU_ASSERT_EQUAL(bytes, 0);
	CU_ASSERT_EQUAL(chans, 1);
	CU_ASSERT_EQUAL(pub(st, "a", "{}", 2000).offset, 6);
	bus_store_free(st);
}

static void
test_empty_channel_forgotten_new_epoch(void)
{
	struct bus_limits lim = { 10, 1000, 64 * 1024 };
	struct bus_store *st = bus_store_new(&lim, 1);
	struct bus_store_result r;
	uint64_t chans, bytes;
	char epoch[17];

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	r = pub(st, "a", "{}", 0);
	snprintf(epoch, sizeof(epoch), "%s", r.epoch);
	bus_store_expire(st, 5000);
	bus_store_stats(st, &chans, &bytes);
	CU_ASSERT_EQUAL(chans, 0);
	r = pub(st, "a", "{}", 6000);
	CU_ASSERT_EQUAL(r.offset, 1);
	CU_ASSERT_STRING_NOT_EQUAL(r.epoch, epoch);
	bus_store_free(st);
}

static void
test_memory_cap(void)
{
	struct bus_limits lim = { 100, 60000, 1000 };
	struct bus_store *st = bus_store_new(&lim, 1);
	struct bus_store_result r;
	uint64_t chans, bytes;
	char big[301];
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	memset(big, 'x', 300);
	big[300] = '\0';
	for (i = 0; i < 20; i++) {
		CU_ASSERT_EQUAL(bus_store_subscribe(st, i % 2 ? "a" : "b", 0,
		    i % 2 ? "ma" : "mb", NULL, &r), 0);
		pub(st, i % 2 ? "a" : "b", big, 0);
		bus_store_stats(st, &chans, &bytes);
		CU_ASSERT_TRUE(bytes <= 1000);
	}
	CU_ASSERT_TRUE(bytes > 0);
	/* one message larger than the whole cap is numbered, not kept */
	lim.history_memory = 100;
	bus_store_configure(st, &lim);
	bus_store_stats(st, &chans, &bytes);
	CU_ASSERT_EQUAL(bytes, 0);
	CU_ASSERT_EQUAL(pub(st, "a", big, 0).offset, 11);
	bus_store_free(st);
}

static void
test_members_by_worker(void)
{
	struct bus_store *st = bus_store_new(&lim100, 3);
	struct bus_store_result r;
	const char *ids[8];
	uint64_t total;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 0, "w0a", NULL, &r), 0);
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 2, "w2a", NULL, &r), 0);
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 2, "w2b", NULL, &r), 0);
	CU_ASSERT_EQUAL(bus_store_subscribe(st, "a", 3, "bad", NULL, &r), -1);
	r = pub(st, "a", "{}", 0);
	CU_ASSERT_EQUAL(r.subscribers, 3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r.per_worker);
	CU_ASSERT_EQUAL(r.per_worker[0], 1);
	CU_ASSERT_EQUAL(r.per_worker[1], 0);
	CU_ASSERT_EQUAL(r.per_worker[2], 2);
	n = bus_store_presence(st, "a", 2, ids, &total);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(total, 3);
	bus_store_worker_gone(st, 2);
	r = pub(st, "a", "{}", 0);
	CU_ASSERT_EQUAL(r.subscribers, 1);
	CU_ASSERT_EQUAL(r.per_worker[2], 0);
	/* another worker's member is not this worker's to remove */
	bus_store_unsubscribe(st, "a", 1, "w0a");
	CU_ASSERT_EQUAL(pub(st, "a", "{}", 0).subscribers, 1);
	bus_store_unsubscribe(st, "a", 0, "w0a");
	CU_ASSERT_EQUAL(pub(st, "a", "{}", 0).subscribers, 0);
	bus_store_free(st);
}

static size_t
encode(const struct bus_frame *f, uint8_t *out)
{
	size_t hn = bus_frame_encode_head(f, out);

	if (f->len > 0) /* data may be NULL then */
		memcpy(out + hn, f->data, f->len);
	return hn + f->len;
}

static void
test_frame_round_trip(void)
{
	struct bus_frame f, g;
	uint8_t buf[BUS_FRAME_HEAD_MAX + 64];
	const char *why = NULL;
	uint32_t n;
	size_t len;

	memset(&f, 0, sizeof(f));
	f.type = BF_SUB;
	f.flags = BFF_SINCE;
	f.id = 0xdeadbeef;
	f.n1 = 1ULL << 40;
	f.n2 = 7;
	strcpy(f.channel, "news");
	strcpy(f.conn, "0123456789abcdef0123456789abcdef");
	strcpy(f.epoch, "e1");
	f.data = "{\"a\":1}";
	f.len = 7;
	len = encode(&f, buf);
	CU_ASSERT_EQUAL(bus_frame_length(buf, &n), 0);
	CU_ASSERT_EQUAL(n, len - BUS_FRAME_PREFIX);
	CU_ASSERT_EQUAL(bus_frame_decode(buf + BUS_FRAME_PREFIX, n, &g, &why),
	    0);
	CU_ASSERT_EQUAL(g.type, BF_SUB);
	CU_ASSERT_EQUAL(g.flags, BFF_SINCE);
	CU_ASSERT_EQUAL(g.id, 0xdeadbeef);
	CU_ASSERT_EQUAL(g.n1, 1ULL << 40);
	CU_ASSERT_EQUAL(g.n2, 7);
	CU_ASSERT_STRING_EQUAL(g.channel, "news");
	CU_ASSERT_STRING_EQUAL(g.conn, f.conn);
	CU_ASSERT_STRING_EQUAL(g.epoch, "e1");
	CU_ASSERT_EQUAL(g.len, 7);
	CU_ASSERT_EQUAL(memcmp(g.data, "{\"a\":1}", 7), 0);
}

static void
test_frame_rejects(void)
{
	struct bus_frame f, g;
	uint8_t buf[BUS_FRAME_HEAD_MAX + 64];
	const char *why = NULL;
	uint32_t n;
	size_t len;

	memset(&f, 0, sizeof(f));
	f.type = BF_PUB;
	strcpy(f.channel, "abc");
	len = encode(&f, buf);
	n = (uint32_t)(len - BUS_FRAME_PREFIX);
	/* a type out of range */
	buf[BUS_FRAME_PREFIX] = BF_MAX;
	CU_ASSERT_EQUAL(bus_frame_decode(buf + BUS_FRAME_PREFIX, n, &g, &why),
	    -1);
	buf[BUS_FRAME_PREFIX] = 0;
	CU_ASSERT_EQUAL(bus_frame_decode(buf + BUS_FRAME_PREFIX, n, &g, &why),
	    -1);
	buf[BUS_FRAME_PREFIX] = BF_PUB;
	/* a channel length past the end */
	buf[BUS_FRAME_PREFIX + BUS_FRAME_FIXED] = 200;
	CU_ASSERT_EQUAL(bus_frame_decode(buf + BUS_FRAME_PREFIX, n, &g, &why),
	    -1);
	buf[BUS_FRAME_PREFIX + BUS_FRAME_FIXED] = 3;
	/* a NUL inside a string */
	buf[BUS_FRAME_PREFIX + BUS_FRAME_FIXED + 2] = '\0';
	CU_ASSERT_EQUAL(bus_frame_decode(buf + BUS_FRAME_PREFIX, n, &g, &why),
	    -1);
	buf[BUS_FRAME_PREFIX + BUS_FRAME_FIXED + 2] = 'b';
	CU_ASSERT_EQUAL(bus_frame_decode(buf + BUS_FRAME_PREFIX, n, &g, &why),
	    0);
	/* too short, too long */
	CU_ASSERT_EQUAL(bus_frame_decode(buf + BUS_FRAME_PREFIX, 10, &g, &why),
	    -1);
	buf[0] = 0x7f;
	CU_ASSERT_EQUAL(bus_frame_length(buf, &n), -1);
	memset(buf, 0, 4);
	CU_ASSERT_EQUAL(bus_frame_length(buf, &n), -1);
}

static void
test_channel_names(void)
{
	char longname[WSP_BUS_CHANNEL_MAX + 2];

	CU_ASSERT_TRUE(bus_channel_valid("news"));
	CU_ASSERT_TRUE(bus_channel_valid("caf\xc3\xa9"));
	CU_ASSERT_FALSE(bus_channel_valid(""));
	CU_ASSERT_FALSE(bus_channel_valid("a\nb"));
	CU_ASSERT_FALSE(bus_channel_valid("\xc3"));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CU_ASSERT_FALSE(bus_channel_valid(longname));
	longname[WSP_BUS_CHANNEL_MAX] = '\0';
	CU_ASSERT_TRUE(bus_channel_valid(longname));
}

/* The next text message queued on c, or "" when there is none. */
static const char *
next_text(struct wsp_conn *c)
{
	static char buf[512];
	uint8_t h[4];
	size_t n, hl = 2;

	buf[0] = '\0';
	if (evbuffer_get_length(c->out) < 2)
		return buf;
	evbuffer_copyout(c->out, h, 4);
	CU_ASSERT_EQUAL(h[0], 0x81);
	n = h[1] & 0x7f;
	if (n == 126) {
		n = (size_t)h[2] << 8 | h[3];
		hl = 4;
	}
	CU_ASSERT_FATAL(n < sizeof(buf));
	evbuffer_drain(c->out, hl);
	evbuffer_remove(c->out, buf, n);
	buf[n] = '\0';
	return buf;
}

static struct wsp_bus_subscribed last_sub;
static char last_epoch[WSP_BUS_EPOCH_MAX + 1];
static int nsub, npub;
static struct wsp_bus_published last_pub;

static void
sub_done(void *arg, struct wsp_conn *c, const struct wsp_bus_subscribed *r)
{
	(void)arg;
	(void)c;
	nsub++;
	last_sub = *r;
	snprintf(last_epoch, sizeof(last_epoch), "%s", r->epoch);
}

static void
pub_done(void *arg, struct wsp_conn *c, const struct wsp_bus_published *r)
{
	(void)arg;
	(void)c;
	npub++;
	last_pub = *r;
	snprintf(last_epoch, sizeof(last_epoch), "%s", r->epoch);
}

static const struct wsp_section fsec = { .file = "test.conf", .name = "t",
    .line = 1 };
static const struct wsp_plugin fdesc = { .abi = WSPLUGD_PLUGIN_ABI,
    .name = "t", .version = "1" };

/* The fake server with a bus over the in-process backend, history
 * history_size deep, and one plugin to answer. */
static struct wsp_plugin_ctx *
front_open(uint64_t history_size, struct plugin_set **set_r)
{
	static struct wsp_errors errs;
	struct wsp_plugin_ctx *ctx;

	fake_cfg.bus_history_size = history_size;
	fake_cfg.bus_history_ttl = 60000;
	fake_cfg.bus_history_memory = 1 << 20;
	CU_ASSERT_EQUAL_FATAL(fake_init(), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fake_srv.bus = bus_new(&fake_srv, -1));
	CU_ASSERT_PTR_NOT_NULL_FATAL(*set_r = fake_set_new());
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = fake_plugin(*set_r, &fsec, &fdesc,
	    &errs));
	return ctx;
}

static void
test_front_delivers(void)
{
	struct plugin_set *set;
	struct wsp_plugin_ctx *ctx;
	struct wsp_conn *c1, *c2, *c3;
	struct wsp_bus_since since;
	char want[256], epoch[WSP_BUS_EPOCH_MAX + 1];

	ctx = front_open(10, &set);
	c1 = fake_conn_new();
	c2 = fake_conn_new();
	c3 = fake_conn_new();
	CU_ASSERT_FATAL(c1 != NULL && c2 != NULL && c3 != NULL);
	c2->id[31] = '1';
	c3->id[31] = '2';

	/* the in-process backend answers before the call returns */
	CU_ASSERT_EQUAL(bus_subscribe(fake_srv.bus, ctx, c1, "a", NULL,
	    sub_done, NULL), 0);
	CU_ASSERT_EQUAL(bus_subscribe(fake_srv.bus, ctx, c2, "a", NULL,
	    sub_done, NULL), 0);
	CU_ASSERT_EQUAL(nsub, 2);
	CU_ASSERT_EQUAL(last_sub.subscribers, 2);
	CU_ASSERT_FALSE(last_sub.recovered);
	CU_ASSERT_EQUAL(bus_subscribe(fake_srv.bus, ctx, c1, "", NULL,
	    sub_done, NULL), -1);

	/* offset and epoch appended; not to the publisher with NOT_SELF */
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, c1, "a", "{\"m\":1}",
	    7, WSP_BUS_NOT_SELF, pub_done, NULL), 0);
	CU_ASSERT_EQUAL(npub, 1);
	CU_ASSERT_EQUAL(last_pub.offset, 1);
	CU_ASSERT_EQUAL(last_pub.subscribers, 2);
	snprintf(epoch, sizeof(epoch), "%s", last_epoch);
	snprintf(want, sizeof(want), "{\"m\":1,\"offset\":1,\"epoch\":\"%s\"}",
	    epoch);
	CU_ASSERT_STRING_EQUAL(next_text(c2), want);
	CU_ASSERT_STRING_EQUAL(next_text(c1), "");
	/* an empty object gets no leading comma; transient is as given */
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", " {} ", 4,
	    0, NULL, NULL), 0);
	snprintf(want, sizeof(want), " {\"offset\":2,\"epoch\":\"%s\"}",
	    epoch);
	CU_ASSERT_STRING_EQUAL(next_text(c1), want);
	CU_ASSERT_STRING_EQUAL(next_text(c2), want);
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", "{\"t\":0}",
	    7, WSP_BUS_TRANSIENT, NULL, NULL), 0);
	CU_ASSERT_STRING_EQUAL(next_text(c1), "{\"t\":0}");
	CU_ASSERT_STRING_EQUAL(next_text(c2), "{\"t\":0}");
	/* only JSON objects of valid UTF-8, only known flags */
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", "[1]", 3,
	    0, NULL, NULL), -1);
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", "{\"\xff\"}",
	    5, 0, NULL, NULL), -1);
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", "{}", 2,
	    0x80, NULL, NULL), -1);

	/* since: the missed ones first, then the answer, recovered */
	since.offset = 0;
	since.epoch = epoch;
	CU_ASSERT_EQUAL(bus_subscribe(fake_srv.bus, ctx, c3, "a", &since,
	    sub_done, NULL), 0);
	CU_ASSERT_TRUE(last_sub.recovered);
	CU_ASSERT_EQUAL(last_sub.offset, 2);
	snprintf(want, sizeof(want), "{\"m\":1,\"offset\":1,\"epoch\":\"%s\"}",
	    epoch);
	CU_ASSERT_STRING_EQUAL(next_text(c3), want);
	snprintf(want, sizeof(want), " {\"offset\":2,\"epoch\":\"%s\"}",
	    epoch);
	CU_ASSERT_STRING_EQUAL(next_text(c3), want);
	CU_ASSERT_STRING_EQUAL(next_text(c3), "");

	/* channels of a connection; unsubscribe; a closed one leaves */
	CU_ASSERT_EQUAL(bus_channels(fake_srv.bus, c1, NULL, NULL), 1);
	CU_ASSERT_EQUAL(bus_unsubscribe(fake_srv.bus, c1, "a"), 1);
	CU_ASSERT_EQUAL(bus_unsubscribe(fake_srv.bus, c1, "a"), 0);
	CU_ASSERT_EQUAL(bus_channels(fake_srv.bus, c1, NULL, NULL), 0);
	bus_conn_closed(fake_srv.bus, c2);
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", "{}", 2, 0,
	    pub_done, NULL), 0);
	CU_ASSERT_EQUAL(last_pub.subscribers, 1);
	CU_ASSERT_STRING_EQUAL(next_text(c1), "");
	CU_ASSERT_STRING_EQUAL(next_text(c2), "");
	CU_ASSERT_STRING_NOT_EQUAL(next_text(c3), "");

	bus_conn_closed(fake_srv.bus, c1);
	bus_conn_closed(fake_srv.bus, c3);
	fake_conn_free(c1);
	fake_conn_free(c2);
	fake_conn_free(c3);
	plugin_set_free(set);
	fake_srv.plugins = NULL;
	fake_fini(); /* frees the bus */
}

/* The store as bytes and back: same epochs, offsets and messages; a
 * damaged copy refused whole; the reader's limits applied. */
struct position {
	char channel[WSP_BUS_CHANNEL_MAX + 1];
	uint64_t last;
	char epoch[WSP_BUS_EPOCH_MAX + 1];
};

static void
position_cb(const char *channel, uint64_t last, const char *epoch,
    void *arg)
{
	struct position *p = arg;

	snprintf(p->channel, sizeof(p->channel), "%s", channel);
	p->last = last;
	snprintf(p->epoch, sizeof(p->epoch), "%s", epoch);
}

/* What a hand-over does with a subscriber: its position read on the old
 * side (bus_positions), its subscription made again from there on the
 * new one (bus_adopt): what it missed comes once, a gap when history no
 * longer holds it, nothing when it missed nothing. */
static void
test_front_adopt(void)
{
	static const char gap[] = "{\"type\":\"gap\",\"channel\":\"a\"}";
	struct plugin_set *set;
	struct wsp_plugin_ctx *ctx;
	struct wsp_conn *c[6];
	struct position pos;
	char want[256], epoch[WSP_BUS_EPOCH_MAX + 1];
	size_t i;

	ctx = front_open(2, &set);
	for (i = 0; i < 6; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(c[i] = fake_conn_new());
		c[i]->id[31] = (char)('a' + i);
	}
	CU_ASSERT_EQUAL(bus_subscribe(fake_srv.bus, ctx, c[0], "a", NULL,
	    sub_done, NULL), 0);
	/* no position before the first message */
	memset(&pos, 0, sizeof(pos));
	CU_ASSERT_EQUAL(bus_positions(fake_srv.bus, c[0], position_cb, &pos),
	    1);
	CU_ASSERT_STRING_EQUAL(pos.channel, "a");
	CU_ASSERT_EQUAL(pos.last, 0);
	for (i = 1; i <= 3; i++) {
		snprintf(want, sizeof(want), "{\"m\":%zu}", i);
		CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", want,
		    strlen(want), 0, pub_done, NULL), 0);
		CU_ASSERT_STRING_NOT_EQUAL(next_text(c[0]), "");
	}
	snprintf(epoch, sizeof(epoch), "%s", last_epoch);
	CU_ASSERT_EQUAL(bus_positions(fake_srv.bus, c[0], position_cb, &pos),
	    1);
	CU_ASSERT_EQUAL(pos.last, 3);
	CU_ASSERT_STRING_EQUAL(pos.epoch, epoch);
	CU_ASSERT_EQUAL(bus_positions(fake_srv.bus, c[1], position_cb, &pos),
	    0);

	/* missed 2 and 3, both in history: they come, nothing else */
	CU_ASSERT_EQUAL(bus_adopt(fake_srv.bus, c[1], "a", 1, epoch), 0);
	snprintf(want, sizeof(want), "{\"m\":2,\"offset\":2,\"epoch\":"
	    "\"%s\"}", epoch);
	CU_ASSERT_STRING_EQUAL(next_text(c[1]), want);
	snprintf(want, sizeof(want), "{\"m\":3,\"offset\":3,\"epoch\":"
	    "\"%s\"}", epoch);
	CU_ASSERT_STRING_EQUAL(next_text(c[1]), want);
	CU_ASSERT_STRING_EQUAL(next_text(c[1]), "");
	/* missed nothing: nothing */
	CU_ASSERT_EQUAL(bus_adopt(fake_srv.bus, c[2], "a", 3, epoch), 0);
	CU_ASSERT_STRING_EQUAL(next_text(c[2]), "");
	/* no position (nothing sent to it yet): live, nothing said */
	CU_ASSERT_EQUAL(bus_adopt(fake_srv.bus, c[5], "a", 0, ""), 0);
	CU_ASSERT_STRING_EQUAL(next_text(c[5]), "");
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", "{}", 2, 0,
	    pub_done, NULL), 0); /* 4: history holds 3 and 4 */
	for (i = 0; i < 3; i++)
		CU_ASSERT_STRING_NOT_EQUAL(next_text(c[i]), "");
	CU_ASSERT_STRING_NOT_EQUAL(next_text(c[5]), "");
	/* missed 2, which history (2 deep) no longer holds: a gap */
	CU_ASSERT_EQUAL(bus_adopt(fake_srv.bus, c[3], "a", 1, epoch), 0);
	CU_ASSERT_STRING_EQUAL(next_text(c[3]), gap);
	CU_ASSERT_STRING_EQUAL(next_text(c[3]), "");
	/* another epoch (the history was lost meanwhile): a gap */
	CU_ASSERT_EQUAL(bus_adopt(fake_srv.bus, c[4], "a", 4, "0123abcd"), 0);
	CU_ASSERT_STRING_EQUAL(next_text(c[4]), gap);
	/* adopted ones are live members: the next message, once each */
	CU_ASSERT_EQUAL(bus_publish(fake_srv.bus, ctx, NULL, "a", "{}", 2, 0,
	    pub_done, NULL), 0);
	snprintf(want, sizeof(want), "{\"offset\":5,\"epoch\":\"%s\"}",
	    epoch);
	for (i = 0; i < 6; i++) {
		CU_ASSERT_STRING_EQUAL(next_text(c[i]), want);
		CU_ASSERT_STRING_EQUAL(next_text(c[i]), "");
	}
	/* an adopted member is not adopted twice */
	CU_ASSERT_EQUAL(bus_adopt(fake_srv.bus, c[1], "a", 1, epoch), 0);
	CU_ASSERT_STRING_EQUAL(next_text(c[1]), "");

	for (i = 0; i < 6; i++) {
		bus_conn_closed(fake_srv.bus, c[i]);
		fake_conn_free(c[i]);
	}
	plugin_set_free(set);
	fake_srv.plugins = NULL;
	fake_fini(); /* frees the bus */
}

static void
test_history_save_load(void)
{
	struct bus_store *a = bus_store_new(&lim100, 1), *b;
	struct bus_store_result r, ra;
	struct bus_limits two = { 2, 300000, 64 * 1024 * 1024 };
	struct outbuf out = { NULL, 0, 0 };
	struct wsp_bus_since since;
	struct collect c = { { 0 }, 0 };
	const char *why = NULL;
	char epoch[17];
	uint64_t chans, bytes;
	size_t i;

	pub(a, "x", "1", 1000);
	pub(a, "y", "one", 1000);
	pub(a, "x", "22", 1001);
	ra = pub(a, "x", "333", 1002);
	snprintf(epoch, sizeof(epoch), "%s", ra.epoch);
	CU_ASSERT_EQUAL(bus_store_subscribe(a, "members-only", 0, "c", NULL,
	    &r), 0);
	CU_ASSERT_EQUAL(bus_store_save(a, 2000, &out), 0);

	b = bus_store_new(&lim100, 1);
	CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p, out.len,
	    5000, &why), 0);
	bus_store_stats(b, &chans, &bytes);
	CU_ASSERT_EQUAL(chans, 3);
	since.offset = 1;
	since.epoch = epoch;
	CU_ASSERT_EQUAL(bus_store_subscribe(b, "x", 0, "c1", &since, &r), 0);
	CU_ASSERT_TRUE(r.recovered);
	CU_ASSERT_EQUAL(r.offset, 3);
	CU_ASSERT_STRING_EQUAL(r.epoch, epoch);
	bus_store_replay(b, "x", 1, collect_cb, &c);
	CU_ASSERT_EQUAL(c.n, 2);
	CU_ASSERT_EQUAL(c.offsets[0], 2);
	CU_ASSERT_EQUAL(c.offsets[1], 3);
	r = pub(b, "x", "4444", 5001);
	CU_ASSERT_EQUAL(r.offset, 4);
	CU_ASSERT_STRING_EQUAL(r.epoch, epoch);
	/* not into a store that has something */
	CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p, out.len,
	    5000, &why), -1);
	bus_store_free(b);

	/* the channel kept for its members goes with the sweep */
	b = bus_store_new(&lim100, 1);
	CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p, out.len,
	    5000, &why), 0);
	bus_store_sweep(b);
	bus_store_stats(b, &chans, &bytes);
	CU_ASSERT_EQUAL(chans, 2);
	bus_store_free(b);

	/* every byte flipped, every length cut: refused, the store empty */
	for (i = 0; i < out.len; i++) {
		b = bus_store_new(&lim100, 1);
		out.p[i] ^= 0x20;
		CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p,
		    out.len, 5000, &why), -1);
		out.p[i] ^= 0x20;
		CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p, i,
		    5000, &why), -1);
		bus_store_stats(b, &chans, &bytes);
		CU_ASSERT_EQUAL(chans + bytes, 0);
		bus_store_free(b);
	}

	/* the reader's limits: two per channel, and the ttl by age */
	b = bus_store_new(&two, 1);
	CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p, out.len,
	    5000, &why), 0);
	since.offset = 0;
	CU_ASSERT_EQUAL(bus_store_subscribe(b, "x", 0, "c1", &since, &r), 0);
	CU_ASSERT_FALSE(r.recovered);
	since.offset = 1;
	CU_ASSERT_EQUAL(bus_store_subscribe(b, "x", 0, "c1", &since, &r), 0);
	CU_ASSERT_TRUE(r.recovered);
	bus_store_free(b);
	two.history_size = 100;
	two.history_ttl = 1500; /* the oldest was 1000 ms old when saved */
	b = bus_store_new(&two, 1);
	CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p, out.len,
	    500, &why), 0);
	bus_store_sweep(b);
	bus_store_stats(b, &chans, &bytes);
	CU_ASSERT_EQUAL(chans, 2);
	bus_store_free(b);
	two.history_ttl = 500; /* ages travel: every message is past it */
	b = bus_store_new(&two, 1);
	CU_ASSERT_EQUAL(bus_store_load(b, (const uint8_t *)out.p, out.len,
	    100000, &why), 0);
	bus_store_sweep(b);
	bus_store_stats(b, &chans, &bytes);
	CU_ASSERT_EQUAL(chans + bytes, 0);
	bus_store_free(b);

	free(out.p);
	bus_store_free(a);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "offsets per channel", test_offsets_per_channel },
		{ "recovery with since", test_recovery },
		{ "history_size and history_ttl", test_history_size_and_ttl },
		{ "an empty channel is forgotten: new epoch",
		    test_empty_channel_forgotten_new_epoch },
		{ "history_memory", test_memory_cap },
		{ "members by worker", test_members_by_worker },
		{ "frame round trip", test_frame_round_trip },
		{ "frame rejects", test_frame_rejects },
		{ "channel names", test_channel_names },
		{ "the front over the in-process backend", test_front_delivers },
		{ "a member handed over recovers, or is told", test_front_adopt },
		{ "history saved and loaded", test_history_save_load },
	};

	return suite_run("bus", tests, nitems(tests));
}
