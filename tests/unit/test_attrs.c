/*
 * test_attrs.c: per-connection attributes (attrs.c): namespaces kept
 * apart, values deep-copied, deletion, and the release of one namespace
 * from every registered connection when a reload drops its plugin.
 */
#include <CUnit/Basic.h>

#include "fake.h"
#include "suite.h"

static void
test_set_get_delete(void)
{
	struct wsp_conn *c = fake_conn_new();
	json_t *v = json_pack("{s:i}", "n", 1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	/* deleting what was never set makes nothing */
	CU_ASSERT_EQUAL(attrs_set(c, "a", "k", NULL), 0);
	CU_ASSERT_PTR_NULL(c->attrs);
	CU_ASSERT_PTR_NULL(attrs_get(c, "a", "k"));

	CU_ASSERT_EQUAL(attrs_set(c, "a", "k", v), 0);
	/* a copy: changing the plugin's value changes nothing stored */
	json_object_set_new(v, "n", json_integer(2));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(
	    attrs_get(c, "a", "k"), "n")), 1);
	/* another plugin's namespace does not see it */
	CU_ASSERT_PTR_NULL(attrs_get(c, "b", "k"));
	CU_ASSERT_EQUAL(attrs_set(c, "b", "k", v), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(
	    attrs_get(c, "b", "k"), "n")), 2);
	CU_ASSERT_EQUAL(attrs_set(c, "a", "k", NULL), 0);
	CU_ASSERT_PTR_NULL(attrs_get(c, "a", "k"));
	CU_ASSERT_PTR_NOT_NULL(attrs_get(c, "b", "k"));
	json_decref(v);
	fake_conn_free(c); /* frees the attributes too (LeakSanitizer) */
}

static void
test_release_one_namespace_everywhere(void)
{
	struct wsp_conn *c[3];
	json_t *v = json_true();
	size_t i;

	for (i = 0; i < 3; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(c[i] = fake_conn_new());
		registry_add(&fake_srv.reg, c[i]);
		CU_ASSERT_EQUAL(attrs_set(c[i], "gone", "k", v), 0);
		CU_ASSERT_EQUAL(attrs_set(c[i], "kept", "k", v), 0);
	}
	attrs_release(&fake_srv.reg, "gone");
	for (i = 0; i < 3; i++) {
		CU_ASSERT_PTR_NULL(attrs_get(c[i], "gone", "k"));
		CU_ASSERT_TRUE(json_is_true(attrs_get(c[i], "kept", "k")));
		registry_remove(&fake_srv.reg, c[i]);
		fake_conn_free(c[i]);
	}
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "set, get, delete, namespaces, copies", test_set_get_delete },
		{ "a reload releases one namespace everywhere",
		    test_release_one_namespace_everywhere },
	};
	int rc;

	if (fake_init() == -1)
		return 1;
	rc = suite_run("attrs", tests, nitems(tests));
	fake_fini();
	return rc;
}
