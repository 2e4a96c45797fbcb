/*
 * test_listen.c: the listening sockets of listen.c, on loopback with real
 * clients and the shared in-memory server's event loop: a listener hands
 * on_accept one connection each turn of the loop, the rest of a queue on
 * the turns after, with the peer's address and the listener's tls flag;
 * a paused listener takes none; a closed one is gone; and a failing
 * on_accept costs only that connection.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <event2/event.h>

#include "fake.h"
#include "suite.h"

#define MAX_ACCEPTED 16

static int accepted[MAX_ACCEPTED];
static size_t naccepted;
static int last_tls = -1;
static struct sockaddr_in last_peer;
static int fail_next; /* on_accept answers -1 once, as out of memory */

static int
count_accept(struct wsp_server *srv, int fd, const struct sockaddr *sa,
    socklen_t salen, int tls)
{
	(void)srv;
	if (fail_next) {
		fail_next = 0;
		return -1; /* listen.c closes fd */
	}
	CU_ASSERT_FATAL(naccepted < MAX_ACCEPTED);
	CU_ASSERT_EQUAL(salen, sizeof(struct sockaddr_in));
	memcpy(&last_peer, sa, sizeof(last_peer));
	last_tls = tls;
	accepted[naccepted++] = fd;
	return 0;
}

/* After a test: what on_accept took, and every listener, closed. */
static void
tidy(void)
{
	while (naccepted > 0)
		close(accepted[--naccepted]);
	listen_close_all(&fake_srv.listeners);
}

/* One turn of the loop, waiting for nothing. */
static void
turn(void)
{
	event_base_loop(fake_srv.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* A listener on 127.0.0.1 with a kernel-picked port; its port. */
static in_port_t
open_listener(int tls)
{
	struct wsp_listen_addr a;
	struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
	struct wsp_errors errs = { 0 };
	struct listener *li;
	struct sockaddr_in bound;
	socklen_t len = sizeof(bound);

	memset(&a, 0, sizeof(a));
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sslen = sizeof(*in);
	a.text = "127.0.0.1:0";
	a.line = 1;
	a.tls = tls;
	CU_ASSERT_EQUAL_FATAL(listen_open(&fake_srv, &fake_cfg, &a,
	    &fake_srv.listeners, &errs), 0);
	CU_ASSERT_EQUAL(errs.n, 0);
	li = TAILQ_LAST(&fake_srv.listeners, listener_list);
	CU_ASSERT_FATAL(getsockname(li->fd, (struct sockaddr *)&bound,
	    &len) == 0);
	return bound.sin_port;
}

/* A client connected to port (the kernel completes the handshake into
 * the listener's queue); its own port in *own when own is not NULL. */
static int
client(in_port_t port, in_port_t *own)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = port };
	struct sockaddr_in me;
	socklen_t len = sizeof(me);
	int fd;

	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL((fd = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0);
	if (own != NULL) {
		CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&me,
		    &len) == 0);
		*own = me.sin_port;
	}
	return fd;
}

static void
test_one_connection_a_turn(void)
{
	in_port_t port = open_listener(1), own;
	int c[3], i;

	for (i = 0; i < 3; i++)
		c[i] = client(port, i == 0 ? &own : NULL);
	/* The queue holds three; each turn takes the oldest. */
	for (i = 1; i <= 3; i++) {
		turn();
		CU_ASSERT_EQUAL(naccepted, (size_t)i);
		if (i == 1) {
			CU_ASSERT_EQUAL(last_peer.sin_family, AF_INET);
			CU_ASSERT_EQUAL(last_peer.sin_port, own);
			CU_ASSERT_EQUAL(ntohl(last_peer.sin_addr.s_addr),
			    INADDR_LOOPBACK);
			CU_ASSERT_EQUAL(last_tls, 1);
		}
	}
	/* An empty queue: a turn accepts nothing. */
	turn();
	CU_ASSERT_EQUAL(naccepted, 3);
	/* What on_accept is handed is non-blocking and close-on-exec. */
	CU_ASSERT(fcntl(accepted[0], F_GETFL) & O_NONBLOCK);
	CU_ASSERT(fcntl(accepted[0], F_GETFD) & FD_CLOEXEC);
	for (i = 0; i < 3; i++)
		close(c[i]);
	tidy();
}

static void
test_paused_takes_none(void)
{
	in_port_t port = open_listener(0);
	int c;

	listen_pause(&fake_srv, 1);
	c = client(port, NULL);
	turn();
	turn();
	CU_ASSERT_EQUAL(naccepted, 0);
	listen_pause(&fake_srv, 0);
	turn();
	CU_ASSERT_EQUAL(naccepted, 1);
	CU_ASSERT_EQUAL(last_tls, 0);
	close(c);
	tidy();
}

static void
test_failed_hand_on_costs_one(void)
{
	in_port_t port = open_listener(0);
	char b;
	int c1, c2;

	c1 = client(port, NULL);
	c2 = client(port, NULL);
	fail_next = 1;
	turn();
	CU_ASSERT_EQUAL(naccepted, 0);
	/* The first was closed, not leaked: its client reads the end. */
	CU_ASSERT_EQUAL(recv(c1, &b, 1, 0), 0);
	turn();
	CU_ASSERT_EQUAL(naccepted, 1);
	close(c1);
	close(c2);
	tidy();
}

static void
test_closed_refuses(void)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	int fd;

	to.sin_port = open_listener(0);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listen_close_all(&fake_srv.listeners);
	CU_ASSERT(TAILQ_EMPTY(&fake_srv.listeners));
	CU_ASSERT_FATAL((fd = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	CU_ASSERT_EQUAL(connect(fd, (struct sockaddr *)&to, sizeof(to)), -1);
	CU_ASSERT_EQUAL(errno, ECONNREFUSED);
	close(fd);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "one connection a turn, with its address and tls flag",
		    test_one_connection_a_turn },
		{ "a paused listener takes none until resumed",
		    test_paused_takes_none },
		{ "on_accept failing costs that connection only",
		    test_failed_hand_on_costs_one },
		{ "a closed listener refuses", test_closed_refuses },
	};
	int rc;

	if (fake_init() == -1)
		return 1;
	fake_srv.on_accept = count_accept;
	rc = suite_run("listen", tests, nitems(tests));
	fake_fini();
	return rc;
}
