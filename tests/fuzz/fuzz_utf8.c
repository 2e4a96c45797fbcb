/*
 * fuzz_utf8.c: utf8_validate (core/utf8.c) against glibc's iconv.
 *
 * The independent decoder is iconv("UTF-8" -> "UTF-32LE").  glibc's
 * converter is strict where RFC 3629 is: it rejects surrogates (ED A0 80 ..
 * ED BF BF), every overlong form (C0 80, E0 80 80, F0 80 80 80, ...), code
 * points past U+10FFFF (F4 90 80 80 and the leads F5..FF), and lone or
 * surplus continuation bytes.  LLVMFuzzerInitialize() checks exactly that
 * on every start and aborts if a future libc changes its mind, so no class
 * needs a hand-written patch today; if one ever does, that is where it
 * shows.  Noncharacters (U+FFFE, U+FDD0) and NUL are valid in both.
 *
 * One thing glibc does differently, by design rather than as a bug: at the
 * very end of its input it reports any started sequence as incomplete
 * (EINVAL), even one that can no longer be completed (E0 80, ED A0, F4 90,
 * F5).  utf8_validate() rejects those at once.  So an EINVAL tail is
 * judged by asking iconv about completions of it: the tail is a true
 * prefix only if some completion converts.
 *
 * Oracles:
 *  1. verdicts agree: ACCEPT <-> iconv converts everything; REJECT <->
 *     iconv fails with EILSEQ or with an uncompletable tail; any other
 *     state <-> a completable tail;
 *  2. where it fails: the shortest rejected prefix ends inside the
 *     sequence iconv stopped at, and everything before that sequence is
 *     ACCEPT; a truncated input is ACCEPT up to the tail iconv left;
 *  3. splitting: fed one byte at a time, and split in two at every
 *     position (every 1/64th of the positions past 512 bytes), the final
 *     state equals the one-piece state; the one-piece run is repeated at
 *     eight alignments, since the ASCII fast path reads eight bytes at a
 *     time;
 *  4. utf8_char_len (used to repair text for logs, metrics labels and the
 *     admin JSON) at each of the first 64 positions, with the rest of the
 *     input and cut to 1..3 bytes: the length of iconv's first character,
 *     0 where iconv finds none, -1 exactly for a completable start cut
 *     short;
 *  5. robustness: REJECT is sticky, a state that did not come from the
 *     validator is REJECT, and n == 0 returns the state unchanged.
 * Every buffer handed to utf8_validate ends exactly where the data does,
 * so ASan catches a read past the end.
 */
#include <errno.h>
#include <iconv.h>
#include <stdint.h>

#include "wsplugd.h"
#include "fuzz.h"

static iconv_t cd;
static char *obuf;
static size_t obuf_size;

enum verdict { V_VALID, V_INVALID, V_TRUNC };

/* iconv on p[0..n): V_VALID, or the failure and where its sequence
 * starts; *einval_r tells an incomplete tail from an invalid sequence. */
static enum verdict
iconv_raw(const uint8_t *p, size_t n, size_t *stop_r, int *einval_r)
{
	char *ip = (char *)p, *op;
	size_t il = n, ol, r;

	if (obuf_size < 4 * n + 16) {
		free(obuf);
		obuf_size = 4 * n + 16;
		if ((obuf = malloc(obuf_size)) == NULL)
			abort();
	}
	op = obuf;
	ol = obuf_size;
	iconv(cd, NULL, NULL, NULL, NULL);
	errno = 0;
	r = iconv(cd, &ip, &il, &op, &ol);
	*stop_r = n - il;
	*einval_r = 0;
	if (r != (size_t)-1) {
		CHECK(il == 0, "iconv left %zu bytes without an error", il);
		return V_VALID;
	}
	CHECK(errno == EILSEQ || errno == EINVAL, "iconv errno %d", errno);
	*einval_r = errno == EINVAL;
	return V_INVALID;
}

/* Can the incomplete tail t[0..k) be completed into a valid character?
 * iconv is the judge: try every second byte when only the lead is there,
 * any continuation for the rest, and every total length up to four. */
static int
tail_completable(const uint8_t *t, size_t k)
{
	uint8_t s[4];
	size_t total, i, stop;
	unsigned b2;
	int einval;

	if (k == 0 || k > 3)
		return 0;
	for (total = k + 1; total <= 4; total++) {
		for (b2 = 0x80; b2 <= 0xbf; b2++) {
			memcpy(s, t, k);
			for (i = k; i < total; i++)
				s[i] = 0x80;
			if (k == 1)
				s[1] = (uint8_t)b2;
			if (iconv_raw(s, total, &stop, &einval) == V_VALID)
				return 1;
			if (k > 1)
				break; /* the second byte is given */
		}
	}
	return 0;
}

