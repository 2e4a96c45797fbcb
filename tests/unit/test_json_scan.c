/*
 * test_json_scan.c: core/json_scan.c, the type and id read without a tree.
 *
 * Each case says what the scan must report (the type's bytes, the id's
 * text) or that it must decline.  Whatever the scan takes must be what
 * json_loadb takes, with the same type and an id that parses to the
 * tree's: that is checked on every case and on a seeded run of mutated
 * messages; tests/fuzz/fuzz_json_scan.c does the same without end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

/* 1 when the scan's answer agrees with jansson's tree for s. */
static int
consistent(const char *s, size_t n)
{
	struct json_scan sc;
	json_t *tree, *type, *id, *idv;
	int ok = 1;

	if (json_scan(s, n, &sc) == -1)
		return sc.type == NULL && sc.id == NULL;
	tree = json_loadb(s, n, 0, NULL);
	if (tree == NULL)
		return 0; /* the scan took what jansson refuses */
	type = json_object_get(tree, "type");
	if (!json_is_string(type) || json_string_length(type) != sc.type_len ||
	    memcmp(json_string_value(type), sc.type, sc.type_len) != 0)
		ok = 0;
	id = json_object_get(tree, "id");
	if ((id == NULL) != (sc.id == NULL))
		ok = 0;
	if (ok && sc.id != NULL) {
		idv = json_loadb(sc.id, sc.id_len, JSON_DECODE_ANY, NULL);
		ok = idv != NULL && json_equal(idv, id);
		json_decref(idv);
	}
	json_decref(tree);
	return ok;
}

static void
take(const char *s, const char *type, const char *id)
{
	struct json_scan sc;
	size_t n = strlen(s);

	CU_ASSERT_EQUAL_FATAL(json_scan(s, n, &sc), 0);
	CU_ASSERT_EQUAL(sc.type_len, strlen(type));
	CU_ASSERT_NSTRING_EQUAL(sc.type, type, strlen(type));
	if (id == NULL) {
		CU_ASSERT_PTR_NULL(sc.id);
	} else {
		CU_ASSERT_PTR_NOT_NULL_FATAL(sc.id);
		CU_ASSERT_EQUAL(sc.id_len, strlen(id));
		CU_ASSERT_NSTRING_EQUAL(sc.id, id, strlen(id));
	}
	CU_ASSERT_TRUE(consistent(s, n));
}

static void
decline(const char *s, size_t n)
{
	struct json_scan sc;

	if (json_scan(s, n, &sc) != -1)
		fprintf(stderr, "\n  taken: %.*s ", (int)n, s);
	CU_ASSERT_EQUAL(json_scan(s, n, &sc), -1);
	CU_ASSERT_PTR_NULL(sc.type);
	CU_ASSERT_PTR_NULL(sc.id);
}

#define DECLINE(s) decline(s, sizeof(s) - 1)

static void
test_typical_messages(void)
{
	take("{\"type\":\"ping\"}", "ping", NULL);
	take("{\"type\":\"ping\",\"id\":123}", "ping", "123");
	take(" {\"id\" : \"a-1\" , \"type\" : \"ping\" }\n", "ping",
	    "\"a-1\"");
	take("{\"type\":\"publish\",\"channel\":\"c\",\"data\":{\"x\":[1,2.5,"
	    "true,false,null,\"\\u00e9\\ud83d\\ude00\"]},\"id\":{\"n\":[1]}}",
	    "publish", "{\"n\":[1]}");
	take("{\"type\":\"caf\xc3\xa9\"}", "caf\xc3\xa9", NULL);
	take("{\"type\":\"\"}", "", NULL);
	take("{\"type\":\"x\",\"id\":-0.125}", "x", "-0.125");
	take("{\"type\":\"x\",\"id\":null}", "x", "null");
	/* Escapes inside other members are fine: only checked. */
	take("{\"type\":\"x\",\"s\":\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\"}", "x",
	    NULL);
	/* A nested "type" or "id" is not the message's. */
	take("{\"a\":{\"type\":\"no\",\"id\":1},\"type\":\"yes\"}", "yes",
	    NULL);
}

static void
test_duplicates_last_wins(void)
{
	/* jansson keeps the last value of a repeated key: so must we. */
	take("{\"type\":\"a\",\"type\":\"b\",\"id\":1,\"id\":2}", "b", "2");
	/* The last type not being a string is the tree path's to answer. */
	DECLINE("{\"type\":\"a\",\"type\":5}");
	take("{\"type\":5,\"type\":\"a\"}", "a", NULL);
}

static void
test_declines_what_routing_cannot_use(void)
{
	DECLINE("{}");
	DECLINE("{\"id\":1}");
	DECLINE("{\"type\":5}");
	DECLINE("{\"type\":null}");
	DECLINE("{\"type\":[\"ping\"]}");
	/* an escaped type or top-level key would need unescaping */
	DECLINE("{\"type\":\"p\\u0069ng\"}");
	DECLINE("{\"typ\\u0065\":\"ping\"}");
	DECLINE("[{\"type\":\"ping\"}]");
	DECLINE("\"ping\"");
}

