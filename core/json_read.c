/*
 * json_read.c: a message's JSON text to a jansson tree, for less than
 * json_loadb costs.
 *
 * json_loadb reads its input through a per-byte stream callback, checks
 * UTF-8 one character at a time and copies every token into a strbuffer
 * before converting it: about 6,000 instructions for {"type":"ping",
 * "id":123}, most of what parsing a message costs.  The reader here walks
 * the buffer in place and builds the same tree with jansson's own
 * constructors, so plugins still get a json_t and cannot tell.
 *
 * It takes only what it can treat exactly as jansson does with flags 0:
 * an object or array at the top, at most READ_MAX_DEPTH deep, holding
 * strings (escapes included), integers of up to READ_MAX_DIGITS digits,
 * true, false and null.  Everything else -- reals, longer integers, deeper
 * nesting, \u0000, lone surrogates, control characters, invalid UTF-8 and
 * every syntax error -- it declines, and json_loadb parses the input from
 * the start.  Declining is always safe, so the fast path never has to
 * reproduce an error: texts and positions stay jansson's.  The one rule it
 * must keep is the other direction, that whatever it accepts jansson
 * accepts too, with the same tree; tests/fuzz/fuzz_json_read.c holds the
 * two side by side on every input.
 */
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

/* Messages are shallow; deeper input is rare enough to leave to jansson,
 * and the cap bounds our recursion well below jansson's own 2048. */
#define READ_MAX_DEPTH 32
/* 999,999,999,999,999,999 < 2^63 - 1: no digit string this long
 * overflows, so overflow errors stay jansson's to report. */
#define READ_MAX_DIGITS 18

struct reader {
	const unsigned char *p, *end;
	/* Unescaped strings go here, one after the other: a key must stay
	 * valid while its value is read.  Each is no longer than its source
	 * text, so the input's length always suffices.  Allocated at the
	 * first escape; most messages have none. */
	char *scratch;
	size_t used;
	unsigned depth;
};

static json_t *read_value(struct reader *);

static int
peek(const struct reader *r)
{
	return r->p < r->end ? *r->p : -1;
}

