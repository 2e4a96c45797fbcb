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
#include <string.h>

#include "wsplugd.h"

/* As json_read.c: jansson accepts deeper, but messages are shallow and
 * the cap bounds the recursion. */
#define SCAN_MAX_DEPTH 32
/* No digit string this long overflows a json_int_t (or a double's
 * integer part), so overflow stays jansson's to report. */
#define SCAN_MAX_DIGITS 18

struct scanner {
	const unsigned char *p, *end;
	unsigned depth;
};

static int scan_value(struct scanner *);

static void
scan_space_run(struct scanner *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* Messages rarely hold whitespace: one compare, inline, rules most
 * bytes out before a call. */
static inline void
scan_space(struct scanner *s)
{
	if (s->p < s->end && *s->p <= ' ')
		scan_space_run(s);
}

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

static int
scan_peek(const struct scanner *s)
{
	return s->p < s->end ? *s->p : -1;
}

/* The rest of a string from p, its first byte that is not plain: what
 * scan_string below leaves to a call.  Same contract as scan_string. */
static int
scan_string_rest(struct scanner *s, const unsigned char *p,
    const unsigned char **e_r, int *escaped_r)
{
	long cp, lo;
	int k, escaped = 0;

	for (;;) {
		while (p < s->end && scan_plain[*p])
			p++;
		if (p == s->end || *p == '"')
			break;
		if (*p < 0x20)
			return -1;
		if (*p >= 0x80) {
			if ((k = utf8_char_len(p, (size_t)(s->end - p))) <= 0)
				return -1;
			p += k;
			continue;
		}
		if (*p++ != '\\')
			continue;
		escaped = 1;
		if (p == s->end)
			return -1;
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
			if ((cp = utf8_hex4(p, s->end)) <= 0 ||
			    (cp >= 0xDC00 && cp <= 0xDFFF))
				return -1;
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (s->end - p < 6 || p[0] != '\\' ||
				    p[1] != 'u')
					return -1;
				lo = utf8_hex4(p + 2, s->end);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return -1;
				p += 6;
			}
			break;
		default:
			return -1;
		}
	}
	if (p == s->end)
		return -1;
	*e_r = p;
	*escaped_r = escaped;
	s->p = p + 1;
	return 0;
}

/* A string at s->p (its opening quote).  On success the bytes between the
 * quotes are [*b_r, *e_r) and *escaped_r says whether any escape is among
 * them.  -1 for anything jansson refuses or json_read.c would decline.
 * Inline for the common case, plain bytes up to the closing quote: a
 * message's keys and short values were a third of the scan in calls. */
