/*
 * test_utf8.c: CUnit suite for core/utf8.c.
 *
 * The validator is checked four ways: against hand-written tables in the
 * spirit of Markus Kuhn's UTF-8 stress test (boundaries, overlongs,
 * surrogates, stray and missing continuation bytes), against a plain
 * code-point decoder written here for exhaustive runs over short strings,
 * against glibc's iconv(3) on random strings from a fixed seed, and by
 * feeding every input in every split to prove the state carries correctly
 * across calls and across the eight-byte ASCII fast path.
 *
 * About iconv: glibc 2.36's UTF-8 decoder itself rejects overlongs and
 * surrogates but accepts the old 5- and 6-byte forms and code points above
 * U+10FFFF; converting to "UTF-32LE" makes the encoder reject those, while
 * "WCHAR_T" and "UCS-4LE" let them through.  So UTF-32LE is the target.
 * For input that ends inside a sequence glibc reports EINVAL (incomplete)
 * even when the bytes seen can never become valid ("E0 80"), where the
 * validator already says UTF8_REJECT; the differential check allows that.
 */
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Verdicts of the reference decoder, comparable with validator states. */
#define REF_ACCEPT 0
#define REF_REJECT 1
#define REF_PARTIAL 2

struct utf8_case {
	const char *name;
	const char *s;
	size_t n; /* 0: strlen(s) */
};

#define CASE(name, s) { name, s, sizeof(s) - 1 }

