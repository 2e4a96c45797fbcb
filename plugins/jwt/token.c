/*
 * token.c: the first look at a JWT, before any key is chosen.
 *
 * The jwt plugin picks the key by the algorithm a token names, so the
 * header is read here, strictly and within fixed bounds, before libjwt
 * sees the token: three base64url parts (RFC 7515 compact form, no
 * padding), a header of at most JWT_HEADER_MAX bytes that is a JSON
 * object with an "alg" string.  Everything a client sends passes through
 * here first, which is why tests/fuzz/fuzz_jwt_token.c fuzzes it.
 */
#include <string.h>

#include <jansson.h>

#include "token.h"

static int
b64url_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

/* Decode n base64url characters (no padding) into out (size bytes): the
 * length, or -1 on a bad character, a bad length or no room. */
long
jwt_b64url_decode(const char *s, size_t n, unsigned char *out, size_t size)
{
	unsigned long acc = 0;
	size_t i, o = 0;
	int bits = 0, v;

	if (n % 4 == 1)
		return -1; /* no encoding ends with one character */
	for (i = 0; i < n; i++) {
		if ((v = b64url_value((unsigned char)s[i])) < 0)
			return -1;
		acc = (acc << 6 | (unsigned long)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == size)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* the bits left over must be zero: one encoding per value */
	if ((acc & ((1UL << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

int
jwt_token_shaped(const char *s, size_t n)
{
	size_t i, dots = 0;

	if (n == 0 || n > JWT_TOKEN_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] == '.')
			dots++;
		else if (b64url_value((unsigned char)s[i]) < 0)
			return 0;
	}
	return dots == 2;
}

int
jwt_token_head(const char *tok, size_t len, struct jwt_head *h,
    const char **why_r)
{
	unsigned char buf[JWT_HEADER_MAX];
	const char *d1, *d2, *alg, *kid;
	json_t *hdr;
	long n;

	memset(h, 0, sizeof(*h));
	if (!jwt_token_shaped(tok, len)) {
		*why_r = "malformed token";
		return -1;
	}
	d1 = memchr(tok, '.', len);
	d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
	if (d1 == tok || d2 == d1 + 1) {
		*why_r = "malformed token";
		return -1;
	}
	if ((n = jwt_b64url_decode(tok, (size_t)(d1 - tok), buf,
	    sizeof(buf))) < 0) {
		*why_r = "malformed token header";
		return -1;
	}
	if ((hdr = json_loadb((const char *)buf, (size_t)n, 0, NULL)) ==
	    NULL || !json_is_object(hdr)) {
		json_decref(hdr);
		*why_r = "malformed token header";
		return -1;
	}
	alg = json_string_value(json_object_get(hdr, "alg"));
	kid = json_string_value(json_object_get(hdr, "kid"));
	if (alg == NULL || strlen(alg) >= sizeof(h->alg) ||
	    (kid != NULL && strlen(kid) >= sizeof(h->kid))) {
		json_decref(hdr);
		*why_r = "token header without a usable alg";
		return -1;
	}
	strcpy(h->alg, alg);
	if (kid != NULL)
		strcpy(h->kid, kid);
	json_decref(hdr);
	return 0;
}
