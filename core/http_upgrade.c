/*
 * http_upgrade.c: the RFC 6455 opening handshake, and nothing else of HTTP.
 *
 * The daemon speaks exactly one kind of HTTP request: a GET that asks to
 * become a WebSocket.  So this is not a general HTTP parser but a strict,
 * bounded recogniser for that request.  Anything it does not understand is
 * refused with 400 rather than guessed at: lenient parsing of framing
 * details (bare LF, obs-fold, whitespace before the colon) is what request
 * smuggling is made of, and no real WebSocket client needs it.
 *
 * The parser never allocates and never copies: every field of struct
 * http_request points into the caller's buffer, which must outlive it.  It
 * reads only the len bytes it is given and looks at each a bounded number
 * of times, so a request head costs time linear in its size, and the size
 * is capped by the caller (max_header_size) before we are ever called.
 *
 * Responses are written straight into a libevent output buffer.
 *
 * Besides the upgrade, the WebSocket listener answers one plain GET: the
 * discovery document at /.well-known/wsplugd, which tells a client (a
 * browser page above all, whose WebSocket API hides the status of a failed
 * handshake) where the endpoint is and how to back off, so that it can tell
 * "no such endpoint, stop" from "try again later".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "wsplugd.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24 /* base64 of 16 bytes */
/* Keys are 24 characters once checked; the slack only keeps
 * http_accept_key() from truncating silently if handed something else. */
#define WS_KEY_MAX 64

/* Seconds a 503 asks the client to wait (Retry-After).  A refusal for
 * load or a restart clears within seconds; clients add their own jitter on
 * top, so one fixed hint does not bring them all back at once. */
#define HTTP_RETRY_AFTER_S 5
/* The backoff the discovery document recommends, in milliseconds: the
 * schedule the shipped client uses by default. */
#define HTTP_BACKOFF_BASE_MS 1000
#define HTTP_BACKOFF_CAP_MS 30000
/* The version of the JSON message protocol the document announces. */
#define HTTP_PROTOCOL_VERSION 1

static int
fail(const char **why_r, const char *why)
{
	if (why_r != NULL)
		*why_r = why;
	return 400;
}

/*
 * Byte classes, one load a byte where compares and a switch took a dozen
 * instructions: C_TCHAR, RFC 7230 3.2.6 tchar; C_VALUE, a header value's
 * byte (visible, SP, HTAB, obs-text: no other control character and no
 * DEL); C_B64, base64's alphabet (RFC 4648 4).
 */
#define C_TCHAR 1
#define C_VALUE 2
#define C_B64 4 /* the base64 alphabet, for Sec-WebSocket-Key */
#define C_T (C_TCHAR | C_VALUE)
#define C_V C_VALUE
#define C_TB (C_T | C_B64)
static const unsigned char http_class[256] = {
	['!'] = C_T, ['#' ... '\''] = C_T, ['*'] = C_T, ['+'] = C_TB,
	['-'] = C_T, ['.'] = C_T, ['0' ... '9'] = C_TB, ['A' ... 'Z'] = C_TB,
	['^' ... '`'] = C_T, ['a' ... 'z'] = C_TB, ['|'] = C_T, ['~'] = C_T,
	['\t'] = C_V, [' '] = C_V, ['"'] = C_V, ['('] = C_V, [')'] = C_V,
	[','] = C_V, ['/'] = C_V | C_B64, [':' ... '@'] = C_V, ['['] = C_V,
	['\\'] = C_V, [']'] = C_V, ['{'] = C_V, ['}'] = C_V,
	[0x80 ... 0xff] = C_V, /* obs-text */
};

static int
is_tchar(unsigned char c)
{
	return http_class[c] & C_TCHAR;
}

static int
is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * ASCII-only, so the answer cannot depend on whatever locale the daemon or
 * a plugin has set; strncasecmp() does.  b is lower case.
 */
static int
lower_eq(const char *a, size_t n, const char *b)
{
	size_t i;
	unsigned char c;

	if (strlen(b) != n)
		return 0;
	for (i = 0; i < n; i++) {
		c = (unsigned char)a[i];
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != (unsigned char)b[i])
			return 0;
	}
	return 1;
}

