/*
 * json_scan.c: a message's "type" and "id" read from its JSON text,
 * without building a tree.
 *
 * Routing a message needs two things from it: the "type" string, to find
 * the plugin, and the "id", which replies echo.  Building the jansson tree
 * for that costs about 1,700 instructions a message, most of what the
 * server spends on a ping, and most plugins never look at it.  The scan
 * here walks the text once, in place, checking all of it, and reports
 * where the top-level "type" string and "id" value are; the tree is built
 * later, and only when a plugin asks (host.c's message_json).
 *
 * Because the tree may be built afterwards, the scan must never accept
 * text that jansson (json_loadb with flags 0) would reject: it takes only
 * the subset json_read.c's fast path takes -- strings (escapes included),
 * integers of at most SCAN_MAX_DIGITS digits, decimals without an
 * exponent, true, false, null, at most SCAN_MAX_DEPTH levels -- and
 * declines everything else: exponents, longer integers, \u0000, lone
 * surrogates, invalid UTF-8, every syntax error.  It also declines what
 * would make "type" ambiguous without unescaping: a top-level key with an
 * escape in it, or a "type" string with one.  Declining is always safe:
 * dispatch.c then parses the whole text as before, so every error answer
 * stays jansson's, byte for byte.  tests/fuzz/fuzz_json_scan.c holds the
 * scan against json_loadb on every input.
 */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "wsplugd.h"

/* As json_read.c: jansson accepts deeper, but messages are shallow and
 * the cap bounds the recursion. */
#define SCAN_MAX_DEPTH 32
/* No digit string this long overflows a json_int_t (or a double's
 * integer part), so overflow stays jansson's to report. */
#define SCAN_MAX_DIGITS 18
/* The runs below end with one load of the text's last 16 bytes rather
 * than a byte loop: json_scan sees that a text has that many. */
#define SCAN_TAIL 16

#ifndef __SSE2__
/* Bytes a string goes on over with no further look: printable ASCII
 * but the quote (22) and the backslash (5C).  Nearly every byte of a
 * message; the rest take the careful path below. */
static const unsigned char scan_plain[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	/* 80..FF: 0 */
};
#endif

/* The first byte from p on that is not plain, or end.  Sixteen bytes a
 * step where SSE2 is and that many are left: a quote, a backslash, or a
 * byte below 0x20 or above 0x7F (both below 0x20 as signed bytes) stops
 * the run, exactly the bytes scan_plain holds 0 for.  Nothing is read at
 * or past end. */
static inline const unsigned char *
plain_run(const unsigned char *p, const unsigned char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i bslash = _mm_set1_epi8('\\');
	const __m128i space = _mm_set1_epi8(' ');
	__m128i v;
	int m;

	while (end - p >= 16) {
		v = _mm_loadu_si128((const __m128i *)(const void *)p);
		m = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(
		    _mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
		    _mm_cmplt_epi8(v, space)));
		if (m != 0)
			return p + __builtin_ctz((unsigned)m);
		p += 16;
	}
	/* Fewer than sixteen left: the text's last sixteen, in one load,
	 * shifted so that bit 0 is p's byte.  json_scan guarantees they
	 * are readable (SCAN_TAIL); the bytes before p were scanned. */
	if (p < end) {
		v = _mm_loadu_si128((const __m128i *)(const void *)(end - 16));
		m = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(
		    _mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
		    _mm_cmplt_epi8(v, space)));
		m = (int)((unsigned)m >> (16 - (end - p)));
		return m != 0 ? p + __builtin_ctz((unsigned)m) : end;
	}
	return p;
#else
	while (p < end && scan_plain[*p])
		p++;
	return p;
#endif
}

/* The first byte from p on that is not an ASCII digit, or end.  Eight a
 * step on little-endian hosts when eight are left: each byte XOR '0' is
 * 0..9 for a digit; adding 0x76 sets the high bit of any other value
 * below 0x80, and the value's own high bit marks the rest.  A carry out
 * of a byte comes only from a non-digit, and goes to a later one, so the
 * lowest marked byte is the first non-digit. */
static inline const unsigned char *
digit_run(const unsigned char *p, const unsigned char *end)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t w, t;

	while (end - p >= 8) {
		memcpy(&w, p, sizeof(w));
		w ^= 0x3030303030303030ULL;
		t = ((w + 0x7676767676767676ULL) | w) & 0x8080808080808080ULL;
		if (t != 0)
			return p + (__builtin_ctzll(t) >> 3);
		p += 8;
	}
	/* Fewer than eight left: the text's last eight (SCAN_TAIL), shifted
	 * down to p.  The zero bytes shifted in above the end are marked
	 * like any other non-digit, so the answer is at most end. */
	if (p < end) {
		memcpy(&w, end - 8, sizeof(w));
		w >>= 8 * (8 - (end - p));
		w ^= 0x3030303030303030ULL;
		t = ((w + 0x7676767676767676ULL) | w) & 0x8080808080808080ULL;
		return p + (__builtin_ctzll(t) >> 3);
	}
	return p;
#else
	while (p < end && (unsigned)(*p - '0') < 10)
		p++;
	return p;
