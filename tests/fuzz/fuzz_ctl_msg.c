/*
 * fuzz_ctl_msg.c: the messages on a worker's control socket
 * (core/ctl_msg.c).
 *
 * The input is a byte stream as a socket would deliver it; each side's
 * letters are tried on it (the master's, then a worker's), cutting
 * messages the way workers.c does.  Oracles:
 *
 *  1. a length is never more than what is there, and a known letter's is
 *     its fixed size (R: the header and its len, at most CTL_R_MAX);
 *  2. a message's length does not depend on what follows it: cut exactly
 *     there it is the same, one byte shorter it is incomplete (0);
 *  3. a letter of the other side is refused (-1), never cut;
 *  4. the input is not written to, nor read past (an exact-size copy).
 */
#include "wsplugd.h"
#include "fuzz.h"

static void
cut(const uint8_t *buf, size_t size, const char *kinds, const char *other)
{
	size_t off = 0, fixed;
	ssize_t n;

	while (off < size) {
		n = ctl_msg_len(buf + off, size - off, kinds);
		if (n <= 0) {
			if (n == -1 && strchr(other, buf[off]) != NULL &&
			    strchr(kinds, buf[off]) == NULL)
				break; /* 3: the other side's letter */
			CHECK(n == 0 || buf[off] == '\0' ||
			    strchr(kinds, buf[off]) == NULL ||
			    (buf[off] == 'R' && size - off >= CTL_R_LEN &&
			    ctl_get32(buf + off + 17) > CTL_R_MAX),
			    "a known letter %c refused", buf[off]);
			break;
		}
		CHECK((size_t)n <= size - off, "length %zd past the input", n);
		switch (buf[off]) {
		case 'G': fixed = CTL_G_LEN; break;
		case 'L': fixed = CTL_L_LEN; break;
		case 'X': fixed = CTL_X_LEN; break;
		case 'R':
			fixed = CTL_R_LEN + ctl_get32(buf + off + 17);
			CHECK(fixed - CTL_R_LEN <= CTL_R_MAX, "len past max");
			break;
		default: fixed = 1; break;
		}
		CHECK((size_t)n == fixed, "%c: %zd, not %zu", buf[off], n, fixed);
		CHECK(ctl_msg_len(buf + off, (size_t)n, kinds) == n,
		    "the length depends on what follows");
		CHECK(ctl_msg_len(buf + off, (size_t)n - 1, kinds) == 0,
		    "complete one byte short");
		off += (size_t)n;
	}
	CHECK(ctl_msg_len(buf, 0, kinds) == 0, "nothing is not incomplete");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = fuzz_dup(data, size), *orig = fuzz_dup(data, size);

	cut(buf, size, CTL_TO_MASTER, CTL_TO_WORKER);
	cut(buf, size, CTL_TO_WORKER, CTL_TO_MASTER);
	CHECK(memcmp(buf, orig, size) == 0, "the input was written to");
	free(buf);
	free(orig);
	return 0;
}