static const struct utf8_case valid_cases[] = {
	CASE("empty", ""),
	CASE("ascii", "Hello, world"),
	CASE("NUL", "\x00"),
	CASE("NUL inside", "a\x00" "b"),
	CASE("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
	CASE("U+007F", "\x7f"),
	CASE("U+0080", "\xc2\x80"),
	CASE("U+07FF", "\xdf\xbf"),
	CASE("U+0800", "\xe0\xa0\x80"),
	CASE("U+0FFF", "\xe0\xbf\xbf"),
	CASE("U+1000", "\xe1\x80\x80"),
	CASE("U+CFFF", "\xec\xbf\xbf"),
	CASE("U+D000", "\xed\x80\x80"),
	CASE("U+D7FF", "\xed\x9f\xbf"),
	CASE("U+E000", "\xee\x80\x80"),
	CASE("U+FEFF BOM", "\xef\xbb\xbf"),
	CASE("U+FFFD", "\xef\xbf\xbd"),
	CASE("U+FFFE noncharacter", "\xef\xbf\xbe"),
	CASE("U+FFFF", "\xef\xbf\xbf"),
	CASE("U+10000", "\xf0\x90\x80\x80"),
	CASE("U+3FFFF", "\xf0\xbf\xbf\xbf"),
	CASE("U+40000", "\xf1\x80\x80\x80"),
	CASE("U+FFFFF", "\xf3\xbf\xbf\xbf"),
	CASE("U+100000", "\xf4\x80\x80\x80"),
	CASE("U+10FFFF", "\xf4\x8f\xbf\xbf"),
	CASE("mixed", "a\xc3\xa9z\xe2\x82\xac!\xf0\x9f\x98\x80."),
	CASE("long ascii then euro",
	    "abcdefghijklmnopqrstuvwxyz0123456789\xe2\x82\xac"),
	CASE("euro then long ascii",
	    "\xe2\x82\xac" "abcdefghijklmnopqrstuvwxyz0123456789"),
};

static const struct utf8_case invalid_cases[] = {
	CASE("stray 80", "\x80"),
	CASE("stray BF", "\xbf"),
	CASE("stray 80 after ascii", "abc\x80"),
	CASE("two continuations", "\x80\xbf"),
	CASE("continuation after complete 2-byte", "\xc3\xa9\xa9"),
	CASE("lead then ascii (2)", "\xc2" "A"),
	CASE("lead then ascii (3)", "\xe1\x80" "A"),
	CASE("lead then ascii (4)", "\xf1\x80\x80" "A"),
	CASE("lead then lead", "\xc2\xc2\x80"),
	CASE("C0 80 overlong NUL", "\xc0\x80"),
	CASE("C1 BF overlong U+007F", "\xc1\xbf"),
	CASE("lone C0", "\xc0"),
	CASE("lone C1", "\xc1"),
	CASE("E0 80 80 overlong NUL", "\xe0\x80\x80"),
	CASE("E0 9F BF overlong U+07FF", "\xe0\x9f\xbf"),
	CASE("F0 80 80 80 overlong NUL", "\xf0\x80\x80\x80"),
	CASE("F0 8F BF BF overlong U+FFFF", "\xf0\x8f\xbf\xbf"),
	CASE("F8 overlong 5-byte NUL", "\xf8\x80\x80\x80\x80"),
	CASE("FC overlong 6-byte NUL", "\xfc\x80\x80\x80\x80\x80"),
	CASE("U+D800", "\xed\xa0\x80"),
	CASE("U+DB7F", "\xed\xad\xbf"),
	CASE("U+DB80", "\xed\xae\x80"),
	CASE("U+DBFF", "\xed\xaf\xbf"),
	CASE("U+DC00", "\xed\xb0\x80"),
	CASE("U+DF80", "\xed\xbe\x80"),
	CASE("U+DFFF", "\xed\xbf\xbf"),
	CASE("surrogate pair D800 DC00", "\xed\xa0\x80\xed\xb0\x80"),
	CASE("surrogate pair DBFF DFFF", "\xed\xaf\xbf\xed\xbf\xbf"),
	CASE("U+110000", "\xf4\x90\x80\x80"),
	CASE("U+13FFFF", "\xf4\xbf\xbf\xbf"),
	CASE("F5 lead", "\xf5\x80\x80\x80"),
	CASE("F7 lead U+1FFFFF", "\xf7\xbf\xbf\xbf"),
	CASE("5-byte U+200000", "\xf8\x88\x80\x80\x80"),
	CASE("6-byte U+4000000", "\xfc\x84\x80\x80\x80\x80"),
	CASE("6-byte U+7FFFFFFF", "\xfd\xbf\xbf\xbf\xbf\xbf"),
	CASE("FE", "\xfe"),
	CASE("FF", "\xff"),
	CASE("FE FE FF FF", "\xfe\xfe\xff\xff"),
	CASE("valid then bad", "ok \xe2\x82\xac then \xff"),
	CASE("bad after 8 ascii", "12345678\xc0"),
	CASE("bad after 16 ascii", "1234567890abcdef\xf5"),
	CASE("truncated then ascii mid-string", "ab\xe2\x82" "cd"),
};

/* Inputs that end inside a sequence that could still become valid. */
static const struct utf8_case partial_cases[] = {
	CASE("C2", "\xc2"),
	CASE("DF", "\xdf"),
	CASE("E0", "\xe0"),
	CASE("E0 A0", "\xe0\xa0"),
	CASE("E1 80", "\xe1\x80"),
	CASE("ED", "\xed"),
	CASE("ED 9F", "\xed\x9f"),
	CASE("F0 90", "\xf0\x90"),
	CASE("F0 90 80", "\xf0\x90\x80"),
	CASE("F4 8F BF", "\xf4\x8f\xbf"),
	CASE("ascii then E2 82", "price: \xe2\x82"),
};

/* Inputs that end inside a sequence that is already impossible: the
 * validator must not wait for more. */
static const struct utf8_case doomed_cases[] = {
	CASE("E0 80", "\xe0\x80"),
	CASE("E0 9F", "\xe0\x9f"),
	CASE("ED A0", "\xed\xa0"),
	CASE("ED BF", "\xed\xbf"),
	CASE("F0 80", "\xf0\x80"),
	CASE("F0 8F", "\xf0\x8f"),
	CASE("F4 90", "\xf4\x90"),
	CASE("F4 BF", "\xf4\xbf"),
	CASE("F5", "\xf5"),
	CASE("F8", "\xf8"),
};

/* A small deterministic generator, so every run sees the same strings. */
static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
	rng_state = seed;
}

