/*
 * fuzz_codec.c: the RFC 6455 frame decoder and encoder (core/ws_codec.c,
 * core/utf8.c).
 *
 * Input layout:
 *   byte 0  bits 0-2  max_message for the raw stream (table lim[])
 *           bits 3-4  how the stream is split (byte at a time, 1..8,
 *                     0..300 with empty pieces, or two halves)
 *           bits 5-7  max_message for the round trip
 *   byte 1            seed for split sizes and masks
 *   byte 2..          the stream for (a) and (b), and the script for (c)
 *
 * Oracles:
 *  (a) one piece: the input is decoded in one buffer and the events are
 *      reduced to a transcript: whole messages (data chunks joined), control
 *      frames with their close code, the error code, and any message left
 *      open at the end.  Every event is checked on its own: ws_decode never
 *      returns more than it was given and always consumes something when
 *      given something (conn.c loops on that), DATA points inside the bytes
 *      just consumed, CONTROL bodies are at most 125 bytes and lie where
 *      the call's bytes end, or, for a body split across calls, in the
 *      decoder, which holds no such buffer between frames, a close body is
 *      empty (1005) or a valid code and UTF-8, finished text messages are
 *      valid UTF-8, no message exceeds max_message, errors are 1002, 1007 or
 *      1009 with a short ASCII reason, and after an error every call
 *      repeats it and consumes everything.
 *  (b) chunking: the same bytes, decoded again in pieces chosen by byte 0
 *      and byte 1, must give the identical transcript.  Only the bytes of a
 *      message that failed are allowed to differ (a split can hand out part
 *      of a frame before the bad byte arrives), so the transcript drops an
 *      open message at an error.  Each run decodes its own fresh copy (the
 *      decoder unmasks in place), and each piece is its own exact-size heap
 *      buffer so ASan sees any read past it.
 *  (c) round trip: the input read as a script of client messages (text,
 *      binary, ping, pong, close; fragment counts, 8/16/64-bit lengths,
 *      pings between fragments, raw or valid UTF-8 text) is encoded as a
 *      client does, with ws_frame_header(mask) and ws_mask, and decoded in
 *      pieces.  The transcript must equal the one predicted from the
 *      script: every message back byte for byte, or exactly 1009 at the
 *      frame that passes max_message, or exactly 1007 at the fragment
 *      where utf8_validate says the text went bad (or at the end of the
 *      message when it is left incomplete), and nothing after.
 *  Also: ws_close_payload never writes more than 125 bytes, keeps the
 *  code, returns a prefix of the reason, cuts only when over 123 bytes and
 *  then by at most 3, never splits a UTF-8 sequence of a valid reason, and
 *  sends nothing for 1005 and 1006; ws_mask equals a byte-wise XOR at every
 *  offset and alignment and is its own inverse; ws_frame_header writes the
 *  minimal length form.
 */
#include <stdint.h>

#include "wsplugd.h"
#include "fuzz.h"

/* The harness's own bulk loops: coverage there is noise, and slow. */
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))

static const uint64_t lim[8] = { 0, 0, 0, 1, 16, 125, 1024, 65536 };

#define RT_MAX_STREAM (96 * 1024) /* bytes of encoded script */
/* Past this, byte-at-a-time splitting costs more than it finds: the raw
 * stream then goes in pieces of 1..8 bytes, the round trip in 0..200. */
#define RT_BYTEWISE_MAX 4096
#define RAW_BYTEWISE_MAX 1024
#define RT_MAX_MSGS 64

/* A growable byte buffer. */
struct buf {
	uint8_t *p;
	size_t n, cap;
};

NO_COVERAGE static void
buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->n + n)
			cap *= 2;
		if ((b->p = realloc(b->p, cap)) == NULL)
			abort();
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

/* Buffers are kept from run to run: large ones come from mmap under ASan,
 * and mapping and unmapping them on every run costs more than the run. */
static void
buf_reset(struct buf *b)
{
	b->n = 0;
}

/*
 * Transcripts.  A record is: kind ('M' message, 'C' control, 'E' error,
 * 'P' message still open at the end), opcode, close code (2 bytes, big
 * endian), length (8 bytes, big endian), payload.
 */