static inline int
scan_string(struct scanner *s, const unsigned char **b_r,
    const unsigned char **e_r, int *escaped_r)
{
	const unsigned char *p = s->p + 1;

	*b_r = p;
	while (p < s->end && scan_plain[*p])
		p++;
	if (p < s->end && *p == '"') {
		*e_r = p;
		*escaped_r = 0;
		s->p = p + 1;
		return 0;
	}
	return scan_string_rest(s, p, e_r, escaped_r);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?, integer part at most SCAN_MAX_DIGITS
 * digits; an exponent declines (strtod may overflow to jansson's error).
 * A decimal's fraction can be long: it never overflows. */
static int
scan_number(struct scanner *s)
{
	const unsigned char *p = s->p, *digits;
	int n;

	if (*p == '-' && ++p == s->end)
		return -1;
	if (*p == '0' && p + 1 < s->end && p[1] >= '0' && p[1] <= '9')
		return -1;
	for (digits = p; p < s->end && (unsigned)(*p - '0') < 10; p++)
		;
	if (p == digits || p - digits > SCAN_MAX_DIGITS)
		return -1;
	if (p < s->end && *p == '.') {
		p++;
		n = 0;
		for (; p < s->end && (unsigned)(*p - '0') < 10; p++)
			n++;
		if (n == 0)
			return -1;
	}
	if (p < s->end && (*p == 'e' || *p == 'E'))
		return -1;
	/* jansson's lexer reads a number token up to a non-number byte;
	 * a letter right after it ("1x") is its invalid token.  The caller
	 * rejects anything but a separator after a value. */
	s->p = p;
	return 0;
}

static int
scan_word(struct scanner *s, const char *w, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

/* After a member: 1 at the closing bracket, 0 at a comma, -1 else. */
static int
scan_after(struct scanner *s, int close)
{
	scan_space(s);
	if (scan_peek(s) == close) {
		s->p++;
		return 1;
	}
	if (scan_peek(s) != ',')
		return -1;
	s->p++;
	scan_space(s);
	return 0;
}

/* An object; top (the message itself) fills out with the members that
 * matter.  A repeated key's last value wins, as in jansson's tree. */
static int
scan_object(struct scanner *s, struct json_scan *out)
{
	const unsigned char *kb, *ke, *vb, *ve;
	const unsigned char *vstart;
	int esc, end;

	s->p++;
	scan_space(s);
	if (scan_peek(s) == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		if (scan_peek(s) != '"' || scan_string(s, &kb, &ke, &esc) == -1)
			return -1;
		/* "typ\u0065" is "type" to jansson: decline rather than
		 * unescape every key of the message */
		if (out != NULL && esc)
			return -1;
		scan_space(s);
		if (scan_peek(s) != ':')
			return -1;
		s->p++;
		scan_space(s);
		vstart = s->p;
		if (out != NULL && ke - kb == 4 && memcmp(kb, "type", 4) == 0) {
			if (scan_peek(s) == '"') {
				if (scan_string(s, &vb, &ve, &esc) == -1)
					return -1;
				/* an escaped type would need unescaping */
				out->type = esc ? NULL : (const char *)vb;
				out->type_len = (size_t)(ve - vb);
				out->type_escaped = esc;
				out->type_seen = 1;
			} else {
				if (scan_value(s) == -1)
					return -1;
				out->type = NULL;
				out->type_len = 0;
				out->type_escaped = 0;
				out->type_seen = 1;
			}
		} else if (scan_value(s) == -1)
			return -1;
		if (out != NULL && ke - kb == 2 && memcmp(kb, "id", 2) == 0) {
			out->id = (const char *)vstart;
			out->id_len = (size_t)(s->p - vstart);
		}
		if ((end = scan_after(s, '}')) == -1)
			return -1;
		if (end)
			return 0;
	}
}

static int
scan_array(struct scanner *s)
{
	int end;

	s->p++;
	scan_space(s);
	if (scan_peek(s) == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		if (scan_value(s) == -1 || (end = scan_after(s, ']')) == -1)
			return -1;
		if (end)
			return 0;
	}
}

static int
scan_value(struct scanner *s)
{
	const unsigned char *b, *e;
	int c = scan_peek(s), esc, rc;

	switch (c) {
	case '{':
	case '[':
		if (s->depth == SCAN_MAX_DEPTH)
			return -1;
		s->depth++;
		rc = c == '{' ? scan_object(s, NULL) : scan_array(s);
		s->depth--;
		return rc;
	case '"':
		return scan_string(s, &b, &e, &esc);
	case 't':
		return scan_word(s, "true", 4);
	case 'f':
		return scan_word(s, "false", 5);
	case 'n':
		return scan_word(s, "null", 4);
	case '-':
		return scan_number(s);
	default:
		if (c >= '0' && c <= '9')
			return scan_number(s);
		return -1;
	}
}

int
json_scan(const char *buf, size_t len, struct json_scan *out)
{
	struct scanner s;

	memset(out, 0, sizeof(*out));
	if (buf == NULL)
		return -1;
	s.p = (const unsigned char *)buf;
	s.end = s.p + len;
	s.depth = 1;
	scan_space(&s);
	if (scan_peek(&s) != '{' || scan_object(&s, out) == -1)
		goto decline;
	scan_space(&s);
	if (s.p != s.end)
		goto decline;
	/* Routing needs a plain type string; anything else (none, not a
	 * string, escaped) is the tree path's to answer or deliver. */
	if (!out->type_seen || out->type == NULL)
		goto decline;
	return 0;
decline:
	memset(out, 0, sizeof(*out));
	return -1;
}
