/*
 * floor: the least a WebSocket server can do for bench/run's ping/pong
 * load, to show what this machine allows.
 *
 * One thread, epoll, level-triggered.  It upgrades (finding only the
 * Sec-WebSocket-Key in the request head), greets with a fixed pre-built
 * connection_established frame, and answers every data frame with the
 * same pre-built pong, without unmasking or parsing it: a frame header is
 * read to find where the next frame starts, and that is all.  A close is
 * answered with a close and the socket is shut.  Every 25 s every
 * connection gets a protocol ping.  An idle connection costs this struct
 * and nothing else: the request head is read into the shared buffer.  Since the pong is fixed it carries no id:
 * wsplugd-bench checks it with -n.
 *
 *   floor PORT          listens on 127.0.0.1:PORT
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_HEAD 4096
#define RBUF (256 * 1024)

struct conn {
	int fd;
	int open;       /* upgraded */
	char *head;     /* a request head cut by a read, until it is whole */
	size_t head_len;
	uint8_t hdr[14]; /* a frame header cut by a read */
	uint8_t hlen;
	uint64_t skip;  /* payload bytes of the current frame still to come */
	uint8_t *pend;  /* output the socket did not take */
	size_t pend_len;
	struct conn *next, *prev; /* for the keepalive pings */
};

static const char pong_text[] = "{\"type\":\"pong\",\"timestamp\":0}";
static const char greet_text[] = "{\"type\":\"connection_established\","
    "\"connectionId\":\"00000000000000000000000000000000\",\"timestamp\":0}";
static uint8_t pong[2 + sizeof(pong_text) - 1];
static uint8_t greet[2 + sizeof(greet_text) - 1];
static const uint8_t close_1000[4] = { 0x88, 2, 1000 >> 8, 1000 & 0xFF };
static const uint8_t ping_frame[2] = { 0x89, 0 };

static int epfd;
static uint8_t rbuf[RBUF];
static uint8_t obuf[RBUF];
static struct conn *all;

static void
conn_free(struct conn *c)
{
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		all = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c->head);
	free(c->pend);
	free(c);
}

/* Write, keeping what the socket refuses; -1 when the peer is gone. */
static int
conn_write(struct conn *c, const uint8_t *p, size_t n)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	ssize_t w = 0;

	if (c->pend_len == 0) {
		w = write(c->fd, p, n);
		if (w == -1) {
			if (errno != EAGAIN)
				return -1;
			w = 0;
		}
		if ((size_t)w == n)
			return 0;
		ev.events |= EPOLLOUT;
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	}
	c->pend = realloc(c->pend, c->pend_len + n - (size_t)w);
	if (c->pend == NULL)
		return -1;
	memcpy(c->pend + c->pend_len, p + w, n - (size_t)w);
	c->pend_len += n - (size_t)w;
	return 0;
}

static int
conn_flush(struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	ssize_t w = write(c->fd, c->pend, c->pend_len);

	if (w == -1)
		return errno == EAGAIN ? 0 : -1;
	memmove(c->pend, c->pend + w, c->pend_len - (size_t)w);
	c->pend_len -= (size_t)w;
	if (c->pend_len == 0)
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	return 0;
}

static int
handshake(struct conn *c)
{
	char resp[256], kg[128];
	unsigned char sha[SHA_DIGEST_LENGTH];
	char accept[29];
	char *k, *e;
	ssize_t n;
	size_t kn;
	int rn;

	char *head;

	/* The head goes to the shared buffer; only one cut by a read is
	 * kept, in a buffer of its own. */
	head = (char *)rbuf;
	if (c->head_len > 0)
		memcpy(head, c->head, c->head_len);
	n = read(c->fd, head + c->head_len, MAX_HEAD - c->head_len);
	if (n <= 0)
		return n == -1 && errno == EAGAIN ? 0 : -1;
	c->head_len += (size_t)n;
	head[c->head_len] = '\0';
	if (strstr(head, "\r\n\r\n") == NULL) {
		if (c->head_len == MAX_HEAD)
			return -1;
		if ((c->head = realloc(c->head, c->head_len)) == NULL)
			return -1;
		memcpy(c->head, head, c->head_len);
		return 0;
	}
	if ((k = strcasestr(head, "\r\nSec-WebSocket-Key:")) == NULL)
		return -1;
	k += 20;
	while (*k == ' ')
		k++;
	if ((e = strstr(k, "\r\n")) == NULL || (kn = (size_t)(e - k)) > 64)
		return -1;
	memcpy(kg, k, kn);
	memcpy(kg + kn, GUID, sizeof(GUID) - 1);
	SHA1((unsigned char *)kg, kn + sizeof(GUID) - 1, sha);
	EVP_EncodeBlock((unsigned char *)accept, sha, sizeof(sha));
	rn = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
	memcpy(resp + rn, greet, sizeof(greet));
	free(c->head);
	c->head = NULL;
	c->head_len = 0;
	c->open = 1;
	return conn_write(c, (uint8_t *)resp, (size_t)rn + sizeof(greet));
}

