/*
 * jwt: refuse clients without a valid JSON Web Token before they are
 * upgraded, name their user, and close them when the token expires.
 *
 * The token comes from the query (?token=), a cookie, or an entry of
 * Sec-WebSocket-Protocol shaped like a token (browsers cannot set other
 * headers on a WebSocket).  Its header is read first (token.c) to pick the
 * key by algorithm: HS256/384/512 verify with hmac_key, RS256 and ES256
 * with public_key (PEM) or jwks; "none" and anything not listed in
 * `algorithms` are refused, so a token cannot choose a weaker check than
 * configured.
 * libjwt then checks the signature; exp, nbf, iss and aud are checked
 * here with `leeway`.  Refusals are 401 with a short reason.
 *
 * An accepted client's user is the token's sub; the claims named in
 * `claims` are kept as this plugin's attributes, which other plugins read
 * (the broadcast plugin's channels_claim).  The expiry is kept as the
 * attribute "exp", so the connection carries everything and a reload of
 * this plugin picks it up in adopt.  Per open connection two host timers
 * run: {"type":"token_expiring","expires_at":MS} `expiry_warning` before
 * the end, and close 4001 at it.  {"type":"refresh","token":"..."} with a
 * valid token for the same sub moves both.
 *
 * Public keys may also come as a JWKS file (RFC 7517: {"keys":[...]},
 * RSA and P-256 keys), each turned into a PEM here with OpenSSL, because
 * libjwt takes PEM; a token's "kid" picks among them, and without one
 * each key of the right type is tried.
 *
 * Key files are read at load and again on every reload (SIGHUP): a
 * rotated key takes effect then, and a file that no longer reads is
 * logged and the keys in use are kept.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <uthash.h>

#include <wsplugd/plugin.h>

#include "token.h"

#define JWT_KEY_MAX (64 * 1024)
#define CLOSE_TOKEN_EXPIRED 4001

/* The algorithms we verify, as libjwt names them. */
static const jwt_alg_t jwt_algs[] = {
	JWT_ALG_HS256, JWT_ALG_HS384, JWT_ALG_HS512, JWT_ALG_RS256,
	JWT_ALG_ES256,
};

struct key {
	unsigned char *p;
	size_t n;
};

/* A JWKS entry, as the PEM libjwt verifies with. */
struct jwk {
	char kid[128];
	int ec; /* P-256 for ES256, else RSA for RS256 */
	struct key pem;
};

struct keys {
	struct key hmac, pub;
	struct jwk *jwk;
	size_t njwk;
};

/* One open connection's timers, by connection. */
struct session {
	struct wsp_conn *c;
	struct jwtp *j;
	struct wsp_timer *warn, *end;
	UT_hash_handle hh;
};

struct jwtp {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	char *hmac_path, *pubkey_path, *jwks_path;
	struct keys keys;
	unsigned algs; /* bit per jwt_alg_t */
	char *issuer, *audience;
	uint64_t leeway_ms, warn_ms;
	char *query_param, *cookie;
	int from_subprotocol, require_exp;
	char **claims;
	size_t nclaims;
	struct session *sessions;
};

static void jwt_unload(void *);

