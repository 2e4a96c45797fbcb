/*
 * ws_codec.c: RFC 6455 framing with no I/O.
 *
 * The decoder is handed whatever bytes the socket produced, in pieces of any
 * size, and turns them into events: a chunk of a data message, a complete
 * control frame, or a protocol error with the close code to send.  Payload
 * is unmasked in place in the caller's buffer and handed back from there:
 * data as it arrives, so a message of any size costs the connection nothing
 * beyond the read buffer it already has, and a control frame whole when its
 * body is all in one piece, which is nearly always.  The decoder keeps the
 * frame header (at most 14 bytes) and, only while a control frame's body is
 * split across calls, a copy of it (at most 125 bytes, allocated when the
 * split is seen and freed on the call after the frame is delivered): an idle
 * connection's decoder holds no buffer at all.
 *
 * Limits are enforced from the header: a frame that would take its message
 * past max_message fails with 1009 before a byte of its payload is taken.
 * Text is validated chunk by chunk with utf8.c, across fragments and across
 * interleaved control frames, so invalid UTF-8 fails the connection as soon
 * as it arrives rather than when the message ends.  A chunk the unmasking
 * found all ASCII, with no sequence open before it, needs no more look.
 *
 * When permessage-deflate was negotiated (rsv1_ok), RSV1 on the first
 * frame of a data message marks it compressed: its chunks are handed on
 * flagged, without the UTF-8 check, and its limit on the wire allows for
 * deflate's overhead; zstream.c inflates them and holds the inflated
 * message to max_message.  RSV1 anywhere else stays a protocol error.
 *
 * This is the server's decoder: every incoming frame must be masked.  The
 * encoder half writes headers (ws_frame_header, inline in wsplugd.h so that
 * every reply's header is written without a call; the server's own frames
 * are not masked, but a test client's are) and close bodies; payload is
 * left to the caller so it can be sent from where it already lies.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

#define WS_RSV 0x70
#define WS_LEN7 0x7f

/*
 * Every way a peer can fail the connection.  d->failed holds the index plus
 * one, so the decoder can repeat the error on every later call without a
 * field of its own for the code and the text.  The texts go into close
 * frames as they are: short, ASCII, well under 123 bytes.
 */
enum {
	E_NONE,
	E_RSV,
	E_RSV1_CONTROL,
	E_RSV1_CONT,
	E_OPCODE,
	E_UNMASKED,
	E_CTL_FRAGMENTED,
	E_CTL_TOO_LONG,
	E_CONT_ALONE,
	E_MSG_OPEN,
	E_LEN_MSB,
	E_TOO_BIG,
	E_TEXT_UTF8,
	E_CLOSE_LEN1,
	E_CLOSE_CODE,
	E_CLOSE_UTF8,
	E_NOMEM,
};

static const struct {
	uint16_t code;
	const char *reason;
} ws_errors[] = {
	[E_RSV] = { 1002, "reserved bit set" },
	[E_RSV1_CONTROL] = { 1002, "compressed control frame" },
	[E_RSV1_CONT] = { 1002, "compressed bit on a continuation frame" },
	[E_OPCODE] = { 1002, "unknown opcode" },
	[E_UNMASKED] = { 1002, "unmasked frame" },
	[E_CTL_FRAGMENTED] = { 1002, "fragmented control frame" },
	[E_CTL_TOO_LONG] = { 1002, "control frame too long" },
	[E_CONT_ALONE] = { 1002, "continuation without a message" },
	[E_MSG_OPEN] = { 1002, "new message inside a fragmented one" },
	[E_LEN_MSB] = { 1002, "frame length out of range" },
	[E_TOO_BIG] = { 1009, "message too big" },
	[E_TEXT_UTF8] = { 1007, "invalid UTF-8 in text message" },
	[E_CLOSE_LEN1] = { 1002, "close frame with a 1-byte body" },
	[E_CLOSE_CODE] = { 1002, "invalid close code" },
	[E_CLOSE_UTF8] = { 1007, "invalid UTF-8 in close reason" },
	[E_NOMEM] = { 1011, "out of memory" },
};

static int
ws_is_control(uint8_t opcode)
{
	return (opcode & 0x08) != 0;
}

static void
ws_error_event(const struct ws_decoder *d, struct ws_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = WS_EV_ERROR;
	ev->close_code = ws_errors[d->failed].code;
	ev->reason = ws_errors[d->failed].reason;
}

/* Record error e and describe it in ev.  Always returns -1. */
static int
ws_fail(struct ws_decoder *d, int e, struct ws_event *ev)
{
	d->failed = (uint8_t)e;
	ws_error_event(d, ev);
	return -1;
}

