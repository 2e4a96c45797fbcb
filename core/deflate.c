/*
 * deflate.c: permessage-deflate negotiation (RFC 7692 sections 5 to 7).
 *
 * A pure function of the request's Sec-WebSocket-Extensions headers and
 * the server's policy: it reads the client's offers in order, takes the
 * first permessage-deflate offer it can accept, and says what to answer in
 * the 101.  No allocation, no I/O, no zlib: the streams are zstream.c's.
 *
 * The grammar is RFC 6455 9.1 (extension-list, extension-param with a
 * token or quoted-string value) with RFC 7230's list rules: empty list
 * elements and optional whitespace are allowed.  What is wrong decides how
 * much is refused, and never the connection, since RFC 7692 lets a server
 * simply not accept the extension:
 *   - an offer with an unknown parameter, a repeated one, or a value out of
 *     range is declined (section 7), and the next offer is considered;
 *   - a header that does not parse is a list we cannot split reliably, so
 *     every offer is declined and the connection goes on uncompressed.
 *
 * server_max_window_bits=8 is declined too: zlib (since 1.2.9) cannot
 * compress raw deflate with a 256-byte window, and compressing with a
 * larger one would break the client's promise to itself.
 */
#include <stdio.h>
#include <string.h>

#include "wsplugd.h"

static const char PMD[] = "permessage-deflate";

struct pmd_offer {
	uint8_t snct, cnct; /* *_no_context_takeover given */
	uint8_t smwb;       /* server_max_window_bits, 0 if absent */
	uint8_t cmwb;       /* client_max_window_bits: 0 absent, 1 no value */
	uint8_t bad;        /* a parameter the RFC says to decline for */
};

struct pmd_scan {
	const char *p, *end;
};

static int
pmd_is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void
pmd_ows(struct pmd_scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
		s->p++;
}

/* A token at s->p; 0 when there is none. */
static size_t
pmd_token(struct pmd_scan *s, const char **tok)
{
	*tok = s->p;
	while (s->p < s->end && pmd_is_tchar((unsigned char)*s->p))
		s->p++;
	return (size_t)(s->p - *tok);
}