/* Walk the frames: a pong for each data frame that ends a message. */
static int
frames(struct conn *c)
{
	ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
	size_t i = 0, len, out = 0, need;
	uint8_t op, l7;

	if (n <= 0)
		return n == -1 && errno == EAGAIN ? 0 : -1;
	len = (size_t)n;
	while (i < len) {
		if (c->skip > 0) {
			size_t s = len - i < c->skip ? len - i : c->skip;

			i += s;
			c->skip -= s;
			continue;
		}
		c->hdr[c->hlen++] = rbuf[i++];
		if (c->hlen < 2)
			continue;
		l7 = c->hdr[1] & 0x7F;
		need = 2 + 4 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
		if (c->hlen < need)
			continue;
		if (l7 == 126)
			c->skip = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
		else if (l7 == 127) {
			c->skip = 0;
			for (int k = 2; k < 10; k++)
				c->skip = c->skip << 8 | c->hdr[k];
		} else
			c->skip = l7;
		op = c->hdr[0] & 0x0F;
		c->hlen = 0;
		if (op == 0x8) {
			conn_write(c, close_1000, sizeof(close_1000));
			shutdown(c->fd, SHUT_WR);
			return 0; /* the peer's EOF ends it */
		}
		if (op <= 0x2 && (c->hdr[0] & 0x80)) {
			if (out + sizeof(pong) > sizeof(obuf)) {
				if (conn_write(c, obuf, out) == -1)
					return -1;
				out = 0;
			}
			memcpy(obuf + out, pong, sizeof(pong));
			out += sizeof(pong);
		}
	}
	return out > 0 ? conn_write(c, obuf, out) : 0;
}

static void
listener(int lfd)
{
	struct epoll_event ev;
	struct conn *c;
	static const int one = 1;
	int fd;

	/* lfd is level-triggered: accept what is there, then return. */
	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) !=
	    -1) {
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->next = all;
		if (all != NULL)
			all->prev = c;
		all = c;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
	}
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct itimerspec its = { { 25, 0 }, { 25, 0 } };
	struct epoll_event ev, evs[256];
	struct rlimit rl;
	static const int one = 1;
	int lfd, tfd, n, i;
	uint64_t ticks;

	if (argc != 2) {
		fprintf(stderr, "usage: floor PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	pong[0] = 0x81;
	pong[1] = sizeof(pong_text) - 1;
	memcpy(pong + 2, pong_text, sizeof(pong_text) - 1);
	greet[0] = 0x81;
	greet[1] = sizeof(greet_text) - 1;
	memcpy(greet + 2, greet_text, sizeof(greet_text) - 1);

	sin.sin_port = htons((uint16_t)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd == -1 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 4096) == -1) {
		perror("floor: listen");
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	timerfd_settime(tfd, 0, &its, NULL);
	ev.data.ptr = &tfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	printf("listening 127.0.0.1:%s\n", argv[1]);
	fflush(stdout);

	for (;;) {
		n = epoll_wait(epfd, evs, 256, -1);
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			int rc = 0;

			if (c == NULL) {
				listener(lfd);
				continue;
			}
			if (evs[i].data.ptr == &tfd) {
				struct conn *p;

				if (read(tfd, &ticks, sizeof(ticks)) < 0)
					continue;
				/* A failed write shows as an error event on
				 * the socket, which frees it there. */
				for (p = all; p != NULL; p = p->next)
					if (p->open)
						conn_write(p, ping_frame,
						    sizeof(ping_frame));
				continue;
			}
			if (evs[i].events & EPOLLOUT)
				rc = conn_flush(c);
			if (rc == 0 && (evs[i].events & (EPOLLIN | EPOLLHUP |
			    EPOLLERR)))
				rc = c->open ? frames(c) : handshake(c);
			if (rc == -1)
				conn_free(c);
		}
	}
}
