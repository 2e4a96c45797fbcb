/*
 * test_admit.c: the handshake policy of admit.c, against the shared
 * in-memory server: draining and both connection limits at accept (the
 * places taken and given back), origins and the subprotocol choice at
 * upgrade, the metrics label of every status http_upgrade.c refuses with,
 * and what a refusal counts.  Requests are parsed by http_upgrade.c from real request text.
 */
#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "fake.h"
#include "suite.h"

#define REQUEST_HEAD "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" \
	"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"             \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

static char *origins[] = { "https://a.example", "null" };
static char *protocols[] = { "v2.chat", "v1.chat" };

static char text[2048];
static struct http_request req;

/* Parse REQUEST_HEAD with extra header lines. */
static const struct http_request *
request(const char *extra)
{
	const char *why;

	snprintf(text, sizeof(text), "%s%s\r\n", REQUEST_HEAD, extra);
	CU_ASSERT_EQUAL_FATAL(http_request_parse(text, strlen(text), &req,
	    &why), 0);
	return &req;
}

static size_t
refused(const char *reason)
{
	size_t i;

	for (i = 0; i < METRICS_REASONS; i++)
		if (strcmp(metrics_refuse_reasons[i], reason) == 0)
			return fake_srv.metrics.refused[i];
	CU_FAIL("no such reason");
	return 0;
}

/* A connection just accepted from ip, as conn_accept has it. */
static struct wsp_conn *
accepted(struct wsp_conn *c, const char *ip)
{
	memset(c, 0, sizeof(*c));
	c->srv = &fake_srv;
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
	return c;
}

static void
test_accept_limits(void)
{
	const char *reason = NULL, *why = NULL;
	struct wsp_conn a, b, c;

	fake_cfg.max_connections = 2;
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&a, "10.0.0.1"),
	    &reason, &why), 0);
	CU_ASSERT(a.held_conn);
	CU_ASSERT_EQUAL(fake_srv.nheld, 1);
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&b, "10.0.0.2"),
	    &reason, &why), 0);
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&c, "10.0.0.3"),
	    &reason, &why), 503);
	CU_ASSERT_STRING_EQUAL(reason, "max_connections");
	CU_ASSERT_STRING_EQUAL(why, "too many connections");
	/* refused, it holds nothing */
	CU_ASSERT(!c.held_conn && !c.held_ip && !c.ip_counted);
	CU_ASSERT_EQUAL(fake_srv.nheld, 2);
	/* a place given back is free for the next, and only once */
	admit_release(&a);
	admit_release(&a);
	CU_ASSERT_EQUAL(fake_srv.nheld, 1);
	CU_ASSERT_EQUAL(registry_ip_count(&fake_srv.reg, "10.0.0.1"), 0);
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&c, "10.0.0.3"),
	    &reason, &why), 0);
	admit_release(&b);
	admit_release(&c);
	CU_ASSERT_EQUAL(fake_srv.nheld, 0);
	fake_srv.draining = 1;
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&a, "10.0.0.1"),
	    &reason, &why), 503);
	CU_ASSERT_STRING_EQUAL(reason, "shutting_down");
	CU_ASSERT_EQUAL(fake_srv.nheld, 0);
	fake_srv.draining = 0;
	fake_cfg.max_connections = 10000;
}

static void
test_origins(void)
{
	const char *proto, *reason = NULL, *why = NULL;

	/* none configured: any origin, or none at all */
	CU_ASSERT_EQUAL(admit_request(&fake_srv,
	    request(""), &proto, &reason, &why), 0);
	fake_cfg.origins = origins;
	fake_cfg.norigins = 2;
	CU_ASSERT_EQUAL(admit_request(&fake_srv,
	    request("Origin: HTTPS://A.example\r\n"), &proto, &reason, &why),
	    0);
	CU_ASSERT_EQUAL(admit_request(&fake_srv,
	    request("Origin: null\r\n"), &proto, &reason, &why), 0);
	CU_ASSERT_EQUAL(admit_request(&fake_srv,
	    request("Origin: https://a.example.evil\r\n"), &proto, &reason,
	    &why), 403);
	CU_ASSERT_STRING_EQUAL(reason, "origin");
	CU_ASSERT_STRING_EQUAL(why, "origin not allowed");
	CU_ASSERT_EQUAL(admit_request(&fake_srv, request(""),
	    &proto, &reason, &why), 403);
	fake_cfg.origins = NULL;
	fake_cfg.norigins = 0;
}

static void
test_per_address_limit(void)
{
	const char *reason = NULL, *why = NULL;
	struct wsp_conn c[4];

	fake_cfg.max_connections_per_ip = 2;
	/* counted from accept: two still in the handshake are the limit */
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&c[0], "10.0.0.1"),
	    &reason, &why), 0);
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&c[1], "10.0.0.1"),
	    &reason, &why), 0);
	CU_ASSERT_EQUAL(registry_ip_count(&fake_srv.reg, "10.0.0.1"), 2);
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&c[2], "10.0.0.1"),
	    &reason, &why), 503);
	CU_ASSERT_STRING_EQUAL(reason, "max_connections_per_ip");
	CU_ASSERT_STRING_EQUAL(why, "too many connections from this address");
	/* the refused one gave back its global place too */
	CU_ASSERT(!c[2].held_conn && !c[2].ip_counted);
	CU_ASSERT_EQUAL(fake_srv.nheld, 2);
	/* another address is not limited by this one's count */
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&c[3], "10.0.0.2"),
	    &reason, &why), 0);
	admit_release(&c[0]);
	CU_ASSERT_EQUAL(admit_accept(&fake_srv, accepted(&c[2], "10.0.0.1"),
	    &reason, &why), 0);
	/* a reload that lifts the limit still gives back what was taken */
	fake_cfg.max_connections_per_ip = 0;
	admit_release(&c[1]);
	admit_release(&c[2]);
	admit_release(&c[3]);
	CU_ASSERT_EQUAL(registry_ip_count(&fake_srv.reg, "10.0.0.1"), 0);
	CU_ASSERT_EQUAL(fake_srv.nheld, 0);
}