static int
key_read(const char *path, struct key *k, const char **why_r)
{
	FILE *fp;
	unsigned char *buf;
	size_t n;

	memset(k, 0, sizeof(*k));
	if ((fp = fopen(path, "rb")) == NULL) {
		*why_r = strerror(errno);
		return -1;
	}
	if ((buf = malloc(JWT_KEY_MAX + 1)) == NULL) {
		fclose(fp);
		*why_r = "out of memory";
		return -1;
	}
	n = fread(buf, 1, JWT_KEY_MAX + 1, fp);
	fclose(fp);
	if (n == 0 || n > JWT_KEY_MAX) {
		free(buf);
		*why_r = n == 0 ? "empty" : "larger than 64 KiB";
		return -1;
	}
	/* A secret written with echo ends in a newline that is no part of
	 * it; a PEM keeps its own. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r') &&
	    !(n > 5 && memcmp(buf, "-----", 5) == 0))
		n--;
	buf[n] = '\0';
	k->p = buf;
	k->n = n;
	return 0;
}

static void
key_free(struct key *k)
{
	if (k->p != NULL)
		memset(k->p, 0, k->n);
	free(k->p);
	memset(k, 0, sizeof(*k));
}

static void
keys_free(struct keys *ks)
{
	size_t i;

	key_free(&ks->hmac);
	key_free(&ks->pub);
	for (i = 0; i < ks->njwk; i++)
		key_free(&ks->jwk[i].pem);
	free(ks->jwk);
	memset(ks, 0, sizeof(*ks));
}

/* A base64url member of a JWK as a big number, or NULL. */
static BIGNUM *
jwk_bn(json_t *k, const char *name, unsigned char *buf, size_t size,
    long *n_r)
{
	const char *s = json_string_value(json_object_get(k, name));
	long n;

	if (s == NULL || (n = jwt_b64url_decode(s, strlen(s), buf, size)) <= 0)
		return NULL;
	if (n_r != NULL)
		*n_r = n;
	return BN_bin2bn(buf, (int)n, NULL);
}

/* One JWK (RSA, or EC on P-256) as a PEM public key: 0, or -1 with
 * *why_r; 1 for a key of another type, skipped. */
static int
jwk_pem(json_t *k, struct jwk *out, const char **why_r)
{
	const char *kty = json_string_value(json_object_get(k, "kty"));
	const char *kid = json_string_value(json_object_get(k, "kid"));
	const char *crv, *x, *y;
	unsigned char buf[1024], pt[65];
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *n = NULL, *e = NULL;
	BIO *bio = NULL;
	char *pem;
	long len;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	*why_r = "a JWK that is not a usable RSA or P-256 public key";
	if (kty == NULL || (kid != NULL && strlen(kid) >= sizeof(out->kid)))
		return -1;
	if (strcmp(kty, "RSA") != 0 && strcmp(kty, "EC") != 0)
		return 1;
	if (kid != NULL)
		strcpy(out->kid, kid);
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		goto done;
	if (strcmp(kty, "RSA") == 0) {
		if ((n = jwk_bn(k, "n", buf, sizeof(buf), NULL)) == NULL ||
		    (e = jwk_bn(k, "e", buf, sizeof(buf), NULL)) == NULL ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			goto done;
	} else {
		out->ec = 1;
		crv = json_string_value(json_object_get(k, "crv"));
		x = json_string_value(json_object_get(k, "x"));
		y = json_string_value(json_object_get(k, "y"));
		/* the uncompressed point: 04 || x || y, 32 bytes each */
		pt[0] = 4;
		if (crv == NULL || strcmp(crv, "P-256") != 0 || x == NULL ||
		    y == NULL || jwt_b64url_decode(x, strlen(x), pt + 1, 32) !=
		    32 || jwt_b64url_decode(y, strlen(y), pt + 33, 32) != 32 ||
		    !OSSL_PARAM_BLD_push_utf8_string(bld,
		    OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld,
		    OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)))
			goto done;
	}
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, out->ec ? "EC" : "RSA",
	    NULL)) == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0 ||
	    (bio = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_PUBKEY(bio, pkey) ||
	    (len = BIO_get_mem_data(bio, &pem)) <= 0 ||
	    (out->pem.p = malloc((size_t)len + 1)) == NULL)
		goto done;
	memcpy(out->pem.p, pem, (size_t)len);
	out->pem.p[len] = '\0';
	out->pem.n = (size_t)len;
	rc = 0;
done:
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return rc;
}

