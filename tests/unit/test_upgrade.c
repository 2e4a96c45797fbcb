/*
 * test_upgrade.c: core/upgrade.c, the plugins' say before the 101.
 *
 * Compiled-in plugins with an upgrade callback decide on requests parsed
 * by http_upgrade.c from literal heads: what they are shown (the request
 * line split, the query, headers by name), how a refusal's status and
 * reason are made safe to send, the order of several plugins, and a
 * deferred answer's rules.  tests/integration/test_upgrade.py runs the
 * same through the daemon and a socket.
 */
#include <stdio.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "fake.h"
#include "suite.h"

static struct wsp_errors errs;
static struct wsp_section sec_a = { .file = "t.conf", .name = "a", .line = 1 };
static struct wsp_section sec_b = { .file = "t.conf", .name = "b", .line = 2 };

static const char head[] =
    "GET /ws?token=abc&x=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: https://app.example.com\r\n"
    "User-Agent: test/1\r\n"
    "Cookie:   a=1; b=2  \r\n"
    "X-Empty:\r\n"
    "\r\n";

/* What each plugin does and saw; the state of a fake plugin is its ctx. */
static struct {
	int action[2];            /* a return value, per plugin */
	const char *reason[2];
	int asked[2], cancelled[2];
	char method[16], target[64], path[32], query[64], sub[32];
	char origin[64], ua[32], ip[64];
	const char *cookie, *empty, *absent;
} p;

static int
which(void *state)
{
	return strcmp(((struct wsp_plugin_ctx *)state)->name, "a") == 0 ? 0 : 1;
}

static int
decide(void *state, struct wsp_conn *c, const struct wsp_upgrade_request *req,
    const char **reason_r)
{
	int i = which(state);

	p.asked[i]++;
	snprintf(p.method, sizeof(p.method), "%s", req->method);
	snprintf(p.target, sizeof(p.target), "%s", req->target);
	snprintf(p.path, sizeof(p.path), "%s", req->path);
	snprintf(p.query, sizeof(p.query), "%s", req->query);
	snprintf(p.sub, sizeof(p.sub), "%s", req->subprotocol);
	snprintf(p.origin, sizeof(p.origin), "%s", req->origin);
	snprintf(p.ua, sizeof(p.ua), "%s", req->user_agent);
	snprintf(p.ip, sizeof(p.ip), "%s", req->ip);
	p.cookie = fake_srv.host->request_header(c, "cookie");
	p.empty = fake_srv.host->request_header(c, "X-EMPTY");
	p.absent = fake_srv.host->request_header(c, "Authorization");
	*reason_r = p.reason[i];
	return p.action[i];
}

static void
cancel(void *state, struct wsp_conn *c)
{
	(void)c;
	p.cancelled[which(state)]++;
}

static const struct wsp_plugin gate = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "gate",
	.version = "1",
	.upgrade = decide,
	.upgrade_cancel = cancel,
};

static const struct wsp_plugin plain = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "plain",
	.version = "1",
};

struct fixture {
	struct plugin_set *set;
	struct wsp_plugin_ctx *a, *b;
	struct wsp_conn *c;
	struct http_request req;
};

static void
setup(struct fixture *f, const struct wsp_plugin *da,
    const struct wsp_plugin *db)
{
	const char *why;

	memset(&p, 0, sizeof(p));
	memset(f, 0, sizeof(*f));
	f->set = fake_set_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->set);
	f->a = fake_plugin(f->set, &sec_a, da, &errs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->a);
	if (db != NULL) {
		f->b = fake_plugin(f->set, &sec_b, db, &errs);
		CU_ASSERT_PTR_NOT_NULL_FATAL(f->b);
	}
	f->c = fake_conn_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->c);
	CU_ASSERT_EQUAL_FATAL(http_request_parse(head, sizeof(head) - 1,
	    &f->req, &why), 0);
}

static int
begin(struct fixture *f, const char **why_r, const char **by_r)
{
	*why_r = *by_r = NULL;
	return upgrade_begin(f->c, &f->req, head, sizeof(head) - 1, "chat",
	    why_r, by_r);
}

static void
teardown(struct fixture *f)
{
	fake_conn_free(f->c); /* ends the handshake's record too */
	plugin_set_free(f->set);
	fake_srv.plugins = NULL;
}

static void
test_no_callback_no_record(void)
{
	struct fixture f;
	const char *why, *by;

	setup(&f, &plain, NULL);
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 0);
	CU_ASSERT_PTR_NULL(f.c->vetting);
	teardown(&f);
}

static void
test_what_a_plugin_is_shown(void)
{
	struct fixture f;
	const char *why, *by;

	setup(&f, &gate, NULL);
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 0);
	CU_ASSERT_EQUAL(p.asked[0], 1);
	CU_ASSERT_STRING_EQUAL(p.method, "GET");
	CU_ASSERT_STRING_EQUAL(p.target, "/ws?token=abc&x=1");
	CU_ASSERT_STRING_EQUAL(p.path, "/ws");
	CU_ASSERT_STRING_EQUAL(p.query, "token=abc&x=1");
	CU_ASSERT_STRING_EQUAL(p.sub, "chat");
	CU_ASSERT_STRING_EQUAL(p.origin, "https://app.example.com");
	CU_ASSERT_STRING_EQUAL(p.ua, "test/1");
	CU_ASSERT_STRING_EQUAL(p.ip, f.c->ip);
	/* by name without regard to case, blanks around the value cut */
	CU_ASSERT_PTR_NOT_NULL_FATAL(p.cookie);
	CU_ASSERT_STRING_EQUAL(p.cookie, "a=1; b=2");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p.empty);
	CU_ASSERT_STRING_EQUAL(p.empty, "");
	CU_ASSERT_PTR_NULL(p.absent);
	/* only during the handshake */
	upgrade_end(f.c);
	CU_ASSERT_PTR_NULL(f.c->vetting);
	CU_ASSERT_PTR_NULL(fake_srv.host->request_header(f.c, "Cookie"));
	CU_ASSERT_EQUAL(p.cancelled[0], 0);
	teardown(&f);
}

