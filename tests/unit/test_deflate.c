/*
 * test_deflate.c: permessage-deflate negotiation (deflate.c) for every
 * combination of offered parameters and server policy, the answer's text,
 * and the streams (zstream.c): round trips against zlib used directly,
 * context takeover, zip bombs, UTF-8, the pool, the compress-once cache and
 * the memory budget.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <zlib.h>

#include "wsplugd.h"

static int
nego(const char *hdr, const struct deflate_policy *pol,
    struct deflate_params *out)
{
	struct http_str h = { hdr, strlen(hdr) };

	return deflate_negotiate(&h, 1, pol, out);
}

static const char *
answer(const char *hdr, const struct deflate_policy *pol)
{
	static char buf[DEFLATE_ANSWER_MAX];
	struct deflate_params p;

	if (!nego(hdr, pol, &p))
		return NULL;
	CU_ASSERT(deflate_answer(&p, buf, sizeof(buf)) > 0);
	return buf;
}

static const struct deflate_policy full = { 15, 15, 1 };

#define ANSWER_IS(hdr, pol, want)                                             \
	do {                                                                  \
		const char *got_ = answer((hdr), (pol));                     \
		CU_ASSERT_PTR_NOT_NULL(got_);                                 \
		if (got_ != NULL && strcmp(got_, (want)) != 0) {              \
			fprintf(stderr, "\n%s -> %s, want %s\n", (hdr), got_, \
			    (want));                                          \
			CU_FAIL("answer");                                    \
		}                                                             \
	} while (0)

static void
test_answers_by_example(void)
{
	struct deflate_policy small = { 10, 9, 1 }, none = { 15, 15, 0 };

	ANSWER_IS("permessage-deflate", &full, "permessage-deflate");
	/* Chrome and Firefox */
	ANSWER_IS("permessage-deflate; client_max_window_bits", &full,
	    "permessage-deflate");
	ANSWER_IS("permessage-deflate; client_max_window_bits", &small,
	    "permessage-deflate; server_max_window_bits=10; "
	    "client_max_window_bits=9");
	/* not offered: the answer must not limit the client */
	ANSWER_IS("permessage-deflate", &small,
	    "permessage-deflate; server_max_window_bits=10");
	ANSWER_IS("permessage-deflate; server_max_window_bits=12", &full,
	    "permessage-deflate; server_max_window_bits=12");
	ANSWER_IS("permessage-deflate; server_max_window_bits=12", &small,
	    "permessage-deflate; server_max_window_bits=10");
	ANSWER_IS("permessage-deflate; client_max_window_bits=10", &full,
	    "permessage-deflate; client_max_window_bits=10");
	ANSWER_IS("permessage-deflate; server_no_context_takeover", &full,
	    "permessage-deflate; server_no_context_takeover");
	ANSWER_IS("permessage-deflate; client_no_context_takeover", &full,
	    "permessage-deflate; client_no_context_takeover");
	ANSWER_IS("permessage-deflate", &none,
	    "permessage-deflate; server_no_context_takeover; "
	    "client_no_context_takeover");
	/* case-insensitive names, whitespace, a quoted value */
	ANSWER_IS("PerMessage-Deflate ;\tserver_max_window_bits = \"9\"", &full,
	    "permessage-deflate; server_max_window_bits=9");
	ANSWER_IS("permessage-deflate; client_max_window_bits=\"1\\1\"", &full,
	    "permessage-deflate; client_max_window_bits=11");
}

static void
test_several_offers(void)
{
	struct deflate_params p;
	struct http_str two[2];

	/* the first acceptable offer wins; bad ones are passed over */
	ANSWER_IS("permessage-deflate; server_max_window_bits=8, "
	    "permessage-deflate; server_max_window_bits=11", &full,
	    "permessage-deflate; server_max_window_bits=11");
	ANSWER_IS("x-webkit-deflate-frame, permessage-deflate; foo=1, "
	    "permessage-deflate; client_no_context_takeover, "
	    "permessage-deflate", &full,
	    "permessage-deflate; client_no_context_takeover");
	ANSWER_IS(", ,permessage-deflate,,", &full, "permessage-deflate");
	/* other extensions' parameters may be anything well-formed */
	ANSWER_IS("foo; a=\"b c\"; d, permessage-deflate", &full,
	    "permessage-deflate");
	/* across headers, in order */
	two[0].p = "permessage-deflate; server_max_window_bits=16";
	two[0].n = strlen(two[0].p);
	two[1].p = "permessage-deflate; server_no_context_takeover";
	two[1].n = strlen(two[1].p);
	CU_ASSERT_EQUAL(deflate_negotiate(two, 2, &full, &p), 1);
	CU_ASSERT_EQUAL(p.server_no_takeover, 1);
	CU_ASSERT_EQUAL(deflate_negotiate(two, 1, &full, &p), 0);
	CU_ASSERT_EQUAL(deflate_negotiate(two, 0, &full, &p), 0);
}