/*
 * A header name (n tchars) against one of ours (lower-case letters and
 * '-'), eight bytes at a time: setting bit 5 lower-cases a letter, and
 * turns no other tchar into a letter or '-' (0x0d, the only byte it
 * makes '-', is not one), so the compare is exact.  Every request has
 * half a dozen names to look up.
 */
static int
name_eq(const char *a, const char *b, size_t n)
{
	uint64_t x, y;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if ((x | 0x2020202020202020ULL) != y)
			return 0;
	}
	for (; i < n; i++)
		if (((unsigned char)a[i] | 0x20) != (unsigned char)b[i])
			return 0;
	return 1;
}

static int
str_eq(const struct http_str *s, const char *lit)
{
	size_t n = strlen(lit);

	return s->p != NULL && s->n == n && memcmp(s->p, lit, n) == 0;
}

size_t
http_head_length(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len, *lf;

	/* Line by line, so that a bare LF ends the head where it stands: the
	 * parser refuses it with 400 at once, instead of the head waiting
	 * for a CRLFCRLF that a client ending lines in LF never sends (and
	 * running into handshake_timeout or max_header_size).  glibc's
	 * memchr is fast on the short lines we see; rescanning from the start
	 * on every read keeps the caller free of parser state, and
	 * max_header_size bounds the cost. */
	while ((lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lf == buf || lf[-1] != '\r')
			return (size_t)(lf - buf) + 1;
		if (lf - buf >= 3 && lf[-2] == '\n' && lf[-3] == '\r')
			return (size_t)(lf - buf) + 1;
		p = lf + 1;
	}
	return 0;
}

/*
 * The line starting at p ends at the CR of the returned CRLF.  A CR
 * elsewhere in the line is left for the callers, which refuse it as a
 * control character.
 */
static const char *
line_end(const char *p, const char *end, const char **why_r)
{
	const char *lf;

	if (p == end || (lf = memchr(p, '\n', (size_t)(end - p))) == NULL) {
		fail(why_r, "truncated request head");
		return NULL;
	}
	if (lf == p || lf[-1] != '\r') {
		fail(why_r, "bare LF in request head");
		return NULL;
	}
	return lf - 1;
}

/*
 * Does [v, end) hold only a header value's bytes?  Where SSE2 is (every
 * amd64), sixteen at a time, and the tail as the last sixteen of the
 * value again: a byte up to 0x1f that is not a tab, or a 0x7f, is a
 * fault (bytes from 0x80 are obs-text).  A User-Agent is a hundred bytes
 * of every request, and eight bytes at a time was still 380 instructions
 * a request.  Shorter values, and every value elsewhere, eight at a
 * time: a word with no byte below 0x20 and none equal to 0x7f is all
 * value bytes; from the first word with one of those (a tab, or a
 * fault), byte by byte.
 */
static int
value_ok(const char *v, const char *end)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = ones * 0x80;
	uint64_t x, d;

#ifdef __SSE2__
	if (end - v >= 16) {
		const char *last = end - 16;
		__m128i b, bad;

		for (;;) {
			b = _mm_loadu_si128((const __m128i *)v);
			bad = _mm_or_si128(_mm_andnot_si128(
			    _mm_cmpeq_epi8(b, _mm_set1_epi8('\t')),
			    _mm_cmpeq_epi8(_mm_min_epu8(b, _mm_set1_epi8(0x1f)),
			    b)), _mm_cmpeq_epi8(b, _mm_set1_epi8(0x7f)));
			if (_mm_movemask_epi8(bad) != 0)
				return 0;
			if (v == last)
				return 1;
			v = end - v >= 32 ? v + 16 : last;
		}
	}
#endif
	for (; end - v >= 8; v += 8) {
		memcpy(&x, v, 8);
		d = x ^ (ones * 0x7f);
		/* a byte below 0x20, or a zero byte of d (a 0x7f in x) */
		if ((((x - ones * 0x20) & ~x) | ((d - ones) & ~d)) & highs)
			break;
	}
	for (; v < end; v++)
		if (!(http_class[(unsigned char)*v] & C_VALUE))
			return 0;
	return 1;
}

