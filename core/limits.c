/*
 * limits.c: max_connections and max_connections_per_ip across workers.
 *
 * With workers > 1 the limits hold for the whole daemon, so their counts
 * live in one anonymous MAP_SHARED mapping that the master makes before
 * the first fork, updated with C11 atomics (admit.c asks; a single
 * process keeps its own counts in the registry and never comes here).
 *
 *   conns        connections handshaking or open in every worker; a worker
 *                takes one with an atomic add and gives it back when the
 *                connection stops counting, so two workers racing for the
 *                last place cannot both get it.
 *   ip table     LIMITS_IP_SLOTS slots of { 64-bit hash of the address,
 *                count }, open addressing with linear probing (at most
 *                LIMITS_IP_PROBES slots from the hash).  A slot is claimed
 *                for an address by a compare-and-swap of its key from 0 and
 *                is never given back, so an address always finds the same
 *                slot and a probe sequence never has holes.  When a new
 *                address finds no free slot within the probes (the daemon
 *                has seen that many distinct addresses), its limit is
 *                checked per worker instead, from the registry, and a
 *                warning is logged once per worker.  Two addresses with the
 *                same 64-bit FNV-1a hash would share a count.
 *   per worker   what each worker holds: its connections, and its count in
 *                each ip slot.  When a worker dies the master subtracts
 *                them (limits_worker_gone) before its replacement starts,
 *                so a crash gives back every place its connections took.
 *
 *   mem          bytes of max_buffer_memory taken by the workers, which
 *                membudget.c takes and gives back in chunks; given back
 *                for a dead worker like its connections.  Each worker
 *                also publishes what its heaviest connection holds
 *                (mem_top), so that a worker that finds the budget full
 *                can ask the one holding the heaviest to shed (mem_want)
 *                rather than shed a lighter connection of its own.
 *
 * Sizes: 262,144 slots of 16 bytes (4 MiB) for the table, 1 MiB of counts
 * per worker; pages are only touched as addresses arrive.
 */
#include <sys/mman.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

#define LIMITS_IP_SLOTS (1u << 18)
#define LIMITS_IP_PROBES 64

struct limits_slot {
	_Atomic uint64_t key; /* 0: free */
	_Atomic uint32_t n;
	uint32_t pad;
};

struct limits_shm {
	_Atomic uint64_t conns;
	_Atomic uint64_t mem;
	struct limits_slot slots[LIMITS_IP_SLOTS];
};

struct limits_worker {
	_Atomic uint64_t conns;
	_Atomic uint64_t mem;
	_Atomic uint64_t mem_top;  /* its heaviest holder's bytes */
	_Atomic uint64_t mem_want; /* bytes another worker asks it to shed */
	_Atomic uint32_t n[LIMITS_IP_SLOTS];
};

struct limits {
	struct limits_shm *shm;
	struct limits_worker *workers;
	size_t nworkers;
	struct limits_worker *me; /* in a worker: its own; NULL in the master */
	int warned_full;
};