static int
pmd_name_is(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/*
 * A window-bits value: "8".."15" without leading zeros (RFC 7692 7.1.2.1
 * gives the ABNF), from a token or the unescaped body of a quoted string.
 * Returns 8..15, or 0 when it is not one.
 */
static unsigned
pmd_wbits(const char *v, size_t n)
{
	if (n == 1 && v[0] >= '8' && v[0] <= '9')
		return (unsigned)(v[0] - '0');
	if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
		return 10 + (unsigned)(v[1] - '0');
	return 0;
}

/*
 * A parameter value after '=': a token, or a quoted-string whose unescaped
 * body is a token (RFC 6455 9.1).  The body is copied unescaped into buf.
 * Returns its length, or -1 on a syntax error; a body that is not a token
 * or does not fit buf is a valid header but an invalid value: -2.
 */
static int
pmd_value(struct pmd_scan *s, char *buf, size_t size)
{
	const char *tok;
	size_t n = 0, len;
	int toolong = 0;

	if (s->p < s->end && *s->p != '"') {
		if ((len = pmd_token(s, &tok)) == 0)
			return -1;
		if (len > size)
			return -2;
		memcpy(buf, tok, len);
		return (int)len;
	}
	if (s->p == s->end)
		return -1;
	s->p++; /* the opening quote */
	for (;;) {
		unsigned char ch;

		if (s->p == s->end)
			return -1; /* unterminated */
		ch = (unsigned char)*s->p++;
		if (ch == '"')
			break;
		if (ch == '\\') {
			if (s->p == s->end)
				return -1;
			ch = (unsigned char)*s->p++;
		}
		/* qdtext and quoted-pair: HTAB, SP, VCHAR, obs-text */
		if (ch < 0x20 && ch != '\t')
			return -1;
		if (ch == 0x7f)
			return -1;
		if (!pmd_is_tchar(ch) || n == size)
			toolong = 1; /* not a token after all, or too long */
		else
			buf[n++] = (char)ch;
	}
	if (toolong || n == 0)
		return -2;
	return (int)n;
}

/* One parameter of a permessage-deflate offer into o. */
static void
pmd_param(struct pmd_offer *o, const char *name, size_t nlen, int has_value,
    int vlen, const char *v)
{
	unsigned bits = vlen > 0 ? pmd_wbits(v, (size_t)vlen) : 0;

	if (pmd_name_is(name, nlen, "server_no_context_takeover")) {
		if (o->snct || has_value)
			o->bad = 1;
		o->snct = 1;
	} else if (pmd_name_is(name, nlen, "client_no_context_takeover")) {
		if (o->cnct || has_value)
			o->bad = 1;
		o->cnct = 1;
	} else if (pmd_name_is(name, nlen, "server_max_window_bits")) {
		if (o->smwb || !has_value || bits == 0)
			o->bad = 1;
		o->smwb = (uint8_t)(bits ? bits : 15);
	} else if (pmd_name_is(name, nlen, "client_max_window_bits")) {
		if (o->cmwb || (has_value && bits == 0))
			o->bad = 1;
		o->cmwb = (uint8_t)(has_value ? (bits ? bits : 15) : 1);
	} else
		o->bad = 1;
}

/*
 * Read one extension (name and parameters) at s->p.  Returns 1 when it was
 * permessage-deflate (then *o holds the offer), 0 for another extension,
 * -1 on a syntax error.  Leaves s->p at the ',' or the end.
 */
static int
pmd_extension(struct pmd_scan *s, struct pmd_offer *o)
{
	const char *name, *pname;
	size_t nlen, plen;
	char val[16];
	int ours, has_value, vlen;

	memset(o, 0, sizeof(*o));
	if ((nlen = pmd_token(s, &name)) == 0)
		return -1;
	ours = pmd_name_is(name, nlen, PMD);
	for (;;) {
		pmd_ows(s);
		if (s->p == s->end || *s->p == ',')
			return ours;
		if (*s->p != ';')
			return -1;
		s->p++;
		pmd_ows(s);
		if ((plen = pmd_token(s, &pname)) == 0)
			return -1;
		pmd_ows(s);
		has_value = 0;
		vlen = 0;
		if (s->p < s->end && *s->p == '=') {
			s->p++;
			pmd_ows(s);
			has_value = 1;
			if ((vlen = pmd_value(s, val, sizeof(val))) == -1)
				return -1;
		}
		if (ours)
			pmd_param(o, pname, plen, has_value, vlen, val);
	}
}

/* Can the policy accept offer o?  Fills out when it can. */
static int
pmd_accept(const struct pmd_offer *o, const struct deflate_policy *pol,
    struct deflate_params *out)
{
	unsigned s = pol->server_wbits, c = pol->client_wbits;

	if (o->bad)
		return 0;
	if (o->smwb == 8)
		return 0; /* zlib cannot keep to it; see the top of the file */
	memset(out, 0, sizeof(*out));
	if (o->smwb != 0 && o->smwb < s)
		s = o->smwb;
	out->server_wbits = (uint8_t)s;
	/* The answer must carry it when the client asked for a limit, and
	 * may when we want a smaller window than the default 15. */
	out->answer_server_wbits = o->smwb != 0 || s < 15;
	out->server_no_takeover = o->snct || !pol->context_takeover;
	/* Said in the answer, it binds the client; the offer alone is only a
	 * hint, so it is echoed to become one we may rely on. */
	out->client_no_takeover = o->cnct || !pol->context_takeover;
	if (o->cmwb == 0) {
		/* Without the parameter in the offer the answer must not have
		 * it, and the client may use the full window. */
		out->client_wbits = 15;
	} else {
		if (o->cmwb > 1 && o->cmwb < c)
			c = o->cmwb;
		out->client_wbits = (uint8_t)c;
		out->answer_client_wbits = c < 15 || o->cmwb > 1;
	}
	return 1;
}

int
deflate_negotiate(const struct http_str *hdrs, size_t n,
    const struct deflate_policy *pol, struct deflate_params *out)
{
	struct pmd_scan s;
	struct pmd_offer o;
	struct deflate_params p;
	int found = 0, r;
	size_t i;

	for (i = 0; i < n; i++) {
		s.p = hdrs[i].p;
		s.end = hdrs[i].p + hdrs[i].n;
		for (;;) {
			/* 1#element with RFC 7230's empty elements */
			pmd_ows(&s);
			if (s.p == s.end)
				break;
			if (*s.p == ',') {
				s.p++;
				continue;
			}
			if ((r = pmd_extension(&s, &o)) == -1)
				return 0; /* see the top of the file */
			if (r == 1 && !found && pmd_accept(&o, pol, &p)) {
				*out = p;
				found = 1;
			}
		}
	}
	return found;
}

size_t
deflate_answer(const struct deflate_params *p, char *buf, size_t size)
{
	int n;

	n = snprintf(buf, size, "%s%s%s", PMD,
	    p->server_no_takeover ? "; server_no_context_takeover" : "",
	    p->client_no_takeover ? "; client_no_context_takeover" : "");
	if (n >= 0 && (size_t)n < size && p->answer_server_wbits)
		n += snprintf(buf + n, size - (size_t)n,
		    "; server_max_window_bits=%u", p->server_wbits);
	if (n >= 0 && (size_t)n < size && p->answer_client_wbits)
		n += snprintf(buf + n, size - (size_t)n,
		    "; client_max_window_bits=%u", p->client_wbits);
	if (n < 0 || (size_t)n >= size)
		return 0;
	return (size_t)n;
}