/* METHOD SP origin-form SP HTTP/1.1, between p and the CR at eol. */
static int
parse_request_line(const char *p, const char *eol, struct http_request *req,
    const char **why_r)
{
	const char *q, *t, *v;
	unsigned char c;

	for (q = p; q < eol && is_tchar((unsigned char)*q); q++)
		;
	if (q == p || q == eol || *q != ' ')
		return fail(why_r, "malformed request line");
	req->method.p = p;
	req->method.n = (size_t)(q - p);

	/* Origin-form only: absolute-form and "*" are for proxies and
	 * OPTIONS, neither of which opens a WebSocket.  Clients send the
	 * target percent-encoded, so anything outside visible ASCII is a
	 * broken or hostile client; '#' never belongs in a request. */
	t = q + 1;
	if (t == eol || *t == ' ')
		return fail(why_r, "malformed request line");
	if (*t != '/')
		return fail(why_r, "request target not in origin form");
	for (v = t; v < eol && *v != ' '; v++) {
		c = (unsigned char)*v;
		if (c < 0x21 || c > 0x7e || c == '#')
			return fail(why_r, "invalid character in request target");
	}
	if (v == eol)
		return fail(why_r, "malformed request line");
	req->target.p = t;
	req->target.n = (size_t)(v - t);
	req->path.p = t;
	if ((q = memchr(t, '?', req->target.n)) != NULL)
		req->path.n = (size_t)(q - t);
	else
		req->path.n = req->target.n;

	/* RFC 6455 4.1 requires 1.1; a 1.0 client cannot have sent a valid
	 * handshake, so it gets the same 400 as garbage, with a clearer
	 * reason. */
	v++;
	if (eol - v == 8 && memcmp(v, "HTTP/1.1", 8) == 0)
		return 0;
	if (eol - v == 8 && memcmp(v, "HTTP/", 5) == 0 &&
	    v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
	    v[7] >= '0' && v[7] <= '9')
		return fail(why_r, "HTTP version is not 1.1");
	return fail(why_r, "malformed request line");
}

/*
 * Does the comma-separated list in [p, end) hold tok (lower case)?  Empty
 * elements are allowed (RFC 7230 7).  With slash set, an element is
 * compared only up to a '/': "Upgrade: websocket/13" names websocket.
 */
static int
list_has(const char *p, const char *end, const char *tok, int slash)
{
	const char *e, *a, *b, *s;

	for (;;) {
		if ((e = memchr(p, ',', (size_t)(end - p))) == NULL)
			e = end;
		for (a = p; a < e && is_ows(*a); a++)
			;
		for (b = e; b > a && is_ows(b[-1]); b--)
			;
		if (slash && (s = memchr(a, '/', (size_t)(b - a))) != NULL)
			b = s;
		if (lower_eq(a, (size_t)(b - a), tok))
			return 1;
		if (e == end)
			return 0;
		p = e + 1;
	}
}

/*
 * The headers we look at.  Single-valued ones are refused when repeated:
 * two Hosts or two keys mean the client, or something between it and us,
 * is confused about where one request ends, and we would rather not pick.
 * User-Agent is only logged, so a repeat keeps the first.
 */
enum hdr_kind { HDR_ONCE, HDR_FIRST, HDR_PROTOCOL, HDR_EXTENSIONS,
    HDR_UPGRADE, HDR_CONNECTION };

#define HDR_NAME(lit) lit, sizeof(lit) - 1

static const struct hdr {
	const char *name; /* lower case */
	size_t len;       /* of name: no strlen for every header read */
	enum hdr_kind kind;
	size_t off; /* of the struct http_str, for HDR_ONCE and HDR_FIRST */
	const char *dup;
} hdrs[] = {
	{ HDR_NAME("host"), HDR_ONCE,
	    offsetof(struct http_request, host),
	    "duplicate Host header" },
	{ HDR_NAME("upgrade"), HDR_UPGRADE, 0, NULL },
	{ HDR_NAME("connection"), HDR_CONNECTION, 0, NULL },
	{ HDR_NAME("sec-websocket-key"), HDR_ONCE,
	    offsetof(struct http_request, key),
	    "duplicate Sec-WebSocket-Key header" },
	{ HDR_NAME("sec-websocket-version"), HDR_ONCE,
	    offsetof(struct http_request, version),
	    "duplicate Sec-WebSocket-Version header" },
	{ HDR_NAME("origin"), HDR_ONCE,
	    offsetof(struct http_request, origin),
	    "duplicate Origin header" },
	{ HDR_NAME("user-agent"), HDR_FIRST,
	    offsetof(struct http_request, user_agent),
	    NULL },
	{ HDR_NAME("sec-websocket-protocol"), HDR_PROTOCOL, 0, NULL },
	{ HDR_NAME("sec-websocket-extensions"), HDR_EXTENSIONS, 0, NULL },
};

