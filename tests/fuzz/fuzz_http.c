/*
 * fuzz_http.c: the opening-handshake parser (core/http_upgrade.c).
 *
 * The input is a request head as a client would send it.  Every buffer the
 * parser sees is an exact-size heap copy, so ASan reports the first byte
 * read past it.
 *
 * Oracles:
 *  - http_head_length is 0, the end of the first CRLFCRLF, or the end of
 *    a bare LF before it (found here by a plain scan); a head that ends in
 *    a bare LF parses as 400;
 *  - http_request_parse returns 0 or 400, with a reason on 400; it is run
 *    on the whole input and on exactly the head http_head_length found (as
 *    conn.c calls it), and a success on the whole input means the input is
 *    exactly one head;
 *  - on success every http_str points inside the buffer (or is NULL and
 *    empty), the method is a token, the target starts with '/' and holds
 *    only visible ASCII, the path is the target up to its '?', header values
 *    hold no CR or LF and no surrounding blanks, at most 8 protocols;
 *  - http_upgrade_check returns 0, 400, 404, 405 or 426, a reason with
 *    every refusal, and is tried on "/ws", "/" and the request's own path
 *    (so the header checks are reached, not just the 404);
 *  - on 0 the key is 24 base64 characters ending "==", and
 *    http_accept_key gives 28 base64 characters (checked against SHA-1
 *    computed here); http_accept_key is also fed the key as sent, and a
 *    slice of the input of any length, and must never write past out[29];
 *  - http_response_101 and http_response_error write a well-formed
 *    response into an evbuffer: "HTTP/1.1 NNN Text" status line, header
 *    lines "Name: value" with CRLF endings and no stray CR or LF, a blank
 *    line, and a body exactly Content-Length long (none for a 101);
 *  - http_wellknown answers (200, or 403 when the origin is refused, 500
 *    only without memory) exactly a GET or HEAD of /.well-known/wsplugd,
 *    with a well-formed response whose GET body is a JSON object naming
 *    the endpoint path it was given, and writes nothing for anything else;
 *    http_wellknown_gone the same, its gone list (the request's own path
 *    among others) an array of exactly those paths;
 *  - http_response_retry writes a well-formed 503 or 410 for any hint.
 */
#include <stdint.h>

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "wsplugd.h"
#include "fuzz.h"

static int
in_buf(const struct http_str *s, const char *buf, size_t len)
{
	if (s->p == NULL)
		return s->n == 0;
	return s->p >= buf && s->p <= buf + len && s->n <= len &&
	    (size_t)(s->p - buf) + s->n <= len;
}

