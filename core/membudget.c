/*
 * membudget.c: [server] max_buffer_memory, one budget for every output
 * buffer and every partial message of the daemon.
 *
 * Per-connection limits (max_output_buffer, max_message_size) bound one
 * client; they do not bound ten thousand of them.  Here each connection is
 * a holder whose bytes (its queued output plus the buffer of the message
 * it is reassembling) are counted against one total, and the holders are
 * kept in a max-heap by bytes, so that when the total passes the budget
 * the connection holding the most is found in O(1), not by a scan of
 * every connection while the daemon is at its busiest.  An update is
 * O(log n) of the holders that hold anything at all: a connection whose
 * peer keeps up holds nothing between events and is not in the heap.
 *
 * This file only counts and names: conn.c reports every change and, when
 * told the budget is exceeded, sheds the victims this file picks (down to
 * a low-water mark 1/8 below what it may hold, so that one shed makes room
 * for many sends rather than one).
 *
 * With workers > 1 the budget is the whole daemon's.  Its total lives in
 * limits.c's shared mapping; a worker takes from it in chunks of
 * MEMBUDGET_CHUNK bytes and gives chunks back once two of them are unused,
 * so the hot path touches shared memory about once per chunk, not per
 * send.  A worker keeps less than two chunks unused, so the daemon's
 * total may read up to 2 * MEMBUDGET_CHUNK per worker above what is
 * really queued.
 *
 * The heaviest connection may be in another worker.  Each worker
 * publishes what its heaviest holds; one that cannot get a chunk asks the
 * worker with a heavier connection to shed (limits_mem_ask) and goes on
 * meanwhile, up to MEMBUDGET_OVERDRAFT past its share (so the daemon may
 * briefly pass the budget by that much per worker).  The asked worker
 * sheds its heaviest at its next change or heartbeat, and the chunks it
 * frees are taken by the one that asked.  Only when no other worker holds
 * anything heavier, or the overdraft is spent, does a worker shed its
 * own.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "wsplugd.h"

static void
heap_swap(struct membudget *mb, size_t i, size_t j)
{
	struct membudget_holder *t = mb->heap[i];

	mb->heap[i] = mb->heap[j];
	mb->heap[j] = t;
	mb->heap[i]->slot = i + 1;
	mb->heap[j]->slot = j + 1;
}

static void
heap_up(struct membudget *mb, size_t i)
{
	size_t parent;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (mb->heap[parent]->bytes >= mb->heap[i]->bytes)
			break;
		heap_swap(mb, i, parent);
		i = parent;
	}
}

static void
heap_down(struct membudget *mb, size_t i)
{
	size_t l, r, big;

	for (;;) {
		l = 2 * i + 1;
		r = l + 1;
		big = i;
		if (l < mb->n && mb->heap[l]->bytes > mb->heap[big]->bytes)
			big = l;
		if (r < mb->n && mb->heap[r]->bytes > mb->heap[big]->bytes)
			big = r;
		if (big == i)
			return;
		heap_swap(mb, i, big);
		i = big;
	}
}

static int
heap_insert(struct membudget *mb, struct membudget_holder *h)
{
	struct membudget_holder **nh;
	size_t cap;

	if (mb->n == mb->cap) {
		cap = mb->cap == 0 ? 64 : mb->cap * 2;
		if ((nh = reallocarray(mb->heap, cap, sizeof(*nh))) == NULL)
			return -1;
		mb->heap = nh;
		mb->cap = cap;
	}
	mb->heap[mb->n] = h;
	h->slot = ++mb->n;
	heap_up(mb, mb->n - 1);
	return 0;
}

static void
heap_remove(struct membudget *mb, struct membudget_holder *h)
{
	size_t i = h->slot - 1;

	h->slot = 0;
	if (i == --mb->n)
		return;
	mb->heap[i] = mb->heap[mb->n];
	mb->heap[i]->slot = i + 1;
	heap_up(mb, i);
	heap_down(mb, mb->heap[i]->slot - 1);
}

/* Take chunks until used fits in held: 0, or -1 when the budget has no
 * more to give. */
static int
membudget_grow(struct membudget *mb)
{
	if (mb->shared == NULL) {
		mb->held = mb->limit;
		return mb->used > mb->held ? -1 : 0;
	}
	while (mb->used > mb->held) {
		if (limits_mem_take(mb->shared, MEMBUDGET_CHUNK,
		    mb->limit) == -1)
			return -1;
		mb->held += MEMBUDGET_CHUNK;
	}
	return 0;
}

/* Give back what is unused beyond one chunk of slack. */
static void
membudget_shrink(struct membudget *mb)
{
	if (mb->shared == NULL)
		return;
	while (mb->held >= mb->used + 2 * MEMBUDGET_CHUNK) {
		limits_mem_put(mb->shared, MEMBUDGET_CHUNK);
		mb->held -= MEMBUDGET_CHUNK;
	}
}