static void
test_declines_what_jansson_refuses(void)
{
	DECLINE("");
	DECLINE("   ");
	DECLINE("{not json");
	DECLINE("{\"type\":\"ping\"");
	DECLINE("{\"type\":\"ping\"}}");
	DECLINE("{\"type\":\"ping\"} x");
	DECLINE("{\"type\":\"ping\",}");
	DECLINE("{\"type\":\"ping\" \"id\":1}");
	DECLINE("{\"type\":\"ping\",\"id\":01}");
	DECLINE("{\"type\":\"ping\",\"id\":1.}");
	DECLINE("{\"type\":\"ping\",\"id\":-}");
	DECLINE("{\"type\":\"ping\",\"id\":.5}");
	DECLINE("{\"type\":\"ping\",\"id\":+1}");
	DECLINE("{\"type\":\"ping\",\"id\":tru}");
	DECLINE("{\"type\":\"ping\",\"id\":truex}");
	DECLINE("{\"type\":\"ping\",\"id\":nul}");
	DECLINE("{\"type\":\"ping\",\"id\":'a'}");
	DECLINE("{\"type\":\"ping\",\"id\":\"\\x\"}");
	DECLINE("{\"type\":\"ping\",\"id\":\"\\u12\"}");
	DECLINE("{\"type\":\"ping\",\"id\":\"a\nb\"}");
	DECLINE("{\"type\":\"pi\xffng\"}");
	DECLINE("{\"type\":\"ping\",\"id\":\"\xc3\"}");
	DECLINE("{\"type\":\"ping\",\"id\":\"\xed\xa0\x80\"}");
	DECLINE("{\"type\":\"ping\"\x00}");
	DECLINE("{\"type\":\"ping\",\"id\":[1,]}");
	DECLINE("{\"type\":\"ping\",\"id\":[1 2]}");
	DECLINE("{\"type\":\"ping\",\"id\":{1:2}}");
	DECLINE("{\"type\":\"ping\",\"id\":{\"a\" 2}}");
}

static void
test_declines_what_it_leaves_to_jansson(void)
{
	/* jansson refuses \u0000 without JSON_ALLOW_NUL, and lone
	 * surrogates; exponents may overflow; 19 digits may too. */
	DECLINE("{\"type\":\"ping\",\"id\":\"\\u0000\"}");
	DECLINE("{\"type\":\"ping\",\"id\":\"\\ud800\"}");
	DECLINE("{\"type\":\"ping\",\"id\":\"\\udc00\"}");
	DECLINE("{\"type\":\"ping\",\"id\":\"\\ud800\\u0041\"}");
	DECLINE("{\"type\":\"ping\",\"id\":1e400}");
	DECLINE("{\"type\":\"ping\",\"id\":1E2}");
	DECLINE("{\"type\":\"ping\",\"id\":9999999999999999999}");
	take("{\"type\":\"ping\",\"id\":999999999999999999}", "ping",
	    "999999999999999999");
}

static void
test_nesting_cap(void)
{
	char buf[512];
	size_t n = 0;
	int i, depth;

	/* The message is level 1: 31 more levels fit, 32 do not. */
	for (depth = 31; depth <= 32; depth++) {
		n = (size_t)snprintf(buf, sizeof(buf), "{\"type\":\"t\",\"x\":");
		for (i = 0; i < depth; i++)
			buf[n++] = '[';
		for (i = 0; i < depth; i++)
			buf[n++] = ']';
		buf[n++] = '}';
		buf[n] = '\0';
		if (depth == 31)
			take(buf, "t", NULL);
		else
			decline(buf, n);
	}
}

/* Reads only its input: the buffer is exact-size on the heap (so a read
 * past it is ASan's to report) and unchanged after. */
static void
test_reads_only_its_input(void)
{
	static const char msg[] = "{\"type\":\"ping\",\"id\":\"x\"}";
	char *p = malloc(sizeof(msg) - 1);
	struct json_scan sc;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	for (n = 0; n < sizeof(msg) - 1; n++) {
		memcpy(p, msg, n);
		CU_ASSERT_EQUAL(json_scan(p, n, &sc), -1);
	}
	memcpy(p, msg, n);
	CU_ASSERT_EQUAL(json_scan(p, n, &sc), 0);
	CU_ASSERT_EQUAL(memcmp(p, msg, n), 0);
	CU_ASSERT_EQUAL(json_scan(NULL, 0, &sc), -1);
	free(p);
}

/* A text shorter than the scan's tail loads is scanned from a copy: the
 * type it reports must still lie in the caller's text: every length
 * from the shortest object with a type (11) to the tail's own (16),
 * which is scanned in place. */