#endif
}

/*
 * Every scan_ function takes the position p of what it reads and the
 * text's end, and returns the position just after it, or NULL for
 * anything it declines: the position stays in a register, where a
 * struct shared by every call kept it in memory.
 */
static const unsigned char *scan_value(const unsigned char *,
    const unsigned char *, unsigned);

static const unsigned char *
scan_space_run(const unsigned char *p, const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' ||
	    *p == '\r'))
		p++;
	return p;
}

/* Messages rarely hold whitespace: one compare, inline, rules most
 * bytes out before a call. */
static inline const unsigned char *
scan_space(const unsigned char *p, const unsigned char *end)
{
	return p < end && *p <= ' ' ? scan_space_run(p, end) : p;
}

/* The rest of a string from p, its first byte that is not plain: what
 * scan_string below leaves to a call.  Same contract as scan_string. */
static const unsigned char *
scan_string_rest(const unsigned char *p, const unsigned char *end,
    const unsigned char **e_r, int *escaped_r)
{
	long cp, lo;
	int k, escaped = 0;

	for (;;) {
		p = plain_run(p, end);
		if (p == end || *p == '"')
			break;
		if (*p < 0x20)
			return NULL;
		if (*p >= 0x80) {
			if ((k = utf8_char_len(p, (size_t)(end - p))) <= 0)
				return NULL;
			p += k;
			continue;
		}
		if (*p++ != '\\')
			continue;
		escaped = 1;
		if (p == end)
			return NULL;
		switch (*p++) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			break;
		case 'u':
			/* \u0000 needs JSON_ALLOW_NUL; a low surrogate
			 * must follow a high one */
			if ((cp = utf8_hex4(p, end)) <= 0 ||
			    (cp >= 0xDC00 && cp <= 0xDFFF))
				return NULL;
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (end - p < 6 || p[0] != '\\' ||
				    p[1] != 'u')
					return NULL;
				lo = utf8_hex4(p + 2, end);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return NULL;
				p += 6;
			}
			break;
		default:
			return NULL;
		}
	}
	if (p == end)
		return NULL;
	*e_r = p;
	*escaped_r = escaped;
	return p + 1;
}

/* A string at p (its opening quote).  On success the bytes between the
 * quotes are [*b_r, *e_r) and *escaped_r says whether any escape is among
 * them.  NULL for anything jansson refuses or json_read.c would decline.
 * Inline for the common case, plain bytes up to the closing quote: a
 * message's keys and short values were a third of the scan in calls. */
