/*
 * fuzz_inflate.c: permessage-deflate's inflate and compress paths
 * (core/zstream.c), with bounded output.
 *
 * The first bytes choose the message limit (1 byte to 64 KiB), text or
 * binary, context takeover or not, and the split; the rest is used twice:
 *  A. as a compressed message from a client, fed to zstream_inflate() in
 *     random pieces.  Oracles: the result is 0, 1007 or 1009; the message
 *     buffer never grows past the limit; on 0 the output is exactly what
 *     zlib itself inflates from the same bytes (a fresh raw stream, the
 *     RFC 7692 tail appended, stopping at the end of the deflate stream),
 *     and text is valid UTF-8; on 1009 zlib inflates more than the limit.
 *  B. as the plain text of a message: compressed by zlib as a client
 *     would, inflated by zstream_inflate() in random pieces: the same
 *     bytes come out, or 1009 exactly when they exceed the limit, or 1007
 *     exactly when they are text and not valid UTF-8.  Then compressed by
 *     zstream_compress() and inflated back by zlib: the same bytes.
 * Streams are real zlib streams, so ASan and LeakSanitizer see the pool,
 * the lazily made streams and the counting allocator; at the end every
 * connection is freed and zlib must hold no memory.
 */
#include <zlib.h>

#include "wsplugd.h"
#include "fuzz.h"

#define OUT_MAX (64 * 1024)

static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };

/* zlib's own verdict: the output of a fresh raw inflate of in + tail, up
 * to cap + 1 bytes; -1 on a data error. */
static long
oracle_inflate(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	z_stream s;
	long got;
	int r;

	memset(&s, 0, sizeof(s));
	if (inflateInit2(&s, -15) != Z_OK)
		abort();
	s.next_out = out;
	s.avail_out = (uInt)cap + 1;
	s.next_in = (Bytef *)(uintptr_t)in;
	s.avail_in = (uInt)n;
	r = inflate(&s, Z_SYNC_FLUSH);
	if (r == Z_OK || r == Z_BUF_ERROR) {
		s.next_in = (Bytef *)(uintptr_t)tail;
		s.avail_in = 4;
		r = inflate(&s, Z_SYNC_FLUSH);
	}
	got = (long)(cap + 1 - s.avail_out);
	inflateEnd(&s);
	if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END)
		return got > (long)cap ? got : -1;
	return got;
}

static int
feed(struct wsp_server *srv, struct zstream_conn *z, const uint8_t *in,
    size_t n, struct zstream_msg *m, uint32_t *seed)
{
	size_t off = 0, k;
	const char *why = NULL;
	uint8_t *piece;
	int code;

	do {
		k = n - off == 0 ? 0 : 1 + fuzz_rand(seed) % (n - off);
		piece = fuzz_dup(in + off, k);
		code = zstream_inflate(srv, z, piece, k, off + k == n, m, &why);
		free(piece);
		if (code != 0) {
			CHECK(why != NULL, "code %d without a reason", code);
			return code;
		}
		off += k;
	} while (off < n);
	return 0;
}

