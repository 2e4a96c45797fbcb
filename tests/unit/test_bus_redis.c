/*
 * test_bus_redis.c: CUnit suite for the pure parts of core/bus_redis.c:
 * the [bus] redis address and the message the publish script puts on a
 * channel's pub/sub name (which this node parses by hand, so every field
 * is checked at its limits and every malformed shape refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"

static void
test_addr(void)
{
	char host[256];
	int port = -1;

	CU_ASSERT_EQUAL(redis_addr_parse("127.0.0.1:6379", host, sizeof(host),
	    &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "127.0.0.1");
	CU_ASSERT_EQUAL(port, 6379);
	CU_ASSERT_EQUAL(redis_addr_parse("[::1]:6380", host, sizeof(host),
	    &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "::1");
	CU_ASSERT_EQUAL(port, 6380);
	CU_ASSERT_EQUAL(redis_addr_parse("redis.example:1", host,
	    sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "redis.example");
	CU_ASSERT_EQUAL(redis_addr_parse("/run/redis/redis.sock", host,
	    sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "/run/redis/redis.sock");
	CU_ASSERT_EQUAL(port, 0);
	CU_ASSERT_EQUAL(redis_addr_parse("h:65535", NULL, 0, NULL), 0);
	CU_ASSERT_EQUAL(redis_addr_parse("h:65536", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("h:0", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("h:", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("h:+1", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("h:1x", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse(":6379", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("h", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("::1:6379", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("[]:6379", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("[::1:6379", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("a b:1", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("", NULL, 0, NULL), -1);
	CU_ASSERT_EQUAL(redis_addr_parse("relative/path", NULL, 0, NULL), -1);
	{
		char longp[200];

		memset(longp, 'a', sizeof(longp) - 1);
		longp[0] = '/';
		longp[sizeof(longp) - 1] = '\0';
		CU_ASSERT_EQUAL(redis_addr_parse(longp, NULL, 0, NULL), -1);
	}
	/* too small a buffer is a refusal, not a cut */
	CU_ASSERT_EQUAL(redis_addr_parse("longhostname:1", host, 4, &port),
	    -1);
}

static int
parse(const char *s, struct bus_redis_msg *m)
{
	return bus_redis_msg_parse(s, strlen(s), m);
}

static void
test_msg_good(void)
{
	struct bus_redis_msg m;

	CU_ASSERT_EQUAL_FATAL(parse("W1 42 00112233aabbccdd 0123456789abcdef "
	    "- -\n{\"a\":1}", &m), 0);
	CU_ASSERT_EQUAL(m.offset, 42);
	CU_ASSERT_STRING_EQUAL(m.epoch, "00112233aabbccdd");
	CU_ASSERT_STRING_EQUAL(m.origin, "0123456789abcdef");
	CU_ASSERT_EQUAL(m.queued, 0);
	CU_ASSERT_STRING_EQUAL(m.except, "");
	CU_ASSERT_EQUAL(m.len, 7);
	CU_ASSERT_EQUAL(memcmp(m.data, "{\"a\":1}", 7), 0);
	/* transient, queued, with an except; the data may hold anything */
	CU_ASSERT_EQUAL_FATAL(parse("W1 0 e n q c1\n{\"x\":\" \\n \"}\n",
	    &m), 0);
	CU_ASSERT_EQUAL(m.offset, 0);
	CU_ASSERT_EQUAL(m.queued, 1);
	CU_ASSERT_STRING_EQUAL(m.except, "c1");
	CU_ASSERT_EQUAL(m.len, 13);
	/* empty data, the largest offset */
	CU_ASSERT_EQUAL_FATAL(parse("W1 18446744073709551615 e n - -\n", &m),
	    0);
	CU_ASSERT_EQUAL(m.offset, UINT64_MAX);
	CU_ASSERT_EQUAL(m.len, 0);
}

static void
test_msg_bad(void)
{
	static const char *const bad[] = {
		"",
		"W1",
		"W2 1 e n - -\n{}",
		"W1  1 e n - -\n{}",        /* an empty field */
		"W1 1 e n - -{}",           /* no newline */
		"W1 1 e n -\n{}",           /* a field short */
		"W1 x e n - -\n{}",
		"W1 -1 e n - -\n{}",
		"W1 18446744073709551616 e n - -\n{}", /* past 2^64-1 */
		"W1 1 e n x -\n{}",         /* flag neither q nor - */
		"W1 1 e n qq -\n{}",
		"W1 1 e 0123456789abcdef0 - -\n{}", /* origin too long */
		"W1 1 0123456789abcdef0123456789abcdef0 n - -\n{}",
		"W1 1 e n - 0123456789abcdef0123456789abcdef0\n{}",
		"W1 1 e\tx n - -\n{}",
		"W1 1 e n - c\x01\n{}",
	};
	struct bus_redis_msg m;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &m) != -1)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		CU_ASSERT_EQUAL(parse(bad[i], &m), -1);
	}
	/* a NUL inside a field */
	CU_ASSERT_EQUAL(bus_redis_msg_parse("W1 1 e\0 n - -\n{}", 16, &m), -1);
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("bus_redis", NULL, NULL);
	if (s == NULL ||
	    CU_add_test(s, "redis address", test_addr) == NULL ||
	    CU_add_test(s, "message", test_msg_good) == NULL ||
	    CU_add_test(s, "malformed messages", test_msg_bad) == NULL) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