void
ws_decoder_init(struct ws_decoder *d, uint64_t max_message)
{
	memset(d, 0, sizeof(*d));
	d->max_message = max_message;
	d->utf8 = UTF8_ACCEPT;
}

void
ws_decoder_fini(struct ws_decoder *d)
{
	free(d->ctl);
	d->ctl = NULL;
}

/*
 * Checks that need only the first two bytes, made as soon as they are in so
 * that garbage fails before we wait for an extended length that may never
 * come.
 */
static int
ws_check_start(struct ws_decoder *d, uint8_t b0, uint8_t b1,
    struct ws_event *ev)
{
	uint8_t op = b0 & WS_OPCODE;

	/* RSV1 is permessage-deflate's, when negotiated, and only on the
	 * first frame of a data message (RFC 7692 6); RSV2 and RSV3 are no
	 * extension's. */
	if ((b0 & WS_RSV & ~WS_RSV1) || ((b0 & WS_RSV1) && !d->rsv1_ok))
		return ws_fail(d, E_RSV, ev);
	if ((b0 & WS_RSV1) && ws_is_control(op) && op <= WS_OP_PONG)
		return ws_fail(d, E_RSV1_CONTROL, ev);
	if ((b0 & WS_RSV1) && op == WS_OP_CONT)
		return ws_fail(d, E_RSV1_CONT, ev);
	switch (op) {
	case WS_OP_CONT:
		if (d->msg_opcode == 0)
			return ws_fail(d, E_CONT_ALONE, ev);
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (d->msg_opcode != 0)
			return ws_fail(d, E_MSG_OPEN, ev);
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!(b0 & WS_FIN))
			return ws_fail(d, E_CTL_FRAGMENTED, ev);
		if ((b1 & WS_LEN7) > WS_MAX_CONTROL)
			return ws_fail(d, E_CTL_TOO_LONG, ev);
		break;
	default:
		return ws_fail(d, E_OPCODE, ev);
	}
	if (!(b1 & WS_MASKED))
		return ws_fail(d, E_UNMASKED, ev);
	return 0;
}

/* Header length implied by the second byte; the mask is always there. */
static size_t
ws_header_need(uint8_t b1)
{
	switch (b1 & WS_LEN7) {
	case 126:
		return 2 + 2 + 4;
	case 127:
		return 2 + 8 + 4;
	default:
		return 2 + 4;
	}
}

/* The header h is complete: decode it and set up the payload. */
static int
ws_start_frame(struct ws_decoder *d, const uint8_t *h, struct ws_event *ev)
{
	uint64_t len, max;
	size_t i, mpos;

	len = h[1] & WS_LEN7;
	mpos = 2;
	if (len == 126) {
		len = (uint64_t)h[2] << 8 | h[3];
		mpos = 4;
	} else if (len == 127) {
		len = 0;
		for (i = 2; i < 10; i++)
			len = len << 8 | h[i];
		mpos = 10;
		if (len >> 63)
			return ws_fail(d, E_LEN_MSB, ev);
	}
	/* Non-minimal length encodings are accepted: RFC 6455 says they MUST
	 * NOT be sent, but refusing them buys nothing. */
	memcpy(d->mask, h + mpos, 4);
	d->mpos = 0;
	d->opcode = h[0] & WS_OPCODE;
	d->fin = (h[0] & WS_FIN) != 0;
	d->remaining = len;
	d->in_payload = 1;
	d->hlen = 0;

	if (ws_is_control(d->opcode)) {
		d->ctl_len = 0;
		return 0;
	}
	if (d->opcode != WS_OP_CONT)
		d->msg_compressed = (h[0] & WS_RSV1) != 0;
	/* A compressed message is held to the limit as it is inflated
	 * (zstream.c); on the wire it may exceed it by deflate's stored-block
	 * overhead (5 bytes in 65535), which this allows generously. */
	max = d->max_message;
	if (max != 0 && d->msg_compressed)
		max += max / 256 + 64;
	/* With a limit, msg_len never exceeds it, so the subtraction cannot
	 * wrap; without one, msg_len is never looked at. */
	if (max != 0 && len > max - d->msg_len)
		return ws_fail(d, E_TOO_BIG, ev);
	d->msg_len += len;
	if (d->opcode != WS_OP_CONT) {
		d->msg_opcode = d->opcode;
		d->utf8 = UTF8_ACCEPT;
	}
	return 0;
}

/*
 * Take header bytes from in[*off..len).  Returns 1 when the header is
 * complete, 0 when everything was taken and more is needed, -1 on error.
 */
