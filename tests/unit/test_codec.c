/*
 * test_codec.c: CUnit suite for core/ws_codec.c.
 *
 * Streams are built here by hand, byte by byte, rather than with the
 * encoder under test, so a shared mistake cannot make both halves agree;
 * the encoder is then checked against the same builder and against the
 * examples in RFC 6455 section 5.7, and a round trip checks the two together.
 *
 * The decoder's central promise is that how the bytes are split does not
 * matter.  Every stream is decoded whole, one byte at a time and in many
 * random splits, and the events are reduced to a transcript that must come
 * out identical: data chunks are joined into messages, control frames and
 * errors kept as they are.  Each piece is handed over in a heap buffer of
 * exactly its size, so AddressSanitizer or valgrind catch any read past len.
 * Control frames are also split at every byte, since the decoder treats a
 * body that comes in one piece (delivered in place) differently from one
 * that does not (gathered in a buffer it holds only meanwhile).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t test_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* A small deterministic generator, so every run sees the same streams. */
static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
	rng_state = seed;
}

static uint32_t
rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Running out of memory is not a test result; stop. */
static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n > 0 ? n : 1);
	if (p == NULL) {
		perror("realloc");
		abort();
	}
	return p;
}

/* A growable byte buffer, for streams and transcripts alike. */
struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void
buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->n + n)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void
buf_byte(struct buf *b, uint8_t c)
{
	buf_put(b, &c, 1);
}

static void
buf_u64(struct buf *b, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--)
		buf_byte(b, (uint8_t)(v >> (8 * i)));
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static int
buf_eq(const struct buf *a, const struct buf *b)
{
	return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

/*
 * Append one frame, written the long way.  lenform is 0 for the minimal
 * length encoding, or 7, 16 or 64 to force one; mask NULL sends it unmasked.
 */
static void
put_frame(struct buf *b, uint8_t b0, int lenform, uint64_t len,
    const uint8_t *mask, const void *payload)
{
	const uint8_t *pl = payload;
	uint8_t mbit = mask != NULL ? 0x80 : 0;
	uint64_t i;

	if (lenform == 0)
		lenform = len < 126 ? 7 : len <= 0xffff ? 16 : 64;
	buf_byte(b, b0);
	if (lenform == 7)
		buf_byte(b, mbit | (uint8_t)len);
	else if (lenform == 16) {
		buf_byte(b, mbit | 126);
		buf_byte(b, (uint8_t)(len >> 8));
		buf_byte(b, (uint8_t)len);
	} else {
		buf_byte(b, mbit | 127);
		buf_u64(b, len);
	}
	if (mask != NULL)
		buf_put(b, mask, 4);
	for (i = 0; pl != NULL && i < len; i++)
		buf_byte(b, mask != NULL ? pl[i] ^ mask[i % 4] : pl[i]);
}

/* The usual case: a client frame with the minimal length and a mask. */
static void
put_msg(struct buf *b, int fin, uint8_t op, const void *payload, size_t len)
{
	put_frame(b, (fin ? 0x80 : 0) | op, 0, len, test_mask, payload);
}

static void
put_str(struct buf *b, int fin, uint8_t op, const char *s)
{
	put_msg(b, fin, op, s, strlen(s));
}

/*
 * Transcripts.  DATA chunks are joined: a finished message is
 * 'D' op len bytes; control frames are 'C' op code len bytes; an error is
 * 'E' code (the reason is kept aside, and the part of a message delivered
 * before it is dropped, since how much arrives before the error depends on
 * the split).  A message still open at the end is 'P' op len bytes.
 */
struct tr {
	struct buf out;
	struct buf msg; /* the open message */
	int open;
	uint8_t op;
	const char *reason;
	uint16_t code; /* of the error, if any */
	unsigned violations; /* broken invariants, counted as they happen */
};

static void
tr_data(struct buf *t, char kind, uint8_t op, const void *p, size_t n)
{
	buf_byte(t, (uint8_t)kind);
	buf_byte(t, op);
	buf_u64(t, n);
	buf_put(t, p, n);
}

static void
tr_control(struct buf *t, uint8_t op, uint16_t code, const void *p, size_t n)
{
	buf_byte(t, 'C');
	buf_byte(t, op);
	buf_byte(t, (uint8_t)(code >> 8));
	buf_byte(t, (uint8_t)code);
	buf_u64(t, n);
	buf_put(t, p, n);
}

static void
tr_error(struct buf *t, uint16_t code)
{
	buf_byte(t, 'E');
	buf_byte(t, (uint8_t)(code >> 8));
	buf_byte(t, (uint8_t)code);
}

static void
tr_violation(struct tr *t, const char *what)
{
	if (t->violations++ < 5)
		fprintf(stderr, "\n  invariant broken: %s", what);
}

/* ev came from a call that consumed at[0..r) of the piece. */
static void
tr_event(struct tr *t, const struct ws_decoder *d, const struct ws_event *ev,
    const uint8_t *at, size_t r)
{
	switch (ev->kind) {
	case WS_EV_DATA:
		if (ev->opcode != WS_OP_TEXT && ev->opcode != WS_OP_BINARY)
			tr_violation(t, "data opcode");
		if (t->open && ev->opcode != t->op)
			tr_violation(t, "opcode changed inside a message");
		if (ev->len == 0 && !ev->fin)
			tr_violation(t, "empty chunk that is not final");
		if (ev->data < at || ev->data + ev->len > at + r)
			tr_violation(t, "data outside the bytes consumed");
		t->op = ev->opcode;
		buf_put(&t->msg, ev->data, ev->len);
		t->open = 1;
		if (ev->fin) {
			tr_data(&t->out, 'D', t->op, t->msg.p, t->msg.n);
			t->msg.n = 0;
			t->open = 0;
		}
		break;
	case WS_EV_CONTROL:
		if (ev->opcode != WS_OP_CLOSE && ev->opcode != WS_OP_PING &&
		    ev->opcode != WS_OP_PONG)
			tr_violation(t, "control opcode");
		if (ev->len > WS_MAX_CONTROL)
			tr_violation(t, "control body too long");
		/* In place when the whole body was in this call; else it
		 * was split, so this call took only the rest of it. */
		if (ev->data == d->ctl && d->ctl != NULL) {
			if (r >= ev->len)
				tr_violation(t, "whole control body copied");
		} else if (ev->data < at || ev->data + ev->len != at + r)
			tr_violation(t, "control body not where it ended");
		if (ev->opcode == WS_OP_CLOSE && ev->len == 0 &&
		    ev->close_code != WS_CLOSE_NO_STATUS)
			tr_violation(t, "empty close without 1005");
		tr_control(&t->out, ev->opcode,
		    ev->opcode == WS_OP_CLOSE ? ev->close_code : 0, ev->data,
		    ev->len);
		break;
	case WS_EV_ERROR:
		if (ev->reason == NULL || ev->reason[0] == '\0' ||
		    strlen(ev->reason) > WS_MAX_CONTROL - 2)
			tr_violation(t, "error reason");
		if (!d->failed)
			tr_violation(t, "error without d->failed");
		t->msg.n = 0;
		t->open = 0;
		t->reason = ev->reason;
		t->code = ev->close_code;
		tr_error(&t->out, ev->close_code);
		break;
	case WS_EV_NONE:
		break;
	}
}

static void
tr_free(struct tr *t)
{
	buf_free(&t->out);
	buf_free(&t->msg);
}

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

static size_t
piece_size(enum split how, size_t left)
{
	size_t n;

	switch (how) {
	case SPLIT_WHOLE:
		return left;
	case SPLIT_BYTES:
		return 1;
	default:
		/* Mostly small pieces, so headers split every which way, but
		 * some large enough to hold several frames. */
		switch (rng() % 4) {
		case 0:
			n = 1 + rng() % 3;
			break;
		case 1:
			n = 1 + rng() % 16;
			break;
		case 2:
			n = 1 + rng() % 300;
			break;
		default:
			n = 1 + rng() % 70000;
			break;
		}
		return n < left ? n : left;
	}
}

/*
 * Feed the next plen bytes of a stream to d the way a connection would, in
 * a buffer of exactly that size, and add to the transcript.  Returns the
 * bytes consumed before an error, with *failed_r set by one.
 */
static size_t
decode_piece(struct ws_decoder *d, const uint8_t *s, size_t plen,
    struct tr *t, int *failed_r)
{
	struct ws_event ev, again;
	size_t consumed = 0, left, r;
	uint8_t *piece, *p;

	piece = xrealloc(NULL, plen);
	memcpy(piece, s, plen);
	p = piece;
	left = plen;
	while (left > 0) {
		r = ws_decode(d, p, left, &ev);
		if (r > left) {
			tr_violation(t, "consumed more than given");
			break;
		}
		if (ev.kind == WS_EV_NONE && r != left)
			tr_violation(t, "NONE but not all consumed");
		if (r == 0 && ev.kind != WS_EV_ERROR) {
			tr_violation(t, "no progress");
			break;
		}
		tr_event(t, d, &ev, p, r);
		p += r;
		left -= r;
		consumed += r;
		if (ev.kind == WS_EV_ERROR) {
			/* Sticky: the same error, eating everything. */
			r = ws_decode(d, p, left, &again);
			if (again.kind != WS_EV_ERROR ||
			    again.close_code != ev.close_code ||
			    again.reason != ev.reason || r != left)
				tr_violation(t, "error not sticky");
			*failed_r = 1;
			break;
		}
	}
	/* Between frames, once told to feed more, the decoder holds no
	 * buffer: a connection idle after a split ping costs nothing. */
	if (!*failed_r) {
		r = ws_decode(d, p, 0, &ev);
		if (r != 0 || ev.kind != WS_EV_NONE)
			tr_violation(t, "an event from 0 bytes");
		if (d->ctl != NULL && !d->in_payload)
			tr_violation(t, "control buffer kept between frames");
	}
	free(piece);
	return consumed;
}

/*
 * Feed s[0..n) piece by piece, the pieces ending at cuts[0..ncuts) (in
 * order) and then as how says, and write the transcript.  Returns the bytes
 * consumed before the error event (n when there was none) so limits can be
 * checked against the header length.
 */
static size_t
decode_cuts(const uint8_t *s, size_t n, uint64_t max_message,
    const size_t *cuts, size_t ncuts, enum split how, struct tr *t)
{
	struct ws_decoder d;
	size_t off = 0, consumed = 0, plen, i = 0;
	int failed = 0;

	memset(t, 0, sizeof(*t));
	ws_decoder_init(&d, max_message);
	while (off < n && !failed) {
		if (i < ncuts)
			plen = cuts[i++] - off;
		else
			plen = piece_size(how, n - off);
		consumed += decode_piece(&d, s + off, plen, t, &failed);
		off += plen;
	}
	ws_decoder_fini(&d);
	if (t->open)
		tr_data(&t->out, 'P', t->op, t->msg.p, t->msg.n);
	return consumed;
}

static size_t
decode_stream(const uint8_t *s, size_t n, uint64_t max_message,
    enum split how, struct tr *t)
{
	return decode_cuts(s, n, max_message, NULL, 0, how, t);
}

/*
 * The chunking oracle: whole, byte at a time and nrandom random splits must
 * give the same transcript, and, when want is not NULL, the one expected.
 */
static void
check_stream(const struct buf *s, uint64_t max_message, const struct buf *want,
    unsigned nrandom)
{
	struct tr whole, other;
	unsigned i;

	decode_stream(s->p, s->n, max_message, SPLIT_WHOLE, &whole);
	CU_ASSERT_EQUAL(whole.violations, 0);
	if (want != NULL) {
		CU_ASSERT(buf_eq(&whole.out, want));
	}
	decode_stream(s->p, s->n, max_message, SPLIT_BYTES, &other);
	CU_ASSERT_EQUAL(other.violations, 0);
	CU_ASSERT(buf_eq(&whole.out, &other.out));
	CU_ASSERT(whole.reason == other.reason);
	tr_free(&other);
	for (i = 0; i < nrandom; i++) {
		decode_stream(s->p, s->n, max_message, SPLIT_RANDOM, &other);
		CU_ASSERT_EQUAL(other.violations, 0);
		CU_ASSERT(buf_eq(&whole.out, &other.out));
		CU_ASSERT(whole.reason == other.reason);
		tr_free(&other);
	}
	tr_free(&whole);
}

/* One call on a private copy; returns what ws_decode returned. */
static size_t
decode_once(struct ws_decoder *d, const struct buf *s, size_t n,
    struct ws_event *ev, uint8_t **copy_r)
{
	uint8_t *c;
	size_t r;

	c = xrealloc(NULL, n);
	if (n > 0)
		memcpy(c, s->p, n);
	r = ws_decode(d, c, n, ev);
	if (copy_r != NULL)
		*copy_r = c;
	else
		free(c);
	return r;
}

/* RFC 6455 section 5.7, the masked examples a server receives. */
static void
test_rfc_examples(void)
{
	uint8_t hello[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
		0x4d, 0x51, 0x58 };
	uint8_t pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
		0x4d, 0x51, 0x58 };
	struct ws_decoder d;
	struct ws_event ev;
	size_t r;

	ws_decoder_init(&d, 0);
	r = ws_decode(&d, hello, sizeof(hello), &ev);
	CU_ASSERT_EQUAL(r, sizeof(hello));
	CU_ASSERT_EQUAL(ev.kind, WS_EV_DATA);
	CU_ASSERT_EQUAL(ev.opcode, WS_OP_TEXT);
	CU_ASSERT_EQUAL(ev.fin, 1);
	CU_ASSERT_EQUAL(ev.len, 5);
	CU_ASSERT(ev.data == hello + 6); /* in place */
	CU_ASSERT(memcmp(hello + 6, "Hello", 5) == 0);

	r = ws_decode(&d, pong, sizeof(pong), &ev);
	CU_ASSERT_EQUAL(r, sizeof(pong));
	CU_ASSERT_EQUAL(ev.kind, WS_EV_CONTROL);
	CU_ASSERT_EQUAL(ev.opcode, WS_OP_PONG);
	CU_ASSERT_EQUAL(ev.len, 5);
	CU_ASSERT(ev.data == pong + 6); /* whole in one piece: in place */
	CU_ASSERT(memcmp(ev.data, "Hello", 5) == 0);

	/* Nothing given, nothing happens. */
	r = ws_decode(&d, NULL, 0, &ev);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_NONE);
}

