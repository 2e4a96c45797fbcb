/*
 * test_dispatch.c: routing by "type", error replies, the catch-all, and
 * claim conflicts, against an in-memory plugin set and a connection whose
 * output is read back frame by frame.  No sockets, no dlopen.
 */
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "fake.h"
#include "suite.h"

static struct wsp_errors errs;
static struct wsp_section sec_rec = { .file = "test.conf", .name = "rec",
    .line = 3 };
static struct wsp_section sec_raw = { .file = "test.conf", .name = "raw",
    .line = 9 };

/* What the recording plugin last saw. */
static struct {
	int calls;
	char type[256];
	int had_json, prebuilt, binary, has_id;
	char id[256];
	char data[4096];
	size_t len;
	struct wsp_plugin_ctx *to;
} seen;

static void
record(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	(void)c;
	seen.calls++;
	seen.to = state;
	snprintf(seen.type, sizeof(seen.type), "%s",
	    m->type == NULL ? "(raw)" : m->type);
	/* Whether dispatch built the tree before the call (it should only
	 * when the scan declined), then whether a typed message has one. */
	seen.prebuilt = ((const struct dispatch_msg *)(const void *)m)->tried;
	seen.had_json = m->type != NULL &&
	    wsp_host_table.message_json(m) != NULL;
	snprintf(seen.id, sizeof(seen.id), "%.*s", (int)m->id_len,
	    m->id != NULL ? m->id : "");
	seen.has_id = m->id != NULL;
	seen.binary = m->binary;
	seen.len = m->len < sizeof(seen.data) ? m->len : sizeof(seen.data);
	memcpy(seen.data, m->data, seen.len);
}

static const struct wsp_plugin recorder = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "recorder",
	.version = "1",
	.message = record,
};

/* A plugin as the loader would leave it mid-load, without dlopen(). */
static struct wsp_plugin_ctx *
ctx_new(struct plugin_set *set, struct wsp_section *sec)
{
	struct wsp_plugin_ctx *ctx = fake_plugin(set, sec, &recorder, &errs);

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	return ctx;
}

static struct plugin_set *
set_new(void)
{
	struct plugin_set *set = fake_set_new();

	CU_ASSERT_PTR_NOT_NULL_FATAL(set);
	return set;
}

static void
set_free(struct plugin_set *set)
{
	plugin_set_free(set);
	fake_srv.plugins = NULL;
}

static struct wsp_conn *
conn_new(void)
{
	struct wsp_conn *c = fake_conn_new();

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	return c;
}

/* Pop one unmasked server frame from c's output. */
static int
next_frame(struct wsp_conn *c, uint8_t *op, char *buf, size_t cap,
    size_t *len)
{
	uint8_t h[4];
	size_t n, hl = 2;

	if (evbuffer_remove(c->out, h, 2) != 2)
		return -1;
	CU_ASSERT_EQUAL(h[1] & 0x80, 0); /* servers never mask */
	*op = h[0] & 0x0F;
	n = h[1] & 0x7F;
	if (n == 126) {
		evbuffer_remove(c->out, h + 2, 2);
		n = ((size_t)h[2] << 8) | h[3];
		hl = 4;
	}
	(void)hl;
	CU_ASSERT_FATAL(n < cap);
	if (evbuffer_remove(c->out, buf, n) != (int)n)
		return -1;
	buf[n] = '\0';
	*len = n;
	return 0;
}

/* Dispatch text and return the reply as JSON (or NULL when none). */
static json_t *
roundtrip(struct wsp_conn *c, const char *text)
{
	char in[4096], out[4096];
	uint8_t op;
	size_t n;

	strcpy(in, text);
	dispatch_message(&fake_srv, c, WS_OP_TEXT, (uint8_t *)in, strlen(in));
	if (evbuffer_get_length(c->out) == 0)
		return NULL;
	CU_ASSERT_EQUAL_FATAL(next_frame(c, &op, out, sizeof(out), &n), 0);
	CU_ASSERT_EQUAL(op, WS_OP_TEXT);
	return json_loadb(out, n, 0, NULL);
}

static void
assert_error(json_t *reply, const char *code)
{
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(reply,
	    "type")), "error");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(reply,
	    "code")), code);
	CU_ASSERT_TRUE(json_is_string(json_object_get(reply, "message")));
}