static int
jwks_read(const char *path, struct keys *ks, const char **why_r)
{
	json_t *doc, *keys, *k;
	json_error_t err;
	size_t i;
	int rc;

	if ((doc = json_load_file(path, 0, &err)) == NULL) {
		*why_r = "not JSON";
		return -1;
	}
	keys = json_object_get(doc, "keys");
	if (!json_is_array(keys) || json_array_size(keys) == 0 ||
	    (ks->jwk = calloc(json_array_size(keys), sizeof(*ks->jwk))) ==
	    NULL) {
		json_decref(doc);
		*why_r = "no \"keys\" array";
		return -1;
	}
	json_array_foreach(keys, i, k) {
		if ((rc = jwk_pem(k, &ks->jwk[ks->njwk], why_r)) == -1) {
			json_decref(doc);
			return -1;
		}
		if (rc == 0)
			ks->njwk++;
	}
	json_decref(doc);
	if (ks->njwk == 0) {
		*why_r = "no RSA or P-256 key";
		return -1;
	}
	return 0;
}

/* Every key file, into fresh keys: -1 (why_r, which_r) when one fails. */
static int
keys_read(struct jwtp *j, struct keys *ks, const char **which_r,
    const char **why_r)
{
	memset(ks, 0, sizeof(*ks));
	*which_r = "hmac_key";
	if (j->hmac_path != NULL && key_read(j->hmac_path, &ks->hmac,
	    why_r) == -1)
		goto fail;
	*which_r = "public_key";
	if (j->pubkey_path != NULL && key_read(j->pubkey_path, &ks->pub,
	    why_r) == -1)
		goto fail;
	*which_r = "jwks";
	if (j->jwks_path != NULL && jwks_read(j->jwks_path, ks, why_r) == -1)
		goto fail;
	return 0;
fail:
	keys_free(ks);
	return -1;
}

static char *
dup_or_null(const char *s)
{
	return s == NULL || s[0] == '\0' ? NULL : strdup(s);
}

static int
parse_list(const char *s, char ***v_r, size_t *n_r)
{
	char *copy, *p, *tok, **v;

	if (s == NULL)
		return 0;
	if ((copy = strdup(s)) == NULL)
		return -1;
	for (p = copy; (tok = strtok(p, " ,\t")) != NULL; p = NULL) {
		if ((v = realloc(*v_r, (*n_r + 1) * sizeof(*v))) == NULL ||
		    (v[*n_r] = strdup(tok)) == NULL) {
			if (v != NULL)
				*v_r = v;
			free(copy);
			return -1;
		}
		*v_r = v;
		(*n_r)++;
	}
	free(copy);
	return 0;
}