/* The decoder's error for a stream: code, and bytes consumed up to it. */
static uint16_t
first_error(const struct buf *s, uint64_t max_message, size_t *consumed_r,
    const char **reason_r)
{
	struct tr t;
	size_t consumed;
	uint16_t code;

	consumed = decode_stream(s->p, s->n, max_message, SPLIT_WHOLE, &t);
	CU_ASSERT_EQUAL(t.violations, 0);
	code = t.code;
	if (consumed_r != NULL)
		*consumed_r = consumed;
	if (reason_r != NULL)
		*reason_r = t.reason;
	tr_free(&t);
	return code;
}

static void
test_every_opcode(void)
{
	struct buf s = { 0 }, want = { 0 };
	size_t consumed;
	uint8_t op;

	put_str(&s, 1, WS_OP_TEXT, "text");
	tr_data(&want, 'D', WS_OP_TEXT, "text", 4);
	put_msg(&s, 1, WS_OP_BINARY, "\x00\xff\x80", 3);
	tr_data(&want, 'D', WS_OP_BINARY, "\x00\xff\x80", 3);
	put_str(&s, 1, WS_OP_PING, "ping!");
	tr_control(&want, WS_OP_PING, 0, "ping!", 5);
	put_str(&s, 1, WS_OP_PONG, "");
	tr_control(&want, WS_OP_PONG, 0, "", 0);
	put_str(&s, 1, WS_OP_CLOSE, "\x03\xe8" "done");
	tr_control(&want, WS_OP_CLOSE, 1000, "\x03\xe8" "done", 6);
	check_stream(&s, 0, &want, 20);
	buf_free(&s);
	buf_free(&want);

	/* Reserved opcodes fail on the second header byte. */
	for (op = 0x3; op <= 0xf; op++) {
		if (op >= 0x8 && op <= 0xa)
			continue;
		put_str(&s, 1, op, "x");
		CU_ASSERT_EQUAL(first_error(&s, 0, &consumed, NULL), 1002);
		CU_ASSERT_EQUAL(consumed, 2);
		check_stream(&s, 0, NULL, 5);
		buf_free(&s);
	}
}

/* Payload lengths at each encoding boundary, minimal and forced wider. */
static void
test_lengths(void)
{
	static const size_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536,
		70000 };
	struct buf s = { 0 }, want = { 0 };
	uint8_t *payload, *copy;
	struct ws_decoder d;
	struct ws_event ev;
	size_t i, j, r, hdr;

	payload = malloc(70000);
	CU_ASSERT_FATAL(payload != NULL);
	for (j = 0; j < 70000; j++)
		payload[j] = (uint8_t)(j * 7 + 3);

	for (i = 0; i < NELEM(lens); i++) {
		hdr = lens[i] < 126 ? 2 : lens[i] <= 0xffff ? 4 : 10;
		put_msg(&s, 1, WS_OP_BINARY, payload, lens[i]);
		CU_ASSERT_EQUAL(s.n, hdr + 4 + lens[i]);

		ws_decoder_init(&d, 0);
		r = decode_once(&d, &s, s.n, &ev, &copy);
		CU_ASSERT_EQUAL(r, s.n);
		CU_ASSERT_EQUAL(ev.kind, WS_EV_DATA);
		CU_ASSERT_EQUAL(ev.opcode, WS_OP_BINARY);
		CU_ASSERT_EQUAL(ev.fin, 1);
		CU_ASSERT_EQUAL(ev.len, lens[i]);
		CU_ASSERT(ev.data == copy + hdr + 4);
		CU_ASSERT(lens[i] == 0 ||
		    memcmp(ev.data, payload, lens[i]) == 0);
		free(copy);

		tr_data(&want, 'D', WS_OP_BINARY, payload, lens[i]);
		check_stream(&s, 0, &want, 3);
		buf_free(&want);
		buf_free(&s);
	}

	/* Wider-than-needed lengths are tolerated. */
	put_frame(&s, 0x81, 16, 5, test_mask, "Hello");
	put_frame(&s, 0x81, 64, 5, test_mask, "Hello");
	put_frame(&s, 0x82, 64, 300, test_mask, payload);
	tr_data(&want, 'D', WS_OP_TEXT, "Hello", 5);
	tr_data(&want, 'D', WS_OP_TEXT, "Hello", 5);
	tr_data(&want, 'D', WS_OP_BINARY, payload, 300);
	check_stream(&s, 0, &want, 10);
	buf_free(&s);
	buf_free(&want);
	free(payload);
}