static void
test_error_replies_keep_connection(void)
{
	struct plugin_set *set = set_new();
	struct wsp_conn *c = conn_new();
	json_t *r;

	ctx_new(set, &sec_rec);
	CU_ASSERT_EQUAL(plugin_claim(set->plugins[0], "greet"), 0);

	r = roundtrip(c, "{not json");
	assert_error(r, "invalid_json");
	json_decref(r);
	/* Found by fuzz_dispatch: jansson's error text quoted half of the
	 * UTF-8 "é", json_pack refused it, and no reply went out. */
	r = roundtrip(c, "\"\\\xc3\xa9\"");
	assert_error(r, "invalid_json");
	json_decref(r);
	r = roundtrip(c, "{\"a\":\"\\\xe2\x82\xac\"}");
	assert_error(r, "invalid_json");
	json_decref(r);
	r = roundtrip(c, "[1, 2]");
	assert_error(r, "invalid_json");
	json_decref(r);
	r = roundtrip(c, "{\"x\":1}");
	assert_error(r, "missing_type");
	json_decref(r);
	r = roundtrip(c, "{\"type\":5,\"id\":\"a\"}");
	assert_error(r, "missing_type");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "id")),
	    "a");
	json_decref(r);
	r = roundtrip(c, "{\"type\":\"nope\",\"id\":42}");
	assert_error(r, "unknown_type");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "id")), 42);
	json_decref(r);
	CU_ASSERT_EQUAL(seen.calls, 0);
	CU_ASSERT_EQUAL(c->state, CONN_OPEN);
	fake_conn_free(c);
	set_free(set);
}

static void
test_unknown_type_cut_on_utf8_boundary(void)
{
	struct plugin_set *set = set_new();
	struct wsp_conn *c = conn_new();
	char msg[1024] = "{\"type\":\"";
	json_t *r;
	int i;

	/* 40 two-byte characters: byte 64 falls inside none, byte 63 in
	 * the middle of one if cut naively at an odd offset. */
	strcat(msg, "a");
	for (i = 0; i < 40; i++)
		strcat(msg, "\xc3\xa9");
	strcat(msg, "\"}");
	r = roundtrip(c, msg);
	assert_error(r, "unknown_type");
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(r,
	    "message")), "(truncated)"));
	json_decref(r);
	fake_conn_free(c);
	set_free(set);
}

static void
test_routes_claimed_type_with_json(void)
{
	struct plugin_set *set = set_new();
	struct wsp_conn *c = conn_new();
	struct wsp_plugin_ctx *rec = ctx_new(set, &sec_rec);

	memset(&seen, 0, sizeof(seen));
	CU_ASSERT_EQUAL(plugin_claim(rec, "greet"), 0);
	CU_ASSERT_PTR_NULL(roundtrip(c, "{\"type\":\"greet\",\"n\":1}"));
	CU_ASSERT_EQUAL(seen.calls, 1);
	CU_ASSERT_PTR_EQUAL(seen.to, rec);
	CU_ASSERT_STRING_EQUAL(seen.type, "greet");
	CU_ASSERT_TRUE(seen.had_json);
	CU_ASSERT_EQUAL(seen.len, strlen("{\"type\":\"greet\",\"n\":1}"));
	fake_conn_free(c);
	set_free(set);
}

/* The tree is built only when the plugin asks; the id comes as text. */
static void
test_tree_on_demand_and_id_text(void)
{
	struct plugin_set *set = set_new();
	struct wsp_conn *c = conn_new();
	struct wsp_plugin_ctx *rec = ctx_new(set, &sec_rec);

	memset(&seen, 0, sizeof(seen));
	CU_ASSERT_EQUAL(plugin_claim(rec, "greet"), 0);
	CU_ASSERT_PTR_NULL(roundtrip(c,
	    "{\"id\": {\"k\": [1, \"x\"]} ,\"type\":\"greet\"}"));
	CU_ASSERT_FALSE(seen.prebuilt);
	CU_ASSERT_TRUE(seen.had_json);
	CU_ASSERT_TRUE(seen.has_id);
	CU_ASSERT_STRING_EQUAL(seen.id, "{\"k\": [1, \"x\"]}");
	CU_ASSERT_PTR_NULL(roundtrip(c, "{\"type\":\"greet\"}"));
	CU_ASSERT_FALSE(seen.prebuilt);
	CU_ASSERT_FALSE(seen.has_id);
	/* What the scan declines but a plugin takes: the tree is built
	 * first, and the id is its compact text. */
	CU_ASSERT_PTR_NULL(roundtrip(c,
	    "{\"type\":\"gr\\u0065et\",\"id\":[1e2, \"a\"]}"));
	CU_ASSERT_EQUAL(seen.calls, 3);
	CU_ASSERT_TRUE(seen.prebuilt);
	CU_ASSERT_STRING_EQUAL(seen.type, "greet");
	CU_ASSERT_STRING_EQUAL(seen.id, "[100.0,\"a\"]");
	fake_conn_free(c);
	set_free(set);
}