static void
test_declined_offers(void)
{
	static const char *const bad[] = {
		"permessage-deflate; server_max_window_bits",
		"permessage-deflate; server_max_window_bits=7",
		"permessage-deflate; server_max_window_bits=8", /* zlib */
		"permessage-deflate; server_max_window_bits=16",
		"permessage-deflate; server_max_window_bits=015",
		"permessage-deflate; server_max_window_bits=1a",
		"permessage-deflate; server_max_window_bits=\"\"",
		"permessage-deflate; client_max_window_bits=7",
		"permessage-deflate; client_max_window_bits=99999999999999999",
		"permessage-deflate; client_max_window_bits=\"1 5\"",
		"permessage-deflate; server_no_context_takeover=1",
		"permessage-deflate; client_no_context_takeover=\"\"",
		"permessage-deflate; server_no_context_takeover; "
		    "server_no_context_takeover",
		"permessage-deflate; client_max_window_bits; "
		    "client_max_window_bits=9",
		"permessage-deflate; server_max_window_bits=9; "
		    "server_max_window_bits=9",
		"permessage-deflate; mystery",
		"x-webkit-deflate-frame",
		"",
		/* syntax errors: the whole header is declined */
		"permessage-deflate; server_no_context_takeover,"
		    " permessage-deflate; ;",
		"permessage-deflate;",
		"permessage-deflate; =1",
		"permessage-deflate; a=",
		"permessage-deflate; a=\"unterminated",
		"permessage-deflate; a=\"x\\",
		"permessage-deflate a",
		"permessage-deflate, @",
		"permessage-deflate; a=\"\x01\"",
		"\"permessage-deflate\"",
		"permessage-deflate, foo; bar=\"x\" y",
	};
	struct deflate_params p;
	size_t i;

	for (i = 0; i < nitems(bad); i++) {
		if (nego(bad[i], &full, &p) != 0) {
			fprintf(stderr, "\naccepted: %s\n", bad[i]);
			CU_FAIL("a bad offer was accepted");
		}
	}
}

/*
 * Every combination of the four parameters (absent, each flag, every
 * window value, client_max_window_bits without a value) against policies
 * with and without context takeover and with small and full windows,
 * checked against RFC 7692 7.1 written out independently, then the answer
 * read back: it must say exactly what was agreed.
 */