static void
test_refusal_made_safe(void)
{
	struct fixture f;
	const char *why, *by;
	char longer[300];

	setup(&f, &gate, NULL);
	p.action[0] = 401;
	p.reason[0] = "bad\ttoken\n\xc3\xa9";
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 401);
	CU_ASSERT_STRING_EQUAL(why, "bad?token???");
	CU_ASSERT_STRING_EQUAL(by, "a");
	upgrade_end(f.c);

	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	p.action[0] = 429;
	p.reason[0] = longer;
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 429);
	CU_ASSERT_EQUAL(strlen(why), 123);
	upgrade_end(f.c);

	/* no reason: the status's own text */
	p.action[0] = 403;
	p.reason[0] = NULL;
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 403);
	CU_ASSERT_STRING_EQUAL(why, "Forbidden");
	upgrade_end(f.c);

	/* not a refusal status: the plugin's bug is a 500, not a 200 */
	p.action[0] = 200;
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 500);
	CU_ASSERT_STRING_EQUAL(why, "internal error");
	upgrade_end(f.c);
	teardown(&f);
}

static void
test_every_plugin_must_accept(void)
{
	struct fixture f;
	const char *why, *by;

	setup(&f, &gate, &gate);
	p.action[1] = 403;
	p.reason[1] = "b says no";
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 403);
	CU_ASSERT_STRING_EQUAL(by, "b");
	CU_ASSERT_EQUAL(p.asked[0], 1);
	CU_ASSERT_EQUAL(p.asked[1], 1);
	upgrade_end(f.c);

	/* the first refusal ends it */
	memset(p.asked, 0, sizeof(p.asked));
	p.action[0] = 401;
	CU_ASSERT_EQUAL(begin(&f, &why, &by), 401);
	CU_ASSERT_STRING_EQUAL(by, "a");
	CU_ASSERT_EQUAL(p.asked[1], 0);
	upgrade_end(f.c);
	teardown(&f);
}

static void
test_deferred_answers(void)
{
	struct fixture f;
	const char *why, *by;
	size_t hl = 0;

	setup(&f, &gate, &gate);
	p.action[0] = WSP_UPGRADE_DEFER;
	CU_ASSERT_EQUAL(begin(&f, &why, &by), CONN_UPGRADE_WAIT);
	CU_ASSERT_EQUAL(p.asked[1], 0);
	/* headers stay readable while it waits */
	CU_ASSERT_PTR_NOT_NULL(fake_srv.host->request_header(f.c, "Host"));
	/* only the plugin that deferred may answer */
	CU_ASSERT_EQUAL(fake_srv.host->upgrade_answer(f.b, f.c, 0, NULL), -1);
	/* its yes asks the next one, whose no is the answer */
	p.action[1] = 429;
	p.reason[1] = "slow down";
	CU_ASSERT_EQUAL(fake_srv.host->upgrade_answer(f.a, f.c, 0, NULL), 0);
	CU_ASSERT_EQUAL(p.asked[1], 1);
	CU_ASSERT_EQUAL(upgrade_result(f.c, &hl, &why, &by), 429);
	CU_ASSERT_EQUAL(hl, sizeof(head) - 1);
	CU_ASSERT_STRING_EQUAL(why, "slow down");
	CU_ASSERT_STRING_EQUAL(by, "b");
	/* answered once */
	CU_ASSERT_EQUAL(fake_srv.host->upgrade_answer(f.a, f.c, 0, NULL), -1);
	upgrade_end(f.c);
	CU_ASSERT_EQUAL(p.cancelled[0] + p.cancelled[1], 0);

	/* a late no, with the deferring plugin's reason */
	memset(p.asked, 0, sizeof(p.asked));
	CU_ASSERT_EQUAL(begin(&f, &why, &by), CONN_UPGRADE_WAIT);
	CU_ASSERT_EQUAL(fake_srv.host->upgrade_answer(f.a, f.c, 451,
	    "not here"), 0);
	CU_ASSERT_EQUAL(upgrade_result(f.c, &hl, &why, &by), 451);
	CU_ASSERT_STRING_EQUAL(why, "not here");
	CU_ASSERT_STRING_EQUAL(by, "a");
	CU_ASSERT_EQUAL(p.asked[1], 0);
	upgrade_end(f.c);

	/* never answered: the end of the handshake tells it */
	CU_ASSERT_EQUAL(begin(&f, &why, &by), CONN_UPGRADE_WAIT);
	upgrade_end(f.c);
	CU_ASSERT_EQUAL(p.cancelled[0], 1);
	CU_ASSERT_EQUAL(fake_srv.host->upgrade_answer(f.a, f.c, 0, NULL), -1);
	teardown(&f);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "no upgrade callback: nothing kept",
		    test_no_callback_no_record },
		{ "what a plugin is shown", test_what_a_plugin_is_shown },
		{ "a refusal's status and reason made safe",
		    test_refusal_made_safe },
		{ "every plugin must accept", test_every_plugin_must_accept },
		{ "deferred answers", test_deferred_answers },
	};
	int rc;

	if (fake_init() == -1)
		return 1;
	rc = suite_run("upgrade", tests, nitems(tests));
	errors_clear(&errs);
	fake_fini();
	return rc;
}
