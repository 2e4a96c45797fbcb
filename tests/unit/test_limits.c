/*
 * test_limits.c: the connection limits shared by worker processes, taken
 * and given back by real processes over the shared mapping.
 */
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "suite.h"
#include "wsplugd.h"

static void
test_conns_take_put(void)
{
	struct limits *l = limits_new(2);
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	limits_set_worker(l, 0);
	for (i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(limits_conn_take(l, 3), 0);
	CU_ASSERT_EQUAL(limits_conn_take(l, 3), -1); /* the 4th */
	CU_ASSERT_EQUAL(limits_conn_count(l), 3);
	limits_conn_put(l);
	CU_ASSERT_EQUAL(limits_conn_take(l, 3), 0);
	CU_ASSERT_EQUAL(limits_conn_count(l), 3);
	limits_free(l);
}

static void
test_ip_counts_apart(void)
{
	struct limits *l = limits_new(1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	limits_set_worker(l, 0);
	CU_ASSERT_EQUAL(limits_ip_take(l, "10.0.0.1", 2), 0);
	CU_ASSERT_EQUAL(limits_ip_take(l, "10.0.0.1", 2), 0);
	CU_ASSERT_EQUAL(limits_ip_take(l, "10.0.0.1", 2), -1);
	CU_ASSERT_EQUAL(limits_ip_take(l, "10.0.0.2", 2), 0);
	limits_ip_put(l, "10.0.0.1");
	CU_ASSERT_EQUAL(limits_ip_take(l, "10.0.0.1", 2), 0);
	CU_ASSERT_EQUAL(limits_ip_take(l, "10.0.0.1", 2), -1);
	limits_ip_put(l, "192.0.2.9"); /* never taken: nothing happens */
	limits_free(l);
}

/* Four processes race for 500 places in all and 300 from one address:
 * together they get exactly 300, never more, and what one of them held
 * comes back when it is gone. */
static void
test_processes_race_exactly(void)
{
	struct limits *l = limits_new(4);
	int i, status, got = 0, each[4];
	pid_t pids[4];

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	for (i = 0; i < 4; i++) {
		if ((pids[i] = fork()) == 0) {
			int n = 0, k;

			limits_set_worker(l, (size_t)i);
			for (k = 0; k < 200; k++) {
				if (limits_conn_take(l, 500) == -1)
					_exit(255); /* 300 < 500: never */
				if (limits_ip_take(l, "2001:db8::1", 300) == 0)
					n++;
				else
					limits_conn_put(l);
			}
			_exit(n);
		}
		CU_ASSERT_FATAL(pids[i] > 0);
	}
	for (i = 0; i < 4; i++) {
		CU_ASSERT(waitpid(pids[i], &status, 0) == pids[i]);
		CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) != 255);
		each[i] = WEXITSTATUS(status);
		got += each[i];
	}
	CU_ASSERT_EQUAL(got, 300);
	CU_ASSERT_EQUAL(limits_conn_count(l), 300);
	limits_worker_gone(l, 2);
	CU_ASSERT_EQUAL(limits_conn_count(l), (uint64_t)(300 - each[2]));
	limits_set_worker(l, 0);
	for (i = 0; limits_ip_take(l, "2001:db8::1", 300) == 0; i++)
		CU_ASSERT_EQUAL(limits_conn_take(l, 500), 0);
	CU_ASSERT_EQUAL(i, each[2]);
	limits_free(l);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "connections: take and give back", test_conns_take_put },
		{ "addresses count apart", test_ip_counts_apart },
		{ "processes racing get exactly the limit, a dead one's "
		    "places come back", test_processes_race_exactly },
	};

	return suite_run("limits", tests, nitems(tests));
}