static int
header_store(struct http_request *req, const char *name, size_t namelen,
    const char *v, size_t vlen, const char **why_r)
{
	const struct hdr *h;
	struct http_str *s;
	size_t i;

	for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
		if (namelen == hdrs[i].len &&
		    name_eq(name, hdrs[i].name, namelen))
			break;
	if (i == sizeof(hdrs) / sizeof(hdrs[0]))
		return 0;
	h = &hdrs[i];

	switch (h->kind) {
	case HDR_ONCE:
	case HDR_FIRST:
		/* p is never NULL once stored, even for an empty value, so it
		 * tells "absent" from "empty". */
		s = (void *)((char *)req + h->off);
		if (s->p != NULL) {
			if (h->kind == HDR_ONCE)
				return fail(why_r, h->dup);
			break;
		}
		s->p = v;
		s->n = vlen;
		break;
	case HDR_PROTOCOL:
		if (req->nprotocols == HTTP_MAX_PROTOCOL_HEADERS)
			return fail(why_r,
			    "too many Sec-WebSocket-Protocol headers");
		req->protocols[req->nprotocols].p = v;
		req->protocols[req->nprotocols].n = vlen;
		req->nprotocols++;
		break;
	case HDR_EXTENSIONS:
		/* Read by deflate.c.  Too many is the extensions' problem,
		 * not the request's: they are declined, the upgrade goes on. */
		if (req->nextensions == HTTP_MAX_PROTOCOL_HEADERS) {
			req->extensions_overflow = 1;
			break;
		}
		req->extensions[req->nextensions].p = v;
		req->extensions[req->nextensions].n = vlen;
		req->nextensions++;
		break;
	case HDR_UPGRADE:
		if (list_has(v, v + vlen, "websocket", 1))
			req->upgrade_websocket = 1;
		break;
	case HDR_CONNECTION:
		if (list_has(v, v + vlen, "upgrade", 0))
			req->connection_upgrade = 1;
		break;
	}
	return 0;
}

/*
 * The end of the run of tchars at p, before eol.  Names are letters,
 * digits and '-' but for a few other tchars: where SSE2 is, sixteen such
 * bytes a step, then byte by byte from the first other byte (a ':', or
 * one of the rest) with the table.  A request has a dozen names, and a
 * table load a byte was 460 instructions of every request.
 */
static const char *
tchar_span(const char *p, const char *eol)
{
#ifdef __SSE2__
	while (eol - p >= 16) {
		__m128i b = _mm_loadu_si128((const __m128i *)p), l, ok;
		unsigned other;

		/* b | 0x20 is a lower-case letter exactly when b is a letter;
		 * bytes from 0x80 compare as negative, in no range */
		l = _mm_or_si128(b, _mm_set1_epi8(0x20));
		ok = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
		    _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)));
		ok = _mm_or_si128(ok, _mm_and_si128(
		    _mm_cmpgt_epi8(b, _mm_set1_epi8('0' - 1)),
		    _mm_cmplt_epi8(b, _mm_set1_epi8('9' + 1))));
		ok = _mm_or_si128(ok, _mm_cmpeq_epi8(b, _mm_set1_epi8('-')));
		if ((other = ~(unsigned)_mm_movemask_epi8(ok) & 0xffff) != 0) {
			p += __builtin_ctz(other);
			break;
		}
		p += 16;
	}
#endif
	while (p < eol && is_tchar((unsigned char)*p))
		p++;
	return p;
}