static enum verdict
iconv_verdict(const uint8_t *p, size_t n, size_t *stop_r)
{
	int einval;

	if (iconv_raw(p, n, stop_r, &einval) == V_VALID)
		return V_VALID;
	if (einval && tail_completable(p + *stop_r, n - *stop_r))
		return V_TRUNC;
	return V_INVALID;
}

/* The first character of p[0..n) by iconv: an output buffer with room for
 * exactly one code point makes it stop after that one (E2BIG). */
static enum verdict
iconv_first(const uint8_t *p, size_t n, size_t *len_r)
{
	char out[4], *ip = (char *)p, *op = out;
	size_t il = n, ol = sizeof(out), r;
	int e;

	iconv(cd, NULL, NULL, NULL, NULL);
	errno = 0;
	r = iconv(cd, &ip, &il, &op, &ol);
	e = errno;
	*len_r = n - il;
	if (*len_r > 0) {
		CHECK(ol == 0 && (r != (size_t)-1 || e == E2BIG || e == EILSEQ ||
		    e == EINVAL), "iconv wrote %zu bytes", sizeof(out) - ol);
		return V_VALID;
	}
	CHECK(r == (size_t)-1 && (e == EILSEQ || e == EINVAL),
	    "iconv converted nothing without an error (errno %d)", e);
	if (e == EINVAL && tail_completable(p, n))
		return V_TRUNC;
	return V_INVALID;
}

/* utf8_char_len (what log lines, metrics labels and the admin JSON use to
 * cut or repair text) against iconv's view of the first character. */
static void
check_char_len(const uint8_t *p, size_t n)
{
	uint8_t *b = fuzz_dup(p, n);
	size_t want_len;
	enum verdict v;
	int k;

	k = utf8_char_len(b, n);
	v = iconv_first(b, n < 4 ? n : 4, &want_len);
	switch (v) {
	case V_VALID:
		CHECK(k >= 1 && (size_t)k == want_len, "utf8_char_len %d, "
		    "iconv: a character of %zu bytes", k, want_len);
		break;
	case V_TRUNC:
		CHECK(k == -1 && n < 4, "utf8_char_len %d, iconv: a valid "
		    "start cut short at %zu bytes", k, n);
		break;
	case V_INVALID:
		CHECK(k == 0, "utf8_char_len %d, iconv: invalid (n %zu)", k, n);
		break;
	}
	free(b);
}

