/*
 * zstream.c: permessage-deflate's zlib streams, with memory that stays
 * bounded.
 *
 * A connection that negotiated the extension holds a struct zstream_conn
 * of a few dozen bytes and no stream at all until it sends or receives a
 * compressed message.  What it holds then depends on what was agreed:
 *   - with context takeover (the LZ77 window carries over between
 *     messages), the stream is the connection's own for good: a "full
 *     context", about 4 << wbits + 512 << mem_level bytes to compress and
 *     1 << wbits to inflate, plus zlib's state (zstream_full_cost());
 *   - without it, a stream is only needed while one message is worked on,
 *     so it is borrowed from the server's pool and reset and returned
 *     after: one compressor per window size, and a few inflaters, serve
 *     every connection.
 * Full contexts are reserved against [deflate] context_budget at the
 * handshake, at their full cost whether or not they are ever allocated, so
 * the budget holds by construction: an offer that would take the reserved
 * total past it is answered without context takeover and with small
 * windows (zstream_accept()).  Every byte zlib allocates goes through a
 * counting allocator, so the metrics show the real figure too.
 *
 * Inflation writes into the connection's message buffer, growing it by
 * doubling up to max_message_size and never past: once it is full, one
 * more byte of output fails the connection with 1009, so a zip bomb costs
 * at most the limit.  Inflated text is UTF-8 checked as it comes (1007).
 *
 * Broadcast compresses once: without context takeover the output depends
 * only on the bytes and the parameters, so the last compressed message is
 * kept with a copy of its input, and the next send of the same bytes with
 * the same parameters (the next subscriber of a broadcast, in the same
 * loop turn) reuses it after a memcmp instead of compressing again.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "wsplugd.h"

#define ZS_RX_POOL 8          /* idle inflaters kept for reuse */
#define ZS_CACHE_MAX (64 * 1024) /* larger messages are not kept */
#define ZS_OUT_KEEP (64 * 1024)  /* the output buffer shrinks back to this */
#define ZS_TIGHT_WBITS 10     /* windows near the budget */
#define ZS_DEFLATE_STATE 6144 /* zlib's deflate_state and friends, rounded up */
#define ZS_INFLATE_STATE 7424 /* zlib's inflate_state, rounded up */
#define ZS_TAIL_LEN 4

static const uint8_t zs_tail[ZS_TAIL_LEN] = { 0x00, 0x00, 0xff, 0xff };

struct zstream_pool {
	struct zstream_stats st;
	z_stream *tx[16]; /* no-takeover compressors, by window bits */
	uint8_t tx_level[16], tx_mem[16];
	z_stream *rx[ZS_RX_POOL]; /* idle no-takeover inflaters, window 15 */
	size_t nrx;
	uint8_t *out; /* compressed output, valid until the next compression */
	size_t out_len, out_cap;
	/* the compress-once cache: out holds the output for these */
	int cache_valid;
	uint8_t cache_wbits, cache_level, cache_mem;
	uint8_t *cache_in;
	size_t cache_len, cache_cap;
};

/* Allocations carry their size in front, for the count. */
union zs_hdr {
	size_t n;
	max_align_t align;
};

static voidpf
zs_alloc(voidpf opaque, uInt items, uInt size)
{
	struct zstream_pool *pool = opaque;
	union zs_hdr *h;
	size_t n;

	if (size != 0 && items > (SIZE_MAX - sizeof(*h)) / size)
		return Z_NULL;
	n = (size_t)items * size;
	if ((h = malloc(sizeof(*h) + n)) == NULL)
		return Z_NULL;
	h->n = n;
	pool->st.zlib_bytes += n;
	return h + 1;
}

static void
zs_free(voidpf opaque, voidpf p)
{
	struct zstream_pool *pool = opaque;
	union zs_hdr *h;

	if (p == NULL)
		return;
	h = (union zs_hdr *)p - 1;
	pool->st.zlib_bytes -= h->n;
	free(h);
}

static struct zstream_pool *
zs_pool(struct wsp_server *srv)
{
	if (srv->zpool == NULL)
		srv->zpool = calloc(1, sizeof(*srv->zpool));
	return srv->zpool;
}

uint64_t
zstream_full_cost(const struct deflate_params *p, unsigned mem_level)
{
	uint64_t n = 0;

	if (!p->server_no_takeover)
		n += (1ULL << (p->server_wbits + 2)) +
		    (1ULL << (mem_level + 9)) + ZS_DEFLATE_STATE;
	if (!p->client_no_takeover)
		n += (1ULL << (p->client_wbits < 9 ? 9 : p->client_wbits)) +
		    ZS_INFLATE_STATE;
	return n;
}

