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
 * Over TLS it is what a minimal OpenSSL server costs: SSL_read and
 * SSL_write on the same non-blocking sockets (as openssl s_server does,
 * without its BIO stack), TLS 1.3 only, no session tickets (bench/run
 * measures full handshakes), every record that has arrived read in one
 * go and all the pongs for them written with one SSL_write.
 *
 *   floor PORT              listens on 127.0.0.1:PORT
 *   floor PORT CERT KEY     the same over TLS, with this PEM certificate
 *                           and key
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

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_HEAD 4096
#define RBUF (256 * 1024)

struct conn {
	int fd;
	SSL *ssl;       /* TLS; NULL for plain */
	int want_write; /* TLS: the last call waits for writability */
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
static SSL_CTX *ctx; /* TLS; NULL for plain */

static void
set_events(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* read(2), or every TLS record there is (up to n bytes): as read(2)
 * answers, -1 with EAGAIN for nothing yet, 0 at the end. */
static ssize_t
io_read(struct conn *c, uint8_t *p, size_t n)
{
	size_t got = 0;
	int r, e;

	if (c->ssl == NULL)
		return read(c->fd, p, n);
	while (got < n) {
		r = SSL_read(c->ssl, p + got, (int)(n - got));
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE && !c->want_write) {
			/* a handshake flight the socket did not take */
			c->want_write = 1;
			set_events(c, EPOLLIN | EPOLLOUT);
		}
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		ERR_clear_error();
		if (got > 0)
			break;
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		errno = EPROTO;
		return -1;
	}
	if (got == 0) {
		errno = EAGAIN;
		return -1;
	}
	return (ssize_t)got;
}

/* write(2) or SSL_write, answering as io_read does. */
static ssize_t
io_write(struct conn *c, const uint8_t *p, size_t n)
{
	int r, e;

	if (c->ssl == NULL)
		return write(c->fd, p, n);
	r = SSL_write(c->ssl, p, (int)n);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	ERR_clear_error();
	errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ?
	    EAGAIN : EPROTO;
	return -1;
}

static void
conn_free(struct conn *c)
{
	SSL_free(c->ssl);
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
		w = io_write(c, p, n);
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
	ssize_t w;

	if (c->pend_len == 0) {
		/* TLS: a handshake flight waited for room; the read goes
		 * on from where it stopped. */
		c->want_write = 0;
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
		return 0;
	}
	w = io_write(c, c->pend, c->pend_len);
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
	n = io_read(c, (uint8_t *)head + c->head_len,
	    MAX_HEAD - c->head_len);
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
	ssize_t n = io_read(c, rbuf, sizeof(rbuf));
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
			if (c->ssl != NULL)
				SSL_shutdown(c->ssl); /* close_notify */
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
		if (ctx != NULL) {
			if ((c->ssl = SSL_new(ctx)) == NULL) {
				close(fd);
				free(c);
				continue;
			}
			SSL_set_fd(c->ssl, fd);
			SSL_set_accept_state(c->ssl);
		}
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

	if (argc != 2 && argc != 4) {
		fprintf(stderr, "usage: floor PORT [CERT KEY]\n");
		return 2;
	}
	if (argc == 4) {
		ctx = SSL_CTX_new(TLS_server_method());
		if (ctx == NULL ||
		    SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, argv[3],
		    SSL_FILETYPE_PEM) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET |
		    SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
		    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
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
	printf("listening 127.0.0.1:%s%s\n", argv[1], ctx ? " tls" : "");
	fflush(stdout);

	for (;;) {
		n = epoll_wait(epfd, evs, 256, -1);
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			int rc = 0, ww;

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
			ww = c->want_write;
			if (evs[i].events & EPOLLOUT)
				rc = conn_flush(c);
			if (rc == 0 && ((evs[i].events & (EPOLLIN | EPOLLHUP |
			    EPOLLERR)) || (ww && !c->want_write)))
				rc = c->open ? frames(c) : handshake(c);
			if (rc == -1)
				conn_free(c);
		}
	}
}
