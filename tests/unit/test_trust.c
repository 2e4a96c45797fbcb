/*
 * test_trust.c: which files the daemon trusts, on real files with real
 * owners and modes in a private directory under /tmp (root's, sticky).
 * The cases that need another owner (chown) run only as root.
 */
#include <sys/stat.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"

#define NOBODY 65534

static char top[64];
static char buf[PATH_MAX + 256];

static const char *
at(const char *rel)
{
	static char p[4][PATH_MAX];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", top, rel);
	return p[i];
}

static void
touch(const char *rel, mode_t mode)
{
	FILE *f = fopen(at(rel), "w");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fclose(f);
	CU_ASSERT_EQUAL(chmod(at(rel), mode), 0);
}

static void
mkdir_mode(const char *rel, mode_t mode)
{
	CU_ASSERT_EQUAL_FATAL(mkdir(at(rel), 0700), 0);
	CU_ASSERT_EQUAL(chmod(at(rel), mode), 0);
}

static const char *
check(const char *rel)
{
	return trust_check(at(rel), geteuid(), buf, sizeof(buf));
}

/* why is a refusal naming path (relative to top) and saying what. */
static int
says(const char *why, const char *rel, const char *what)
{
	char want[PATH_MAX + 64];

	if (why == NULL)
		return 0;
	snprintf(want, sizeof(want), "%s %s", at(rel), what);
	return strncmp(why, want, strlen(want)) == 0;
}

static int
suite_init(void)
{
	snprintf(top, sizeof(top), "/tmp/wsplugd-test-trust-XXXXXX");
	if (mkdtemp(top) == NULL || chmod(top, 0755) == -1)
		return -1;
	return 0;
}

static int
suite_clean(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_modes(void)
{
	mkdir_mode("m", 0755);
	touch("m/ok.so", 0644);
	touch("m/exec.so", 0755);
	touch("m/ro.so", 0400);
	touch("m/g.so", 0664);
	touch("m/o.so", 0646);
	CU_ASSERT_PTR_NULL(check("m/ok.so"));
	CU_ASSERT_PTR_NULL(check("m/exec.so"));
	CU_ASSERT_PTR_NULL(check("m/ro.so"));
	CU_ASSERT(says(check("m/g.so"), "m/g.so", "is writable by group or "
	    "others (mode 0664)"));
	CU_ASSERT(says(check("m/o.so"), "m/o.so", "is writable by group or "
	    "others (mode 0646)"));
}

static void
test_directories_above(void)
{
	mkdir_mode("d", 0755);
	mkdir_mode("d/open", 0757);
	mkdir_mode("d/open/deep", 0755);
	touch("d/open/deep/x.so", 0644);
	CU_ASSERT(says(check("d/open/deep/x.so"), "d/open", "is writable by "
	    "group or others (mode 0757)"));
	mkdir_mode("d/grp", 0775);
	touch("d/grp/x.so", 0644);
	CU_ASSERT(says(check("d/grp/x.so"), "d/grp", "is writable by group "
	    "or others (mode 0775)"));
	/* Sticky does not help a directory that is not root's. */
	if (geteuid() != 0) {
		mkdir_mode("d/sticky", 01777);
		touch("d/sticky/x.so", 0644);
		CU_ASSERT(says(check("d/sticky/x.so"), "d/sticky",
		    "is writable"));
	}
}

static void
test_owners(void)
{
	if (geteuid() != 0)
		return; /* chown needs root */
	mkdir_mode("o", 0755);
	touch("o/nobody.so", 0644);
	CU_ASSERT_EQUAL(chown(at("o/nobody.so"), NOBODY, NOBODY), 0);
	CU_ASSERT(says(check("o/nobody.so"), "o/nobody.so", "is owned by uid "
	    "65534, neither root nor the daemon's user (uid 0)"));
	/* ... unless nobody is the daemon's user. */
	CU_ASSERT_PTR_NULL(trust_check(at("o/nobody.so"), NOBODY, buf,
	    sizeof(buf)));
	/* Root's files are trusted whoever the daemon runs as. */
	touch("o/root.so", 0644);
	CU_ASSERT_PTR_NULL(trust_check(at("o/root.so"), NOBODY, buf,
	    sizeof(buf)));
	mkdir_mode("o/theirs", 0755);
	CU_ASSERT_EQUAL(chown(at("o/theirs"), NOBODY, NOBODY), 0);
	touch("o/theirs/x.so", 0644);
	CU_ASSERT(says(check("o/theirs/x.so"), "o/theirs", "is owned by uid "
	    "65534"));
	/* Root's sticky directory is a safe ancestor; its entries are
	 * still checked. */
	mkdir_mode("o/tmp", 01777);
	touch("o/tmp/x.so", 0644);
	CU_ASSERT_PTR_NULL(check("o/tmp/x.so"));
	touch("o/tmp/w.so", 0666);
	CU_ASSERT(says(check("o/tmp/w.so"), "o/tmp/w.so", "is writable"));
}

static void
test_symlinks(void)
{
	mkdir_mode("s", 0755);
	mkdir_mode("s/bad", 0777);
	touch("s/bad/t.so", 0644);
	touch("s/good.so", 0644);
	/* A safe link to a file in an unsafe directory: the target counts. */
	CU_ASSERT_EQUAL(symlink(at("s/bad/t.so"), at("s/link.so")), 0);
	CU_ASSERT(says(check("s/link.so"), "s/bad", "is writable"));
	/* A link to a safe file, in a directory anyone may write, which
	 * anyone could point elsewhere. */
	CU_ASSERT_EQUAL(symlink(at("s/good.so"), at("s/bad/l.so")), 0);
	CU_ASSERT(says(check("s/bad/l.so"), "s/bad", "is writable"));
	/* A relative link to a safe file, in a safe directory. */
	CU_ASSERT_EQUAL(symlink("good.so", at("s/rel.so")), 0);
	CU_ASSERT_PTR_NULL(check("s/rel.so"));
}

static void
test_missing(void)
{
	mkdir_mode("n", 0755);
	mkdir_mode("n/open", 0777);
	/* Left to the loader, which reports it ... */
	CU_ASSERT_PTR_NULL(check("n/none.so"));
	CU_ASSERT_PTR_NULL(check("n/no/such/dir/x.so"));
	/* ... but not where anyone could create it. */
	CU_ASSERT(says(check("n/open/none.so"), "n/open", "is writable"));
	CU_ASSERT(says(check("n/open/a/b.so"), "n/open", "is writable"));
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("trust", suite_init, suite_clean);
	if (s == NULL ||
	    CU_add_test(s, "modes of the file", test_modes) == NULL ||
	    CU_add_test(s, "directories above", test_directories_above) ==
	    NULL ||
	    CU_add_test(s, "owners, and root's sticky directory",
	    test_owners) == NULL ||
	    CU_add_test(s, "symlinks judged by target and place",
	    test_symlinks) == NULL ||
	    CU_add_test(s, "missing files", test_missing) == NULL) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
