/*
 * fuzz_bus_frame.c: the frames between a worker and its master's bus
 * store (core/bus_frame.c).
 *
 * The input is a byte stream as a socket would deliver it: frames are cut
 * from it the way bus_local.c does (the u32 prefix, then that many bytes).
 * Oracles:
 *
 *  1. bus_frame_length accepts only lengths the decoder may be given;
 *  2. a decoded frame has a known type, C strings within their limits
 *     without NUL, and a payload inside the input;
 *  3. encoding a decoded frame again gives back the very same bytes
 *     (the layout has one spelling), and decoding that gives the same
 *     frame;
 *  4. the input is not written to, nor read past (an exact-size copy).
 */
#include "wsplugd.h"
#include "fuzz.h"

static void
check_frame(const struct bus_frame *f, const uint8_t *p, size_t n)
{
	uint8_t head[BUS_FRAME_HEAD_MAX];
	struct bus_frame g;
	const char *why = NULL;
	uint8_t *again;
	size_t hn;

	CHECK(f->type > 0 && f->type < BF_MAX, "type %u", f->type);
	CHECK(strlen(f->channel) <= WSP_BUS_CHANNEL_MAX, "channel too long");
	CHECK(strlen(f->conn) <= BUS_CONN_ID_MAX, "conn too long");
	CHECK(strlen(f->epoch) <= WSP_BUS_EPOCH_MAX, "epoch too long");
	CHECK(f->data >= (const char *)p && f->data + f->len ==
	    (const char *)p + n, "payload outside the frame");
	hn = bus_frame_encode_head(f, head);
	CHECK(hn - BUS_FRAME_PREFIX + f->len == n, "length %zu vs %zu",
	    hn - BUS_FRAME_PREFIX + f->len, n);
	CHECK(memcmp(head + BUS_FRAME_PREFIX, p, hn - BUS_FRAME_PREFIX) == 0,
	    "head encodes differently");
	again = fuzz_dup(p, n);
	CHECK(bus_frame_decode(again, n, &g, &why) == 0, "redecode: %s", why);
	CHECK(g.type == f->type && g.flags == f->flags && g.id == f->id &&
	    g.n1 == f->n1 && g.n2 == f->n2 && g.len == f->len &&
	    strcmp(g.channel, f->channel) == 0 &&
	    strcmp(g.conn, f->conn) == 0 && strcmp(g.epoch, f->epoch) == 0,
	    "redecoded frame differs");
	free(again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = fuzz_dup(data, size), *orig = fuzz_dup(data, size);
	size_t off = 0;
	struct bus_frame f;
	const char *why;
	uint32_t n;

	while (size - off >= BUS_FRAME_PREFIX) {
		if (bus_frame_length(buf + off, &n) == -1)
			break;
		CHECK(n >= BUS_FRAME_FIXED + 3 && n <= BUS_FRAME_MAX,
		    "length %u accepted", n);
		if (size - off - BUS_FRAME_PREFIX < n)
			break;
		off += BUS_FRAME_PREFIX;
		why = NULL;
		if (bus_frame_decode(buf + off, n, &f, &why) == 0)
			check_frame(&f, buf + off, n);
		else
			CHECK(why != NULL, "a refusal without a reason");
		off += n;
	}
	CHECK(memcmp(buf, orig, size) == 0, "the input was written to");
	free(buf);
	free(orig);
	return 0;
}