static uint32_t
rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static size_t
encode_cp(uint32_t cp, uint8_t *out)
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = 0xc0 | (cp >> 6);
		out[1] = 0x80 | (cp & 0x3f);
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = 0xe0 | (cp >> 12);
		out[1] = 0x80 | ((cp >> 6) & 0x3f);
		out[2] = 0x80 | (cp & 0x3f);
		return 3;
	}
	out[0] = 0xf0 | (cp >> 18);
	out[1] = 0x80 | ((cp >> 12) & 0x3f);
	out[2] = 0x80 | ((cp >> 6) & 0x3f);
	out[3] = 0x80 | (cp & 0x3f);
	return 4;
}

/*
 * The reference: decode code points the textbook way.  When the input ends
 * inside a sequence it answers PARTIAL only if some continuation could still
 * make it valid, i.e. if the range of code points the prefix allows meets
 * [min, U+10FFFF] outside the surrogates.
 */
static int
ref_validate(const uint8_t *p, size_t n)
{
	size_t i = 0, k, need, have;
	uint32_t cp, min, lo, hi;

	while (i < n) {
		uint8_t b = p[i];

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			need = 1;
			cp = b & 0x1f;
			min = 0x80;
		} else if (b >= 0xe0 && b <= 0xef) {
			need = 2;
			cp = b & 0x0f;
			min = 0x800;
		} else if (b >= 0xf0 && b <= 0xf4) {
			need = 3;
			cp = b & 0x07;
			min = 0x10000;
		} else
			return REF_REJECT;
		for (k = 1, have = 0; k <= need && i + k < n; k++, have++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return REF_REJECT;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		lo = cp << (6 * (need - have));
		hi = lo | ((1u << (6 * (need - have))) - 1);
		if (hi < min || lo > 0x10ffff)
			return REF_REJECT;
		if (lo >= 0xd800 && hi <= 0xdfff)
			return REF_REJECT;
		if (have < need)
			return REF_PARTIAL;
		i += need + 1;
	}
	return REF_ACCEPT;
}

static int
verdict(uint32_t state)
{
	if (state == UTF8_ACCEPT)
		return REF_ACCEPT;
	if (state == UTF8_REJECT)
		return REF_REJECT;
	return REF_PARTIAL;
}

static uint32_t
feed_bytewise(uint32_t state, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		state = utf8_validate(state, p + i, 1);
	return state;
}

/* The verdict for s fed whole, and the same for every one- and two-cut
 * split and byte at a time.  Each piece is copied to a buffer of exactly its
 * size so ASan catches a read past n. */
static int
verdict_all_splits(const uint8_t *s, size_t n)
{
	uint32_t whole, st;
	size_t a, b;
	uint8_t *buf;
	int bad = 0;

	buf = malloc(n > 0 ? n : 1);
	CU_ASSERT_FATAL(buf != NULL);
	memcpy(buf, s, n);
	whole = utf8_validate(UTF8_ACCEPT, buf, n);
	if (feed_bytewise(UTF8_ACCEPT, buf, n) != whole)
		bad++;
	for (a = 0; a <= n; a++) {
		for (b = a; b <= n; b++) {
			st = utf8_validate(UTF8_ACCEPT, buf, a);
			st = utf8_validate(st, buf + a, b - a);
			st = utf8_validate(st, buf + b, n - b);
			if (verdict(st) != verdict(whole))
				bad++;
		}
	}
	free(buf);
	CU_ASSERT_EQUAL(bad, 0);
	return verdict(whole);
}

