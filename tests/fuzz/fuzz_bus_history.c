/*
 * fuzz_bus_history.c: the bus history's reader (bus_store_load in
 * core/bus_local.c) on bytes from a stranger.
 *
 * The history reaches a process from another one: a hand-over's old
 * process (HO_T_HISTORY) or, under systemd, the daemon that ran before a
 * crash (a memfd in the fd store).  Either may be another build, and the
 * fd store's copy may be left half-written by the crash itself.
 *
 * The first input byte chooses: odd, the rest is taken as it is; even,
 * the header's length and CRC are set to match the rest first, so the
 * fuzzer reaches the body past the checksum.
 *
 * Oracles:
 *  1. no crash, leak or read past the end, whatever the bytes;
 *  2. a refused input leaves the store empty (no channel, no byte);
 *  3. round trip: an accepted history, written again and read into a
 *     fresh store, is written a third time to the very same bytes.
 */
#include <stdint.h>

#include <zlib.h>

#include "wsplugd.h"
#include "fuzz.h"

#define NOW (UINT64_MAX / 2)

static const struct bus_limits loose = { UINT64_MAX, UINT64_MAX / 4,
	UINT64_MAX };

static void
set_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outbuf one = { NULL, 0, 0 }, two = { NULL, 0, 0 };
	struct bus_store *st, *again;
	const char *why = NULL;
	uint64_t chans, bytes;
	uint8_t *p;
	size_t n;

	if (size < 1)
		return 0;
	n = size - 1;
	p = fuzz_dup(data + 1, n);
	if ((data[0] & 1) == 0 && n >= 16) {
		uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);

		if (n > 16)
			crc = (uint32_t)crc32(crc, p + 16, (uInt)(n - 16));
		set_u32(p + 8, (uint32_t)(n - 16));
		set_u32(p + 12, crc);
	}
	if ((st = bus_store_new(&loose, 1)) == NULL)
		abort();
	if (bus_store_load(st, p, n, NOW, &why) == -1) {
		CHECK(why != NULL, "refused without a reason");
		bus_store_stats(st, &chans, &bytes);
		CHECK(chans == 0 && bytes == 0, "refused, yet %llu channels "
		    "and %llu bytes kept", (unsigned long long)chans,
		    (unsigned long long)bytes);
	} else {
		CHECK(bus_store_save(st, NOW, &one) == 0,
		    "cannot write an accepted history");
		if ((again = bus_store_new(&loose, 1)) == NULL)
			abort();
		CHECK(bus_store_load(again, (const uint8_t *)one.p, one.len,
		    NOW, &why) == 0, "the history written again is refused: "
		    "%s", why);
		CHECK(bus_store_save(again, NOW, &two) == 0,
		    "third write failed");
		CHECK(one.len == two.len && memcmp(one.p, two.p,
		    one.len) == 0, "the round trip changed the history");
		bus_store_free(again);
	}
	bus_store_free(st);
	free(one.p);
	free(two.p);
	free(p);
	return 0;
}