static int
jwt_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	struct jwtp *j;
	const char *hmac, *pub, *jwks, *algs, *iss, *aud, *qp, *cookie;
	const char *claims;
	const char *which, *why;
	char **names = NULL;
	size_t nnames = 0, i, a;
	int found, rc = -1;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	j->host = host;
	j->ctx = ctx;
	if (host->cfg_string(sec, "hmac_key", NULL, &hmac) == -1 ||
	    host->cfg_string(sec, "public_key", NULL, &pub) == -1 ||
	    host->cfg_string(sec, "jwks", NULL, &jwks) == -1 ||
	    host->cfg_string(sec, "algorithms", NULL, &algs) == -1 ||
	    host->cfg_string(sec, "issuer", NULL, &iss) == -1 ||
	    host->cfg_string(sec, "audience", NULL, &aud) == -1 ||
	    host->cfg_duration_ms(sec, "leeway", 30000, &j->leeway_ms) == -1 ||
	    host->cfg_string(sec, "query_param", "token", &qp) == -1 ||
	    host->cfg_string(sec, "cookie", "token", &cookie) == -1 ||
	    host->cfg_bool(sec, "subprotocol", 1, &j->from_subprotocol) ==
	    -1 ||
	    host->cfg_bool(sec, "require_exp", 1, &j->require_exp) == -1 ||
	    host->cfg_string(sec, "claims", NULL, &claims) == -1 ||
	    host->cfg_duration_ms(sec, "expiry_warning", 60000, &j->warn_ms) ==
	    -1)
		goto done;
	if (hmac == NULL && pub == NULL && jwks == NULL) {
		host->cfg_error(sec, NULL, "needs hmac_key, public_key or "
		    "jwks");
		goto done;
	}
	j->hmac_path = dup_or_null(hmac);
	j->pubkey_path = dup_or_null(pub);
	j->jwks_path = dup_or_null(jwks);
	if (pub == NULL)
		pub = jwks; /* either checks RS256 and ES256 */
	j->issuer = dup_or_null(iss);
	j->audience = dup_or_null(aud);
	j->query_param = dup_or_null(qp);
	j->cookie = dup_or_null(cookie);
	if (parse_list(claims, &j->claims, &j->nclaims) == -1)
		goto done;
	/* Every algorithm a configured key can check, unless listed. */
	if (algs == NULL) {
		for (a = 0; a < sizeof(jwt_algs) / sizeof(jwt_algs[0]); a++)
			if (jwt_algs[a] <= JWT_ALG_HS512 ? hmac != NULL :
			    pub != NULL)
				j->algs |= 1u << jwt_algs[a];
	} else {
		if (parse_list(algs, &names, &nnames) == -1)
			goto done;
		for (i = 0; i < nnames; i++) {
			found = 0;
			for (a = 0; a < sizeof(jwt_algs) / sizeof(jwt_algs[0]);
			    a++)
				if (strcmp(names[i],
				    jwt_alg_str(jwt_algs[a])) == 0) {
					j->algs |= 1u << jwt_algs[a];
					found = 1;
				}
			if (!found) {
				host->cfg_error(sec, "algorithms", "unknown "
				    "algorithm '%.16s' (expected HS256, HS384, "
				    "HS512, RS256 or ES256)", names[i]);
				goto done;
			}
			if ((strncmp(names[i], "HS", 2) == 0 && hmac == NULL) ||
			    (strncmp(names[i], "HS", 2) != 0 && pub == NULL)) {
				host->cfg_error(sec, "algorithms", "%.16s needs "
				    "%s", names[i], names[i][0] == 'H' ?
				    "hmac_key" : "public_key or jwks");
				goto done;
			}
		}
	}
	if (keys_read(j, &j->keys, &which, &why) == -1) {
		/* the path too: -t is where an operator learns which file */
		host->cfg_error(sec, which, "cannot read %s: %s",
		    strcmp(which, "hmac_key") == 0 ? j->hmac_path :
		    strcmp(which, "public_key") == 0 ? j->pubkey_path :
		    j->jwks_path, why);
		goto done;
	}
	*state_r = j;
	rc = 0;
done:
	for (i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	if (rc == -1)
		jwt_unload(j);
	return rc;
}

static void
session_free(struct jwtp *j, struct session *s)
{
	if (s->warn != NULL)
		j->host->timer_cancel(s->warn);
	if (s->end != NULL)
		j->host->timer_cancel(s->end);
	HASH_DEL(j->sessions, s);
	free(s);
}

static void
jwt_unload(void *state)
{
	struct jwtp *j = state;
	struct session *s, *tmp;
	size_t i;

	/* the host cancels the timers after this; the sessions are ours */
	HASH_ITER(hh, j->sessions, s, tmp) {
		HASH_DEL(j->sessions, s);
		free(s);
	}
	keys_free(&j->keys);
	free(j->hmac_path);
	free(j->pubkey_path);
	free(j->jwks_path);
	free(j->issuer);
	free(j->audience);
	free(j->query_param);
	free(j->cookie);
	for (i = 0; i < j->nclaims; i++)
		free(j->claims[i]);
	free(j->claims);
	free(j);
}

/* SIGHUP: the key files again.  A failure keeps the keys in use. */
static void
jwt_reload(void *state)
{
	struct jwtp *j = state;
	struct keys ks;
	const char *which, *why;

	if (keys_read(j, &ks, &which, &why) == -1) {
		j->host->log(j->ctx, WSP_LOG_ERROR, NULL, "%s: cannot read "
		    "the key (%s): keeping the keys in use", which, why);
		return;
	}
	keys_free(&j->keys);
	j->keys = ks;
	j->host->log(j->ctx, WSP_LOG_INFO, NULL, "keys reloaded");
}

