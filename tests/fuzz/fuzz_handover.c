/*
 * fuzz_handover.c: the hand-over's reader (core/handover_state.c) on
 * bytes from a stranger.
 *
 * The input is read three ways: as a frame header, as a run of listener
 * entries, and as a run of connection records, each exactly as long as the
 * input (an exact-size copy, so ASan reports a read one byte past it).
 *
 * Oracles:
 *  1. no crash, leak or read past the end, whatever the bytes;
 *  2. a record accepted obeys what the reader promises handover.c: a
 *     32-hex-digit id, a path, byte strings inside the input, a control
 *     frame's body and rest within 125 bytes, a message within its limit;
 *  3. round trip: a record accepted, written again, is read back to the
 *     same bytes (the writer and the reader agree on every field);
 *  4. a frame header accepted has a known type and a bounded length, and
 *     one written by ho_frame_header for the input as payload verifies;
 *  5. the bus channels of a record accepted walk (ho_subs_next) to names
 *     bus.c takes and epochs of letters and digits, and written again
 *     with ho_subs_add give the same bytes.
 */
#include <ctype.h>
#include <stdint.h>

#include "wsplugd.h"
#include "fuzz.h"

static int
inside(const struct ho_bytes *b, const uint8_t *p, size_t n)
{
	return b->p == NULL || (b->p >= p && b->n <= n &&
	    b->p + b->n <= p + n);
}

static void
check_subs(const struct ho_bytes *s)
{
	char name[WSP_BUS_CHANNEL_MAX + 1], epoch[WSP_BUS_EPOCH_MAX + 1];
	struct outbuf b = { NULL, 0, 0 };
	uint64_t last;
	size_t off = 0, count = 0, i;

	while (ho_subs_next(s, &off, name, &last, epoch)) {
		CHECK(off <= s->n, "walked past the list: %zu of %zu", off,
		    s->n);
		CHECK(++count <= HO_MAX_SUBS, "more than HO_MAX_SUBS");
		/* what bus.c's bus_channel_valid takes */
		CHECK(name[0] != '\0' && utf8_validate(UTF8_ACCEPT,
		    (const uint8_t *)name, strlen(name)) == UTF8_ACCEPT,
		    "a channel bus.c refuses");
		for (i = 0; name[i] != '\0'; i++)
			CHECK((unsigned char)name[i] >= 0x20 && name[i] != 0x7f,
			    "channel character %d", name[i]);
		for (i = 0; epoch[i] != '\0'; i++)
			CHECK(isalnum((unsigned char)epoch[i]),
			    "epoch character %d", epoch[i]);
		CHECK(ho_subs_add(&b, name, last, epoch) == 0,
		    "cannot write an entry read");
	}
	CHECK(off == (s->p == NULL ? 0 : s->n), "the walk stopped at %zu of "
	    "%zu", off, s->n);
	CHECK(b.len == (s->p == NULL ? 0 : s->n) &&
	    (b.len == 0 || memcmp(b.p, s->p, b.len) == 0),
	    "the channels written again differ");
	free(b.p);
}

static void
check_record(const struct ho_conn *h, const uint8_t *p, size_t n)
{
	struct outbuf b = { NULL, 0, 0 };
	struct ho_conn again;
	const char *why = NULL;
	size_t used = 0, i;

	CHECK(strlen(h->id) == 32, "id of %zu characters", strlen(h->id));
	for (i = 0; i < 32; i++)
		CHECK(strchr("0123456789abcdef", h->id[i]) != NULL,
		    "id character %d", h->id[i]);
	CHECK(h->path.p != NULL, "no path");
	CHECK(inside(&h->user_agent, p, n) && inside(&h->origin, p, n) &&
	    inside(&h->path, p, n) && inside(&h->subprotocol, p, n) &&
	    inside(&h->close_reason, p, n) && inside(&h->ctl, p, n) &&
	    inside(&h->msg, p, n) && inside(&h->out, p, n) &&
	    inside(&h->attrs, p, n) && inside(&h->subs, p, n),
	    "a byte string outside the input");
	check_subs(&h->subs);
	CHECK(h->dec.ctl == NULL, "a decoder buffer from nowhere");
	if (h->ctl.p != NULL)
		CHECK(h->ctl.n + h->dec.remaining <= WS_MAX_CONTROL,
		    "control frame of %zu + %llu bytes", h->ctl.n,
		    (unsigned long long)h->dec.remaining);
	if (h->dec.max_message > 0)
		CHECK(h->msg.n <= h->dec.max_message, "message past its limit");
	CHECK(h->dec.hlen <= WS_MAX_HEADER && h->dec.mpos < 4,
	    "codec state out of range");

	CHECK(ho_conn_encode(&b, h) == 0, "cannot write an accepted record");
	CHECK(ho_conn_decode((const uint8_t *)b.p, b.len, &used, &again,
	    &why) == 0, "the record written again is refused: %s", why);
	CHECK(used == b.len, "read %zu of %zu bytes", used, b.len);
	{
		struct outbuf c = { NULL, 0, 0 };

		CHECK(ho_conn_encode(&c, &again) == 0, "third write failed");
		CHECK(c.len == b.len && memcmp(c.p, b.p, b.len) == 0,
		    "the round trip changed the record");
		free(c.p);
	}
	free(b.p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = fuzz_dup(data, size);
	struct ho_frame f;
	struct ho_listen l;
	struct ho_conn h;
	const char *why = NULL;
	size_t off, used;

	/* 4: frames */
	if (size >= HO_HDR_LEN && ho_frame_parse(p, &f, &why) == 0) {
		CHECK(f.type >= 1 && f.type <= HO_T_LAST, "type %u", f.type);
		CHECK(f.len <= HO_MAX_FRAME, "length %u", f.len);
	}
	{
		uint8_t hdr[HO_HDR_LEN];

		ho_frame_header(hdr, HO_T_CONNS, p, size);
		CHECK(ho_frame_parse(hdr, &f, &why) == 0, "own header refused");
		CHECK(f.len == size && ho_frame_verify(&f, p) == 0,
		    "own CRC refused");
	}

	/* 1: listener entries until one is refused */
	for (off = 0; off < size; off += used) {
		if (ho_listen_decode(p + off, size - off, &used, &l,
		    &why) == -1)
			break;
		CHECK(used > 0 && used <= size - off, "used %zu", used);
		CHECK(l.conf_len <= sizeof(l.conf), "conf_len %u", l.conf_len);
	}

	/* 1-3: records until one is refused */
	for (off = 0; off < size; off += used) {
		if (ho_conn_decode(p + off, size - off, &used, &h, &why) == -1)
			break;
		CHECK(used > 4 && used <= size - off, "used %zu", used);
		check_record(&h, p + off, size - off);
	}

	/* counters: any bytes, no crash */
	{
		uint64_t v[8];

		ho_counters_decode(p, size, v, 8, &why);
	}
	free(p);
	return 0;
}
