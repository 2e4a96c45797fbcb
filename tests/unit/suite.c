/*
 * suite.c: suite_run(), CUnit's set-up, run and tear-down in one place.
 */
#include <CUnit/Basic.h>

#include "suite.h"

int
suite_run(const char *name, const struct suite_test *tests, size_t n)
{
	CU_pSuite s;
	size_t i;
	int rc = 1;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	if ((s = CU_add_suite(name, NULL, NULL)) == NULL)
		goto done;
	for (i = 0; i < n; i++)
		if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
			goto done;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	rc = CU_get_number_of_failures() ? 1 : 0;
done:
	CU_cleanup_registry();
	return rc;
}
