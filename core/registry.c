/*
 * registry.c: the established connections.
 *
 * The registry is an intrusive list (the connection carries its own link,
 * so registering allocates nothing), a count for the operator, 128-bit
 * random ids, and a table of open connections per client address for
 * max_connections_per_ip.  Metadata lives in struct wsp_conn itself.
 */
#include <sys/random.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "wsplugd.h"

struct ip_count {
	UT_hash_handle hh; /* while spare, hh.next links the spares */
	size_t n;
	char ip[46];
};

/* Entries of addresses whose last connection left, kept for the next new
 * address: a connection from an address of its own (most of them) paid a
 * calloc and a free, 2 % of a handshake's instructions.  A few KiB at
 * most, whatever the churn. */
#define IP_SPARE_MAX 64

void
registry_init(struct registry *r)
{
	TAILQ_INIT(&r->conns);
	r->count = 0;
	r->by_ip = NULL;
	r->ip_spare = NULL;
	r->nip_spare = 0;
	r->rnd_used = sizeof(r->rnd); /* empty: filled on first use */
}

void
registry_fini(struct registry *r)
{
	struct ip_count *e, *tmp;

	HASH_ITER(hh, r->by_ip, e, tmp) {
		HASH_DEL(r->by_ip, e);
		free(e);
	}
	while ((e = r->ip_spare) != NULL) {
		r->ip_spare = e->hh.next;
		free(e);
	}
	r->nip_spare = 0;
}

/* Ids come from getrandom(2) 4 KiB at a time: one system call per 256
 * connections instead of one each. */
void
registry_new_id(struct registry *r, char out[33])
{
	const uint8_t *p;
	ssize_t n;

	if (r->rnd_used + 16 > sizeof(r->rnd)) {
		do
			n = getrandom(r->rnd, sizeof(r->rnd), 0);
		while (n == -1 && errno == EINTR);
		if (n != (ssize_t)sizeof(r->rnd))
			abort(); /* no entropy source: ids would not be unique */
		r->rnd_used = 0;
	}
	p = r->rnd + r->rnd_used;
#ifdef __SSE2__
	/* Sixteen bytes to 32 digits in a few vector steps, not a table
	 * load a digit (240 instructions a connection): the nibbles
	 * interleaved high first, then '0' + x, or 'a' + x - 10 above 9. */
	{
		const __m128i mask = _mm_set1_epi8(0x0f);
		__m128i v = _mm_loadu_si128((const __m128i *)p), hi, lo, d;
		int k;

		hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
		lo = _mm_and_si128(v, mask);
		for (k = 0; k < 2; k++) {
			d = k == 0 ? _mm_unpacklo_epi8(hi, lo) :
			    _mm_unpackhi_epi8(hi, lo);
			d = _mm_add_epi8(_mm_add_epi8(d, _mm_set1_epi8('0')),
			    _mm_and_si128(_mm_cmpgt_epi8(d, _mm_set1_epi8(9)),
			    _mm_set1_epi8('a' - '0' - 10)));
			_mm_storeu_si128((__m128i *)(out + 16 * k), d);
		}
	}
#else
	{
		static const char hex[] = "0123456789abcdef";
		size_t i;

		for (i = 0; i < 16; i++) {
			out[2 * i] = hex[p[i] >> 4];
			out[2 * i + 1] = hex[p[i] & 15];
		}
	}
#endif
	out[32] = '\0';
	/* Don't leave used randomness where a later id could repeat it. */
	memset(r->rnd + r->rnd_used, 0, 16);
	r->rnd_used += 16;
}

void
registry_add(struct registry *r, struct wsp_conn *c)
{
	TAILQ_INSERT_TAIL(&r->conns, c, link);
	r->count++;
	c->registered = 1;
}

void
registry_remove(struct registry *r, struct wsp_conn *c)
{
	if (!c->registered)
		return;
	TAILQ_REMOVE(&r->conns, c, link);
	r->count--;
	c->registered = 0;
}

void
registry_move_tail(struct registry *r, struct wsp_conn *c)
{
	if (!c->registered || TAILQ_NEXT(c, link) == NULL)
		return;
	TAILQ_REMOVE(&r->conns, c, link);
	TAILQ_INSERT_TAIL(&r->conns, c, link);
}

size_t
registry_ip_count(struct registry *r, const char *ip)
{
	struct ip_count *e;

	HASH_FIND_STR(r->by_ip, ip, e);
	return e == NULL ? 0 : e->n;
}

int
registry_ip_ref(struct registry *r, const char *ip)
{
	struct ip_count *e;

	HASH_FIND_STR(r->by_ip, ip, e);
	if (e == NULL) {
		if ((e = r->ip_spare) != NULL) {
			r->ip_spare = e->hh.next;
			r->nip_spare--;
			memset(e, 0, sizeof(*e));
		} else if ((e = calloc(1, sizeof(*e))) == NULL)
			return -1;
		strncpy(e->ip, ip, sizeof(e->ip) - 1);
		HASH_ADD_STR(r->by_ip, ip, e);
	}
	e->n++;
	return 0;
}

void
registry_ip_unref(struct registry *r, const char *ip)
{
	struct ip_count *e;

	HASH_FIND_STR(r->by_ip, ip, e);
	if (e == NULL)
		return;
	if (--e->n == 0) {
		HASH_DEL(r->by_ip, e);
		if (r->nip_spare < IP_SPARE_MAX) {
			e->hh.next = r->ip_spare;
			r->ip_spare = e;
			r->nip_spare++;
		} else
			free(e);
	}
}
