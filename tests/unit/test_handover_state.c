/*
 * test_handover_state.c: the hand-over's frames and records, written and
 * read back, and every way a stranger's bytes are refused.
 */
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

#define ID "0123456789abcdef0123456789abcdef"

static struct ho_bytes
bytes(const char *s)
{
	struct ho_bytes b = { (const uint8_t *)s, strlen(s) };

	return b;
}

/* A connection with every field set, half-way through a split ping and
 * a fragmented text message, with output queued and deflate. */
static void
sample(struct ho_conn *h)
{
	static const uint8_t ctl[3] = { 'a', 'b', 'c' };
	static const uint8_t out[5] = { 0x81, 0x03, 'x', 'y', 'z' };

	memset(h, 0, sizeof(*h));
	h->state = HO_STATE_OPEN;
	memcpy(h->id, ID, 33);
	strcpy(h->ip, "2001:db8::1");
	h->port = 40000;
	h->user_agent = bytes("test agent/1.0");
	h->origin = bytes("https://example.org");
	h->path = bytes("/ws?room=1");
	h->subprotocol = bytes("chat");
	h->close_code = 0;
	h->connected_at_ms = 1700000000123;
	h->last_activity_ms = 1700000001123;
	h->msgs_in = 7;
	h->msgs_out = 9;
	h->bytes_in = 1234;
	h->bytes_out = 5678;
	h->last_activity = 99999;
	h->opened_mono = 88888;
	h->ping_sent = 99000;
	h->pings_missed = 1;
	ws_decoder_init(&h->dec, 1 << 20);
	h->dec.opcode = WS_OP_PING;
	h->dec.in_payload = 1;
	h->dec.remaining = 7;
	h->dec.mask[0] = 0x11;
	h->dec.mpos = 3;
	h->dec.hlen = 6;
	h->dec.msg_opcode = WS_OP_TEXT;
	h->dec.msg_len = 5;
	h->dec.utf8 = UTF8_ACCEPT;
	h->ctl.p = ctl;
	h->ctl.n = sizeof(ctl);
	h->dec.ctl_len = 3;
	h->msg_open = 1;
	h->msg_opcode = WS_OP_TEXT;
	h->msg = bytes("hello");
	h->out.p = out;
	h->out.n = sizeof(out);
	h->attrs = bytes("{\"app\":{\"k\":1}}");
	/* bus channels "news" (at offset 7 of epoch ab12) and
	 * "r\xc3\xa9sum\xc3\xa9" (UTF-8, no position yet) */
	h->subs.p = (const uint8_t *)"\x04news\x07\0\0\0\0\0\0\0\x04""ab12"
	    "\x08r\xc3\xa9sum\xc3\xa9\0\0\0\0\0\0\0\0\0";
	h->subs.n = 36;
	h->has_zs = 1;
	h->zp.server_no_takeover = 1;
	h->zp.client_no_takeover = 1;
	h->zp.server_wbits = 15;
	h->zp.client_wbits = 12;
	h->zp.answer_client_wbits = 12;
	h->z_level = 6;
	h->z_mem_level = 8;
	h->z_threshold = 64;
}

static int
same_bytes(const struct ho_bytes *a, const struct ho_bytes *b)
{
	if ((a->p == NULL) != (b->p == NULL) || a->n != b->n)
		return 0;
	return a->n == 0 || memcmp(a->p, b->p, a->n) == 0;
}

