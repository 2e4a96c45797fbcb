/*
 * fdlimit.c: what both listeners do when accept() fails.
 *
 * At the descriptor limit a listening socket stays readable while every
 * accept() fails, so a listener that only logs spins a core and floods its
 * log, and the clients waiting in the kernel's queue never hear why.  The
 * WebSocket listeners (listen.c) and the admin listener (admin.c) hand
 * their accept errors here, and handle them the same way:
 *
 *  - at EMFILE or ENFILE, the descriptor kept in reserve (/dev/null, opened
 *    at start-up) is given up to accept the waiting clients one at a time:
 *    each is answered 503 and closed, and the reserve is taken back.  A
 *    client over the limit learns so at once, and its socket is gone from
 *    the queue;
 *  - whatever the error, the caller pauses that listener for a moment
 *    (FDLIMIT_PAUSE_MS) before it tries again, so a lasting error costs a
 *    few wake-ups a second, not a core;
 *  - the errors are logged through the daemon's log at most once a second,
 *    each line counting the errors it stands for and the clients refused.
 *
 * The reserve belongs to the process, as the descriptor table it guards
 * does, so it and the log's rate limit are file-scope state; the daemon is
 * single-threaded.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "wsplugd.h"

/* Clients refused per error callback: the queue is drained between two
 * pauses without one callback holding the loop for long. */
#define FDLIMIT_REFUSE_MAX 256
#define FDLIMIT_DRAIN_MAX (64 * 1024) /* bytes read before the close */
#define FDLIMIT_LOG_MS 1000

static struct {
	int reserve;
	uint64_t logged_ms;     /* when the last line was written; 0 never */
	uint64_t suppressed;    /* errors since, not logged */
	uint64_t refused;       /* clients answered 503 since */
} F = { .reserve = -1 };

int
fdlimit_init(void)
{
	if (F.reserve == -1)
		F.reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return F.reserve == -1 ? -1 : 0;
}

void
fdlimit_fini(void)
{
	if (F.reserve != -1)
		close(F.reserve);
	F.reserve = -1;
}

/* Answer, send our FIN, and read what the client sent before closing: a
 * close with unread data would be a reset, which can destroy the answer
 * before the client reads it.  conn.c refuses a client over a connection
 * limit this way too, so that a refusal keeps no descriptor. */
void
fdlimit_refuse(int fd, int status, unsigned retry_after_s, const char *why)
{
	struct evbuffer *b;
	char sink[4096];
	size_t drained = 0;
	ssize_t n;

	if (status != 0 && (b = evbuffer_new()) != NULL) {
		if (retry_after_s != 0)
			http_response_retry(b, status, why, retry_after_s);
		else
			http_response_error(b, status, why);
		evbuffer_write(b, fd);
		evbuffer_free(b);
	}
	shutdown(fd, SHUT_WR);
	while (drained < FDLIMIT_DRAIN_MAX &&
	    (n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
		drained += (size_t)n;
	close(fd);
}

void
fdlimit_accept_error(int lfd, const char *addr, int err)
{
	struct log_line *l;
	uint64_t now = clock_mono_ms();
	int fd, i;

	if ((err == EMFILE || err == ENFILE) && F.reserve != -1) {
		close(F.reserve);
		for (i = 0; i < FDLIMIT_REFUSE_MAX; i++) {
			fd = accept4(lfd, NULL, NULL,
			    SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd == -1)
				break;
			fdlimit_refuse(fd, 503, 0, "the server is at its "
			    "open-file limit");
			F.refused++;
		}
		/* The slot just freed is ours again: nothing else runs in
		 * between.  Should it fail, accepting goes on without. */
		F.reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (F.logged_ms != 0 && now - F.logged_ms < FDLIMIT_LOG_MS) {
		F.suppressed++;
		return;
	}
	if ((l = log_begin(WSP_LOG_WARN, "listen.error")) != NULL) {
		log_str(l, "addr", addr);
		log_str(l, "msg", strerror(err));
		log_uint(l, "suppressed", F.suppressed);
		log_uint(l, "refused", F.refused);
		log_end(l);
	}
	F.logged_ms = now;
	F.suppressed = 0;
	F.refused = 0;
}
