/*
 * fuzz_jwt_token.c: the jwt plugin's first look at a token
 * (plugins/jwt/token.c), then libjwt's decode as the plugin calls it.
 *
 * Every client of a daemon with the jwt plugin can send any bytes as a
 * token, from the query, a cookie or Sec-WebSocket-Protocol.  The whole
 * input is the token.  Oracles:
 *
 *  1. jwt_token_head accepts only what jwt_token_shaped calls a token,
 *     and then names a NUL-terminated alg (and kid) that fit;
 *  2. it gives a reason whenever it refuses;
 *  3. what it accepts goes through jwt_decode with an HMAC secret, as the
 *     plugin does for HS tokens, without a crash or a leak -- and is
 *     never accepted unsigned (alg none with a key);
 *  4. the input is not written to.
 */
#include <jwt.h>
#include <string.h>

#include "../../plugins/jwt/token.h"
#include "fuzz.h"

static const unsigned char secret[] = "fuzz-secret-0123456789abcdef012345";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p = (char *)fuzz_dup(data, size);
	struct jwt_head h;
	const char *why = NULL;
	char *copy;
	jwt_t *jwt = NULL;
	int rc;

	rc = jwt_token_head(p, size, &h, &why);
	if (rc == 0) {
		/* 1 */
		CHECK(jwt_token_shaped(p, size), "accepted an unshaped token");
		CHECK(memchr(h.alg, '\0', sizeof(h.alg)) != NULL &&
		    memchr(h.kid, '\0', sizeof(h.kid)) != NULL,
		    "alg or kid not terminated");
		/* 3 */
		copy = strndup(p, size);
		CHECK(copy != NULL, "strndup");
		if (jwt_decode(&jwt, copy, secret, sizeof(secret) - 1) == 0 &&
		    jwt != NULL)
			CHECK(jwt_get_alg(jwt) != JWT_ALG_NONE,
			    "an unsigned token passed a keyed decode");
		jwt_free(jwt);
		free(copy);
	} else {
		/* 2 */
		CHECK(rc == -1 && why != NULL && why[0] != '\0',
		    "refused without a reason");
	}
	/* 4 */
	CHECK(memcmp(p, data, size) == 0, "the input was modified");
	free(p);
	return 0;
}