/* The mask is honoured whatever its value, including all zeros. */
static void
test_masking(void)
{
	static const uint8_t masks[][4] = { { 0, 0, 0, 0 },
		{ 0xff, 0xff, 0xff, 0xff }, { 1, 2, 3, 4 },
		{ 0x80, 0x00, 0x7f, 0xaa } };
	uint8_t payload[200];
	struct buf s = { 0 }, want = { 0 };
	size_t i, n;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i ^ 0x5a);
	for (i = 0; i < NELEM(masks); i++) {
		for (n = 0; n <= sizeof(payload); n += 33) {
			put_frame(&s, 0x82, 0, n, masks[i], payload);
			tr_data(&want, 'D', WS_OP_BINARY, payload, n);
			put_frame(&s, 0x89, 0, n % 126, masks[i], payload);
			tr_control(&want, WS_OP_PING, 0, payload, n % 126);
		}
		check_stream(&s, 0, &want, 10);
		buf_free(&s);
		buf_free(&want);
	}
}

/*
 * A fragmented text message with control frames between its fragments and a
 * character split across a fragment boundary; events checked one by one.
 */
static void
test_fragmentation(void)
{
	struct buf s = { 0 }, want = { 0 };
	struct ws_decoder d;
	struct ws_event ev;
	uint8_t *copy, *p;
	size_t left, r;
	struct {
		enum ws_ev_kind kind;
		uint8_t op;
		int fin;
		const char *data;
	} expect[] = {
		{ WS_EV_DATA, WS_OP_TEXT, 0, "Hel" },
		{ WS_EV_CONTROL, WS_OP_PING, 0, "are you there" },
		{ WS_EV_DATA, WS_OP_TEXT, 0, "lo \xe2\x82" },
		{ WS_EV_CONTROL, WS_OP_PONG, 0, "" },
		{ WS_EV_DATA, WS_OP_TEXT, 1, "\xac!" },
		{ WS_EV_DATA, WS_OP_BINARY, 0, "ab" },
		{ WS_EV_DATA, WS_OP_BINARY, 1, "" },
	};
	size_t i = 0;

	put_str(&s, 0, WS_OP_TEXT, "Hel");
	put_str(&s, 1, WS_OP_PING, "are you there");
	put_str(&s, 0, WS_OP_CONT, "lo \xe2\x82");
	put_str(&s, 0, WS_OP_CONT, ""); /* says nothing */
	put_str(&s, 1, WS_OP_PONG, "");
	put_str(&s, 1, WS_OP_CONT, "\xac!");
	put_str(&s, 0, WS_OP_BINARY, "ab");
	put_str(&s, 1, WS_OP_CONT, ""); /* ends the message: one event */

	ws_decoder_init(&d, 0);
	copy = malloc(s.n);
	CU_ASSERT_FATAL(copy != NULL);
	memcpy(copy, s.p, s.n);
	p = copy;
	left = s.n;
	while (left > 0) {
		r = ws_decode(&d, p, left, &ev);
		CU_ASSERT_FATAL(r > 0 && r <= left);
		p += r;
		left -= r;
		if (ev.kind == WS_EV_NONE)
			break;
		CU_ASSERT_FATAL(i < NELEM(expect));
		CU_ASSERT_EQUAL(ev.kind, expect[i].kind);
		CU_ASSERT_EQUAL(ev.opcode, expect[i].op);
		if (ev.kind == WS_EV_DATA) {
			CU_ASSERT_EQUAL(ev.fin, expect[i].fin);
		}
		CU_ASSERT_EQUAL(ev.len, strlen(expect[i].data));
		CU_ASSERT(ev.len == strlen(expect[i].data) &&
		    memcmp(ev.data, expect[i].data, ev.len) == 0);
		i++;
	}
	CU_ASSERT_EQUAL(left, 0);
	CU_ASSERT_EQUAL(i, NELEM(expect));
	free(copy);

	/* In the transcript the controls come first: a message is written
	 * when it ends. */
	tr_control(&want, WS_OP_PING, 0, "are you there", 13);
	tr_control(&want, WS_OP_PONG, 0, "", 0);
	tr_data(&want, 'D', WS_OP_TEXT, "Hello \xe2\x82\xac!", 10);
	tr_data(&want, 'D', WS_OP_BINARY, "ab", 2);
	check_stream(&s, 0, &want, 50);
	buf_free(&s);
	buf_free(&want);
}

/* Empty messages still produce their one final event. */
static void
test_empty_messages(void)
{
	struct buf s = { 0 }, want = { 0 };
	struct ws_decoder d;
	struct ws_event ev;
	uint8_t *copy;
	size_t r;

	put_str(&s, 1, WS_OP_TEXT, "");
	ws_decoder_init(&d, 0);
	r = decode_once(&d, &s, s.n, &ev, &copy);
	CU_ASSERT_EQUAL(r, 6);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_DATA);
	CU_ASSERT_EQUAL(ev.opcode, WS_OP_TEXT);
	CU_ASSERT_EQUAL(ev.fin, 1);
	CU_ASSERT_EQUAL(ev.len, 0);
	free(copy);
	tr_data(&want, 'D', WS_OP_TEXT, "", 0);

	put_str(&s, 1, WS_OP_BINARY, "");
	tr_data(&want, 'D', WS_OP_BINARY, "", 0);
	put_str(&s, 0, WS_OP_TEXT, "");
	put_str(&s, 0, WS_OP_CONT, "");
	put_str(&s, 1, WS_OP_CONT, "");
	tr_data(&want, 'D', WS_OP_TEXT, "", 0);
	put_str(&s, 0, WS_OP_BINARY, "xy");
	put_str(&s, 1, WS_OP_CONT, "");
	tr_data(&want, 'D', WS_OP_BINARY, "xy", 2);
	put_str(&s, 1, WS_OP_CLOSE, "");
	tr_control(&want, WS_OP_CLOSE, WS_CLOSE_NO_STATUS, "", 0);
	check_stream(&s, 0, &want, 50);
	buf_free(&s);
	buf_free(&want);
}

/* A chunk ends where its frame ends, even with more input behind it. */
static void
test_chunk_ends_at_frame(void)
{
	struct buf s = { 0 };
	struct ws_decoder d;
	struct ws_event ev;
	uint8_t *copy;
	size_t r;

	put_str(&s, 0, WS_OP_TEXT, "abc");
	put_str(&s, 1, WS_OP_CONT, "de");
	put_str(&s, 1, WS_OP_BINARY, "f");
	ws_decoder_init(&d, 0);
	copy = malloc(s.n);
	CU_ASSERT_FATAL(copy != NULL);
	memcpy(copy, s.p, s.n);
	r = ws_decode(&d, copy, s.n, &ev);
	CU_ASSERT_EQUAL(r, 9);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_DATA);
	CU_ASSERT_EQUAL(ev.len, 3);
	CU_ASSERT_EQUAL(ev.fin, 0);
	r += ws_decode(&d, copy + r, s.n - r, &ev);
	CU_ASSERT_EQUAL(r, 17);
	CU_ASSERT_EQUAL(ev.opcode, WS_OP_TEXT); /* the message's, not CONT */
	CU_ASSERT_EQUAL(ev.len, 2);
	CU_ASSERT_EQUAL(ev.fin, 1);
	r += ws_decode(&d, copy + r, s.n - r, &ev);
	CU_ASSERT_EQUAL(r, s.n);
	CU_ASSERT_EQUAL(ev.opcode, WS_OP_BINARY);
	CU_ASSERT_EQUAL(ev.fin, 1);

	/* A partial payload is delivered as far as it goes. */
	buf_free(&s);
	put_str(&s, 1, WS_OP_TEXT, "0123456789");
	ws_decoder_init(&d, 0);
	memcpy(copy, s.p, s.n);
	r = ws_decode(&d, copy, 9, &ev); /* header and 3 bytes */
	CU_ASSERT_EQUAL(r, 9);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_DATA);
	CU_ASSERT_EQUAL(ev.len, 3);
	CU_ASSERT_EQUAL(ev.fin, 0);
	CU_ASSERT(memcmp(ev.data, "012", 3) == 0);
	r = ws_decode(&d, copy + 9, s.n - 9, &ev);
	CU_ASSERT_EQUAL(r, 7);
	CU_ASSERT_EQUAL(ev.len, 7);
	CU_ASSERT_EQUAL(ev.fin, 1);
	CU_ASSERT(memcmp(ev.data, "3456789", 7) == 0);
	/* The header alone: all consumed, nothing to say yet. */
	ws_decoder_init(&d, 0);
	memcpy(copy, s.p, s.n);
	r = ws_decode(&d, copy, 6, &ev);
	CU_ASSERT_EQUAL(r, 6);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_NONE);
	free(copy);
	buf_free(&s);
}