static void
run_table(const struct utf8_case *t, size_t nt, int expect)
{
	size_t i;
	int v;

	for (i = 0; i < nt; i++) {
		const uint8_t *s = (const uint8_t *)t[i].s;

		v = verdict_all_splits(s, t[i].n);
		if (v != expect)
			fprintf(stderr, "\n  case \"%s\": verdict %d, want %d",
			    t[i].name, v, expect);
		CU_ASSERT_EQUAL(v, expect);
		/* The reference agrees with the table, so exhaustive runs
		 * against it mean something. */
		CU_ASSERT_EQUAL(ref_validate(s, t[i].n), expect);
	}
}

static void
test_valid_table(void)
{
	run_table(valid_cases, NELEM(valid_cases), REF_ACCEPT);
}

static void
test_invalid_table(void)
{
	run_table(invalid_cases, NELEM(invalid_cases), REF_REJECT);
}

static void
test_partial_table(void)
{
	size_t i;

	run_table(partial_cases, NELEM(partial_cases), REF_PARTIAL);
	run_table(doomed_cases, NELEM(doomed_cases), REF_REJECT);

	/* A partial state completes to ACCEPT with the right bytes. */
	CU_ASSERT_EQUAL(utf8_validate(utf8_validate(UTF8_ACCEPT,
	    (const uint8_t *)"\xf0\x90", 2), (const uint8_t *)"\x80\x80", 2),
	    UTF8_ACCEPT);
	/* Partial states are distinct from both fixed states. */
	for (i = 0; i < NELEM(partial_cases); i++) {
		uint32_t st = utf8_validate(UTF8_ACCEPT,
		    (const uint8_t *)partial_cases[i].s, partial_cases[i].n);

		CU_ASSERT(st != UTF8_ACCEPT && st != UTF8_REJECT);
	}
}

static void
test_boundaries(void)
{
	static const uint32_t ok[] = { 0x0, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff,
		0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff };
	static const uint32_t surrogate[] = { 0xd800, 0xdbff, 0xdc00, 0xdfff };
	uint8_t b[4];
	size_t i, n;

	for (i = 0; i < NELEM(ok); i++) {
		n = encode_cp(ok[i], b);
		CU_ASSERT_EQUAL(verdict_all_splits(b, n), REF_ACCEPT);
	}
	for (i = 0; i < NELEM(surrogate); i++) {
		n = encode_cp(surrogate[i], b);
		CU_ASSERT_EQUAL(n, 3);
		CU_ASSERT_EQUAL(verdict_all_splits(b, n), REF_REJECT);
	}
	/* U+110000 written the only way it could be: F4 90 80 80. */
	n = encode_cp(0x110000, b);
	CU_ASSERT_EQUAL(n, 4);
	CU_ASSERT_EQUAL(b[0], 0xf4);
	CU_ASSERT_EQUAL(b[1], 0x90);
	CU_ASSERT_EQUAL(verdict_all_splits(b, n), REF_REJECT);
	/* The one-below-minimum of each length, written overlong. */
	CU_ASSERT_EQUAL(verdict_all_splits((const uint8_t *)"\xc1\xbf", 2),
	    REF_REJECT); /* U+007F */
	CU_ASSERT_EQUAL(verdict_all_splits((const uint8_t *)"\xe0\x9f\xbf",
	    3), REF_REJECT); /* U+07FF */
	CU_ASSERT_EQUAL(verdict_all_splits((const uint8_t *)"\xf0\x8f\xbf\xbf",
	    4), REF_REJECT); /* U+FFFF */
}

/* Every scalar value, whole and byte at a time; every proper prefix of a
 * non-surrogate is PARTIAL. */