void
membudget_init(struct membudget *mb, uint64_t limit, struct limits *shared)
{
	mb->limit = limit;
	mb->used = 0;
	mb->shared = shared;
	mb->held = shared == NULL ? limit : 0;
	mb->goal = UINT64_MAX;
	mb->shedding = 0;
	mb->top = 0;
	mb->heap = NULL;
	mb->n = mb->cap = 0;
}

void
membudget_fini(struct membudget *mb)
{
	size_t i;

	for (i = 0; i < mb->n; i++)
		mb->heap[i]->slot = 0;
	free(mb->heap);
	mb->heap = NULL;
	mb->n = mb->cap = 0;
	if (mb->shared != NULL && mb->held > 0)
		limits_mem_put(mb->shared, mb->held);
	mb->held = 0;
	mb->used = 0;
}

void
membudget_set_limit(struct membudget *mb, uint64_t limit)
{
	mb->limit = limit;
	if (mb->shared == NULL)
		mb->held = limit;
}

/* Count h's new bytes: 0, or -1 past the budget. */
static int
membudget_update(struct membudget *mb, struct membudget_holder *h,
    uint64_t bytes, uint64_t was)
{
	h->bytes = bytes;
	mb->used = mb->used - was + bytes;
	if (bytes == 0) {
		if (h->slot != 0)
			heap_remove(mb, h);
	} else if (h->slot == 0) {
		/* Out of memory for the heap: still counted, only never
		 * picked as a victim, like a pinned one. */
		if (!h->pinned)
			(void)heap_insert(mb, h);
	} else if (bytes > was)
		heap_up(mb, h->slot - 1);
	else
		heap_down(mb, h->slot - 1);
	if (bytes < was) {
		membudget_shrink(mb);
		return 0;
	}
	if (mb->used <= mb->held || membudget_grow(mb) == 0) {
		mb->goal = UINT64_MAX; /* room again: a shed left undone ends */
		return 0;
	}
	/* A heavier connection in another worker goes first. */
	if (mb->shared != NULL &&
	    mb->used - mb->held <= MEMBUDGET_OVERDRAFT &&
	    limits_mem_ask(mb->shared, mb->n > 0 ? mb->heap[0]->bytes : 0,
	    mb->used - mb->held + MEMBUDGET_CHUNK))
		return 0;
	/* Shed down to 1/8 below what may be held: room for many sends
	 * before the next shed. */
	if (mb->goal == UINT64_MAX)
		mb->goal = mb->held - mb->held / 8;
	return -1;
}

/* Publish the heaviest holder's bytes when they changed. */
static void
membudget_publish(struct membudget *mb)
{
	uint64_t top = mb->n > 0 ? mb->heap[0]->bytes : 0;

	if (top != mb->top) {
		mb->top = top;
		limits_mem_top(mb->shared, top);
	}
}

/* Shed down by what another worker asked: -1 when there is a goal. */
static int
membudget_asked(struct membudget *mb)
{
	uint64_t want = limits_mem_wanted(mb->shared), goal;

	if (want == 0)
		return 0;
	goal = mb->used > want ? mb->used - want : 0;
	if (mb->goal == UINT64_MAX || goal < mb->goal)
		mb->goal = goal;
	return -1;
}

int
membudget_poll(struct membudget *mb)
{
	if (mb->shared == NULL)
		return 0;
	return membudget_asked(mb);
}

int
membudget_set(struct membudget *mb, struct membudget_holder *h,
    uint64_t bytes)
{
	uint64_t was = h->bytes;
	int rc;

	if (bytes == was)
		return 0;
	rc = membudget_update(mb, h, bytes, was);
	if (mb->shared != NULL) {
		membudget_publish(mb);
		if (membudget_asked(mb) == -1)
			rc = -1;
	}
	return rc;
}

struct membudget_holder *
membudget_victim(struct membudget *mb)
{
	if (mb->goal == UINT64_MAX)
		return NULL;
	/* What the pinned still hold goes with their linger: a connection
	 * holding next to nothing is not worth shedding for it. */
	if (mb->used <= mb->goal || mb->n == 0 ||
	    mb->heap[0]->bytes < MEMBUDGET_MIN_VICTIM) {
		mb->goal = UINT64_MAX;
		return NULL;
	}
	return mb->heap[0];
}

void
membudget_pin(struct membudget *mb, struct membudget_holder *h)
{
	if (h->slot != 0)
		heap_remove(mb, h);
	h->pinned = 1;
}

const struct membudget_holder *
membudget_heaviest(const struct membudget *mb)
{
	return mb->n > 0 ? mb->heap[0] : NULL;
}

uint64_t
membudget_auto(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
	uint64_t b;

	if (pages <= 0 || size <= 0)
		return MEMBUDGET_AUTO_MIN;
	b = (uint64_t)pages * (uint64_t)size / 4;
	return b < MEMBUDGET_AUTO_MIN ? MEMBUDGET_AUTO_MIN :
	    b > MEMBUDGET_AUTO_MAX ? MEMBUDGET_AUTO_MAX : b;
}