/* One error case: a stream, its close code, and how many bytes go before
 * the error is reported (0: not checked). */
struct err_case {
	const char *name;
	struct buf s;
	uint16_t code;
	size_t consumed;
};

static void
check_error(struct err_case *c, uint64_t max_message)
{
	size_t consumed;
	const char *reason;
	uint16_t code;

	code = first_error(&c->s, max_message, &consumed, &reason);
	if (code != c->code || (c->consumed && consumed != c->consumed))
		fprintf(stderr, "\n  %s: code %u after %zu bytes, want %u "
		    "after %zu", c->name, code, consumed, c->code,
		    c->consumed);
	CU_ASSERT_EQUAL(code, c->code);
	if (c->consumed != 0) {
		CU_ASSERT_EQUAL(consumed, c->consumed);
	}
	CU_ASSERT(reason != NULL && strlen(reason) > 0);
	check_stream(&c->s, max_message, NULL, 10);
	buf_free(&c->s);
}

static void
test_protocol_errors(void)
{
	struct err_case c;
	uint8_t long_payload[200];
	int bit;

	memset(long_payload, 'a', sizeof(long_payload));

	for (bit = 0x10; bit <= 0x40; bit <<= 1) {
		c = (struct err_case){ "RSV on text", { 0 }, 1002, 2 };
		put_frame(&c.s, 0x81 | bit, 0, 2, test_mask, "hi");
		check_error(&c, 0);
		c = (struct err_case){ "RSV on ping", { 0 }, 1002, 2 };
		put_frame(&c.s, 0x89 | bit, 0, 0, test_mask, NULL);
		check_error(&c, 0);
		c = (struct err_case){ "RSV on continuation", { 0 }, 1002,
			8 + 2 };
		put_str(&c.s, 0, WS_OP_TEXT, "ab");
		put_frame(&c.s, 0x80 | bit, 0, 2, test_mask, "cd");
		check_error(&c, 0);
	}

	c = (struct err_case){ "unmasked text", { 0 }, 1002, 2 };
	put_frame(&c.s, 0x81, 0, 5, NULL, "Hello");
	check_error(&c, 0);
	c = (struct err_case){ "unmasked ping", { 0 }, 1002, 2 };
	put_frame(&c.s, 0x89, 0, 0, NULL, NULL);
	check_error(&c, 0);
	c = (struct err_case){ "unmasked after a good frame", { 0 }, 1002,
		6 + 2 };
	put_str(&c.s, 1, WS_OP_BINARY, "");
	put_frame(&c.s, 0x82, 0, 1, NULL, "x");
	check_error(&c, 0);

	c = (struct err_case){ "continuation alone", { 0 }, 1002, 2 };
	put_str(&c.s, 1, WS_OP_CONT, "x");
	check_error(&c, 0);
	c = (struct err_case){ "continuation after a finished message",
		{ 0 }, 1002, 7 + 2 };
	put_str(&c.s, 1, WS_OP_TEXT, "a");
	put_str(&c.s, 0, WS_OP_CONT, "b");
	check_error(&c, 0);
	c = (struct err_case){ "text inside text", { 0 }, 1002, 7 + 2 };
	put_str(&c.s, 0, WS_OP_TEXT, "a");
	put_str(&c.s, 1, WS_OP_TEXT, "b");
	check_error(&c, 0);
	c = (struct err_case){ "binary inside text", { 0 }, 1002,
		7 + 25 + 2 };
	put_str(&c.s, 0, WS_OP_TEXT, "a");
	put_str(&c.s, 1, WS_OP_PING, "ping between frames");
	put_str(&c.s, 1, WS_OP_BINARY, "b");
	check_error(&c, 0);
	c = (struct err_case){ "text inside binary", { 0 }, 1002, 7 + 2 };
	put_str(&c.s, 0, WS_OP_BINARY, "a");
	put_str(&c.s, 1, WS_OP_TEXT, "b");
	check_error(&c, 0);

	c = (struct err_case){ "64-bit length with the top bit", { 0 },
		1002, 14 };
	put_frame(&c.s, 0x82, 64, 0x8000000000000000ULL, test_mask, NULL);
	put_frame(&c.s, 0x82, 0, 1, test_mask, "x");
	check_error(&c, 0);
	c = (struct err_case){ "64-bit length all ones", { 0 }, 1002, 14 };
	put_frame(&c.s, 0x82, 64, UINT64_MAX, test_mask, NULL);
	check_error(&c, 0);

	c = (struct err_case){ "fragmented ping", { 0 }, 1002, 2 };
	put_str(&c.s, 0, WS_OP_PING, "x");
	check_error(&c, 0);
	c = (struct err_case){ "fragmented close", { 0 }, 1002, 2 };
	put_str(&c.s, 0, WS_OP_CLOSE, "\x03\xe8");
	check_error(&c, 0);
	c = (struct err_case){ "ping of 126", { 0 }, 1002, 2 };
	put_frame(&c.s, 0x89, 0, 126, test_mask, long_payload);
	check_error(&c, 0);
	c = (struct err_case){ "pong with a 64-bit length", { 0 }, 1002, 2 };
	put_frame(&c.s, 0x8a, 64, 5, test_mask, "Hello");
	check_error(&c, 0);
	c = (struct err_case){ "close of 126 after data", { 0 }, 1002,
		8 + 2 };
	put_str(&c.s, 0, WS_OP_TEXT, "ab");
	put_frame(&c.s, 0x88, 0, 126, test_mask, long_payload);
	check_error(&c, 0);
}

static void
test_utf8_errors(void)
{
	struct err_case c;
	struct buf s = { 0 }, want = { 0 };
	struct ws_decoder d;
	struct ws_event ev;
	uint8_t payload[100];
	size_t r;

	c = (struct err_case){ "invalid text", { 0 }, 1007, 6 + 3 };
	put_str(&c.s, 1, WS_OP_TEXT, "a\xff" "b");
	check_error(&c, 0);
	c = (struct err_case){ "surrogate in text", { 0 }, 1007, 0 };
	put_str(&c.s, 1, WS_OP_TEXT, "\xed\xa0\x80");
	check_error(&c, 0);
	c = (struct err_case){ "overlong in text", { 0 }, 1007, 0 };
	put_str(&c.s, 1, WS_OP_TEXT, "\xc0\xaf");
	check_error(&c, 0);
	c = (struct err_case){ "truncated at the end of text", { 0 }, 1007,
		6 + 4 };
	put_str(&c.s, 1, WS_OP_TEXT, "ab\xe2\x82");
	check_error(&c, 0);
	c = (struct err_case){ "truncated at the end of fragments", { 0 },
		1007, 0 };
	put_str(&c.s, 0, WS_OP_TEXT, "ab\xe2");
	put_str(&c.s, 1, WS_OP_CONT, "\x82");
	check_error(&c, 0);
	c = (struct err_case){ "truncated by an empty final fragment",
		{ 0 }, 1007, 9 + 6 };
	put_str(&c.s, 0, WS_OP_TEXT, "ab\xe2");
	put_str(&c.s, 1, WS_OP_CONT, "");
	check_error(&c, 0);
	c = (struct err_case){ "sequence broken across fragments", { 0 },
		1007, 0 };
	put_str(&c.s, 0, WS_OP_TEXT, "ab\xe2\x82");
	put_str(&c.s, 1, WS_OP_PING, "");
	put_str(&c.s, 1, WS_OP_CONT, "x");
	check_error(&c, 0);

	/* Binary is not text: anything goes. */
	put_str(&s, 1, WS_OP_BINARY, "\xff\xc0\xed\xa0\x80\xe2");
	tr_data(&want, 'D', WS_OP_BINARY, "\xff\xc0\xed\xa0\x80\xe2", 6);
	check_stream(&s, 0, &want, 10);
	buf_free(&s);
	buf_free(&want);

	/* Incremental: a bad byte early in a long frame fails the call that
	 * brings it, long before the frame is complete. */
	memset(payload, 'a', sizeof(payload));
	payload[5] = 0xff;
	put_msg(&s, 1, WS_OP_TEXT, payload, sizeof(payload));
	ws_decoder_init(&d, 0);
	r = decode_once(&d, &s, 6 + 10, &ev, NULL);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_ERROR);
	CU_ASSERT_EQUAL(ev.close_code, 1007);
	CU_ASSERT_EQUAL(r, 6 + 10);
	CU_ASSERT(d.failed != 0);
	buf_free(&s);
	/* The same with a sequence that is impossible before it ends. */
	memset(payload, 'a', sizeof(payload));
	memcpy(payload + 5, "\xe0\x80", 2);
	put_msg(&s, 1, WS_OP_TEXT, payload, sizeof(payload));
	ws_decoder_init(&d, 0);
	r = decode_once(&d, &s, 6 + 7, &ev, NULL);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_ERROR);
	CU_ASSERT_EQUAL(ev.close_code, 1007);
	buf_free(&s);
}