static void
check_combination(int snct, int cnct, int smwb, int cmwb,
    const struct deflate_policy *pol)
{
	char offer[256], buf[DEFLATE_ANSWER_MAX], want[DEFLATE_ANSWER_MAX];
	struct deflate_params p;
	int n, ok, s, c, ans_s, ans_c;

	n = snprintf(offer, sizeof(offer), "permessage-deflate");
	if (smwb)
		n += snprintf(offer + n, sizeof(offer) - (size_t)n,
		    "; server_max_window_bits=%d", smwb);
	if (cmwb)
		n += snprintf(offer + n, sizeof(offer) - (size_t)n,
		    cmwb == 1 ? "; client_max_window_bits" :
		    "; client_max_window_bits=%d", cmwb);
	if (cnct)
		n += snprintf(offer + n, sizeof(offer) - (size_t)n,
		    "; client_no_context_takeover");
	if (snct)
		snprintf(offer + n, sizeof(offer) - (size_t)n,
		    "; server_no_context_takeover");
	ok = nego(offer, pol, &p);
	if (smwb == 8) {
		CU_ASSERT_EQUAL(ok, 0);
		return;
	}
	CU_ASSERT_EQUAL_FATAL(ok, 1);
	s = smwb && smwb < pol->server_wbits ? smwb : pol->server_wbits;
	c = cmwb > 1 && cmwb < pol->client_wbits ? cmwb : pol->client_wbits;
	if (!cmwb)
		c = 15; /* the client may use any window */
	ans_s = smwb != 0 || s < 15;
	ans_c = cmwb != 0 && (c < 15 || cmwb > 1);
	CU_ASSERT_EQUAL(p.server_wbits, s);
	CU_ASSERT_EQUAL(p.client_wbits, c);
	CU_ASSERT_EQUAL(p.server_no_takeover, snct || !pol->context_takeover);
	CU_ASSERT_EQUAL(p.client_no_takeover, cnct || !pol->context_takeover);
	n = snprintf(want, sizeof(want), "permessage-deflate%s%s",
	    p.server_no_takeover ? "; server_no_context_takeover" : "",
	    p.client_no_takeover ? "; client_no_context_takeover" : "");
	if (ans_s)
		n += snprintf(want + n, sizeof(want) - (size_t)n,
		    "; server_max_window_bits=%d", s);
	if (ans_c)
		snprintf(want + n, sizeof(want) - (size_t)n,
		    "; client_max_window_bits=%d", c);
	CU_ASSERT(deflate_answer(&p, buf, sizeof(buf)) > 0);
	if (strcmp(buf, want) != 0) {
		fprintf(stderr, "\n%s -> %s, want %s\n", offer, buf, want);
		CU_FAIL("answer");
	}
	/* The answer, offered back, is accepted as is: what a client that
	 * checks the response would parse. */
	{
		struct deflate_params q;

		CU_ASSERT_EQUAL(nego(buf, pol, &q), 1);
	}
}

static void
test_every_combination(void)
{
	static const struct deflate_policy pols[] = {
		{ 15, 15, 1 }, { 15, 15, 0 }, { 12, 11, 1 }, { 9, 8, 0 },
		{ 10, 15, 1 }, { 15, 8, 1 },
	};
	int snct, cnct, smwb, cmwb;
	size_t i, n = 0;

	for (i = 0; i < nitems(pols); i++)
		for (snct = 0; snct < 2; snct++)
			for (cnct = 0; cnct < 2; cnct++)
				for (smwb = 7; smwb <= 15; smwb++)
					for (cmwb = 0; cmwb <= 15; cmwb++) {
						if (cmwb >= 2 && cmwb < 8)
							continue;
						check_combination(snct, cnct,
						    smwb == 7 ? 0 : smwb, cmwb,
						    &pols[i]);
						n++;
					}
	CU_ASSERT_EQUAL(n, 6 * 2 * 2 * 9 * 10);
}

static void
test_answer_too_small(void)
{
	struct deflate_params p = { 1, 1, 9, 9, 1, 1 };
	char buf[DEFLATE_ANSWER_MAX];
	size_t n;

	n = deflate_answer(&p, buf, sizeof(buf));
	CU_ASSERT_EQUAL(n, strlen("permessage-deflate; "
	    "server_no_context_takeover; client_no_context_takeover; "
	    "server_max_window_bits=9; client_max_window_bits=9"));
	CU_ASSERT_EQUAL(deflate_answer(&p, buf, n), 0);
	CU_ASSERT_EQUAL(deflate_answer(&p, buf, n + 1), n);
}

/*
 * The streams.
 */

struct fixture {
	struct wsp_server srv;
	struct wsp_config cfg;
};

static void
fx_init(struct fixture *f, int takeover, uint64_t budget)
{
	memset(f, 0, sizeof(*f));
	f->srv.cfg = &f->cfg;
	f->cfg.deflate_enabled = 1;
	f->cfg.deflate_server_wbits = 15;
	f->cfg.deflate_client_wbits = 15;
	f->cfg.deflate_context_takeover = (uint64_t)takeover;
	f->cfg.deflate_level = 6;
	f->cfg.deflate_mem_level = 8;
	f->cfg.deflate_threshold = 0;
	f->cfg.deflate_context_budget = budget;
}

static struct zstream_conn *
fx_accept(struct fixture *f, const char *offer, char *ans)
{
	struct http_request req;
	struct zstream_conn *z = NULL;
	char buf[DEFLATE_ANSWER_MAX];

	memset(&req, 0, sizeof(req));
	req.extensions[0].p = offer;
	req.extensions[0].n = strlen(offer);
	req.nextensions = 1;
	CU_ASSERT_EQUAL(zstream_accept(&f->srv, &req, &z, buf), 0);
	if (ans != NULL && z != NULL)
		strcpy(ans, buf);
	return z;
}

