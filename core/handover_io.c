/*
 * handover_io.c: the hand-over's channel, a socket pair between the old
 * process and the new one (handover.c, handover_child.c).
 *
 * Frames (handover_state.c's header, then the payload) go over a stream
 * socket, the descriptors of a frame attached to its first byte with
 * SCM_RIGHTS: Linux hands them to the recvmsg() that reads that byte, so
 * reading exactly one header at a time keeps each frame's descriptors
 * with it.  Both ends are blocking with SO_RCVTIMEO and SO_SNDTIMEO set to
 * what is left of handover_timeout: the transfer runs in one go while the
 * old process's loop stands still, and a peer that stops answering costs
 * at most that.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wsplugd.h"

void
ho_set_timeout(int fd, uint64_t ms)
{
	struct timeval tv;

	if (ms == 0)
		ms = 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void
ho_close_fds(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* One frame, with nfds descriptors on its first byte.  -1 with errno. */
int
ho_send(int fd, uint16_t type, const void *payload, size_t len,
    const int *fds, size_t nfds)
{
	uint8_t hdr[HO_HDR_LEN];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * HO_BATCH_FDS)];
	} cm;
	struct iovec iov[2];
	struct msghdr mh;
	size_t off = 0, total = HO_HDR_LEN + len, skip;
	ssize_t n;
	int i;

	ho_frame_header(hdr, type, payload, len);
	while (off < total) {
		memset(&mh, 0, sizeof(mh));
		i = 0;
		if (off < HO_HDR_LEN) {
			iov[i].iov_base = hdr + off;
			iov[i++].iov_len = HO_HDR_LEN - off;
		}
		if (len > 0) {
			skip = off > HO_HDR_LEN ? off - HO_HDR_LEN : 0;
			iov[i].iov_base = (uint8_t *)payload + skip;
			iov[i++].iov_len = len - skip;
		}
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)i;
		if (off == 0 && nfds > 0) {
			memset(&cm, 0, sizeof(cm));
			mh.msg_control = cm.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm.h.cmsg_level = SOL_SOCKET;
			cm.h.cmsg_type = SCM_RIGHTS;
			cm.h.cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(&cm.h), fds, sizeof(int) * nfds);
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

static int
ho_read_full(int fd, uint8_t *p, size_t n, const char **why_r)
{
	ssize_t r;

	while (n > 0) {
		r = read(fd, p, n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			*why_r = r == 0 || errno == ECONNRESET ? "the other "
			    "process closed the channel" : errno == EAGAIN ?
			    "timed out" : strerror(errno);
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One frame: its header in f, its payload (malloc'd, checked against the
 * CRC) in *payload_r, the descriptors that came with it in fds (at most
 * maxfds: more is an error).  -1 with *why_r, nothing left open. */
int
ho_recv(int fd, struct ho_frame *f, uint8_t **payload_r, int *fds,
    size_t maxfds, size_t *nfds_r, const char **why_r)
{
	uint8_t hdr[HO_HDR_LEN], *payload = NULL;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * HO_BATCH_FDS)];
	} cm;
	struct cmsghdr *ch;
	struct iovec iov;
	struct msghdr mh;
	size_t got = 0, k, nfds = 0;
	ssize_t n;
	int extra[HO_BATCH_FDS], bad = 0;

	*payload_r = NULL;
	*nfds_r = 0;
	while (got < HO_HDR_LEN) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = hdr + got;
		iov.iov_len = HO_HDR_LEN - got;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			*why_r = n == 0 || errno == ECONNRESET ? "the other "
			    "process closed the channel" : errno == EAGAIN ?
			    "timed out" : strerror(errno);
			goto fail;
		}
		for (ch = CMSG_FIRSTHDR(&mh); ch != NULL;
		    ch = CMSG_NXTHDR(&mh, ch)) {
			if (ch->cmsg_level != SOL_SOCKET ||
			    ch->cmsg_type != SCM_RIGHTS)
				continue;
			k = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (k > HO_BATCH_FDS)
				k = HO_BATCH_FDS;
			memcpy(extra, CMSG_DATA(ch), k * sizeof(int));
			if (nfds + k > maxfds) {
				ho_close_fds(extra, k);
				bad = 1;
			} else {
				memcpy(fds + nfds, extra, k * sizeof(int));
				nfds += k;
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			bad = 1;
		got += (size_t)n;
	}
	if (bad) {
		*why_r = "more descriptors than the frame may carry";
		goto fail;
	}
	if (ho_frame_parse(hdr, f, why_r) == -1)
		goto fail;
	if (f->len > 0) {
		if ((payload = malloc(f->len)) == NULL) {
			*why_r = "out of memory";
			goto fail;
		}
		if (ho_read_full(fd, payload, f->len, why_r) == -1)
			goto fail;
	}
	if (ho_frame_verify(f, payload) == -1) {
		*why_r = "frame CRC mismatch";
		goto fail;
	}
	*payload_r = payload;
	*nfds_r = nfds;
	return 0;
fail:
	free(payload);
	ho_close_fds(fds, nfds);
	return -1;
}

/* A FAIL frame's reason as the old side logs it, at most 400 bytes of
 * the new process's text, in buf. */
const char *
ho_fail_text(const struct ho_frame *f, const uint8_t *payload, char *buf,
    size_t size)
{
	snprintf(buf, size, "the new process refused: %.*s",
	    (int)(f->len < 400 ? f->len : 400),
	    payload != NULL ? (const char *)payload : "");
	return buf;
}

/*
 * A send to the other process failed.  One that closed the channel (EPIPE)
 * may have said why before it went: a new process that refuses its
 * configuration writes FAIL and exits without reading the listeners, and
 * it can be done before the old process, slower (under valgrind, or
 * descheduled), has written them.  The FAIL is still in our receive queue;
 * with the peer gone, reading it cannot block.  Its reason in buf, else
 * what.
 */
const char *
ho_why_gone(int fd, const char *what, char *buf, size_t size)
{
	struct ho_frame f;
	uint8_t *payload;
	const char *why;
	size_t nfds;
	int fds[1];

	if (errno != EPIPE && errno != ECONNRESET)
		return errno == EAGAIN ? "timed out" : what;
	if (ho_recv(fd, &f, &payload, fds, 0, &nfds, &why) == -1)
		return what;
	if (f.type == HO_T_FAIL)
		what = ho_fail_text(&f, payload, buf, size);
	free(payload);
	return what;
}

void
ho_log_failed(const char *side, pid_t pid, const char *why)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_ERROR, "handover.failed")) == NULL)
		return;
	log_str(l, "side", side);
	log_int(l, "pid", pid);
	log_str(l, "why", why);
	if (strcmp(side, "old") == 0)
		log_str(l, "msg", "every connection stays with this process");
	log_end(l);
}

/* A frame that carries no descriptor: the master's and its workers' words. */
int
ho_recv_plain(int fd, struct ho_frame *f, uint8_t **payload_r,
    const char **why_r)
{
	size_t nfds;
	int fds[1];

	return ho_recv(fd, f, payload_r, fds, 0, &nfds, why_r);
}
