/*
 * registry.c: the established connections.
 *
 * The registry is an intrusive list (the connection carries its own link,
 * so registering allocates nothing), a count for the operator, 128-bit
 * random ids, and a table of open connections per client address for
 * max_connections_per_ip.  Metadata lives in struct wsp_conn itself.
 */
#include <sys/random.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "wsplugd.h"

struct ip_count {
	UT_hash_handle hh;
	size_t n;
	char ip[46];
};

void
registry_init(struct registry *r)
{
	TAILQ_INIT(&r->conns);
	r->count = 0;
	r->by_ip = NULL;
	r->rnd_used = sizeof(r->rnd); /* empty: filled on first use */
}

void
registry_fini(struct registry *r)
{
	struct ip_count *e, *tmp;

	HASH_ITER(hh, r->by_ip, e, tmp) {
		HASH_DEL(r->by_ip, e);
		free(e);
	}
}

/* Ids come from getrandom(2) 4 KiB at a time: one system call per 256
 * connections instead of one each. */
void
registry_new_id(struct registry *r, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	ssize_t n;
	size_t i;

	if (r->rnd_used + 16 > sizeof(r->rnd)) {
		do
			n = getrandom(r->rnd, sizeof(r->rnd), 0);
		while (n == -1 && errno == EINTR);
		if (n != (ssize_t)sizeof(r->rnd))
			abort(); /* no entropy source: ids would not be unique */
		r->rnd_used = 0;
	}
	for (i = 0; i < 16; i++) {
		uint8_t b = r->rnd[r->rnd_used + i];

		out[2 * i] = hex[b >> 4];
		out[2 * i + 1] = hex[b & 15];
	}
	out[32] = '\0';
	/* Don't leave used randomness where a later id could repeat it. */
	memset(r->rnd + r->rnd_used, 0, 16);
	r->rnd_used += 16;
}

void
registry_add(struct registry *r, struct wsp_conn *c)
{
	TAILQ_INSERT_TAIL(&r->conns, c, link);
	r->count++;
	c->registered = 1;
}

void
registry_remove(struct registry *r, struct wsp_conn *c)
{
	if (!c->registered)
		return;
	TAILQ_REMOVE(&r->conns, c, link);
	r->count--;
	c->registered = 0;
}

void
registry_move_tail(struct registry *r, struct wsp_conn *c)
{
	if (!c->registered || TAILQ_NEXT(c, link) == NULL)
		return;
	TAILQ_REMOVE(&r->conns, c, link);
	TAILQ_INSERT_TAIL(&r->conns, c, link);
}

size_t
registry_ip_count(struct registry *r, const char *ip)
{
	struct ip_count *e;

	HASH_FIND_STR(r->by_ip, ip, e);
	return e == NULL ? 0 : e->n;
}

int
registry_ip_ref(struct registry *r, const char *ip)
{
	struct ip_count *e;

	HASH_FIND_STR(r->by_ip, ip, e);
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return -1;
		strncpy(e->ip, ip, sizeof(e->ip) - 1);
		HASH_ADD_STR(r->by_ip, ip, e);
	}
	e->n++;
	return 0;
}

void
registry_ip_unref(struct registry *r, const char *ip)
{
	struct ip_count *e;

	HASH_FIND_STR(r->by_ip, ip, e);
	if (e == NULL)
		return;
	if (--e->n == 0) {
		HASH_DEL(r->by_ip, e);
		free(e);
	}
}