struct transcript {
	struct buf t;   /* the records */
	struct buf msg; /* the open message's data so far */
	int msg_op;     /* its opcode, 0 when none is open */
	int failed;
};

static void
rec_put(struct buf *t, char kind, uint8_t op, uint16_t code,
    const uint8_t *p, size_t n)
{
	uint8_t h[12];
	int i;

	h[0] = (uint8_t)kind;
	h[1] = op;
	h[2] = (uint8_t)(code >> 8);
	h[3] = (uint8_t)code;
	for (i = 0; i < 8; i++)
		h[4 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
	buf_put(t, h, sizeof(h));
	buf_put(t, p, n);
}

static void
transcript_reset(struct transcript *tr)
{
	buf_reset(&tr->t);
	buf_reset(&tr->msg);
	tr->msg_op = 0;
	tr->failed = 0;
}

/* The end of the input: a message still open is recorded as such. */
static void
transcript_end(struct transcript *tr)
{
	if (!tr->failed && tr->msg_op != 0)
		rec_put(&tr->t, 'P', (uint8_t)tr->msg_op, 0, tr->msg.p,
		    tr->msg.n);
}

static void
transcript_dump(const char *name, const struct buf *t)
{
	size_t off = 0, n, i;
	int k;

	fprintf(stderr, "  %s:\n", name);
	while (off + 12 <= t->n) {
		n = 0;
		for (k = 0; k < 8; k++)
			n = n << 8 | t->p[off + 4 + k];
		fprintf(stderr, "    %c op=%u code=%u len=%zu ", t->p[off],
		    t->p[off + 1], (unsigned)(t->p[off + 2] << 8 |
		    t->p[off + 3]), n);
		for (i = 0; i < n && i < 32; i++)
			fprintf(stderr, "%02x", t->p[off + 12 + i]);
		fprintf(stderr, "%s\n", n > 32 ? "..." : "");
		off += 12 + n;
	}
}

static void
transcripts_equal(const char *what, const struct buf *got,
    const struct buf *want)
{
	size_t i;

	if (got->n == want->n &&
	    (got->n == 0 || memcmp(got->p, want->p, got->n) == 0))
		return;
	for (i = 0; i < got->n && i < want->n && got->p[i] == want->p[i]; i++)
		;
	fprintf(stderr, "%s: transcripts differ at byte %zu\n", what, i);
	transcript_dump("got", got);
	transcript_dump("expected", want);
	CHECK(0, "%s: transcripts differ", what);
}

static int
is_ascii_text(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/*
 * Decode one piece, in[0..n), checking every event and adding it to tr.
 * Returns -1 once the decoder has failed.
 */
static int
feed(struct ws_decoder *d, const uint8_t *src, size_t n, uint64_t max,
    struct transcript *tr)
{
	uint8_t *in = fuzz_dup(src, n), *base;
	struct ws_event ev, ev2;
	size_t off = 0, used, left;
	uint16_t code;

	do {
		base = in + off;
		left = n - off;
		used = ws_decode(d, base, left, &ev);
		CHECK(used <= left, "consumed %zu of %zu", used, left);
		CHECK(used > 0 || left == 0, "consumed nothing of %zu bytes "
		    "(event %d): conn_feed() would spin", left, ev.kind);
		off += used;
		switch (ev.kind) {
		case WS_EV_NONE:
			CHECK(off == n, "NONE with %zu bytes left", n - off);
			break;
		case WS_EV_DATA:
			CHECK(ev.opcode == WS_OP_TEXT ||
			    ev.opcode == WS_OP_BINARY, "DATA opcode %u",
			    ev.opcode);
			CHECK(ev.len <= used && ev.data >= base &&
			    ev.data + ev.len <= base + used,
			    "DATA [%p+%zu] outside the %zu bytes consumed at "
			    "%p", (void *)ev.data, ev.len, used, (void *)base);
			CHECK(tr->msg_op == 0 || tr->msg_op == ev.opcode,
			    "DATA opcode %u inside a message of opcode %d",
			    ev.opcode, tr->msg_op);
			tr->msg_op = ev.opcode;
			buf_put(&tr->msg, ev.data, ev.len);
			CHECK(max == 0 || tr->msg.n <= max, "message of %zu "
			    "bytes delivered, max_message %llu", tr->msg.n,
			    (unsigned long long)max);
			if (ev.fin) {
				if (ev.opcode == WS_OP_TEXT)
					CHECK(utf8_validate(UTF8_ACCEPT,
					    tr->msg.p, tr->msg.n) ==
					    UTF8_ACCEPT, "a text message of "
					    "%zu bytes with invalid UTF-8 was "
					    "delivered", tr->msg.n);
				rec_put(&tr->t, 'M', ev.opcode, 0, tr->msg.p,
				    tr->msg.n);
				tr->msg.n = 0;
				tr->msg_op = 0;
			}
			break;
		case WS_EV_CONTROL:
			CHECK(ev.opcode == WS_OP_CLOSE ||
			    ev.opcode == WS_OP_PING ||
			    ev.opcode == WS_OP_PONG, "CONTROL opcode %u",
			    ev.opcode);
			CHECK(ev.len <= WS_MAX_CONTROL, "control body %zu",
			    ev.len);
			CHECK(ev.len == 0 || ev.data != NULL, "no body");
			if (d->ctl != NULL && ev.data == d->ctl)
				CHECK(used < ev.len, "a control body of %zu "
				    "bytes, all in this call, was copied",
				    ev.len);
			else
				CHECK(ev.data >= base &&
				    ev.data + ev.len == base + used,
				    "CONTROL [%p+%zu] not where the %zu bytes "
				    "consumed at %p end", (void *)ev.data,
				    ev.len, used, (void *)base);
			code = 0;
			if (ev.opcode == WS_OP_CLOSE) {
				code = ev.close_code;
				if (ev.len == 0)
					CHECK(code == WS_CLOSE_NO_STATUS,
					    "empty close, code %u", code);
				else {
					CHECK(ev.len >= 2, "close body %zu",
					    ev.len);
					CHECK(code == (ev.data[0] << 8 |
					    ev.data[1]), "close code %u, body "
					    "says %u", code, ev.data[0] << 8 |
					    ev.data[1]);
					CHECK(ws_close_code_valid(code),
					    "close code %u", code);
					CHECK(utf8_validate(UTF8_ACCEPT,
					    ev.data + 2, ev.len - 2) ==
					    UTF8_ACCEPT, "close reason is not "
					    "UTF-8");
				}
			}
			rec_put(&tr->t, 'C', ev.opcode, code, ev.data, ev.len);
			break;
		case WS_EV_ERROR:
			/* 1011 only when malloc fails, which it does not here */
			CHECK(ev.close_code == 1002 || ev.close_code == 1007 ||
			    ev.close_code == 1009, "error code %u",
			    ev.close_code);
			CHECK(ev.reason != NULL && strlen(ev.reason) <= 123 &&
			    is_ascii_text(ev.reason), "error reason");
			/* an error repeats and swallows whatever follows */
			left = n - off;
			used = ws_decode(d, in + off, left, &ev2);
			CHECK(used == left && ev2.kind == WS_EV_ERROR &&
			    ev2.close_code == ev.close_code &&
			    ev2.reason == ev.reason, "error not repeated");
			rec_put(&tr->t, 'E', 0, ev.close_code, NULL, 0);
			tr->failed = 1;
			free(in);
			return -1;
		default:
			CHECK(0, "event kind %d", ev.kind);
		}
	} while (off < n);
	free(in);
	return 0;
}

/* Decode src[0..n) in pieces; mode and seed pick their sizes. */
static void
decode_split(const uint8_t *src, size_t n, uint64_t max, unsigned mode,
    uint32_t seed, struct transcript *tr)
{
	struct ws_decoder d;
	struct ws_event ev;
	uint8_t none;
	size_t off = 0, k, half;
	uint32_t s = seed * 2654435761u + 1;

	ws_decoder_init(&d, max);
	half = n == 0 ? 0 : (size_t)(seed % (n + 1));
	while (off < n || (mode == 2 && off == 0 && n == 0)) {
		switch (mode) {
		case 0:
			k = 1;
			break;
		case 1:
			k = 1 + fuzz_rand(&s) % 8;
			break;
		case 2:
			/* empty pieces too: a read of 0 bytes is legal */
			k = fuzz_rand(&s) % 301;
			if (k > 200)
				k = 0;
			break;
		default:
			k = off < half ? half - off : n - off;
			break;
		}
		if (k > n - off)
			k = n - off;
		if (feed(&d, src + off, k, max, tr) == -1) {
			ws_decoder_fini(&d);
			return;
		}
		off += k;
		if (n == 0)
			break;
	}
	/* nothing is ever held back for a later call */
	CHECK(ws_decode(&d, &none, 0, &ev) == 0 && ev.kind == WS_EV_NONE,
	    "an event from 0 bytes");
	CHECK(d.ctl == NULL || d.in_payload, "a control buffer kept after "
	    "its frame");
	ws_decoder_fini(&d);
	transcript_end(tr);
}

static void
decode_whole(const uint8_t *src, size_t n, uint64_t max,
    struct transcript *tr)
{
	struct ws_decoder d;
	struct ws_event ev;
	uint8_t none;

	ws_decoder_init(&d, max);
	if (feed(&d, src, n, max, tr) == -1) {
		ws_decoder_fini(&d);
		return;
	}
	CHECK(ws_decode(&d, &none, 0, &ev) == 0 && ev.kind == WS_EV_NONE,
	    "an event from 0 bytes");
	CHECK(d.ctl == NULL || d.in_payload, "a control buffer kept after "
	    "its frame");
	ws_decoder_fini(&d);
	transcript_end(tr);
}

/*
 * The encoder halves.
 */

static void
check_mask(const uint8_t *p, size_t n, uint32_t seed)
{
	uint8_t mask[4], *a, *b;
	size_t align = seed % 8, off = (seed >> 3) % 7, i;

	memcpy(mask, &seed, 4);
	a = malloc(n + align);
	b = malloc(n + 1);
	if (a == NULL || b == NULL)
		abort();
	if (n > 0) {
		memcpy(a + align, p, n);
		memcpy(b, p, n);
	}
	ws_mask(a + align, n, mask, off);
	for (i = 0; i < n; i++)
		b[i] ^= mask[(off + i) % 4];
	CHECK(n == 0 || memcmp(a + align, b, n) == 0, "ws_mask differs from "
	    "a byte-wise XOR (n %zu, off %zu, align %zu)", n, off, align);
	ws_mask(a + align, n, mask, off);
	CHECK(n == 0 || memcmp(a + align, p, n) == 0, "ws_mask twice is not "
	    "the identity");
	free(a);
	free(b);
}

static void
check_close_payload(uint16_t code, const uint8_t *reason, size_t n)
{
	uint8_t *out = malloc(WS_MAX_CONTROL); /* exactly the array size */
	uint8_t *r = fuzz_dup(reason, n);
	size_t len, rl;

	if (out == NULL)
		abort();
	len = ws_close_payload(out, code, (const char *)r, n);
	CHECK(len <= WS_MAX_CONTROL, "ws_close_payload wrote %zu", len);
	if (code == WS_CLOSE_NO_STATUS || code == WS_CLOSE_ABNORMAL) {
		CHECK(len == 0, "code %u gave a %zu-byte body", code, len);
		goto done;
	}
	CHECK(len >= 2 && (out[0] << 8 | out[1]) == code, "code not kept");
	rl = len - 2;
	CHECK(n == 0 || rl == 0 || memcmp(out + 2, r, rl) == 0,
	    "reason is not a prefix");
	if (n <= WS_MAX_CONTROL - 2)
		CHECK(rl == n, "a %zu-byte reason was cut to %zu", n, rl);
	else if (utf8_validate(UTF8_ACCEPT, r, n) == UTF8_ACCEPT) {
		CHECK(rl + 3 >= WS_MAX_CONTROL - 2, "a valid %zu-byte reason "
		    "was cut to %zu", n, rl);
		CHECK(utf8_validate(UTF8_ACCEPT, out + 2, rl) == UTF8_ACCEPT,
		    "the cut split a UTF-8 sequence (at %zu)", rl);
		CHECK((r[rl] & 0xc0) != 0x80, "cut before a continuation");
	}
done:
	free(out);
	free(r);
}

static void
check_frame_header(uint64_t len, int fin, uint8_t op, const uint8_t *mask)
{
	uint8_t h[WS_MAX_HEADER];
	size_t n = ws_frame_header(h, fin, op, len, mask);
	size_t want = len < 126 ? 2 : len <= 0xffff ? 4 : 10;

	CHECK(n == want + (mask != NULL ? 4 : 0), "header of %zu bytes for "
	    "length %llu", n, (unsigned long long)len);
	CHECK(h[0] == ((fin ? 0x80 : 0) | (op & 0x0f)), "first byte %02x",
	    h[0]);
	CHECK(((h[1] & 0x80) != 0) == (mask != NULL), "mask bit");
	if (mask != NULL)
		CHECK(memcmp(h + want, mask, 4) == 0, "mask not after length");
}

/*
 * (c) The round trip.
 */

struct rt {
	struct buf stream;   /* what the client sends */
	struct buf expect;   /* the transcript it must decode to */
	uint64_t max;
	uint32_t seed;
	int done;            /* an error is expected: the stream ends */
};

static void
rt_frame(struct rt *rt, int fin, uint8_t op, const uint8_t *p, size_t n)
{
	uint8_t h[WS_MAX_HEADER], mask[4], *body;
	uint32_t m = fuzz_rand(&rt->seed);
	size_t hl;

	/* now and then an all-zero key: XOR with nothing must work too */
	if ((m & 0xff) == 0)
		m = 0;
	memcpy(mask, &m, 4);
	hl = ws_frame_header(h, fin, op, n, mask);
	check_frame_header(n, fin, op, mask);
	buf_put(&rt->stream, h, hl);
	body = fuzz_dup(p, n);
	ws_mask(body, n, mask, 0);
	buf_put(&rt->stream, body, n);
	free(body);
}

/* Fill out[0..n) from the pattern, as raw bytes. */
NO_COVERAGE static void
fill_raw(uint8_t *out, size_t n, const uint8_t *pat, size_t pn)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = pn > 0 ? pat[i % pn] : (uint8_t)('a' + i % 26);
}

/* Fill out[0..n) with valid UTF-8 whose characters the pattern picks, so
 * fragment cuts land inside sequences of every length. */
NO_COVERAGE static void
fill_utf8(uint8_t *out, size_t n, const uint8_t *pat, size_t pn)
{
	size_t i = 0, j = 0;
	uint32_t cp;
	unsigned b;

	while (i < n) {
		b = pn > 0 ? pat[j++ % pn] : (unsigned)j++;
		switch (b % 5) {
		case 0:
		case 1:
			cp = 0x20 + b % 0x5f;
			break;
		case 2:
			cp = 0x80 + b * 7 % 0x780;
			break;
		case 3:
			cp = 0x800 + b * 251 % 0xf800;
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp += 0x800; /* no surrogates */
			break;
		default:
			cp = 0x10000 + b * 4099 % 0x100000;
			break;
		}
		if (cp < 0x80 || n - i < 2) {
			out[i++] = (uint8_t)(cp < 0x80 ? cp : 'x');
		} else if (cp < 0x800 || n - i < 3) {
			if (cp >= 0x800)
				cp = 0x80 + cp % 0x780;
			out[i++] = (uint8_t)(0xc0 | cp >> 6);
			out[i++] = (uint8_t)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000 || n - i < 4) {
			if (cp >= 0x10000)
				cp = 0x800 + cp % 0xd000;
			out[i++] = (uint8_t)(0xe0 | cp >> 12);
			out[i++] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
			out[i++] = (uint8_t)(0x80 | (cp & 0x3f));
		} else {
			out[i++] = (uint8_t)(0xf0 | cp >> 18);
			out[i++] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
			out[i++] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
			out[i++] = (uint8_t)(0x80 | (cp & 0x3f));
		}
	}
}

static void
rt_control(struct rt *rt, struct fuzz_in *in, uint8_t op)
{
	uint8_t body[WS_MAX_CONTROL];
	size_t n = fuzz_byte(in) % (WS_MAX_CONTROL + 1), i;

	for (i = 0; i < n; i++)
		body[i] = (uint8_t)fuzz_byte(in);
	rt_frame(rt, 1, op, body, n);
	rec_put(&rt->expect, 'C', op, 0, body, n);
}

static void
rt_close(struct rt *rt, struct fuzz_in *in)
{
	static const uint16_t codes[] = { 1000, 1001, 1002, 1003, 1007, 1008,
	    1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
	    WS_CLOSE_NO_STATUS };
	uint8_t reason[300], body[WS_MAX_CONTROL];
	size_t rn, n, i;
	uint16_t code;
	unsigned sel = fuzz_byte(in);

	code = codes[sel % (sizeof(codes) / sizeof(codes[0]))];
	rn = fuzz_byte(in) + (sel & 0x80 ? 40 : 0);
	if (sel & 0x40)
		fill_raw(reason, rn, in->p, in->n < 64 ? in->n : 64);
	else
		fill_utf8(reason, rn, in->p, in->n < 64 ? in->n : 64);
	for (i = 0; i < 8; i++)
		fuzz_byte(in);
	check_close_payload(code, reason, rn);
	n = ws_close_payload(body, code, (const char *)reason, rn);
	rt_frame(rt, 1, WS_OP_CLOSE, body, n);
	if (n == 0)
		rec_put(&rt->expect, 'C', WS_OP_CLOSE, WS_CLOSE_NO_STATUS,
		    NULL, 0);
	else if (utf8_validate(UTF8_ACCEPT, body + 2, n - 2) != UTF8_ACCEPT)
		rec_put(&rt->expect, 'E', 0, 1007, NULL, 0);
	else
		rec_put(&rt->expect, 'C', WS_OP_CLOSE, code, body, n);
	rt->done = 1; /* a client says nothing after its close */
}

static void
rt_message(struct rt *rt, struct fuzz_in *in, uint8_t op)
{
	unsigned f = fuzz_byte(in), nfrag = 1 + (f & 7), i;
	int raw = (f & 8) != 0, pings = (f & 16) != 0;
	size_t len, pn, off, k, *cut;
	uint64_t msg_len = 0;
	uint32_t ustate = UTF8_ACCEPT;
	uint8_t *msg, ping[4];

	switch (f >> 5 & 3) {
	case 0:
		len = fuzz_byte(in);
		break;
	case 1:
		len = fuzz_byte(in) & 15;
		break;
	case 2:
		/* 16-bit lengths; the big ones (slow) only near 65535 */
		len = fuzz_byte(in) << 8;
		len |= fuzz_byte(in);
		if (len < 0xff00)
			len = 126 + len % 2048;
		break;
	default:
		/* around the 7/16-bit boundary, or now and then (they are
		 * slow) a 64-bit length: over 65535 */
		k = fuzz_byte(in);
		len = k < 0xf0 ? 120 + k : 65536 + (k & 15) * 7;
		if (rt->stream.n + len > RT_MAX_STREAM)
			len = k;
		break;
	}
	pn = in->n < 256 ? in->n : 256;
	if ((msg = malloc(len + 1)) == NULL)
		abort();
	if (op == WS_OP_TEXT && !raw)
		fill_utf8(msg, len, in->p, pn);
	else
		fill_raw(msg, len, in->p, pn);
	in->p += pn / 2;
	in->n -= pn / 2;

	/* fragment boundaries, sorted, possibly empty fragments */
	if ((cut = malloc((nfrag + 1) * sizeof(*cut))) == NULL)
		abort();
	cut[0] = 0;
	for (i = 1; i < nfrag; i++) {
		k = len == 0 ? 0 : fuzz_rand(&rt->seed) % (len + 1);
		cut[i] = k < cut[i - 1] ? cut[i - 1] : k;
	}
	cut[nfrag] = len;

	for (i = 0; i < nfrag; i++) {
		off = cut[i];
		k = cut[i + 1] - off;
		if (rt->max != 0 && k > rt->max - msg_len) {
			rt_frame(rt, i + 1 == nfrag, i == 0 ? op : WS_OP_CONT,
			    msg + off, k);
			rec_put(&rt->expect, 'E', 0, 1009, NULL, 0);
			rt->done = 1;
			goto out;
		}
		msg_len += k;
		rt_frame(rt, i + 1 == nfrag, i == 0 ? op : WS_OP_CONT,
		    msg + off, k);
		if (op == WS_OP_TEXT) {
			ustate = utf8_validate(ustate, msg + off, k);
			if (ustate == UTF8_REJECT ||
			    (i + 1 == nfrag && ustate != UTF8_ACCEPT)) {
				rec_put(&rt->expect, 'E', 0, 1007, NULL, 0);
				rt->done = 1;
				goto out;
			}
		}
		if (pings && i + 1 < nfrag) {
			/* a control frame between fragments */
			memcpy(ping, &rt->seed, 4);
			rt_frame(rt, 1, WS_OP_PING, ping, i % 5);
			rec_put(&rt->expect, 'C', WS_OP_PING, 0, ping, i % 5);
		}
	}
	rec_put(&rt->expect, 'M', op, 0, msg, len);
out:
	free(cut);
	free(msg);
}

static void
round_trip(const uint8_t *data, size_t size, uint64_t max, unsigned mode,
    uint32_t seed)
{
	struct fuzz_in in = { data, size };
	static struct transcript got;
	static struct rt rt;
	static const uint8_t nothing[1];
	unsigned b, nmsgs = 0;

	transcript_reset(&got);
	buf_reset(&rt.stream);
	buf_reset(&rt.expect);
	rt.max = max;
	rt.seed = seed | 1;
	rt.done = 0;

	while (in.n > 0 && !rt.done && nmsgs++ < RT_MAX_MSGS &&
	    rt.stream.n < RT_MAX_STREAM) {
		b = fuzz_byte(&in);
		switch (b % 8) {
		case 0:
		case 1:
		case 6:
			rt_message(&rt, &in, WS_OP_TEXT);
			break;
		case 2:
		case 7:
			rt_message(&rt, &in, WS_OP_BINARY);
			break;
		case 3:
			rt_control(&rt, &in, WS_OP_PING);
			break;
		case 4:
			rt_control(&rt, &in, WS_OP_PONG);
			break;
		case 5:
			rt_close(&rt, &in);
			break;
		}
	}
	if (rt.stream.n > RT_BYTEWISE_MAX && mode < 2)
		mode = 2;
	decode_split(rt.stream.p != NULL ? rt.stream.p : nothing,
	    rt.stream.n, max, mode, seed, &got);
	transcripts_equal("round trip", &got.t, &rt.expect);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct transcript whole, split;
	const uint8_t *stream;
	uint64_t max, rt_max;
	uint8_t key[4];
	unsigned mode;
	uint32_t seed;
	size_t n;

	if (size < 2)
		return 0;
	max = lim[data[0] & 7];
	mode = data[0] >> 3 & 3;
	rt_max = lim[data[0] >> 5 & 7];
	seed = data[1];
	stream = data + 2;
	n = size - 2;

	/* (a) one piece, (b) the same in pieces */
	transcript_reset(&whole);
	transcript_reset(&split);
	decode_whole(stream, n, max, &whole);
	decode_split(stream, n, max, mode == 0 && n > RAW_BYTEWISE_MAX ? 1 :
	    mode, seed, &split);
	transcripts_equal("chunking", &split.t, &whole.t);

	/* (c) encode a script, decode it back */
	round_trip(stream, n, rt_max, mode, seed);

	/* the encoder's small pieces on the raw bytes */
	check_mask(stream, n, seed * 0x01000193u ^ (uint32_t)n);
	check_close_payload((uint16_t)(n > 1 ? stream[0] << 8 | stream[1] :
	    1000), stream, n);
	memcpy(key, &seed, 4);
	check_frame_header(n > 8 ? (uint64_t)stream[0] << 56 >> 1 |
	    (uint64_t)stream[1] << 16 | stream[2] : n, data[0] & 1,
	    data[1] & 0x0f, data[0] & 2 ? key : NULL);
	return 0;
}
