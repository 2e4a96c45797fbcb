/*
 * handover_state.c: what travels to the process that takes over, as bytes.
 *
 * A hand-over (handover.c) moves every connection to a freshly started
 * binary.  The descriptors cross by SCM_RIGHTS; everything else a
 * connection is — its id, counters, metadata, attributes, its bus
 * channels (their history travels on its own, in bus_local.c's format),
 * the frame the
 * codec is half-way through, the message being reassembled, the output
 * not yet written, its keepalive position and its deflate parameters — is
 * written here into frames and read back by the other process.
 *
 * The two processes may be different builds, so everything read is
 * checked as if it came from a stranger: a frame starts with a magic, a
 * format version and its type, carries its length (bounded by
 * HO_MAX_FRAME) and a CRC-32 of its payload; every field of a record is
 * bounded (strings by the caps the daemon applies on upgrade, byte
 * strings by what is left of the record), every enumeration is checked,
 * and a record that does not end exactly where its length says is
 * refused.  A version this build does not know is not an error here: the
 * caller answers it with the graceful-restart fallback instead.
 *
 * The header layout (magic, version, type, length, CRC) and the listener
 * entries never change, so that any two builds can at least agree on the
 * listening sockets and on whether they understand each other; the
 * version governs the connection records and the server counters.
 *
 * Pure: no sockets, no allocation on decode (byte strings point into the
 * caller's buffer), so it is unit-tested and fuzzed on its own.
 * Integers are little-endian.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "wsplugd.h"

/* Caps, as conn.c applies them on upgrade (and a reason fits a close
 * frame): a longer field is a stranger's, not ours. */
#define HO_MAX_UA 512
#define HO_MAX_STR 256
#define HO_MAX_REASON (WS_MAX_CONTROL - 2)
#define HO_MAX_HEAD (64 * 1024) /* max_header_size's ceiling */
/* one entry of a subs list, at most (see ho_valid_subs) */
#define HO_SUB_MAX (1 + WSP_BUS_CHANNEL_MAX + 8 + 1 + WSP_BUS_EPOCH_MAX)

/* Writing: into the caller's outbuf (outbuf.c), never past what the peer
 * takes as one frame. */

static int
ho_put(struct outbuf *b, const void *p, size_t n)
{
	if (n > HO_MAX_FRAME || b->len > HO_MAX_FRAME - n)
		return -1;
	return outbuf_put(b, p, n);
}

static int
ho_put_u64(struct outbuf *b, uint64_t v, size_t width)
{
	uint8_t x[8];

	outbuf_set_le(x, v, width);
	return ho_put(b, x, width);
}

#define ho_put_u8(b, v) ho_put_u64((b), (v), 1)
#define ho_put_u16(b, v) ho_put_u64((b), (v), 2)
#define ho_put_u32(b, v) ho_put_u64((b), (v), 4)

/* A byte string: a presence byte, its length, its bytes.  p NULL is
 * absent (a missing header), which differs from empty. */
static int
ho_put_bytes(struct outbuf *b, const struct ho_bytes *s)
{
	if (s->p == NULL)
		return ho_put_u8(b, 0);
	if (s->n > UINT32_MAX)
		return -1;
	if (ho_put_u8(b, 1) == -1 || ho_put_u32(b, s->n) == -1)
		return -1;
	return ho_put(b, s->p, s->n);
}

int
ho_buf_put(struct outbuf *b, const void *p, size_t n)
{
	return ho_put(b, p, n);
}

/* Reading: outbuf.c's cursor, in the widths the records use. */

#define ho_get_u8(r) ((uint8_t)le_get((r), 1))
#define ho_get_u16(r) ((uint16_t)le_get((r), 2))
#define ho_get_u32(r) ((uint32_t)le_get((r), 4))

static void
ho_get_raw(struct le_rd *r, void *out, size_t n)
{
	if (r->why != NULL || r->n < n) {
		le_fail(r, "truncated");
		memset(out, 0, n);
		return;
	}
	memcpy(out, r->p, n);
	r->p += n;
	r->n -= n;
}

/* A byte string of at most max bytes (0: what is left), pointing into the
 * buffer; text (no NUL, for C strings made from it) when text is set. */
