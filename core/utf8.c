/*
 * utf8.c: incremental, strict UTF-8 validation.
 *
 * RFC 6455 requires a text message, and the reason in a close frame, to be
 * valid UTF-8, and a server that waits for the whole message before looking
 * would have to buffer it.  So validation is a small state machine that is
 * fed each chunk as it is unmasked and carries its state across chunks and
 * across fragments; a bad byte fails the connection the moment it arrives.
 *
 * "Valid" is RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF),
 * nothing above U+10FFFF.  The machine classifies each byte, then moves
 * through nine states that remember exactly how many continuation bytes are
 * still owed and, right after the leads E0, ED, F0 and F4, the narrower range
 * the next byte must fall in; that narrowing is what rules out overlongs,
 * surrogates and code points past U+10FFFF without ever decoding a code point.
 *
 * This runs on every byte of every text message, and most text is ASCII, so
 * while no sequence is open it skips sixteen bytes at a time (SSE2's
 * unaligned load) or eight (a word) whose high bits are all clear.  The
 * word is loaded with memcpy: the payload sits at any offset inside a
 * network buffer, and a cast would be an unaligned access.
 */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "wsplugd.h"

/* Byte classes.  Continuation bytes are split three ways because the leads
 * E0, ED, F0 and F4 each admit only part of 80..BF as their next byte. */
enum {
	C_ASCII, /* 00..7F */
	C_C80,   /* 80..8F continuation */
	C_C90,   /* 90..9F continuation */
	C_CA0,   /* A0..BF continuation */
	C_BAD,   /* C0, C1 (always overlong), F5..FF (beyond U+10FFFF) */
	C_L2,    /* C2..DF */
	C_E0,    /* E0: next A0..BF, else overlong */
	C_L3,    /* E1..EC, EE, EF */
	C_ED,    /* ED: next 80..9F, else a surrogate */
	C_F0,    /* F0: next 90..BF, else overlong */
	C_L4,    /* F1..F3 */
	C_F4,    /* F4: next 80..8F, else beyond U+10FFFF */
	NCLASS
};

/* States beyond the two the header fixes, named by how many continuation
 * bytes are owed; A and B mark a first byte narrower than 80..BF. */
enum {
	S0 = UTF8_ACCEPT,
	SX = UTF8_REJECT,
	S1,  /* one more, 80..BF */
	S2,  /* two, the first 80..BF */
	S2A, /* two, the first A0..BF (after E0) */
	S2B, /* two, the first 80..9F (after ED) */
	S3,  /* three, the first 80..BF */
	S3A, /* three, the first 90..BF (after F0) */
	S3B, /* three, the first 80..8F (after F4) */
	NSTATE
};

#define R16(c) c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c

static const uint8_t utf8_class[256] = {
	/* 00..7F */
	R16(C_ASCII), R16(C_ASCII), R16(C_ASCII), R16(C_ASCII),
	R16(C_ASCII), R16(C_ASCII), R16(C_ASCII), R16(C_ASCII),
	/* 80..BF */
	R16(C_C80), R16(C_C90), R16(C_CA0), R16(C_CA0),
	/* C0..DF */
	C_BAD, C_BAD, C_L2, C_L2, C_L2, C_L2, C_L2, C_L2,
	C_L2, C_L2, C_L2, C_L2, C_L2, C_L2, C_L2, C_L2,
	R16(C_L2),
	/* E0..EF */
	C_E0, C_L3, C_L3, C_L3, C_L3, C_L3, C_L3, C_L3,
	C_L3, C_L3, C_L3, C_L3, C_L3, C_ED, C_L3, C_L3,
	/* F0..FF */
	C_F0, C_L4, C_L4, C_L4, C_F4, C_BAD, C_BAD, C_BAD,
	C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD,
};

#undef R16

/* Next state by current state and byte class: a full grid rather than a
 * list of exceptions, so a wrong cell is visible at a glance. */