static int
aud_matches(json_t *aud, const char *want)
{
	json_t *v;
	size_t i;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return 1;
	return 0;
}

static jwt_t *
decode_with(char *tok, jwt_alg_t alg, const struct key *k)
{
	jwt_t *jwt = NULL;

	if (k->p == NULL)
		return NULL;
	if (jwt_decode(&jwt, tok, k->p, (int)k->n) != 0 || jwt == NULL)
		return NULL;
	if (jwt_get_alg(jwt) != alg) {
		jwt_free(jwt);
		return NULL;
	}
	return jwt;
}

/* The token verified by the key its algorithm (and kid) picks. */
static jwt_t *
token_decode(struct jwtp *j, char *tok, jwt_alg_t alg, const char *kid)
{
	jwt_t *jwt;
	size_t i;

	if (alg <= JWT_ALG_HS512)
		return decode_with(tok, alg, &j->keys.hmac);
	if ((jwt = decode_with(tok, alg, &j->keys.pub)) != NULL)
		return jwt;
	for (i = 0; i < j->keys.njwk; i++) {
		if (j->keys.jwk[i].ec != (alg == JWT_ALG_ES256) ||
		    (kid[0] != '\0' && strcmp(kid, j->keys.jwk[i].kid) != 0))
			continue;
		if ((jwt = decode_with(tok, alg, &j->keys.jwk[i].pem)) != NULL)
			return jwt;
	}
	return NULL;
}

/* A token's claims when it is valid now, else NULL with *why_r. */
static json_t *
token_verify(struct jwtp *j, const char *tok, size_t len, const char **why_r)
{
	struct jwt_head h;
	jwt_alg_t alg;
	jwt_t *jwt = NULL;
	char *text = NULL, *copy;
	json_t *claims = NULL, *v;
	double now = (double)j->host->now_ms(j->ctx) / 1000.0;
	double leeway = (double)j->leeway_ms / 1000.0;

	if (jwt_token_head(tok, len, &h, why_r) == -1)
		return NULL;
	if (strcmp(h.alg, "none") == 0 || strcmp(h.alg, "NONE") == 0) {
		*why_r = "unsigned token (alg none)";
		return NULL;
	}
	alg = jwt_str_alg(h.alg);
	if (alg == JWT_ALG_INVAL || alg == JWT_ALG_NONE ||
	    !(j->algs & (1u << alg))) {
		*why_r = "token algorithm not accepted";
		return NULL;
	}
	if ((copy = strndup(tok, len)) == NULL) {
		*why_r = "out of memory";
		return NULL;
	}
	if ((jwt = token_decode(j, copy, alg, h.kid)) == NULL) {
		*why_r = "bad token signature";
		goto fail;
	}
	if ((text = jwt_get_grants_json(jwt, NULL)) == NULL ||
	    (claims = json_loads(text, 0, NULL)) == NULL ||
	    !json_is_object(claims)) {
		*why_r = "malformed token claims";
		goto fail;
	}
	v = json_object_get(claims, "exp");
	if (v != NULL && !json_is_number(v)) {
		*why_r = "malformed exp";
		goto fail;
	}
	if (v == NULL && j->require_exp) {
		*why_r = "token without exp";
		goto fail;
	}
	if (v != NULL && now - leeway >= json_number_value(v)) {
		*why_r = "token expired";
		goto fail;
	}
	if ((v = json_object_get(claims, "nbf")) != NULL &&
	    (!json_is_number(v) || now + leeway < json_number_value(v))) {
		*why_r = "token not yet valid";
		goto fail;
	}
	if (j->issuer != NULL && (!json_is_string(v = json_object_get(claims,
	    "iss")) || strcmp(json_string_value(v), j->issuer) != 0)) {
		*why_r = "wrong token issuer";
		goto fail;
	}
	if (j->audience != NULL && !aud_matches(json_object_get(claims, "aud"),
	    j->audience)) {
		*why_r = "wrong token audience";
		goto fail;
	}
	v = json_object_get(claims, "sub");
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > 255) {
		*why_r = "token without a usable sub";
		goto fail;
	}
	free(text);
	free(copy);
	jwt_free(jwt);
	return claims;