/* The peer's side: raw deflate with a sync flush, tail removed. */
static size_t
peer_deflate(z_stream *s, const void *in, size_t n, uint8_t *out,
    size_t cap, int flush)
{
	s->next_in = (Bytef *)(uintptr_t)in;
	s->avail_in = (uInt)n;
	s->next_out = out;
	s->avail_out = (uInt)cap;
	CU_ASSERT_NOT_EQUAL(deflate(s, flush), Z_STREAM_ERROR);
	CU_ASSERT(s->avail_out > 0);
	n = cap - s->avail_out;
	if (flush == Z_SYNC_FLUSH) {
		CU_ASSERT(n >= 4 && memcmp(out + n - 4, "\0\0\xff\xff", 4) == 0);
		n -= 4;
	}
	return n;
}

/* The peer's inflate of what we sent. */
static size_t
peer_inflate(z_stream *s, const uint8_t *in, size_t n, uint8_t *out,
    size_t cap)
{
	static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
	size_t got;

	s->next_in = (Bytef *)(uintptr_t)in;
	s->avail_in = (uInt)n;
	s->next_out = out;
	s->avail_out = (uInt)cap;
	CU_ASSERT(inflate(s, Z_SYNC_FLUSH) >= 0);
	s->next_in = (Bytef *)(uintptr_t)tail;
	s->avail_in = 4;
	CU_ASSERT(inflate(s, Z_SYNC_FLUSH) >= 0);
	got = cap - s->avail_out;
	return got;
}

struct rx {
	uint8_t *buf;
	size_t len, cap;
	struct zstream_msg m;
};

static void
rx_init(struct rx *r, uint64_t max, int text)
{
	memset(r, 0, sizeof(*r));
	r->m.buf = &r->buf;
	r->m.len = &r->len;
	r->m.cap = &r->cap;
	r->m.max = max;
	r->m.text = text;
}

static void
rx_reset(struct rx *r)
{
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = 0;
}

/* Feed a compressed message in pieces of step bytes. */
static int
rx_feed(struct fixture *f, struct zstream_conn *z, struct rx *r,
    const uint8_t *in, size_t n, size_t step, const char **why)
{
	size_t off = 0, k;
	int code;

	do {
		k = n - off < step ? n - off : step;
		code = zstream_inflate(&f->srv, z, in + off, k, off + k == n, &r->m,
		    why);
		if (code != 0)
			return code;
		off += k;
	} while (off < n);
	return 0;
}

static const char json2k[] =
    "{\"type\":\"quote\",\"symbol\":\"ACME\",\"bid\":101.25,\"ask\":101.27,"
    "\"book\":[{\"p\":101.25,\"q\":300},{\"p\":101.24,\"q\":1200},"
    "{\"p\":101.23,\"q\":50}],\"venue\":\"XNAS\",\"seq\":1234567}";