static void
ho_get_bytes(struct le_rd *r, struct ho_bytes *s, size_t max, int text,
    const char *what)
{
	uint8_t present;
	uint32_t n;

	s->p = NULL;
	s->n = 0;
	present = ho_get_u8(r);
	if (r->why != NULL || present == 0)
		return;
	if (present != 1) {
		le_fail(r, what);
		return;
	}
	n = ho_get_u32(r);
	if (r->why != NULL)
		return;
	if ((max > 0 && n > max) || n > r->n) {
		le_fail(r, what);
		return;
	}
	if (text && n > 0 && memchr(r->p, '\0', n) != NULL) {
		le_fail(r, what);
		return;
	}
	s->p = r->p;
	s->n = n;
	r->p += n;
	r->n -= n;
}

/* Frames */

size_t
ho_frame_header(uint8_t out[HO_HDR_LEN], uint16_t type, const void *payload,
    size_t len)
{
	uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
	uint32_t v[3];
	size_t i;

	if (len > 0)
		crc = (uint32_t)crc32(crc, payload, (uInt)len);
	v[0] = HO_MAGIC;
	v[1] = (uint32_t)HO_VERSION | (uint32_t)type << 16;
	v[2] = (uint32_t)len;
	for (i = 0; i < 3; i++) {
		out[4 * i] = (uint8_t)v[i];
		out[4 * i + 1] = (uint8_t)(v[i] >> 8);
		out[4 * i + 2] = (uint8_t)(v[i] >> 16);
		out[4 * i + 3] = (uint8_t)(v[i] >> 24);
	}
	out[12] = (uint8_t)crc;
	out[13] = (uint8_t)(crc >> 8);
	out[14] = (uint8_t)(crc >> 16);
	out[15] = (uint8_t)(crc >> 24);
	return HO_HDR_LEN;
}

int
ho_frame_parse(const uint8_t hdr[HO_HDR_LEN], struct ho_frame *f,
    const char **why_r)
{
	struct le_rd r = { hdr, HO_HDR_LEN, NULL };

	if (ho_get_u32(&r) != HO_MAGIC) {
		*why_r = "not a hand-over frame (bad magic)";
		return -1;
	}
	f->version = ho_get_u16(&r);
	f->type = ho_get_u16(&r);
	f->len = ho_get_u32(&r);
	f->crc = ho_get_u32(&r);
	if (f->len > HO_MAX_FRAME) {
		*why_r = "frame longer than the limit";
		return -1;
	}
	if (f->type == 0 || f->type > HO_T_LAST) {
		*why_r = "unknown frame type";
		return -1;
	}
	return 0;
}

int
ho_frame_verify(const struct ho_frame *f, const void *payload)
{
	uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);

	if (f->len > 0)
		crc = (uint32_t)crc32(crc, payload, (uInt)f->len);
	return crc == f->crc ? 0 : -1;
}

/* Listener entries: never versioned (see the top). */

int
ho_listen_encode(struct outbuf *b, const struct ho_listen *l)
{
	if (l->conf_len == 0 || l->conf_len > sizeof(l->conf))
		return -1;
	if (ho_put_u8(b, l->kind) == -1 || ho_put_u8(b, l->tls) == -1 ||
	    ho_put_u16(b, l->conf_len) == -1)
		return -1;
	return ho_put(b, &l->conf, l->conf_len);
}

int
ho_listen_decode(const uint8_t *p, size_t n, size_t *used_r,
    struct ho_listen *l, const char **why_r)
{
	struct le_rd r = { p, n, NULL };

	memset(l, 0, sizeof(*l));
	l->kind = ho_get_u8(&r);
	l->tls = ho_get_u8(&r);
	l->conf_len = ho_get_u16(&r);
	if (r.why == NULL && (l->conf_len < sizeof(sa_family_t) ||
	    l->conf_len > sizeof(l->conf)))
		le_fail(&r, "bad listener address length");
	if (r.why == NULL)
		ho_get_raw(&r, &l->conf, l->conf_len);
	if (r.why == NULL && l->kind != HO_LISTEN_WS &&
	    l->kind != HO_LISTEN_ADMIN)
		le_fail(&r, "bad listener kind");
	if (r.why == NULL && l->tls > 1)
		le_fail(&r, "bad listener tls flag");
	if (r.why != NULL) {
		*why_r = r.why;
		return -1;
	}
	*used_r = n - r.n;
	return 0;
}