/* name ":" OWS value OWS, between p and the CR at eol. */
static int
parse_header(const char *p, const char *eol, struct http_request *req,
    const char **why_r)
{
	const char *q, *v, *ve;

	/* obs-fold would let a value hide on the next line; RFC 7230 3.2.4
	 * allows a server to refuse it with 400. */
	if (is_ows(*p))
		return fail(why_r, "obsolete line folding");
	q = tchar_span(p, eol);
	if (q == eol)
		return fail(why_r, "header line without colon");
	if (*q == ':' && q == p)
		return fail(why_r, "empty header name");
	/* RFC 7230 3.2.4: MUST reject with 400. */
	if (is_ows(*q))
		return fail(why_r, "whitespace before colon");
	if (*q != ':')
		return fail(why_r, "invalid character in header name");

	/* Values may hold obs-text (bytes >= 0x80: a user agent in UTF-8)
	 * and HTAB, but no other control character; a stray CR here is how
	 * a bare CR line ending shows up. */
	if (!value_ok(q + 1, eol))
		return fail(why_r, "control character in header value");
	for (v = q + 1; v < eol && is_ows(*v); v++)
		;
	for (ve = eol; ve > v && is_ows(ve[-1]); ve--)
		;
	return header_store(req, p, (size_t)(q - p), v, (size_t)(ve - v),
	    why_r);
}

int
http_request_parse(const char *buf, size_t len, struct http_request *req,
    const char **why_r)
{
	const char *p, *eol, *end = buf + len;

	memset(req, 0, sizeof(*req));

	if ((eol = line_end(buf, end, why_r)) == NULL)
		return 400;
	if (parse_request_line(buf, eol, req, why_r) != 0)
		return 400;

	for (p = eol + 2;; p = eol + 2) {
		if ((eol = line_end(p, end, why_r)) == NULL)
			return 400;
		if (eol == p)
			break;
		if (parse_header(p, eol, req, why_r) != 0)
			return 400;
	}

	/* The caller hands us exactly http_head_length() bytes.  Anything
	 * after the blank line is a client that did not wait for our 101,
	 * or a caller bug; either way, not something to ignore quietly. */
	if (eol + 2 != end)
		return fail(why_r, "data after request head");
	return 0;
}

/* base64 of exactly 16 bytes: 22 characters of the alphabet, then "==". */
static int
key_valid(const struct http_str *key)
{
	unsigned all = C_B64;
	size_t i;

	if (key->n != WS_KEY_LEN)
		return 0;
	/* one load and one and a character, no early exit: every key a
	 * handshake sends is checked, and nearly all are good */
	for (i = 0; i < WS_KEY_LEN - 2; i++)
		all &= http_class[(unsigned char)key->p[i]];
	if (all == 0)
		return 0;
	/* The unused low bits of the 22nd character are not checked: the key
	 * is only ever hashed, and RFC 4648 3.5 leaves rejecting them to the
	 * decoder's taste. */
	return key->p[22] == '=' && key->p[23] == '=';
}

int
http_upgrade_check(const struct http_request *req, const char *path,
    const char **why_r)
{
	const char *why;
	int status;

	/* Path first: a scanner probing URLs learns only "not here", not
	 * which of its headers we disliked. */
	if (req->path.p == NULL || req->path.n != strlen(path) ||
	    memcmp(req->path.p, path, req->path.n) != 0) {
		status = 404;
		why = "no WebSocket endpoint at this path";
	} else if (!str_eq(&req->method, "GET")) {
		status = 405;
		why = "method not allowed";
	} else if (req->host.p == NULL || req->host.n == 0) {
		status = 400;
		why = "missing Host header";
	} else if (!req->upgrade_websocket) {
		status = 400;
		why = "Upgrade header does not name websocket";
	} else if (!req->connection_upgrade) {
		status = 400;
		why = "Connection header does not list upgrade";
	} else if (!str_eq(&req->version, "13")) {
		/* RFC 6455 4.2.2 asks for an error naming the versions we
		 * speak; a missing version gets the same answer, since the
		 * Sec-WebSocket-Version: 13 in a 426 tells a client without
		 * one exactly what to send. */
		status = 426;
		why = req->version.p == NULL ?
		    "missing Sec-WebSocket-Version header" :
		    "unsupported Sec-WebSocket-Version";
	} else if (req->key.p == NULL) {
		status = 400;
		why = "missing Sec-WebSocket-Key header";
	} else if (!key_valid(&req->key)) {
		status = 400;
		why = "Sec-WebSocket-Key is not base64 of 16 bytes";
	} else
		return 0;

	if (why_r != NULL)
		*why_r = why;
	return status;
}