static void
test_subprotocol_is_the_servers_first_choice(void)
{
	const char *proto, *reason, *why;

	fake_cfg.subprotocols = protocols;
	fake_cfg.nsubprotocols = 2;
	/* the server's order wins over the client's */
	CU_ASSERT_EQUAL(admit_request(&fake_srv,
	    request("Sec-WebSocket-Protocol: v1.chat, v2.chat\r\n"), &proto,
	    &reason, &why), 0);
	CU_ASSERT_STRING_EQUAL(proto, "v2.chat");
	/* split over two header lines, with odd spacing */
	CU_ASSERT_EQUAL(admit_request(&fake_srv,
	    request("Sec-WebSocket-Protocol: x\r\n"
	    "Sec-WebSocket-Protocol:\t ,v1.chat\r\n"), &proto, &reason, &why),
	    0);
	CU_ASSERT_STRING_EQUAL(proto, "v1.chat");
	/* a prefix is not a match, and none offered is none chosen */
	CU_ASSERT_EQUAL(admit_request(&fake_srv,
	    request("Sec-WebSocket-Protocol: v1.cha, v2.chatty\r\n"), &proto,
	    &reason, &why), 0);
	CU_ASSERT_PTR_NULL(proto);
	CU_ASSERT_EQUAL(admit_request(&fake_srv, request(""),
	    &proto, &reason, &why), 0);
	CU_ASSERT_PTR_NULL(proto);
	fake_cfg.subprotocols = NULL;
	fake_cfg.nsubprotocols = 0;
}

static void
test_reasons_and_counting(void)
{
	uint64_t before = fake_srv.total_refused;
	size_t version = refused("version");

	CU_ASSERT_STRING_EQUAL(admit_reason(400), "bad_request");
	CU_ASSERT_STRING_EQUAL(admit_reason(404), "not_found");
	CU_ASSERT_STRING_EQUAL(admit_reason(405), "method");
	CU_ASSERT_STRING_EQUAL(admit_reason(426), "version");
	CU_ASSERT_STRING_EQUAL(admit_reason(410), "gone");
	CU_ASSERT_STRING_EQUAL(admit_reason(418), "bad_request");
	admit_refused(&fake_srv, "127.0.0.1", 4242, 426, "version",
	    "unsupported version");
	CU_ASSERT_EQUAL(fake_srv.total_refused, before + 1);
	CU_ASSERT_EQUAL(refused("version"), version + 1);
}

/* [server] gone, and a handshake begun before a restart. */
static void
test_gone_and_draining_upgrade(void)
{
	static char *gone[] = { "/old", "/v1/ws" };
	struct http_str p;
	const char *proto, *reason = NULL, *why = NULL;

	fake_cfg.gone = gone;
	fake_cfg.ngone = 2;
	p.p = "/old";
	p.n = 4;
	CU_ASSERT(admit_gone(&fake_cfg, &p));
	p.n = 3; /* "/ol": a prefix is not the path */
	CU_ASSERT(!admit_gone(&fake_cfg, &p));
	p.p = "/v1/ws/x";
	p.n = 8;
	CU_ASSERT(!admit_gone(&fake_cfg, &p));
	p.n = 6;
	CU_ASSERT(admit_gone(&fake_cfg, &p));
	fake_cfg.gone = NULL;
	fake_cfg.ngone = 0;
	CU_ASSERT(!admit_gone(&fake_cfg, &p));

	fake_srv.draining = 1;
	CU_ASSERT_EQUAL(admit_request(&fake_srv, request(""),
	    &proto, &reason, &why), 503);
	CU_ASSERT_STRING_EQUAL(reason, "shutting_down");
	fake_srv.draining = 0;
	CU_ASSERT_EQUAL(admit_request(&fake_srv, request(""),
	    &proto, &reason, &why), 0);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "draining and max_connections at accept",
		    test_accept_limits },
		{ "origins, case-insensitive, null allowed", test_origins },
		{ "max_connections_per_ip at accept, from the handshake on",
		    test_per_address_limit },
		{ "the server's first subprotocol the client offers",
		    test_subprotocol_is_the_servers_first_choice },
		{ "refusal labels and counts", test_reasons_and_counting },
		{ "gone paths; an upgrade while restarting",
		    test_gone_and_draining_upgrade },
	};
	int rc;

	if (fake_init() == -1)
		return 1;
	fake_cfg.max_connections = 10000;
	rc = suite_run("admit", tests, nitems(tests));
	fake_fini();
	return rc;
}
