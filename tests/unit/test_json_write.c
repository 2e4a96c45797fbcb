/*
 * test_json_write.c: CUnit suite for core/json_write.c.
 *
 * The oracle is jansson itself: whatever json_write appends must be the
 * bytes json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) returns for the same
 * tree.  Hand-picked values cover the escapes, the integer extremes, reals
 * and key order; random trees from a fixed seed cover the combinations.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"

/* Compare json_write's text of v with jansson's, and that appending
 * after earlier content leaves that content alone. */
static void
same_as_jansson(json_t *v)
{
	struct outbuf b = { NULL, 0, 0 };
	char *want;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	CU_ASSERT_PTR_NOT_NULL_FATAL(want);
	CU_ASSERT_EQUAL(json_write(&b, v), 0);
	CU_ASSERT_EQUAL(b.len, strlen(want));
	if (b.len == strlen(want))
		CU_ASSERT(memcmp(b.p, want, b.len) == 0);
	if (b.len != strlen(want) || memcmp(b.p, want, b.len) != 0)
		fprintf(stderr, "\n  want %s\n  got  %.*s\n", want,
		    (int)b.len, b.p);
	/* again, after what is already there */
	CU_ASSERT_EQUAL(json_write(&b, v), 0);
	CU_ASSERT_EQUAL(b.len, 2 * strlen(want));
	if (b.len == 2 * strlen(want))
		CU_ASSERT(memcmp(b.p + b.len / 2, want, b.len / 2) == 0);
	free(want);
	free(b.p);
	json_decref(v);
}

static void
test_scalars(void)
{
	same_as_jansson(json_true());
	same_as_jansson(json_false());
	same_as_jansson(json_null());
	same_as_jansson(json_integer(0));
	same_as_jansson(json_integer(-1));
	same_as_jansson(json_integer(1234567890123LL));
	same_as_jansson(json_integer(INT64_MAX));
	same_as_jansson(json_integer(INT64_MIN));
	same_as_jansson(json_real(0.0));
	same_as_jansson(json_real(-0.0));
	same_as_jansson(json_real(1.0));
	same_as_jansson(json_real(0.1));
	same_as_jansson(json_real(1e300));
	same_as_jansson(json_real(-2.5e-300));
	same_as_jansson(json_string(""));
}

static void
test_escapes(void)
{
	char all[128];
	int i;

	same_as_jansson(json_string("quote \" backslash \\ slash /"));
	same_as_jansson(json_string("\b\f\n\r\t"));
	same_as_jansson(json_stringn("nul \0 inside", 12));
	/* every ASCII byte, the controls among them */
	for (i = 0; i < 128; i++)
		all[i] = (char)i;
	same_as_jansson(json_stringn(all, sizeof(all)));
	/* each escaped byte at every position of a long string, so the
	 * eight-bytes-at-a-time scan meets it at every offset of a word */
	for (i = 0; i < 41; i++) {
		static const char special[] = { '"', '\\', '\n', 0x1f, 0 };
		const char *sp;
		char s[41];

		for (sp = special; sp < special + sizeof(special); sp++) {
			memset(s, 'x', sizeof(s));
			s[i] = *sp;
			same_as_jansson(json_stringn(s, sizeof(s)));
		}
	}
	/* UTF-8 is copied, not escaped (no JSON_ENSURE_ASCII) */
	same_as_jansson(json_string("\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5"
	    "\xd1\x82 \xe2\x82\xac \xf0\x9f\x98\x80"));
}

static void
test_containers(void)
{
	json_t *o;

	same_as_jansson(json_object());
	same_as_jansson(json_array());
	same_as_jansson(json_pack("{s:s, s:I}", "type", "pong", "timestamp",
	    (json_int_t)1764000000000LL));
	/* insertion order, not sorted */
	o = json_object();
	json_object_set_new(o, "z", json_integer(1));
	json_object_set_new(o, "a", json_integer(2));
	json_object_set_new(o, "m", json_pack("[i, [], {}, [[null]]]", 3));
	json_object_set_new(o, "a", json_string("replaced"));
	same_as_jansson(o);
	/* keys are escaped like strings, NUL and all */
	o = json_object();
	json_object_setn_new(o, "k\0ey\n\"", 6, json_true());
	same_as_jansson(o);
}

