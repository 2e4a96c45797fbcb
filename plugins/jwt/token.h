/*
 * token.h: a JWT's shape and header, read before any key is chosen
 * (token.c).  No daemon header: the jwt plugin and its fuzz harness
 * compile it alone.
 */
#ifndef WSPLUGD_JWT_TOKEN_H
#define WSPLUGD_JWT_TOKEN_H

#include <stddef.h>

#define JWT_TOKEN_MAX 8192  /* bytes of a whole token */
#define JWT_HEADER_MAX 1024 /* bytes of its decoded header */

struct jwt_head {
	char alg[16]; /* as the header says, e.g. "HS256" */
	char kid[128]; /* "" when absent */
};

/* 0 when tok (len bytes, no NUL needed) is three base64url parts with a
 * header that is a JSON object naming its "alg" as a string (and maybe a
 * "kid"); else -1 with *why_r a static reason. */
int jwt_token_head(const char *tok, size_t len, struct jwt_head *h,
    const char **why_r);
/* Decode n base64url characters (no padding) into out (size bytes): the
 * length, or -1 on a bad character, a bad length or no room. */
long jwt_b64url_decode(const char *s, size_t n, unsigned char *out,
    size_t size);
/* Does s (n bytes) look like a token at all: base64url with two dots? */
int jwt_token_shaped(const char *s, size_t n);

#endif
