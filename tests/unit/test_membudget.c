/*
 * test_membudget.c: max_buffer_memory's accounting: the total, the
 * heaviest holder first, the low-water mark, and the chunks a worker
 * takes from the daemon's shared total and gives back.
 */
#include <sys/wait.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "suite.h"
#include "wsplugd.h"

/* Check the heap's order and slots, and that used is the sum. */
static void
check_heap(const struct membudget *mb, struct membudget_holder *h, size_t n)
{
	uint64_t sum = 0;
	size_t i, inheap = 0;

	for (i = 0; i < n; i++) {
		sum += h[i].bytes;
		if (h[i].slot != 0) {
			inheap++;
			CU_ASSERT_PTR_EQUAL(mb->heap[h[i].slot - 1], &h[i]);
			CU_ASSERT(h[i].bytes > 0);
		} else
			CU_ASSERT_EQUAL(h[i].bytes, 0);
	}
	CU_ASSERT_EQUAL(inheap, mb->n);
	CU_ASSERT_EQUAL(sum, mb->used);
	for (i = 1; i < mb->n; i++)
		CU_ASSERT(mb->heap[(i - 1) / 2]->bytes >= mb->heap[i]->bytes);
}

static void
test_counts_and_heaviest(void)
{
	struct membudget mb;
	struct membudget_holder h[5];

	memset(h, 0, sizeof(h));
	membudget_init(&mb, 1000, NULL);
	CU_ASSERT_PTR_NULL(membudget_heaviest(&mb));
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[0], 100), 0);
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[1], 300), 0);
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[2], 200), 0);
	CU_ASSERT_EQUAL(mb.used, 600);
	CU_ASSERT_PTR_EQUAL(membudget_heaviest(&mb), &h[1]);
	check_heap(&mb, h, 5);
	/* shrink the heaviest: the next one comes up */
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[1], 50), 0);
	CU_ASSERT_PTR_EQUAL(membudget_heaviest(&mb), &h[2]);
	CU_ASSERT_EQUAL(mb.used, 350);
	/* a holder at 0 leaves the heap */
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[2], 0), 0);
	CU_ASSERT_EQUAL(h[2].slot, 0);
	CU_ASSERT_PTR_EQUAL(membudget_heaviest(&mb), &h[0]);
	check_heap(&mb, h, 5);
	/* not shedding: no victim even with holders */
	CU_ASSERT_PTR_NULL(membudget_victim(&mb));
	membudget_fini(&mb);
}

/* Past the budget the heaviest are victims until used is 1/8 below the
 * limit; the one that asked is not picked unless it is the heaviest. */
static void
test_shed_heaviest_to_low_water(void)
{
	struct membudget mb;
	struct membudget_holder h[10], *v;
	size_t i, shed = 0;

	memset(h, 0, sizeof(h));
	membudget_init(&mb, 80000, NULL);
	for (i = 0; i < 8; i++)
		CU_ASSERT_EQUAL(membudget_set(&mb, &h[i], 1000 * (i + 1)), 0);
	CU_ASSERT_EQUAL(mb.used, 36000);
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[8], 40000), 0); /* 76000 */
	/* 81000: over; the asker (5000) is not the heaviest (40000) */
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[9], 5000), -1);
	CU_ASSERT_EQUAL(mb.goal, 70000);
	while ((v = membudget_victim(&mb)) != NULL) {
		CU_ASSERT_PTR_NOT_EQUAL(v, &h[9]);
		if (shed == 0)
			CU_ASSERT_PTR_EQUAL(v, &h[8]);
		membudget_set(&mb, v, 0);
		shed++;
		CU_ASSERT_FATAL(shed <= 10);
	}
	CU_ASSERT_EQUAL(shed, 1); /* 41000 <= 70000 */
	CU_ASSERT_EQUAL(mb.goal, UINT64_MAX);
	check_heap(&mb, h, 10);
	/* equal holders: shed until the low-water mark, not all of them */
	membudget_set_limit(&mb, 50000);
	for (i = 0; i < 10; i++)
		membudget_set(&mb, &h[i], 0);
	for (i = 0; i < 9; i++)
		CU_ASSERT_EQUAL(membudget_set(&mb, &h[i], 5000), 0);
	CU_ASSERT_EQUAL(membudget_set(&mb, &h[9], 5010), -1);
	shed = 0;
	while ((v = membudget_victim(&mb)) != NULL) {
		membudget_set(&mb, v, 0);
		shed++;
	}
	CU_ASSERT_EQUAL(shed, 2); /* 50010 -> 45000 -> 40000 <= 43750 */
	CU_ASSERT(mb.used <= 43750);
	check_heap(&mb, h, 10);
	membudget_fini(&mb);
}