static int
ws_read_header(struct ws_decoder *d, const uint8_t *in, size_t len,
    size_t *off, struct ws_event *ev)
{
	const uint8_t *h;
	size_t need, n;

	/* The common case, a header whole in this read, is decoded where it
	 * lies: two copies into d->hdr were a third of a small message's
	 * decoding.  A header cut short is gathered below, checked as soon
	 * as its first two bytes are in, as ever. */
	if (d->hlen == 0 && len - *off >= 2) {
		h = in + *off;
		*off += 2;
		if (ws_check_start(d, h[0], h[1], ev) == -1)
			return -1;
		need = ws_header_need(h[1]);
		if (len - *off >= need - 2) {
			*off += need - 2;
			return ws_start_frame(d, h, ev) == -1 ? -1 : 1;
		}
		memcpy(d->hdr, h, 2);
		d->hlen = 2;
	}
	for (;;) {
		need = d->hlen < 2 ? 2 : ws_header_need(d->hdr[1]);
		if (d->hlen == need)
			return ws_start_frame(d, d->hdr, ev) == -1 ? -1 : 1;
		n = need - d->hlen;
		if (n > len - *off)
			n = len - *off;
		if (n == 0)
			return 0;
		memcpy(d->hdr + d->hlen, in + *off, n);
		d->hlen = (uint8_t)(d->hlen + n); /* n <= WS_MAX_HEADER */
		*off += n;
		if (d->hlen == 2 &&
		    ws_check_start(d, d->hdr[0], d->hdr[1], ev) == -1)
			return -1;
	}
}

/* A close body is either empty or a valid code and a UTF-8 reason. */
static int
ws_check_close(struct ws_decoder *d, const uint8_t *body, size_t len,
    struct ws_event *ev)
{
	unsigned code;

	if (len == 0) {
		ev->close_code = WS_CLOSE_NO_STATUS;
		return 0;
	}
	if (len == 1)
		return ws_fail(d, E_CLOSE_LEN1, ev);
	code = (unsigned)body[0] << 8 | body[1];
	if (!ws_close_code_valid(code))
		return ws_fail(d, E_CLOSE_CODE, ev);
	if (utf8_validate(UTF8_ACCEPT, body + 2, len - 2) != UTF8_ACCEPT)
		return ws_fail(d, E_CLOSE_UTF8, ev);
	ev->close_code = (uint16_t)code;
	return 0;
}

/*
 * Every payload byte of every received frame passes through here, so it
 * XORs eight at a time with the key rotated to the starting offset and
 * repeated twice, then four, then the last few a byte at a time.  Eight
 * and four are multiples of four, so the key lines up again for each
 * narrower step.  A byte loop with the key indexed per byte cost more
 * than the words for a typical 30-byte message.  Loading and storing
 * through memcpy keeps this free of alignment and aliasing assumptions;
 * compilers turn it into plain moves.
 *
 * It returns the OR of every unmasked word, so that the decoder learns
 * for one instruction a word whether a text chunk is all ASCII, and then
 * skips the UTF-8 machine: nearly every message is ASCII.  ws_mask, which
 * has no use for it, is the same code with the result dropped.
 */
static inline uint64_t
mask_run(uint8_t *p, size_t n, const uint8_t mask[4], size_t off)
{
	uint64_t key, w, seen = 0;
	uint32_t key4, w4;
	uint8_t k[4];
	size_t i = 0, j;

	/* The key rotated to start at off, in a register: built a byte at
	 * a time in memory and loaded as a word, it was a fifth of this
	 * function, and a stall where the load waits for the stores. */
	memcpy(&key4, mask, 4);
	off = (off & 3) * 8;
	if (off != 0) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		key4 = key4 << off | key4 >> (32 - off);
#else
		key4 = key4 >> off | key4 << (32 - off);
#endif
	}
	key = (uint64_t)key4 << 32 | key4;
	for (; n - i >= 32; i += 32) {
		uint64_t w0, w1, w2, w3;

		memcpy(&w0, p + i, 8);
		memcpy(&w1, p + i + 8, 8);
		memcpy(&w2, p + i + 16, 8);
		memcpy(&w3, p + i + 24, 8);
		w0 ^= key;
		w1 ^= key;
		w2 ^= key;
		w3 ^= key;
		seen |= w0 | w1 | w2 | w3;
		memcpy(p + i, &w0, 8);
		memcpy(p + i + 8, &w1, 8);
		memcpy(p + i + 16, &w2, 8);
		memcpy(p + i + 24, &w3, 8);
	}
	for (; n - i >= 8; i += 8) {
		memcpy(&w, p + i, 8);
		w ^= key;
		seen |= w;
		memcpy(p + i, &w, 8);
	}
	if (n - i >= 4) {
		memcpy(&w4, p + i, 4);
		w4 ^= key4;
		seen |= w4;
		memcpy(p + i, &w4, 4);
		i += 4;
	}
	/* One to three bytes left: a pair, then a byte, each a step; a
	 * byte loop cost a typical message a third of this function. */
	memcpy(k, &key4, 4);
	j = 0;
	if (n - i >= 2) {
		uint16_t w2, k2;

		memcpy(&w2, p + i, 2);
		memcpy(&k2, k, 2);
		w2 ^= k2;
		seen |= w2;
		memcpy(p + i, &w2, 2);
		i += 2;
		j = 2;
	}
	if (i < n) {
		p[i] ^= k[j];
		seen |= p[i];
	}
	return seen;
}

