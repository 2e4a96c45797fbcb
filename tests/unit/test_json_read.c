/*
 * test_json_read.c: core/json_read.c against json_loadb itself.
 *
 * Every input is parsed both ways and must give the same answer: the same
 * tree (compared as json_dumps(JSON_COMPACT) text, so key order counts,
 * and with json_equal), or NULL from both with the same json_error_t, byte
 * for byte.  On top of that each case says whether the fast path must take
 * it (the messages clients send), must decline it (what it leaves to
 * jansson), or may do either.  A seeded run of mutated messages closes the
 * suite; tests/fuzz/fuzz_json_read.c does the same without end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

enum path { FAST, SLOW, EITHER };

struct json_case {
	const char *name;
	const char *s;
	size_t n;
	enum path path;
};

#define CASE(name, s, path) { name, s, sizeof(s) - 1, path }

static void
show(const char *what, const char *s, size_t n)
{
	size_t i;

	fprintf(stderr, "\n  %s (%zu bytes):", what, n);
	for (i = 0; i < n && i < 80; i++)
		fprintf(stderr, (unsigned char)s[i] >= 0x20 &&
		    (unsigned char)s[i] < 0x7f ? "%c" : "\\x%02x",
		    (unsigned char)s[i]);
}

/* 1 when json_read and json_loadb agree on s, and the fast path took or
 * left it as path says. */
static int
agrees(const char *name, const char *s, size_t n, enum path path)
{
	json_error_t e1, e2;
	json_t *a, *b, *f;
	char *da = NULL, *db = NULL;
	int ok = 1;

	memset(&e1, 0xA5, sizeof(e1));
	memset(&e2, 0xA5, sizeof(e2));
	a = json_read(s, n, &e1);
	b = json_loadb(s, n, 0, &e2);
	f = json_read_fast(s, n);
	if ((a == NULL) != (b == NULL))
		ok = 0;
	else if (a != NULL) {
		da = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
		db = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
		if (da == NULL || db == NULL || strcmp(da, db) != 0 ||
		    !json_equal(a, b))
			ok = 0;
	}
	if (memcmp(&e1, &e2, sizeof(e1)) != 0)
		ok = 0;
	if ((path == FAST && f == NULL) || (path == SLOW && f != NULL))
		ok = 0;
	if (f != NULL && b == NULL)
		ok = 0;
	if (!ok) {
		show(name, s, n);
		fprintf(stderr, "\n    json_read: %s (%d:%d@%d %s)  "
		    "json_loadb: %s (%d:%d@%d %s)  fast path: %s",
		    a ? (da ? da : "?") : "NULL", e1.line, e1.column,
		    e1.position, a ? "" : e1.text,
		    b ? (db ? db : "?") : "NULL", e2.line, e2.column,
		    e2.position, b ? "" : e2.text, f ? "took it" : "declined");
	}
	free(da);
	free(db);
	json_decref(a);
	json_decref(b);
	json_decref(f);
	return ok;
}

static unsigned
run_cases(const struct json_case *c, size_t n)
{
	unsigned bad = 0;
	size_t i;

	for (i = 0; i < n; i++)
		bad += !agrees(c[i].name, c[i].s, c[i].n, c[i].path);
	return bad;
}