/* 1009 comes from the header, before any payload byte is taken. */
static void
test_max_message(void)
{
	static uint8_t big[70000];
	struct buf s = { 0 }, want = { 0 };
	struct err_case c;
	struct ws_decoder d;
	struct ws_event ev;
	size_t r;

	c = (struct err_case){ "101 > 100", { 0 }, 1009, 6 };
	put_msg(&c.s, 1, WS_OP_TEXT, big, 101);
	check_error(&c, 100);
	c = (struct err_case){ "16-bit 201 > 200", { 0 }, 1009, 8 };
	put_msg(&c.s, 1, WS_OP_BINARY, big, 201);
	check_error(&c, 200);
	c = (struct err_case){ "64-bit 65537 > 65536", { 0 }, 1009, 14 };
	put_msg(&c.s, 1, WS_OP_BINARY, big, 65537);
	check_error(&c, 65536);
	c = (struct err_case){ "huge 64-bit length", { 0 }, 1009, 14 };
	put_frame(&c.s, 0x82, 64, 0x7fffffffffffffffULL, test_mask, NULL);
	check_error(&c, 1000);
	c = (struct err_case){ "60 + 41 > 100", { 0 }, 1009, 66 + 6 };
	put_msg(&c.s, 0, WS_OP_BINARY, big, 60);
	put_msg(&c.s, 1, WS_OP_CONT, big, 41);
	check_error(&c, 100);
	c = (struct err_case){ "60 + 0 + 41 > 100, ping between", { 0 },
		1009, 66 + 6 + 6 + 6 };
	put_msg(&c.s, 0, WS_OP_TEXT, big, 60);
	put_msg(&c.s, 0, WS_OP_CONT, big, 0);
	put_msg(&c.s, 1, WS_OP_PING, big, 0);
	put_msg(&c.s, 1, WS_OP_CONT, big, 41);
	check_error(&c, 100);

	/* The returned count is exactly the header, even when the payload
	 * is already in the buffer. */
	put_msg(&s, 1, WS_OP_BINARY, big, 101);
	ws_decoder_init(&d, 100);
	r = decode_once(&d, &s, s.n, &ev, NULL);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_ERROR);
	CU_ASSERT_EQUAL(ev.close_code, 1009);
	CU_ASSERT_EQUAL(r, 6);
	buf_free(&s);

	/* At the limit is fine; the count starts again per message; control
	 * frames are not messages; 0 means no limit. */
	put_msg(&s, 0, WS_OP_BINARY, big, 60);
	put_msg(&s, 1, WS_OP_CONT, big, 40);
	tr_data(&want, 'D', WS_OP_BINARY, big, 100);
	put_msg(&s, 1, WS_OP_TEXT, big, 100);
	tr_data(&want, 'D', WS_OP_TEXT, big, 100);
	put_msg(&s, 1, WS_OP_PING, big, 125);
	tr_control(&want, WS_OP_PING, 0, big, 125);
	check_stream(&s, 100, &want, 10);
	buf_free(&s);
	buf_free(&want);
	put_msg(&s, 1, WS_OP_BINARY, big, sizeof(big));
	tr_data(&want, 'D', WS_OP_BINARY, big, sizeof(big));
	check_stream(&s, 0, &want, 3);
	buf_free(&s);
	buf_free(&want);
}

static void
test_sticky_error(void)
{
	struct buf s = { 0 }, good = { 0 };
	struct ws_decoder d;
	struct ws_event ev, first;
	uint8_t *copy;
	size_t r;

	put_frame(&s, 0x81, 0, 2, NULL, "hi"); /* unmasked */
	put_str(&good, 1, WS_OP_TEXT, "fine");
	ws_decoder_init(&d, 0);
	r = decode_once(&d, &s, s.n, &first, NULL);
	CU_ASSERT_EQUAL(first.kind, WS_EV_ERROR);
	CU_ASSERT_EQUAL(first.close_code, 1002);
	CU_ASSERT_EQUAL(r, 2);
	CU_ASSERT(d.failed != 0);

	r = decode_once(&d, &good, good.n, &ev, &copy);
	CU_ASSERT_EQUAL(r, good.n);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_ERROR);
	CU_ASSERT_EQUAL(ev.close_code, first.close_code);
	CU_ASSERT(ev.reason == first.reason);
	/* Nothing was touched: failed input is not unmasked. */
	CU_ASSERT(memcmp(copy, good.p, good.n) == 0);
	free(copy);
	r = ws_decode(&d, NULL, 0, &ev);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_ERROR);
	CU_ASSERT_EQUAL(ev.close_code, 1002);

	/* A fresh init clears it. */
	ws_decoder_init(&d, 0);
	r = decode_once(&d, &good, good.n, &ev, NULL);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_DATA);
	buf_free(&s);
	buf_free(&good);
}

static void
test_close_frames(void)
{
	static const unsigned good[] = { 1000, 1001, 1002, 1003, 1007, 1008,
		1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 };
	static const unsigned bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015,
		1016, 1100, 2000, 2999, 5000, 65535 };
	struct buf s = { 0 }, want = { 0 };
	struct err_case c;
	struct ws_decoder d;
	struct ws_event ev;
	uint8_t body[WS_MAX_CONTROL], *copy;
	size_t i, r;

	/* Empty: 1005. */
	put_str(&s, 1, WS_OP_CLOSE, "");
	ws_decoder_init(&d, 0);
	r = decode_once(&d, &s, s.n, &ev, NULL);
	CU_ASSERT_EQUAL(r, 6);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_CONTROL);
	CU_ASSERT_EQUAL(ev.opcode, WS_OP_CLOSE);
	CU_ASSERT_EQUAL(ev.close_code, WS_CLOSE_NO_STATUS);
	CU_ASSERT_EQUAL(ev.len, 0);
	buf_free(&s);

	/* Code and reason. */
	put_str(&s, 1, WS_OP_CLOSE, "\x03\xe8" "bye \xe2\x82\xac");
	ws_decoder_init(&d, 0);
	r = decode_once(&d, &s, s.n, &ev, &copy);
	CU_ASSERT_EQUAL(r, s.n);
	CU_ASSERT_EQUAL(ev.kind, WS_EV_CONTROL);
	CU_ASSERT_EQUAL(ev.close_code, 1000);
	CU_ASSERT_EQUAL(ev.len, 9);
	CU_ASSERT(ev.data == copy + 6); /* in place */
	CU_ASSERT(memcmp(ev.data + 2, "bye \xe2\x82\xac", 7) == 0);
	free(copy);
	buf_free(&s);

	for (i = 0; i < NELEM(good); i++) {
		body[0] = (uint8_t)(good[i] >> 8);
		body[1] = (uint8_t)good[i];
		put_msg(&s, 1, WS_OP_CLOSE, body, 2);
		tr_control(&want, WS_OP_CLOSE, (uint16_t)good[i], body, 2);
		check_stream(&s, 0, &want, 2);
		buf_free(&s);
		buf_free(&want);
	}
	for (i = 0; i < NELEM(bad); i++) {
		c = (struct err_case){ "bad close code", { 0 }, 1002, 8 };
		body[0] = (uint8_t)(bad[i] >> 8);
		body[1] = (uint8_t)bad[i];
		put_msg(&c.s, 1, WS_OP_CLOSE, body, 2);
		check_error(&c, 0);
	}

	c = (struct err_case){ "close of 1 byte", { 0 }, 1002, 7 };
	put_str(&c.s, 1, WS_OP_CLOSE, "\x03");
	check_error(&c, 0);
	/* Even when the byte left over from an earlier control frame would
	 * complete a valid code. */
	c = (struct err_case){ "close of 1 byte after a ping", { 0 }, 1002,
		8 + 7 };
	put_str(&c.s, 1, WS_OP_PING, "\x03\xe8");
	put_str(&c.s, 1, WS_OP_CLOSE, "\x03");
	check_error(&c, 0);
	c = (struct err_case){ "close reason not UTF-8", { 0 }, 1007, 0 };
	put_str(&c.s, 1, WS_OP_CLOSE, "\x03\xe8" "bad \xff");
	check_error(&c, 0);
	c = (struct err_case){ "close reason truncated", { 0 }, 1007, 0 };
	put_str(&c.s, 1, WS_OP_CLOSE, "\x03\xe8" "cut \xe2\x82");
	check_error(&c, 0);

	/* The largest body, a reason of 123 bytes, split every way. */
	body[0] = 0x0f;
	body[1] = 0xa0; /* 4000 */
	for (i = 2; i < WS_MAX_CONTROL; i++)
		body[i] = 'a' + i % 26;
	put_msg(&s, 1, WS_OP_CLOSE, body, sizeof(body));
	tr_control(&want, WS_OP_CLOSE, 4000, body, sizeof(body));
	check_stream(&s, 0, &want, 20);
	buf_free(&s);
	buf_free(&want);
}

/*
 * Control frames split at every byte and at every pair of bytes, alone and
 * between the fragments of a message.  A body that comes in one piece is
 * delivered in place, one that does not is gathered and given back whole,
 * and the decoder keeps no buffer once the frame is delivered: tr_event and
 * decode_piece check those on every call.
 */