/* SHA-1 of p[0..n) into md.  OpenSSL 3's SHA1() looks the algorithm up
 * in its provider on every call, a tenth of a handshake's instructions:
 * the algorithm is fetched and a context allocated once, and reused (the
 * daemon is single-threaded).  Should either fail, SHA1() still works. */
static void
sha1(const unsigned char *p, size_t n, unsigned char md[SHA_DIGEST_LENGTH])
{
	static EVP_MD *alg;
	static EVP_MD_CTX *ctx;
	static int unusable;

	if (!unusable && ctx == NULL) {
		if ((alg = EVP_MD_fetch(NULL, "SHA1", NULL)) == NULL ||
		    (ctx = EVP_MD_CTX_new()) == NULL) {
			EVP_MD_free(alg);
			alg = NULL;
			unusable = 1;
		}
	}
	if (unusable || !EVP_DigestInit_ex2(ctx, alg, NULL) ||
	    !EVP_DigestUpdate(ctx, p, n) || !EVP_DigestFinal_ex(ctx, md, NULL))
		SHA1(p, n, md);
}

void
http_accept_key(const struct http_str *key, char out[29])
{
	unsigned char buf[WS_KEY_MAX + sizeof(WS_GUID) - 1];
	unsigned char md[SHA_DIGEST_LENGTH];

	if (key->p == NULL || key->n > WS_KEY_MAX) {
		/* Unreachable after http_upgrade_check(); an empty accept
		 * fails the handshake rather than answering for another key. */
		out[0] = '\0';
		return;
	}
	memcpy(buf, key->p, key->n);
	memcpy(buf + key->n, WS_GUID, sizeof(WS_GUID) - 1);
	sha1(buf, key->n + sizeof(WS_GUID) - 1, md);
	/* 20 bytes encode to 28 characters plus the NUL EVP_EncodeBlock
	 * always writes: exactly out[29]. */
	EVP_EncodeBlock((unsigned char *)out, md, sizeof(md));
}

size_t
http_response_101_flat(char *buf, size_t cap, const char accept[29],
    const char *protocol, const char *extensions)
{
	static const char head[] =
	    "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: ";
	static const char proto[] = "\r\nSec-WebSocket-Protocol: ";
	static const char ext[] = "\r\nSec-WebSocket-Extensions: ";
	size_t na = strnlen(accept, 28), np = 0, nx = 0, len;
	char *p = buf;

	/* Piece by piece, not a printf: vsnprintf was about 2,000
	 * instructions, a sixteenth of a handshake's. */
	len = sizeof(head) - 1 + na + 4;
	if (protocol != NULL)
		len += sizeof(proto) - 1 + (np = strlen(protocol));
	if (extensions != NULL)
		len += sizeof(ext) - 1 + (nx = strlen(extensions));
	if (len > cap)
		return len;
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	memcpy(p, accept, na);
	p += na;
	if (protocol != NULL) {
		memcpy(p, proto, sizeof(proto) - 1);
		memcpy(p + sizeof(proto) - 1, protocol, np);
		p += sizeof(proto) - 1 + np;
	}
	if (extensions != NULL) {
		memcpy(p, ext, sizeof(ext) - 1);
		memcpy(p + sizeof(ext) - 1, extensions, nx);
		p += sizeof(ext) - 1 + nx;
	}
	memcpy(p, "\r\n\r\n", 4);
	return len;
}

void
http_response_101(struct evbuffer *out, const char accept[29],
    const char *protocol, const char *extensions)
{
	size_t len = http_response_101_flat(NULL, 0, accept, protocol,
	    extensions);
	struct evbuffer_iovec v;

	/* On ENOMEM nothing is added and the client sees a broken
	 * handshake; the connection is failing either way. */
	if (evbuffer_reserve_space(out, (ev_ssize_t)len, &v, 1) != 1 ||
	    v.iov_len < len)
		return;
	(void)http_response_101_flat(v.iov_base, len, accept, protocol,
	    extensions);
	v.iov_len = len;
	(void)evbuffer_commit_space(out, &v, 1);
}

void
http_response_error(struct evbuffer *out, int status, const char *why)
{
	http_response_retry(out, status, why, HTTP_RETRY_AFTER_S);
}