static void
test_binary_without_catch_all_closes_1003(void)
{
	struct plugin_set *set = set_new();
	struct wsp_conn *c = conn_new();
	uint8_t bin[3] = { 1, 2, 3 }, op;
	char body[256];
	size_t n;

	dispatch_message(&fake_srv, c, WS_OP_BINARY, bin, sizeof(bin));
	CU_ASSERT_EQUAL(c->state, CONN_CLOSING);
	CU_ASSERT_EQUAL_FATAL(next_frame(c, &op, body, sizeof(body), &n), 0);
	CU_ASSERT_EQUAL(op, WS_OP_CLOSE);
	CU_ASSERT_TRUE(n >= 2);
	CU_ASSERT_EQUAL(((uint8_t)body[0] << 8) | (uint8_t)body[1], 1003);
	fake_conn_free(c);
	set_free(set);
}

static void
test_catch_all_alone_skips_parsing(void)
{
	struct plugin_set *set = set_new();
	struct wsp_conn *c = conn_new();
	struct wsp_plugin_ctx *raw = ctx_new(set, &sec_raw);
	uint8_t bin[2] = { 0, 255 };

	memset(&seen, 0, sizeof(seen));
	CU_ASSERT_EQUAL(plugin_claim(raw, "*"), 0);
	CU_ASSERT_PTR_EQUAL(set->catch_all, raw);
	CU_ASSERT_PTR_NULL(roundtrip(c, "{not json"));
	CU_ASSERT_EQUAL(seen.calls, 1);
	CU_ASSERT_STRING_EQUAL(seen.type, "(raw)");
	CU_ASSERT_FALSE(seen.had_json);
	CU_ASSERT_EQUAL(memcmp(seen.data, "{not json", 9), 0);
	dispatch_message(&fake_srv, c, WS_OP_BINARY, bin, 2);
	CU_ASSERT_EQUAL(seen.calls, 2);
	CU_ASSERT_TRUE(seen.binary);
	CU_ASSERT_EQUAL(c->state, CONN_OPEN);
	fake_conn_free(c);
	set_free(set);
}

static void
test_catch_all_takes_what_others_do_not(void)
{
	struct plugin_set *set = set_new();
	struct wsp_conn *c = conn_new();
	struct wsp_plugin_ctx *rec = ctx_new(set, &sec_rec);
	struct wsp_plugin_ctx *raw = ctx_new(set, &sec_raw);

	memset(&seen, 0, sizeof(seen));
	CU_ASSERT_EQUAL(plugin_claim(rec, "greet"), 0);
	CU_ASSERT_EQUAL(plugin_claim(raw, "*"), 0);
	roundtrip(c, "{\"type\":\"greet\"}");
	CU_ASSERT_PTR_EQUAL(seen.to, rec);
	CU_ASSERT_TRUE(seen.had_json);
	roundtrip(c, "{\"type\":\"other\"}");
	CU_ASSERT_PTR_EQUAL(seen.to, raw);
	CU_ASSERT_FALSE(seen.had_json);
	roundtrip(c, "[]");
	CU_ASSERT_PTR_EQUAL(seen.to, raw);
	roundtrip(c, "{\"type\":null}");
	CU_ASSERT_PTR_EQUAL(seen.to, raw);
	CU_ASSERT_EQUAL(seen.calls, 4);
	CU_ASSERT_EQUAL(evbuffer_get_length(c->out), 0); /* no error replies */
	fake_conn_free(c);
	set_free(set);
}