static void
test_short_texts_point_into_the_caller(void)
{
	char t[32], *p;
	struct json_scan sc;
	size_t k, n;

	for (k = 0; k <= 5; k++) {
		n = (size_t)snprintf(t, sizeof(t), "{\"type\":\"%.*s\"}",
		    (int)k, "abcde");
		/* on the heap, exact size, as the message buffer would be */
		CU_ASSERT_PTR_NOT_NULL_FATAL(p = malloc(n));
		memcpy(p, t, n);
		CU_ASSERT_EQUAL_FATAL(json_scan(p, n, &sc), 0);
		CU_ASSERT_EQUAL(sc.type_len, k);
		CU_ASSERT_PTR_EQUAL(sc.type, p + 9);
		CU_ASSERT_PTR_NULL(sc.id);
		free(p);
	}
	/* and a short one the scan declines leaves nothing behind */
	DECLINE("{\"type\":1}");
}

/* A string value (str) or a number of len bytes, byte b at at, ending
 * the message: 1 when the scan gets it wrong. */
static unsigned
run_case(int str, size_t len, size_t at, int b)
{
	static const char *const pre[2] = { "{\"type\":\"t\",\"id\":1",
	    "{\"type\":\"t\",\"id\":\"" };
	char buf[96], *p;
	struct json_scan sc;
	size_t h = strlen(pre[str]), n;
	unsigned bad;
	int plain;

	memcpy(buf, pre[str], h);
	memset(buf + h, str ? 'a' : '7', len);
	buf[h + at] = (char)b;
	n = h + len;
	if (str)
		buf[n++] = '"';
	buf[n++] = '}';
	if (str)
		plain = b >= 0x20 && b < 0x80 && b != '"' && b != '\\';
	else /* the leading 1 and len digits, within SCAN_MAX_DIGITS */
		plain = b >= '0' && b <= '9' && 1 + len <= 18;
	/* on the heap, exact size: a read past it is ASan's to report */
	if ((p = malloc(n)) == NULL)
		return 1;
	memcpy(p, buf, n);
	if (!plain)
		bad = !consistent(p, n);
	else /* the id is its value's text: quotes and all, or digits */
		bad = json_scan(p, n, &sc) != 0 ||
		    sc.id_len != len + (str ? 2 : 1) || !consistent(p, n);
	free(p);
	return bad;
}

/*
 * Strings and digit runs go sixteen and eight bytes a step where they
 * can, and near the end one load of the text's last bytes answers.  So every byte value at every
 * place of a string value and of a number of every length to 40, the
 * message ending right after it: a plain byte (or a digit) must be taken
 * whole, anything else must agree with jansson.
 */
static void
test_every_byte_in_runs(void)
{
	unsigned bad = 0;
	size_t len, at;
	int b, str;

	for (str = 0; str < 2; str++)
		for (len = 1; len <= 40; len++)
			for (at = 0; at < len; at++)
				for (b = 0; b < 256; b++)
					bad += run_case(str, len, at, b);
	CU_ASSERT_EQUAL(bad, 0);
}

static void
test_mutations(void)
{
	static const char *const seeds[] = {
		"{\"type\":\"ping\",\"id\":123}",
		"{\"type\":\"publish\",\"channel\":\"c\",\"data\":{\"a\":[1,"
		    "2.5,\"\\u00e9\"]},\"id\":\"r-1\"}",
		"{\"id\":[true,false,null],\"type\":\"x\"}",
	};
	static const char alphabet[] = "{}[]\":,\\ 0123456789.-eEtrufalsn"
	    "\xc3\xa9\xff";
	char buf[256];
	unsigned seed = 12345, i, taken = 0, bad = 0;
	size_t n, k;

	for (i = 0; i < 30000; i++) {
		const char *s = seeds[i % nitems(seeds)];

		n = strlen(s);
		memcpy(buf, s, n);
		for (k = 0; k < 1 + i % 3; k++) {
			seed = seed * 1103515245 + 12345;
			buf[(seed >> 8) % n] =
			    alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
		}
		if (!consistent(buf, n)) {
			if (bad++ < 3)
				fprintf(stderr, "\n  disagrees: %.*s",
				    (int)n, buf);
		} else {
			struct json_scan sc;

			taken += json_scan(buf, n, &sc) == 0;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(taken > 100);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "typical messages: type and id", test_typical_messages },
		{ "a repeated key: the last wins", test_duplicates_last_wins },
		{ "declines what routing cannot use",
		    test_declines_what_routing_cannot_use },
		{ "declines what jansson refuses",
		    test_declines_what_jansson_refuses },
		{ "declines what it leaves to jansson",
		    test_declines_what_it_leaves_to_jansson },
		{ "nesting cap", test_nesting_cap },
		{ "reads only its input", test_reads_only_its_input },
		{ "short texts: the type in the caller's text",
		    test_short_texts_point_into_the_caller },
		{ "seeded mutations agree with jansson", test_mutations },
		{ "every byte at every place of a run",
		    test_every_byte_in_runs },
	};
	return suite_run("json_scan", tests, nitems(tests));
}