/* What clients send: each must take the fast path. */
static const struct json_case typical[] = {
	CASE("ping", "{\"type\":\"ping\",\"id\":123}", FAST),
	CASE("ping, no id", "{\"type\":\"ping\"}", FAST),
	CASE("string id", "{\"type\":\"ping\",\"id\":\"abc-123\"}", FAST),
	CASE("pretty", "{\n  \"type\": \"chat\",\n  \"id\": 7,\n"
	    "  \"text\": \"hi\"\n}\n", FAST),
	CASE("spaces everywhere", " \t\r\n{ \"a\" : [ 1 , -2 , true ,"
	    " false , null ] , \"b\" : { } }\r\n\t ", FAST),
	CASE("all the kinds", "[1,-2,0,true,false,null,\"x\",{},[],"
	    "{\"k\":[{}]}]", FAST),
	CASE("empty object", "{}", FAST),
	CASE("empty array", "[]", FAST),
	CASE("empty with space", "{ \n }", FAST),
	CASE("utf-8 text", "{\"text\":\"caf\xc3\xa9 \xe2\x82\xac "
	    "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}", FAST),
	CASE("utf-8 key", "{\"cl\xc3\xa9\":1}", FAST),
	CASE("short escapes", "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", FAST),
	CASE("escaped key", "{\"a\\nb\":\"c\\td\",\"a\\u0062\":1}", FAST),
	CASE("\\u escapes (Python's ensure_ascii)",
	    "{\"text\":\"caf\\u00e9 \\u20AC \\u0001 \\u007f\"}", FAST),
	CASE("surrogate pair", "{\"s\":\"\\ud83d\\ude00\",\"t\":"
	    "\"\\uDBFF\\uDFFF\"}", FAST),
	CASE("escapes then raw utf-8", "{\"s\":\"\\n\xc3\xa9\\u00e9x\"}",
	    FAST),
	CASE("several escaped strings", "{\"\\u0061\":\"\\u0062\",\"\\n\":"
	    "[\"\\t\",{\"\\\"\":\"\\\\\"}]}", FAST),
	CASE("-0", "[-0]", FAST),
	CASE("zero", "{\"a\":0}", FAST),
	CASE("18 digits", "[999999999999999999,-999999999999999999]", FAST),
	CASE("duplicate key", "{\"a\":1,\"b\":2,\"a\":3}", FAST),
	CASE("duplicate key, new type", "{\"a\":{\"x\":1},\"a\":[2]}", FAST),
	CASE("DEL in a string", "{\"a\":\"\x7f\"}", FAST),
	CASE("empty key and string", "{\"\":\"\"}", FAST),
};