static void
iconv_expect(const char *what, const char *s, size_t n, enum verdict want)
{
	size_t stop;

	if (iconv_verdict((const uint8_t *)s, n, &stop) != want) {
		fprintf(stderr, "fuzz_utf8: glibc iconv does not treat %s as "
		    "expected; the oracle needs a patch for that class\n",
		    what);
		abort();
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if ((cd = iconv_open("UTF-32LE", "UTF-8")) == (iconv_t)-1) {
		perror("iconv_open");
		abort();
	}
	/* The classes RFC 3629 rules out, which a lax decoder lets by. */
	iconv_expect("a surrogate (ED A0 80)", "\xed\xa0\x80", 3, V_INVALID);
	iconv_expect("a surrogate (ED BF BF)", "\xed\xbf\xbf", 3, V_INVALID);
	iconv_expect("an overlong NUL (C0 80)", "\xc0\x80", 2, V_INVALID);
	iconv_expect("an overlong (C1 BF)", "\xc1\xbf", 2, V_INVALID);
	iconv_expect("an overlong (E0 9F BF)", "\xe0\x9f\xbf", 3, V_INVALID);
	iconv_expect("an overlong (F0 8F BF BF)", "\xf0\x8f\xbf\xbf", 4,
	    V_INVALID);
	iconv_expect("U+110000 (F4 90 80 80)", "\xf4\x90\x80\x80", 4,
	    V_INVALID);
	iconv_expect("a lead F5", "\xf5\x80\x80\x80", 4, V_INVALID);
	iconv_expect("a 5-byte form", "\xf8\x88\x80\x80\x80", 5, V_INVALID);
	iconv_expect("a lone continuation", "\x80", 1, V_INVALID);
	/* and what it must accept */
	iconv_expect("U+10FFFF", "\xf4\x8f\xbf\xbf", 4, V_VALID);
	iconv_expect("U+FFFE", "\xef\xbf\xbe", 3, V_VALID);
	iconv_expect("U+D7FF", "\xed\x9f\xbf", 3, V_VALID);
	iconv_expect("U+E000", "\xee\x80\x80", 3, V_VALID);
	iconv_expect("NUL", "\0", 1, V_VALID);
	iconv_expect("a truncated euro sign", "\xe2\x82", 2, V_TRUNC);
	iconv_expect("an uncompletable tail (E0 80)", "\xe0\x80", 2,
	    V_INVALID);
	return 0;
}

static uint32_t
validate_copy(uint32_t state, const uint8_t *p, size_t n, size_t align)
{
	uint8_t *b = malloc(n + align);
	uint32_t r;

	if (b == NULL)
		abort();
	if (n > 0)
		memcpy(b + align, p, n);
	r = utf8_validate(state, b + align, n);
	free(b);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = fuzz_dup(data, size);
	uint32_t whole, st, junk;
	size_t i, k, stop, lo, hi, step;
	enum verdict v;

	whole = utf8_validate(UTF8_ACCEPT, p, size);

	/* 1, 2: against iconv */
	v = iconv_verdict(p, size, &stop);
	switch (v) {
	case V_VALID:
		CHECK(whole == UTF8_ACCEPT, "iconv accepts %zu bytes, "
		    "utf8_validate says state %u", size, whole);
		break;
	case V_TRUNC:
		CHECK(whole != UTF8_ACCEPT && whole != UTF8_REJECT,
		    "iconv: valid but truncated at %zu of %zu, utf8_validate "
		    "says state %u", stop, size, whole);
		CHECK(utf8_validate(UTF8_ACCEPT, p, stop) == UTF8_ACCEPT,
		    "the part before the incomplete tail (%zu bytes) is not "
		    "ACCEPT", stop);
		break;
	case V_INVALID:
		CHECK(whole == UTF8_REJECT, "iconv rejects at byte %zu of "
		    "%zu, utf8_validate says state %u", stop, size, whole);
		CHECK(utf8_validate(UTF8_ACCEPT, p, stop) == UTF8_ACCEPT,
		    "iconv converted the first %zu bytes, utf8_validate does "
		    "not accept them", stop);
		/* the shortest rejected prefix: REJECT is sticky, so
		 * the prefixes' verdicts are monotone */
		lo = 1;
		hi = size;
		while (lo < hi) {
			k = lo + (hi - lo) / 2;
			if (utf8_validate(UTF8_ACCEPT, p, k) == UTF8_REJECT)
				hi = k;
			else
				lo = k + 1;
		}
		CHECK(lo > stop && lo <= stop + 4, "utf8_validate first "
		    "rejects at byte %zu, iconv's bad sequence starts at %zu",
		    lo - 1, stop);
		break;
	}

	/* 3: alignment and splits */
	for (i = 1; i < 8; i++)
		CHECK(validate_copy(UTF8_ACCEPT, p, size, i) == whole,
		    "state differs at alignment %zu", i);
	st = UTF8_ACCEPT;
	for (i = 0; i < size; i++)
		st = validate_copy(st, p + i, 1, 0);
	CHECK(st == whole, "byte at a time: state %u, one piece: %u", st,
	    whole);
	step = size <= 512 ? 1 : size / 64;
	for (k = 0; k <= size; k += step) {
		st = validate_copy(UTF8_ACCEPT, p, k, k & 7);
		st = validate_copy(st, p + k, size - k, 0);
		CHECK(st == whole, "split at %zu: state %u, one piece: %u", k,
		    st, whole);
	}

	/* 4: utf8_char_len at the first positions, whole and cut short */
	for (i = 0; i < size && i < 64; i++) {
		check_char_len(p + i, size - i);
		k = size - i - 1; /* shorter than the rest: 1..3 bytes */
		if (k > 0)
			check_char_len(p + i, 1 + i % (k < 3 ? k : 3));
	}

	/* 5: states */
	CHECK(utf8_validate(UTF8_REJECT, p, size) == UTF8_REJECT,
	    "REJECT is not sticky");
	CHECK(utf8_validate(whole, NULL, 0) == whole, "n == 0 changed the "
	    "state");
	junk = 0xff;
	if (size >= 4)
		memcpy(&junk, p, 4);
	if (junk >= 16) /* far past the real states, whatever they are */
		CHECK(utf8_validate(junk, p, size) == UTF8_REJECT,
		    "state %u from nowhere was not treated as REJECT", junk);

	free(p);
	return 0;
}
