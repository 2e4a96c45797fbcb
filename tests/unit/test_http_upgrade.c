/*
 * test_http_upgrade.c: unit tests for the opening handshake.
 *
 * Every request parsed here is first copied into a malloc'd buffer of its
 * exact length, so under AddressSanitizer or valgrind a parser that reads
 * one byte past the head it was given fails loudly instead of finding the
 * string literal's NUL.  The requests are the ones real clients send
 * (Chromium, Firefox) and the ones a hostile or broken one might.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <event2/buffer.h>

#include "wsplugd.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define VALID_HEADERS \
	"Host: example.com\r\n" \
	"Upgrade: websocket\r\n" \
	"Connection: Upgrade\r\n" \
	"Sec-WebSocket-Key: " KEY "\r\n" \
	"Sec-WebSocket-Version: 13\r\n"
#define GET_CHAT "GET /chat HTTP/1.1\r\n"

/* What Chromium 120 sends for new WebSocket("ws://localhost:8080/chat?room=1",
 * ["chat", "superchat"]) from a page on localhost:8080. */
static const char chromium[] =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: http://localhost:8080\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: " KEY "\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "\r\n";

/* Firefox 121: note "keep-alive, Upgrade" and the Sec-Fetch-* headers. */
static const char firefox[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 "
    "Firefox/121.0\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://localhost:8080\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-Fetch-Dest: empty\r\n"
    "Sec-Fetch-Mode: websocket\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "Upgrade: websocket\r\n"
    "\r\n";

/* The exact-size copy behind the last parse; req's pointers point into it,
 * so it lives until the next parse or the end of the suite. */
static char *held;
static size_t held_len;
static struct http_request req;
static const char *why;

static int
parse_n(const char *s, size_t n)
{
	free(held);
	held = malloc(n);
	if (n > 0) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(held);
		memcpy(held, s, n);
	}
	held_len = n;
	why = NULL;
	return http_request_parse(held, n, &req, &why);
}

static int
parse(const char *s)
{
	return parse_n(s, strlen(s));
}

/* The status the server would answer with on path "/chat": the parser's
 * 400, the check's refusal, or 0 for a 101. */
static int
status(const char *s)
{
	int r;

	if ((r = parse(s)) != 0) {
		CU_ASSERT_PTR_NOT_NULL(why);
		return r;
	}
	why = NULL;
	r = http_upgrade_check(&req, "/chat", &why);
	if (r != 0)
		CU_ASSERT_PTR_NOT_NULL(why);
	return r;
}

static int
str_is(const struct http_str *s, const char *lit)
{
	return s->p != NULL && s->n == strlen(lit) &&
	    memcmp(s->p, lit, s->n) == 0;
}

static int
inside(const struct http_str *s)
{
	return s->p >= held && s->p + s->n <= held + held_len;
}

static int
why_is(const char *lit)
{
	return why != NULL && strcmp(why, lit) == 0;
}

static int
suite_clean(void)
{
	free(held);
	held = NULL;
	return 0;
}

static void
test_head_length(void)
{
	static const char head[] = GET_CHAT VALID_HEADERS "\r\n";
	size_t hl = strlen(head);

	CU_ASSERT_EQUAL(http_head_length("", 0), 0);
	CU_ASSERT_EQUAL(http_head_length("\r\n\r", 3), 0);
	CU_ASSERT_EQUAL(http_head_length("\r\n\r\n", 4), 4);
	CU_ASSERT_EQUAL(http_head_length(GET_CHAT, strlen(GET_CHAT)), 0);
	CU_ASSERT_EQUAL(http_head_length(head, hl), hl);
	/* A bare LF ends the head where it stands, so that the parser
	 * refuses it at once rather than the head waiting for a CRLFCRLF
	 * that never comes. */
	CU_ASSERT_EQUAL(http_head_length("GET / HTTP/1.1\n\n", 16), 15);
	CU_ASSERT_EQUAL(http_head_length("a\r\n\n\r\n", 6), 4);
	CU_ASSERT_EQUAL(http_head_length("\n", 1), 1);
	CU_ASSERT_EQUAL(http_head_length("GET / HTTP/1.1\r\nHost: x\nUp", 26),
	    24);
	CU_ASSERT_EQUAL(http_head_length("GET / HTTP/1.1\r\nHost: x\r", 25),
	    0);
	CU_ASSERT_EQUAL(parse_n("GET / HTTP/1.1\r\nHost: x\n", 24), 400);
	CU_ASSERT(why_is("bare LF in request head"));
	CU_ASSERT_EQUAL(parse_n("GET / HTTP/1.1\n", 15), 400);
	CU_ASSERT(why_is("bare LF in request head"));
	CU_ASSERT_EQUAL(http_head_length("a\r\r\n\r\n", 6), 6);
	/* Binary before the terminator does not stop the search. */
	CU_ASSERT_EQUAL(http_head_length("a\0b\r\n\r\n", 7), 7);
	/* The first terminator wins; what follows is frame data. */
	CU_ASSERT_EQUAL(http_head_length("a\r\n\r\nb\r\n\r\n", 10), 5);
}

/* The head arrives in two reads split at every possible byte, in
 * particular inside the CRLFCRLF; it is complete only once all of it is
 * there, and bytes after it do not change its length. */
static void
test_head_length_split(void)
{
	static const char head[] = GET_CHAT VALID_HEADERS "\r\n" "\x81\x85";
	size_t hl = strlen(GET_CHAT VALID_HEADERS "\r\n");
	size_t total = sizeof(head) - 1, k;
	char *b;

	for (k = 0; k <= total; k++) {
		b = malloc(k > 0 ? k : 1);
		CU_ASSERT_PTR_NOT_NULL_FATAL(b);
		memcpy(b, head, k);
		CU_ASSERT_EQUAL(http_head_length(b, k), k < hl ? 0 : hl);
		free(b);
	}
}

