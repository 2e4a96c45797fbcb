/*
 * redis_proto.c: the parts of the Redis backend (bus_redis.c) that are
 * plain text handling, with no connection: the [bus] redis address, which
 * config.c checks at load, and the message the publish script puts on a
 * channel's pub/sub name, which each node parses by hand.  Kept apart so
 * that config.c, the unit tests and the fuzz harness need no hiredis.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

int
redis_addr_parse(const char *text, char *host, size_t hostsz, int *port_r)
{
	const char *colon, *h = text, *hend;
	char *end;
	unsigned long port;
	size_t n = strlen(text);

	if (text[0] == '/') { /* a unix socket: sun_path's 108 bytes */
		if (n >= 108)
			return -1;
		if (host != NULL) {
			if (n >= hostsz)
				return -1;
			memcpy(host, text, n + 1);
			*port_r = 0;
		}
		return 0;
	}
	if ((colon = strrchr(text, ':')) == NULL || colon == text)
		return -1;
	hend = colon;
	if (text[0] == '[') {
		if (colon[-1] != ']' || colon - text < 3)
			return -1;
		h = text + 1;
		hend = colon - 1;
	} else if (memchr(text, ':', (size_t)(colon - text)) != NULL)
		return -1; /* a bare v6 address: its port is ambiguous */
	for (const char *c = h; c < hend; c++)
		if (*c <= 0x20 || *c >= 0x7f || *c == '[' || *c == ']' ||
		    *c == '/')
			return -1;
	if (colon[1] < '0' || colon[1] > '9')
		return -1;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || port == 0 || port > 65535)
		return -1;
	if (host != NULL) {
		if ((size_t)(hend - h) >= hostsz)
			return -1;
		memcpy(host, h, (size_t)(hend - h));
		host[hend - h] = '\0';
		*port_r = (int)port;
	}
	return 0;
}

/* The next space-separated field of [*p, end) into out (at most max
 * bytes, each a printable ASCII); -1 if there is none or it is bad. */
static int
msg_field(const char **p, const char *end, char term, char *out, size_t max)
{
	const char *s = *p, *e = s;

	while (e < end && *e != term)
		e++;
	if (e == end || e == s || (size_t)(e - s) > max)
		return -1;
	for (const char *c = s; c < e; c++)
		if (*c <= 0x20 || *c >= 0x7f)
			return -1;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	*p = e + 1;
	return 0;
}

int
bus_redis_msg_parse(const char *p, size_t n, struct bus_redis_msg *m)
{
	const char *end = p + n;
	char num[21], flag[2];
	uint64_t v = 0;
	size_t i;

	memset(m, 0, sizeof(*m));
	if (n < 3 || memcmp(p, "W1 ", 3) != 0)
		return -1;
	p += 3;
	if (msg_field(&p, end, ' ', num, 20) == -1)
		return -1;
	for (i = 0; num[i] != '\0'; i++) {
		if (num[i] < '0' || num[i] > '9' ||
		    v > (UINT64_MAX - (uint64_t)(num[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(num[i] - '0');
	}
	m->offset = v;
	if (msg_field(&p, end, ' ', m->epoch, WSP_BUS_EPOCH_MAX) == -1 ||
	    msg_field(&p, end, ' ', m->origin, 16) == -1 ||
	    msg_field(&p, end, ' ', flag, 1) == -1 ||
	    (flag[0] != 'q' && flag[0] != '-') ||
	    msg_field(&p, end, '\n', m->except, BUS_CONN_ID_MAX) == -1)
		return -1;
	m->queued = flag[0] == 'q';
	if (strcmp(m->except, "-") == 0)
		m->except[0] = '\0';
	m->data = p;
	m->len = (size_t)(end - p);
	return 0;
}