fail:
	json_decref(claims);
	free(text);
	free(copy);
	jwt_free(jwt);
	return NULL;
}

/* name's value in a Cookie header: (start, length) or NULL. */
static const char *
cookie_get(const char *h, const char *name, size_t *n_r)
{
	size_t n = strlen(name);
	const char *p = h;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == ';')
			p++;
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			p += n + 1;
			*n_r = strcspn(p, ";");
			while (*n_r > 0 && p[*n_r - 1] == ' ')
				(*n_r)--;
			return p;
		}
		p = strchr(p, ';');
	}
	return NULL;
}

static const char *
query_get(const char *q, const char *name, size_t *n_r)
{
	size_t n = strlen(name);
	const char *p = q;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			p += n + 1;
			*n_r = strcspn(p, "&");
			return p;
		}
		if ((p = strchr(p, '&')) != NULL)
			p++;
	}
	return NULL;
}

/* The first Sec-WebSocket-Protocol entry shaped like a token. */
static const char *
protocol_get(const char *h, size_t *n_r)
{
	const char *p = h;
	size_t n;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		n = strcspn(p, ", ");
		if (jwt_token_shaped(p, n)) {
			*n_r = n;
			return p;
		}
		p += n;
	}
	return NULL;
}

/* The claims as this plugin's attributes on c: sub, exp and the chosen. */
static void
claims_keep(struct jwtp *j, struct wsp_conn *c, json_t *claims)
{
	size_t i;

	j->host->attr_set(j->ctx, c, "sub", json_object_get(claims, "sub"));
	j->host->attr_set(j->ctx, c, "exp", json_object_get(claims, "exp"));
	for (i = 0; i < j->nclaims; i++)
		j->host->attr_set(j->ctx, c, j->claims[i],
		    json_object_get(claims, j->claims[i]));
}

static int
jwt_upgrade(void *state, struct wsp_conn *c,
    const struct wsp_upgrade_request *req, const char **reason_r)
{
	struct jwtp *j = state;
	const char *tok = NULL, *h;
	size_t n = 0;
	json_t *claims;

	if (j->query_param != NULL)
		tok = query_get(req->query, j->query_param, &n);
	if (tok == NULL && j->cookie != NULL &&
	    (h = j->host->request_header(c, "Cookie")) != NULL)
		tok = cookie_get(h, j->cookie, &n);
	if (tok == NULL && j->from_subprotocol &&
	    (h = j->host->request_header(c, "Sec-WebSocket-Protocol")) != NULL)
		tok = protocol_get(h, &n);
	if (tok == NULL) {
		*reason_r = "token required";
		return 401;
	}
	if ((claims = token_verify(j, tok, n, reason_r)) == NULL) {
		j->host->log(j->ctx, WSP_LOG_INFO, c, "refused: %s", *reason_r);
		return 401;
	}
	j->host->set_user(c, json_string_value(json_object_get(claims,
	    "sub")));
	claims_keep(j, c, claims);
	json_decref(claims);
	return WSP_UPGRADE_ACCEPT;
}

static void
warn_cb(void *arg)
{
	struct session *s = arg;
	struct jwtp *j = s->j;
	json_t *exp = j->host->attr_get(j->ctx, s->c, "exp");
	char text[96];
	int n;

	s->warn = NULL; /* a one-shot timer's handle is gone after this */
	n = snprintf(text, sizeof(text), "{\"type\":\"token_expiring\","
	    "\"expires_at\":%.0f}", json_number_value(exp) * 1000.0);
	j->host->send_text(s->c, text, (size_t)n);
}