static void
test_control_splits(void)
{
	static const struct {
		uint8_t op;
		size_t len;
		uint16_t code; /* close: 0 for an empty body, else the code */
		uint16_t error; /* the close code the decoder fails with */
	} frames[] = {
		{ WS_OP_PING, 0, 0, 0 }, { WS_OP_PING, 1, 0, 0 },
		{ WS_OP_PONG, 2, 0, 0 }, { WS_OP_PING, 13, 0, 0 },
		{ WS_OP_PING, WS_MAX_CONTROL, 0, 0 },
		{ WS_OP_CLOSE, 0, 0, 0 }, { WS_OP_CLOSE, 2, 1000, 0 },
		{ WS_OP_CLOSE, 9, 4000, 0 },
		{ WS_OP_CLOSE, WS_MAX_CONTROL, 4999, 0 },
		{ WS_OP_CLOSE, 5, 999, 1002 },   /* invalid code */
		{ WS_OP_CLOSE, 6, 1000, 1007 },  /* reason not UTF-8 */
	};
	struct buf s = { 0 }, want = { 0 };
	struct tr t;
	uint8_t body[WS_MAX_CONTROL];
	size_t f, i, j, k, cuts[2];
	unsigned bad;

	for (f = 0; f < NELEM(frames); f++) {
		for (k = 0; k < frames[f].len; k++)
			body[k] = (uint8_t)('a' + k % 26);
		if (frames[f].code != 0) {
			body[0] = (uint8_t)(frames[f].code >> 8);
			body[1] = (uint8_t)frames[f].code;
		}
		if (frames[f].error == 1007)
			body[frames[f].len - 1] = 0xff;
		put_str(&s, 0, WS_OP_TEXT, "ab");
		put_msg(&s, 1, frames[f].op, body, frames[f].len);
		put_str(&s, 1, WS_OP_CONT, "cd");
		put_msg(&s, 1, frames[f].op, body, frames[f].len);
		if (frames[f].error != 0)
			tr_error(&want, frames[f].error);
		else {
			k = frames[f].op != WS_OP_CLOSE ? 0 :
			    frames[f].len == 0 ? WS_CLOSE_NO_STATUS :
			    frames[f].code;
			tr_control(&want, frames[f].op, (uint16_t)k, body,
			    frames[f].len);
			tr_data(&want, 'D', WS_OP_TEXT, "abcd", 4);
			tr_control(&want, frames[f].op, (uint16_t)k, body,
			    frames[f].len);
		}
		bad = 0;
		for (i = 0; i <= s.n; i++) {
			cuts[0] = i;
			decode_cuts(s.p, s.n, 0, cuts, 1, SPLIT_WHOLE, &t);
			if (t.violations != 0 || !buf_eq(&t.out, &want))
				bad++;
			tr_free(&t);
			for (j = i + 1; j < s.n; j++) {
				cuts[1] = j;
				decode_cuts(s.p, s.n, 0, cuts, 2, SPLIT_WHOLE,
				    &t);
				if (t.violations != 0 || !buf_eq(&t.out, &want))
					bad++;
				tr_free(&t);
			}
		}
		if (bad != 0)
			fprintf(stderr, "\n  frame %zu: %u splits differ", f,
			    bad);
		CU_ASSERT_EQUAL(bad, 0);
		buf_free(&s);
		buf_free(&want);
	}
}

static void
test_close_payload(void)
{
	static const char *seqs[] = { "\xc3\xa9", "\xe2\x82\xac",
		"\xf0\x9f\x98\x80" };
	uint8_t out[WS_MAX_CONTROL];
	char reason[300];
	size_t i, k, n, pos, len;

	n = ws_close_payload(out, 1000, "bye", 3);
	CU_ASSERT_EQUAL(n, 5);
	CU_ASSERT(memcmp(out, "\x03\xe8" "bye", 5) == 0);
	n = ws_close_payload(out, 4999, NULL, 0);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT(out[0] == 0x13 && out[1] == 0x87);
	/* No status is no body, not 1005 on the wire. */
	CU_ASSERT_EQUAL(ws_close_payload(out, WS_CLOSE_NO_STATUS, "x", 1), 0);
	CU_ASSERT_EQUAL(ws_close_payload(out, WS_CLOSE_ABNORMAL, "x", 1), 0);

	memset(reason, 'r', sizeof(reason));
	CU_ASSERT_EQUAL(ws_close_payload(out, 1001, reason, 123), 125);
	CU_ASSERT_EQUAL(ws_close_payload(out, 1001, reason, 124), 125);
	CU_ASSERT_EQUAL(ws_close_payload(out, 1001, reason, 300), 125);
	CU_ASSERT(memcmp(out + 2, reason, 123) == 0);

	/* A character at every position around the limit: kept whole if it
	 * fits, dropped whole if not. */
	for (k = 0; k < NELEM(seqs); k++) {
		len = strlen(seqs[k]);
		for (pos = 115; pos <= 123; pos++) {
			memset(reason, 'a', sizeof(reason));
			memcpy(reason + pos, seqs[k], len);
			n = ws_close_payload(out, 1000, reason, pos + len + 10);
			if (pos + len <= 123) {
				CU_ASSERT_EQUAL(n, 125);
			} else {
				CU_ASSERT_EQUAL(n, 2 + pos);
			}
			CU_ASSERT(memcmp(out + 2, reason, n - 2) == 0);
			CU_ASSERT_EQUAL(utf8_validate(UTF8_ACCEPT, out + 2,
			    n - 2), UTF8_ACCEPT);
		}
	}
	/* All multibyte: 41 euro signs are 123 bytes; 61 e-acutes 122. */
	for (i = 0; i < 100; i++)
		memcpy(reason + 3 * i, "\xe2\x82\xac", 3);
	CU_ASSERT_EQUAL(ws_close_payload(out, 1000, reason, 300), 125);
	for (i = 0; i < 150; i++)
		memcpy(reason + 2 * i, "\xc3\xa9", 2);
	CU_ASSERT_EQUAL(ws_close_payload(out, 1000, reason, 300), 124);
	CU_ASSERT_EQUAL(utf8_validate(UTF8_ACCEPT, out + 2, 122),
	    UTF8_ACCEPT);
	for (i = 0; i < 75; i++)
		memcpy(reason + 4 * i, "\xf0\x9f\x98\x80", 4);
	CU_ASSERT_EQUAL(ws_close_payload(out, 1000, reason, 300), 2 + 120);
}

static int
ref_close_code_valid(unsigned code)
{
	switch (code) {
	case 1000: case 1001: case 1002: case 1003:
	case 1007: case 1008: case 1009: case 1010: case 1011:
	case 1012: case 1013: case 1014:
		return 1;
	}
	return code >= 3000 && code < 5000;
}

static void
test_close_code_valid(void)
{
	unsigned code, bad = 0;

	for (code = 0; code <= 70000; code++)
		if (!ws_close_code_valid(code) != !ref_close_code_valid(code))
			bad++;
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(ws_close_code_valid(1000));
	CU_ASSERT(ws_close_code_valid(1014));
	CU_ASSERT(ws_close_code_valid(3000));
	CU_ASSERT(ws_close_code_valid(4999));
	CU_ASSERT(!ws_close_code_valid(999));
	CU_ASSERT(!ws_close_code_valid(1004));
	CU_ASSERT(!ws_close_code_valid(1005));
	CU_ASSERT(!ws_close_code_valid(1006));
	CU_ASSERT(!ws_close_code_valid(1015));
	CU_ASSERT(!ws_close_code_valid(1016));
	CU_ASSERT(!ws_close_code_valid(2999));
	CU_ASSERT(!ws_close_code_valid(5000));
}