/* What the fast path leaves to jansson, or may. */
static const struct json_case tricky[] = {
	CASE("real", "{\"a\":1.5}", SLOW),
	CASE("exponent", "{\"a\":1e5}", SLOW),
	CASE("exponent E+", "[1E+2]", SLOW),
	CASE("negative real", "[-0.0]", SLOW),
	CASE("real overflow", "[1e999]", SLOW),
	CASE("dot without digits", "[1.]", SLOW),
	CASE("exponent without digits", "[1e]", SLOW),
	CASE("19 digits", "[1234567890123456789]", SLOW),
	CASE("INT64_MAX", "[9223372036854775807]", SLOW),
	CASE("INT64_MIN", "[-9223372036854775808]", SLOW),
	CASE("too big", "[9223372036854775808]", SLOW),
	CASE("too big negative", "[-9223372036854775809]", SLOW),
	CASE("leading zero", "[01]", SLOW),
	CASE("-01", "[-01]", SLOW),
	CASE("lone minus", "[-]", SLOW),
	CASE("minus at the end", "[-", SLOW),
	CASE("plus", "[+1]", SLOW),
	CASE("hex", "[0x10]", SLOW),
	CASE("\\u0000", "{\"a\":\"\\u0000\"}", SLOW),
	CASE("\\u0000 in a key", "{\"a\\u0000\":1}", SLOW),
	CASE("lone high surrogate", "[\"\\ud83d\"]", SLOW),
	CASE("high surrogate then x", "[\"\\ud83dx\"]", SLOW),
	CASE("two high surrogates", "[\"\\ud83d\\ud83d\"]", SLOW),
	CASE("lone low surrogate", "[\"\\ude00\"]", SLOW),
	CASE("high then bad escape", "[\"\\ud83d\\u12\"]", SLOW),
	CASE("short \\u", "[\"\\u12\"]", SLOW),
	CASE("\\u with non-hex", "[\"\\u12g4\"]", SLOW),
	CASE("\\U", "[\"\\U0041\"]", SLOW),
	CASE("bad escape", "[\"\\x\"]", SLOW),
	CASE("bad escape then utf-8", "{\"a\":\"\\\xc3\xa9\"}", SLOW),
	CASE("escape at the end", "[\"\\", SLOW),
	CASE("raw NUL in a string", "[\"a\0b\"]", SLOW),
	CASE("raw newline in a string", "[\"a\nb\"]", SLOW),
	CASE("raw tab in a string", "[\"a\tb\"]", SLOW),
	CASE("raw 0x1f", "[\"\x1f\"]", SLOW),
	CASE("NUL between tokens", "[1,\0 2]", SLOW),
	CASE("NUL after the end", "{}\0", SLOW),
	CASE("invalid utf-8", "[\"\xff\"]", SLOW),
	CASE("lone continuation", "[\"\x80\"]", SLOW),
	CASE("overlong", "[\"\xc0\xaf\"]", SLOW),
	CASE("overlong 3", "[\"\xe0\x80\xaf\"]", SLOW),
	CASE("encoded surrogate", "[\"\xed\xa0\x80\"]", SLOW),
	CASE("above U+10FFFF", "[\"\xf4\x90\x80\x80\"]", SLOW),
	CASE("truncated utf-8", "[\"\xe2\x82\"]", SLOW),
	CASE("truncated at the end", "[\"\xe2\x82", SLOW),
	CASE("utf-8 outside strings", "[1,\xc3\xa9]", SLOW),
	CASE("invalid utf-8 outside strings", "[1]\xff", SLOW),
	CASE("trailing garbage", "{}x", SLOW),
	CASE("two values", "{}{}", SLOW),
	CASE("trailing comma, object", "{\"a\":1,}", SLOW),
	CASE("trailing comma, array", "[1,]", SLOW),
	CASE("missing comma", "[1 2]", SLOW),
	CASE("missing colon", "{\"a\" 1}", SLOW),
	CASE("key not a string", "{a:1}", SLOW),
	CASE("number key", "{1:1}", SLOW),
	CASE("unterminated object", "{\"a\":1", SLOW),
	CASE("unterminated array", "[1,2", SLOW),
	CASE("unterminated string", "{\"a", SLOW),
	CASE("unterminated key", "{\"a", SLOW),
	CASE("mismatched", "[1}", SLOW),
	CASE("truex", "[truex]", SLOW),
	CASE("true1", "[true1]", SLOW),
	CASE("tru", "[tru]", SLOW),
	CASE("nul", "[nul", SLOW),
	CASE("True", "[True]", SLOW),
	CASE("top-level string", "\"ping\"", SLOW),
	CASE("top-level integer", "123", SLOW),
	CASE("top-level true", "true", SLOW),
	CASE("top-level null", "null", SLOW),
	CASE("empty", "", SLOW),
	CASE("only space", " \t\r\n", SLOW),
	CASE("form feed is not space", "\f{}", SLOW),
	CASE("vertical tab is not space", "{}\v", SLOW),
	CASE("BOM", "\xef\xbb\xbf{}", SLOW),
	CASE("comment", "{} // x", SLOW),
	CASE("single quotes", "{'a':1}", SLOW),
	CASE("just a brace", "{", SLOW),
	CASE("just a bracket", "]", SLOW),
	CASE("comma first", "[,1]", SLOW),
	CASE("colon in array", "[1:2]", SLOW),
	CASE("duplicate key with real", "{\"a\":1,\"a\":1.5}", SLOW),
};

static void
test_fast_path_is_taken(void)
{
	CU_ASSERT_EQUAL(run_cases(typical, nitems(typical)), 0);
}

static void
test_tricky_inputs_match_jansson(void)
{
	CU_ASSERT_EQUAL(run_cases(tricky, nitems(tricky)), 0);
}

/* Insertion order, and what a repeated key does to it. */
static void
test_key_order_and_duplicates(void)
{
	const char *s = "{\"z\":1,\"a\":2,\"m\":3,\"a\":4}";
	json_t *v = json_read_fast(s, strlen(s));
	char *d;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	d = json_dumps(v, JSON_COMPACT);
	/* jansson: a repeated key keeps its first place, takes the last
	 * value */
	CU_ASSERT_STRING_EQUAL(d, "{\"z\":1,\"a\":4,\"m\":3}");
	free(d);
	json_decref(v);
}