void
ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off)
{
	(void)mask_run(p, n, mask, off);
}

/* Payload bytes are unmasked where they lie, continuing the key where the
 * previous chunk of this frame left it.  Returns the OR of the unmasked
 * bytes (mask_run): a high bit set in it means a byte above 0x7F. */
static uint64_t
ws_unmask_chunk(struct ws_decoder *d, uint8_t *p, size_t n)
{
	uint64_t seen = mask_run(p, n, d->mask, d->mpos);

	d->mpos = (uint8_t)((d->mpos + n) & 3);
	d->remaining -= n;
	if (d->remaining == 0)
		d->in_payload = 0;
	return seen;
}

/*
 * n bytes of a control frame's body are at in + off.  When they are the
 * whole body, it is delivered where it lies; a body split across calls is
 * gathered in d->ctl, sized for this frame when the first piece comes.
 * Returns the new offset, with ev set when the frame is complete.
 */
static size_t
ws_control(struct ws_decoder *d, uint8_t *in, size_t off, size_t n,
    struct ws_event *ev)
{
	uint8_t *body;
	size_t blen;

	if (n == 0 && d->remaining > 0)
		return off; /* all taken, no more of the body yet */
	if (d->ctl == NULL && n == d->remaining) {
		body = in + off;
		blen = n;
		ws_unmask_chunk(d, body, n); /* ends the payload, even empty */
	} else {
		if (d->ctl == NULL) {
			/* remaining <= WS_MAX_CONTROL, checked on the header */
			if ((d->ctl = malloc((size_t)d->remaining)) == NULL) {
				ws_fail(d, E_NOMEM, ev);
				return off;
			}
		}
		memcpy(d->ctl + d->ctl_len, in + off, n);
		ws_unmask_chunk(d, d->ctl + d->ctl_len, n);
		d->ctl_len = (uint8_t)(d->ctl_len + n);
		if (d->in_payload)
			return off + n; /* all taken, body incomplete */
		body = d->ctl;
		blen = d->ctl_len;
	}
	off += n;
	if (d->opcode == WS_OP_CLOSE && ws_check_close(d, body, blen, ev) == -1)
		return off;
	ev->kind = WS_EV_CONTROL;
	ev->opcode = d->opcode;
	ev->data = body;
	ev->len = blen;
	return off;
}

/*
 * The common case, taken before the general path: a whole unfragmented
 * text or binary frame under 126 bytes at the start of in, between
 * messages.  It is the general path's result by a shorter way (the
 * header checks, ws_start_frame's set-up and its undoing at the end of
 * the message were a third of a small message's decoding); anything
 * else, a limit that fails included, returns 0 and takes the general
 * path, which reports it.  test_codec (its event invariants, the limit
 * and UTF-8 tests, the chunking oracle, which splits what the short path
 * takes whole) and fuzz_codec hold the two paths to the same events.
 */
static inline size_t
ws_small_frame(struct ws_decoder *d, uint8_t *in, size_t len,
    struct ws_event *ev)
{
	uint8_t b0, b1, *p;
	uint64_t seen;
	size_t n;

