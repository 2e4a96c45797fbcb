/*
 * ctl_msg.c: the messages on a worker's control socket (workers.c).
 *
 * One byte each for a reload: the master says P (prepare), C (commit) or
 * A (abort), a worker answers a P with p or f.  /connections adds four
 * messages with fixed big-endian fields after their letter:
 *
 *   G id limit                 a worker asks for everyone's connections
 *   L from id limit            the master asks another worker for its own
 *   X worker id                the master: that worker is not running
 *   R who id active(u64) len   the lines, len bytes after the header: who
 *                              is `from` on the way to the master, the
 *                              answering worker on the way back
 *
 * Each side reads a stream and cuts whole messages from it with
 * ctl_msg_len, given the letters it may receive; a length past CTL_R_MAX
 * or an unknown letter is an error (both ends are this binary: the stream
 * is corrupted, and nothing in it is trusted).  Sans-IO, no allocation.
 */
#include <string.h>

#include "wsplugd.h"

void
ctl_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint32_t
ctl_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

void
ctl_put_r(uint8_t h[CTL_R_LEN], uint32_t who, uint32_t id, uint64_t active,
    uint32_t len)
{
	h[0] = 'R';
	ctl_put32(h + 1, who);
	ctl_put32(h + 5, id);
	ctl_put32(h + 9, (uint32_t)(active >> 32));
	ctl_put32(h + 13, (uint32_t)active);
	ctl_put32(h + 17, len);
}

ssize_t
ctl_msg_len(const uint8_t *p, size_t have, const char *kinds)
{
	size_t need;
	uint32_t len;

	if (have == 0)
		return 0;
	if (p[0] == '\0' || strchr(kinds, p[0]) == NULL)
		return -1;
	switch (p[0]) {
	case 'G':
		need = CTL_G_LEN;
		break;
	case 'L':
		need = CTL_L_LEN;
		break;
	case 'X':
		need = CTL_X_LEN;
		break;
	case 'R':
		if (have < CTL_R_LEN)
			return 0;
		if ((len = ctl_get32(p + 17)) > CTL_R_MAX)
			return -1;
		need = CTL_R_LEN + (size_t)len;
		break;
	default:
		need = 1;
		break;
	}
	return have >= need ? (ssize_t)need : 0;
}
