/*
 * fuzz.h: what every harness in tests/fuzz shares.
 *
 * An oracle failure is a crash to libFuzzer: CHECK prints what was expected
 * and aborts, so the input is saved as a crash-* artifact like any
 * sanitizer report.
 */
#ifndef WSPLUGD_FUZZ_H
#define WSPLUGD_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr, "%s:%d: oracle failed: %s\n  ",   \
			    __FILE__, __LINE__, #cond);                   \
			fprintf(stderr, __VA_ARGS__);                     \
			fputc('\n', stderr);                              \
			abort();                                          \
		}                                                         \
	} while (0)

/* An exact-size heap copy, so ASan reports the first byte read past it.
 * malloc(0) is never NULL under ASan, which keeps "no bytes" a valid
 * pointer. */
static inline unsigned char *
fuzz_dup(const void *p, size_t n)
{
	unsigned char *d = malloc(n);

	if (d == NULL)
		abort();
	if (n > 0)
		memcpy(d, p, n);
	return d;
}

/* Pulls bytes off the fuzz input; past its end every read is 0. */
struct fuzz_in {
	const unsigned char *p;
	size_t n;
};

static inline unsigned
fuzz_byte(struct fuzz_in *in)
{
	unsigned b;

	if (in->n == 0)
		return 0;
	b = *in->p++;
	in->n--;
	return b;
}

/* xorshift: split sizes and the like, seeded from the input. */
static inline uint32_t
fuzz_rand(uint32_t *s)
{
	uint32_t x = *s ? *s : 0x9e3779b9u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif /* WSPLUGD_FUZZ_H */