static void
test_round_trip_takeover(void)
{
	struct fixture f;
	struct zstream_conn *z;
	z_stream peer_in, peer_out;
	uint8_t wire[4096], plain[4096];
	const uint8_t *out;
	size_t olen, n, first = 0, i;
	struct rx r;
	const char *why = NULL;
	char ans[DEFLATE_ANSWER_MAX];

	fx_init(&f, 1, 64 * MIB);
	z = fx_accept(&f, "permessage-deflate; client_max_window_bits", ans);
	CU_ASSERT_PTR_NOT_NULL_FATAL(z);
	CU_ASSERT_STRING_EQUAL(ans, "permessage-deflate");
	/* lazy: nothing allocated yet, but the full cost is reserved */
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->zlib_bytes, 0);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->full_conns, 1);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->full_bytes,
	    zstream_full_cost(&z->p, 8));

	memset(&peer_in, 0, sizeof(peer_in));
	memset(&peer_out, 0, sizeof(peer_out));
	CU_ASSERT_EQUAL(inflateInit2(&peer_in, -15), Z_OK);
	CU_ASSERT_EQUAL(deflateInit2(&peer_out, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	rx_init(&r, 1 * MIB, 1);
	for (i = 0; i < 3; i++) {
		/* ours to the peer; later messages shrink with the context */
		CU_ASSERT_EQUAL(zstream_compress(&f.srv, z, json2k,
		    sizeof(json2k) - 1, &out, &olen), 1);
		if (i == 0)
			first = olen;
		else
			CU_ASSERT(olen < first / 4);
		CU_ASSERT_EQUAL(peer_inflate(&peer_in, out, olen, plain,
		    sizeof(plain)), sizeof(json2k) - 1);
		CU_ASSERT(memcmp(plain, json2k, sizeof(json2k) - 1) == 0);
		/* the peer's to us, in pieces of 1, 7 and all */
		n = peer_deflate(&peer_out, json2k, sizeof(json2k) - 1, wire,
		    sizeof(wire), Z_SYNC_FLUSH);
		CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n,
		    i == 0 ? 1 : i == 1 ? 7 : n, &why), 0);
		CU_ASSERT_EQUAL(r.len, sizeof(json2k) - 1);
		CU_ASSERT(r.buf != NULL &&
		    memcmp(r.buf, json2k, sizeof(json2k) - 1) == 0);
		rx_reset(&r);
	}
	/* what was reserved covers what zlib really took */
	CU_ASSERT(zstream_stats(&f.srv)->zlib_bytes > 0);
	CU_ASSERT(zstream_stats(&f.srv)->zlib_bytes <=
	    zstream_full_cost(&z->p, 8));
	fprintf(stderr, "\nfull context: %llu bytes held, %llu reserved\n",
	    (unsigned long long)zstream_stats(&f.srv)->zlib_bytes,
	    (unsigned long long)zstream_full_cost(&z->p, 8));
	zstream_conn_free(&f.srv, z);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->zlib_bytes, 0);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->full_bytes, 0);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->conns, 0);
	inflateEnd(&peer_in);
	deflateEnd(&peer_out);
	zstream_pool_free(&f.srv);
}

static void
test_no_takeover_pool_and_cache(void)
{
	struct fixture f;
	struct zstream_conn *a, *b;
	const uint8_t *out;
	uint8_t first[4096], plain[4096], wire[4096];
	size_t olen, flen, n;
	z_stream peer_in, peer_out;
	struct rx r;
	const char *why;

	fx_init(&f, 0, 64 * MIB);
	a = fx_accept(&f, "permessage-deflate", NULL);
	b = fx_accept(&f, "permessage-deflate", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->full_conns, 0);
	CU_ASSERT_EQUAL(zstream_full_cost(&a->p, 8), 0);

	/* the same bytes to two connections: compressed once */
	CU_ASSERT_EQUAL(zstream_compress(&f.srv, a, json2k,
	    sizeof(json2k) - 1, &out, &olen), 1);
	memcpy(first, out, olen);
	flen = olen;
	CU_ASSERT_EQUAL(zstream_compress(&f.srv, b, json2k,
	    sizeof(json2k) - 1, &out, &olen), 1);
	CU_ASSERT_EQUAL(olen, flen);
	CU_ASSERT(memcmp(first, out, olen) == 0);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->compressed, 1);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->reused, 1);
	/* and again on a: no context, so the same bytes again */
	CU_ASSERT_EQUAL(zstream_compress(&f.srv, a, json2k,
	    sizeof(json2k) - 1, &out, &olen), 1);
	CU_ASSERT(olen == flen && memcmp(first, out, olen) == 0);
	/* one byte different: compressed anew, and correct */
	{
		char other[sizeof(json2k)];

		memcpy(other, json2k, sizeof(json2k));
		other[3] = 'T';
		CU_ASSERT_EQUAL(zstream_compress(&f.srv, a, other,
		    sizeof(other) - 1, &out, &olen), 1);
		CU_ASSERT_EQUAL(zstream_stats(&f.srv)->compressed, 2);
		memset(&peer_in, 0, sizeof(peer_in));
		CU_ASSERT_EQUAL(inflateInit2(&peer_in, -15), Z_OK);
		CU_ASSERT_EQUAL(peer_inflate(&peer_in, out, olen, plain,
		    sizeof(plain)), sizeof(other) - 1);
		CU_ASSERT(memcmp(plain, other, sizeof(other) - 1) == 0);
		inflateEnd(&peer_in);
	}

	/* inflaters are borrowed only while a message is open */
	memset(&peer_out, 0, sizeof(peer_out));
	CU_ASSERT_EQUAL(deflateInit2(&peer_out, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	n = peer_deflate(&peer_out, json2k, sizeof(json2k) - 1, wire,
	    sizeof(wire), Z_SYNC_FLUSH);
	rx_init(&r, 1 * MIB, 1);
	CU_ASSERT_EQUAL(zstream_inflate(&f.srv, a, wire, n / 2, 0, &r.m, &why),
	    0);
	CU_ASSERT_PTR_NOT_NULL(a->rx);
	CU_ASSERT_EQUAL(zstream_inflate(&f.srv, a, wire + n / 2, n - n / 2, 1,
	    &r.m, &why), 0);
	CU_ASSERT_PTR_NULL(a->rx);
	CU_ASSERT(r.len == sizeof(json2k) - 1 &&
	    memcmp(r.buf, json2k, r.len) == 0);
	rx_reset(&r);
	/* b's message reuses the inflater a returned */
	deflateReset(&peer_out);
	n = peer_deflate(&peer_out, "{}", 2, wire, sizeof(wire), Z_SYNC_FLUSH);
	CU_ASSERT_EQUAL(rx_feed(&f, b, &r, wire, n, n, &why), 0);
	CU_ASSERT(r.len == 2 && memcmp(r.buf, "{}", 2) == 0);
	rx_reset(&r);
	deflateEnd(&peer_out);
	/* a connection that ends mid-message gives its inflater back */
	CU_ASSERT_EQUAL(zstream_inflate(&f.srv, a, wire, 1, 0, &r.m, &why), 0);
	rx_reset(&r);
	zstream_conn_free(&f.srv, a);
	zstream_conn_free(&f.srv, b);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->conns, 0);
	zstream_pool_free(&f.srv);
}