static inline const unsigned char *
scan_string(const unsigned char *p, const unsigned char *end,
    const unsigned char **b_r, const unsigned char **e_r, int *escaped_r)
{
	*b_r = ++p;
	p = plain_run(p, end);
	if (p < end && *p == '"') {
		*e_r = p;
		*escaped_r = 0;
		return p + 1;
	}
	return scan_string_rest(p, end, e_r, escaped_r);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?, integer part at most SCAN_MAX_DIGITS
 * digits; an exponent declines (strtod may overflow to jansson's error).
 * A decimal's fraction can be long: it never overflows. */
static inline __attribute__((always_inline)) const unsigned char *
scan_number(const unsigned char *p, const unsigned char *end)
{
	const unsigned char *digits;

	if (*p == '-' && ++p == end)
		return NULL;
	if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
		return NULL;
	digits = p;
	p = digit_run(p, end);
	if (p == digits || p - digits > SCAN_MAX_DIGITS)
		return NULL;
	if (p < end && *p == '.') {
		digits = ++p;
		p = digit_run(p, end);
		if (p == digits)
			return NULL;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
		return NULL;
	/* jansson's lexer reads a number token up to a non-number byte;
	 * a letter right after it ("1x") is its invalid token.  The caller
	 * rejects anything but a separator after a value. */
	return p;
}

static const unsigned char *
scan_word(const unsigned char *p, const unsigned char *end, const char *w,
    size_t n)
{
	if ((size_t)(end - p) < n || memcmp(p, w, n) != 0)
		return NULL;
	return p + n;
}

/* After a member, at p (past the value): *end_r is 1 at the closing
 * bracket, 0 at a comma; the position after it, or NULL at anything
 * else. */
static inline const unsigned char *
scan_after(const unsigned char *p, const unsigned char *end, int close,
    int *end_r)
{
	if (p == end)
		return NULL;
	if (*p <= ' ' && (p = scan_space_run(p, end)) == end)
		return NULL;
	if (*p == close) {
		*end_r = 1;
		return p + 1;
	}
	if (*p != ',')
		return NULL;
	*end_r = 0;
	return scan_space(p + 1, end);
}

/* An object at p (its '{'), depth levels deep; top (the message itself)
 * fills out with the members that matter.  A repeated key's last value
 * wins, as in jansson's tree. */
static const unsigned char *
scan_object(const unsigned char *p, const unsigned char *end,
    unsigned depth, struct json_scan *out)
{
	const unsigned char *kb, *ke, *vb, *ve, *vstart;
	int esc, last;

	p = scan_space(p + 1, end);
	if (p < end && *p == '}')
		return p + 1;
	for (;;) {
		if (p == end || *p != '"' ||
		    (p = scan_string(p, end, &kb, &ke, &esc)) == NULL)
			return NULL;
		/* "typ\u0065" is "type" to jansson: decline rather than
		 * unescape every key of the message */
		if (out != NULL && esc)
			return NULL;
		/* the colon, looked for first: whitespace before it is
		 * rare */
		if ((p == end || *p != ':') &&
		    ((p = scan_space(p, end)) == end || *p != ':'))
			return NULL;
		vstart = p = scan_space(p + 1, end);
		if (out != NULL && ke - kb == 4 && memcmp(kb, "type", 4) == 0) {
			if (p < end && *p == '"') {
				if ((p = scan_string(p, end, &vb, &ve, &esc)) ==
				    NULL)
					return NULL;
				/* an escaped type would need unescaping */
				out->type = esc ? NULL : (const char *)vb;
				out->type_len = (size_t)(ve - vb);
				out->type_escaped = esc;
			} else {
				if ((p = scan_value(p, end, depth)) == NULL)
					return NULL;
				out->type = NULL;
				out->type_len = 0;
				out->type_escaped = 0;
			}
			out->type_seen = 1;
		} else if (p < end && *p == '"') {
			/* a string or a number, the commonest values, read
			 * here rather than in two calls */
			if ((p = scan_string(p, end, &vb, &ve, &esc)) == NULL)
				return NULL;
		} else if (p < end && (unsigned)(*p - '0') < 10) {
			if ((p = scan_number(p, end)) == NULL)
				return NULL;
		} else if ((p = scan_value(p, end, depth)) == NULL)
			return NULL;
		if (out != NULL && ke - kb == 2 && memcmp(kb, "id", 2) == 0) {
			out->id = (const char *)vstart;
			out->id_len = (size_t)(p - vstart);
		}
		if ((p = scan_after(p, end, '}', &last)) == NULL || last)
			return p;
	}
}

static const unsigned char *
scan_array(const unsigned char *p, const unsigned char *end, unsigned depth)
{
	int last;

	p = scan_space(p + 1, end);
	if (p < end && *p == ']')
		return p + 1;
	for (;;) {
		if ((p = scan_value(p, end, depth)) == NULL ||
		    (p = scan_after(p, end, ']', &last)) == NULL || last)
			return p;
	}
}

/* A value at p inside a container depth levels deep. */
static const unsigned char *
scan_value(const unsigned char *p, const unsigned char *end, unsigned depth)
{
	const unsigned char *b, *e;
	int esc;

	if (p == end)
		return NULL;
	switch (*p) {
	case '{':
		return depth == SCAN_MAX_DEPTH ? NULL :
		    scan_object(p, end, depth + 1, NULL);
	case '[':
		return depth == SCAN_MAX_DEPTH ? NULL :
		    scan_array(p, end, depth + 1);
	case '"':
		return scan_string(p, end, &b, &e, &esc);
	case 't':
		return scan_word(p, end, "true", 4);
	case 'f':
		return scan_word(p, end, "false", 5);
	case 'n':
		return scan_word(p, end, "null", 4);
	case '-':
		return scan_number(p, end);
	default:
		if (*p >= '0' && *p <= '9')
			return scan_number(p, end);
		return NULL;
	}
}

/* The text [p, end), at least SCAN_TAIL bytes of memory ending at end
 * readable.  Inline: a call here cost a message 16 instructions. */
static inline __attribute__((always_inline)) int
scan_text(const unsigned char *p, const unsigned char *end,
    struct json_scan *out)
{
	p = scan_space(p, end);
	if (p == end || *p != '{' || (p = scan_object(p, end, 1, out)) == NULL)
		return -1;
	if (scan_space(p, end) != end)
		return -1;
	/* Routing needs a plain type string; anything else (none, not a
	 * string, escaped) is the tree path's to answer or deliver. */
	if (!out->type_seen || out->type == NULL)
		return -1;
	return 0;
}

int
json_scan(const char *buf, size_t len, struct json_scan *out)
{
	unsigned char tail[SCAN_TAIL];
	const char *copy;

	memset(out, 0, sizeof(*out));
	if (buf == NULL)
		return -1;
	if (len >= SCAN_TAIL) {
		if (scan_text((const unsigned char *)buf,
		    (const unsigned char *)buf + len, out) == 0)
			return 0;
	} else {
		/* Shorter than the tail loads read ({"type":"a"}): scanned
		 * from a copy that ends where the array does, and the
		 * positions found taken back to the caller's text. */
		memset(tail, ' ', SCAN_TAIL - len);
		if (len > 0)
			memcpy(tail + SCAN_TAIL - len, buf, len);
		copy = (const char *)tail + SCAN_TAIL - len;
		if (scan_text((const unsigned char *)copy, tail + SCAN_TAIL,
		    out) == 0) {
			out->type = buf + (out->type - copy);
			if (out->id != NULL)
				out->id = buf + (out->id - copy);
			return 0;
		}
	}
	memset(out, 0, sizeof(*out));
	return -1;
}