static void
test_failures(void)
{
	struct outbuf b = { NULL, 0, 0 };
	json_t *a, *inner;
	int i;

	/* (jansson keeps NaN and infinity out of its trees itself) */
	CU_ASSERT_EQUAL(json_write(&b, NULL), -1);
	CU_ASSERT_EQUAL(b.len, 0);

	/* 2048 levels are written, 2049 are not */
	a = json_array();
	for (i = 1; i < 2048; i++) {
		inner = json_array();
		json_array_append_new(inner, a);
		a = inner;
	}
	CU_ASSERT_EQUAL(json_write(&b, a), 0);
	CU_ASSERT_EQUAL(b.len, 2 * 2048);
	b.len = 0;
	inner = json_array();
	json_array_append_new(inner, a);
	CU_ASSERT_EQUAL(json_write(&b, inner), -1);
	CU_ASSERT_EQUAL(b.len, 0);
	json_decref(inner);

	/* a cycle runs into the depth cap instead of the stack's end */
	a = json_array();
	inner = json_object();
	json_array_append(a, inner);
	json_object_set(inner, "loop", a);
	CU_ASSERT_EQUAL(json_write(&b, a), -1);
	CU_ASSERT_EQUAL(b.len, 0);
	json_object_del(inner, "loop");
	json_decref(inner);
	json_decref(a);
	free(b.p);
}

/* Random trees: a fixed seed, so a failure repeats. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static unsigned
next(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static json_t *
random_string(void)
{
	static const char *const pieces[] = { "a", "ping", "\"", "\\", "\n",
		"\x01", "\x1f", "\x7f", "/", "\xc3\xa9", "\xe2\x82\xac",
		"\xf0\x9f\x98\x80", " ", "\0" };
	char s[64];
	size_t n = 0, k;
	unsigned i, count = next(8);

	for (i = 0; i < count; i++) {
		const char *p = pieces[next(sizeof(pieces) / sizeof(*pieces))];

		k = *p == '\0' ? 1 : strlen(p);
		memcpy(s + n, p, k);
		n += k;
	}
	return json_stringn(s, n);
}

static json_t *
random_tree(int depth)
{
	json_t *v, *s;
	unsigned i, n;

	switch (depth > 4 ? next(6) : next(8)) {
	/* unsigned arithmetic: any 64-bit pattern, negatives included */
	case 0: return json_integer((json_int_t)((rng >> next(64)) *
		    (next(2) ? 1 : UINT64_MAX)));
	case 1: return json_real((double)(int64_t)rng /
		    (double)(1ULL << next(40)));
	case 2: return random_string();
	case 3: return next(2) ? json_true() : json_false();
	case 4: return json_null();
	case 5: return json_integer((json_int_t)next(1000));
	case 6:
		v = json_array();
		for (i = 0, n = next(5); i < n; i++)
			json_array_append_new(v, random_tree(depth + 1));
		return v;
	default:
		v = json_object();
		for (i = 0, n = next(5); i < n; i++) {
			s = random_string();
			json_object_setn_new(v, json_string_value(s),
			    json_string_length(s), random_tree(depth + 1));
			json_decref(s);
		}
		return v;
	}
}

static void
test_random_trees(void)
{
	int i;

	for (i = 0; i < 5000; i++)
		same_as_jansson(random_tree(0));
}

int
main(void)
{
	CU_pSuite s;
	unsigned failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("json_write", NULL, NULL);
	if (s == NULL ||
	    CU_add_test(s, "scalars", test_scalars) == NULL ||
	    CU_add_test(s, "escapes", test_escapes) == NULL ||
	    CU_add_test(s, "containers", test_containers) == NULL ||
	    CU_add_test(s, "failures", test_failures) == NULL ||
	    CU_add_test(s, "random trees", test_random_trees) == NULL) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed == 0 ? 0 : 1;
}