static void
test_zip_bomb_stops_at_the_limit(void)
{
	struct fixture f;
	struct zstream_conn *z;
	z_stream peer;
	uint8_t *zeros, *wire;
	size_t n, cap = 64 * 1024;
	struct rx r;
	const char *why = NULL;

	fx_init(&f, 1, 64 * MIB);
	z = fx_accept(&f, "permessage-deflate", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(z);
	zeros = calloc(1, 16 * MIB);
	wire = malloc(cap);
	memset(&peer, 0, sizeof(peer));
	CU_ASSERT_EQUAL(deflateInit2(&peer, 9, Z_DEFLATED, -15, 9,
	    Z_DEFAULT_STRATEGY), Z_OK);
	n = peer_deflate(&peer, zeros, 16 * MIB, wire, cap, Z_SYNC_FLUSH);
	CU_ASSERT(n < 32 * 1024); /* 16 MiB in a few KiB */
	rx_init(&r, 1 * MIB, 0);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, 512, &why), 1009);
	CU_ASSERT_STRING_EQUAL(why, "message too big");
	CU_ASSERT(r.cap <= 1 * MIB);
	CU_ASSERT_EQUAL(r.len, 1 * MIB);
	rx_reset(&r);

	/* exactly at the limit is fine */
	zstream_conn_free(&f.srv, z);
	z = fx_accept(&f, "permessage-deflate", NULL);
	deflateReset(&peer);
	n = peer_deflate(&peer, zeros, 1 * MIB, wire, cap, Z_SYNC_FLUSH);
	rx_init(&r, 1 * MIB, 0);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, n, &why), 0);
	CU_ASSERT_EQUAL(r.len, 1 * MIB);
	rx_reset(&r);
	/* one more byte is not */
	zstream_conn_free(&f.srv, z);
	z = fx_accept(&f, "permessage-deflate", NULL);
	deflateReset(&peer);
	n = peer_deflate(&peer, zeros, 1 * MIB + 1, wire, cap, Z_SYNC_FLUSH);
	rx_init(&r, 1 * MIB, 0);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, n, &why), 1009);
	rx_reset(&r);
	zstream_conn_free(&f.srv, z);
	deflateEnd(&peer);
	free(zeros);
	free(wire);
	zstream_pool_free(&f.srv);
}