/* Connection records */

static int
ho_put_str(struct outbuf *b, const char *s)
{
	struct ho_bytes x = { (const uint8_t *)s, s == NULL ? 0 : strlen(s) };

	return ho_put_bytes(b, &x);
}

int
ho_conn_encode(struct outbuf *b, const struct ho_conn *h)
{
	const struct ws_decoder *d = &h->dec;
	size_t start = b->len, len;
	int rc = 0;

	rc |= ho_put_u32(b, 0); /* the length, filled in below */
	rc |= ho_put_u8(b, h->state);
	rc |= ho_put(b, h->id, 32);
	rc |= ho_put_str(b, h->ip);
	rc |= ho_put_u16(b, h->port);
	rc |= ho_put_bytes(b, &h->user_agent);
	rc |= ho_put_bytes(b, &h->origin);
	rc |= ho_put_bytes(b, &h->path);
	rc |= ho_put_bytes(b, &h->subprotocol);
	rc |= ho_put_bytes(b, &h->close_reason);
	rc |= ho_put_u16(b, h->close_code);
	rc |= ho_put_u64(b, (uint64_t)h->connected_at_ms, 8);
	rc |= ho_put_u64(b, (uint64_t)h->last_activity_ms, 8);
	rc |= ho_put_u64(b, h->msgs_in, 8);
	rc |= ho_put_u64(b, h->msgs_out, 8);
	rc |= ho_put_u64(b, h->bytes_in, 8);
	rc |= ho_put_u64(b, h->bytes_out, 8);
	rc |= ho_put_u64(b, h->last_activity, 8);
	rc |= ho_put_u64(b, h->opened_mono, 8);
	rc |= ho_put_u64(b, h->ping_sent, 8);
	rc |= ho_put_u32(b, h->pings_missed);
	/* the codec, field by field: its layout is this build's business */
	rc |= ho_put_u64(b, d->max_message, 8);
	rc |= ho_put_u8(b, d->rsv1_ok);
	rc |= ho_put(b, d->hdr, WS_MAX_HEADER);
	rc |= ho_put_u8(b, d->hlen);
	rc |= ho_put_u8(b, d->opcode);
	rc |= ho_put_u8(b, d->fin);
	rc |= ho_put_u8(b, d->in_payload);
	rc |= ho_put(b, d->mask, 4);
	rc |= ho_put_u8(b, d->mpos);
	rc |= ho_put_u8(b, d->msg_opcode);
	rc |= ho_put_u8(b, d->msg_compressed);
	rc |= ho_put_u8(b, d->failed);
	rc |= ho_put_u64(b, d->remaining, 8);
	rc |= ho_put_u64(b, d->msg_len, 8);
	rc |= ho_put_u32(b, d->utf8);
	rc |= ho_put_bytes(b, &h->ctl);
	rc |= ho_put_u8(b, h->msg_open);
	rc |= ho_put_u8(b, h->msg_opcode);
	rc |= ho_put_bytes(b, &h->msg);
	rc |= ho_put_bytes(b, &h->out);
	rc |= ho_put_bytes(b, &h->attrs);
	rc |= ho_put_bytes(b, &h->subs);
	rc |= ho_put_bytes(b, &h->head);
	rc |= ho_put_u8(b, h->has_zs);
	if (h->has_zs) {
		rc |= ho_put_u8(b, h->zp.server_no_takeover);
		rc |= ho_put_u8(b, h->zp.client_no_takeover);
		rc |= ho_put_u8(b, h->zp.server_wbits);
		rc |= ho_put_u8(b, h->zp.client_wbits);
		rc |= ho_put_u8(b, h->zp.answer_server_wbits);
		rc |= ho_put_u8(b, h->zp.answer_client_wbits);
		rc |= ho_put_u8(b, h->z_level);
		rc |= ho_put_u8(b, h->z_mem_level);
		rc |= ho_put_u64(b, h->z_threshold, 8);
	}
	if (rc != 0) {
		b->len = start;
		return -1;
	}
	len = b->len - start - 4;
	b->p[start] = (char)(uint8_t)len;
	b->p[start + 1] = (char)(uint8_t)(len >> 8);
	b->p[start + 2] = (char)(uint8_t)(len >> 16);
	b->p[start + 3] = (char)(uint8_t)(len >> 24);
	return 0;
}

