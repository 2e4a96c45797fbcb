/*
 * outbuf.c: a growing byte buffer, and the little-endian records written
 * into one and read back.
 *
 * Three writers share the buffer: json_write.c (the text of every reply,
 * on the hot path: its own inline put calls outbuf_grow only when the
 * buffer is full), handover_state.c (the hand-over's records) and
 * bus_local.c (the bus history's image).  The two binary formats are made
 * of little-endian integers of one to eight bytes and runs of raw bytes,
 * whatever the host's order, so that an image moves between builds.  Their
 * reader is a cursor that fails for good at its first short read and
 * keeps the first reason: a parser reads a whole record and checks once,
 * which is what the formats' fuzz harnesses hold it to.  What a field may
 * hold is the format's to check, not this file's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

int
outbuf_grow(struct outbuf *b, size_t n)
{
	size_t cap;
	char *p;

	if (n > SIZE_MAX / 2 - b->len)
		return -1;
	if (b->cap - b->len >= n)
		return 0;
	for (cap = b->cap > 0 ? b->cap : 256; cap - b->len < n; cap *= 2)
		;
	if ((p = realloc(b->p, cap)) == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int
outbuf_put(struct outbuf *b, const void *p, size_t n)
{
	if (outbuf_grow(b, n) == -1)
		return -1;
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void
outbuf_set_le(void *at, uint64_t v, size_t width)
{
	uint8_t *p = at;
	size_t i;

	for (i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int
outbuf_put_le(struct outbuf *b, uint64_t v, size_t width)
{
	uint8_t x[8];

	outbuf_set_le(x, v, width);
	return outbuf_put(b, x, width);
}

int
le_fail(struct le_rd *r, const char *why)
{
	if (r->why == NULL)
		r->why = why;
	r->n = 0;
	return -1;
}

uint64_t
le_get(struct le_rd *r, size_t width)
{
	uint64_t v = 0;
	size_t i;

	if (r->why != NULL)
		return 0;
	if (r->n < width) {
		le_fail(r, "truncated");
		return 0;
	}
	for (i = 0; i < width; i++)
		v |= (uint64_t)r->p[i] << (8 * i);
	r->p += width;
	r->n -= width;
	return v;
}

const uint8_t *
le_take(struct le_rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->why != NULL)
		return NULL;
	if (r->n < n) {
		le_fail(r, "truncated");
		return NULL;
	}
	r->p += n;
	r->n -= n;
	return p;
}
