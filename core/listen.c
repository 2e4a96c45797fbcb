/*
 * listen.c: the listening sockets.
 *
 * Sockets are made here rather than by evconnlistener_new_bind so that an
 * IPv6 listener can be IPV6_V6ONLY (then [::]:8080 and 0.0.0.0:8080 may
 * both be configured) and so a failed bind names its address.  Port 0 asks
 * the kernel for a free port; the one it chose is logged, which is how the
 * tests find the daemon without racing for a port.
 *
 * A listener takes one connection each time the loop finds it readable
 * (nginx's multi_accept off), on a plain level-triggered event rather than
 * libevent's evconnlistener, which accepts until the queue is empty.  On
 * Linux an accept4() that finds the queue empty still makes and frees a
 * socket and a file first: with clients connecting steadily most wake-ups
 * hold one or two connections, and that last, failed call cost 2.7-3 us
 * of a 40-us handshake here (bench/README).  A queue with more in it
 * stays readable, so the next turn of the loop takes the next one, after
 * the other connections' events of this turn: a burst of connections
 * does not hold up the clients already served.
 *
 * An accepted socket goes to the server's on_accept hook (conn_accept),
 * which owns it from then on, with the listener's tls flag.
 *
 * On reload the addresses the new configuration adds are bound first, into
 * a staged list (they accept at once, the running settings apply), and the
 * addresses it drops are closed only on commit; a failed bind fails the
 * reload and abort closes what was staged.  Open connections are never
 * touched.
 *
 * When accept() fails (out of descriptors, say), fdlimit.c answers and
 * logs, and the listeners pause for a moment instead of spinning on a
 * socket that stays readable.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "wsplugd.h"

#define LISTEN_BACKLOG 511

void
listen_format_addr(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%u", host, ntohs(s4->sin_port));
	}
}

int
listen_bind(const struct wsp_listen_addr *a, int backlog, int reuseport,
    char *addr, size_t addrlen)
{
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	int fd, one = 1, err;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->sslen) == -1 ||
	    (backlog > 0 && listen(fd, backlog) == -1) ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen) == -1) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	listen_format_addr((struct sockaddr *)&bound, addr, addrlen);
	return fd;
}

/* Errors of the connection at the head of the queue, not of the listener
 * (accept(2): Linux reports a pending network error of the new connection
 * this way): that one is gone, the next is for the next turn.  Not
 * ENOPROTOOPT or EOPNOTSUPP, which the page lists too: from a socket that
 * is not a TCP listener they would come back on every turn, and pausing
 * (below) is what keeps an error that stays from spinning the loop. */