static int
ho_valid_id(const char *id)
{
	size_t i;

	for (i = 0; i < 32; i++)
		if (strchr("0123456789abcdef", id[i]) == NULL || id[i] == '\0')
			return 0;
	return 1;
}

static int
ho_valid_ip(const char *ip, size_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (strchr("0123456789abcdefABCDEF.:", ip[i]) == NULL ||
		    ip[i] == '\0')
			return 0;
	return 1;
}

/*
 * A subs list: per channel, u8 n and the name's n bytes, u64 the last
 * offset handed to the connection there, u8 e and the e bytes of its
 * epoch (0: none).  An epoch is written into JSON as it is, so letters
 * and digits only.
 */

static int
ho_valid_epoch(const uint8_t *p, size_t n)
{
	size_t i;

	if (n > WSP_BUS_EPOCH_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'z') ||
		    (p[i] >= 'A' && p[i] <= 'Z')))
			return 0;
	return 1;
}

/* Channel names as bus.c would take them (bus_channel_valid) with their
 * positions, no more than HO_MAX_SUBS, the list ending with the last. */
static int
ho_valid_subs(const struct ho_bytes *s)
{
	size_t off = 0, count = 0, n, i;
	const uint8_t *name;

	while (off < s->n) {
		n = s->p[off++];
		if (n == 0 || n > WSP_BUS_CHANNEL_MAX || n > s->n - off ||
		    ++count > HO_MAX_SUBS)
			return 0;
		name = s->p + off;
		if (utf8_validate(UTF8_ACCEPT, name, n) != UTF8_ACCEPT)
			return 0;
		for (i = 0; i < n; i++)
			if (name[i] < 0x20 || name[i] == 0x7f)
				return 0;
		off += n;
		if (s->n - off < 9)
			return 0;
		off += 8;
		n = s->p[off++];
		if (n > s->n - off || !ho_valid_epoch(s->p + off, n))
			return 0;
		off += n;
	}
	return 1;
}

int
ho_subs_add(struct outbuf *b, const char *channel, uint64_t last,
    const char *epoch)
{
	size_t n = strlen(channel), e = strlen(epoch), len = b->len;

	if (n == 0 || n > WSP_BUS_CHANNEL_MAX ||
	    !ho_valid_epoch((const uint8_t *)epoch, e))
		return -1;
	if (ho_put_u8(b, n) == -1 || ho_put(b, channel, n) == -1 ||
	    ho_put_u64(b, last, 8) == -1 || ho_put_u8(b, e) == -1 ||
	    ho_put(b, epoch, e) == -1) {
		b->len = len; /* all of it or nothing */
		return -1;
	}
	return 0;
}

int
ho_subs_next(const struct ho_bytes *s, size_t *off,
    char name[WSP_BUS_CHANNEL_MAX + 1], uint64_t *last,
    char epoch[WSP_BUS_EPOCH_MAX + 1])
{
	struct le_rd r;
	size_t n;

	if (s->p == NULL || *off >= s->n)
		return 0;
	n = s->p[(*off)++];
	memcpy(name, s->p + *off, n);
	name[n] = '\0';
	*off += n;
	r.p = s->p + *off;
	r.n = 8;
	r.why = NULL;
	*last = le_get(&r, 8);
	*off += 8;
	n = s->p[(*off)++];
	memcpy(epoch, s->p + *off, n);
	epoch[n] = '\0';
	*off += n;
	return 1;
}

/* What the codec could never be in: a stranger's state, refused before
 * it reaches ws_decode(). */
static const char *
ho_check_decoder(const struct ho_conn *h)
{
	const struct ws_decoder *d = &h->dec;
	int control = d->opcode >= WS_OP_CLOSE;

	if (d->hlen > WS_MAX_HEADER || d->mpos > 3 || d->fin > 1 ||
	    d->in_payload > 1 || d->rsv1_ok > 1 || d->msg_compressed > 1)
		return "bad codec state";
	if (d->opcode != WS_OP_CONT && d->opcode != WS_OP_TEXT &&
	    d->opcode != WS_OP_BINARY && d->opcode != WS_OP_CLOSE &&
	    d->opcode != WS_OP_PING && d->opcode != WS_OP_PONG)
		return "bad codec opcode";
	if (d->msg_opcode != 0 && d->msg_opcode != WS_OP_TEXT &&
	    d->msg_opcode != WS_OP_BINARY)
		return "bad codec message opcode";
	if (d->failed != 0)
		return "codec in error"; /* ws_codec.c's error table index */
	if (d->max_message > 0 && d->msg_len > d->max_message)
		return "codec message past its limit";
	if (control && d->in_payload &&
	    d->remaining + h->ctl.n > WS_MAX_CONTROL)
		return "control frame too long";
	if (!d->in_payload && d->remaining != 0)
		return "bad codec remaining";
	if (h->ctl.p != NULL && (!control || !d->in_payload ||
	    h->ctl.n == 0 || h->ctl.n > WS_MAX_CONTROL))
		return "bad split control frame";
	return NULL;
}