static void
test_chromium(void)
{
	CU_ASSERT_EQUAL(parse(chromium), 0);
	CU_ASSERT(str_is(&req.method, "GET"));
	CU_ASSERT(str_is(&req.target, "/chat?room=1"));
	CU_ASSERT(str_is(&req.path, "/chat"));
	CU_ASSERT(str_is(&req.host, "localhost:8080"));
	CU_ASSERT(str_is(&req.key, KEY));
	CU_ASSERT(str_is(&req.version, "13"));
	CU_ASSERT(str_is(&req.origin, "http://localhost:8080"));
	CU_ASSERT(str_is(&req.user_agent,
	    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
	    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"));
	CU_ASSERT_EQUAL(req.nprotocols, 1);
	CU_ASSERT(str_is(&req.protocols[0], "chat, superchat"));
	CU_ASSERT(req.connection_upgrade);
	CU_ASSERT(req.upgrade_websocket);
	/* Nothing copied: every field points into the caller's buffer. */
	CU_ASSERT(inside(&req.method) && inside(&req.target) &&
	    inside(&req.path) && inside(&req.host) && inside(&req.key) &&
	    inside(&req.version) && inside(&req.origin) &&
	    inside(&req.user_agent) && inside(&req.protocols[0]));
	why = NULL;
	CU_ASSERT_EQUAL(http_upgrade_check(&req, "/chat", &why), 0);
	CU_ASSERT_PTR_NULL(why);
}

static void
test_firefox(void)
{
	CU_ASSERT_EQUAL(status(firefox), 0);
	CU_ASSERT(str_is(&req.key, "x3JJHMbDL1EzLkh9GBhXDw=="));
	CU_ASSERT_EQUAL(req.nprotocols, 0);
	CU_ASSERT(req.connection_upgrade);
}

static void
test_accept_key(void)
{
	struct http_str k = { KEY, sizeof(KEY) - 1 };
	struct http_str k2 = { "x3JJHMbDL1EzLkh9GBhXDw==", 24 };
	char out[29];

	/* RFC 6455 1.3: SHA-1 b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59
	 * 45 b2 be c4 ea, base64 as below. */
	memset(out, 'x', sizeof(out));
	http_accept_key(&k, out);
	CU_ASSERT_STRING_EQUAL(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	CU_ASSERT_EQUAL(out[28], '\0');
	http_accept_key(&k2, out);
	CU_ASSERT_STRING_EQUAL(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void
test_check_404(void)
{
	CU_ASSERT_EQUAL(status("GET /chat/ HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    404);
	CU_ASSERT_EQUAL(status("GET /Chat HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    404);
	CU_ASSERT_EQUAL(status("GET /cha HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    404);
	CU_ASSERT_EQUAL(status("GET /chatx HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    404);
	CU_ASSERT_EQUAL(status("GET / HTTP/1.1\r\n" VALID_HEADERS "\r\n"), 404);
	/* No decoding: %63 is 'c', but byte for byte it is another path. */
	CU_ASSERT_EQUAL(status("GET /%63hat HTTP/1.1\r\n" VALID_HEADERS
	    "\r\n"), 404);
	/* The path is decided first, before method or headers. */
	CU_ASSERT_EQUAL(status("POST /other HTTP/1.1\r\n\r\n"), 404);
	CU_ASSERT_EQUAL(parse(GET_CHAT VALID_HEADERS "\r\n"), 0);
	CU_ASSERT_EQUAL(http_upgrade_check(&req, "/", &why), 404);
	CU_ASSERT_EQUAL(http_upgrade_check(&req, "/chat", &why), 0);
}

static void
test_check_405(void)
{
	CU_ASSERT_EQUAL(status("POST /chat HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    405);
	CU_ASSERT(why_is("method not allowed"));
	CU_ASSERT_EQUAL(status("HEAD /chat HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    405);
	/* Methods are case-sensitive (RFC 7230 3.1.1). */
	CU_ASSERT_EQUAL(status("get /chat HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    405);
	CU_ASSERT_EQUAL(status("GETS /chat HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    405);
	/* Method beats headers. */
	CU_ASSERT_EQUAL(status("PUT /chat HTTP/1.1\r\n\r\n"), 405);
}

static void
test_check_host(void)
{
	CU_ASSERT_EQUAL(status(GET_CHAT
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: " KEY "\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n"), 400);
	CU_ASSERT(why_is("missing Host header"));
	CU_ASSERT_EQUAL(status(GET_CHAT
	    "Host:\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: " KEY "\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n"), 400);
	CU_ASSERT(why_is("missing Host header"));
	/* Host beats the upgrade headers. */
	CU_ASSERT_EQUAL(status(GET_CHAT "\r\n"), 400);
	CU_ASSERT(why_is("missing Host header"));
}

static void
test_check_upgrade_headers(void)
{
	static const char *no_upgrade[] = {
		GET_CHAT "Host: h\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		GET_CHAT "Host: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		GET_CHAT "Host: h\r\nUpgrade: websockets\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		GET_CHAT "Host: h\r\nUpgrade: web socket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		GET_CHAT "Host: h\r\nUpgrade:\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
	};
	static const char *no_connection[] = {
		GET_CHAT "Host: h\r\nUpgrade: websocket\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		GET_CHAT "Host: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		GET_CHAT "Host: h\r\nUpgrade: websocket\r\nConnection: upgraded\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		GET_CHAT "Host: h\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade-Insecure-Requests\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(no_upgrade) / sizeof(no_upgrade[0]); i++) {
		CU_ASSERT_EQUAL(status(no_upgrade[i]), 400);
		CU_ASSERT(why_is("Upgrade header does not name websocket"));
	}
	for (i = 0; i < sizeof(no_connection) / sizeof(no_connection[0]); i++) {
		CU_ASSERT_EQUAL(status(no_connection[i]), 400);
		CU_ASSERT(why_is("Connection header does not list upgrade"));
	}
}

static void
test_check_version(void)
{
	static const char *bad[] = { "8", "12", "14", "013", "13, 8", "",
	    "thirteen" };
	char buf[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), GET_CHAT
		    "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: " KEY "\r\n"
		    "Sec-WebSocket-Version: %s\r\n\r\n", bad[i]);
		CU_ASSERT_EQUAL(status(buf), 426);
		CU_ASSERT(why_is("unsupported Sec-WebSocket-Version"));
	}
	/* Missing gets 426 too, and the version check comes before the key. */
	CU_ASSERT_EQUAL(status(GET_CHAT
	    "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), 426);
	CU_ASSERT(why_is("missing Sec-WebSocket-Version header"));
	/* OWS around the value is not part of it. */
	CU_ASSERT_EQUAL(status(GET_CHAT
	    "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: " KEY "\r\n"
	    "Sec-WebSocket-Version: \t13 \t\r\n\r\n"), 0);
}

/* Every byte at every one of the 22 places of a key (that parses as a
 * header value): good exactly when it is in the base64 alphabet. */
static void
test_check_key_every_byte(void)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	char key[25], buf[512];
	size_t pos;
	unsigned b;
	int want, wrong = 0;

	for (b = 0x21; b < 256; b++) {
		if (b == 0x7f)
			continue; /* not a header value's byte */
		want = strchr(b64, (int)b) != NULL ? 0 : 400;
		for (pos = 0; pos < 22; pos++) {
			memcpy(key, "dGhlIHNhbXBsZSBub25jZQ==", 25);
			key[pos] = (char)b;
			snprintf(buf, sizeof(buf), GET_CHAT "Host: h\r\n"
			    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
			    "Sec-WebSocket-Key: %s\r\n"
			    "Sec-WebSocket-Version: 13\r\n\r\n", key);
			wrong += status(buf) != want;
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
}

static void
test_check_key(void)
{
	static const char *bad[] = {
		"",
		"dGhlIHNhbXBsZSBub25jZQ=",     /* 23 */
		"dGhlIHNhbXBsZSBub25jZQ===",   /* 25 */
		"dGhlIHNhbXBsZSBub25jZQQQ",    /* no padding */
		"dGhlIHNhbXBsZSBub25jZ===",    /* 15 bytes and junk */
		"dGhlIHNhbXBsZSBub25jZQ=A",
		"dGhlIHNhbXBsZSBub25jZQA=",    /* 17 bytes */
		"dGhlIHNhbXBs=SBub25jZQ==",    /* '=' inside */
		"dGhlIHNhbXBsZSBub25jZ-==",    /* base64url */
		"dGhlIHNhbXBsZSBub25jZ_==",
		"dGhlIHNhbXBsZSBub25j ZQ==",
		"dGhlIHNhbXBsZSBub25jZQ",      /* unpadded */
		"dGhlIHNhbXBsZSBub25jZQ==dGhl",
		"AAAAAAAAAAAAAAAAAAAAAAAA",    /* 18 bytes */
	};
	char buf[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), GET_CHAT
		    "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: %s\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n", bad[i]);
		CU_ASSERT_EQUAL(status(buf), 400);
		CU_ASSERT(why_is("Sec-WebSocket-Key is not base64 of 16 bytes"));
	}
	CU_ASSERT_EQUAL(status(GET_CHAT
	    "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n"), 400);
	CU_ASSERT(why_is("missing Sec-WebSocket-Key header"));
	/* The whole alphabet, '+' and '/' included. */
	CU_ASSERT_EQUAL(status(GET_CHAT
	    "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: +/09azAZ+/09azAZ+/09aw==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n"), 0);
}

static void
test_case_insensitive(void)
{
	CU_ASSERT_EQUAL(status(GET_CHAT
	    "hOST: h\r\n"
	    "UPGRADE: WebSocket\r\n"
	    "connection: UPGRADE\r\n"
	    "sec-websocket-key: " KEY "\r\n"
	    "SEC-WEBSOCKET-VERSION: 13\r\n"
	    "oRiGiN: https://a.example\r\n"
	    "user-agent: x\r\n"
	    "sec-websocket-PROTOCOL: chat\r\n\r\n"), 0);
	CU_ASSERT(str_is(&req.host, "h"));
	CU_ASSERT(str_is(&req.origin, "https://a.example"));
	CU_ASSERT(str_is(&req.user_agent, "x"));
	CU_ASSERT_EQUAL(req.nprotocols, 1);
	/* Values keep their case: the key is not a token. */
	CU_ASSERT(str_is(&req.key, KEY));
}

static void
test_token_lists(void)
{
	static const char *conn_ok[] = {
		"Connection: keep-alive, Upgrade\r\n",
		"Connection: keep-alive,Upgrade\r\n",
		"Connection: Upgrade, keep-alive\r\n",
		"Connection: , ,\tupgrade\t, \r\n",
		"Connection: keep-alive\r\nConnection: Upgrade\r\n",
		"Connection: Upgrade\r\nConnection: close\r\n",
	};
	static const char *upg_ok[] = {
		"Upgrade: websocket/13\r\n",
		"Upgrade: h2c, WebSocket\r\n",
		"Upgrade: foo/1,websocket\r\n",
		"Upgrade: h2c\r\nUpgrade: websocket\r\n",
	};
	char buf[512];
	size_t i;

	for (i = 0; i < sizeof(conn_ok) / sizeof(conn_ok[0]); i++) {
		snprintf(buf, sizeof(buf), GET_CHAT
		    "Host: h\r\nUpgrade: websocket\r\n%s"
		    "Sec-WebSocket-Key: " KEY "\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n", conn_ok[i]);
		CU_ASSERT_EQUAL(status(buf), 0);
	}
	for (i = 0; i < sizeof(upg_ok) / sizeof(upg_ok[0]); i++) {
		snprintf(buf, sizeof(buf), GET_CHAT
		    "Host: h\r\nConnection: Upgrade\r\n%s"
		    "Sec-WebSocket-Key: " KEY "\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n", upg_ok[i]);
		CU_ASSERT_EQUAL(status(buf), 0);
	}
	/* The product-version form does not extend to Connection. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "Connection: upgrade/1\r\n\r\n"), 0);
	CU_ASSERT_FALSE(req.connection_upgrade);
}

static void
test_query_string(void)
{
	CU_ASSERT_EQUAL(status("GET /chat?a=b&c=%20 HTTP/1.1\r\n" VALID_HEADERS
	    "\r\n"), 0);
	CU_ASSERT(str_is(&req.target, "/chat?a=b&c=%20"));
	CU_ASSERT(str_is(&req.path, "/chat"));
	CU_ASSERT_EQUAL(status("GET /chat? HTTP/1.1\r\n" VALID_HEADERS "\r\n"),
	    0);
	CU_ASSERT(str_is(&req.path, "/chat"));
	CU_ASSERT_EQUAL(status("GET /chat?x?y=/chat HTTP/1.1\r\n" VALID_HEADERS
	    "\r\n"), 0);
	CU_ASSERT(str_is(&req.path, "/chat"));
	CU_ASSERT_EQUAL(parse("GET /?x HTTP/1.1\r\n\r\n"), 0);
	CU_ASSERT(str_is(&req.path, "/"));
	CU_ASSERT(str_is(&req.target, "/?x"));
}

static void
test_duplicates(void)
{
	static const char *dup[][2] = {
		{ "Host: h\r\n", "duplicate Host header" },
		{ "Host: h2\r\n", "duplicate Host header" },
		{ "Sec-WebSocket-Key: " KEY "\r\n",
		    "duplicate Sec-WebSocket-Key header" },
		{ "sec-websocket-version: 13\r\n",
		    "duplicate Sec-WebSocket-Version header" },
	};
	char buf[512];
	size_t i;

	for (i = 0; i < sizeof(dup) / sizeof(dup[0]); i++) {
		snprintf(buf, sizeof(buf), GET_CHAT VALID_HEADERS "%s\r\n",
		    dup[i][0]);
		CU_ASSERT_EQUAL(parse(buf), 400);
		CU_ASSERT(why_is(dup[i][1]));
	}
	CU_ASSERT_EQUAL(parse(GET_CHAT "Origin: a\r\nOrigin: a\r\n\r\n"), 400);
	CU_ASSERT(why_is("duplicate Origin header"));
	/* Even an empty first one counts. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "Origin:\r\nOrigin: a\r\n\r\n"), 400);

	/* User-Agent is only logged: the first is kept. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "User-Agent: a\r\nUser-Agent: b\r\n\r\n"),
	    0);
	CU_ASSERT(str_is(&req.user_agent, "a"));

	/* Up to HTTP_MAX_PROTOCOL_HEADERS Sec-WebSocket-Protocol lines. */
	CU_ASSERT_EQUAL(HTTP_MAX_PROTOCOL_HEADERS, 8);
	CU_ASSERT_EQUAL(parse(GET_CHAT
	    "Sec-WebSocket-Protocol: p0\r\nSec-WebSocket-Protocol: p1\r\n"
	    "Sec-WebSocket-Protocol: p2\r\nSec-WebSocket-Protocol: p3\r\n"
	    "Sec-WebSocket-Protocol: p4\r\nSec-WebSocket-Protocol: p5\r\n"
	    "Sec-WebSocket-Protocol: p6\r\nSec-WebSocket-Protocol: p7\r\n"
	    "\r\n"), 0);
	CU_ASSERT_EQUAL(req.nprotocols, 8);
	CU_ASSERT(str_is(&req.protocols[0], "p0"));
	CU_ASSERT(str_is(&req.protocols[7], "p7"));
	CU_ASSERT_EQUAL(parse(GET_CHAT
	    "Sec-WebSocket-Protocol: p0\r\nSec-WebSocket-Protocol: p1\r\n"
	    "Sec-WebSocket-Protocol: p2\r\nSec-WebSocket-Protocol: p3\r\n"
	    "Sec-WebSocket-Protocol: p4\r\nSec-WebSocket-Protocol: p5\r\n"
	    "Sec-WebSocket-Protocol: p6\r\nSec-WebSocket-Protocol: p7\r\n"
	    "Sec-WebSocket-Protocol: p8\r\n\r\n"), 400);
	CU_ASSERT(why_is("too many Sec-WebSocket-Protocol headers"));
}

static void
test_obs_fold(void)
{
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host: h\r\n x\r\n\r\n"), 400);
	CU_ASSERT(why_is("obsolete line folding"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host: h\r\n\tx\r\n\r\n"), 400);
	CU_ASSERT(why_is("obsolete line folding"));
	/* A fold hiding a second Connection value. */
	CU_ASSERT_EQUAL(parse(GET_CHAT VALID_HEADERS "X-A: a\r\n"
	    " Connection: close\r\n\r\n"), 400);
	/* Folding the first header line onto the request line. */
	CU_ASSERT_EQUAL(parse(GET_CHAT " Host: h\r\n\r\n"), 400);
}

/* Every byte at every offset of values of every length the checks treat
 * apart (with the space before them: shorter than a vector, read a word
 * at a time and byte by byte; exactly one vector; vectors and a tail
 * read as the last sixteen bytes again): refused exactly when it is a
 * control character other than HTAB, or DEL.  (LF ends the line: a bare
 * LF.) */
static void
test_value_bytes_every_position(void)
{
	static const size_t vlens[] = { 6, 14, 15, 16, 30, 31, 37, 47 };
	char head[256];
	size_t pos, n, pre, k, vlen;
	unsigned b;
	int want, got, wrong = 0;

	pre = (size_t)snprintf(head, sizeof(head), GET_CHAT "X-Long: ");
	for (k = 0; k < sizeof(vlens) / sizeof(vlens[0]); k++) {
		vlen = vlens[k];
		for (b = 0; b < 256; b++) {
			if (b == '\n')
				continue;
			want = (b < 0x20 && b != '\t') || b == 0x7f ? 400 : 0;
			for (pos = 0; pos < vlen; pos++) {
				memset(head + pre, 'a', vlen);
				head[pre + pos] = (char)b;
				n = pre + vlen;
				memcpy(head + n, "\r\n\r\n", 4);
				n += 4;
				got = parse_n(head, n);
				if (got != want || (want == 400 && !why_is(
				    "control character in header value")))
					wrong++;
			}
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
}

/* Every byte at every offset of header names of every length the scan
 * treats apart (sixteen bytes a step while the line has them, then byte
 * by byte), with a value long enough for the step on short names too:
 * a tchar is part of the name; a ':' ends it (a name before it is
 * accepted, none is not); any other byte is refused. */
static void
test_name_bytes_every_position(void)
{
	static const size_t nlens[] = { 1, 5, 15, 16, 17, 24, 33 };
	static const char tchars[] = "!#$%&'*+-.^_`|~";
	char head[256];
	size_t pos, n, pre, k, nlen;
	unsigned b;
	int tchar, want, got, wrong = 0;

	pre = (size_t)snprintf(head, sizeof(head), GET_CHAT);
	for (k = 0; k < sizeof(nlens) / sizeof(nlens[0]); k++) {
		nlen = nlens[k];
		for (b = 1; b < 256; b++) {
			tchar = (b >= 'a' && b <= 'z') || (b >= 'A' &&
			    b <= 'Z') || (b >= '0' && b <= '9') ||
			    strchr(tchars, (int)b) != NULL;
			for (pos = 0; pos < nlen; pos++) {
				memset(head + pre, 'n', nlen);
				head[pre + pos] = (char)b;
				n = pre + nlen;
				n += (size_t)snprintf(head + n,
				    sizeof(head) - n, ": %s\r\n\r\n",
				    "a value of some length");
				if (tchar)
					want = 0;
				else if (b == ':')
					want = pos > 0 ? 0 : 400;
				else
					want = 400;
				got = parse_n(head, n);
				wrong += got != want;
			}
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
}

static void
test_bare_lf(void)
{
	CU_ASSERT_EQUAL(parse("GET /chat HTTP/1.1\nHost: h\r\n\r\n"), 400);
	CU_ASSERT(why_is("bare LF in request head"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host: h\nUpgrade: websocket\r\n\r\n"),
	    400);
	CU_ASSERT(why_is("bare LF in request head"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host: h\r\n\n\r\n\r\n"), 400);
	CU_ASSERT_EQUAL(parse(GET_CHAT "\n\r\n"), 400);
	/* A bare CR shows up as a control character in the line. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host: h\rX: y\r\n\r\n"), 400);
	CU_ASSERT(why_is("control character in header value"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host: h\r\r\n\r\n"), 400);
	CU_ASSERT_EQUAL(parse("GET /chat HTTP/1.1\r\r\n\r\n"), 400);
}

static void
test_control_chars(void)
{
	static const char nul[] = GET_CHAT "Host: a\0b\r\n\r\n";
	static const char *bad[] = {
		GET_CHAT "Host: a\x01" "b\r\n\r\n",
		GET_CHAT "Host: a\x1f\r\n\r\n",
		GET_CHAT "Host: a\x7f\r\n\r\n",
		GET_CHAT "User-Agent: \x1b[31mred\r\n\r\n",
		GET_CHAT "X-Unknown: \x0b\r\n\r\n",
	};
	size_t i;

	CU_ASSERT_EQUAL(parse_n(nul, sizeof(nul) - 1), 400);
	CU_ASSERT(why_is("control character in header value"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(parse(bad[i]), 400);
		CU_ASSERT(why_is("control character in header value"));
	}
	/* HTAB and obs-text (a UTF-8 user agent) are allowed in values. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "User-Agent: a\tb\r\n\r\n"), 0);
	CU_ASSERT(str_is(&req.user_agent, "a\tb"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "User-Agent: caf\xc3\xa9\r\n\r\n"), 0);
	CU_ASSERT(str_is(&req.user_agent, "caf\xc3\xa9"));

	/* In the request target nothing but visible ASCII. */
	CU_ASSERT_EQUAL(parse("GET /a\x01 HTTP/1.1\r\n\r\n"), 400);
	CU_ASSERT(why_is("invalid character in request target"));
	CU_ASSERT_EQUAL(parse("GET /a\tb HTTP/1.1\r\n\r\n"), 400);
	CU_ASSERT_EQUAL(parse("GET /a\x7f HTTP/1.1\r\n\r\n"), 400);
	CU_ASSERT_EQUAL(parse("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), 400);
	CU_ASSERT_EQUAL(parse("GET /chat#frag HTTP/1.1\r\n\r\n"), 400);
	CU_ASSERT_EQUAL(parse_n("GET /a\0 HTTP/1.1\r\n\r\n", 20), 400);
	/* And a NUL in a header name. */
	CU_ASSERT_EQUAL(parse_n(GET_CHAT "Ho\0st: h\r\n\r\n",
	    sizeof(GET_CHAT) - 1 + 12), 400);
	CU_ASSERT(why_is("invalid character in header name"));
}

static void
test_request_line(void)
{
	static const char *malformed[] = {
		"GET  /chat HTTP/1.1\r\n\r\n",
		"GET /chat  HTTP/1.1\r\n\r\n",
		"GET /chat HTTP/1.1 \r\n\r\n",
		" GET /chat HTTP/1.1\r\n\r\n",
		"GET\t/chat HTTP/1.1\r\n\r\n",
		"GET /chat\r\n\r\n",
		"GET /chat \r\n\r\n",
		"GET\r\n\r\n",
		"\r\n\r\n",
		"GET /chat http/1.1\r\n\r\n",
		"GET /chat HTTP/1.10\r\n\r\n",
		"GET /chat HTTP/11\r\n\r\n",
		"GET /chat HTTPS/1.1\r\n\r\n",
		"G(ET /chat HTTP/1.1\r\n\r\n",
		"GET /chat HTTP/1.1 extra\r\n\r\n",
		"GET  HTTP/1.1\r\n\r\n",
	};
	static const char *not_origin_form[] = {
		"GET http://h/chat HTTP/1.1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\n\r\n",
		"GET chat HTTP/1.1\r\n\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		CU_ASSERT_EQUAL(parse(malformed[i]), 400);
		CU_ASSERT(why_is("malformed request line"));
	}
	for (i = 0; i < sizeof(not_origin_form) / sizeof(not_origin_form[0]);
	    i++) {
		CU_ASSERT_EQUAL(parse(not_origin_form[i]), 400);
		CU_ASSERT(why_is("request target not in origin form"));
	}
	CU_ASSERT_EQUAL(parse("GET /chat HTTP/1.0\r\n" VALID_HEADERS "\r\n"),
	    400);
	CU_ASSERT(why_is("HTTP version is not 1.1"));
	CU_ASSERT_EQUAL(parse("GET /chat HTTP/2.0\r\n\r\n"), 400);
	CU_ASSERT(why_is("HTTP version is not 1.1"));
	/* Extension methods are tokens too; the check refuses them. */
	CU_ASSERT_EQUAL(parse("M-SEARCH! /chat HTTP/1.1\r\n\r\n"), 0);
	CU_ASSERT(str_is(&req.method, "M-SEARCH!"));
	/* A head with no header lines parses; the check wants a Host. */
	CU_ASSERT_EQUAL(parse("GET /chat HTTP/1.1\r\n\r\n"), 0);
	CU_ASSERT_PTR_NULL(req.host.p);
}

static void
test_header_syntax(void)
{
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host : h\r\n\r\n"), 400);
	CU_ASSERT(why_is("whitespace before colon"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host\t: h\r\n\r\n"), 400);
	CU_ASSERT(why_is("whitespace before colon"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host\r\n\r\n"), 400);
	CU_ASSERT(why_is("header line without colon"));
	CU_ASSERT_EQUAL(parse(GET_CHAT VALID_HEADERS "garbage\r\n\r\n"), 400);
	CU_ASSERT(why_is("header line without colon"));
	CU_ASSERT_EQUAL(parse(GET_CHAT ": h\r\n\r\n"), 400);
	CU_ASSERT(why_is("empty header name"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Ho(st: h\r\n\r\n"), 400);
	CU_ASSERT(why_is("invalid character in header name"));
	CU_ASSERT_EQUAL(parse(GET_CHAT "Ho st: h\r\n\r\n"), 400);
	CU_ASSERT_EQUAL(parse(GET_CHAT "H\xc3\xb6st: h\r\n\r\n"), 400);

	/* OWS is trimmed on both sides; inner spaces stay; the colon may be
	 * followed by nothing at all. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "Host: \t h:1 \t \r\n"
	    "User-Agent:a  b\r\nOrigin:\r\n\r\n"), 0);
	CU_ASSERT(str_is(&req.host, "h:1"));
	CU_ASSERT(str_is(&req.user_agent, "a  b"));
	CU_ASSERT(str_is(&req.origin, ""));
	CU_ASSERT(inside(&req.origin));
	/* Unknown headers with any token name are skipped. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "X-!#$%&'*+-.^_`|~09: v\r\n\r\n"), 0);
	/* Colons in values are fine. */
	CU_ASSERT_EQUAL(parse(GET_CHAT "Origin: http://a:1\r\n\r\n"), 0);
	CU_ASSERT(str_is(&req.origin, "http://a:1"));
}

/* A parse starts from a clean struct: nothing leaks from the last one. */
static void
test_reset(void)
{
	CU_ASSERT_EQUAL(parse(chromium), 0);
	CU_ASSERT_EQUAL(parse(GET_CHAT "\r\n"), 0);
	CU_ASSERT_PTR_NULL(req.host.p);
	CU_ASSERT_PTR_NULL(req.key.p);
	CU_ASSERT_EQUAL(req.nprotocols, 0);
	CU_ASSERT_FALSE(req.connection_upgrade);
	CU_ASSERT_FALSE(req.upgrade_websocket);
}

/* Every proper prefix of a valid head is refused, never read past. */
static void
test_truncations(void)
{
	static const char *heads[] = { chromium, firefox };
	size_t h, n, len, bad;
	int r;

	for (h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
		len = strlen(heads[h]);
		bad = 0;
		for (n = 0; n < len; n++) {
			r = parse_n(heads[h], n);
			if (r != 400 || why == NULL)
				bad++;
		}
		CU_ASSERT_EQUAL(bad, 0);
		CU_ASSERT_EQUAL(parse_n(heads[h], len), 0);
	}
}

static void
test_trailing_data(void)
{
	CU_ASSERT_EQUAL(parse(GET_CHAT VALID_HEADERS "\r\n" "\x81"), 400);
	CU_ASSERT(why_is("data after request head"));
	CU_ASSERT_EQUAL(parse(GET_CHAT VALID_HEADERS "\r\n" GET_CHAT "\r\n"),
	    400);
	/* What the caller is meant to do. */
	CU_ASSERT_EQUAL(parse_n(GET_CHAT VALID_HEADERS "\r\n" "\x81",
	    http_head_length(GET_CHAT VALID_HEADERS "\r\n" "\x81",
	    strlen(GET_CHAT VALID_HEADERS "\r\n" "\x81"))), 0);
}

static int
buffer_is(struct evbuffer *b, const char *want)
{
	size_t n = evbuffer_get_length(b);
	const unsigned char *p = evbuffer_pullup(b, -1);
	int ok;

	ok = n == strlen(want) && memcmp(p, want, n) == 0;
	if (!ok)
		fprintf(stderr, "\n got: %.*s\nwant: %s\n", (int)n, p, want);
	evbuffer_drain(b, n);
	return ok;
}

/* RFC 6455's example key's answer */
#define HEAD_101 "HTTP/1.1 101 Switching Protocols\r\n" \
	"Upgrade: websocket\r\n" \
	"Connection: Upgrade\r\n" \
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

static void
test_response_101(void)
{
	struct evbuffer *b;
	struct http_str k = { KEY, sizeof(KEY) - 1 };
	char accept[29], big[600], *text;
	size_t n;

	b = evbuffer_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	http_accept_key(&k, accept);
	http_response_101(b, accept, NULL, NULL);
	CU_ASSERT(buffer_is(b,
	    HEAD_101
	    "\r\n"));
	http_response_101(b, accept, "chat", NULL);
	CU_ASSERT(buffer_is(b,
	    HEAD_101
	    "Sec-WebSocket-Protocol: chat\r\n"
	    "\r\n"));
	http_response_101(b, accept, "chat",
	    "permessage-deflate; client_max_window_bits=10");
	CU_ASSERT(buffer_is(b,
	    HEAD_101
	    "Sec-WebSocket-Protocol: chat\r\n"
	    "Sec-WebSocket-Extensions: permessage-deflate; "
	    "client_max_window_bits=10\r\n"
	    "\r\n"));
	/* A protocol far longer than clients send: every piece in place. */
	memset(big, 'p', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	http_response_101(b, accept, big, "x");
	n = evbuffer_get_length(b);
	CU_ASSERT_EQUAL(n, 129 + 26 + strlen(big) + 28 + 1);
	text = (char *)evbuffer_pullup(b, -1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL(memcmp(text + 125, "\r\nSec-WebSocket-Protocol: ppp",
	    29), 0);
	CU_ASSERT_EQUAL(memcmp(text + n - 34,
	    "p\r\nSec-WebSocket-Extensions: x\r\n\r\n", 34), 0);
	evbuffer_drain(b, n);
	/* Appends: what is already queued stays in front. */
	evbuffer_add(b, "x", 1);
	http_response_101(b, accept, NULL, NULL);
	CU_ASSERT_EQUAL(evbuffer_get_length(b), 1 + 129);
	evbuffer_free(b);
}

/* The flat form the stage takes: the length asked for either way, and
 * not a byte written unless all of it fits. */
static void
test_response_101_flat(void)
{
	static const char want[] = HEAD_101
	    "Sec-WebSocket-Protocol: chat\r\n"
	    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	    "\r\n";
	struct http_str k = { KEY, sizeof(KEY) - 1 };
	char accept[29], buf[sizeof(want) + 8];
	size_t n = sizeof(want) - 1;

	http_accept_key(&k, accept);
	CU_ASSERT_EQUAL(http_response_101_flat(NULL, 0, accept, "chat",
	    "permessage-deflate"), n);
	memset(buf, '#', sizeof(buf));
	CU_ASSERT_EQUAL(http_response_101_flat(buf, n - 1, accept, "chat",
	    "permessage-deflate"), n);
	CU_ASSERT_EQUAL(buf[0], '#');
	CU_ASSERT_EQUAL(http_response_101_flat(buf, n, accept, "chat",
	    "permessage-deflate"), n);
	CU_ASSERT_EQUAL(memcmp(buf, want, n), 0);
	CU_ASSERT_EQUAL(buf[n], '#');
	CU_ASSERT_EQUAL(http_response_101_flat(buf, sizeof(buf), accept, NULL,
	    NULL), 129);
	CU_ASSERT_EQUAL(memcmp(buf, HEAD_101 "\r\n", 129), 0);
}

static void
test_response_error(void)
{
	struct evbuffer *b;

	b = evbuffer_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	http_response_error(b, 400, "missing Host header");
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 20\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "missing Host header\n"));
	http_response_error(b, 426, "unsupported Sec-WebSocket-Version");
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 426 Upgrade Required\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 34\r\n"
	    "Connection: close\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "\r\n"
	    "unsupported Sec-WebSocket-Version\n"));
	http_response_error(b, 405, "method not allowed");
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 405 Method Not Allowed\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 19\r\n"
	    "Connection: close\r\n"
	    "Allow: GET\r\n"
	    "\r\n"
	    "method not allowed\n"));
	/* Content-Length counts bytes, not characters. */
	http_response_error(b, 403, "origin \xc3\xa9 not allowed");
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 403 Forbidden\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 22\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "origin \xc3\xa9 not allowed\n"));
	http_response_error(b, 503, NULL);
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 20\r\n"
	    "Connection: close\r\n"
	    "Retry-After: 5\r\n"
	    "Access-Control-Allow-Origin: *\r\n"
	    "Access-Control-Expose-Headers: Retry-After\r\n"
	    "\r\n"
	    "Service Unavailable\n"));
	/* a slot's Retry-After, and a 410 a page may read */
	http_response_retry(b, 503, "restarting", 17);
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 11\r\n"
	    "Connection: close\r\n"
	    "Retry-After: 17\r\n"
	    "Access-Control-Allow-Origin: *\r\n"
	    "Access-Control-Expose-Headers: Retry-After\r\n"
	    "\r\n"
	    "restarting\n"));
	http_response_error(b, 410, "gone");
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 410 Gone\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 5\r\n"
	    "Connection: close\r\n"
	    "Access-Control-Allow-Origin: *\r\n"
	    "\r\n"
	    "gone\n"));
	http_response_error(b, 499, "odd");
	CU_ASSERT(buffer_is(b,
	    "HTTP/1.1 499 Error\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 4\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "odd\n"));
	evbuffer_free(b);
}

/* The discovery document: only for a GET or HEAD of its own path, the
 * endpoint's path JSON-escaped into it, 403 for a refused origin. */
#define FORBIDDEN_HEAD "HTTP/1.1 403 Forbidden\r\n" \
	"Content-Type: application/json\r\n" \
	"Content-Length: 49\r\n" \
	"Cache-Control: no-cache\r\n" \
	"Access-Control-Allow-Origin: *\r\n" \
	"Connection: close\r\n" \
	"\r\n"

static void
test_wellknown(void)
{
	static const char doc[] =
	    "{\"service\":\"wsplugd\",\"version\":\"" PACKAGE_VERSION "\","
	    "\"protocol\":1,\"endpoint\":\"/a\\\"b\","
	    "\"backoff\":{\"base_ms\":1000,\"cap_ms\":30000,"
	    "\"jitter\":\"full\"},\"retry_after_s\":5,"
	    "\"endpoints\":[\"/a\\\"b\"],\"gone\":[],\"retry_slots\":"
	    "{\"close_codes\":[1012,1013],\"reason\":\"retry_after_ms\"}}\n";
	static const char gone_doc[] =
	    "\"endpoints\":[\"/ws\"],\"gone\":[\"/old\",\"/v1/ws\"],";
	char *const gone[] = { "/old", "/v1/ws" };
	size_t len;
	char *text;
	char want[512];
	struct evbuffer *b;

	b = evbuffer_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(parse("GET /.well-known/wsplugd HTTP/1.1\r\n"
	    "Host: x\r\n\r\n"), 0);
	CU_ASSERT_EQUAL(http_wellknown(&req, "/a\"b", 1, b), 200);
	snprintf(want, sizeof(want), "HTTP/1.1 200 OK\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-cache\r\n"
	    "Access-Control-Allow-Origin: *\r\n"
	    "Connection: close\r\n"
	    "\r\n%s", strlen(doc), doc);
	CU_ASSERT(buffer_is(b, want));

	/* The retired paths are listed for a client to stop on. */
	CU_ASSERT_EQUAL(http_wellknown_gone(&req, "/ws", gone, 2, 1, b), 200);
	len = evbuffer_get_length(b);
	text = (char *)evbuffer_pullup(b, -1);
	CU_ASSERT(len > strlen(gone_doc) && memmem(text, len, gone_doc,
	    strlen(gone_doc)) != NULL);
	evbuffer_drain(b, len);

	CU_ASSERT_EQUAL(http_wellknown(&req, "/ws", 0, b), 403);
	CU_ASSERT(buffer_is(b, FORBIDDEN_HEAD
	    "{\"error\":\"origin\",\"detail\":\"origin not allowed\"}\n"));

	/* HEAD: the same head, no body. */
	CU_ASSERT_EQUAL(parse("HEAD /.well-known/wsplugd HTTP/1.1\r\n"
	    "Host: x\r\n\r\n"), 0);
	CU_ASSERT_EQUAL(http_wellknown(&req, "/ws", 0, b), 403);
	CU_ASSERT(buffer_is(b, FORBIDDEN_HEAD));

	/* Not the document: nothing written. */
	CU_ASSERT_EQUAL(parse("POST /.well-known/wsplugd HTTP/1.1\r\n"
	    "Host: x\r\n\r\n"), 0);
	CU_ASSERT_EQUAL(http_wellknown(&req, "/ws", 1, b), 0);
	CU_ASSERT_EQUAL(parse("GET /.well-known/wsplugd/x HTTP/1.1\r\n"
	    "Host: x\r\n\r\n"), 0);
	CU_ASSERT_EQUAL(http_wellknown(&req, "/ws", 1, b), 0);
	CU_ASSERT_EQUAL(parse("GET /.well-known/wsplugd?x=1 HTTP/1.1\r\n"
	    "Host: x\r\n\r\n"), 0);
	CU_ASSERT_EQUAL(http_wellknown(&req, "/ws", 1, b), 200);
	evbuffer_drain(b, evbuffer_get_length(b));
	CU_ASSERT_EQUAL(evbuffer_get_length(b), 0);
	evbuffer_free(b);
}

static void
test_status_text(void)
{
	CU_ASSERT_STRING_EQUAL(http_status_text(101), "Switching Protocols");
	CU_ASSERT_STRING_EQUAL(http_status_text(200), "OK");
	CU_ASSERT_STRING_EQUAL(http_status_text(400), "Bad Request");
	CU_ASSERT_STRING_EQUAL(http_status_text(403), "Forbidden");
	CU_ASSERT_STRING_EQUAL(http_status_text(404), "Not Found");
	CU_ASSERT_STRING_EQUAL(http_status_text(405), "Method Not Allowed");
	CU_ASSERT_STRING_EQUAL(http_status_text(408), "Request Timeout");
	CU_ASSERT_STRING_EQUAL(http_status_text(426), "Upgrade Required");
	CU_ASSERT_STRING_EQUAL(http_status_text(431),
	    "Request Header Fields Too Large");
	CU_ASSERT_STRING_EQUAL(http_status_text(500), "Internal Server Error");
	CU_ASSERT_STRING_EQUAL(http_status_text(503), "Service Unavailable");
	/* what a plugin's upgrade callback refuses with */
	CU_ASSERT_STRING_EQUAL(http_status_text(401), "Unauthorized");
	CU_ASSERT_STRING_EQUAL(http_status_text(429), "Too Many Requests");
	CU_ASSERT_STRING_EQUAL(http_status_text(504), "Gateway Timeout");
	CU_ASSERT_STRING_EQUAL(http_status_text(0), "Error");
	CU_ASSERT_STRING_EQUAL(http_status_text(418), "Error");
	CU_ASSERT_STRING_EQUAL(http_status_text(-1), "Error");
}

static const struct {
	const char *name;
	CU_TestFunc fn;
} tests[] = {
	{ "head length", test_head_length },
	{ "head length, split at every byte", test_head_length_split },
	{ "Chromium request", test_chromium },
	{ "Firefox request", test_firefox },
	{ "accept key (RFC 6455 1.3)", test_accept_key },
	{ "404 on any other path", test_check_404 },
	{ "405 on any other method", test_check_405 },
	{ "400 without Host", test_check_host },
	{ "400 without Upgrade/Connection", test_check_upgrade_headers },
	{ "426 on version other than 13", test_check_version },
	{ "400 on bad Sec-WebSocket-Key", test_check_key },
	{ "a key's every byte at every place", test_check_key_every_byte },
	{ "header names case-insensitive", test_case_insensitive },
	{ "every byte at every offset of a header name",
	    test_name_bytes_every_position },
	{ "Connection and Upgrade token lists", test_token_lists },
	{ "query string stripped from path", test_query_string },
	{ "duplicate headers", test_duplicates },
	{ "obs-fold refused", test_obs_fold },
	{ "bare LF and CR refused", test_bare_lf },
	{ "control characters refused", test_control_chars },
	{ "every byte at every offset of a value",
	    test_value_bytes_every_position },
	{ "request line", test_request_line },
	{ "header line syntax", test_header_syntax },
	{ "parse resets the request", test_reset },
	{ "every truncation refused", test_truncations },
	{ "data after the head", test_trailing_data },
	{ "101 response bytes", test_response_101 },
	{ "101 response written flat, whole or not at all",
	    test_response_101_flat },
	{ "error response bytes", test_response_error },
	{ "discovery document", test_wellknown },
	{ "status texts", test_status_text },
};

int
main(void)
{
	CU_pSuite s;
	unsigned int failures;
	size_t i;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	if ((s = CU_add_suite("http_upgrade", NULL, suite_clean)) == NULL)
		goto fail;
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
			goto fail;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (CU_basic_run_tests() != CUE_SUCCESS)
		goto fail;
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
fail:
	CU_cleanup_registry();
	return 1;
}