/* A pinned holder (already shed) stays counted but is never picked
 * again, and holders of less than MEMBUDGET_MIN_VICTIM are left alone:
 * a shed never ends an ordinary connection for what others hold. */
static void
test_pinned_and_small_are_spared(void)
{
	struct membudget mb;
	struct membudget_holder big, small, shed;

	memset(&big, 0, sizeof(big));
	memset(&small, 0, sizeof(small));
	memset(&shed, 0, sizeof(shed));
	membudget_init(&mb, 100000, NULL);
	CU_ASSERT_EQUAL(membudget_set(&mb, &shed, 90000), 0);
	membudget_pin(&mb, &shed);
	CU_ASSERT_EQUAL(shed.slot, 0);
	CU_ASSERT_EQUAL(mb.used, 90000);
	CU_ASSERT_EQUAL(membudget_set(&mb, &small, 100), 0);
	CU_ASSERT_EQUAL(membudget_set(&mb, &big, 10000), -1);
	CU_ASSERT_PTR_EQUAL(membudget_victim(&mb), &big);
	membudget_set(&mb, &big, 0);
	/* still over the low-water mark, but only the small one is left */
	CU_ASSERT(mb.used > 87500);
	CU_ASSERT_PTR_NULL(membudget_victim(&mb));
	/* a pinned holder's bytes go when it lets them go */
	CU_ASSERT_EQUAL(membudget_set(&mb, &shed, 100), 0);
	CU_ASSERT_EQUAL(shed.slot, 0);
	CU_ASSERT_EQUAL(mb.used, 200);
	membudget_fini(&mb);
}

/* Many holders moved up and down at random keep the heap in order. */
static void
test_heap_random(void)
{
	struct membudget mb;
	struct membudget_holder *h = calloc(1000, sizeof(*h));
	unsigned seed = 12345;
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	membudget_init(&mb, UINT64_MAX / 2, NULL);
	for (i = 0; i < 20000; i++) {
		seed = seed * 1103515245 + 12345;
		membudget_set(&mb, &h[(seed >> 8) % 1000],
		    (seed >> 4) % 7 == 0 ? 0 : (seed >> 12) % 100000);
	}
	check_heap(&mb, h, 1000);
	membudget_fini(&mb);
	free(h);
}

/* Two workers share one budget through limits.c, in chunks: what one
 * takes the other cannot, a chunk comes back once two are unused, and a
 * dead worker's chunks come back to the daemon. */