static const uint8_t utf8_next[NSTATE][NCLASS] = {
	/*      ASCII C80  C90  CA0  BAD  L2   E0   L3   ED   F0   L4   F4 */
	[S0]  = { S0,  SX,  SX,  SX,  SX,  S1,  S2A, S2,  S2B, S3A, S3,  S3B },
	[SX]  = { SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
	[S1]  = { SX,  S0,  S0,  S0,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
	[S2]  = { SX,  S1,  S1,  S1,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
	[S2A] = { SX,  SX,  SX,  S1,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
	[S2B] = { SX,  S1,  S1,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
	[S3]  = { SX,  S2,  S2,  S2,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
	[S3A] = { SX,  SX,  S2,  S2,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
	[S3B] = { SX,  S2,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX,  SX },
};

#define HIGH_BITS 0x8080808080808080ULL

uint32_t
utf8_validate(uint32_t state, const uint8_t *p, size_t n)
{
	const uint8_t *end;
	uint64_t w;

	/* A state that did not come from here is treated as the sticky
	 * failure rather than used to index past the table. */
	if (state >= NSTATE)
		return UTF8_REJECT;
	if (n == 0)
		return state; /* p may be NULL */
	end = p + n;
#ifdef __SSE2__
	/* A short reply (a pong, an ack: 16 to 64 bytes) in at most four
	 * overlapping loads and one test when it is all ASCII, where the
	 * loop below tests a block at a time. */
	if (state == S0 && n >= 16 && n <= 64) {
		__m128i v = _mm_or_si128(
		    _mm_loadu_si128((const __m128i *)(const void *)p),
		    _mm_loadu_si128((const __m128i *)(const void *)(end - 16)));

		if (n > 32)
			v = _mm_or_si128(v, _mm_loadu_si128(
			    (const __m128i *)(const void *)(p + 16)));
		if (n > 48)
			v = _mm_or_si128(v, _mm_loadu_si128(
			    (const __m128i *)(const void *)(p + 32)));
		if (!_mm_movemask_epi8(v))
			return S0;
	}
#endif

	while (p < end) {
		if (state == S0 && *p < 0x80) {
			/* Only worth a wide load when this byte is ASCII:
			 * in text that is mostly multibyte it rarely pays.
			 * Sixteen bytes a step where SSE2 is (every x86-64),
			 * eight elsewhere. */
#ifdef __SSE2__
			while ((size_t)(end - p) >= 16 && !_mm_movemask_epi8(
			    _mm_loadu_si128((const __m128i *)(const void *)p)))
				p += 16;
			if (end - p < 16 && n >= 16 &&
			    !_mm_movemask_epi8(_mm_loadu_si128(
			    (const __m128i *)(const void *)(end - 16))))
				break;
#endif
			while ((size_t)(end - p) >= 8) {
				memcpy(&w, p, sizeof(w));
				if (w & HIGH_BITS)
					break;
				p += 8;
			}
			/* Fewer than eight left: the text's last eight bytes
			 * in one load (overlapping bytes already checked)
			 * say whether the rest is ASCII, where a byte loop
			 * cost a short message (a pong) more than its words
			 * did.  If any is not, the loop below finds which.
			 * The sixteen-byte tail above does the same. */
			if (end - p < 8 && n >= 8) {
				memcpy(&w, end - 8, sizeof(w));
				if (!(w & HIGH_BITS))
					break;
			}
			while (p < end && *p < 0x80)
				p++;
			if (p == end)
				break;
		}
		state = utf8_next[state][utf8_class[*p++]];
		if (state == SX)
			break;
	}
	return state;
}

/*
 * For code that must emit valid UTF-8 whatever it was given (log lines,
 * the admin listener's JSON and label values): the length of the
 * character at p.  1..4 when the bytes there are a valid character; 0
 * when they are not (the caller replaces one byte and goes on); -1 when
 * they are a valid start that n cuts short, as a value capped to a byte
 * length leaves at its end (the caller drops the rest).  n must be > 0.
 */
int
utf8_char_len(const uint8_t *p, size_t n)
{
	uint32_t state = UTF8_ACCEPT;
	size_t i;

	for (i = 0; i < n && i < 4; i++) {
		state = utf8_validate(state, p + i, 1);
		if (state == UTF8_ACCEPT)
			return (int)i + 1;
		if (state == UTF8_REJECT)
			return 0;
	}
	return -1;
}

long
utf8_hex4(const unsigned char *p, const unsigned char *end)
{
	long v = 0;
	int i;

	if (end - p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		v <<= 4;
		if (p[i] >= '0' && p[i] <= '9')
			v |= p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			v |= p[i] - 'a' + 10;
		else if (p[i] >= 'A' && p[i] <= 'F')
			v |= p[i] - 'A' + 10;
		else
			return -1;
	}
	return v;
}