static void
end_cb(void *arg)
{
	struct session *s = arg;
	struct jwtp *j = s->j;

	s->end = NULL;
	j->host->log(j->ctx, WSP_LOG_INFO, s->c, "token expired: closing");
	j->host->close(s->c, CLOSE_TOKEN_EXPIRED, "token expired");
}

/* (Re)arm c's timers from its "exp" attribute. */
static void
session_arm(struct jwtp *j, struct wsp_conn *c)
{
	struct session *s;
	json_t *exp = j->host->attr_get(j->ctx, c, "exp");
	int64_t now = j->host->now_ms(j->ctx), end;

	HASH_FIND_PTR(j->sessions, &c, s);
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return;
		s->c = c;
		s->j = j;
		HASH_ADD_PTR(j->sessions, c, s);
	}
	if (s->warn != NULL)
		j->host->timer_cancel(s->warn);
	if (s->end != NULL)
		j->host->timer_cancel(s->end);
	s->warn = s->end = NULL;
	if (!json_is_number(exp))
		return;
	end = (int64_t)(json_number_value(exp) * 1000.0);
	/* A token already inside the warning window is told at once. */
	if (end > now)
		s->warn = j->host->timer_add(j->ctx,
		    end - (int64_t)j->warn_ms > now ?
		    (uint64_t)(end - (int64_t)j->warn_ms - now) : 0, 0,
		    warn_cb, s);
	s->end = j->host->timer_add(j->ctx, end > now ?
	    (uint64_t)(end - now) : 0, 0, end_cb, s);
}

static void
jwt_open(void *state, struct wsp_conn *c)
{
	session_arm(state, c);
}

static void
jwt_close(void *state, struct wsp_conn *c, uint16_t code)
{
	struct jwtp *j = state;
	struct session *s;

	(void)code;
	HASH_FIND_PTR(j->sessions, &c, s);
	if (s != NULL)
		session_free(j, s);
}

static void
reply_error(struct jwtp *j, struct wsp_conn *c, const char *why)
{
	json_t *r = json_pack("{s:s, s:s, s:s}", "type", "error", "code",
	    "invalid_token", "message", why);

	if (r != NULL)
		j->host->send_json(c, r);
	json_decref(r);
}

/* {"type":"refresh","token":"..."}: a new token for the same user. */
static void
jwt_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct jwtp *j = state;
	json_t *tok = json_object_get(j->host->message_json(m), "token");
	json_t *claims;
	const char *why, *user = j->host->conn_user(c);
	char text[96];
	int n;

	if (!json_is_string(tok)) {
		reply_error(j, c, "\"token\" must be a string");
		return;
	}
	if ((claims = token_verify(j, json_string_value(tok),
	    json_string_length(tok), &why)) == NULL) {
		reply_error(j, c, why);
		return;
	}
	if (user == NULL || strcmp(json_string_value(json_object_get(claims,
	    "sub")), user) != 0) {
		json_decref(claims);
		reply_error(j, c, "a refresh must be for the same sub");
		return;
	}
	claims_keep(j, c, claims);
	session_arm(j, c);
	n = snprintf(text, sizeof(text), "{\"type\":\"token_refreshed\","
	    "\"expires_at\":%.0f}", json_is_number(json_object_get(claims,
	    "exp")) ? json_number_value(json_object_get(claims, "exp")) *
	    1000.0 : 0.0);
	json_decref(claims);
	j->host->send_text(c, text, (size_t)n);
}

static const char *const jwt_types[] = { "refresh", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "jwt",
	.version = PACKAGE_VERSION,
	.types = jwt_types,
	.load = jwt_load,
	.unload = jwt_unload,
	.open = jwt_open,
	.adopt = jwt_open,
	.message = jwt_message,
	.close = jwt_close,
	.upgrade = jwt_upgrade,
	.reload = jwt_reload,
};
