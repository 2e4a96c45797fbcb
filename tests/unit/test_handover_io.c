/*
 * test_handover_io.c: the hand-over's channel over a real socket pair:
 * frames with their descriptors, descriptors a frame may not carry, and
 * why a send failed when the other process has gone.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

static void
pair(int sv[2])
{
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC,
	    0, sv), 0);
	ho_set_timeout(sv[0], 2000);
	ho_set_timeout(sv[1], 2000);
}

static int
open_fds(void)
{
	int n = 0, fd;

	for (fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	return n;
}

/* A frame and its descriptors arrive together, the same files. */
static void
test_round_trip(void)
{
	struct ho_frame f;
	struct stat a, b;
	uint8_t *payload;
	const char *why = NULL;
	size_t n;
	int sv[2], fds[2], got[HO_BATCH_FDS];

	pair(sv);
	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[1] = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	CU_ASSERT_EQUAL(ho_send(sv[0], HO_T_LISTEN, "abc", 3, fds, 2), 0);
	CU_ASSERT_EQUAL(ho_send(sv[0], HO_T_READY, NULL, 0, NULL, 0), 0);
	CU_ASSERT_EQUAL_FATAL(ho_recv(sv[1], &f, &payload, got, HO_BATCH_FDS,
	    &n, &why), 0);
	CU_ASSERT_EQUAL(f.type, HO_T_LISTEN);
	CU_ASSERT_EQUAL(f.len, 3);
	CU_ASSERT(memcmp(payload, "abc", 3) == 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	fstat(fds[0], &a);
	fstat(got[0], &b);
	CU_ASSERT(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	CU_ASSERT(fcntl(got[0], F_GETFD) & FD_CLOEXEC);
	free(payload);
	ho_close_fds(got, n);
	/* the next frame carries none */
	CU_ASSERT_EQUAL(ho_recv_plain(sv[1], &f, &payload, &why), 0);
	CU_ASSERT_EQUAL(f.type, HO_T_READY);
	CU_ASSERT_PTR_NULL(payload);
	close(fds[0]);
	close(fds[1]);
	close(sv[0]);
	close(sv[1]);
}

/* More descriptors than the reader allows: refused, and none left open. */
static void
test_too_many_fds(void)
{
	struct ho_frame f;
	uint8_t *payload;
	const char *why = NULL;
	size_t n;
	int sv[2], fds[3], got[2], before;

	pair(sv);
	fds[0] = fds[1] = fds[2] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	before = open_fds();
	CU_ASSERT_EQUAL(ho_send(sv[0], HO_T_CONNS, "x", 1, fds, 3), 0);
	CU_ASSERT_EQUAL(ho_recv(sv[1], &f, &payload, got, 2, &n, &why), -1);
	CU_ASSERT_PTR_NOT_NULL(why);
	CU_ASSERT_PTR_NULL(payload);
	CU_ASSERT_EQUAL(open_fds(), before);
	close(fds[0]);
	close(sv[0]);
	close(sv[1]);
}

/*
 * The peer writes a frame of type said (0: none) and closes the channel
 * before we send: our send fails with EPIPE, and ho_why_gone answers with
 * what in buf.
 */
static const char *
gone(uint16_t said, const char *text, const char *what, char *buf,
    size_t size)
{
	const char *why;
	int sv[2];

	pair(sv);
	if (said != 0)
		CU_ASSERT_EQUAL(ho_send(sv[1], said, text, strlen(text), NULL,
		    0), 0);
	close(sv[1]);
	CU_ASSERT_EQUAL(ho_send(sv[0], HO_T_LISTEN, "abc", 3, NULL, 0), -1);
	CU_ASSERT_EQUAL(errno, EPIPE);
	why = ho_why_gone(sv[0], what, buf, size);
	close(sv[0]);
	return why;
}

/* The other process said FAIL and closed the channel before we wrote (a
 * new binary that refuses its configuration does not read the
 * listeners): the reason is what it said. */
static void
test_why_gone_said(void)
{
	const char *why;
	char buf[64];

	why = gone(HO_T_FAIL, "bad key", "cannot pass the listeners on", buf,
	    sizeof(buf));
	CU_ASSERT_STRING_EQUAL(why, "the new process refused: bad key");
	CU_ASSERT_PTR_EQUAL(why, buf);
}

/* Gone without a word, or with another frame: the caller's words. */
static void
test_why_gone_silent(void)
{
	char buf[64];

	CU_ASSERT_STRING_EQUAL(gone(0, "", "cannot pass the listeners on",
	    buf, sizeof(buf)), "cannot pass the listeners on");
	CU_ASSERT_STRING_EQUAL(gone(HO_T_READY, "", "cannot send the "
	    "counters", buf, sizeof(buf)), "cannot send the counters");
}

/* A peer that is there but does not read: the send times out, and
 * nothing is read (that would wait as long again). */
static void
test_why_gone_timeout(void)
{
	const char *why;
	char buf[64], *big;
	size_t len = 8 << 20;
	int sv[2];

	pair(sv);
	ho_set_timeout(sv[0], 50);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big = calloc(1, len));
	CU_ASSERT_EQUAL(ho_send(sv[0], HO_T_CONNS, big, len, NULL, 0), -1);
	why = ho_why_gone(sv[0], "cannot send the connections", buf,
	    sizeof(buf));
	CU_ASSERT_STRING_EQUAL(why, "timed out");
	free(big);
	close(sv[0]);
	close(sv[1]);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "a frame with its descriptors", test_round_trip },
		{ "too many descriptors are refused", test_too_many_fds },
		{ "the reason a gone process left", test_why_gone_said },
		{ "gone without a reason", test_why_gone_silent },
		{ "a send that timed out", test_why_gone_timeout },
	};

	return suite_run("handover_io", tests, nitems(tests));
}
