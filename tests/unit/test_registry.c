/*
 * test_registry.c: ids, membership and per-address counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"

static void
test_ids_are_hex_and_distinct(void)
{
	struct registry r;
	char ids[600][33];
	size_t i, j, k;

	registry_init(&r);
	/* 600 ids cross two refills of the 4 KiB random pool. */
	for (i = 0; i < 600; i++) {
		registry_new_id(&r, ids[i]);
		CU_ASSERT_EQUAL(strlen(ids[i]), 32);
		for (k = 0; k < 32; k++)
			CU_ASSERT_PTR_NOT_NULL(strchr("0123456789abcdef",
			    ids[i][k]));
	}
	for (i = 0; i < 600; i++)
		for (j = i + 1; j < 600; j++)
			CU_ASSERT_NOT_EQUAL(strcmp(ids[i], ids[j]), 0);
	registry_fini(&r);
}

static void
test_ids_use_all_bits(void)
{
	struct registry r;
	char id[33];
	int seen[16] = { 0 };
	size_t i, k, distinct = 0;

	registry_init(&r);
	for (i = 0; i < 64; i++) {
		registry_new_id(&r, id);
		for (k = 0; k < 32; k++)
			seen[strchr("0123456789abcdef", id[k]) -
			    "0123456789abcdef"]++;
	}
	for (k = 0; k < 16; k++)
		distinct += seen[k] > 0;
	CU_ASSERT_EQUAL(distinct, 16);
	registry_fini(&r);
}

/* Every byte value to its two digits, high nibble first: the pool is
 * set by hand, so the digits are known. */