static int
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' && strchr("!#$%&'*+-.^_`|~",
	    c) != NULL);
}

static int
is_b64(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* A header value as stored: no CR, no LF, no blanks at either end. */
static void
check_value(const char *name, const struct http_str *s)
{
	size_t i;

	if (s->p == NULL)
		return;
	for (i = 0; i < s->n; i++)
		CHECK(s->p[i] != '\r' && s->p[i] != '\n' && s->p[i] != '\0',
		    "%s holds byte %02x", name, (unsigned char)s->p[i]);
	if (s->n > 0)
		CHECK(s->p[0] != ' ' && s->p[0] != '\t' &&
		    s->p[s->n - 1] != ' ' && s->p[s->n - 1] != '\t',
		    "%s not trimmed", name);
}

static void
check_request(const struct http_request *r, const char *buf, size_t len)
{
	const struct http_str *all[] = { &r->method, &r->target, &r->path,
	    &r->host, &r->key, &r->version, &r->origin, &r->user_agent };
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		CHECK(in_buf(all[i], buf, len), "field %zu outside the buffer",
		    i);
	CHECK(r->nprotocols <= HTTP_MAX_PROTOCOL_HEADERS, "%zu protocols",
	    r->nprotocols);
	for (i = 0; i < r->nprotocols; i++) {
		CHECK(in_buf(&r->protocols[i], buf, len) &&
		    r->protocols[i].p != NULL, "protocol %zu outside", i);
		check_value("Sec-WebSocket-Protocol", &r->protocols[i]);
	}
	CHECK(r->method.p == buf && r->method.n > 0, "method not first");
	for (i = 0; i < r->method.n; i++)
		CHECK(is_tchar((unsigned char)r->method.p[i]), "method byte");
	CHECK(r->target.p != NULL && r->target.n > 0 && r->target.p[0] == '/',
	    "target not in origin form");
	for (i = 0; i < r->target.n; i++)
		CHECK(r->target.p[i] > 0x20 && r->target.p[i] < 0x7f &&
		    r->target.p[i] != '#', "target byte %02x",
		    (unsigned char)r->target.p[i]);
	CHECK(r->path.p == r->target.p && r->path.n <= r->target.n &&
	    memchr(r->path.p, '?', r->path.n) == NULL &&
	    (r->path.n == r->target.n || r->target.p[r->path.n] == '?'),
	    "path is not the target up to '?'");
	check_value("Host", &r->host);
	check_value("Sec-WebSocket-Key", &r->key);
	check_value("Sec-WebSocket-Version", &r->version);
	check_value("Origin", &r->origin);
	check_value("User-Agent", &r->user_agent);
}

static size_t
naive_head_length(const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r'))
			return i + 1; /* a bare LF */
		if (i + 4 <= n && b[i] == '\r' && b[i + 1] == '\n' &&
		    b[i + 2] == '\r' && b[i + 3] == '\n')
			return i + 4;
	}
	return 0;
}

/* A line of the response: its bytes up to CRLF, none of them CR or LF. */
static size_t
response_line(const char *r, size_t n, size_t off)
{
	size_t i;

	for (i = off; i + 1 < n; i++) {
		if (r[i] == '\r' && r[i + 1] == '\n')
			return i;
		CHECK(r[i] != '\r' && r[i] != '\n' && r[i] != '\0',
		    "stray byte %02x in response line at %zu",
		    (unsigned char)r[i], i);
	}
	CHECK(0, "response line at %zu has no CRLF", off);
	return 0;
}

static void
check_response(struct evbuffer *eb, int status)
{
	size_t n = evbuffer_get_length(eb), off, eol, clen = (size_t)-1;
	char *r = malloc(n + 1), st[8];
	const char *text = http_status_text(status), *colon;
	int saw_upgrade = 0;

	if (r == NULL)
		abort();
	CHECK(evbuffer_remove(eb, r, n) == (int)n, "evbuffer_remove");
	r[n] = '\0';
	snprintf(st, sizeof(st), "%d", status);
	eol = response_line(r, n, 0);
	CHECK(eol == 9 + strlen(st) + 1 + strlen(text) &&
	    memcmp(r, "HTTP/1.1 ", 9) == 0 &&
	    memcmp(r + 9, st, strlen(st)) == 0 && r[9 + strlen(st)] == ' ' &&
	    memcmp(r + 10 + strlen(st), text, strlen(text)) == 0,
	    "bad status line for %d: %.*s", status, (int)eol, r);
	for (off = eol + 2;; off = eol + 2) {
		eol = response_line(r, n, off);
		if (eol == off)
			break;
		colon = memchr(r + off, ':', eol - off);
		CHECK(colon != NULL && colon > r + off && colon[1] == ' ',
		    "header line without \"Name: \": %.*s", (int)(eol - off),
		    r + off);
		for (const char *q = r + off; q < colon; q++)
			CHECK(is_tchar((unsigned char)*q), "header name byte");
		if (colon - (r + off) == 14 &&
		    strncasecmp(r + off, "Content-Length", 14) == 0)
			clen = strtoul(colon + 2, NULL, 10);
		if (colon - (r + off) == 7 &&
		    strncasecmp(r + off, "Upgrade", 7) == 0)
			saw_upgrade = 1;
	}
	off = eol + 2; /* the body */
	if (status == 101) {
		CHECK(off == n, "a 101 with %zu bytes after the head", n - off);
		CHECK(saw_upgrade, "a 101 without Upgrade");
	} else
		CHECK(clen == n - off, "Content-Length %zu, body %zu", clen,
		    n - off);
	free(r);
}

static void
check_accept(const struct http_str *key)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char md[SHA_DIGEST_LENGTH], want[32], *cat;
	char *out = malloc(29); /* exactly out[29] */
	size_t i;

	if (out == NULL)
		abort();
	memset(out, 'X', 29);
	http_accept_key(key, out);
	if (key->p == NULL || key->n > 64) {
		/* documented: an empty string rather than a wrong answer */
		CHECK(out[0] == '\0', "accept for an unusable key");
		free(out);
		return;
	}
	CHECK(out[28] == '\0' && strlen(out) == 28, "accept not 28 chars");
	for (i = 0; i < 27; i++)
		CHECK(is_b64((unsigned char)out[i]), "accept byte %zu", i);
	CHECK(out[27] == '=', "accept does not end in '='");
	cat = malloc(key->n + sizeof(guid));
	if (cat == NULL)
		abort();
	memcpy(cat, key->p, key->n);
	memcpy(cat + key->n, guid, sizeof(guid) - 1);
	SHA1(cat, key->n + sizeof(guid) - 1, md);
	EVP_EncodeBlock(want, md, sizeof(md));
	CHECK(memcmp(out, want, 29) == 0, "accept %s, expected %s", out,
	    (char *)want);
	free(cat);
	free(out);
}

static void
check_wellknown(const struct http_request *req, const char *path)
{
	const char *wk = HTTP_WELLKNOWN_PATH;
	int doc = req->path.n == strlen(wk) &&
	    memcmp(req->path.p, wk, req->path.n) == 0;
	int get = req->method.n == 3 && memcmp(req->method.p, "GET", 3) == 0;
	int head = req->method.n == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
	struct evbuffer *eb;
	json_t *j;
	size_t n, body;
	char *r, *end;
	int ok, st;

	char *own = strndup(req->path.p != NULL ? req->path.p : "",
	    req->path.n);
	char *gone[2] = { "/old", own };

	if (own == NULL)
		abort();
	for (ok = 0; ok < 4; ok++) {
		if ((eb = evbuffer_new()) == NULL)
			abort();
		/* 0, 1: without a gone list; 2, 3: with one */
		st = ok < 2 ? http_wellknown(req, path, ok & 1, eb) :
		    http_wellknown_gone(req, path, gone, 2, ok & 1, eb);
		n = evbuffer_get_length(eb);
		if (!doc || !(get || head)) {
			CHECK(st == 0 && n == 0, "well-known answered %d for "
			    "another request", st);
		} else if (st == 500) {
			check_response(eb, st);
		} else if (get) {
			CHECK(st == (ok & 1 ? 200 : 403), "well-known %d", st);
			r = (char *)evbuffer_pullup(eb, -1);
			end = r != NULL ? strstr(r, "\r\n\r\n") : NULL;
			CHECK(end != NULL, "well-known without a head");
			body = n - (size_t)(end + 4 - r);
			j = json_loadb(end + 4, body, 0, NULL);
			CHECK(json_is_object(j), "well-known body not an object");
			if (ok & 1)
				CHECK(json_is_string(json_object_get(j,
				    "endpoint")) && strcmp(json_string_value(
				    json_object_get(j, "endpoint")), path) == 0,
				    "well-known names another endpoint");
			if (ok == 3)
				CHECK(json_array_size(json_object_get(j,
				    "gone")) == 2 && json_is_string(json_array_get(
				    json_object_get(j, "gone"), 1)) && strcmp(
				    json_string_value(json_array_get(json_object_get(
				    j, "gone"), 1)), own) == 0,
				    "well-known lists another gone");
			json_decref(j);
			check_response(eb, st);
		} else {
			CHECK(st == (ok & 1 ? 200 : 403) && n > 0, "HEAD %d", st);
		}
		evbuffer_free(eb);
	}
	free(own);
}

static int
try_check(const struct http_request *req, const char *path)
{
	const char *why = NULL;
	int st = http_upgrade_check(req, path, &why);

	CHECK(st == 0 || st == 400 || st == 404 || st == 405 || st == 426,
	    "http_upgrade_check returned %d", st);
	CHECK(st == 0 || (why != NULL && *why != '\0'), "refusal %d without "
	    "a reason", st);
	CHECK(http_upgrade_check(req, path, NULL) == st, "why_r NULL changes "
	    "the answer");
	return st;
}

static void
parsed(const struct http_request *req, const char *buf, size_t len)
{
	struct evbuffer *eb;
	char accept[29], *path, *proto = NULL;
	const char *why = NULL;
	size_t i;
	int st, st2;

	check_request(req, buf, len);
	if ((path = strndup(req->path.p, req->path.n)) == NULL ||
	    (eb = evbuffer_new()) == NULL)
		abort();
	try_check(req, "/ws");
	try_check(req, "/");
	check_wellknown(req, "/ws");
	check_wellknown(req, "/a\"b\\c");
	st = try_check(req, path);
	CHECK(st != 404, "404 on the request's own path %s", path);
	st2 = http_upgrade_check(req, path, &why);
	if (st == 0) {
		CHECK(req->key.n == 24 && req->key.p[22] == '=' &&
		    req->key.p[23] == '=', "accepted key of %zu bytes",
		    req->key.n);
		for (i = 0; i < 22; i++)
			CHECK(is_b64((unsigned char)req->key.p[i]), "key byte");
		CHECK(req->method.n == 3 && memcmp(req->method.p, "GET", 3) ==
		    0 && req->host.n > 0 && req->upgrade_websocket &&
		    req->connection_upgrade && req->version.n == 2 &&
		    memcmp(req->version.p, "13", 2) == 0, "accepted a request "
		    "missing a requirement");
		check_accept(&req->key);
		http_accept_key(&req->key, accept);
		if (req->nprotocols > 0 && req->protocols[0].n > 0)
			proto = strndup(req->protocols[0].p,
			    req->protocols[0].n);
		http_response_101(eb, accept, proto, NULL);
		check_response(eb, 101);
		free(proto);
	} else {
		http_response_error(eb, st2, why);
		check_response(eb, st2);
	}
	/* and the errors the daemon sends without a parsed request */
	http_response_error(eb, 403, NULL);
	check_response(eb, 403);
	http_response_retry(eb, 503, why, (unsigned)len);
	check_response(eb, 503);
	http_response_retry(eb, 410, NULL, 0);
	check_response(eb, 410);
	evbuffer_free(eb);
	free(path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req;
	struct http_str slice;
	const char *why;
	char *buf, *head;
	size_t hl;
	int rc;

	buf = (char *)fuzz_dup(data, size);

	hl = http_head_length(buf, size);
	CHECK(hl == naive_head_length(buf, size), "head length %zu, first "
	    "CRLFCRLF ends at %zu", hl, naive_head_length(buf, size));

	why = NULL;
	rc = http_request_parse(buf, size, &req, &why);
	CHECK(rc == 0 || rc == 400, "parse returned %d", rc);
	if (rc == 400)
		CHECK(why != NULL && *why != '\0', "400 without a reason");
	else {
		CHECK(hl == size, "parsed %zu bytes as a request whose head "
		    "ends at %zu", size, hl);
		parsed(&req, buf, size);
	}
	CHECK(http_request_parse(buf, size, &req, NULL) == rc,
	    "why_r NULL changes the answer");

	if (hl > 0 && buf[hl - 1] == '\n' && (hl == 1 || buf[hl - 2] != '\r'))
		CHECK(http_request_parse(buf, hl, &req, NULL) == 400,
		    "a head ending in a bare LF parsed");
	if (hl > 0 && hl < size) {
		/* what conn.c does: parse exactly the head */
		head = (char *)fuzz_dup(buf, hl);
		why = NULL;
		rc = http_request_parse(head, hl, &req, &why);
		CHECK(rc == 0 || rc == 400, "parse returned %d", rc);
		CHECK(rc == 0 || (why != NULL && *why != '\0'), "no reason");
		if (rc == 0)
			parsed(&req, head, hl);
		free(head);
	}

	/* the accept key on whatever it is given, 0 to any length */
	slice.p = buf;
	slice.n = size;
	check_accept(&slice);
	slice.n = size < 80 ? size : size % 80;
	check_accept(&slice);

	(void)http_status_text(size > 0 ? buf[0] * 4 : 0);
	free(buf);
	return 0;
}
