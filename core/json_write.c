/*
 * json_write.c: the compact text of a jansson tree, byte for byte what
 * json_dumps(v, JSON_COMPACT) writes, appended to a reusable buffer.
 *
 * Every reply the daemon sends is serialized here, so this is on the path
 * of every message.  jansson's dumper allocates, formats each integer with
 * snprintf and fills a loop-detection hashtable keyed by the printed
 * address of every container; for a fifty-byte pong that was a third of
 * the daemon's instructions.  Here strings are copied in runs, integers are
 * formatted by hand, and a depth cap stands in for loop detection: a tree
 * that contains itself runs into the cap and fails like jansson's does.
 * Reals are rare and their formatting subtle, so jansson prints them.
 */
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

/* jansson refuses to parse deeper than this, so no tree worth sending is. */
#define JSON_WRITE_MAX_DEPTH 2048

/* Bytes that need an escape in a JSON string, as jansson escapes them:
 * 0 = copy, else the letter after the backslash, or 'u' for \u00XX. */
static const char escapes[256] = {
	['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r',
	[0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',
	[0x05] = 'u', [0x06] = 'u', [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u',
	[0x0f] = 'u', [0x10] = 'u', [0x11] = 'u', [0x12] = 'u', [0x13] = 'u',
	[0x14] = 'u', [0x15] = 'u', [0x16] = 'u', [0x17] = 'u', [0x18] = 'u',
	[0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u', [0x1d] = 'u',
	[0x1e] = 'u', [0x1f] = 'u', ['"'] = '"', ['\\'] = '\\',
};

/* The common case inline, the rare one out of line. */
static inline int
reserve(struct outbuf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return 0;
	return outbuf_grow(b, n);
}

static inline int
put(struct outbuf *b, const void *p, size_t n)
{
	if (reserve(b, n) == -1)
		return -1;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* Whether any of the eight bytes in w needs an escape: below 0x20, '"' or
 * '\\'.  The bit tricks answer "any" exactly (which byte, not always). */
static inline int
escape_in_word(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	uint64_t q = w ^ (ones * '"'), s = w ^ (ones * '\\');

	return (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) |
	    ((s - ones) & ~s)) & high ? 1 : 0;
}

static int
put_string(struct outbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *run;
	const unsigned char *end = p + n;
	uint64_t w;
	char e;

	/* Room for the string unescaped; each escape makes room for itself
	 * and the rest, so a long clean string is one reservation. */
	if (n > SIZE_MAX - 2 || reserve(b, n + 2) == -1)
		return -1;
	b->p[b->len++] = '"';
	while (p < end) {
		/* eight clean bytes at a time, then byte by byte up to the
		 * escape somewhere in the next eight, or the end */
		run = p;
		while (end - p >= 8) {
			memcpy(&w, p, 8);
			if (escape_in_word(w))
				break;
			p += 8;
		}
		while (p < end && escapes[*p] == 0)
			p++;
		memcpy(b->p + b->len, run, (size_t)(p - run));
		b->len += (size_t)(p - run);
		if (p == end)
			break;
		e = escapes[*p];
		if (reserve(b, 6 + (size_t)(end - p) + 1) == -1)
			return -1;
		b->p[b->len++] = '\\';
		if (e == 'u') {
			memcpy(b->p + b->len, "u00", 3);
			b->p[b->len + 3] = hex[*p >> 4];
			b->p[b->len + 4] = hex[*p & 0xf];
			b->len += 5;
		} else
			b->p[b->len++] = e;
		p++;
	}
	b->p[b->len++] = '"';
	return 0;
}

static int
put_integer(struct outbuf *b, json_int_t v)
{
	static const char pairs[] =
	    "00010203040506070809101112131415161718192021222324"
	    "25262728293031323334353637383940414243444546474849"
	    "50515253545556575859606162636465666768697071727374"
	    "75767778798081828384858687888990919293949596979899";
	char digits[24], *p = digits + sizeof(digits);
	unsigned long long u;
	unsigned d;

	/* Negate in unsigned arithmetic so the most negative value works;
	 * two digits a division, since timestamps have thirteen. */
	u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
	while (u >= 100) {
		d = (unsigned)(u % 100);
		u /= 100;
		p -= 2;
		memcpy(p, pairs + 2 * d, 2);
	}
	if (u >= 10) {
		p -= 2;
		memcpy(p, pairs + 2 * u, 2);
	} else
		*--p = (char)('0' + u);
	if (v < 0)
		*--p = '-';
	return put(b, p, (size_t)(digits + sizeof(digits) - p));
}

static int
put_real(struct outbuf *b, const json_t *v)
{
	char text[64];
	size_t n;

	n = json_dumpb(v, text, sizeof(text), JSON_COMPACT | JSON_ENCODE_ANY);
	if (n == 0 || n > sizeof(text))
		return -1;
	return put(b, text, n);
}

static int
put_value(struct outbuf *b, const json_t *v, int depth)
{
	const char *key;
	json_t *member;
	size_t i, n;
	void *it;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (depth >= JSON_WRITE_MAX_DEPTH || put(b, "{", 1) == -1)
			return -1;
		/* Insertion order, as jansson dumps without JSON_SORT_KEYS. */
		it = json_object_iter((json_t *)(uintptr_t)v);
		for (i = 0; it != NULL; i++) {
			key = json_object_iter_key(it);
			if ((i > 0 && put(b, ",", 1) == -1) ||
			    put_string(b, key, json_object_iter_key_len(it)) == -1 ||
			    put(b, ":", 1) == -1 ||
			    put_value(b, json_object_iter_value(it), depth + 1) == -1)
				return -1;
			it = json_object_iter_next((json_t *)(uintptr_t)v, it);
		}
		return put(b, "}", 1);
	case JSON_ARRAY:
		if (depth >= JSON_WRITE_MAX_DEPTH || put(b, "[", 1) == -1)
			return -1;
		n = json_array_size(v);
		for (i = 0; i < n; i++) {
			member = json_array_get(v, i);
			if ((i > 0 && put(b, ",", 1) == -1) ||
			    put_value(b, member, depth + 1) == -1)
				return -1;
		}
		return put(b, "]", 1);
	case JSON_STRING:
		return put_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return put_integer(b, json_integer_value(v));
	case JSON_REAL:
		return put_real(b, v);
	case JSON_TRUE:
		return put(b, "true", 4);
	case JSON_FALSE:
		return put(b, "false", 5);
	case JSON_NULL:
		return put(b, "null", 4);
	}
	return -1;
}

int
json_write(struct outbuf *b, const json_t *v)
{
	size_t mark = b->len;

	if (v != NULL && put_value(b, v, 0) == 0)
		return 0;
	b->len = mark;
	return -1;
}
