/*
 * bus_frame.c: the frames a worker and its master exchange about the bus.
 *
 * With workers > 1 the local bus's store lives in the master (bus_local.c)
 * and each worker reaches it over a socketpair.  What crosses it is this
 * file's frame, one layout for every kind, so that one small parser (the
 * one a libFuzzer harness drives) reads them all:
 *
 *   u32 length of what follows (big-endian, at most BUS_FRAME_MAX)
 *   u8 type, u8 flags, u32 id, u64 n1, u64 n2
 *   u8 length + channel   (at most WSP_BUS_CHANNEL_MAX bytes)
 *   u8 length + conn id   (at most 32 bytes)
 *   u8 length + epoch     (at most WSP_BUS_EPOCH_MAX bytes)
 *   the payload: every remaining byte
 *
 * The short strings may not contain NUL (they are copied out as C
 * strings); the payload is borrowed from the caller's buffer.  Both ends
 * are this very binary, so the checks are there for a corrupted stream,
 * which is reported as bus.error, never trusted.  Sans-IO: no sockets,
 * no allocation.
 */
#include <string.h>

#include "wsplugd.h"

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)(v >> 32));
	put_u32(p + 4, (uint32_t)v);
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

static size_t
bus_frame_strings(const struct bus_frame *f)
{
	return 3 + strlen(f->channel) + strlen(f->conn) + strlen(f->epoch);
}

size_t
bus_frame_head_size(const struct bus_frame *f)
{
	return BUS_FRAME_PREFIX + BUS_FRAME_FIXED + bus_frame_strings(f);
}

static uint8_t *
put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	*p++ = (uint8_t)n;
	memcpy(p, s, n);
	return p + n;
}

size_t
bus_frame_encode_head(const struct bus_frame *f,
    uint8_t out[BUS_FRAME_HEAD_MAX])
{
	size_t head = bus_frame_head_size(f);
	uint8_t *p = out;

	put_u32(p, (uint32_t)(head - BUS_FRAME_PREFIX + f->len));
	p += 4;
	*p++ = f->type;
	*p++ = f->flags;
	put_u32(p, f->id);
	p += 4;
	put_u64(p, f->n1);
	p += 8;
	put_u64(p, f->n2);
	p += 8;
	p = put_str(p, f->channel);
	p = put_str(p, f->conn);
	put_str(p, f->epoch);
	return head;
}

int
bus_frame_length(const uint8_t prefix[BUS_FRAME_PREFIX], uint32_t *len_r)
{
	uint32_t n = get_u32(prefix);

	if (n < BUS_FRAME_FIXED + 3 || n > BUS_FRAME_MAX)
		return -1;
	*len_r = n;
	return 0;
}

/* A short string of at most max bytes into out (max + 1 bytes). */
static int
get_str(const uint8_t **p, const uint8_t *end, char *out, size_t max)
{
	size_t n;

	if (*p >= end)
		return -1;
	n = *(*p)++;
	if (n > max || (size_t)(end - *p) < n || memchr(*p, '\0', n) != NULL)
		return -1;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n;
	return 0;
}

int
bus_frame_decode(const uint8_t *buf, size_t len, struct bus_frame *f,
    const char **why_r)
{
	const uint8_t *p = buf, *end = buf + len;

	memset(f, 0, sizeof(*f));
	if (len < BUS_FRAME_FIXED + 3 || len > BUS_FRAME_MAX) {
		*why_r = "bad frame length";
		return -1;
	}
	f->type = *p++;
	f->flags = *p++;
	f->id = get_u32(p);
	p += 4;
	f->n1 = get_u64(p);
	p += 8;
	f->n2 = get_u64(p);
	p += 8;
	if (f->type == 0 || f->type >= BF_MAX) {
		*why_r = "unknown frame type";
		return -1;
	}
	if (get_str(&p, end, f->channel, WSP_BUS_CHANNEL_MAX) == -1 ||
	    get_str(&p, end, f->conn, BUS_CONN_ID_MAX) == -1 ||
	    get_str(&p, end, f->epoch, WSP_BUS_EPOCH_MAX) == -1) {
		*why_r = "bad string field";
		return -1;
	}
	f->data = (const char *)p;
	f->len = (size_t)(end - p);
	return 0;
}