void
http_response_retry(struct evbuffer *out, int status, const char *why,
    unsigned retry_after_s)
{
	char retry[160];
	const char *extra = "";

	if (why == NULL)
		why = http_status_text(status);
	/* RFC 6455 4.2.2 wants the versions we speak on a version refusal;
	 * RFC 7231 6.5.5 wants the allowed methods on a 405. */
	if (status == 426)
		extra = "Sec-WebSocket-Version: 13\r\n";
	else if (status == 405)
		extra = "Allow: GET\r\n";
	else if (status == 410)
		/* A page may read why it must stop, as it reads a 503. */
		extra = "Access-Control-Allow-Origin: *\r\n";
	else if (status == 503) {
		/* RFC 9110 10.2.3; the CORS headers let a page on another
		 * origin read the hint with fetch(). */
		snprintf(retry, sizeof(retry), "Retry-After: %d\r\n"
		    "Access-Control-Allow-Origin: *\r\n"
		    "Access-Control-Expose-Headers: Retry-After\r\n",
		    retry_after_s);
		extra = retry;
	}
	evbuffer_add_printf(out,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n"
	    "Connection: close\r\n"
	    "%s"
	    "\r\n"
	    "%s\n",
	    status, http_status_text(status), strlen(why) + 1, extra, why);
}

int
http_wellknown(const struct http_request *req, const char *path,
    int origin_ok, struct evbuffer *out)
{
	return http_wellknown_gone(req, path, NULL, 0, origin_ok, out);
}

int
http_wellknown_gone(const struct http_request *req, const char *path,
    char *const *gone, size_t ngone, int origin_ok, struct evbuffer *out)
{
	static const char head[] =
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-cache\r\n"
	    "Access-Control-Allow-Origin: *\r\n"
	    "Connection: close\r\n"
	    "\r\n";
	json_t *doc, *list;
	char *text;
	int status;
	size_t i;

	if (!str_eq(&req->path, HTTP_WELLKNOWN_PATH) ||
	    !(str_eq(&req->method, "GET") || str_eq(&req->method, "HEAD")))
		return 0;
	/* A page whose origin the endpoint refuses learns that here: the
	 * same verdict its upgrade got, in a status it can read. */
	if (origin_ok) {
		status = 200;
		doc = json_pack("{s:s, s:s, s:i, s:s, s:{s:i, s:i, s:s}, s:i}",
		    "service", "wsplugd", "version", PACKAGE_VERSION,
		    "protocol", HTTP_PROTOCOL_VERSION, "endpoint", path,
		    "backoff", "base_ms", HTTP_BACKOFF_BASE_MS,
		    "cap_ms", HTTP_BACKOFF_CAP_MS, "jitter", "full",
		    "retry_after_s", HTTP_RETRY_AFTER_S);
		/* endpoints and gone: a client whose endpoint is listed
		 * gone stops rather than retrying; retry_slots says
		 * that 1012 and 1013 closes name the time to come back
		 * in their reason. */
		if (doc != NULL) {
			json_object_set_new(doc, "endpoints",
			    json_pack("[s]", path));
			list = json_array();
			for (i = 0; i < ngone; i++)
				json_array_append_new(list,
				    json_string(gone[i]));
			json_object_set_new(doc, "gone", list);
			json_object_set_new(doc, "retry_slots",
			    json_pack("{s:[i,i], s:s}",
			    "close_codes", WS_CLOSE_SERVICE_RESTART,
			    WS_CLOSE_TRY_AGAIN, "reason", "retry_after_ms"));
		}
	} else {
		status = 403;
		doc = json_pack("{s:s, s:s}", "error", "origin",
		    "detail", "origin not allowed");
	}
	text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (text == NULL) {
		http_response_error(out, 500, NULL);
		return 500;
	}
	evbuffer_add_printf(out, head, status, http_status_text(status),
	    strlen(text) + 1);
	if (!str_eq(&req->method, "HEAD"))
		evbuffer_add_printf(out, "%s\n", text);
	free(text);
	return status;
}

const char *
http_status_text(int status)
{
	switch (status) {
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 402:
		return "Payment Required";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 421:
		return "Misdirected Request";
	case 426:
		return "Upgrade Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 451:
		return "Unavailable For Legal Reasons";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	}
	return "Error";
}