static struct zstream_conn *
accept_one(struct wsp_server *srv)
{
	static const char offer[] = "permessage-deflate";
	struct http_request req;
	struct zstream_conn *z;
	char ans[DEFLATE_ANSWER_MAX];

	memset(&req, 0, sizeof(req));
	req.extensions[0].p = offer;
	req.extensions[0].n = sizeof(offer) - 1;
	req.nextensions = 1;
	if (zstream_accept(srv, &req, &z, ans) != 0 || z == NULL)
		abort();
	return z;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t want[OUT_MAX + 2], wire[2 * OUT_MAX + 1024];
	struct wsp_server srv;
	struct wsp_config cfg;
	struct zstream_conn *z;
	struct zstream_msg m;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n, wlen;
	uint32_t seed;
	uint64_t max;
	int text, code, valid;
	long ref;
	const uint8_t *out;
	size_t olen;
	z_stream s;

	if (size < 4)
		return 0;
	max = 1 + (((size_t)data[0] << 8 | data[1]) % OUT_MAX);
	text = data[2] & 1;
	seed = (uint32_t)data[3] * 2654435761u;
	memset(&srv, 0, sizeof(srv));
	memset(&cfg, 0, sizeof(cfg));
	srv.cfg = &cfg;
	cfg.deflate_enabled = 1;
	cfg.deflate_server_wbits = 9 + (data[2] >> 1) % 7;
	cfg.deflate_client_wbits = 15;
	cfg.deflate_context_takeover = (data[2] >> 4) & 1;
	cfg.deflate_level = 1 + (data[2] >> 5) % 9;
	cfg.deflate_mem_level = 8;
	cfg.deflate_context_budget = 64 * MIB;
	data += 4;
	size -= 4;
	if (size > OUT_MAX)
		size = OUT_MAX;
	m.buf = &buf;
	m.len = &len;
	m.cap = &cap;
	m.max = max;
	m.text = text;

	/* A: the input as compressed bytes */
	z = accept_one(&srv);
	code = feed(&srv, z, data, size, &m, &seed);
	CHECK(code == 0 || code == 1007 || code == 1009, "code %d", code);
	CHECK(cap <= max, "buffer %zu over the limit %llu", cap,
	    (unsigned long long)max);
	ref = oracle_inflate(data, size, want, (size_t)max);
	if (code == 0) {
		CHECK(ref >= 0 && (size_t)ref == len &&
		    (len == 0 || memcmp(buf, want, len) == 0),
		    "inflated %zu bytes, zlib %ld", len, ref);
		CHECK(!text || utf8_validate(UTF8_ACCEPT, buf, len) ==
		    UTF8_ACCEPT, "invalid UTF-8 passed");
	} else if (code == 1009)
		CHECK(ref > (long)max, "1009 but zlib inflates %ld of %llu",
		    ref, (unsigned long long)max);
	zstream_conn_free(&srv, z);
	free(buf);
	buf = NULL;
	len = cap = 0;

	/* B: the input as the message */
	memset(&s, 0, sizeof(s));
	if (deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		abort();
	s.next_in = (Bytef *)(uintptr_t)data;
	s.avail_in = (uInt)size;
	s.next_out = wire;
	s.avail_out = sizeof(wire);
	CHECK(deflate(&s, Z_SYNC_FLUSH) == Z_OK && s.avail_out > 0,
	    "zlib deflate");
	wlen = sizeof(wire) - s.avail_out - 4;
	deflateEnd(&s);
	z = accept_one(&srv);
	code = feed(&srv, z, wire, wlen, &m, &seed);
	valid = !text || utf8_validate(UTF8_ACCEPT, data, size) == UTF8_ACCEPT;
	if (size > max)
		CHECK(code == 1009 || (code == 1007 && !valid),
		    "%zu bytes over %llu gave %d", size,
		    (unsigned long long)max, code);
	else if (!valid)
		CHECK(code == 1007, "invalid UTF-8 gave %d", code);
	else
		CHECK(code == 0 && len == size &&
		    (size == 0 || memcmp(buf, data, size) == 0),
		    "round trip: code %d, %zu of %zu bytes", code, len, size);
	free(buf);
	buf = NULL;
	len = cap = 0;

	/* and zstream_compress back through zlib, twice (the second time
	 * through the cache or the kept context) */
	for (n = 0; n < 2; n++) {
		CHECK(zstream_compress(&srv, z, data, size, &out, &olen) == 1,
		    "compress declined");
		if (z->p.server_no_takeover || n == 0) {
			ref = oracle_inflate(out, olen, want, OUT_MAX);
			CHECK(ref == (long)size && (size == 0 ||
			    memcmp(want, data, size) == 0),
			    "compress round trip: %ld of %zu", ref, size);
		}
	}
	zstream_conn_free(&srv, z);
	CHECK(zstream_stats(&srv)->zlib_bytes <= 16 * 1024 * 1024,
	    "pool holds %llu", (unsigned long long)
	    zstream_stats(&srv)->zlib_bytes);
	zstream_pool_free(&srv);
	return 0;
}