static void
test_conn_round_trip(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_conn in, out;
	const char *why = NULL;
	size_t used = 0;

	sample(&in);
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL_FATAL(ho_conn_decode((uint8_t *)b.p, b.len, &used,
	    &out, &why), 0);
	CU_ASSERT_EQUAL(used, b.len);
	CU_ASSERT_STRING_EQUAL(out.id, ID);
	CU_ASSERT_STRING_EQUAL(out.ip, "2001:db8::1");
	CU_ASSERT_EQUAL(out.port, 40000);
	CU_ASSERT(same_bytes(&out.user_agent, &in.user_agent));
	CU_ASSERT(same_bytes(&out.origin, &in.origin));
	CU_ASSERT(same_bytes(&out.path, &in.path));
	CU_ASSERT(same_bytes(&out.subprotocol, &in.subprotocol));
	CU_ASSERT_PTR_NULL(out.close_reason.p);
	CU_ASSERT_EQUAL(out.connected_at_ms, in.connected_at_ms);
	CU_ASSERT_EQUAL(out.last_activity_ms, in.last_activity_ms);
	CU_ASSERT_EQUAL(out.msgs_in, 7);
	CU_ASSERT_EQUAL(out.msgs_out, 9);
	CU_ASSERT_EQUAL(out.bytes_in, 1234);
	CU_ASSERT_EQUAL(out.bytes_out, 5678);
	CU_ASSERT_EQUAL(out.ping_sent, 99000);
	CU_ASSERT_EQUAL(out.pings_missed, 1);
	CU_ASSERT_EQUAL(out.dec.opcode, WS_OP_PING);
	CU_ASSERT_EQUAL(out.dec.remaining, 7);
	CU_ASSERT_EQUAL(out.dec.mpos, 3);
	CU_ASSERT_EQUAL(out.dec.mask[0], 0x11);
	CU_ASSERT_EQUAL(out.dec.msg_len, 5);
	CU_ASSERT_EQUAL(out.dec.max_message, 1 << 20);
	CU_ASSERT_EQUAL(out.dec.ctl_len, 3);
	CU_ASSERT_PTR_NULL(out.dec.ctl);
	CU_ASSERT(same_bytes(&out.ctl, &in.ctl));
	CU_ASSERT(same_bytes(&out.msg, &in.msg));
	CU_ASSERT(same_bytes(&out.out, &in.out));
	CU_ASSERT(same_bytes(&out.attrs, &in.attrs));
	CU_ASSERT(same_bytes(&out.subs, &in.subs));
	CU_ASSERT_EQUAL(out.has_zs, 1);
	CU_ASSERT_EQUAL(out.zp.client_wbits, 12);
	CU_ASSERT_EQUAL(out.z_threshold, 64);
	free(b.p);
}

/* Two records back to back are read one after the other. */
static void
test_conn_sequence(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_conn in, out;
	const char *why = NULL;
	size_t used, off = 0;

	sample(&in);
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	in.state = HO_STATE_CLOSING;
	in.close_code = 1001;
	in.close_reason = bytes("going away");
	in.has_zs = 0;
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL_FATAL(ho_conn_decode((uint8_t *)b.p, b.len, &used,
	    &out, &why), 0);
	CU_ASSERT_EQUAL(out.state, HO_STATE_OPEN);
	off = used;
	CU_ASSERT_EQUAL_FATAL(ho_conn_decode((uint8_t *)b.p + off,
	    b.len - off, &used, &out, &why), 0);
	CU_ASSERT_EQUAL(off + used, b.len);
	CU_ASSERT_EQUAL(out.state, HO_STATE_CLOSING);
	CU_ASSERT_EQUAL(out.close_code, 1001);
	CU_ASSERT(same_bytes(&out.close_reason, &in.close_reason));
	CU_ASSERT_EQUAL(out.has_zs, 0);
	free(b.p);
}

/* Every prefix of a record is refused, never read past. */
static void
test_conn_truncated(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_conn in, out;
	const char *why;
	size_t used, n;
	uint8_t *p;

	sample(&in);
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	for (n = 0; n < b.len; n++) {
		p = malloc(n + 1); /* exact size for a sanitizer */
		memcpy(p, b.p, n);
		why = NULL;
		CU_ASSERT_EQUAL(ho_conn_decode(p, n, &used, &out, &why), -1);
		CU_ASSERT_PTR_NOT_NULL(why);
		free(p);
	}
	free(b.p);
}

/* Encode, change one thing, and expect the decoder to say no. */
static void
expect_refused(void (*change)(struct ho_conn *), const char *want)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_conn in, out;
	const char *why = NULL;
	size_t used;

	sample(&in);
	change(&in);
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(why);
	if (strcmp(why, want) != 0)
		fprintf(stderr, "\n  got \"%s\", want \"%s\"\n", why, want);
	CU_ASSERT_STRING_EQUAL(why, want);
	free(b.p);
}