int
zstream_accept(struct wsp_server *srv, const struct http_request *req,
    struct zstream_conn **zs_r, char answer[DEFLATE_ANSWER_MAX])
{
	const struct wsp_config *cfg = srv->cfg;
	struct deflate_policy pol;
	struct deflate_params p;
	struct zstream_pool *pool;
	struct zstream_conn *z;
	uint64_t cost;

	*zs_r = NULL;
	if (!cfg->deflate_enabled || req->nextensions == 0 ||
	    req->extensions_overflow)
		return 0;
	if ((pool = zs_pool(srv)) == NULL)
		return -1;
	pol.server_wbits = (uint8_t)cfg->deflate_server_wbits;
	pol.client_wbits = (uint8_t)cfg->deflate_client_wbits;
	pol.context_takeover = (uint8_t)cfg->deflate_context_takeover;
	if (!deflate_negotiate(req->extensions, req->nextensions, &pol, &p))
		return 0;
	cost = zstream_full_cost(&p, (unsigned)cfg->deflate_mem_level);
	if (cost > 0 && (cost > cfg->deflate_context_budget ||
	    pool->st.full_bytes > cfg->deflate_context_budget - cost)) {
		/* Near the budget: what RFC 7692 lets the server choose alone,
		 * so the same offer is always acceptable. */
		if (pol.server_wbits > ZS_TIGHT_WBITS)
			pol.server_wbits = ZS_TIGHT_WBITS;
		if (pol.client_wbits > ZS_TIGHT_WBITS)
			pol.client_wbits = ZS_TIGHT_WBITS;
		pol.context_takeover = 0;
		if (!deflate_negotiate(req->extensions, req->nextensions, &pol,
		    &p))
			return 0;
		cost = 0;
		pool->st.tight++;
	}
	if (deflate_answer(&p, answer, DEFLATE_ANSWER_MAX) == 0 ||
	    (z = calloc(1, sizeof(*z))) == NULL)
		return -1;
	z->p = p;
	z->level = (uint8_t)cfg->deflate_level;
	z->mem_level = (uint8_t)cfg->deflate_mem_level;
	z->threshold = (size_t)cfg->deflate_threshold;
	z->reserved = cost;
	pool->st.conns++;
	if (cost > 0) {
		pool->st.full_conns++;
		pool->st.full_bytes += cost;
	}
	*zs_r = z;
	return 0;
}

/* A hand-over's connection (handover.c): only one without context
 * takeover either way moves, between messages, so its streams are the
 * fresh ones a new message would take anyway and no memory is reserved. */
int
zstream_conn_restore(struct wsp_server *srv, const struct deflate_params *p,
    unsigned level, unsigned mem_level, size_t threshold,
    struct zstream_conn **zs_r)
{
	struct zstream_pool *pool;
	struct zstream_conn *z;

	*zs_r = NULL;
	if (!p->server_no_takeover || !p->client_no_takeover)
		return -1;
	if ((pool = zs_pool(srv)) == NULL || (z = calloc(1, sizeof(*z))) ==
	    NULL)
		return -1;
	z->p = *p;
	z->level = (uint8_t)level;
	z->mem_level = (uint8_t)mem_level;
	z->threshold = threshold;
	z->utf8 = UTF8_ACCEPT;
	pool->st.conns++;
	*zs_r = z;
	return 0;
}

int
zstream_conn_movable(const struct zstream_conn *z)
{
	return z->p.server_no_takeover && z->p.client_no_takeover &&
	    !z->rx_open && z->reserved == 0;
}

/* A stream whose memory goes through the counting allocator. */
static z_stream *
zs_stream(struct zstream_pool *pool)
{
	z_stream *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->zalloc = zs_alloc;
	s->zfree = zs_free;
	s->opaque = pool;
	return s;
}

