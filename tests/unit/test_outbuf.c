/*
 * test_outbuf.c: the growing buffer and its little-endian records
 * (outbuf.c): growth keeps what was written, every width round-trips in
 * the same byte order on any host, and the reading cursor fails for good
 * at its first short read, keeping that first reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

static void
test_grow_keeps_bytes(void)
{
	struct outbuf b = { NULL, 0, 0 };
	char chunk[1000];
	size_t i;

	for (i = 0; i < sizeof(chunk); i++)
		chunk[i] = (char)(i * 7);
	for (i = 0; i < 100; i++)
		CU_ASSERT_EQUAL_FATAL(outbuf_put(&b, chunk, sizeof(chunk)), 0);
	CU_ASSERT_EQUAL(b.len, 100 * sizeof(chunk));
	CU_ASSERT(b.cap >= b.len);
	for (i = 0; i < 100; i++)
		CU_ASSERT_EQUAL(memcmp(b.p + i * sizeof(chunk), chunk,
		    sizeof(chunk)), 0);
	/* room already there: no change */
	CU_ASSERT_EQUAL(outbuf_grow(&b, 0), 0);
	/* a request that cannot fit in size_t fails and changes nothing */
	i = b.cap;
	CU_ASSERT_EQUAL(outbuf_grow(&b, SIZE_MAX - 1), -1);
	CU_ASSERT_EQUAL(b.cap, i);
	CU_ASSERT_EQUAL(b.len, 100 * sizeof(chunk));
	/* an empty put on an empty buffer is fine */
	free(b.p);
	b.p = NULL;
	b.len = b.cap = 0;
	CU_ASSERT_EQUAL(outbuf_put(&b, NULL, 0), 0);
	CU_ASSERT_EQUAL(b.len, 0);
	free(b.p);
}

static void
test_le_round_trip(void)
{
	static const uint64_t v = 0x8877665544332211ull;
	struct outbuf b = { NULL, 0, 0 };
	struct le_rd r;
	size_t w;

	for (w = 1; w <= 8; w++)
		CU_ASSERT_EQUAL_FATAL(outbuf_put_le(&b, v, w), 0);
	CU_ASSERT_EQUAL_FATAL(b.len, 36);
	/* least significant byte first, whatever the host */
	CU_ASSERT_EQUAL((uint8_t)b.p[0], 0x11);
	CU_ASSERT_EQUAL((uint8_t)b.p[1], 0x11);
	CU_ASSERT_EQUAL((uint8_t)b.p[2], 0x22);
	r.p = (const uint8_t *)b.p;
	r.n = b.len;
	r.why = NULL;
	for (w = 1; w <= 8; w++)
		CU_ASSERT_EQUAL(le_get(&r, w),
		    w == 8 ? v : v & ((1ull << (8 * w)) - 1));
	CU_ASSERT_EQUAL(r.n, 0);
	CU_ASSERT_PTR_NULL(r.why);

	/* set_le patches in place, as a length filled in afterwards */
	outbuf_set_le(b.p, 0xa1b2c3d4, 4);
	CU_ASSERT_EQUAL((uint8_t)b.p[0], 0xd4);
	CU_ASSERT_EQUAL((uint8_t)b.p[3], 0xa1);
	free(b.p);
}

static void
test_cursor_fails_for_good(void)
{
	static const uint8_t data[] = { 1, 2, 3, 4, 5 };
	struct le_rd r = { data, sizeof(data), NULL };
	const uint8_t *p;

	p = le_take(&r, 2);
	CU_ASSERT_PTR_EQUAL(p, data);
	CU_ASSERT_EQUAL(le_get(&r, 2), 0x0403);
	/* one byte left: a read of two fails, and so does everything after,
	 * even what would fit */
	CU_ASSERT_EQUAL(le_get(&r, 2), 0);
	CU_ASSERT_STRING_EQUAL(r.why, "truncated");
	CU_ASSERT_EQUAL(r.n, 0);
	CU_ASSERT_EQUAL(le_get(&r, 1), 0);
	CU_ASSERT_PTR_NULL(le_take(&r, 0));
	/* the first reason stays */
	CU_ASSERT_EQUAL(le_fail(&r, "bad field"), -1);
	CU_ASSERT_STRING_EQUAL(r.why, "truncated");

	/* a format's own failure stops the cursor the same way */
	r.p = data;
	r.n = sizeof(data);
	r.why = NULL;
	le_fail(&r, "bad kind");
	CU_ASSERT_EQUAL(le_get(&r, 1), 0);
	CU_ASSERT_STRING_EQUAL(r.why, "bad kind");
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "growth keeps every byte; impossible sizes fail",
		    test_grow_keeps_bytes },
		{ "every width round-trips least significant first",
		    test_le_round_trip },
		{ "the cursor fails for good and keeps the first reason",
		    test_cursor_fails_for_good },
	};

	return suite_run("outbuf", tests, nitems(tests));
}