int
ho_conn_decode(const uint8_t *p, size_t n, size_t *used_r,
    struct ho_conn *h, const char **why_r)
{
	struct le_rd r = { p, n, NULL }, rec;
	struct ws_decoder *d = &h->dec;
	struct ho_bytes ip;
	uint32_t len;
	const char *why;

	memset(h, 0, sizeof(*h));
	len = ho_get_u32(&r);
	if (r.why == NULL && len > r.n)
		le_fail(&r, "record longer than its frame");
	if (r.why != NULL) {
		*why_r = r.why;
		return -1;
	}
	rec.p = r.p;
	rec.n = len;
	rec.why = NULL;
	h->state = ho_get_u8(&rec);
	ho_get_raw(&rec, h->id, 32);
	h->id[32] = '\0';
	ho_get_bytes(&rec, &ip, sizeof(h->ip) - 1, 1, "bad address");
	if (rec.why == NULL) {
		if (ip.p == NULL || !ho_valid_ip((const char *)ip.p, ip.n))
			le_fail(&rec, "bad address");
		else {
			memcpy(h->ip, ip.p, ip.n);
			h->ip[ip.n] = '\0';
		}
	}
	h->port = ho_get_u16(&rec);
	ho_get_bytes(&rec, &h->user_agent, HO_MAX_UA, 1, "bad user agent");
	ho_get_bytes(&rec, &h->origin, HO_MAX_STR, 1, "bad origin");
	ho_get_bytes(&rec, &h->path, HO_MAX_STR, 1, "bad path");
	ho_get_bytes(&rec, &h->subprotocol, HO_MAX_STR, 1, "bad subprotocol");
	ho_get_bytes(&rec, &h->close_reason, HO_MAX_REASON, 1,
	    "bad close reason");
	h->close_code = ho_get_u16(&rec);
	h->connected_at_ms = (int64_t)le_get(&rec, 8);
	h->last_activity_ms = (int64_t)le_get(&rec, 8);
	h->msgs_in = le_get(&rec, 8);
	h->msgs_out = le_get(&rec, 8);
	h->bytes_in = le_get(&rec, 8);
	h->bytes_out = le_get(&rec, 8);
	h->last_activity = le_get(&rec, 8);
	h->opened_mono = le_get(&rec, 8);
	h->ping_sent = le_get(&rec, 8);
	h->pings_missed = ho_get_u32(&rec);
	d->max_message = le_get(&rec, 8);
	d->rsv1_ok = ho_get_u8(&rec);
	ho_get_raw(&rec, d->hdr, WS_MAX_HEADER);
	d->hlen = ho_get_u8(&rec);
	d->opcode = ho_get_u8(&rec);
	d->fin = ho_get_u8(&rec);
	d->in_payload = ho_get_u8(&rec);
	ho_get_raw(&rec, d->mask, 4);
	d->mpos = ho_get_u8(&rec);
	d->msg_opcode = ho_get_u8(&rec);
	d->msg_compressed = ho_get_u8(&rec);
	d->failed = ho_get_u8(&rec);
	d->remaining = le_get(&rec, 8);
	d->msg_len = le_get(&rec, 8);
	d->utf8 = ho_get_u32(&rec);
	ho_get_bytes(&rec, &h->ctl, WS_MAX_CONTROL, 0, "bad control frame");
	d->ctl_len = (uint8_t)h->ctl.n;
	h->msg_open = ho_get_u8(&rec);
	h->msg_opcode = ho_get_u8(&rec);
	ho_get_bytes(&rec, &h->msg, 0, 0, "bad message");
	ho_get_bytes(&rec, &h->out, 0, 0, "bad output");
	ho_get_bytes(&rec, &h->attrs, 0, 1, "bad attributes");
	ho_get_bytes(&rec, &h->subs, HO_MAX_SUBS * HO_SUB_MAX, 0,
	    "bad bus subscriptions");
	ho_get_bytes(&rec, &h->head, HO_MAX_HEAD, 0, "bad request head");
	h->has_zs = ho_get_u8(&rec);
	if (h->has_zs == 1) {
		h->zp.server_no_takeover = ho_get_u8(&rec);
		h->zp.client_no_takeover = ho_get_u8(&rec);
		h->zp.server_wbits = ho_get_u8(&rec);
		h->zp.client_wbits = ho_get_u8(&rec);
		h->zp.answer_server_wbits = ho_get_u8(&rec);
		h->zp.answer_client_wbits = ho_get_u8(&rec);
		h->z_level = ho_get_u8(&rec);
		h->z_mem_level = ho_get_u8(&rec);
		h->z_threshold = le_get(&rec, 8);
	}
	if (rec.why == NULL && rec.n != 0)
		le_fail(&rec, "record longer than its fields");
	if (rec.why != NULL) {
		*why_r = rec.why;
		return -1;
	}
	/* the meaning, once the syntax held */
	why = NULL;
	if (h->state != HO_STATE_OPEN && h->state != HO_STATE_CLOSING &&
	    h->state != HO_STATE_HANDSHAKE)
		why = "bad connection state";
	else if ((h->head.p != NULL && h->state != HO_STATE_HANDSHAKE) ||
	    (h->state == HO_STATE_HANDSHAKE && (h->has_zs || h->msg_open ||
	    h->out.n > 0 || h->attrs.p != NULL || h->subs.p != NULL)))
		why = "bad handshake state";
	else if (!ho_valid_subs(&h->subs))
		why = "bad bus subscriptions";
	else if (!ho_valid_id(h->id))
		why = "bad connection id";
	else if (h->path.p == NULL)
		why = "no path";
	else if (h->has_zs > 1)
		why = "bad deflate flag";
	else if (h->has_zs && (h->zp.server_no_takeover > 1 ||
	    h->zp.client_no_takeover > 1 || h->zp.server_wbits < 8 ||
	    h->zp.server_wbits > 15 || h->zp.client_wbits < 8 ||
	    h->zp.client_wbits > 15 || h->zp.answer_server_wbits > 15 ||
	    h->zp.answer_client_wbits > 15 || h->z_level < 1 ||
	    h->z_level > 9 || h->z_mem_level < 1 || h->z_mem_level > 9))
		why = "bad deflate parameters";
	else if (h->msg_open > 1 || (h->msg_open && d->msg_opcode == 0) ||
	    h->msg_opcode > WS_OP_BINARY || (!h->msg_open && h->msg.n > 0))
		why = "bad message state";
	else if (d->max_message > 0 && h->msg.n > d->max_message)
		why = "message past its limit";
	else
		why = ho_check_decoder(h);
	if (why != NULL) {
		*why_r = why;
		return -1;
	}
	*used_r = n - r.n + len;
	return 0;
}

/* Server counters: a count and that many values, so a build that knows
 * fewer reads what it knows. */

int
ho_counters_encode(struct outbuf *b, const uint64_t *v, size_t n)
{
	size_t i;

	if (ho_put_u32(b, n) == -1)
		return -1;
	for (i = 0; i < n; i++)
		if (ho_put_u64(b, v[i], 8) == -1)
			return -1;
	return 0;
}

int
ho_counters_decode(const uint8_t *p, size_t n, uint64_t *v, size_t max,
    const char **why_r)
{
	struct le_rd r = { p, n, NULL };
	uint32_t count, i;

	memset(v, 0, max * sizeof(*v));
	count = ho_get_u32(&r);
	if (r.why == NULL && (count > r.n / 8 || r.n != (size_t)count * 8))
		le_fail(&r, "bad counter list");
	for (i = 0; i < count && r.why == NULL; i++) {
		uint64_t x = le_get(&r, 8);

		if (i < max)
			v[i] = x;
	}
	if (r.why != NULL) {
		*why_r = r.why;
		return -1;
	}
	return 0;
}
