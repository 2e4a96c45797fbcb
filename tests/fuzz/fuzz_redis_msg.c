/*
 * fuzz_redis_msg.c: the message the Redis backend's publish script puts
 * on a channel's pub/sub name, "W1 OFFSET EPOCH ORIGIN FLAG EXCEPT\n" and
 * the data, parsed by hand on every node (core/redis_proto.c).
 *
 * Oracles:
 *
 *  1. an accepted message has fields within their limits, printable
 *     ASCII without spaces, and its data is the rest of the input;
 *  2. writing the fields out again as the script does and parsing that
 *     gives the same message (leading zeros in the offset are the one
 *     other spelling);
 *  3. the input is not written to, nor read past (an exact-size copy).
 */
#include "wsplugd.h"
#include "fuzz.h"

static void
check_field(const char *s, size_t max)
{
	size_t n = strlen(s), i;

	CHECK(n <= max, "field of %zu bytes", n);
	for (i = 0; i < n; i++)
		CHECK(s[i] > 0x20 && s[i] < 0x7f, "byte %02x in a field",
		    (unsigned char)s[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = (char *)fuzz_dup(data, size);
	char *orig = (char *)fuzz_dup(data, size);
	struct bus_redis_msg m, g;
	char head[256];
	int k;

	if (bus_redis_msg_parse(buf, size, &m) == 0) {
		check_field(m.epoch, WSP_BUS_EPOCH_MAX);
		check_field(m.origin, 16);
		check_field(m.except, BUS_CONN_ID_MAX);
		CHECK(m.data >= buf && m.data + m.len == buf + size,
		    "data outside the input");
		k = snprintf(head, sizeof(head), "W1 %llu %s %s %c %s\n",
		    (unsigned long long)m.offset, m.epoch, m.origin,
		    m.queued ? 'q' : '-', m.except[0] != '\0' ? m.except : "-");
		CHECK(k > 0 && (size_t)k < sizeof(head), "head too long");
		CHECK(bus_redis_msg_parse(head, (size_t)k, &g) == 0,
		    "the re-encoded head is refused");
		CHECK(g.offset == m.offset && g.queued == m.queued &&
		    strcmp(g.epoch, m.epoch) == 0 &&
		    strcmp(g.origin, m.origin) == 0 &&
		    strcmp(g.except, m.except) == 0 && g.len == 0,
		    "the re-encoded head parses differently");
	}
	CHECK(memcmp(buf, orig, size) == 0, "the input was written to");
	free(buf);
	free(orig);
	return 0;
}