static void
test_bad_input(void)
{
	struct fixture f;
	struct zstream_conn *z;
	z_stream peer;
	uint8_t wire[256];
	size_t n;
	struct rx r;
	const char *why = NULL;
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x00 };

	fx_init(&f, 0, 64 * MIB);
	memset(&peer, 0, sizeof(peer));
	CU_ASSERT_EQUAL(deflateInit2(&peer, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);

	/* invalid UTF-8 inside, and cut short at the end */
	z = fx_accept(&f, "permessage-deflate", NULL);
	n = peer_deflate(&peer, "ok \xc0\xaf", 5, wire, sizeof(wire),
	    Z_SYNC_FLUSH);
	rx_init(&r, 1 * MIB, 1);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, 1, &why), 1007);
	rx_reset(&r);
	zstream_conn_free(&f.srv, z);
	z = fx_accept(&f, "permessage-deflate", NULL);
	deflateReset(&peer);
	n = peer_deflate(&peer, "\xe2\x82", 2, wire, sizeof(wire),
	    Z_SYNC_FLUSH);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, n, &why), 1007);
	rx_reset(&r);
	/* as binary, the same bytes are fine */
	zstream_conn_free(&f.srv, z);
	z = fx_accept(&f, "permessage-deflate", NULL);
	rx_init(&r, 1 * MIB, 0);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, n, &why), 0);
	CU_ASSERT_EQUAL(r.len, 2);
	rx_reset(&r);
	/* not deflate at all */
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, junk, sizeof(junk), 2, &why), 1007);
	CU_ASSERT_STRING_EQUAL(why, "invalid compressed data");
	rx_reset(&r);
	zstream_conn_free(&f.srv, z);

	/* BFINAL set (RFC 7692 7.2.3.4), then an empty message */
	z = fx_accept(&f, "permessage-deflate", NULL);
	deflateReset(&peer);
	n = peer_deflate(&peer, "final", 5, wire, sizeof(wire), Z_FINISH);
	rx_init(&r, 1 * MIB, 1);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, n, &why), 0);
	CU_ASSERT(r.len == 5 && memcmp(r.buf, "final", 5) == 0);
	rx_reset(&r);
	wire[0] = 0x00; /* RFC 7692 7.2.3.6: an empty message */
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, 1, 1, &why), 0);
	CU_ASSERT_EQUAL(r.len, 0);
	rx_reset(&r);
	/* nothing may follow the end of the deflate stream in a message */
	deflateReset(&peer);
	n = peer_deflate(&peer, "final", 5, wire, sizeof(wire), Z_FINISH);
	wire[n++] = 0x00;
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, n, &why), 1007);
	CU_ASSERT_STRING_EQUAL(why,
	    "data after the end of the compressed message");
	rx_reset(&r);
	zstream_conn_free(&f.srv, z);
	deflateEnd(&peer);
	zstream_pool_free(&f.srv);
}

static void
test_bfinal_keeps_the_context(void)
{
	struct fixture f;
	struct zstream_conn *z;
	z_stream peer;
	uint8_t wire[4096];
	size_t n;
	struct rx r;
	const char *why = NULL;

	fx_init(&f, 1, 64 * MIB);
	z = fx_accept(&f, "permessage-deflate", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(z);
	memset(&peer, 0, sizeof(peer));
	CU_ASSERT_EQUAL(deflateInit2(&peer, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	n = peer_deflate(&peer, json2k, sizeof(json2k) - 1, wire,
	    sizeof(wire), Z_FINISH);
	rx_init(&r, 1 * MIB, 1);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, 3, &why), 0);
	rx_reset(&r);
	/* a new deflate stream that refers back to the first message */
	deflateReset(&peer);
	CU_ASSERT_EQUAL(deflateSetDictionary(&peer, (const Bytef *)json2k,
	    sizeof(json2k) - 1), Z_OK);
	n = peer_deflate(&peer, json2k, sizeof(json2k) - 1, wire,
	    sizeof(wire), Z_SYNC_FLUSH);
	CU_ASSERT(n < 40);
	CU_ASSERT_EQUAL(rx_feed(&f, z, &r, wire, n, n, &why), 0);
	CU_ASSERT(r.len == sizeof(json2k) - 1 &&
	    memcmp(r.buf, json2k, r.len) == 0);
	rx_reset(&r);
	zstream_conn_free(&f.srv, z);
	deflateEnd(&peer);
	zstream_pool_free(&f.srv);
}

static void
test_budget_makes_answers_tight(void)
{
	struct fixture f;
	struct zstream_conn *z[3];
	struct deflate_params p = { 0, 0, 15, 15, 0, 0 };
	char ans[DEFLATE_ANSWER_MAX];
	uint64_t cost = zstream_full_cost(&p, 8);

	/* room for two full contexts */
	fx_init(&f, 1, 2 * cost + cost / 2);
	z[0] = fx_accept(&f, "permessage-deflate; client_max_window_bits", ans);
	CU_ASSERT_STRING_EQUAL(ans, "permessage-deflate");
	z[1] = fx_accept(&f, "permessage-deflate; client_max_window_bits", ans);
	CU_ASSERT_STRING_EQUAL(ans, "permessage-deflate");
	z[2] = fx_accept(&f, "permessage-deflate; client_max_window_bits", ans);
	CU_ASSERT_STRING_EQUAL(ans, "permessage-deflate; "
	    "server_no_context_takeover; client_no_context_takeover; "
	    "server_max_window_bits=10; client_max_window_bits=10");
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->full_conns, 2);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->full_bytes, 2 * cost);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->tight, 1);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->conns, 3);
	/* one leaves: the next gets a full context again */
	zstream_conn_free(&f.srv, z[0]);
	z[0] = fx_accept(&f, "permessage-deflate", ans);
	CU_ASSERT_STRING_EQUAL(ans, "permessage-deflate");
	zstream_conn_free(&f.srv, z[0]);
	zstream_conn_free(&f.srv, z[1]);
	zstream_conn_free(&f.srv, z[2]);
	/* a budget of 0: never a full context */
	f.cfg.deflate_context_budget = 0;
	z[0] = fx_accept(&f, "permessage-deflate", ans);
	CU_ASSERT_STRING_EQUAL(ans, "permessage-deflate; "
	    "server_no_context_takeover; client_no_context_takeover; "
	    "server_max_window_bits=10");
	zstream_conn_free(&f.srv, z[0]);
	/* disabled: no answer at all */
	f.cfg.deflate_enabled = 0;
	CU_ASSERT_PTR_NULL(fx_accept(&f, "permessage-deflate", ans));
	zstream_pool_free(&f.srv);
}