/* The cap is ours; past it jansson takes over, up to its own 2048. */
static void
test_nesting(void)
{
	static const size_t depths[] = { 1, 31, 32, 33, 100, 2047, 2048, 2049,
	    5000 };
	size_t i, k, d, n;
	char *s;
	enum path path;
	unsigned bad = 0;

	for (i = 0; i < nitems(depths); i++) {
		d = depths[i];
		path = d <= 32 ? FAST : SLOW;
		s = malloc(6 * d + 8);
		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		/* arrays */
		n = 0;
		for (k = 0; k < d; k++)
			s[n++] = '[';
		for (k = 0; k < d; k++)
			s[n++] = ']';
		bad += !agrees("nested arrays", s, n, path);
		/* objects: {"a":{"a":...{}...}} */
		n = 0;
		for (k = 0; k + 1 < d; k++) {
			memcpy(s + n, "{\"a\":", 5);
			n += 5;
		}
		s[n++] = '{';
		for (k = 0; k < d; k++)
			s[n++] = '}';
		bad += !agrees("nested objects", s, n, path);
		/* unterminated: an error either way */
		bad += !agrees("nested, unterminated", s, n - 1, SLOW);
		free(s);
	}
	CU_ASSERT_EQUAL(bad, 0);
}

/* json_read(..., NULL) is fine, as json_loadb's err may be NULL. */
static void
test_null_error(void)
{
	json_t *v;

	v = json_read("{\"a\":1}", 7, NULL);
	CU_ASSERT_PTR_NOT_NULL(v);
	json_decref(v);
	CU_ASSERT_PTR_NULL(json_read("{\"a\":", 5, NULL));
	CU_ASSERT_PTR_NULL(json_read_fast(NULL, 0));
}

/* Seeded mutations of the cases above: flips, cuts, inserted and
 * repeated bytes.  Whatever comes out, both parsers agree. */
static void
test_mutations(void)
{
	static const char alphabet[] = "{}[]:,\"\\u0123456789abcdefABCDEF"
	    "-+.eEtrufalsn \t\r\n\x01\x7f\x80\xbf\xc3\xa9\xe2\x82\xac\xed\xa0"
	    "\xf0\x9f\x98\xff\0";
	uint32_t rnd = 12345;
	unsigned bad = 0, nfast = 0, nslow = 0, i, k, m;
	char buf[512];
	size_t n, j;
	const struct json_case *c;
	json_t *f;

	for (i = 0; i < 40000 && bad < 5; i++) {
		rnd = rnd * 1103515245u + 12345u;
		c = (rnd >> 8) % 2 ? &typical[(rnd >> 12) % nitems(typical)] :
		    &tricky[(rnd >> 12) % nitems(tricky)];
		n = c->n;
		memcpy(buf, c->s, n);
		m = 1 + (rnd >> 20) % 3;
		for (k = 0; k < m; k++) {
			rnd = rnd * 1103515245u + 12345u;
			j = n ? (rnd >> 8) % n : 0;
			switch ((rnd >> 4) % 4) {
			case 0: /* replace */
				if (n > 0)
					buf[j] = alphabet[(rnd >> 16) %
					    (sizeof(alphabet) - 1)];
				break;
			case 1: /* insert */
				if (n + 1 < sizeof(buf)) {
					memmove(buf + j + 1, buf + j, n - j);
					buf[j] = alphabet[(rnd >> 16) %
					    (sizeof(alphabet) - 1)];
					n++;
				}
				break;
			case 2: /* cut */
				n = j;
				break;
			case 3: /* repeat a piece */
				if (n > 0 && 2 * n < sizeof(buf)) {
					size_t l = 1 + (rnd >> 16) % (n - j);
					memmove(buf + j + l, buf + j, n - j);
					n += l;
				}
				break;
			}
		}
		bad += !agrees("mutation", buf, n, EITHER);
		f = json_read_fast(buf, n);
		if (f != NULL)
			nfast++;
		else
			nslow++;
		json_decref(f);
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* both paths must get a share, or the run proves little */
	CU_ASSERT(nfast > 1000);
	CU_ASSERT(nslow > 1000);
	fprintf(stderr, "\n  %u taken by the fast path, %u left to jansson ",
	    nfast, nslow);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "typical messages take the fast path",
		    test_fast_path_is_taken },
		{ "tricky inputs: jansson's answer", test_tricky_inputs_match_jansson },
		{ "key order and duplicate keys", test_key_order_and_duplicates },
		{ "nesting up to and past both caps", test_nesting },
		{ "a NULL error pointer", test_null_error },
		{ "seeded mutations", test_mutations },
	};
	return suite_run("json_read", tests, nitems(tests));
}