static void ch_id(struct ho_conn *h) { h->id[5] = 'Z'; }
static void ch_state(struct ho_conn *h) { h->state = 4; }
static void ch_ip(struct ho_conn *h) { strcpy(h->ip, "1.2.3.4 x"); }
static void ch_path(struct ho_conn *h) { h->path.p = NULL; h->path.n = 0; }
static void ch_ua(struct ho_conn *h)
{
	h->user_agent = bytes("a\0b"); /* a NUL inside */
	h->user_agent.n = 3;
}
static void ch_hlen(struct ho_conn *h) { h->dec.hlen = 15; }
static void ch_mpos(struct ho_conn *h) { h->dec.mpos = 4; }
static void ch_failed(struct ho_conn *h) { h->dec.failed = 2; }
static void ch_ctl(struct ho_conn *h) { h->dec.remaining = 123; }
static void ch_msg(struct ho_conn *h) { h->msg_open = 0; }
static void ch_limit(struct ho_conn *h)
{
	h->dec.max_message = 3;
	h->dec.msg_len = 2;
}
static void ch_zs(struct ho_conn *h) { h->zp.server_wbits = 16; }
static void ch_opcode(struct ho_conn *h) { h->dec.opcode = 3; }
static void ch_subs_empty(struct ho_conn *h)
{
	/* a 0-byte name */
	h->subs.p = (const uint8_t *)"\x04news\0\0\0\0\0\0\0\0\0\x00";
	h->subs.n = 15;
}
static void ch_subs_pos(struct ho_conn *h)
{
	h->subs.p = (const uint8_t *)"\x04news\0\0\0"; /* a cut position */
	h->subs.n = 8;
}
static void ch_subs_epoch(struct ho_conn *h)
{
	/* an epoch that JSON would need escaped */
	h->subs.p = (const uint8_t *)"\x04news\x01\0\0\0\0\0\0\0\x02\"}";
	h->subs.n = 16;
}
static void ch_subs_short(struct ho_conn *h)
{
	h->subs.p = (const uint8_t *)"\x05news"; /* past the list's end */
	h->subs.n = 5;
}
static void ch_subs_ctl(struct ho_conn *h)
{
	h->subs.p = (const uint8_t *)"\x02a\n"; /* bus.c would refuse it */
	h->subs.n = 3;
}
static void ch_subs_utf8(struct ho_conn *h)
{
	h->subs.p = (const uint8_t *)"\x02a\xc3"; /* a truncated sequence */
	h->subs.n = 3;
}
static void ch_subs_long(struct ho_conn *h)
{
	static uint8_t p[1 + WSP_BUS_CHANNEL_MAX + 1];

	memset(p, 'a', sizeof(p));
	p[0] = WSP_BUS_CHANNEL_MAX + 1;
	h->subs.p = p;
	h->subs.n = sizeof(p);
}
static void ch_subs_many(struct ho_conn *h)
{
	static uint8_t p[11 * (HO_MAX_SUBS + 1)];
	size_t i;

	for (i = 0; i < HO_MAX_SUBS + 1; i++) {
		p[11 * i] = 1;
		p[11 * i + 1] = 'a'; /* then no position: 9 bytes of 0 */
	}
	h->subs.p = p;
	h->subs.n = sizeof(p);
}

static void
test_conn_refused(void)
{
	expect_refused(ch_id, "bad connection id");
	expect_refused(ch_state, "bad connection state");
	expect_refused(ch_ip, "bad address");
	expect_refused(ch_path, "no path");
	expect_refused(ch_ua, "bad user agent");
	expect_refused(ch_hlen, "bad codec state");
	expect_refused(ch_mpos, "bad codec state");
	expect_refused(ch_failed, "codec in error");
	expect_refused(ch_ctl, "control frame too long");
	expect_refused(ch_msg, "bad message state");
	expect_refused(ch_limit, "message past its limit");
	expect_refused(ch_zs, "bad deflate parameters");
	expect_refused(ch_opcode, "bad codec opcode");
	expect_refused(ch_subs_empty, "bad bus subscriptions");
	expect_refused(ch_subs_short, "bad bus subscriptions");
	expect_refused(ch_subs_ctl, "bad bus subscriptions");
	expect_refused(ch_subs_utf8, "bad bus subscriptions");
	expect_refused(ch_subs_long, "bad bus subscriptions");
	expect_refused(ch_subs_many, "bad bus subscriptions");
	expect_refused(ch_subs_pos, "bad bus subscriptions");
	expect_refused(ch_subs_epoch, "bad bus subscriptions");
}

/* A record whose length claims more than the buffer, or less than its
 * fields, is refused. */
static void
test_conn_length(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_conn in, out;
	const char *why = NULL;
	size_t used;

	sample(&in);
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	b.p[0]++;
	CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "record longer than its frame");
	b.p[0] -= 2;
	why = NULL;
	CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_PTR_NOT_NULL(why);
	free(b.p);
}