static void
test_threshold(void)
{
	struct fixture f;
	struct zstream_conn *z;
	const uint8_t *out;
	size_t olen;

	fx_init(&f, 0, 64 * MIB);
	f.cfg.deflate_threshold = 100;
	z = fx_accept(&f, "permessage-deflate", NULL);
	CU_ASSERT_EQUAL(zstream_compress(&f.srv, z, json2k, 99, &out, &olen),
	    0);
	CU_ASSERT_EQUAL(zstream_stats(&f.srv)->zlib_bytes, 0);
	CU_ASSERT_EQUAL(zstream_compress(&f.srv, z, json2k, 100, &out, &olen),
	    1);
	zstream_conn_free(&f.srv, z);
	/* threshold 0: even an empty message, as the single 0x00 byte */
	f.cfg.deflate_threshold = 0;
	z = fx_accept(&f, "permessage-deflate", NULL);
	CU_ASSERT_EQUAL(zstream_compress(&f.srv, z, "", 0, &out, &olen), 1);
	CU_ASSERT(olen == 1 && out[0] == 0x00);
	zstream_conn_free(&f.srv, z);
	zstream_pool_free(&f.srv);
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("deflate", NULL, NULL);
	if (s == NULL ||
	    CU_add_test(s, "answers by example", test_answers_by_example) ==
	    NULL ||
	    CU_add_test(s, "several offers and headers", test_several_offers) ==
	    NULL ||
	    CU_add_test(s, "bad offers are declined", test_declined_offers) ==
	    NULL ||
	    CU_add_test(s, "every parameter combination",
	    test_every_combination) == NULL ||
	    CU_add_test(s, "answer buffer size", test_answer_too_small) ==
	    NULL ||
	    CU_add_test(s, "round trip with context takeover",
	    test_round_trip_takeover) == NULL ||
	    CU_add_test(s, "no takeover: pool and compress-once cache",
	    test_no_takeover_pool_and_cache) == NULL ||
	    CU_add_test(s, "zip bomb stops at the limit",
	    test_zip_bomb_stops_at_the_limit) == NULL ||
	    CU_add_test(s, "bad compressed input", test_bad_input) == NULL ||
	    CU_add_test(s, "BFINAL keeps the context",
	    test_bfinal_keeps_the_context) == NULL ||
	    CU_add_test(s, "the budget makes answers tight",
	    test_budget_makes_answers_tight) == NULL ||
	    CU_add_test(s, "threshold", test_threshold) == NULL) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