static void
test_ids_digits_exact(void)
{
	struct registry r;
	char id[33], want[3];
	size_t i, k, wrong = 0;

	registry_init(&r);
	for (i = 0; i < 256; i++)
		r.rnd[i] = (uint8_t)(i * 7 + 3); /* every value, out of order */
	r.rnd_used = 0;
	for (i = 0; i < 16; i++) {
		registry_new_id(&r, id);
		CU_ASSERT_EQUAL(strlen(id), 32);
		for (k = 0; k < 16; k++) {
			snprintf(want, sizeof(want), "%02x",
			    (unsigned)(uint8_t)((16 * i + k) * 7 + 3));
			wrong += memcmp(id + 2 * k, want, 2) != 0;
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
	/* the randomness an id used is not left behind */
	for (i = 0; i < 256; i++)
		wrong += r.rnd[i] != 0;
	CU_ASSERT_EQUAL(wrong, 0);
	registry_fini(&r);
}

static void
test_add_remove_counts(void)
{
	struct registry r;
	struct wsp_conn a, b, c, *it;
	size_t n = 0;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	registry_init(&r);
	registry_add(&r, &a);
	registry_add(&r, &b);
	registry_add(&r, &c);
	CU_ASSERT_EQUAL(r.count, 3);
	CU_ASSERT_TRUE(b.registered);
	registry_remove(&r, &b);
	CU_ASSERT_EQUAL(r.count, 2);
	CU_ASSERT_FALSE(b.registered);
	registry_remove(&r, &b); /* twice is harmless */
	CU_ASSERT_EQUAL(r.count, 2);
	TAILQ_FOREACH(it, &r.conns, link) {
		CU_ASSERT(it == &a || it == &c);
		n++;
	}
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_PTR_EQUAL(TAILQ_FIRST(&r.conns), &a);
	registry_remove(&r, &a);
	registry_remove(&r, &c);
	CU_ASSERT_EQUAL(r.count, 0);
	CU_ASSERT_TRUE(TAILQ_EMPTY(&r.conns));
	registry_fini(&r);
}

static void
test_ip_counts(void)
{
	struct registry r;

	registry_init(&r);
	CU_ASSERT_EQUAL(registry_ip_count(&r, "127.0.0.1"), 0);
	CU_ASSERT_EQUAL(registry_ip_ref(&r, "127.0.0.1"), 0);
	CU_ASSERT_EQUAL(registry_ip_ref(&r, "127.0.0.1"), 0);
	CU_ASSERT_EQUAL(registry_ip_ref(&r, "::1"), 0);
	CU_ASSERT_EQUAL(registry_ip_count(&r, "127.0.0.1"), 2);
	CU_ASSERT_EQUAL(registry_ip_count(&r, "::1"), 1);
	CU_ASSERT_EQUAL(registry_ip_count(&r, "127.0.0.2"), 0);
	registry_ip_unref(&r, "127.0.0.1");
	CU_ASSERT_EQUAL(registry_ip_count(&r, "127.0.0.1"), 1);
	registry_ip_unref(&r, "127.0.0.1");
	CU_ASSERT_EQUAL(registry_ip_count(&r, "127.0.0.1"), 0);
	registry_ip_unref(&r, "127.0.0.1"); /* unknown: ignored */
	CU_ASSERT_EQUAL(registry_ip_count(&r, "127.0.0.1"), 0);
	/* The longest textual IPv6 address fits. */
	CU_ASSERT_EQUAL(registry_ip_ref(&r,
	    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), 0);
	CU_ASSERT_EQUAL(registry_ip_count(&r,
	    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), 1);
	registry_fini(&r); /* frees what is left: valgrind checks */
}

/* Addresses come and go by the thousand: entries are kept for reuse, a
 * bounded number, and a reused one counts from zero for its new address;
 * registry_fini frees the spares too (valgrind and LeakSanitizer). */
static void
test_ip_entries_reused(void)
{
	struct registry r;
	char ip[46];
	size_t i, wrong = 0;

	registry_init(&r);
	for (i = 0; i < 200; i++) {
		snprintf(ip, sizeof(ip), "10.0.%zu.%zu", i / 256, i % 256);
		CU_ASSERT_EQUAL(registry_ip_ref(&r, ip), 0);
	}
	for (i = 0; i < 200; i++) {
		snprintf(ip, sizeof(ip), "10.0.%zu.%zu", i / 256, i % 256);
		registry_ip_unref(&r, ip);
	}
	CU_ASSERT(r.nip_spare > 0 && r.nip_spare <= 64);
	CU_ASSERT_PTR_NULL(r.by_ip);
	for (i = 0; i < 1000; i++) {
		snprintf(ip, sizeof(ip), "192.168.%zu.%zu", i / 256, i % 256);
		CU_ASSERT_EQUAL(registry_ip_ref(&r, ip), 0);
		wrong += registry_ip_count(&r, ip) != 1;
		wrong += registry_ip_count(&r, "10.0.0.1") != 0;
		if (i % 2 == 0)
			registry_ip_unref(&r, ip);
	}
	CU_ASSERT_EQUAL(wrong, 0);
	CU_ASSERT(r.nip_spare <= 64);
	for (i = 0; i < 1000; i++) {
		snprintf(ip, sizeof(ip), "192.168.%zu.%zu", i / 256, i % 256);
		wrong += registry_ip_count(&r, ip) != i % 2;
	}
	CU_ASSERT_EQUAL(wrong, 0);
	registry_fini(&r);
	CU_ASSERT_EQUAL(r.nip_spare, 0);
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("registry", NULL, NULL);
	if (s == NULL ||
	    CU_add_test(s, "ids are 32 hex digits and distinct",
	    test_ids_are_hex_and_distinct) == NULL ||
	    CU_add_test(s, "ids use every hex digit",
	    test_ids_use_all_bits) == NULL ||
	    CU_add_test(s, "each byte gives its two digits",
	    test_ids_digits_exact) == NULL ||
	    CU_add_test(s, "add and remove keep the count",
	    test_add_remove_counts) == NULL ||
	    CU_add_test(s, "per-address counts", test_ip_counts) == NULL ||
	    CU_add_test(s, "per-address entries are reused",
	    test_ip_entries_reused) == NULL) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
