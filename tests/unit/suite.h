/*
 * suite.h: one CUnit suite run verbosely, for the unit programs that
 * share it instead of each repeating CUnit's set-up and tear-down.
 */
#ifndef SUITE_H
#define SUITE_H

#include <stddef.h>

#include <CUnit/CUnit.h>

struct suite_test {
	const char *name;
	CU_TestFunc fn;
};

/* Run tests as suite name; 0 when every test passed, else 1. */
int suite_run(const char *name, const struct suite_test *tests, size_t n);

#endif /* SUITE_H */