static void
test_conflicting_claims_are_errors(void)
{
	struct plugin_set *set = set_new();
	struct wsp_plugin_ctx *rec = ctx_new(set, &sec_rec);
	struct wsp_plugin_ctx *raw = ctx_new(set, &sec_raw);

	errors_clear(&errs);
	CU_ASSERT_EQUAL(plugin_claim(rec, "greet"), 0);
	CU_ASSERT_EQUAL(plugin_claim(rec, "greet"), 0); /* own: fine */
	CU_ASSERT_EQUAL(plugin_claim(raw, "greet"), -1);
	CU_ASSERT_EQUAL_FATAL(errs.n, 1);
	CU_ASSERT_STRING_EQUAL(errs.msg[0], "test.conf:9: [plugin:raw] claims "
	    "type \"greet\", already claimed by [plugin:rec]");
	CU_ASSERT_EQUAL(plugin_claim(rec, "*"), 0);
	CU_ASSERT_EQUAL(plugin_claim(raw, "*"), -1);
	CU_ASSERT_EQUAL(plugin_claim(raw, ""), -1);
	CU_ASSERT_EQUAL(errs.n, 3);
	CU_ASSERT_EQUAL(set->ntypes, 1);
	CU_ASSERT_PTR_EQUAL(plugin_set_lookup(set, "greet"), rec);
	CU_ASSERT_PTR_NULL(plugin_set_lookup(set, "gree"));
	errors_clear(&errs);
	set_free(set);
}

/* send_json's buffer is reused between messages, but one huge message
 * must not keep its size for good; and what it sends is intact. */
static void
test_send_json_buffer(void)
{
	struct wsp_conn *c = conn_new();
	char *big = malloc(100000), *out = malloc(100100);
	json_t *msg, *back;
	uint8_t h[10];
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	msg = json_pack("{s:s}", "type", "small");
	CU_ASSERT_EQUAL(host_send_json(c, msg), 0);
	json_decref(msg);
	CU_ASSERT(fake_srv.jbuf.cap > 0 && fake_srv.jbuf.cap <= 64 * 1024);
	evbuffer_drain(c->out, evbuffer_get_length(c->out));

	memset(big, 'x', 99999);
	big[99999] = '\0';
	msg = json_pack("{s:s, s:s}", "type", "big", "data", big);
	CU_ASSERT_EQUAL(host_send_json(c, msg), 0);
	json_decref(msg);
	CU_ASSERT_EQUAL(fake_srv.jbuf.cap, 0);
	CU_ASSERT_PTR_NULL(fake_srv.jbuf.p);
	/* a 64-bit length: 2 + 8 header bytes */
	CU_ASSERT_EQUAL_FATAL(evbuffer_remove(c->out, h, 10), 10);
	CU_ASSERT_EQUAL(h[1], 127);
	n = evbuffer_get_length(c->out);
	CU_ASSERT_FATAL(n < 100100);
	CU_ASSERT_EQUAL(evbuffer_remove(c->out, out, n), (int)n);
	back = json_loadb(out, n, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(back);
	CU_ASSERT_EQUAL(strlen(json_string_value(json_object_get(back,
	    "data"))), 99999);
	json_decref(back);

	/* only objects and arrays are messages */
	msg = json_string("not a message");
	CU_ASSERT_EQUAL(host_send_json(c, msg), -1);
	json_decref(msg);
	CU_ASSERT_EQUAL(evbuffer_get_length(c->out), 0);
	free(big);
	free(out);
	fake_conn_free(c);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "bad input gets error replies, connection stays",
		    test_error_replies_keep_connection },
		{ "unknown type is cut on a UTF-8 boundary",
		    test_unknown_type_cut_on_utf8_boundary },
		{ "a claimed type reaches its plugin with JSON",
		    test_routes_claimed_type_with_json },
		{ "the tree on demand, the id as text",
		    test_tree_on_demand_and_id_text },
		{ "binary without a catch-all closes 1003",
		    test_binary_without_catch_all_closes_1003 },
		{ "a lone catch-all gets everything raw",
		    test_catch_all_alone_skips_parsing },
		{ "the catch-all gets what others do not claim",
		    test_catch_all_takes_what_others_do_not },
		{ "conflicting claims are FILE:LINE errors",
		    test_conflicting_claims_are_errors },
		{ "send_json's buffer: reused, not kept when huge",
		    test_send_json_buffer },
	};
	int rc;

	if (fake_init() == -1)
		return 1;
	rc = suite_run("dispatch", tests, nitems(tests));
	fake_fini();
	return rc;
}