struct limits *
limits_new(size_t nworkers)
{
	struct limits *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->nworkers = nworkers;
	l->shm = mmap(NULL, sizeof(*l->shm), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	l->workers = mmap(NULL, nworkers * sizeof(*l->workers),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (l->shm == MAP_FAILED || l->workers == MAP_FAILED) {
		int err = errno;

		if (l->shm != MAP_FAILED)
			munmap(l->shm, sizeof(*l->shm));
		if (l->workers != MAP_FAILED)
			munmap(l->workers, nworkers * sizeof(*l->workers));
		free(l);
		errno = err;
		return NULL;
	}
	return l;
}

void
limits_free(struct limits *l)
{
	if (l == NULL)
		return;
	munmap(l->shm, sizeof(*l->shm));
	munmap(l->workers, l->nworkers * sizeof(*l->workers));
	free(l);
}

void
limits_set_worker(struct limits *l, size_t i)
{
	l->me = &l->workers[i];
}

int
limits_conn_take(struct limits *l, uint64_t max)
{
	if (atomic_fetch_add(&l->shm->conns, 1) + 1 > max) {
		atomic_fetch_sub(&l->shm->conns, 1);
		return -1;
	}
	atomic_fetch_add_explicit(&l->me->conns, 1, memory_order_relaxed);
	return 0;
}

void
limits_conn_put(struct limits *l)
{
	atomic_fetch_sub(&l->shm->conns, 1);
	atomic_fetch_sub_explicit(&l->me->conns, 1, memory_order_relaxed);
}

uint64_t
limits_conn_count(const struct limits *l)
{
	return atomic_load(&((struct limits *)l)->shm->conns);
}

int
limits_mem_take(struct limits *l, uint64_t n, uint64_t max)
{
	if (atomic_fetch_add(&l->shm->mem, n) + n > max) {
		atomic_fetch_sub(&l->shm->mem, n);
		return -1;
	}
	atomic_fetch_add_explicit(&l->me->mem, n, memory_order_relaxed);
	return 0;
}

void
limits_mem_put(struct limits *l, uint64_t n)
{
	atomic_fetch_sub(&l->shm->mem, n);
	atomic_fetch_sub_explicit(&l->me->mem, n, memory_order_relaxed);
}

uint64_t
limits_mem_count(const struct limits *l)
{
	return atomic_load(&((struct limits *)l)->shm->mem);
}

void
limits_mem_top(struct limits *l, uint64_t bytes)
{
	atomic_store_explicit(&l->me->mem_top, bytes, memory_order_relaxed);
}

int
limits_mem_ask(struct limits *l, uint64_t bytes, uint64_t want)
{
	struct limits_worker *best = NULL;
	uint64_t top, max = bytes, cur;
	size_t i;

	for (i = 0; i < l->nworkers; i++) {
		if (&l->workers[i] == l->me)
			continue;
		top = atomic_load_explicit(&l->workers[i].mem_top,
		    memory_order_relaxed);
		if (top > max) {
			max = top;
			best = &l->workers[i];
		}
	}
	if (best == NULL)
		return 0;
	/* Asks are not added up: the largest outstanding one stands. */
	cur = atomic_load(&best->mem_want);
	while (cur < want &&
	    !atomic_compare_exchange_weak(&best->mem_want, &cur, want))
		;
	return 1;
}

uint64_t
limits_mem_wanted(struct limits *l)
{
	if (atomic_load_explicit(&l->me->mem_want, memory_order_relaxed) == 0)
		return 0;
	return atomic_exchange(&l->me->mem_want, 0);
}

static uint64_t
limits_hash(const char *ip)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 */

	for (; *ip != '\0'; ip++) {
		h ^= (uint8_t)*ip;
		h *= 1099511628211ULL;
	}
	return h != 0 ? h : 1;
}

/* ip's slot, claiming a free one when claim; -1 when there is none. */
static long
limits_slot(struct limits *l, const char *ip, int claim)
{
	uint64_t h = limits_hash(ip), key, zero;
	size_t i, k;

	for (k = 0; k < LIMITS_IP_PROBES; k++) {
		i = (size_t)((h + k) & (LIMITS_IP_SLOTS - 1));
		key = atomic_load(&l->shm->slots[i].key);
		if (key == h)
			return (long)i;
		if (key != 0)
			continue;
		if (!claim)
			return -1;
		zero = 0;
		if (atomic_compare_exchange_strong(&l->shm->slots[i].key, &zero,
		    h) || zero == h)
			return (long)i;
	}
	return -1;
}

int
limits_ip_take(struct limits *l, const char *ip, uint64_t max)
{
	long i = limits_slot(l, ip, 1);
	struct limits_slot *s;

	if (i == -1) {
		if (!l->warned_full) {
			l->warned_full = 1;
			log_msg(WSP_LOG_WARN, "daemon.limit", "the table of "
			    "client addresses is full (%u): "
			    "max_connections_per_ip holds per worker for new "
			    "addresses", LIMITS_IP_SLOTS);
		}
		return 1;
	}
	s = &l->shm->slots[i];
	if (atomic_fetch_add(&s->n, 1) >= max) {
		atomic_fetch_sub(&s->n, 1);
		return -1;
	}
	atomic_fetch_add_explicit(&l->me->n[i], 1, memory_order_relaxed);
	return 0;
}

void
limits_ip_put(struct limits *l, const char *ip)
{
	long i = limits_slot(l, ip, 0);

	if (i == -1)
		return;
	atomic_fetch_sub(&l->shm->slots[i].n, 1);
	atomic_fetch_sub_explicit(&l->me->n[i], 1, memory_order_relaxed);
}

void
limits_worker_gone(struct limits *l, size_t w)
{
	struct limits_worker *lw = &l->workers[w];
	uint32_t n;
	size_t i;

	atomic_fetch_sub(&l->shm->conns, atomic_exchange(&lw->conns, 0));
	atomic_fetch_sub(&l->shm->mem, atomic_exchange(&lw->mem, 0));
	atomic_store(&lw->mem_top, 0);
	atomic_store(&lw->mem_want, 0);
	for (i = 0; i < LIMITS_IP_SLOTS; i++)
		if ((n = atomic_load_explicit(&lw->n[i],
		    memory_order_relaxed)) != 0) {
			atomic_fetch_sub(&l->shm->slots[i].n, n);
			atomic_store(&lw->n[i], 0);
		}
}