static void
test_workers_share_in_chunks(void)
{
	struct limits *l = limits_new(2);
	struct membudget a, b;
	struct membudget_holder ha, hb;
	const uint64_t limit = 4 * MEMBUDGET_CHUNK;
	int status;
	pid_t pid;

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	memset(&ha, 0, sizeof(ha));
	memset(&hb, 0, sizeof(hb));
	limits_set_worker(l, 0);
	membudget_init(&a, limit, l);
	CU_ASSERT_EQUAL(membudget_set(&a, &ha, 1), 0);
	CU_ASSERT_EQUAL(a.held, MEMBUDGET_CHUNK);
	CU_ASSERT_EQUAL(limits_mem_count(l), MEMBUDGET_CHUNK);
	CU_ASSERT_EQUAL(membudget_set(&a, &ha, 3 * MEMBUDGET_CHUNK), 0);
	CU_ASSERT_EQUAL(limits_mem_count(l), 3 * MEMBUDGET_CHUNK);

	/* worker 1, a real process: one chunk is left for it, not two.
	 * Past it, worker 0 holds the heavier connection: worker 1 asks it
	 * to shed and goes on, up to its overdraft, then sheds its own. */
	if ((pid = fork()) == 0) {
		limits_set_worker(l, 1);
		membudget_init(&b, limit, l);
		if (membudget_set(&b, &hb, MEMBUDGET_CHUNK) != 0)
			_exit(1);
		if (membudget_set(&b, &hb, MEMBUDGET_CHUNK + 1) != 0)
			_exit(2);
		if (membudget_set(&b, &hb, MEMBUDGET_CHUNK +
		    MEMBUDGET_OVERDRAFT + 1) != -1)
			_exit(3);
		if (membudget_victim(&b) != &hb)
			_exit(4);
		_exit(0); /* dies holding its chunk */
	}
	CU_ASSERT_FATAL(pid > 0);
	CU_ASSERT(waitpid(pid, &status, 0) == pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_EQUAL(limits_mem_count(l), limit);
	/* worker 0 was asked: its heaviest is the victim */
	CU_ASSERT_EQUAL(membudget_poll(&a), -1);
	CU_ASSERT_PTR_EQUAL(membudget_victim(&a), &ha);
	CU_ASSERT_EQUAL(membudget_poll(&a), 0); /* asked once */
	/* the daemon is full: worker 0 cannot grow either, and worker 1
	 * (which published a heavier holder) is asked in its turn */
	CU_ASSERT_EQUAL(membudget_set(&a, &ha, 3 * MEMBUDGET_CHUNK + 1), 0);
	CU_ASSERT(a.used > a.held);
	limits_worker_gone(l, 1);
	CU_ASSERT_EQUAL(limits_mem_count(l), 3 * MEMBUDGET_CHUNK);
	CU_ASSERT_EQUAL(membudget_set(&a, &ha, 3 * MEMBUDGET_CHUNK + 2), 0);
	CU_ASSERT_EQUAL(a.held, limit);
	CU_ASSERT_PTR_NULL(membudget_victim(&a)); /* not shedding now */
	/* shrink: less than two chunks of slack are kept, the rest given
	 * back */
	CU_ASSERT_EQUAL(membudget_set(&a, &ha, 10), 0);
	CU_ASSERT_EQUAL(a.held, 2 * MEMBUDGET_CHUNK);
	CU_ASSERT_EQUAL(limits_mem_count(l), 2 * MEMBUDGET_CHUNK);
	membudget_fini(&a);
	CU_ASSERT_EQUAL(limits_mem_count(l), 0);
	limits_free(l);
}

static void
test_auto_is_clamped(void)
{
	uint64_t v = membudget_auto();
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
	uint64_t quarter = (uint64_t)pages * (uint64_t)size / 4;

	CU_ASSERT(v >= MEMBUDGET_AUTO_MIN && v <= MEMBUDGET_AUTO_MAX);
	if (quarter >= MEMBUDGET_AUTO_MIN && quarter <= MEMBUDGET_AUTO_MAX)
		CU_ASSERT_EQUAL(v, quarter);
}

/* The key: auto by default, a size from 1 MiB to 1 TiB, FILE:LINE when
 * it is wrong. */
static struct wsp_config *
load(const char *text, struct wsp_errors *errs)
{
	char path[] = "/tmp/test_membudget.XXXXXX";
	struct wsp_config *cfg;
	int fd = mkstemp(path);

	CU_ASSERT_FATAL(fd != -1);
	CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	cfg = config_load(path, "/nonexistent", errs);
	unlink(path);
	return cfg;
}

static void
test_config_key(void)
{
	struct wsp_errors errs = { NULL, 0 };
	struct wsp_config *cfg;

	cfg = load("", &errs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->max_buffer_memory, membudget_auto());
	config_free(cfg);
	cfg = load("[server]\nmax_buffer_memory = auto\n", &errs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->max_buffer_memory, membudget_auto());
	config_free(cfg);
	cfg = load("[server]\nmax_buffer_memory = 32MiB\n", &errs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->max_buffer_memory, 32 * MIB);
	config_free(cfg);
	CU_ASSERT_PTR_NULL(load("[server]\nmax_buffer_memory = 512KiB\n",
	    &errs));
	CU_ASSERT_PTR_NULL(load("[server]\n\nmax_buffer_memory = lots\n",
	    &errs));
	CU_ASSERT_EQUAL_FATAL(errs.n, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(errs.msg[0], ":2: [server] "
	    "max_buffer_memory: 512KiB is out of range (auto, or "
	    "1MiB..1TiB)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(errs.msg[1], ":3: [server] "
	    "max_buffer_memory: invalid size 'lots' (expected auto or a "
	    "number with a unit"));
	errors_clear(&errs);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "counts holders, knows the heaviest", test_counts_and_heaviest },
		{ "over the budget, sheds the heaviest to the low-water mark",
		    test_shed_heaviest_to_low_water },
		{ "pinned and small holders are spared",
		    test_pinned_and_small_are_spared },
		{ "heap stays ordered under random updates", test_heap_random },
		{ "workers share the budget in chunks", test_workers_share_in_chunks },
		{ "auto is a quarter of memory, clamped", test_auto_is_clamped },
		{ "the max_buffer_memory key", test_config_key },
	};

	return suite_run("membudget", tests, nitems(tests));
}