/* A handshake in progress: the head read so far, nothing else. */
static void
test_handshake(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_conn in, out;
	const char *why = NULL;
	size_t used;

	memset(&in, 0, sizeof(in));
	in.state = HO_STATE_HANDSHAKE;
	memset(in.id, '0', 32);
	strcpy(in.ip, "127.0.0.1");
	in.path = bytes("");
	in.head = bytes("GET /ws HTTP/1.1\r\nHost: x\r\n");
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL_FATAL(ho_conn_decode((uint8_t *)b.p, b.len, &used,
	    &out, &why), 0);
	CU_ASSERT_EQUAL(out.state, HO_STATE_HANDSHAKE);
	CU_ASSERT(same_bytes(&out.head, &in.head));
	free(b.p);
	/* output queued, or a head on an open connection: refused */
	b.p = NULL;
	b.len = b.cap = 0;
	in.out = bytes("HTTP/1.1 101");
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "bad handshake state");
	free(b.p);
	b.p = NULL;
	b.len = b.cap = 0;
	sample(&in);
	in.head = bytes("GET");
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "bad handshake state");
	free(b.p);
	/* bus channels before the upgrade: refused */
	b.p = NULL;
	b.len = b.cap = 0;
	memset(&in, 0, sizeof(in));
	in.state = HO_STATE_HANDSHAKE;
	memset(in.id, '0', 32);
	strcpy(in.ip, "127.0.0.1");
	in.path = bytes("");
	in.head = bytes("GET");
	in.subs = bytes("\x04news");
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "bad handshake state");
	free(b.p);
}

/* A channel list as handover.c writes it and handover_child.c reads it
 * back, through a record. */
static void
test_subs(void)
{
	struct outbuf l = { NULL, 0, 0 }, b = { NULL, 0, 0 };
	char name[WSP_BUS_CHANNEL_MAX + 1], longest[WSP_BUS_CHANNEL_MAX + 2];
	char epoch[WSP_BUS_EPOCH_MAX + 1], longest_epoch[WSP_BUS_EPOCH_MAX + 2];
	struct ho_conn in, out;
	const char *why = NULL;
	size_t used, off = 0, keep;
	uint64_t last;

	memset(longest, 'c', sizeof(longest) - 1);
	longest[WSP_BUS_CHANNEL_MAX + 1] = '\0';
	memset(longest_epoch, 'e', sizeof(longest_epoch) - 1);
	longest_epoch[WSP_BUS_EPOCH_MAX + 1] = '\0';
	CU_ASSERT_EQUAL(ho_subs_add(&l, "", 1, "ab"), -1);
	CU_ASSERT_EQUAL(ho_subs_add(&l, longest, 1, "ab"), -1);
	/* an epoch goes into JSON as it is: letters and digits, bounded */
	CU_ASSERT_EQUAL(ho_subs_add(&l, "news", 1, "a\"b"), -1);
	CU_ASSERT_EQUAL(ho_subs_add(&l, "news", 1, longest_epoch), -1);
	CU_ASSERT_EQUAL(l.len, 0);
	longest[WSP_BUS_CHANNEL_MAX] = '\0';
	longest_epoch[WSP_BUS_EPOCH_MAX] = '\0';
	CU_ASSERT_EQUAL_FATAL(ho_subs_add(&l, "news", 41, "9f3ac0de12345678"),
	    0);
	CU_ASSERT_EQUAL_FATAL(ho_subs_add(&l, longest, UINT64_MAX,
	    longest_epoch), 0);
	CU_ASSERT_EQUAL_FATAL(ho_subs_add(&l, "quiet", 0, ""), 0);
	sample(&in);
	in.subs.p = (const uint8_t *)l.p;
	in.subs.n = l.len;
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL_FATAL(ho_conn_decode((uint8_t *)b.p, b.len, &used,
	    &out, &why), 0);
	CU_ASSERT_EQUAL_FATAL(ho_subs_next(&out.subs, &off, name, &last,
	    epoch), 1);
	CU_ASSERT_STRING_EQUAL(name, "news");
	CU_ASSERT_EQUAL(last, 41);
	CU_ASSERT_STRING_EQUAL(epoch, "9f3ac0de12345678");
	CU_ASSERT_EQUAL_FATAL(ho_subs_next(&out.subs, &off, name, &last,
	    epoch), 1);
	CU_ASSERT_STRING_EQUAL(name, longest);
	CU_ASSERT_EQUAL(last, UINT64_MAX);
	CU_ASSERT_STRING_EQUAL(epoch, longest_epoch);
	CU_ASSERT_EQUAL_FATAL(ho_subs_next(&out.subs, &off, name, &last,
	    epoch), 1);
	CU_ASSERT_STRING_EQUAL(name, "quiet");
	CU_ASSERT_EQUAL(last, 0);
	CU_ASSERT_STRING_EQUAL(epoch, "");
	CU_ASSERT_EQUAL(ho_subs_next(&out.subs, &off, name, &last, epoch), 0);
	/* a list cut inside an entry, or with a bad epoch, is refused */
	keep = l.len;
	for (l.len = 1; l.len < keep; l.len++) {
		free(b.p);
		b.p = NULL;
		b.len = b.cap = 0;
		in.subs.n = l.len;
		CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
		/* whole only where an entry ends: after news's, then the
		 * longest's */
		CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used,
		    &out, &why), l.len == 30 || l.len == 30 + 170 ? 0 : -1);
	}
	l.len = keep;
	l.p[1 + 4 + 8 + 1] = '"';
	free(b.p);
	b.p = NULL;
	b.len = b.cap = 0;
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL(ho_conn_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	/* none: absent, and nothing to walk */
	free(b.p);
	b.p = NULL;
	b.len = b.cap = 0;
	in.subs.p = NULL;
	in.subs.n = 0;
	CU_ASSERT_EQUAL_FATAL(ho_conn_encode(&b, &in), 0);
	CU_ASSERT_EQUAL_FATAL(ho_conn_decode((uint8_t *)b.p, b.len, &used,
	    &out, &why), 0);
	CU_ASSERT_PTR_NULL(out.subs.p);
	off = 0;
	CU_ASSERT_EQUAL(ho_subs_next(&out.subs, &off, name, &last, epoch), 0);
	free(b.p);
	free(l.p);
}