static void
test_frame_header(void)
{
	static const uint64_t lens[] = { 0, 1, 125, 126, 127, 255, 256,
		65535, 65536, 0x100000000ULL, 0x7fffffffffffffffULL };
	uint8_t out[WS_MAX_HEADER];
	struct buf want = { 0 };
	size_t i, n;
	int fin;
	uint8_t op;

	/* RFC 6455 section 5.7, the unmasked (server) examples. */
	n = ws_frame_header(out, 1, WS_OP_TEXT, 5, NULL);
	CU_ASSERT(n == 2 && out[0] == 0x81 && out[1] == 0x05);
	n = ws_frame_header(out, 0, WS_OP_TEXT, 3, NULL);
	CU_ASSERT(n == 2 && out[0] == 0x01 && out[1] == 0x03);
	n = ws_frame_header(out, 1, WS_OP_CONT, 2, NULL);
	CU_ASSERT(n == 2 && out[0] == 0x80 && out[1] == 0x02);
	n = ws_frame_header(out, 1, WS_OP_PING, 5, NULL);
	CU_ASSERT(n == 2 && out[0] == 0x89 && out[1] == 0x05);
	n = ws_frame_header(out, 1, WS_OP_BINARY, 256, NULL);
	CU_ASSERT(n == 4 && memcmp(out, "\x82\x7e\x01\x00", 4) == 0);
	n = ws_frame_header(out, 1, WS_OP_BINARY, 65536, NULL);
	CU_ASSERT(n == 10 &&
	    memcmp(out, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
	/* And the masked one. */
	n = ws_frame_header(out, 1, WS_OP_TEXT, 5, test_mask);
	CU_ASSERT(n == 6 && memcmp(out, "\x81\x85\x37\xfa\x21\x3d", 6) == 0);

	/* Against the hand-written builder, every combination. */
	for (i = 0; i < NELEM(lens); i++)
		for (fin = 0; fin <= 1; fin++)
			for (op = 0; op <= 0xa; op++) {
				put_frame(&want, (fin ? 0x80 : 0) | op, 0,
				    lens[i], NULL, NULL);
				n = ws_frame_header(out, fin, op, lens[i],
				    NULL);
				CU_ASSERT(n == want.n &&
				    memcmp(out, want.p, n) == 0);
				want.n = 0;
				put_frame(&want, (fin ? 0x80 : 0) | op, 0,
				    lens[i], test_mask, NULL);
				n = ws_frame_header(out, fin, op, lens[i],
				    test_mask);
				CU_ASSERT(n == want.n &&
				    memcmp(out, want.p, n) == 0);
				CU_ASSERT(n <= WS_MAX_HEADER);
				want.n = 0;
			}
	buf_free(&want);
}

static void
test_mask_function(void)
{
	static const uint8_t m[4] = { 0x12, 0x34, 0x56, 0x78 };
	uint8_t orig[4200], buf[4200 + 8], ref[4200];
	size_t n, off, align, a, i;
	unsigned bad = 0;

	rng_seed(42);
	for (i = 0; i < sizeof(orig); i++)
		orig[i] = (uint8_t)rng();
	for (n = 0; n <= 4100; n = n < 200 ? n + 1 : n * 2 + 3) {
		for (off = 0; off < 4; off++) {
			for (i = 0; i < n; i++)
				ref[i] = orig[i] ^ m[(off + i) % 4];
			for (align = 0; align < 8; align++) {
				memcpy(buf + align, orig, n);
				/* Not a byte past the end is touched. */
				buf[align + n] = 0xA5;
				ws_mask(buf + align, n, m, off);
				if (memcmp(buf + align, ref, n) != 0 ||
				    buf[align + n] != 0xA5)
					bad++;
				/* Masking twice undoes it. */
				ws_mask(buf + align, n, m, off);
				if (memcmp(buf + align, orig, n) != 0)
					bad++;
			}
			/* Two pieces, the second continuing the key. */
			for (a = 0; a <= n && a < 40; a++) {
				memcpy(buf, orig, n);
				ws_mask(buf, a, m, off);
				ws_mask(buf + a, n - a, m, (off + a) % 4);
				if (memcmp(buf, ref, n) != 0)
					bad++;
			}
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
}

/* Text of n bytes, printable ASCII but byte b at at (none when at == n),
 * in one frame under key, decoded whole (split: the header alone first,
 * then the payload): 1 when the decoder did wrong. */
static unsigned
ascii_skip_case(size_t n, size_t at, int b, const uint8_t key[4], int split)
{
	uint8_t text[80], f[96];
	struct ws_decoder d;
	struct ws_event ev;
	size_t hl, i, c = 0;
	unsigned bad;

	for (i = 0; i < n; i++)
		text[i] = (uint8_t)(0x20 + (i * 7 + key[0]) % 0x5f);
	if (at < n)
		text[at] = (uint8_t)b;
	hl = ws_frame_header(f, 1, WS_OP_TEXT, n, key);
	memcpy(f + hl, text, n);
	ws_mask(f + hl, n, key, 0);
	ws_decoder_init(&d, 0);
	if (split) {
		c = ws_decode(&d, f, hl, &ev);
		if (c != hl || ev.kind != WS_EV_NONE) {
			ws_decoder_fini(&d);
			return 1;
		}
	}
	c += ws_decode(&d, f + c, hl + n - c, &ev);
	if (at < n)
		bad = ev.kind != WS_EV_ERROR || ev.close_code != 1007;
	else
		bad = ev.kind != WS_EV_DATA || !ev.fin || c != hl + n ||
		    ev.len != n || memcmp(ev.data, text, n) != 0;
	ws_decoder_fini(&d);
	return bad;
}

/*
 * The decoder skips the UTF-8 machine for a chunk its unmasking found all
 * ASCII, on the short path for a whole small frame and on the general
 * one.  So every byte above 0x7F (each of them is invalid alone) at every
 * place of text of every length to 80, under keys whose bytes have their
 * high bits set or clear, decoded whole and split, must still fail with
 * 1007, and the same text all ASCII must be delivered whole.
 */
static void
test_ascii_skip(void)
{
	static const uint8_t keys[2][4] = { { 0x80, 0x81, 0x7f, 0x00 },
	    { 0xff, 0x01, 0xc3, 0x55 } };
	unsigned bad = 0, k;
	size_t n, at;
	int b, split;

	for (split = 0; split < 2; split++)
		for (n = 1; n <= 80; n++)
			for (k = 0; k < 2; k++) {
				for (at = 0; at < n; at++)
					for (b = 0x80; b <= 0xff; b++)
						bad += ascii_skip_case(n, at,
						    b, keys[k], split);
				bad += ascii_skip_case(n, n, 0, keys[k],
				    split);
			}
	CU_ASSERT_EQUAL(bad, 0);
}

/* Random valid UTF-8 of at least n bytes; returns its length. */
static size_t
random_text(uint8_t *p, size_t n)
{
	size_t len = 0;
	uint32_t cp;

	while (len < n) {
		switch (rng() % 4) {
		case 0:
			cp = 0x80 + rng() % 0x780;
			break;
		case 1:
			do
				cp = 0x800 + rng() % 0xf800;
			while (cp >= 0xd800 && cp <= 0xdfff);
			break;
		case 2:
			cp = 0x10000 + rng() % 0x100000;
			break;
		default:
			cp = 0x20 + rng() % 0x5f;
			break;
		}
		if (cp < 0x80) {
			p[len++] = (uint8_t)cp;
		} else if (cp < 0x800) {
			p[len++] = 0xc0 | (cp >> 6);
			p[len++] = 0x80 | (cp & 0x3f);
		} else if (cp < 0x10000) {
			p[len++] = 0xe0 | (cp >> 12);
			p[len++] = 0x80 | ((cp >> 6) & 0x3f);
			p[len++] = 0x80 | (cp & 0x3f);
		} else {
			p[len++] = 0xf0 | (cp >> 18);
			p[len++] = 0x80 | ((cp >> 12) & 0x3f);
			p[len++] = 0x80 | ((cp >> 6) & 0x3f);
			p[len++] = 0x80 | (cp & 0x3f);
		}
	}
	return len;
}

/* One frame as a client sends it, with the encoder under test. */
static void
encode_frame(struct buf *s, int fin, uint8_t op, const uint8_t *p, size_t n)
{
	uint8_t hdr[WS_MAX_HEADER], mask[4];
	size_t h, i;

	for (i = 0; i < 4; i++)
		mask[i] = (uint8_t)rng();
	h = ws_frame_header(hdr, fin, op, n, mask);
	buf_put(s, hdr, h);
	buf_put(s, p, n);
	ws_mask(s->p + s->n - n, n, mask, 0);
}

/*
 * Encoder to decoder: random messages in random fragments with pings and
 * pongs between them, ending in a close built by ws_close_payload.
 */
static void
test_round_trip(void)
{
	static uint8_t msg[80000];
	uint8_t ctl[WS_MAX_CONTROL];
	struct buf s = { 0 }, want = { 0 };
	size_t len, nctl, at, cut, i;
	unsigned round, nmsg, m, nfrag, f;
	uint8_t op;

	rng_seed(0x726f756e64ULL);
	for (round = 0; round < 60; round++) {
		nmsg = 1 + rng() % 6;
		for (m = 0; m < nmsg; m++) {
			op = rng() % 2 ? WS_OP_TEXT : WS_OP_BINARY;
			switch (rng() % 8) {
			case 0:
				len = 0;
				break;
			case 1:
				len = 60000 + rng() % 8000;
				break;
			case 2:
				len = 100 + rng() % 200;
				break;
			default:
				len = rng() % 40;
				break;
			}
			if (op == WS_OP_TEXT)
				len = random_text(msg, len);
			else
				for (i = 0; i < len; i++)
					msg[i] = (uint8_t)rng();
			nfrag = 1 + rng() % 4;
			at = 0;
			for (f = 0; f < nfrag; f++) {
				/* Cuts land anywhere, inside characters
				 * too; fragments may be empty. */
				cut = f + 1 == nfrag ? len :
				    at + rng() % (len - at + 1);
				encode_frame(&s, f + 1 == nfrag,
				    f == 0 ? op : WS_OP_CONT, msg + at,
				    cut - at);
				at = cut;
				if (f + 1 < nfrag && rng() % 2) {
					uint8_t cop = rng() % 2 ? WS_OP_PING :
					    WS_OP_PONG;

					nctl = rng() % (WS_MAX_CONTROL + 1);
					for (i = 0; i < nctl; i++)
						ctl[i] = (uint8_t)rng();
					encode_frame(&s, 1, cop, ctl, nctl);
					tr_control(&want, cop, 0, ctl, nctl);
				}
			}
			tr_data(&want, 'D', op, msg, len);
		}
		len = random_text(msg, 200);
		nctl = ws_close_payload(ctl, 1001, (char *)msg, len);
		CU_ASSERT(nctl <= WS_MAX_CONTROL);
		encode_frame(&s, 1, WS_OP_CLOSE, ctl, nctl);
		tr_control(&want, WS_OP_CLOSE, 1001, ctl, nctl);

		check_stream(&s, 0, &want, 4);
		buf_free(&s);
		buf_free(&want);
	}
}

/*
 * The chunking oracle over a mixed bag: every kind of frame, every length
 * encoding, and streams that end in each kind of error.
 */
static void
test_chunking_oracle(void)
{
	static uint8_t big[70000];
	struct buf s = { 0 };
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)('a' + i % 26);

	put_str(&s, 1, WS_OP_TEXT, "first");
	put_msg(&s, 0, WS_OP_TEXT, big, 126);
	put_str(&s, 1, WS_OP_PING, "p");
	put_msg(&s, 0, WS_OP_CONT, big, 65535);
	put_str(&s, 1, WS_OP_PONG, "q");
	put_msg(&s, 1, WS_OP_CONT, big, 65536);
	put_msg(&s, 1, WS_OP_BINARY, big, 127);
	put_str(&s, 1, WS_OP_TEXT, "");
	put_str(&s, 0, WS_OP_BINARY, "");
	put_str(&s, 1, WS_OP_CONT, "");
	put_str(&s, 1, WS_OP_CLOSE, "\x0b\xb8" "see you");
	check_stream(&s, 0, NULL, 30);
	/* The same stream cut off mid-message: the partial is identical. */
	s.n -= 20;
	check_stream(&s, 0, NULL, 30);
	buf_free(&s);

	/* Each ending in an error after some good traffic. */
	put_str(&s, 1, WS_OP_TEXT, "ok");
	put_msg(&s, 0, WS_OP_TEXT, big, 300);
	put_str(&s, 1, WS_OP_PING, "");
	put_str(&s, 0, WS_OP_CONT, "\xce\xba\xe1\xbd\xb9\xcf");
	put_str(&s, 1, WS_OP_CONT, "\x83\xce\xbc\xce\xb5\xff tail");
	check_stream(&s, 0, NULL, 30);
	buf_free(&s);

	put_msg(&s, 0, WS_OP_BINARY, big, 1000);
	put_msg(&s, 1, WS_OP_CONT, big, 1000);
	put_msg(&s, 1, WS_OP_BINARY, big, 2001);
	check_stream(&s, 2000, NULL, 30);
	buf_free(&s);

	put_str(&s, 1, WS_OP_PING, "x");
	put_frame(&s, 0x89, 0, 1, NULL, "x");
	check_stream(&s, 0, NULL, 30);
	buf_free(&s);

	put_str(&s, 1, WS_OP_BINARY, "x");
	put_frame(&s, 0x82, 64, 0x8000000000000001ULL, test_mask, NULL);
	check_stream(&s, 0, NULL, 30);
	buf_free(&s);

	put_str(&s, 1, WS_OP_CLOSE, "\x03\xed" "reserved code");
	check_stream(&s, 0, NULL, 30);
	buf_free(&s);
}

/* A masked client frame with the given first byte, in buf; its length. */
static size_t
rsv_frame(uint8_t *buf, uint8_t b0, const void *payload, size_t n)
{
	static const uint8_t key[4] = { 1, 2, 3, 4 };
	size_t hl;

	hl = ws_frame_header(buf, 1, 0, n, key);
	buf[0] = b0;
	memcpy(buf + hl, payload, n);
	ws_mask(buf + hl, n, key, 0);
	return hl + n;
}

/* permessage-deflate's RSV1 (RFC 7692 6): a decoder flag. */
static void
test_rsv1(void)
{
	uint8_t f[300], g[64], big[200];
	struct ws_decoder d;
	struct ws_event ev;
	size_t n, m;

	/* not negotiated: 1002 as any reserved bit */
	ws_decoder_init(&d, 0);
	n = rsv_frame(f, 0x80 | 0x40 | WS_OP_TEXT, "\xc0", 1);
	ws_decode(&d, f, n, &ev);
	CU_ASSERT(ev.kind == WS_EV_ERROR && ev.close_code == 1002);
	ws_decoder_fini(&d);

	/* negotiated: a compressed message is flagged and not UTF-8
	 * checked (its bytes are deflate, not text) */
	ws_decoder_init(&d, 0);
	d.rsv1_ok = 1;
	n = rsv_frame(f, 0x40 | WS_OP_TEXT, "\xc0\xff", 2);
	m = rsv_frame(g, 0x80 | WS_OP_CONT, "\xfe", 1);
	memcpy(f + n, g, m);
	CU_ASSERT_EQUAL(ws_decode(&d, f, n + m, &ev), n);
	CU_ASSERT(ev.kind == WS_EV_DATA && ev.compressed && !ev.fin &&
	    ev.len == 2);
	ws_decode(&d, f + n, m, &ev);
	CU_ASSERT(ev.kind == WS_EV_DATA && ev.compressed && ev.fin &&
	    ev.len == 1 && ev.opcode == WS_OP_TEXT);
	/* the next, plain message is checked again */
	n = rsv_frame(f, 0x80 | WS_OP_TEXT, "\xc0", 1);
	ws_decode(&d, f, n, &ev);
	CU_ASSERT(ev.kind == WS_EV_ERROR && ev.close_code == 1007);
	ws_decoder_fini(&d);

	/* on a control frame, on a continuation; RSV2 and RSV3 stay out */
	ws_decoder_init(&d, 0);
	d.rsv1_ok = 1;
	n = rsv_frame(f, 0x80 | 0x40 | WS_OP_PING, "", 0);
	ws_decode(&d, f, n, &ev);
	CU_ASSERT(ev.kind == WS_EV_ERROR && ev.close_code == 1002);
	CU_ASSERT_STRING_EQUAL(ev.reason, "compressed control frame");
	ws_decoder_fini(&d);
	ws_decoder_init(&d, 0);
	d.rsv1_ok = 1;
	n = rsv_frame(f, 0x40 | WS_OP_BINARY, "ab", 2);
	m = rsv_frame(g, 0x80 | 0x40 | WS_OP_CONT, "c", 1);
	memcpy(f + n, g, m);
	ws_decode(&d, f, n + m, &ev);
	ws_decode(&d, f + n, m, &ev);
	CU_ASSERT(ev.kind == WS_EV_ERROR && ev.close_code == 1002);
	CU_ASSERT_STRING_EQUAL(ev.reason,
	    "compressed bit on a continuation frame");
	ws_decoder_fini(&d);
	ws_decoder_init(&d, 0);
	d.rsv1_ok = 1;
	n = rsv_frame(f, 0x80 | 0x20 | WS_OP_TEXT, "a", 1);
	ws_decode(&d, f, n, &ev);
	CU_ASSERT(ev.kind == WS_EV_ERROR && ev.close_code == 1002);
	ws_decoder_fini(&d);

	/* the wire limit of a compressed message has deflate's overhead on
	 * top; its inflated size is zstream.c's to hold */
	memset(big, 'x', sizeof(big));
	ws_decoder_init(&d, 100);
	d.rsv1_ok = 1;
	n = rsv_frame(f, 0x80 | 0x40 | WS_OP_BINARY, big, 164);
	ws_decode(&d, f, n, &ev);
	CU_ASSERT(ev.kind == WS_EV_DATA && ev.len == 164);
	n = rsv_frame(f, 0x80 | 0x40 | WS_OP_BINARY, big, 165);
	ws_decode(&d, f, n, &ev);
	CU_ASSERT(ev.kind == WS_EV_ERROR && ev.close_code == 1009);
	ws_decoder_fini(&d);
	ws_decoder_init(&d, 100);
	d.rsv1_ok = 1;
	n = rsv_frame(f, 0x80 | WS_OP_BINARY, big, 101);
	ws_decode(&d, f, n, &ev);
	CU_ASSERT(ev.kind == WS_EV_ERROR && ev.close_code == 1009);
	ws_decoder_fini(&d);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "RFC 6455 examples", test_rfc_examples },
		{ "every opcode", test_every_opcode },
		{ "7, 16 and 64-bit lengths", test_lengths },
		{ "masking keys", test_masking },
		{ "fragmentation with control frames", test_fragmentation },
		{ "empty messages", test_empty_messages },
		{ "chunks end at frame ends", test_chunk_ends_at_frame },
		{ "protocol errors", test_protocol_errors },
		{ "UTF-8 errors", test_utf8_errors },
		{ "max_message", test_max_message },
		{ "sticky error", test_sticky_error },
		{ "close frames", test_close_frames },
		{ "control frames split at every byte", test_control_splits },
		{ "ws_close_payload", test_close_payload },
		{ "ws_close_code_valid", test_close_code_valid },
		{ "ws_frame_header", test_frame_header },
		{ "ws_mask", test_mask_function },
		{ "ASCII text skips the UTF-8 machine", test_ascii_skip },
		{ "encoder round trip", test_round_trip },
		{ "chunking oracle", test_chunking_oracle },
		{ "RSV1 for permessage-deflate", test_rsv1 },
	};
	rng_seed(0x636f646563ULL);
	return suite_run("ws_codec", tests, nitems(tests));
}