static int
accept_retriable(int err)
{
	switch (err) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
	case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN:
	case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case ENETUNREACH:
		return 1;
	}
	return 0;
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *li = arg;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd, err;

	(void)what;
	/* One a wake-up: see the top of this file. */
	if ((fd = accept4(lfd, (struct sockaddr *)&ss, &len,
	    SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1) {
		if (accept_retriable(err = errno))
			return;
		/* Out of descriptors or memory, or anything else: fdlimit.c
		 * answers and logs, and the listeners pause for a moment
		 * instead of spinning on a socket that stays readable. */
		fdlimit_accept_error(lfd, li->addr, err);
		listen_pause(li->srv, 1);
		return;
	}
	if (li->srv->on_accept(li->srv, fd, (struct sockaddr *)&ss, len,
	    li->tls) == -1) {
		log_msg(WSP_LOG_ERROR, "listen.error",
		    "out of memory accepting a connection on %s", li->addr);
		close(fd);
	}
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	listen_pause(arg, 0);
}

void
listen_pause(struct wsp_server *srv, int pause)
{
	struct timeval tv = { 0, FDLIMIT_PAUSE_MS * 1000 };
	struct listener *li;

	TAILQ_FOREACH(li, &srv->listeners, entry) {
		if (pause)
			event_del(li->ev);
		else
			event_add(li->ev, NULL);
	}
	if (pause && srv->accept_retry != NULL)
		event_add(srv->accept_retry, &tv);
}

int
listen_open(struct wsp_server *srv, const struct wsp_config *cfg,
    const struct wsp_listen_addr *a, struct listener_list *out,
    struct wsp_errors *errs)
{
	struct listener *li;
	struct log_line *l;
	char addr[64];
	int fd, one = 1;

	if (srv->accept_retry == NULL &&
	    (srv->accept_retry = evtimer_new(srv->base, accept_retry_cb,
	    srv)) == NULL)
		return -1;
	if ((fd = srv->bind != NULL ? srv->bind(srv, a, 0, addr,
	    sizeof(addr)) : listen_bind(a, 0, 0, addr, sizeof(addr))) == -1) {
		errors_add(errs, cfg->file, a->line, "listen %s: %s%s",
		    a->text, strerror(errno), privdrop_hint(errno));
		return -1;
	}
	/* Frames are small and latency matters more than packet count.  Set
	 * here, Linux hands it on to every accepted socket: one system call
	 * per listener instead of one per connection. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((li = calloc(1, sizeof(*li))) == NULL) {
		close(fd);
		return -1;
	}
	li->srv = srv;
	memcpy(&li->conf, &a->ss, a->sslen);
	li->conf_len = a->sslen;
	li->tls = a->tls;
	memcpy(li->addr, addr, sizeof(li->addr));
	li->fd = fd;
	/* A socket from a hand-over listens already: listen() again only
	 * sets our backlog.  Ours was bound non-blocking and close-on-exec;
	 * one handed over is made so too. */
	if (listen(fd, LISTEN_BACKLOG) == -1 ||
	    evutil_make_socket_nonblocking(fd) == -1 ||
	    evutil_make_socket_closeonexec(fd) == -1 ||
	    (li->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST,
	    accept_cb, li)) == NULL || event_add(li->ev, NULL) == -1) {
		errors_add(errs, cfg->file, a->line, "listen %s: %s",
		    a->text, strerror(errno));
		if (li->ev != NULL)
			event_free(li->ev);
		close(fd);
		free(li);
		return -1;
	}
	TAILQ_INSERT_TAIL(out, li, entry);
	if ((l = log_begin(WSP_LOG_INFO, "listen.start")) != NULL) {
		log_str(l, "addr", li->addr);
		if (li->tls)
			log_str(l, "tls", "yes");
		log_end(l);
	}
	return 0;
}

void
listen_free(struct listener *li)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_INFO, "listen.stop")) != NULL) {
		log_str(l, "addr", li->addr);
		log_end(l);
	}
	event_free(li->ev);
	close(li->fd);
	free(li);
}

void
listen_close_all(struct listener_list *l)
{
	struct listener *li;

	while ((li = TAILQ_FIRST(l)) != NULL) {
		TAILQ_REMOVE(l, li, entry);
		listen_free(li);
	}
}

/* Is one of list's listeners bound for a? */
static int
listen_has(const struct listener_list *list, const struct wsp_listen_addr *a)
{
	const struct listener *li;

	TAILQ_FOREACH(li, list, entry)
		if (config_listen_same(&li->conf, li->conf_len, a))
			return 1;
	return 0;
}

int
listen_reload_prepare(struct wsp_server *srv, const struct wsp_config *cfg,
    struct wsp_errors *errs)
{
	size_t i, before = errs->n;

	for (i = 0; i < cfg->nlisten; i++)
		if (!listen_has(&srv->listeners, &cfg->listen[i]))
			listen_open(srv, cfg, &cfg->listen[i],
			    &srv->listeners_staged, errs);
	return errs->n > before ? -1 : 0;
}

void
listen_reload_commit(struct wsp_server *srv)
{
	const struct wsp_config *cfg = srv->cfg;
	struct listener *li, *next;
	size_t i;
	int found;

	TAILQ_FOREACH_SAFE(li, &srv->listeners, entry, next) {
		found = 0;
		for (i = 0; i < cfg->nlisten; i++)
			if (config_listen_same(&li->conf, li->conf_len,
			    &cfg->listen[i])) {
				found = 1;
				/* "tls" added or dropped: for new clients */
				li->tls = cfg->listen[i].tls;
			}
		if (!found) {
			TAILQ_REMOVE(&srv->listeners, li, entry);
			listen_free(li);
		}
	}
	while ((li = TAILQ_FIRST(&srv->listeners_staged)) != NULL) {
		TAILQ_REMOVE(&srv->listeners_staged, li, entry);
		TAILQ_INSERT_TAIL(&srv->listeners, li, entry);
	}
}

void
listen_reload_abort(struct wsp_server *srv)
{
	listen_close_all(&srv->listeners_staged);
}