static void
test_frame(void)
{
	static const char payload[] = "some payload";
	uint8_t hdr[HO_HDR_LEN];
	struct ho_frame f;
	const char *why = NULL;

	CU_ASSERT_EQUAL(ho_frame_header(hdr, HO_T_CONNS, payload,
	    sizeof(payload)), HO_HDR_LEN);
	CU_ASSERT_EQUAL_FATAL(ho_frame_parse(hdr, &f, &why), 0);
	CU_ASSERT_EQUAL(f.version, HO_VERSION);
	CU_ASSERT_EQUAL(f.type, HO_T_CONNS);
	CU_ASSERT_EQUAL(f.len, sizeof(payload));
	CU_ASSERT_EQUAL(ho_frame_verify(&f, payload), 0);
	/* the bus's history is a frame of its own */
	ho_frame_header(hdr, HO_T_HISTORY, payload, sizeof(payload));
	CU_ASSERT_EQUAL_FATAL(ho_frame_parse(hdr, &f, &why), 0);
	CU_ASSERT_EQUAL(f.type, HO_T_HISTORY);
	/* the workers' frames come last; one past them is unknown */
	ho_frame_header(hdr, HO_T_LAST, payload, sizeof(payload));
	CU_ASSERT_EQUAL_FATAL(ho_frame_parse(hdr, &f, &why), 0);
	CU_ASSERT_EQUAL(f.type, HO_T_PAUSED);
	ho_frame_header(hdr, HO_T_LAST + 1, payload, sizeof(payload));
	CU_ASSERT_EQUAL(ho_frame_parse(hdr, &f, &why), -1);
	ho_frame_header(hdr, HO_T_CONNS, payload, sizeof(payload));
	CU_ASSERT_EQUAL_FATAL(ho_frame_parse(hdr, &f, &why), 0);
	/* one bit of the payload changed: the CRC says so */
	{
		char bad[sizeof(payload)];

		memcpy(bad, payload, sizeof(bad));
		bad[3] ^= 0x20;
		CU_ASSERT_EQUAL(ho_frame_verify(&f, bad), -1);
	}
	/* an unknown version is the caller's to judge, not an error */
	hdr[4] = 0x7f;
	CU_ASSERT_EQUAL(ho_frame_parse(hdr, &f, &why), 0);
	CU_ASSERT_EQUAL(f.version, 0x7f);
	hdr[0] ^= 1;
	CU_ASSERT_EQUAL(ho_frame_parse(hdr, &f, &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "not a hand-over frame (bad magic)");
	hdr[0] ^= 1;
	hdr[6] = HO_T_LAST + 1;
	CU_ASSERT_EQUAL(ho_frame_parse(hdr, &f, &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "unknown frame type");
	hdr[6] = HO_T_GO;
	hdr[11] = 0x7f; /* a length of ~2 GiB */
	CU_ASSERT_EQUAL(ho_frame_parse(hdr, &f, &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "frame longer than the limit");
	/* an empty frame */
	ho_frame_header(hdr, HO_T_GO, NULL, 0);
	CU_ASSERT_EQUAL_FATAL(ho_frame_parse(hdr, &f, &why), 0);
	CU_ASSERT_EQUAL(f.len, 0);
	CU_ASSERT_EQUAL(ho_frame_verify(&f, NULL), 0);
}

static void
test_listen(void)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_listen in, out;
	struct wsp_listen_addr a;
	const char *why = NULL;
	size_t used;

	memset(&in, 0, sizeof(in));
	CU_ASSERT_EQUAL_FATAL(config_parse_listen("127.0.0.1:8080", &a), 0);
	in.kind = HO_LISTEN_WS;
	in.tls = 1;
	in.conf_len = (uint16_t)a.sslen;
	memcpy(&in.conf, &a.ss, a.sslen);
	CU_ASSERT_EQUAL_FATAL(ho_listen_encode(&b, &in), 0);
	CU_ASSERT_EQUAL_FATAL(ho_listen_decode((uint8_t *)b.p, b.len, &used,
	    &out, &why), 0);
	CU_ASSERT_EQUAL(used, b.len);
	CU_ASSERT_EQUAL(out.tls, 1);
	CU_ASSERT(config_listen_same(&out.conf, out.conf_len, &a));
	b.p[0] = 9; /* kind */
	CU_ASSERT_EQUAL(ho_listen_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "bad listener kind");
	b.p[0] = HO_LISTEN_ADMIN;
	b.p[2] = (char)0xff; /* conf_len past sockaddr_storage */
	b.p[3] = 0x7f;
	CU_ASSERT_EQUAL(ho_listen_decode((uint8_t *)b.p, b.len, &used, &out,
	    &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "bad listener address length");
	free(a.text);
	free(b.p);
}

static void
test_counters(void)
{
	struct outbuf b = { NULL, 0, 0 };
	uint64_t v[3] = { 1, 2, 3 }, w[5], x[2];
	const char *why = NULL;

	CU_ASSERT_EQUAL_FATAL(ho_counters_encode(&b, v, 3), 0);
	/* a build that knows more reads zeros for the rest */
	CU_ASSERT_EQUAL(ho_counters_decode((uint8_t *)b.p, b.len, w, 5,
	    &why), 0);
	CU_ASSERT_EQUAL(w[0], 1);
	CU_ASSERT_EQUAL(w[2], 3);
	CU_ASSERT_EQUAL(w[4], 0);
	/* one that knows fewer skips the rest */
	CU_ASSERT_EQUAL(ho_counters_decode((uint8_t *)b.p, b.len, x, 2,
	    &why), 0);
	CU_ASSERT_EQUAL(x[1], 2);
	/* a count that does not match the bytes */
	CU_ASSERT_EQUAL(ho_counters_decode((uint8_t *)b.p, b.len - 1, w, 5,
	    &why), -1);
	b.p[0] = 100;
	CU_ASSERT_EQUAL(ho_counters_decode((uint8_t *)b.p, b.len, w, 5,
	    &why), -1);
	free(b.p);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "a record round-trips every field", test_conn_round_trip },
		{ "records back to back", test_conn_sequence },
		{ "every prefix of a record is refused", test_conn_truncated },
		{ "impossible states are refused", test_conn_refused },
		{ "a record's length must match", test_conn_length },
		{ "a handshake in progress", test_handshake },
		{ "bus channels travel, bounded", test_subs },
		{ "frames: magic, version, type, length, CRC", test_frame },
		{ "listener entries", test_listen },
		{ "server counters, more or fewer", test_counters },
	};

	return suite_run("handover_state", tests, nitems(tests));
}