static void
test_every_code_point(void)
{
	uint32_t cp, st;
	uint8_t b[4];
	size_t n, k;
	unsigned bad = 0;

	for (cp = 0; cp <= 0x10ffff; cp++) {
		int want = (cp >= 0xd800 && cp <= 0xdfff) ? REF_REJECT :
		    REF_ACCEPT;

		n = encode_cp(cp, b);
		if (verdict(utf8_validate(UTF8_ACCEPT, b, n)) != want)
			bad++;
		if (verdict(feed_bytewise(UTF8_ACCEPT, b, n)) != want)
			bad++;
		if (want == REF_ACCEPT) {
			for (k = 1; k < n; k++) {
				st = utf8_validate(UTF8_ACCEPT, b, k);
				if (verdict(st) != REF_PARTIAL)
					bad++;
			}
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
}

/* Every 1- and 2-byte string, and every 3- and 4-byte string over bytes
 * chosen at each class boundary, against the reference. */
static void
test_exhaustive_short(void)
{
	static const uint8_t pick[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90,
		0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec,
		0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf7, 0xf8,
		0xfb, 0xfc, 0xfd, 0xfe, 0xff };
	const size_t np = NELEM(pick);
	uint8_t s[4];
	unsigned i, j, k, l, bad = 0, runs = 0;

	for (i = 0; i < 256; i++) {
		s[0] = (uint8_t)i;
		if (verdict(utf8_validate(UTF8_ACCEPT, s, 1)) !=
		    ref_validate(s, 1))
			bad++;
		for (j = 0; j < 256; j++) {
			s[1] = (uint8_t)j;
			if (verdict(utf8_validate(UTF8_ACCEPT, s, 2)) !=
			    ref_validate(s, 2))
				bad++;
			if (verdict(feed_bytewise(UTF8_ACCEPT, s, 2)) !=
			    ref_validate(s, 2))
				bad++;
			runs++;
		}
	}
	for (i = 0; i < np; i++)
		for (j = 0; j < np; j++)
			for (k = 0; k < np; k++) {
				s[0] = pick[i];
				s[1] = pick[j];
				s[2] = pick[k];
				if (verdict(utf8_validate(UTF8_ACCEPT, s, 3)) !=
				    ref_validate(s, 3))
					bad++;
				for (l = 0; l < np; l++) {
					int want;

					s[3] = pick[l];
					want = ref_validate(s, 4);
					if (verdict(utf8_validate(UTF8_ACCEPT,
					    s, 4)) != want)
						bad++;
					if (verdict(feed_bytewise(UTF8_ACCEPT,
					    s, 4)) != want)
						bad++;
					runs++;
				}
			}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(runs > 900000);
}

/*
 * The eight-byte skip: put one interesting sequence at every position of an
 * ASCII buffer of len bytes, starting at every alignment, so it lands in
 * every lane of a word, straddles words, and sits in the byte-wise tail or
 * the overlapping last word.  Returns the wrong verdicts.
 */
static unsigned
ascii_lane_errors(const char *seq, size_t n, int want, size_t len)
{
	uint8_t buf[96];
	size_t pos, align;
	unsigned bad = 0;

	for (align = 0; align < 8; align++) {
		for (pos = 0; pos + n <= len; pos++) {
			uint8_t *p = buf + align;
			uint32_t st;

			memset(buf, 'a', sizeof(buf));
			memcpy(p + pos, seq, n);
			st = utf8_validate(UTF8_ACCEPT, p, len);
			/* A lone lead at the very end is partial. */
			if (n == 1 && seq[0] == '\xc3' && pos == len - 1) {
				if (verdict(st) != REF_PARTIAL)
					bad++;
				continue;
			}
			if (verdict(st) != want)
				bad++;
			if (verdict(st) != ref_validate(p, len))
				bad++;
		}
	}
	return bad;
}

static void
test_ascii_fast_path(void)
{
	static const struct {
		const char *seq;
		size_t n;
		int want;
	} ins[] = {
		{ "\xc3\xa9", 2, REF_ACCEPT },
		{ "\xe2\x82\xac", 3, REF_ACCEPT },
		{ "\xf0\x9f\x98\x80", 4, REF_ACCEPT },
		{ "\x80", 1, REF_REJECT },
		{ "\xff", 1, REF_REJECT },
		{ "\xc0\xaf", 2, REF_REJECT },
		{ "\xed\xa0\x80", 3, REF_REJECT },
		{ "\xc3", 1, REF_REJECT }, /* lead followed by ASCII */
	};
	/* Lengths around the word size: the last word is loaded
	 * overlapping the ones before it; and around each load the short
	 * reply's test (16 to 64 bytes) adds or leaves out. */
	static const size_t lens[] = { 1, 7, 8, 9, 13, 15, 16, 17, 23, 31, 32,
	    33, 47, 48, 49, 63, 64, 65, 71 };
	uint8_t buf[96];
	size_t i, l;
	unsigned bad = 0;

	for (l = 0; l < NELEM(lens); l++)
		for (i = 0; i < NELEM(ins); i++)
			bad += ascii_lane_errors(ins[i].seq, ins[i].n,
			    ins[i].want, lens[l]);
	CU_ASSERT_EQUAL(bad, 0);

	/* All 128 ASCII values, including DEL and NUL, stay on the fast
	 * path and are accepted. */
	for (i = 0; i < 128; i++)
		buf[i % sizeof(buf)] = (uint8_t)i;
	CU_ASSERT_EQUAL(utf8_validate(UTF8_ACCEPT, buf, sizeof(buf)),
	    UTF8_ACCEPT);

	/* Mid-sequence the fast path must not run: ASCII after a lead is an
	 * error however long it goes on. */
	memset(buf, 'a', sizeof(buf));
	CU_ASSERT_EQUAL(utf8_validate(utf8_validate(UTF8_ACCEPT,
	    (const uint8_t *)"\xe2", 1), buf, sizeof(buf)), UTF8_REJECT);
	/* And once the sequence completes, it resumes. */
	buf[0] = 0x82;
	buf[1] = 0xac;
	CU_ASSERT_EQUAL(utf8_validate(utf8_validate(UTF8_ACCEPT,
	    (const uint8_t *)"\xe2", 1), buf, sizeof(buf)), UTF8_ACCEPT);
	buf[sizeof(buf) - 1] = 0x80;
	CU_ASSERT_EQUAL(utf8_validate(utf8_validate(UTF8_ACCEPT,
	    (const uint8_t *)"\xe2", 1), buf, sizeof(buf)), UTF8_REJECT);
}

static void
test_sticky_reject(void)
{
	const uint8_t ok[] = "perfectly valid text, long enough for a word";

	CU_ASSERT_EQUAL(utf8_validate(UTF8_REJECT, ok, sizeof(ok) - 1),
	    UTF8_REJECT);
	CU_ASSERT_EQUAL(utf8_validate(UTF8_REJECT, ok, 1), UTF8_REJECT);
	CU_ASSERT_EQUAL(utf8_validate(UTF8_REJECT, NULL, 0), UTF8_REJECT);
	CU_ASSERT_EQUAL(utf8_validate(UTF8_ACCEPT, NULL, 0), UTF8_ACCEPT);
	CU_ASSERT_EQUAL(utf8_validate(utf8_validate(UTF8_ACCEPT,
	    (const uint8_t *)"\xff", 1), (const uint8_t *)"\xc3\xa9", 2),
	    UTF8_REJECT);
	/* A state that never came from the validator is not trusted. */
	CU_ASSERT_EQUAL(utf8_validate(0xdeadbeef, ok, 1), UTF8_REJECT);
}

/* One random test string: runs of ASCII, well-formed sequences, near misses
 * and raw bytes, so both verdicts turn up often. */
static size_t
random_string(uint8_t *s, size_t cap)
{
	size_t n = 0, want = rng() % 48, k;
	uint32_t cp;

	while (n < want && n + 6 <= cap) {
		switch (rng() % 8) {
		case 0:
		case 1:
			k = 1 + rng() % 12;
			while (k-- > 0 && n < cap)
				s[n++] = 0x20 + rng() % 0x5f;
			break;
		case 2:
			cp = rng() % 0x800;
			n += encode_cp(cp, s + n);
			break;
		case 3:
			cp = 0x800 + rng() % (0x10000 - 0x800);
			n += encode_cp(cp, s + n);
			break;
		case 4:
			cp = 0x10000 + rng() % 0x100000;
			n += encode_cp(cp, s + n);
			break;
		case 5: /* near misses around the edges */
			cp = (rng() % 2) ? 0xd7f0 + rng() % 0x20 :
			    0x10fff0 + rng() % 0x20;
			n += encode_cp(cp, s + n);
			break;
		case 6:
			s[n++] = 0x80 + rng() % 0x80;
			break;
		default:
			s[n++] = (uint8_t)rng();
			break;
		}
	}
	return n;
}

static void
test_iconv_differential(void)
{
	iconv_t cd;
	uint8_t in[64], outbuf[4 * sizeof(in) + 16];
	unsigned i, nvalid = 0, ninvalid = 0, npartial = 0;
	unsigned bad = 0;
	size_t k;

	cd = iconv_open("UTF-32LE", "UTF-8");
	CU_ASSERT_FATAL(cd != (iconv_t)-1);

	rng_seed(0x77737075676400ULL);
	for (i = 0; i < 5000; i++) {
		size_t n = random_string(in, sizeof(in));
		char *ip = (char *)in, *op = (char *)outbuf;
		size_t il = n, ol = sizeof(outbuf), r, taken;
		uint32_t st, pre;
		int err, ok;

		iconv(cd, NULL, NULL, NULL, NULL);
		errno = 0;
		r = iconv(cd, &ip, &il, &op, &ol);
		err = errno;
		taken = n - il;
		st = utf8_validate(UTF8_ACCEPT, in, n);
		/* What iconv got through is valid to us too. */
		pre = utf8_validate(UTF8_ACCEPT, in, taken);

		if (r != (size_t)-1) {
			nvalid++;
			ok = st == UTF8_ACCEPT;
		} else if (err == EILSEQ) {
			ninvalid++;
			ok = st == UTF8_REJECT && pre == UTF8_ACCEPT;
		} else if (err == EINVAL) {
			/* Input ended inside a sequence: never ACCEPT; the
			 * tail is what glibc would not judge. */
			npartial++;
			ok = st != UTF8_ACCEPT && pre == UTF8_ACCEPT &&
			    n - taken <= 5;
		} else
			ok = 0; /* E2BIG cannot happen with this buffer */
		/* The reference must agree on the same string. */
		if (ref_validate(in, n) != verdict(st))
			ok = 0;
		if (!ok && bad++ < 5) {
			fprintf(stderr, "\n  disagree (iconv errno %d, took "
			    "%zu, state %u):", r == (size_t)-1 ? err : 0,
			    taken, st);
			for (k = 0; k < n; k++)
				fprintf(stderr, " %02x", in[k]);
		}
	}
	iconv_close(cd);
	CU_ASSERT_EQUAL(bad, 0);
	/* The generator must exercise every outcome to prove anything. */
	CU_ASSERT(nvalid > 500);
	CU_ASSERT(ninvalid > 500);
	CU_ASSERT(npartial > 10);
	fprintf(stderr, "\n  iconv: %u valid, %u invalid, %u incomplete ",
	    nvalid, ninvalid, npartial);
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("utf8", NULL, NULL);
	if (s == NULL ||
	    CU_add_test(s, "valid table", test_valid_table) == NULL ||
	    CU_add_test(s, "invalid table", test_invalid_table) == NULL ||
	    CU_add_test(s, "truncated input", test_partial_table) == NULL ||
	    CU_add_test(s, "code point boundaries", test_boundaries) == NULL ||
	    CU_add_test(s, "every code point", test_every_code_point) ==
	    NULL ||
	    CU_add_test(s, "exhaustive short strings",
	    test_exhaustive_short) == NULL ||
	    CU_add_test(s, "ascii fast path", test_ascii_fast_path) == NULL ||
	    CU_add_test(s, "sticky reject", test_sticky_reject) == NULL ||
	    CU_add_test(s, "differential against iconv",
	    test_iconv_differential) == NULL) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