static z_stream *
zs_deflater(struct zstream_pool *pool, unsigned wbits, unsigned level,
    unsigned mem)
{
	z_stream *s = zs_stream(pool);

	if (s != NULL && deflateInit2(s, (int)level, Z_DEFLATED, -(int)wbits,
	    (int)mem, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(s);
		return NULL;
	}
	return s;
}

static z_stream *
zs_inflater(struct zstream_pool *pool, unsigned wbits)
{
	z_stream *s = zs_stream(pool);

	if (s != NULL && inflateInit2(s, -(int)wbits) != Z_OK) {
		free(s);
		return NULL;
	}
	return s;
}

static void
zs_deflater_free(z_stream *s)
{
	if (s != NULL) {
		deflateEnd(s);
		free(s);
	}
}

static void
zs_inflater_free(z_stream *s)
{
	if (s != NULL) {
		inflateEnd(s);
		free(s);
	}
}

/* An inflater done with a message goes back to the pool, or away. */
static void
zs_rx_return(struct zstream_pool *pool, z_stream *s)
{
	if (pool->nrx < ZS_RX_POOL && inflateReset(s) == Z_OK)
		pool->rx[pool->nrx++] = s;
	else
		zs_inflater_free(s);
}

void
zstream_conn_free(struct wsp_server *srv, struct zstream_conn *z)
{
	struct zstream_pool *pool = srv->zpool;

	if (z == NULL)
		return;
	zs_deflater_free(z->tx);
	if (z->rx != NULL && z->p.client_no_takeover)
		zs_rx_return(pool, z->rx);
	else
		zs_inflater_free(z->rx);
	pool->st.conns--;
	if (z->reserved > 0) {
		pool->st.full_conns--;
		pool->st.full_bytes -= z->reserved;
	}
	free(z);
}

/* Room for n more bytes of output at pool->out + pool->out_len. */
static int
zs_out_reserve(struct zstream_pool *pool, size_t n)
{
	uint8_t *p;
	size_t cap;

	if (pool->out_cap - pool->out_len >= n)
		return 0;
	if (n > SIZE_MAX / 2 - pool->out_len)
		return -1;
	cap = pool->out_len + n;
	if (cap < 2 * pool->out_cap)
		cap = 2 * pool->out_cap;
	if ((p = realloc(pool->out, cap)) == NULL)
		return -1;
	pool->out = p;
	pool->out_cap = cap;
	return 0;
}

/* Compress in with s and Z_SYNC_FLUSH into pool->out, without the
 * 00 00 ff ff that ends every flush (RFC 7692 7.2.1). */
static int
zs_deflate_msg(struct zstream_pool *pool, z_stream *s, const uint8_t *in,
    size_t n)
{
	size_t room;
	int flush;

	pool->out_len = 0;
	if (pool->out_cap > ZS_OUT_KEEP && n < ZS_OUT_KEEP / 2) {
		/* one huge message should not keep its buffer for good */
		free(pool->out);
		pool->out = NULL;
		pool->out_cap = 0;
	}
	if (zs_out_reserve(pool, (size_t)deflateBound(s,
	    n > UINT_MAX ? UINT_MAX : (uLong)n) + 16) == -1)
		return -1;
	s->next_in = (Bytef *)(uintptr_t)in;
	s->avail_in = 0;
	for (;;) {
		if (s->avail_in == 0 && n > 0) {
			s->avail_in = n > UINT_MAX ? UINT_MAX : (uInt)n;
			n -= s->avail_in;
		}
		flush = n == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH;
		if (zs_out_reserve(pool, 64) == -1)
			return -1;
		room = pool->out_cap - pool->out_len;
		if (room > UINT_MAX)
			room = UINT_MAX;
		s->next_out = pool->out + pool->out_len;
		s->avail_out = (uInt)room;
		if (deflate(s, flush) == Z_STREAM_ERROR)
			return -1;
		pool->out_len += room - s->avail_out;
		/* Room left after a flush: all input taken, all written. */
		if (flush == Z_SYNC_FLUSH && s->avail_out > 0)
			break;
	}
	if (pool->out_len < ZS_TAIL_LEN || memcmp(pool->out + pool->out_len -
	    ZS_TAIL_LEN, zs_tail, ZS_TAIL_LEN) != 0)
		return -1;
	pool->out_len -= ZS_TAIL_LEN;
	return 0;
}

int
zstream_compress(struct wsp_server *srv, struct zstream_conn *z,
    const void *data, size_t n, const uint8_t **out_r, size_t *len_r)
{
	struct zstream_pool *pool = srv->zpool;
	const struct deflate_params *p = &z->p;
	unsigned wb = p->server_wbits;
	z_stream *s;

	if (n < z->threshold)
		return 0;
	if (n == 0) {
		/* RFC 7692 7.2.3.6: an empty stored block, which leaves any
		 * context as it was (a flush with nothing new to flush would
		 * write nothing at all). */
		pool->out_len = 0;
		if (zs_out_reserve(pool, 1) == -1)
			return 0;
		pool->out[0] = 0x00;
		pool->out_len = 1;
		pool->cache_valid = 0;
		goto done;
	}
	if (p->server_no_takeover) {
		if (pool->cache_valid && pool->cache_len == n &&
		    pool->cache_wbits == wb && pool->cache_level == z->level &&
		    pool->cache_mem == z->mem_level &&
		    (n == 0 || memcmp(pool->cache_in, data, n) == 0)) {
			pool->st.reused++;
			goto done;
		}
		pool->cache_valid = 0;
		if (pool->tx[wb] != NULL && (pool->tx_level[wb] != z->level ||
		    pool->tx_mem[wb] != z->mem_level)) {
			/* a reload changed level or mem_level */
			zs_deflater_free(pool->tx[wb]);
			pool->tx[wb] = NULL;
		}
		if (pool->tx[wb] == NULL) {
			if ((pool->tx[wb] = zs_deflater(pool, wb, z->level,
			    z->mem_level)) == NULL)
				return 0; /* out of memory: send it plain */
			pool->tx_level[wb] = z->level;
			pool->tx_mem[wb] = z->mem_level;
		}
		s = pool->tx[wb];
	} else {
		pool->cache_valid = 0;
		if (z->tx == NULL &&
		    (z->tx = zs_deflater(pool, wb, z->level, z->mem_level)) ==
		    NULL)
			return 0;
		s = z->tx;
	}
	if (zs_deflate_msg(pool, s, data, n) == -1) {
		/* Only out of memory gets here; the stream may be midway, so
		 * a takeover stream is dropped (the next message starts a new
		 * one, which the peer cannot tell from a reset) and this
		 * message goes plain. */
		if (p->server_no_takeover)
			deflateReset(s);
		else {
			zs_deflater_free(z->tx);
			z->tx = NULL;
		}
		return 0;
	}
	pool->st.compressed++;
	if (p->server_no_takeover) {
		deflateReset(s);
		if (n <= ZS_CACHE_MAX) {
			if (n > pool->cache_cap) {
				free(pool->cache_in);
				if ((pool->cache_in = malloc(n)) == NULL) {
					pool->cache_cap = 0;
					goto done;
				}
				pool->cache_cap = n;
			}
			if (n > 0)
				memcpy(pool->cache_in, data, n);
			pool->cache_len = n;
			pool->cache_wbits = (uint8_t)wb;
			pool->cache_level = z->level;
			pool->cache_mem = z->mem_level;
			pool->cache_valid = 1;
		}
	}
done:
	*out_r = pool->out;
	*len_r = pool->out_len;
	return 1;
}

/* Grow the message buffer by doubling, never past max (0: no limit).
 * -1 when it is at max already, or out of memory (*nomem set). */
static int
zs_grow(uint8_t **buf, size_t *cap, uint64_t max, int *nomem)
{
	size_t ncap;
	uint8_t *p;

	if (max != 0 && *cap >= max)
		return -1;
	ncap = *cap == 0 ? 4096 : *cap * 2;
	if (ncap < *cap)
		ncap = SIZE_MAX;
	if (max != 0 && ncap > max)
		ncap = (size_t)max;
	if ((p = realloc(*buf, ncap)) == NULL) {
		*nomem = 1;
		return -1;
	}
	*buf = p;
	*cap = ncap;
	return 0;
}

/* After the end of a deflate stream (a block with BFINAL set, which
 * RFC 7692 7.2.3.4 allows), the next message starts a fresh one, keeping
 * the window when it carries over between messages. */
static int
zs_restart(struct zstream_conn *z, z_stream *s)
{
	uint8_t *dict;
	uInt n = 0;
	int r;

	if (z->p.client_no_takeover)
		return inflateReset(s) == Z_OK ? 0 : -1;
	if ((dict = malloc(1U << 15)) == NULL)
		return -1;
	r = inflateGetDictionary(s, dict, &n) == Z_OK &&
	    inflateReset(s) == Z_OK &&
	    (n == 0 || inflateSetDictionary(s, dict, n) == Z_OK) ? 0 : -1;
	free(dict);
	return r;
}

/* Inflate n bytes from in onto the message in m; tail: they are the
 * 00 00 ff ff appended at the end.  0, or a close code. */
static int
zs_inflate_some(struct zstream_conn *z, z_stream *s, const uint8_t *in,
    size_t n, int tail, struct zstream_msg *m, const char **why)
{
	uint8_t probe, *o;
	size_t room, got;
	int r, nomem = 0;

	if (z->rx_ended) {
		/* The appended tail is not part of a stream that ended, and
		 * nothing else may follow the end within a message. */
		if (n == 0 || tail)
			return 0;
		*why = "data after the end of the compressed message";
		return 1007;
	}
	s->next_in = (Bytef *)(uintptr_t)in;
	s->avail_in = 0;
	s->avail_out = 1; /* nothing is pending from the last call */
	for (;;) {
		if (s->avail_in == 0) {
			if (n == 0 && s->avail_out != 0)
				return 0; /* all taken, all written */
			s->avail_in = n > UINT_MAX ? UINT_MAX : (uInt)n;
			n -= s->avail_in;
		}
		if (*m->len == *m->cap &&
		    zs_grow(m->buf, m->cap, m->max, &nomem) == -1) {
			if (nomem) {
				*why = "out of memory";
				return WSP_CLOSE_INTERNAL_ERROR;
			}
			/* Full at the limit: any more output is too much. */
			o = &probe;
			room = 1;
		} else {
			o = *m->buf + *m->len;
			room = *m->cap - *m->len;
			if (room > UINT_MAX)
				room = UINT_MAX;
		}
		s->next_out = o;
		s->avail_out = (uInt)room;
		r = inflate(s, Z_SYNC_FLUSH);
		got = room - s->avail_out;
		if (got > 0 && o == &probe) {
			*why = "message too big";
			return 1009;
		}
		if (got > 0 && m->text) {
			z->utf8 = utf8_validate(z->utf8, o, got);
			if (z->utf8 == UTF8_REJECT) {
				*why = "invalid UTF-8 in text message";
				return 1007;
			}
		}
		*m->len += got;
		switch (r) {
		case Z_OK:
			break;
		case Z_BUF_ERROR: /* no progress: the input is used up */
			if (s->avail_in == 0 && n == 0)
				return 0;
			break;
		case Z_STREAM_END:
			if (zs_restart(z, s) == -1) {
				*why = "out of memory";
				return WSP_CLOSE_INTERNAL_ERROR;
			}
			z->rx_ended = 1;
			return zs_inflate_some(z, s, s->next_in,
			    s->avail_in + n, tail, m, why);
		case Z_MEM_ERROR:
			*why = "out of memory";
			return WSP_CLOSE_INTERNAL_ERROR;
		default:
			*why = "invalid compressed data";
			return 1007;
		}
	}
}

int
zstream_inflate(struct wsp_server *srv, struct zstream_conn *z,
    const uint8_t *in, size_t n, int fin, struct zstream_msg *m,
    const char **why)
{
	struct zstream_pool *pool = srv->zpool;
	z_stream *s;
	int code;

	if (!z->rx_open) {
		z->utf8 = UTF8_ACCEPT;
		z->rx_ended = 0;
		if (z->rx == NULL) {
			if (z->p.client_no_takeover && pool->nrx > 0)
				z->rx = pool->rx[--pool->nrx];
			else
				z->rx = zs_inflater(pool, z->p.client_no_takeover ?
				    15 : (z->p.client_wbits < 9 ? 9 :
				    z->p.client_wbits));
			if (z->rx == NULL) {
				*why = "out of memory";
				return WSP_CLOSE_INTERNAL_ERROR;
			}
		}
		z->rx_open = 1;
	}
	s = z->rx;
	if ((code = zs_inflate_some(z, s, in, n, 0, m, why)) != 0)
		return code;
	if (!fin)
		return 0;
	if ((code = zs_inflate_some(z, s, zs_tail, ZS_TAIL_LEN, 1, m, why)) !=
	    0)
		return code;
	if (m->text && z->utf8 != UTF8_ACCEPT) {
		*why = "invalid UTF-8 in text message";
		return 1007;
	}
	z->rx_open = 0;
	if (z->p.client_no_takeover) {
		zs_rx_return(pool, s);
		z->rx = NULL;
	}
	return 0;
}

const struct zstream_stats *
zstream_stats(const struct wsp_server *srv)
{
	static const struct zstream_stats none;

	return srv->zpool != NULL ? &srv->zpool->st : &none;
}

void
zstream_pool_free(struct wsp_server *srv)
{
	struct zstream_pool *pool = srv->zpool;
	size_t i;

	if (pool == NULL)
		return;
	for (i = 0; i < nitems(pool->tx); i++)
		zs_deflater_free(pool->tx[i]);
	for (i = 0; i < pool->nrx; i++)
		zs_inflater_free(pool->rx[i]);
	free(pool->out);
	free(pool->cache_in);
	free(pool);
	srv->zpool = NULL;
}