/* The four bytes jansson skips between tokens. */
static void
skip_space(struct reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' ||
	    *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static size_t
utf8_put(char *t, long cp)
{
	if (cp < 0x80) {
		t[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		t[0] = (char)(0xC0 | cp >> 6);
		t[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		t[0] = (char)(0xE0 | cp >> 12);
		t[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		t[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	t[0] = (char)(0xF0 | cp >> 18);
	t[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	t[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	t[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* The rest of a string from its first backslash at p, unescaped into
 * scratch after the part before it.  -1 declines: \u0000 (jansson refuses
 * it without JSON_ALLOW_NUL), a surrogate not in a pair, a bad escape. */
static int
read_escaped(struct reader *r, const unsigned char *start,
    const unsigned char *p, const char **s_r, size_t *n_r)
{
	char *t;
	long cp, lo;
	int k;

	if (r->scratch == NULL &&
	    (r->scratch = malloc((size_t)(r->end - start))) == NULL)
		return -1;
	t = r->scratch + r->used;
	memcpy(t, start, (size_t)(p - start));
	t += p - start;
	while (p < r->end && *p != '"') {
		if (*p < 0x20)
			return -1;
		if (*p >= 0x80) {
			if ((k = utf8_char_len(p, (size_t)(r->end - p))) <= 0)
				return -1;
			memcpy(t, p, (size_t)k);
			t += k;
			p += k;
			continue;
		}
		if (*p != '\\') {
			*t++ = (char)*p++;
			continue;
		}
		if (++p == r->end)
			return -1;
		switch (*p++) {
		case '"':
		case '\\':
		case '/':
			*t++ = (char)p[-1];
			break;
		case 'b':
			*t++ = '\b';
			break;
		case 'f':
			*t++ = '\f';
			break;
		case 'n':
			*t++ = '\n';
			break;
		case 'r':
			*t++ = '\r';
			break;
		case 't':
			*t++ = '\t';
			break;
		case 'u':
			if ((cp = utf8_hex4(p, r->end)) <= 0 ||
			    (cp >= 0xDC00 && cp <= 0xDFFF))
				return -1;
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (r->end - p < 6 || p[0] != '\\' ||
				    p[1] != 'u')
					return -1;
				lo = utf8_hex4(p + 2, r->end);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return -1;
				p += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) +
				    (lo - 0xDC00);
			}
			t += utf8_put(t, cp);
			break;
		default:
			return -1;
		}
	}
	if (p == r->end)
		return -1;
	*s_r = r->scratch + r->used;
	*n_r = (size_t)(t - *s_r);
	r->used += *n_r;
	r->p = p + 1;
	return 0;
}

/* A string at r->p (the opening quote): its bytes, valid UTF-8 without
 * NUL, in the input itself when it has no escape.  Borrowed until the
 * reader is done. */
static int
read_string(struct reader *r, const char **s_r, size_t *n_r)
{
	const unsigned char *start = r->p + 1, *p = start;
	int k;

	while (p < r->end && *p != '"') {
		if (*p == '\\')
			return read_escaped(r, start, p, s_r, n_r);
		if (*p < 0x20)
			return -1;
		if (*p < 0x80)
			p++;
		else if ((k = utf8_char_len(p, (size_t)(r->end - p))) > 0)
			p += k;
		else
			return -1;
	}
	if (p == r->end)
		return -1;
	*s_r = (const char *)start;
	*n_r = (size_t)(p - start);
	r->p = p + 1;
	return 0;
}

/* Integers only: jansson reads reals through strtod, whose rounding is
 * not worth copying.  "-0" is 0 to both. */
static json_t *
read_integer(struct reader *r)
{
	const unsigned char *p = r->p;
	json_int_t v = 0;
	int neg = 0, n = 0;

	if (*p == '-') {
		neg = 1;
		if (++p == r->end)
			return NULL;
	}
	if (*p == '0' && p + 1 < r->end && p[1] >= '0' && p[1] <= '9')
		return NULL; /* a leading zero: jansson's "invalid token" */
	for (; p < r->end && *p >= '0' && *p <= '9'; p++) {
		if (++n > READ_MAX_DIGITS)
			return NULL;
		v = v * 10 + (*p - '0');
	}
	if (n == 0 || (p < r->end && (*p == '.' || *p == 'e' || *p == 'E')))
		return NULL;
	r->p = p;
	return json_integer(neg ? -v : v);
}

/* true, false, null.  A letter right after one ("truex") is jansson's
 * invalid token; the caller declines it, as anything but a separator
 * after a value. */
static json_t *
read_word(struct reader *r, const char *w, size_t n, json_t *v)
{
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
		return NULL;
	r->p += n;
	return v;
}

/* After a member of an object or array: 1 at the closing bracket, 0 at
 * a comma (both taken, with the space after a comma), -1 at anything
 * else. */
static int
after_member(struct reader *r, int close)
{
	skip_space(r);
	if (peek(r) == close) {
		r->p++;
		return 1;
	}
	if (peek(r) != ',')
		return -1;
	r->p++;
	skip_space(r);
	return 0;
}

static json_t *
read_object(struct reader *r)
{
	json_t *obj, *v;
	const char *key;
	size_t klen;
	int end;

	if ((obj = json_object()) == NULL)
		return NULL;
	r->p++;
	skip_space(r);
	if (peek(r) == '}') {
		r->p++;
		return obj;
	}
	for (;;) {
		if (peek(r) != '"' || read_string(r, &key, &klen) == -1)
			break;
		skip_space(r);
		if (peek(r) != ':')
			break;
		r->p++;
		skip_space(r);
		if ((v = read_value(r)) == NULL)
			break;
		/* A repeated key replaces the value in place, as in
		 * json_loadb without JSON_REJECT_DUPLICATES: it is the same
		 * call.  It takes v even when it fails. */
		if (json_object_setn_new_nocheck(obj, key, klen, v) == -1 ||
		    (end = after_member(r, '}')) == -1)
			break;
		if (end)
			return obj;
	}
	json_decref(obj);
	return NULL;
}

static json_t *
read_array(struct reader *r)
{
	json_t *arr, *v;
	int end;

	if ((arr = json_array()) == NULL)
		return NULL;
	r->p++;
	skip_space(r);
	if (peek(r) == ']') {
		r->p++;
		return arr;
	}
	for (;;) {
		if ((v = read_value(r)) == NULL ||
		    json_array_append_new(arr, v) == -1 ||
		    (end = after_member(r, ']')) == -1)
			break;
		if (end)
			return arr;
	}
	json_decref(arr);
	return NULL;
}

static json_t *
read_value(struct reader *r)
{
	const char *s;
	size_t n;
	json_t *v;
	int c = peek(r);

	switch (c) {
	case '{':
	case '[':
		if (r->depth == READ_MAX_DEPTH)
			return NULL;
		r->depth++;
		v = c == '{' ? read_object(r) : read_array(r);
		r->depth--;
		return v;
	case '"':
		if (read_string(r, &s, &n) == -1)
			return NULL;
		return json_stringn_nocheck(s, n);
	case 't':
		return read_word(r, "true", 4, json_true());
	case 'f':
		return read_word(r, "false", 5, json_false());
	case 'n':
		return read_word(r, "null", 4, json_null());
	case '-':
		return read_integer(r);
	default:
		if (c >= '0' && c <= '9')
			return read_integer(r);
		return NULL;
	}
}

json_t *
json_read_fast(const char *buf, size_t len)
{
	struct reader r;
	json_t *v = NULL;

	if (buf == NULL)
		return NULL;
	memset(&r, 0, sizeof(r));
	r.p = (const unsigned char *)buf;
	r.end = r.p + len;
	skip_space(&r);
	/* With flags 0 jansson takes no scalar at the top. */
	if (peek(&r) == '{' || peek(&r) == '[')
		v = read_value(&r);
	skip_space(&r);
	if (v != NULL && r.p != r.end) {
		json_decref(v);
		v = NULL;
	}
	free(r.scratch);
	return v;
}

json_t *
json_read(const char *buf, size_t len, json_error_t *err)
{
	json_t *v;

	if ((v = json_read_fast(buf, len)) == NULL)
		return json_loadb(buf, len, 0, err);
	/* What json_loadb leaves on success: jsonp_error_init() for
	 * "<buffer>", then the position after the whole input. */
	if (err != NULL) {
		err->text[0] = '\0';
		err->line = -1;
		err->column = -1;
		err->position = (int)len;
		strcpy(err->source, "<buffer>");
	}
	return v;
}