	if (len < 6 || d->in_payload || d->hlen != 0 || d->msg_opcode != 0)
		return 0;
	b0 = in[0];
	b1 = in[1];
	/* FIN, no RSV bit, text or binary; masked, a 7-bit length */
	if ((b0 & (WS_FIN | WS_RSV)) != WS_FIN ||
	    (unsigned)((b0 & WS_OPCODE) - WS_OP_TEXT) > 1 ||
	    !(b1 & WS_MASKED) || (b1 & WS_LEN7) >= 126)
		return 0;
	n = b1 & WS_LEN7;
	if (len - 6 < n || (d->max_message != 0 && n > d->max_message))
		return 0;
	memcpy(d->mask, in + 2, 4);
	d->mpos = (uint8_t)(n & 3);
	d->opcode = b0 & WS_OPCODE;
	d->fin = 1;
	d->remaining = 0;
	d->msg_compressed = 0;
	d->utf8 = UTF8_ACCEPT;
	p = in + 6;
	seen = mask_run(p, n, d->mask, 0);
	if (d->opcode == WS_OP_TEXT && (seen & 0x8080808080808080ULL) != 0 &&
	    (d->utf8 = utf8_validate(UTF8_ACCEPT, p, n)) != UTF8_ACCEPT) {
		ws_fail(d, E_TEXT_UTF8, ev);
		return 6 + n;
	}
	ev->kind = WS_EV_DATA;
	ev->opcode = d->opcode;
	ev->fin = 1;
	ev->data = p;
	ev->len = n;
	return 6 + n;
}

size_t
ws_decode(struct ws_decoder *d, uint8_t *in, size_t len, struct ws_event *ev)
{
	size_t off = 0, n;
	uint64_t seen;
	uint8_t *p;
	int r;

	memset(ev, 0, sizeof(*ev));
	if (d->ctl != NULL && !d->in_payload) {
		/* The split control frame was delivered by the last call. */
		free(d->ctl);
		d->ctl = NULL;
	}
	if (d->failed) {
		ws_error_event(d, ev);
		return len;
	}
	if ((n = ws_small_frame(d, in, len, ev)) != 0)
		return n;

	for (;;) {
		if (!d->in_payload) {
			r = ws_read_header(d, in, len, &off, ev);
			if (r != 1)
				return off; /* error, or all taken */
		}

		n = len - off;
		if (n > d->remaining)
			n = (size_t)d->remaining;

		if (ws_is_control(d->opcode))
			return ws_control(d, in, off, n, ev);

		if (n == 0 && d->remaining > 0)
			return off; /* all taken, payload still to come */
		if (n == 0 && !d->fin) {
			/* An empty fragment says nothing; read on. */
			d->in_payload = 0;
			continue;
		}

		p = in + off;
		off += n;
		seen = ws_unmask_chunk(d, p, n);
		ev->fin = d->fin && d->remaining == 0;
		/* ASCII leaves UTF8_ACCEPT where it is, and only there: a
		 * sequence left open by the last chunk still goes through
		 * the machine, which rejects an ASCII byte in it. */
		if (d->msg_opcode == WS_OP_TEXT && !d->msg_compressed &&
		    ((seen & 0x8080808080808080ULL) != 0 ||
		    d->utf8 != UTF8_ACCEPT)) {
			d->utf8 = utf8_validate(d->utf8, p, n);
			if (d->utf8 == UTF8_REJECT ||
			    (ev->fin && d->utf8 != UTF8_ACCEPT)) {
				ws_fail(d, E_TEXT_UTF8, ev);
				return off;
			}
		}
		ev->kind = WS_EV_DATA;
		ev->opcode = d->msg_opcode;
		ev->compressed = d->msg_compressed;
		ev->data = p;
		ev->len = n;
		if (ev->fin) {
			/* d->utf8 is UTF8_ACCEPT here, or we would have
			 * failed above. */
			d->msg_opcode = 0;
			d->msg_compressed = 0;
			d->msg_len = 0;
		}
		return off;
	}
}

size_t
ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code,
    const char *reason, size_t reason_len)
{
	const uint8_t *r = (const uint8_t *)reason;
	size_t n = reason_len;

	/* These codes exist only inside endpoints; on the wire the absence of
	 * a status is an empty body, which is what echoing one must send. */
	if (code == WS_CLOSE_NO_STATUS || code == WS_CLOSE_ABNORMAL)
		return 0;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	if (n > WS_MAX_CONTROL - 2) {
		/* Cut before the sequence that straddles the limit: a cut
		 * inside one would make the reason invalid UTF-8, which the
		 * peer must fail the connection for. */
		n = WS_MAX_CONTROL - 2;
		while (n > 0 && (r[n] & 0xc0) == 0x80)
			n--;
	}
	if (n > 0)
		memcpy(out + 2, r, n);
	return 2 + n;
}

int
ws_close_code_valid(unsigned code)
{
	if (code >= 1000 && code <= 1003)
		return 1;
	/* 1004 is reserved; 1005 and 1006 must never be sent. 1012..1014
	 * are in the IANA registry; 1015 must never be sent. */
	if (code >= 1007 && code <= 1014)
		return 1;
	/* 3000..3999 registered with IANA, 4000..4999 private use. */
	return code >= 3000 && code <= 4999;
}
