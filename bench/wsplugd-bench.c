/*
 * wsplugd-bench: a load generator for WebSocket servers that speak
 * wsplugd's JSON protocol (a connection_established greeting, ping -> pong).
 *
 * One thread, one epoll set, non-blocking sockets, like redis-benchmark:
 * the client must cost less per message than the servers it measures, so
 * every read event is answered with at most one write, and a connection's
 * replies are parsed straight out of one shared read buffer.
 *
 * Nothing the server says is taken on trust.  The handshake's
 * Sec-WebSocket-Accept is computed here (SHA-1 and base64 from libcrypto,
 * deliberately not the daemon's own http_accept_key(), so a bug there
 * cannot hide itself) and every server frame is checked: unmasked, RSV
 * bits clear, a known opcode, minimal length encoding, control frames
 * unfragmented and short, text valid UTF-8 and valid JSON, and every
 * reply of the expected type with the expected id, in order.  Each
 * violation is counted by kind, the first few are described on stderr,
 * and any of them makes the exit status 1.
 *
 * Modes:
 *   ping       N connections, each keeping D pings in flight; throughput
 *              and the round-trip latency of every reply in a log-linear
 *              histogram (64 sub-buckets per power of two: ~1.6% error),
 *              and each connection's longest wait between two replies,
 *              which is what a client notices when the server stalls
 *              (a reload, a long loop turn) and an average hides.
 *   handshake  C connections at a time, each connecting, upgrading,
 *              reading the greeting and closing with a full close
 *              handshake, then starting over: handshakes per second.
 *   idle       N connections opened and held while the server's memory is
 *              measured, answering the server's protocol pings; at the end
 *              every one is pinged once to prove it still answers.
 *   fanout     N subscribers of one channel of the broadcast plugin and
 *              one publisher keeping D messages in flight: a message is in
 *              flight until every subscriber has it.  Deliveries per second
 *              and the latency from the publish's write to each delivery's
 *              read.  Done here, not in a script, because this process can
 *              keep 1,000 subscribers reading at the server's rate; and as
 *              publisher and subscribers share its clock, the payload is
 *              just the message's number and the publish times stay here.
 *              Each subscriber must receive 1, 2, 3... exactly once and in
 *              order.  With -p PORT,PORT... (several nodes on one bus) the
 *              subscribers are spread over the ports in turn; the
 *              publisher uses the first.
 *
 * With -z the client offers permessage-deflate (RFC 7692) as browsers do
 * ("permessage-deflate; client_max_window_bits") and, when the server
 * accepts, compresses every message it sends with zlib and inflates the
 * compressed ones it receives (RSV1 is then allowed on the first frame of
 * a data message, and checked to be nowhere else); the bytes on the wire
 * per message are reported either way.  -S N pads each ping with a
 * realistic JSON member (a book of prices and sizes that change with
 * every message) to about N bytes.
 *
 * With -L the connections are wss://: TLS 1.3 from OpenSSL on the same
 * non-blocking sockets (SSL_connect, SSL_read, SSL_write; no BIO pair, no
 * extra copy), with ALPN http/1.1 as browsers send it.  The server's
 * certificate is not checked unless -K names a CA file to check it with.
 * Session resumption is off (no session cache, no tickets kept), so every
 * handshake is a full one, which is what CPU per handshake must measure;
 * the connections that were resumed anyway are counted (tls_resumed=).
 * The wire bytes reported are the WebSocket bytes, before encryption.
 *
 * With -x PID the server's CPU time (utime + stime from /proc/PID/stat) is
 * sampled at the start and end of the measured interval, and in idle mode
 * its VmRSS before the first connection and after the last.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define RBUF_SIZE (256 * 1024)
#define MAX_HEAD 8192
#define MAX_FRAME (RBUF_SIZE - 16) /* a server frame must fit one read */
#define MAX_ERRORS_SHOWN 10
#define JSON_MAX_DEPTH 32
#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))

enum mode { MODE_PING, MODE_HANDSHAKE, MODE_IDLE, MODE_FANOUT };

/* What went wrong, for the counters and the key=value line. */
enum err_kind {
	E_CONNECT,   /* socket, bind, connect */
	E_HANDSHAKE, /* the 101 response */
	E_FRAME,     /* a frame breaking RFC 6455 */
	E_REPLY,     /* a message that is not the expected reply */
	E_CLOSED,    /* the server closed or reset the connection */
	E_TIMEOUT,   /* no answer within -T */
	E_TLS,       /* -L: the TLS handshake or a TLS record */
	E_NKIND
};

static const char *const err_names[E_NKIND] = {
	"connect", "handshake", "frame", "reply", "closed", "timeout", "tls",
};

enum cstate {
	C_FREE,       /* no socket */
	C_CONNECTING, /* connect() in progress */
	C_TLS,        /* -L: the TLS handshake */
	C_UPGRADING,  /* request sent, reading the 101 */
	C_GREETING,   /* waiting for connection_established */
	C_OPEN,
	C_CLOSING, /* our close frame sent, waiting for the server's */
	C_WAIT_EOF /* close frames exchanged, waiting for the server's FIN */
};

enum phase {
	P_PROBE,   /* idle: one connection first, then the RSS */
	P_RAMP,    /* opening connections */
	P_WARMUP,  /* load running, not measured */
	P_MEASURE, /* load running and measured */
	P_HOLD,    /* idle: every connection open, held */
	P_VERIFY,  /* idle: one ping per connection */
	P_DRAIN,   /* no new requests; waiting for those in flight */
	P_CLOSE,   /* close handshakes */
	P_DONE
};

struct conn {
	int fd;
	SSL *ssl; /* -L; NULL for plain */
	enum cstate state;
	uint32_t events; /* registered with epoll */
	unsigned idx;
	char key[25];
	uint8_t *in; /* a partial head or frame left from the last read */
	size_t in_len;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	uint8_t *msg; /* a fragmented message being reassembled */
	size_t msg_len, msg_cap;
	uint8_t msg_op;
	/* pings in flight, oldest first: a ring of depth entries */
	uint64_t *ring_id, *ring_ts;
	unsigned ring_head, inflight;
	uint64_t t_start; /* connect() time */
	uint64_t deadline; /* ns; 0 none */
	uint64_t last_reply; /* ping: ns of the last pong, or of the load's
				start before the first */
	uint64_t max_gap; /* ping: longest wait for a pong in the window */
	int measured; /* ping: open when the measured window began */
	int zneg; /* -z: the server accepted; streams made when needed */
	z_stream *zin, *zout;
	int znct_in, znct_out; /* reset after each message */
	int zcwb; /* the window we may compress with */
	uint8_t msg_z; /* the message being reassembled had RSV1 */
	unsigned dsti; /* which of -p's ports */
	uint64_t fan_next; /* fanout: the message number expected next */
};

/* Log-linear histogram of nanoseconds: values below 128 exact, above that
 * 64 sub-buckets per power of two. */
#define H_SUB_BITS 6
#define H_SUB (1u << H_SUB_BITS)
#define H_BUCKETS ((64 - H_SUB_BITS) * H_SUB + H_SUB)

struct histogram {
	uint64_t count[H_BUCKETS];
	uint64_t n, max;
};

struct options {
	enum mode mode;
	const char *host, *port, *path;
	unsigned conns, depth, concurrency;
	double duration, warmup, timeout;
	int greeting, check_id;
	const char *ua;
	long ua_len; /* -1: as given */
	uint32_t src_first, src_last; /* host order; 0: no bind */
	int src_set;
	pid_t server_pid;
	double settle;
	double gap_limit; /* ms: ping reports connections waiting longer */
	int deflate; /* -z: offer permessage-deflate */
	unsigned pad; /* -S: ping size in bytes, 0 for the bare ping */
	int tls; /* -L: wss:// */
	const char *ca_file; /* -K: check the server's certificate */
};

static struct options opt = {
	.mode = MODE_PING,
	.host = "127.0.0.1",
	.port = "8080",
	.path = "/ws",
	.conns = 0,
	.depth = 1,
	.concurrency = 0,
	.duration = 5,
	.warmup = 1,
	.timeout = 10,
	.greeting = 1,
	.check_id = 1,
	.ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
	      "Gecko) Chrome/120.0.0.0 Safari/537.36 wsplugd-bench/"
	      PACKAGE_VERSION,
	.ua_len = -1,
	.server_pid = 0,
	.settle = 1,
	.gap_limit = 50,
};

/* The run's state: one of each, so plain globals. */
static int epfd;
static uint8_t *rbuf;
static struct conn *conns;
static unsigned nconns;
#define MAX_DST 16
static struct sockaddr_storage dsts[MAX_DST];
static socklen_t dst_lens[MAX_DST];
static char host_headers[MAX_DST][300];
static unsigned ndst;
#define dst (dsts[0])
static char *ua_value;
static uint32_t src_next;
static enum phase phase;
static uint64_t phase_end; /* ns */
static uint64_t t_measure_start, t_measure_end;
static uint64_t next_id = 1;
static uint64_t rng_state;
static volatile sig_atomic_t got_signal;

static uint64_t errors[E_NKIND];
static unsigned errors_shown;
static uint64_t n_open;      /* connections that reached C_OPEN, now */
static uint64_t n_started;   /* connect() calls */
static uint64_t n_failed;    /* connections ended by an error */
static uint64_t n_greeted;   /* greetings received */
static uint64_t n_msgs;      /* replies counted in the measured window */
static uint64_t n_replies;   /* all replies */
static uint64_t n_handshakes; /* handshake mode: completed in window */
static uint64_t n_server_pings, n_verified;
static uint64_t n_dropped; /* ping: open at the window's start, then lost */
static unsigned n_idle_target;
static int ready; /* idle: the ready line is out */
static int probe_done; /* idle: the first connection came and went */
static struct histogram hist;
/* fanout: subscribers whose subscription was answered; per message in
 * flight (the publisher's ring slot), the subscribers that have it;
 * messages every subscriber had, all and in the window */
static unsigned n_subscribed;
static unsigned *fan_count;
static uint64_t n_fan_done, n_fan_measured;
#define FAN_CHANNEL "bench"
static double srv_cpu0, srv_cpu1, cli_cpu0, cli_cpu1;
static uint64_t wire_in, wire_out; /* bytes read and written, measured */
static uint64_t n_deflate;         /* connections that negotiated it */
static uint8_t *zbuf;              /* -z: compressed or inflated message */
static size_t zbuf_cap;
static long rss0_kib = -1, rss1_kib = -1;
static SSL_CTX *tls_ctx;          /* -L */
static uint64_t n_tls, n_tls_resumed; /* TLS handshakes done, resumed */
static char tls_agreed[96] = "-"; /* version/cipher of the first */
static char io_err[256];          /* why io_read or io_write failed */

/* ---- small helpers ------------------------------------------------ */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
rng_next(void)
{
	/* xorshift64*: mask keys and handshake keys need no cryptographic
	 * strength in a load generator, only variety. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

static void die(const char *fmt, ...) PRINTFLIKE(1, 2)
    __attribute__((noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("wsplugd-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL)
		die("out of memory");
	return p;
}

static double
cpu_self(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of every thread of pid, in seconds; -1 if unreadable. */
static double
cpu_of(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;
	int i;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields count
	 * from the last ')'.  utime and stime are fields 14 and 15. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	p++;
	for (i = 3; i < 14; i++) {
		p = strchr(p + 1, ' ');
		if (p == NULL)
			return -1;
	}
	if (sscanf(p, " %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long
rss_of(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* ---- histogram ---------------------------------------------------- */

static unsigned
h_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * H_SUB)
		return (unsigned)v;
	msb = 63 - (unsigned)__builtin_clzll(v);
	shift = msb - H_SUB_BITS;
	return (shift + 1) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

/* The middle of bucket i. */
static uint64_t
h_value(unsigned i)
{
	unsigned shift;
	uint64_t lo;

	if (i < 2 * H_SUB)
		return i;
	shift = i / H_SUB - 1;
	lo = (uint64_t)(H_SUB + i % H_SUB) << shift;
	return lo + ((1ull << shift) >> 1);
}

static void
h_record(struct histogram *h, uint64_t v)
{
	unsigned i = h_index(v);

	if (i >= H_BUCKETS)
		i = H_BUCKETS - 1;
	h->count[i]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static uint64_t
h_percentile(const struct histogram *h, double pct)
{
	uint64_t want, seen = 0;
	unsigned i;

	if (h->n == 0)
		return 0;
	want = (uint64_t)((double)h->n * pct / 100.0 + 0.5);
	if (want < 1)
		want = 1;
	for (i = 0; i < H_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= want) {
			uint64_t v = h_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

/* ---- errors ------------------------------------------------------- */

static void conn_release(struct conn *c);

static void note_error(unsigned idx, enum err_kind kind, const char *fmt,
    va_list ap) PRINTFLIKE(3, 0);
static void conn_fail(struct conn *c, enum err_kind kind, const char *fmt,
    ...) PRINTFLIKE(3, 4);
static void conn_fail_early(struct conn *c, enum err_kind kind,
    const char *fmt, ...) PRINTFLIKE(3, 4);

/* Count an error of connection idx and say what it was (the first few). */
static void
note_error(unsigned idx, enum err_kind kind, const char *fmt, va_list ap)
{
	errors[kind]++;
	if (errors_shown < MAX_ERRORS_SHOWN) {
		fprintf(stderr, "wsplugd-bench: connection %u: %s: ", idx,
		    err_names[kind]);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		if (++errors_shown == MAX_ERRORS_SHOWN)
			fprintf(stderr, "wsplugd-bench: further errors are "
			    "counted, not shown\n");
	}
	n_failed++;
}

/* Count an error on c and drop c. */
static void
conn_fail(struct conn *c, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	note_error(c->idx, kind, fmt, ap);
	va_end(ap);
	/* Lost while in use, not while we were closing it: an error like
	 * any other, and also the figure a reload must keep at 0. */
	if (c->measured && c->state == C_OPEN)
		n_dropped++;
	conn_release(c);
}

/* The same before c has a socket. */
static void
conn_fail_early(struct conn *c, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	note_error(c->idx, kind, fmt, ap);
	va_end(ap);
	c->state = C_FREE;
}

static uint64_t
errors_total(void)
{
	uint64_t t = 0;
	int i;

	for (i = 0; i < E_NKIND; i++)
		t += errors[i];
	return t;
}

/* ---- validation --------------------------------------------------- */

/* UTF-8 as RFC 3629: no overlongs, surrogates or values past U+10FFFF. */
static int
utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t b = p[i];
		unsigned need;
		uint32_t cp;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xC2 && b <= 0xDF) {
			need = 1;
			cp = b & 0x1F;
		} else if (b >= 0xE0 && b <= 0xEF) {
			need = 2;
			cp = b & 0x0F;
		} else if (b >= 0xF0 && b <= 0xF4) {
			need = 3;
			cp = b & 0x07;
		} else
			return 0;
		if (n - i <= need)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* A strict JSON validator (RFC 8259) that also picks out the top-level
 * object's "type" string and integer "id". */
struct jreply {
	const char *type; /* raw, between the quotes */
	size_t type_len;
	int has_id;
	uint64_t id;
	int has_data; /* fanout: "data" as an integer */
	uint64_t data;
};

struct jparse {
	const char *p, *end;
	int depth;
};

static void
j_ws(struct jparse *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' ||
	    *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int j_value(struct jparse *j, struct jreply *top, int want_id);

static int
j_string(struct jparse *j, const char **s_r, size_t *n_r)
{
	const char *s;

	if (j->p >= j->end || *j->p != '"')
		return -1;
	s = ++j->p;
	while (j->p < j->end && *j->p != '"') {
		unsigned char ch = (unsigned char)*j->p;

		if (ch < 0x20)
			return -1;
		if (ch == '\\') {
			j->p++;
			if (j->p >= j->end)
				return -1;
			switch (*j->p) {
			case '"': case '\\': case '/': case 'b': case 'f':
			case 'n': case 'r': case 't':
				j->p++;
				break;
			case 'u':
				if (j->end - j->p < 5)
					return -1;
				for (int k = 1; k <= 4; k++)
					if (!strchr("0123456789abcdefABCDEF",
					    j->p[k]) || j->p[k] == '\0')
						return -1;
				j->p += 5;
				break;
			default:
				return -1;
			}
		} else
			j->p++;
	}
	if (j->p >= j->end)
		return -1;
	if (s_r != NULL) {
		*s_r = s;
		*n_r = (size_t)(j->p - s);
	}
	j->p++;
	return 0;
}

static int
j_number(struct jparse *j, struct jreply *top, int want_id)
{
	int integer = 1, neg = 0;
	uint64_t v = 0;

	if (j->p < j->end && *j->p == '-') {
		neg = 1;
		j->p++;
	}
	if (j->p >= j->end)
		return -1;
	if (*j->p == '0')
		j->p++;
	else if (*j->p >= '1' && *j->p <= '9') {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
			if (v > (UINT64_MAX - 9) / 10)
				integer = 0;
			v = v * 10 + (uint64_t)(*j->p - '0');
			j->p++;
		}
	} else
		return -1;
	if (j->p < j->end && *j->p == '.') {
		integer = 0;
		j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return -1;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		integer = 0;
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return -1;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (want_id == 2 && integer && !neg) {
		top->has_data = 1;
		top->data = v;
	} else if (want_id && integer && !neg) {
		top->has_id = 1;
		top->id = v;
	}
	return 0;
}

static int
j_literal(struct jparse *j, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
		return -1;
	j->p += n;
	return 0;
}

/* After a member: 1 at the closing bracket, 0 at a comma (both taken),
 * -1 at anything else. */
static int
j_after_member(struct jparse *j, char close)
{
	j_ws(j);
	if (j->p < j->end && *j->p == ',') {
		j->p++;
		return 0;
	}
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return 1;
	}
	return -1;
}

/* top is non-NULL only for the outermost object's members. */
static int
j_object(struct jparse *j, struct jreply *top)
{
	const char *k, *v;
	size_t kn, vn;

	j->p++; /* '{' */
	j_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		return 0;
	}
	for (;;) {
		j_ws(j);
		if (j_string(j, &k, &kn) == -1)
			return -1;
		j_ws(j);
		if (j->p >= j->end || *j->p != ':')
			return -1;
		j->p++;
		j_ws(j);
		if (top != NULL && kn == 4 && memcmp(k, "type", 4) == 0 &&
		    j->p < j->end && *j->p == '"') {
			if (j_string(j, &v, &vn) == -1)
				return -1;
			top->type = v;
			top->type_len = vn;
		} else if (j_value(j, top, top == NULL ? 0 :
		    kn == 2 && memcmp(k, "id", 2) == 0 ? 1 :
		    kn == 4 && memcmp(k, "data", 4) == 0 ? 2 : 0) == -1)
			return -1;
		switch (j_after_member(j, '}')) {
		case 1:
			return 0;
		case -1:
			return -1;
		}
	}
}

static int
j_array(struct jparse *j)
{
	j->p++; /* '[' */
	j_ws(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		return 0;
	}
	for (;;) {
		j_ws(j);
		if (j_value(j, NULL, 0) == -1)
			return -1;
		switch (j_after_member(j, ']')) {
		case 1:
			return 0;
		case -1:
			return -1;
		}
	}
}

static int
j_value(struct jparse *j, struct jreply *top, int want_id)
{
	int rc;

	if (j->p >= j->end)
		return -1;
	switch (*j->p) {
	case '{':
		if (++j->depth > JSON_MAX_DEPTH)
			return -1;
		/* Only the outermost object reports its members. */
		rc = j_object(j, j->depth == 1 ? top : NULL);
		j->depth--;
		return rc;
	case '[':
		if (++j->depth > JSON_MAX_DEPTH)
			return -1;
		rc = j_array(j);
		j->depth--;
		return rc;
	case '"':
		return j_string(j, NULL, NULL);
	case 't':
		return j_literal(j, "true");
	case 'f':
		return j_literal(j, "false");
	case 'n':
		return j_literal(j, "null");
	default:
		return j_number(j, top, want_id);
	}
}

/* 0 and r filled when text is one JSON object; -1 otherwise. */
static int
json_reply(const uint8_t *text, size_t n, struct jreply *r)
{
	struct jparse j = { (const char *)text, (const char *)text + n, 0 };

	memset(r, 0, sizeof(*r));
	j_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		return -1;
	if (j_value(&j, r, 0) == -1)
		return -1;
	j_ws(&j);
	return j.p == j.end ? 0 : -1;
}

static int
type_is(const struct jreply *r, const char *t)
{
	size_t n = strlen(t);

	return r->type != NULL && r->type_len == n &&
	    memcmp(r->type, t, n) == 0;
}

/* ---- I/O, plain or TLS ------------------------------------------- */

/* OpenSSL's reason for a failed call, or the system's, into io_err. */
static void
tls_reason(struct conn *c, int r, const char *what)
{
	int e = SSL_get_error(c->ssl, r);
	unsigned long code = ERR_peek_last_error();
	char buf[200];

	if (code != 0) {
		ERR_error_string_n(code, buf, sizeof(buf));
		snprintf(io_err, sizeof(io_err), "%s: %s", what, buf);
	} else if (e == SSL_ERROR_SYSCALL && errno != 0)
		snprintf(io_err, sizeof(io_err), "%s: %s", what,
		    strerror(errno));
	else
		snprintf(io_err, sizeof(io_err), "%s: the peer closed the "
		    "connection (SSL error %d)", what, e);
	ERR_clear_error();
}

/* read(2) or SSL_read, as read(2) answers: -1 with EAGAIN for nothing yet,
 * 0 at the end, -1 with io_err otherwise.  Over TLS it takes every record
 * that has arrived (up to n bytes), so a burst of pongs costs one pass
 * through the frame parser, as one read(2) of them does. */
static ssize_t
io_read(struct conn *c, uint8_t *p, size_t n)
{
	size_t got = 0;
	ssize_t r;
	int e;

	if (c->ssl == NULL) {
		r = read(c->fd, p, n);
		if (r == -1 && errno != EAGAIN && errno != EINTR)
			snprintf(io_err, sizeof(io_err), "read: %s",
			    strerror(errno));
		return r;
	}
	while (got < n) {
		ERR_clear_error();
		r = SSL_read(c->ssl, p + got, (int)(n - got < INT_MAX ?
		    n - got : INT_MAX));
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		e = SSL_get_error(c->ssl, (int)r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (got > 0)
			break; /* the end or the error again on the next call */
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0; /* close_notify, or an EOF without it */
		tls_reason(c, (int)r, "SSL_read");
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
	ssize_t r;
	int e;

	if (c->ssl == NULL) {
		r = write(c->fd, p, n);
		if (r == -1 && errno != EAGAIN && errno != EINTR)
			snprintf(io_err, sizeof(io_err), "write: %s",
			    strerror(errno));
		return r;
	}
	ERR_clear_error();
	r = SSL_write(c->ssl, p, (int)(n < INT_MAX ? n : INT_MAX));
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, (int)r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
		errno = EAGAIN;
		return -1;
	}
	tls_reason(c, (int)r, "SSL_write");
	errno = EPROTO;
	return -1;
}

/* The client context: TLS 1.3, ALPN http/1.1 and no resumption. */
static void
tls_setup(void)
{
	static const unsigned char alpn[] = "\x08http/1.1";

	if ((tls_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION);
	/* Moving: the output buffer may be reallocated between a write
	 * that wanted more room and its retry. */
	SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_alpn_protos(tls_ctx, alpn, sizeof(alpn) - 1) != 0)
		die("SSL_CTX_set_alpn_protos failed");
	if (opt.ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(tls_ctx, opt.ca_file,
		    NULL) != 1)
			die("-K %s: cannot load the CA certificate",
			    opt.ca_file);
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
}

/* ---- output ------------------------------------------------------- */

static void
ep_set(struct conn *c, uint32_t events)
{
	struct epoll_event ev;

	if (c->events == events)
		return;
	ev.events = events;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	c->events = events;
}

static uint8_t *
out_reserve(struct conn *c, size_t n)
{
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n > c->out_cap) {
		c->out_cap = c->out_cap == 0 ? 256 : c->out_cap;
		while (c->out_len + n > c->out_cap)
			c->out_cap *= 2;
		c->out = xrealloc(c->out, c->out_cap);
	}
	return c->out + c->out_len;
}

/* Queue one masked client frame. */
static void
zbuf_need(size_t n)
{
	if (n > zbuf_cap) {
		zbuf = xrealloc(zbuf, n);
		zbuf_cap = n;
	}
}

/* -z: a message compressed as RFC 7692 7.2.1 says, into zbuf. */
static size_t
deflate_msg(struct conn *c, const void *data, size_t n)
{
	z_stream *z;
	size_t cap;

	if (c->zout == NULL) {
		c->zout = xrealloc(NULL, sizeof(z_stream));
		memset(c->zout, 0, sizeof(z_stream));
		if (deflateInit2(c->zout, 6, Z_DEFLATED, -c->zcwb, 8,
		    Z_DEFAULT_STRATEGY) != Z_OK)
			die("zlib: out of memory");
	}
	z = c->zout;
	cap = deflateBound(z, (uLong)n) + 16;

	zbuf_need(cap);
	z->next_in = (Bytef *)(uintptr_t)data;
	z->avail_in = (uInt)n;
	z->next_out = zbuf;
	z->avail_out = (uInt)cap;
	if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_out == 0 ||
	    z->avail_in != 0)
		die("deflate failed");
	n = cap - z->avail_out;
	if (n < 4 || memcmp(zbuf + n - 4, "\0\0\xff\xff", 4) != 0)
		die("deflate: no sync flush marker");
	if (c->znct_out)
		deflateReset(z);
	return n - 4;
}

static void
frame_queue(struct conn *c, uint8_t opcode, const void *data, size_t n)
{
	uint8_t *p, *m, rsv1 = 0;
	uint32_t key = (uint32_t)rng_next();
	size_t hl = 2, i;

	/* Idle mode's few messages go plain (RFC 7692 lets any message be
	 * sent uncompressed), so 10,000 connections need no compressor. */
	if (c->zneg && opt.mode == MODE_PING && (opcode == 0x1 ||
	    opcode == 0x2)) {
		n = deflate_msg(c, data, n);
		data = zbuf;
		rsv1 = 0x40;
	}
	p = out_reserve(c, 14 + n);
	p[0] = 0x80 | rsv1 | opcode;
	if (n < 126)
		p[1] = 0x80 | (uint8_t)n;
	else if (n <= 0xFFFF) {
		p[1] = 0x80 | 126;
		p[2] = (uint8_t)(n >> 8);
		p[3] = (uint8_t)n;
		hl = 4;
	} else {
		p[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			p[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	m = p + hl;
	memcpy(m, &key, 4);
	for (i = 0; i < n; i++)
		p[hl + 4 + i] = ((const uint8_t *)data)[i] ^ m[i & 3];
	c->out_len += hl + 4 + n;
}

static void
ping_queue(struct conn *c, uint64_t now)
{
	static const char pre[] = "{\"type\":\"ping\",\"id\":";
	static char *text;
	char digits[24];
	size_t n = sizeof(pre) - 1, d = 0;
	uint64_t v = next_id;
	unsigned slot;

	if (text == NULL)
		text = xrealloc(NULL, 64 + opt.pad + 64);

	/* By hand: snprintf() would be a visible share of the client's
	 * time per message. */
	memcpy(text, pre, n);
	do {
		digits[d++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	while (d > 0)
		text[n++] = digits[--d];
	if (opt.pad > 0) {
		/* A book of price levels whose numbers move every message,
		 * as market data or a game state would: about pad bytes. */
		uint64_t r = next_id * 0x9e3779b97f4a7c15ULL;

		n += (size_t)sprintf(text + n, ",\"book\":[");
		while (n < opt.pad) {
			r ^= r << 13;
			r ^= r >> 7;
			r ^= r << 17;
			n += (size_t)sprintf(text + n, "%s{\"price\":%u.%02u,"
			    "\"size\":%u,\"orders\":%u}",
			    text[n - 1] == '[' ? "" : ",",
			    100 + (unsigned)(r % 5), (unsigned)(r >> 8) % 100,
			    1 + (unsigned)(r >> 16) % 5000,
			    1 + (unsigned)(r >> 32) % 40);
		}
		text[n++] = ']';
	}
	text[n++] = '}';
	slot = (c->ring_head + c->inflight) % opt.depth;
	c->ring_id[slot] = next_id++;
	c->ring_ts[slot] = now;
	c->inflight++;
	frame_queue(c, 0x1, text, n);
}

static void
close_queue(struct conn *c)
{
	static const uint8_t body[2] = { 1000 >> 8, 1000 & 0xFF };

	frame_queue(c, 0x8, body, 2);
	c->state = C_CLOSING;
	c->deadline = now_ns() + (uint64_t)(opt.timeout * 1e9);
}

/* Write what is queued; 0, or -1 when c failed. */
static int
conn_flush(struct conn *c)
{
	ssize_t n;

	while (c->out_off < c->out_len) {
		n = io_write(c, c->out + c->out_off, c->out_len - c->out_off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_fail(c, c->ssl != NULL && errno == EPROTO ? E_TLS :
			    E_CLOSED, "%s", io_err);
			return -1;
		}
		c->out_off += (size_t)n;
		if (phase == P_MEASURE)
			wire_out += (size_t)n;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		ep_set(c, EPOLLIN);
	} else
		ep_set(c, EPOLLIN | EPOLLOUT);
	return 0;
}

/* ---- connections -------------------------------------------------- */

static void
conn_release(struct conn *c)
{
	if (c->state == C_FREE)
		return;
	if (c->state == C_OPEN || c->state == C_CLOSING)
		n_open--;
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl != NULL) {
		/* Our close_notify went out with the close handshake (see
		 * deliver); a failed connection gets none. */
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
	c->state = C_FREE;
	c->events = 0;
	free(c->in);
	c->in = NULL;
	c->in_len = 0;
	c->out_off = c->out_len = 0;
	free(c->msg);
	c->msg = NULL;
	c->msg_len = c->msg_cap = 0;
	c->msg_op = 0;
	c->inflight = 0;
	c->ring_head = 0;
	c->deadline = 0;
	if (c->zin != NULL) {
		inflateEnd(c->zin);
		free(c->zin);
		c->zin = NULL;
	}
	if (c->zout != NULL) {
		deflateEnd(c->zout);
		free(c->zout);
		c->zout = NULL;
	}
	c->msg_z = 0;
	c->zneg = 0;
}

static void
conn_start(struct conn *c)
{
	struct epoll_event ev;
	static const int one = 1;
	uint8_t raw[16];
	uint64_t r;

	n_started++;
	c->t_start = now_ns();
	c->deadline = c->t_start + (uint64_t)(opt.timeout * 1e9);
	c->fd = socket(dsts[c->dsti].ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		conn_fail_early(c, E_CONNECT, "socket: %s", strerror(errno));
		return;
	}
	c->state = C_CONNECTING;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.src_first != 0 && dst.ss_family == AF_INET) {
		struct sockaddr_in src = { .sin_family = AF_INET };

		src.sin_addr.s_addr = htonl(src_next);
		if (++src_next > opt.src_last)
			src_next = opt.src_first;
		/* Pick the port at connect(), per destination: with bind()
		 * alone each address would get only one port range. */
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
		if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
			ev.events = 0;
			epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
			conn_fail(c, E_CONNECT, "bind %s: %s",
			    inet_ntoa(src.sin_addr), strerror(errno));
			return;
		}
	}
	ev.events = EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	c->events = EPOLLOUT;
	if (connect(c->fd, (struct sockaddr *)&dsts[c->dsti],
	    dst_lens[c->dsti]) == -1 &&
	    errno != EINPROGRESS) {
		conn_fail(c, E_CONNECT, "connect: %s", strerror(errno));
		return;
	}
	r = rng_next();
	memcpy(raw, &r, 8);
	r = rng_next();
	memcpy(raw + 8, &r, 8);
	EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
}

/* The request, once the socket is connected. */
static void tls_handshake(struct conn *c);
static void request(struct conn *c);

static void
conn_connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_fail(c, E_CONNECT, "connect: %s", strerror(err));
		return;
	}
	if (tls_ctx != NULL) {
		if ((c->ssl = SSL_new(tls_ctx)) == NULL ||
		    SSL_set_fd(c->ssl, c->fd) != 1)
			die("SSL_new failed");
		if (inet_pton(AF_INET, opt.host, &(struct in_addr){ 0 }) != 1 &&
		    inet_pton(AF_INET6, opt.host,
		    &(struct in6_addr){ { { 0 } } }) != 1) {
			SSL_set_tlsext_host_name(c->ssl, opt.host);
			if (opt.ca_file != NULL)
				SSL_set1_host(c->ssl, opt.host);
		} else if (opt.ca_file != NULL)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
			    opt.host);
		SSL_set_connect_state(c->ssl);
		c->state = C_TLS;
		tls_handshake(c);
		return;
	}
	request(c);
}

/* Drive the TLS handshake on; the request once it is done. */
static void
tls_handshake(struct conn *c)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		n_tls++;
		if (SSL_session_reused(c->ssl))
			n_tls_resumed++;
		if (n_tls == 1)
			snprintf(tls_agreed, sizeof(tls_agreed), "%s/%s",
			    SSL_get_version(c->ssl),
			    SSL_get_cipher_name(c->ssl));
		request(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		ep_set(c, EPOLLIN);
	else if (e == SSL_ERROR_WANT_WRITE)
		ep_set(c, EPOLLIN | EPOLLOUT);
	else {
		tls_reason(c, r, "TLS handshake");
		conn_fail(c, E_TLS, "%s", io_err);
	}
}

/* The upgrade request, once the socket (and TLS) is up. */
static void
request(struct conn *c)
{
	uint8_t *p;
	int n;

	p = out_reserve(c, MAX_HEAD);
	n = snprintf((char *)p, MAX_HEAD,
	    "GET %s HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "%s"
	    "User-Agent: %s\r\n"
	    "\r\n", opt.path, host_headers[c->dsti], c->key,
	    opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
	    "client_max_window_bits\r\n" : "", ua_value);
	if (n < 0 || n >= MAX_HEAD)
		die("request head too long");
	c->out_len += (size_t)n;
	c->state = C_UPGRADING;
	conn_flush(c);
}

static void mode_open(struct conn *c);
static void mode_reply(struct conn *c, const struct jreply *r, uint64_t now);
static void mode_closed(struct conn *c, uint64_t now);

/* Case-insensitive: does the comma-separated list v hold token t? */
static int
has_token(const char *v, size_t n, const char *t)
{
	size_t tn = strlen(t), i = 0, s, e;

	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tn && strncasecmp(v + s, t, tn) == 0)
			return 1;
	}
	return 0;
}

/* Check a complete response head of hl bytes. */
/* The server's answer to -z's offer: the streams, with the windows and
 * context rules it chose (RFC 7692 7.1).  -1 when it is not a valid
 * answer to that offer. */
static int
deflate_accepted(struct conn *c, const char *v, size_t n)
{
	int swb = 15, cwb = 15, snct = 0, cnct = 0;
	const char *p = v, *end = v + n, *t;
	size_t tl;

	if (n < 18 || strncasecmp(v, "permessage-deflate", 18) != 0)
		return -1;
	p += 18;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
			p++;
		t = p;
		while (p < end && *p != ';' && *p != ' ' && *p != ',')
			p++;
		tl = (size_t)(p - t);
		if (tl == 0)
			break;
		if (tl == 26 && strncmp(t, "server_no_context_takeover", tl) == 0)
			snct = 1;
		else if (tl == 26 &&
		    strncmp(t, "client_no_context_takeover", tl) == 0)
			cnct = 1;
		else if (tl > 23 && strncmp(t, "server_max_window_bits=", 23) == 0)
			swb = atoi(t + 23);
		else if (tl > 23 && strncmp(t, "client_max_window_bits=", 23) == 0)
			cwb = atoi(t + 23);
		else
			return -1;
	}
	if (swb < 8 || swb > 15 || cwb < 9 || cwb > 15)
		return -1;
	c->zneg = 1;
	c->zcwb = cwb;
	c->znct_in = snct;
	c->znct_out = cnct;
	n_deflate++;
	return 0;
}

/* -z: inflate a compressed message into *out_r (a buffer of its
 * own: the reply it holds is read while the next ping is compressed);
 * -1 on bad data. */
static ssize_t
inflate_msg(struct conn *c, const uint8_t *p, size_t n, uint8_t **out_r)
{
	static uint8_t *buf;
	static size_t cap;
	static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
	z_stream *z;
	size_t out = 0;
	int r, pass;

	if (c->zin == NULL) {
		/* inflate with the largest window: always enough */
		c->zin = xrealloc(NULL, sizeof(z_stream));
		memset(c->zin, 0, sizeof(z_stream));
		if (inflateInit2(c->zin, -15) != Z_OK)
			die("zlib: out of memory");
	}
	z = c->zin;

	if (buf == NULL) {
		cap = 4096;
		buf = xrealloc(NULL, cap);
	}
	for (pass = 0; pass < 2; pass++) {
		z->next_in = (Bytef *)(uintptr_t)(pass == 0 ? p : tail);
		z->avail_in = (uInt)(pass == 0 ? n : 4);
		do {
			if (out == cap) {
				if (cap >= MAX_FRAME)
					return -1;
				cap *= 2;
				buf = xrealloc(buf, cap);
			}
			z->next_out = buf + out;
			z->avail_out = (uInt)(cap - out);
			r = inflate(z, Z_SYNC_FLUSH);
			out = cap - z->avail_out;
			if (r == Z_STREAM_END) {
				inflateReset(z);
				break;
			}
			if (r != Z_OK && r != Z_BUF_ERROR)
				return -1;
		} while (z->avail_out == 0);
	}
	if (c->znct_in)
		inflateReset(z);
	*out_r = buf;
	return (ssize_t)out;
}

static int
check_101(struct conn *c, const char *h, size_t hl)
{
	unsigned char sha[SHA_DIGEST_LENGTH];
	char want[29], keyguid[24 + sizeof(WS_GUID)];
	const char *line, *eol, *end = h + hl - 2, *colon, *v;
	size_t vn;
	int upgrade = 0, connection = 0, accept = 0;

	memcpy(keyguid, c->key, 24);
	memcpy(keyguid + 24, WS_GUID, sizeof(WS_GUID) - 1);
	SHA1((unsigned char *)keyguid, 24 + sizeof(WS_GUID) - 1, sha);
	EVP_EncodeBlock((unsigned char *)want, sha, sizeof(sha));

	if (hl < 13 || memcmp(h, "HTTP/1.1 101 ", 13) != 0) {
		eol = memchr(h, '\r', hl);
		conn_fail(c, E_HANDSHAKE, "status line \"%.*s\"",
		    (int)(eol != NULL ? eol - h : 40), h);
		return -1;
	}
	line = memchr(h, '\n', hl);
	if (line == NULL || line[-1] != '\r')
		goto malformed;
	for (line++; line < end; line = eol + 2) {
		eol = memchr(line, '\r', (size_t)(end - line) + 1);
		if (eol == NULL || eol[1] != '\n')
			goto malformed;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (colon == NULL || colon == line)
			goto malformed;
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		vn = (size_t)(eol - v);
		while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
			vn--;
#define IS(name) ((size_t)(colon - line) == sizeof(name) - 1 && \
	strncasecmp(line, name, sizeof(name) - 1) == 0)
		if (IS("Upgrade"))
			upgrade += vn == 9 && strncasecmp(v, "websocket", 9) == 0;
		else if (IS("Connection"))
			connection += has_token(v, vn, "upgrade");
		else if (IS("Sec-WebSocket-Accept")) {
			if (vn != 28 || memcmp(v, want, 28) != 0) {
				conn_fail(c, E_HANDSHAKE, "Sec-WebSocket-Accept "
				    "\"%.*s\", expected \"%s\"", (int)vn, v,
				    want);
				return -1;
			}
			accept++;
		} else if (IS("Sec-WebSocket-Extensions") && opt.deflate &&
		    !c->zneg) {
			if (deflate_accepted(c, v, vn) == -1) {
				conn_fail(c, E_HANDSHAKE, "unexpected answer "
				    "to the permessage-deflate offer: \"%.*s\"",
				    (int)vn, v);
				return -1;
			}
		} else if (IS("Sec-WebSocket-Extensions") ||
		    IS("Sec-WebSocket-Protocol")) {
			conn_fail(c, E_HANDSHAKE, "%.*s in the response, but "
			    "none was offered", (int)(colon - line), line);
			return -1;
		}
#undef IS
	}
	if (upgrade != 1 || connection != 1 || accept != 1) {
		conn_fail(c, E_HANDSHAKE, "101 without exactly one of %s%s%s",
		    upgrade != 1 ? "Upgrade: websocket " : "",
		    connection != 1 ? "Connection: upgrade " : "",
		    accept != 1 ? "Sec-WebSocket-Accept" : "");
		return -1;
	}
	return 0;
malformed:
	conn_fail(c, E_HANDSHAKE, "malformed response head");
	return -1;
}

static int
close_code_valid(unsigned code)
{
	return (code >= 1000 && code <= 1003) ||
	    (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
}

/* A complete message. */
static void
deliver(struct conn *c, uint8_t op, const uint8_t *p, size_t n, uint64_t now)
{
	struct jreply r;
	uint8_t *zp;
	ssize_t zn;

	if (c->msg_z) {
		c->msg_z = 0;
		if ((zn = inflate_msg(c, p, n, &zp)) == -1) {
			conn_fail(c, E_FRAME, "compressed message does not "
			    "inflate");
			return;
		}
		p = zp;
		n = (size_t)zn;
	}
	if (op == 0x2) {
		conn_fail(c, E_REPLY, "unexpected binary message of %zu bytes",
		    n);
		return;
	}
	if (!utf8_valid(p, n)) {
		conn_fail(c, E_FRAME, "text message is not valid UTF-8");
		return;
	}
	if (json_reply(p, n, &r) == -1) {
		conn_fail(c, E_REPLY, "not a JSON object: \"%.*s\"",
		    (int)(n > 80 ? 80 : n), p);
		return;
	}
	if (c->state == C_GREETING) {
		if (!type_is(&r, "connection_established")) {
			conn_fail(c, E_REPLY, "expected connection_established,"
			    " got \"%.*s\"", (int)(n > 80 ? 80 : n), p);
			return;
		}
		n_greeted++;
		c->state = C_OPEN;
		n_open++;
		c->deadline = 0;
		mode_open(c);
		return;
	}
	if (c->state != C_OPEN) {
		conn_fail(c, E_REPLY, "message after our close frame: \"%.*s\"",
		    (int)(n > 80 ? 80 : n), p);
		return;
	}
	mode_reply(c, &r, now);
	(void)p;
}

/* One complete frame. */
static void
frame(struct conn *c, int fin, uint8_t op, const uint8_t *p, size_t n,
    uint64_t now)
{
	unsigned code;

	switch (op) {
	case 0x0:
		if (c->msg_op == 0) {
			conn_fail(c, E_FRAME, "continuation frame outside a "
			    "message");
			return;
		}
		if (c->msg_len + n > MAX_FRAME) {
			conn_fail(c, E_FRAME, "fragmented message too large");
			return;
		}
		if (c->msg_len + n > c->msg_cap) {
			c->msg_cap = c->msg_len + n;
			c->msg = xrealloc(c->msg, c->msg_cap);
		}
		memcpy(c->msg + c->msg_len, p, n);
		c->msg_len += n;
		if (fin) {
			uint8_t *m = c->msg;
			size_t mn = c->msg_len;
			uint8_t mop = c->msg_op;

			c->msg = NULL;
			c->msg_len = c->msg_cap = 0;
			c->msg_op = 0;
			deliver(c, mop, m, mn, now);
			free(m);
		}
		return;
	case 0x1:
	case 0x2:
		if (c->msg_op != 0) {
			conn_fail(c, E_FRAME, "new message inside a fragmented "
			    "one");
			return;
		}
		if (fin) {
			deliver(c, op, p, n, now);
			return;
		}
		c->msg_op = op;
		c->msg = xrealloc(c->msg, n > 0 ? n : 1);
		c->msg_cap = n > 0 ? n : 1;
		memcpy(c->msg, p, n);
		c->msg_len = n;
		return;
	case 0x9:
		n_server_pings++;
		if (c->state == C_OPEN || c->state == C_GREETING)
			frame_queue(c, 0xA, p, n);
		return;
	case 0xA:
		return; /* unsolicited pongs are allowed (RFC 6455 5.5.3) */
	case 0x8:
		if (n == 1) {
			conn_fail(c, E_FRAME, "close frame with a 1-byte body");
			return;
		}
		code = n >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
		if (n >= 2 && !close_code_valid(code)) {
			conn_fail(c, E_FRAME, "close code %u is not allowed on "
			    "the wire", code);
			return;
		}
		if (n > 2 && !utf8_valid(p + 2, n - 2)) {
			conn_fail(c, E_FRAME, "close reason is not UTF-8");
			return;
		}
		if (c->state != C_CLOSING) {
			conn_fail(c, E_CLOSED, "server closed with %u \"%.*s\"",
			    code, n > 2 ? (int)(n - 2) : 0,
			    n > 2 ? (const char *)p + 2 : "");
			return;
		}
		if (code != 1000 && code != 1005) {
			conn_fail(c, E_REPLY, "close answered with %u, not "
			    "1000", code);
			return;
		}
		n_open--;
		c->state = C_WAIT_EOF;
		/* Over TLS our close_notify says the same again to the TLS
		 * layer: libwebsockets waits for it before it ends the
		 * connection. */
		if (c->ssl != NULL) {
			ERR_clear_error();
			if (SSL_shutdown(c->ssl) < 0)
				ERR_clear_error();
		}
		return;
	}
}

/* Parse frames from p; keep a partial one for the next read. */
static void
frames(struct conn *c, uint8_t *p, size_t len, uint64_t now)
{
	while (len >= 2) {
		uint8_t b0 = p[0], b1 = p[1], op = b0 & 0x0F;
		uint64_t n = b1 & 0x7F;
		size_t hl = 2;
		int fin = b0 >> 7;

		if (c->state == C_WAIT_EOF) {
			conn_fail(c, E_FRAME, "data after the close frame");
			return;
		}
		if ((b0 & 0x70) && !(c->zneg && (b0 & 0x70) == 0x40 &&
		    (op == 0x1 || op == 0x2))) {
			conn_fail(c, E_FRAME, "RSV bits set (0x%02x) %s", b0,
			    c->zneg ? "where permessage-deflate allows "
			    "none" : "without an extension");
			return;
		}
		if (b1 & 0x80) {
			conn_fail(c, E_FRAME, "masked server frame");
			return;
		}
		if (op != 0x0 && op != 0x1 && op != 0x2 && op != 0x8 &&
		    op != 0x9 && op != 0xA) {
			conn_fail(c, E_FRAME, "unknown opcode 0x%x", op);
			return;
		}
		if (n == 126) {
			if (len < 4)
				break;
			n = (uint64_t)p[2] << 8 | p[3];
			hl = 4;
			if (n < 126) {
				conn_fail(c, E_FRAME, "length %" PRIu64
				    " not minimally encoded", n);
				return;
			}
		} else if (n == 127) {
			if (len < 10)
				break;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = n << 8 | p[2 + i];
			hl = 10;
			if (n >> 63) {
				conn_fail(c, E_FRAME, "64-bit length with the "
				    "top bit set");
				return;
			}
			if (n <= 0xFFFF) {
				conn_fail(c, E_FRAME, "length %" PRIu64
				    " not minimally encoded", n);
				return;
			}
		}
		if (op >= 0x8 && (!fin || n > 125)) {
			conn_fail(c, E_FRAME, "control frame 0x%x %s", op,
			    !fin ? "fragmented" : "longer than 125 bytes");
			return;
		}
		if (n > MAX_FRAME) {
			conn_fail(c, E_FRAME, "frame of %" PRIu64 " bytes, "
			    "more than this client takes", n);
			return;
		}
		if (len < hl + n)
			break;
		if (op == 0x1 || op == 0x2)
			c->msg_z = (b0 & 0x40) != 0;
		frame(c, fin, op, p + hl, (size_t)n, now);
		if (c->state == C_FREE)
			return;
		p += hl + n;
		len -= hl + n;
	}
	if (len > 0) {
		c->in = xrealloc(c->in, len);
		memcpy(c->in, p, len);
	}
	c->in_len = len;
}

static void
conn_readable(struct conn *c, uint64_t now)
{
	size_t have = c->in_len, len;
	const uint8_t *eoh;
	ssize_t n;

	/* A partial frame or head from the last read goes in front. */
	if (have > 0) {
		memcpy(rbuf, c->in, have);
		free(c->in);
		c->in = NULL;
		c->in_len = 0;
	}
	n = io_read(c, rbuf + have, RBUF_SIZE - have);
	if (n == -1) {
		if (errno == EAGAIN || errno == EINTR) {
			if (have > 0) {
				c->in = xrealloc(NULL, have);
				memcpy(c->in, rbuf, have);
				c->in_len = have;
			}
			return;
		}
		conn_fail(c, c->ssl != NULL && errno == EPROTO ? E_TLS :
		    E_CLOSED, "%s", io_err);
		return;
	}
	if (n == 0) {
		if (c->state == C_WAIT_EOF && have == 0) {
			mode_closed(c, now);
			return;
		}
		conn_fail(c, E_CLOSED, "connection closed by the server %s",
		    c->state == C_UPGRADING ? "before the 101" :
		    c->state == C_CLOSING ? "without a close frame" :
		    have > 0 ? "inside a frame" : "without a close frame");
		return;
	}
	len = have + (size_t)n;
	if (phase == P_MEASURE)
		wire_in += (size_t)n;
	if (c->state == C_UPGRADING) {
		eoh = memmem(rbuf, len, "\r\n\r\n", 4);
		if (eoh == NULL) {
			if (len >= MAX_HEAD) {
				conn_fail(c, E_HANDSHAKE, "response head "
				    "longer than %d bytes", MAX_HEAD);
				return;
			}
			c->in = xrealloc(NULL, len);
			memcpy(c->in, rbuf, len);
			c->in_len = len;
			return;
		}
		if (check_101(c, (const char *)rbuf,
		    (size_t)(eoh + 4 - rbuf)) == -1)
			return;
		if (opt.mode == MODE_HANDSHAKE && phase == P_MEASURE)
			h_record(&hist, now - c->t_start);
		if (opt.greeting)
			c->state = C_GREETING;
		else {
			c->state = C_OPEN;
			n_open++;
			c->deadline = 0;
			mode_open(c);
			if (c->state == C_FREE)
				return;
		}
		frames(c, (uint8_t *)eoh + 4, len - (size_t)(eoh + 4 - rbuf),
		    now);
	} else
		frames(c, rbuf, len, now);
	if (c->state != C_FREE)
		conn_flush(c);
}

/* ---- modes -------------------------------------------------------- */

/* fanout: publish until opt.depth messages are in flight, each numbered
 * (next_id) and timed in the publisher's ring. */
static void
fan_publish(uint64_t now)
{
	struct conn *c = &conns[0];
	char text[96];
	unsigned slot;
	int n;

	if (c->state != C_OPEN)
		return;
	while (c->inflight < opt.depth) {
		slot = (c->ring_head + c->inflight) % opt.depth;
		n = snprintf(text, sizeof(text), "{\"type\":\"publish\","
		    "\"channel\":\"" FAN_CHANNEL "\",\"data\":%" PRIu64 "}",
		    next_id);
		c->ring_id[slot] = next_id++;
		c->ring_ts[slot] = now;
		fan_count[slot] = 0;
		c->inflight++;
		frame_queue(c, 0x1, text, (size_t)n);
	}
	conn_flush(c);
}

/* fanout: a subscriber's message; every subscriber must have 1, 2, 3...
 * exactly once and in order. */
static void
fan_message(struct conn *c, const struct jreply *r, uint64_t now)
{
	struct conn *pub = &conns[0];
	unsigned slot;

	if (!type_is(r, "message") || !r->has_data) {
		conn_fail(c, E_REPLY, "expected a message with an integer "
		    "data, got type \"%.*s\"", (int)r->type_len,
		    r->type != NULL ? r->type : "");
		return;
	}
	if (r->data != c->fan_next) {
		conn_fail(c, E_REPLY, "message %" PRIu64 ", expected %" PRIu64
		    " (lost, repeated or out of order)", r->data, c->fan_next);
		return;
	}
	c->fan_next++;
	if (pub->inflight == 0 || r->data < pub->ring_id[pub->ring_head] ||
	    r->data >= pub->ring_id[pub->ring_head] + pub->inflight) {
		conn_fail(c, E_REPLY, "message %" PRIu64 " was not in flight",
		    r->data);
		return;
	}
	slot = (pub->ring_head + (unsigned)(r->data -
	    pub->ring_id[pub->ring_head])) % opt.depth;
	if (phase == P_MEASURE) {
		n_msgs++;
		h_record(&hist, now - pub->ring_ts[slot]);
	}
	n_replies++;
	/* Each subscriber gets them in order, so the oldest completes
	 * first. */
	if (++fan_count[slot] == opt.conns && slot == pub->ring_head) {
		pub->ring_head = (slot + 1) % opt.depth;
		pub->inflight--;
		n_fan_done++;
		if (phase == P_MEASURE)
			n_fan_measured++;
	}
}

static void
mode_open(struct conn *c)
{
	static const char sub[] = "{\"type\":\"subscribe\",\"channel\":\""
	    FAN_CHANNEL "\",\"id\":1}";

	switch (opt.mode) {
	case MODE_FANOUT:
		if (c->idx == 0)
			return; /* the publisher starts once all subscribed */
		c->ring_id[c->ring_head] = 1;
		c->ring_ts[c->ring_head] = now_ns();
		c->inflight = 1;
		frame_queue(c, 0x1, sub, sizeof(sub) - 1);
		return;
	case MODE_PING:
		return; /* the load starts when every one is open */
	case MODE_HANDSHAKE:
		close_queue(c);
		return;
	case MODE_IDLE:
		if (phase == P_PROBE)
			ping_queue(c, now_ns());
		return;
	}
}

static void
mode_reply(struct conn *c, const struct jreply *r, uint64_t now)
{
	unsigned slot = c->ring_head;

	if (opt.mode == MODE_FANOUT) {
		if (c->idx == 0)
			conn_fail(c, E_REPLY, "the publisher got type \"%.*s\"",
			    (int)r->type_len, r->type != NULL ? r->type : "");
		else if (c->inflight == 0)
			fan_message(c, r, now);
		else if (!type_is(r, "subscribed") || !r->has_id ||
		    r->id != 1)
			conn_fail(c, E_REPLY, "expected subscribed with id 1, "
			    "got type \"%.*s\"", (int)r->type_len,
			    r->type != NULL ? r->type : "");
		else {
			c->inflight = 0;
			c->deadline = 0;
			n_subscribed++;
		}
		return;
	}
	if (!type_is(r, "pong")) {
		conn_fail(c, E_REPLY, "expected a pong, got type \"%.*s\"",
		    (int)r->type_len, r->type != NULL ? r->type : "");
		return;
	}
	if (c->inflight == 0) {
		conn_fail(c, E_REPLY, "pong with no ping in flight");
		return;
	}
	if (opt.check_id && (!r->has_id || r->id != c->ring_id[slot])) {
		if (r->has_id)
			conn_fail(c, E_REPLY, "pong id %" PRIu64 ", expected %"
			    PRIu64, r->id, c->ring_id[slot]);
		else
			conn_fail(c, E_REPLY, "pong without an integer id, "
			    "expected %" PRIu64, c->ring_id[slot]);
		return;
	}
	c->ring_head = (slot + 1) % opt.depth;
	c->inflight--;
	n_replies++;
	c->deadline = 0;
	switch (opt.mode) {
	case MODE_PING:
		if (phase == P_MEASURE) {
			n_msgs++;
			h_record(&hist, now - c->ring_ts[slot]);
			/* A wait that began before the window and ended in
			 * it counts whole: it is what the client saw. */
			if (now > c->last_reply &&
			    now - c->last_reply > c->max_gap)
				c->max_gap = now - c->last_reply;
		}
		c->last_reply = now;
		if (phase == P_WARMUP || phase == P_MEASURE)
			ping_queue(c, now);
		return;
	case MODE_IDLE:
		if (phase == P_PROBE)
			close_queue(c);
		else
			n_verified++;
		return;
	case MODE_HANDSHAKE:
	case MODE_FANOUT:
		return;
	}
}

/* A connection finished its close handshake cleanly. */
static void
mode_closed(struct conn *c, uint64_t now)
{
	conn_release(c);
	if (opt.mode == MODE_IDLE && phase == P_PROBE)
		probe_done = 1;
	if (opt.mode == MODE_HANDSHAKE) {
		if (phase == P_MEASURE)
			n_handshakes++;
		if (phase == P_WARMUP || phase == P_MEASURE)
			conn_start(c);
	}
	(void)now;
}

static unsigned
count_state(enum cstate s)
{
	unsigned i, n = 0;

	for (i = 0; i < nconns; i++)
		n += conns[i].state == s;
	return n;
}

static unsigned
count_busy(void)
{
	return nconns - count_state(C_FREE);
}

static void
measure_begin(uint64_t now)
{
	unsigned i, open = 0;

	phase = P_MEASURE;
	t_measure_start = now;
	phase_end = now + (uint64_t)(opt.duration * 1e9);
	cli_cpu0 = cpu_self();
	if (opt.server_pid > 0)
		srv_cpu0 = cpu_of(opt.server_pid);
	if (opt.mode != MODE_PING && opt.mode != MODE_FANOUT)
		return;
	for (i = 0; i < nconns; i++)
		if (conns[i].state == C_OPEN) {
			conns[i].measured = 1;
			open++;
		}
	/* For a program that acts on the server during the window (bench/run
	 * sends SIGHUP): the window starts now. */
	printf("measuring connections=%u\n", open);
	fflush(stdout);
}

static void
measure_end(uint64_t now)
{
	unsigned i;

	t_measure_end = now;
	cli_cpu1 = cpu_self();
	if (opt.server_pid > 0)
		srv_cpu1 = cpu_of(opt.server_pid);
	if (opt.mode != MODE_PING)
		return;
	/* A wait still going on at the end is a wait too: a connection
	 * stalled for the last second must not look like one that never
	 * waited. */
	for (i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];

		if (c->state == C_OPEN && now > c->last_reply &&
		    now - c->last_reply > c->max_gap)
			c->max_gap = now - c->last_reply;
	}
}

static void
close_all(void)
{
	unsigned i;

	for (i = 0; i < nconns; i++)
		if (conns[i].state == C_OPEN) {
			close_queue(&conns[i]);
			conn_flush(&conns[i]);
		}
	phase = P_CLOSE;
}

static void
idle_ramp(void)
{
	static unsigned next;
	unsigned busy = (unsigned)(n_started - n_failed) - (unsigned)n_open;

	/* Keep at most -C handshakes in progress. */
	while (next < nconns && busy < opt.concurrency) {
		conn_start(&conns[next++]);
		busy++;
	}
}

/* Move the run along: called after every batch of events. */
static void
advance(uint64_t now)
{
	unsigned i;

	switch (opt.mode) {
	case MODE_PING:
		if (phase == P_RAMP && n_open + n_failed >= nconns) {
			/* Every connection is open: D pings on each. */
			for (i = 0; i < nconns; i++) {
				struct conn *o = &conns[i];

				if (o->state != C_OPEN)
					continue;
				while (o->inflight < opt.depth)
					ping_queue(o, now);
				o->last_reply = now;
				conn_flush(o);
			}
			phase = n_open > 0 ? P_WARMUP : P_DONE;
			phase_end = now + (uint64_t)(opt.warmup * 1e9);
		}
		if (phase == P_WARMUP && (now >= phase_end || got_signal))
			measure_begin(now);
		if (phase == P_MEASURE && (now >= phase_end || got_signal)) {
			measure_end(now);
			phase = P_DRAIN;
			phase_end = now + (uint64_t)(opt.timeout * 1e9);
		}
		if (phase == P_DRAIN) {
			unsigned pending = 0;

			for (i = 0; i < nconns; i++)
				if (conns[i].state == C_OPEN)
					pending += conns[i].inflight;
			if (pending == 0)
				close_all();
		}
		break;
	case MODE_FANOUT:
		/* A lost connection would leave its messages in flight
		 * forever: the run ends (with errors, so exit 1). */
		if (n_failed > 0 && phase != P_CLOSE && phase != P_DONE) {
			if (phase == P_MEASURE)
				measure_end(now);
			/* Those still on their way in are given up. */
			for (i = 0; i < nconns; i++)
				if (conns[i].state != C_FREE &&
				    conns[i].state != C_OPEN &&
				    conns[i].state != C_CLOSING &&
				    conns[i].state != C_WAIT_EOF)
					conn_release(&conns[i]);
			close_all();
			break;
		}
		if (phase == P_RAMP && n_subscribed == opt.conns &&
		    conns[0].state == C_OPEN) {
			/* Let every node's subscription reach the bus (on
			 * Redis, the node's SUBSCRIBE) before publishing. */
			phase = P_HOLD;
			phase_end = now + (uint64_t)(opt.settle * 1e9);
		}
		if (phase == P_HOLD && now >= phase_end) {
			phase = P_WARMUP;
			phase_end = now + (uint64_t)(opt.warmup * 1e9);
		}
		if (phase == P_WARMUP && (now >= phase_end || got_signal))
			measure_begin(now);
		if (phase == P_MEASURE && (now >= phase_end || got_signal)) {
			measure_end(now);
			phase = P_DRAIN;
		}
		if (phase == P_WARMUP || phase == P_MEASURE)
			fan_publish(now);
		if (phase == P_DRAIN && conns[0].inflight == 0)
			close_all();
		break;
	case MODE_HANDSHAKE:
		if (phase == P_RAMP) {
			for (i = 0; i < nconns; i++)
				conn_start(&conns[i]);
			phase = P_WARMUP;
			phase_end = now + (uint64_t)(opt.warmup * 1e9);
		}
		if (phase == P_WARMUP && (now >= phase_end || got_signal))
			measure_begin(now);
		if (phase == P_MEASURE && (now >= phase_end || got_signal)) {
			measure_end(now);
			phase = P_CLOSE; /* let the ones in progress finish */
		}
		/* A slot whose connection failed starts another. */
		if (phase == P_WARMUP || phase == P_MEASURE)
			for (i = 0; i < nconns; i++)
				if (conns[i].state == C_FREE)
					conn_start(&conns[i]);
		break;
	case MODE_IDLE:
		/* One connection through greeting, ping and close before the
		 * RSS is read, so what a server sets up once, lazily (a
		 * crypto provider, a JIT, buffers) is not counted per
		 * connection. */
		if (phase == P_PROBE && conns[0].state == C_FREE) {
			if (n_started == 0)
				conn_start(&conns[0]);
			else if (probe_done) {
				if (opt.server_pid > 0)
					rss0_kib = rss_of(opt.server_pid);
				n_started = 0;
				phase = P_RAMP;
			} else
				phase = P_DONE; /* the probe failed */
		}
		if (phase == P_RAMP) {
			idle_ramp();
			if (n_open + n_failed >= nconns &&
			    n_started >= nconns) {
				phase = P_HOLD;
				/* Let the server settle before reading RSS. */
				phase_end = now + (uint64_t)(opt.settle * 1e9);
			}
		}
		if (phase == P_HOLD && !ready && now >= phase_end) {
			ready = 1;
			n_idle_target = (unsigned)n_open;
			if (opt.server_pid > 0)
				rss1_kib = rss_of(opt.server_pid);
			printf("ready connections=%u failed=%" PRIu64
			    " server_rss_kib=%ld\n", n_idle_target, n_failed,
			    rss1_kib);
			fflush(stdout);
			phase_end = now + (uint64_t)(opt.duration * 1e9);
			if (n_open == 0)
				phase = P_DONE;
		}
		if (phase == P_HOLD && ready &&
		    ((opt.duration > 0 && now >= phase_end) || got_signal)) {
			phase = P_VERIFY;
			phase_end = now + (uint64_t)(opt.timeout * 1e9);
			for (i = 0; i < nconns; i++)
				if (conns[i].state == C_OPEN) {
					ping_queue(&conns[i], now);
					conn_flush(&conns[i]);
				}
		}
		if (phase == P_VERIFY) {
			unsigned pending = 0;

			for (i = 0; i < nconns; i++)
				if (conns[i].state == C_OPEN)
					pending += conns[i].inflight;
			if (pending == 0)
				close_all();
		}
		break;
	}
	if (phase == P_CLOSE && count_busy() == 0)
		phase = P_DONE;
}

/* Fail whatever waited longer than -T.  now may be older than a stamp
 * taken while the last batch of events was handled. */
static void
check_deadlines(uint64_t now)
{
	uint64_t limit = (uint64_t)(opt.timeout * 1e9);
	unsigned i;

	for (i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];

		if (c->state == C_FREE)
			continue;
		if (c->deadline != 0 && now > c->deadline)
			conn_fail(c, E_TIMEOUT, "no answer in %.1f s (%s)",
			    opt.timeout,
			    c->state == C_CONNECTING ? "connecting" :
			    c->state == C_TLS ? "in the TLS handshake" :
			    c->state == C_UPGRADING ? "waiting for the 101" :
			    c->state == C_GREETING ? "waiting for the greeting"
			    : c->state == C_CLOSING ? "waiting for the close"
			    : "waiting for the server to end the connection");
		else if (c->state == C_OPEN && c->inflight > 0 &&
		    now > c->ring_ts[c->ring_head] &&
		    now - c->ring_ts[c->ring_head] > limit)
			conn_fail(c, E_TIMEOUT, opt.mode == MODE_FANOUT ?
			    (c->idx == 0 ? "message %" PRIu64 " not delivered "
			    "to every subscriber in %.1f s" : "no answer to "
			    "subscribe (id %" PRIu64 ") in %.1f s") :
			    "no pong for id %" PRIu64 " in %.1f s",
			    c->ring_id[c->ring_head], opt.timeout);
	}
}

/* ---- main --------------------------------------------------------- */

static void
on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: wsplugd-bench [-m ping|handshake|idle|fanout] [-h host] "
	    "[-p port[,port...]]\n"
	    "                     [-P path]\n"
	    "                     [-c connections] [-d depth] [-C concurrency] "
	    "[-t seconds]\n"
	    "                     [-w seconds] [-T seconds] [-s seconds] "
	    "[-x pid] [-b range]\n"
	    "                     [-g ms] [-A user-agent] [-U length] [-S size] "
	    "[-G] [-n] [-z]\n"
	    "                     [-L] [-K ca-file] [-V] [-H]\n"
	    "  -m mode   ping (default), handshake, idle or fanout\n"
	    "  -h host   server address (127.0.0.1); -p port (8080); "
	    "-P path (/ws)\n"
	    "            several ports: connections spread over them in "
	    "turn\n"
	    "  -c n      connections: ping 100, handshake 50 at a time, "
	    "idle 1000,\n"
	    "            fanout 1000 subscribers (and one publisher)\n"
	    "  -d n      ping: messages in flight per connection (1); "
	    "fanout: messages\n"
	    "            published and not yet delivered to every "
	    "subscriber (1)\n"
	    "  -g ms     ping: count connections that waited longer for a "
	    "reply (50)\n"
	    "  -C n      idle: handshakes in progress at once (256)\n"
	    "  -t s      measured seconds (5); idle: seconds held, 0 = until "
	    "SIGINT\n"
	    "  -w s      warm-up seconds before measuring (1)\n"
	    "  -T s      longest wait for any answer (10)\n"
	    "  -s s      idle: settle time before reading the RSS (1); "
	    "fanout: between\n"
	    "            the last subscription and the first publish\n"
	    "  -x pid    sample this server process's CPU time and RSS\n"
	    "  -b range  source addresses, e.g. 127.0.0.2-127.0.0.255 "
	    "(default for a\n"
	    "            127/8 server in idle and handshake modes), or "
	    "none\n"
	    "  -A ua     User-Agent; -U n pads or cuts it to n bytes\n"
	    "  -G        do not expect a connection_established greeting\n"
	    "  -n        accept pongs without checking their id\n"
	    "  -z        offer permessage-deflate; compress when accepted\n"
	    "  -S n      ping: pad each ping with JSON to about n bytes\n"
	    "  -L        wss://: TLS 1.3, every handshake a full one, the "
	    "certificate\n"
	    "            not checked; -K ca-file checks it (and implies -L)\n"
	    "  -V        print the version; -H this help\n");
}

static double
num_arg(const char *s, double min, double max, int ch)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		die("-%c: \"%s\" is not a number from %g to %g", ch, s, min,
		    max);
	return v;
}

static void
parse_range(const char *s)
{
	char a[64], *dash;
	struct in_addr lo, hi;

	if (strcmp(s, "none") == 0) {
		opt.src_first = opt.src_last = 0;
		opt.src_set = 1;
		return;
	}
	if (strlen(s) >= sizeof(a))
		die("-b: bad range \"%s\"", s);
	strcpy(a, s);
	if ((dash = strchr(a, '-')) == NULL)
		dash = a + strlen(a);
	else
		*dash++ = '\0';
	if (inet_pton(AF_INET, a, &lo) != 1 ||
	    (*dash != '\0' && inet_pton(AF_INET, dash, &hi) != 1))
		die("-b: bad range \"%s\" (want A.B.C.D-A.B.C.D)", s);
	if (*dash == '\0')
		hi = lo;
	opt.src_first = ntohl(lo.s_addr);
	opt.src_last = ntohl(hi.s_addr);
	if (opt.src_first == 0 || opt.src_last < opt.src_first)
		die("-b: bad range \"%s\"", s);
	opt.src_set = 1;
}

static void
setup(void)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai;
	struct rlimit rl;
	const char *p, *comma;
	size_t n;
	int rc;
	unsigned i;

	/* -p PORT,PORT...: the same host, several servers (nodes). */
	for (p = opt.port; ; p = comma + 1) {
		char port[16];

		comma = strchr(p, ',');
		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n == 0 || n >= sizeof(port))
			die("-p: bad port list \"%s\"", opt.port);
		if (ndst == MAX_DST)
			die("-p: at most %d ports", MAX_DST);
		memcpy(port, p, n);
		port[n] = '\0';
		if ((rc = getaddrinfo(opt.host, port, &hints, &ai)) != 0)
			die("%s:%s: %s", opt.host, port, gai_strerror(rc));
		memcpy(&dsts[ndst], ai->ai_addr, ai->ai_addrlen);
		dst_lens[ndst] = ai->ai_addrlen;
		freeaddrinfo(ai);
		snprintf(host_headers[ndst], sizeof(host_headers[ndst]),
		    dsts[ndst].ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		    opt.host, port);
		ndst++;
		if (comma == NULL)
			break;
	}

	if (!opt.src_set && dst.ss_family == AF_INET &&
	    opt.mode != MODE_PING &&
	    (ntohl(((struct sockaddr_in *)&dst)->sin_addr.s_addr) >> 24) ==
	    127)
		parse_range("127.0.0.2-127.0.0.255");
	src_next = opt.src_first;

	n = strlen(opt.ua);
	if (opt.ua_len < 0)
		opt.ua_len = (long)n;
	ua_value = xrealloc(NULL, (size_t)opt.ua_len + 1);
	for (i = 0; i < (unsigned)opt.ua_len; i++)
		ua_value[i] = i < n ? opt.ua[i] : 'x';
	ua_value[opt.ua_len] = '\0';

	/* One descriptor per connection. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)nconns + 16 > rl.rlim_cur)
		die("%u connections need more descriptors than the limit of "
		    "%llu (ulimit -Hn)", nconns,
		    (unsigned long long)rl.rlim_cur);

	if (getrandom(&rng_state, sizeof(rng_state), 0) !=
	    sizeof(rng_state) || rng_state == 0)
		rng_state = (uint64_t)now_ns() | 1;
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1: %s", strerror(errno));
	rbuf = xrealloc(NULL, RBUF_SIZE);
	fan_count = calloc(opt.depth, sizeof(*fan_count));
	if (fan_count == NULL)
		die("out of memory");
	conns = calloc(nconns, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	for (i = 0; i < nconns; i++) {
		conns[i].fd = -1;
		conns[i].idx = i;
		conns[i].state = C_FREE;
		/* fanout: the publisher (0) on the first port, subscribers
		 * spread over all of them in turn */
		conns[i].dsti = opt.mode != MODE_FANOUT ? i % ndst :
		    i == 0 ? 0 : (i - 1) % ndst;
		conns[i].fan_next = 1;
		conns[i].ring_id = xrealloc(NULL, opt.depth * sizeof(uint64_t));
		conns[i].ring_ts = xrealloc(NULL, opt.depth * sizeof(uint64_t));
	}
}

static void
report(void)
{
	double secs = (double)(t_measure_end - t_measure_start) / 1e9;
	double srv = opt.server_pid > 0 && srv_cpu0 >= 0 && srv_cpu1 >= 0 ?
	    srv_cpu1 - srv_cpu0 : -1;
	double cli = cli_cpu1 - cli_cpu0;
	uint64_t err = errors_total();
	char errs[512];
	size_t off = 0;
	int i;

	for (i = 0; i < E_NKIND; i++)
		off += (size_t)snprintf(errs + off, sizeof(errs) - off,
		    " err_%s=%" PRIu64, err_names[i], errors[i]);
	/* Over TLS: what was agreed, and proof that no handshake was a
	 * resumption. */
	snprintf(errs + off, sizeof(errs) - off, " tls=%s tls_handshakes=%"
	    PRIu64 " tls_resumed=%" PRIu64, opt.tls ? tls_agreed : "off",
	    n_tls, n_tls_resumed);

	switch (opt.mode) {
	case MODE_PING: {
		double rate = secs > 0 ? (double)n_msgs / secs : 0;
		double per = srv >= 0 && n_msgs > 0 ? srv * 1e6 / (double)n_msgs
		    : -1;
		static struct histogram gaps; /* of each connection's longest */
		uint64_t limit = (uint64_t)(opt.gap_limit * 1e6), over = 0;

		for (i = 0; i < (int)nconns; i++)
			if (conns[i].measured) {
				h_record(&gaps, conns[i].max_gap);
				over += conns[i].max_gap > limit;
			}

		printf("ping: %u connections x %u in flight, %.2f s: %.0f "
		    "msg/s, latency p50 %.3f ms p99 %.3f ms p99.9 %.3f ms "
		    "max %.3f ms", nconns, opt.depth, secs, rate,
		    h_percentile(&hist, 50) / 1e6,
		    h_percentile(&hist, 99) / 1e6,
		    h_percentile(&hist, 99.9) / 1e6, hist.max / 1e6);
		if (per >= 0)
			printf(", server CPU %.3f us/msg", per);
		printf(", longest wait for a reply %.3f ms (p99 of "
		    "connections %.3f ms, %" PRIu64 " of %" PRIu64 " over %g ms)"
		    ", %" PRIu64 " dropped", gaps.max / 1e6,
		    h_percentile(&gaps, 99) / 1e6, over, gaps.n, opt.gap_limit,
		    n_dropped);
		printf(", errors %" PRIu64 "\n", err);
		printf("mode=ping conns=%u depth=%u seconds=%.3f msgs=%" PRIu64
		    " msgs_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
		    "max_us=%.1f server_cpu_s=%.3f server_cpu_us_per_msg=%.4f "
		    "client_cpu_s=%.3f server_pings=%" PRIu64 " measured_conns=%"
		    PRIu64 " dropped=%" PRIu64 " gap_max_us=%.1f gap_p50_us=%.1f "
		    "gap_p99_us=%.1f gap_limit_us=%.1f gap_over=%" PRIu64
		    " deflate_conns=%" PRIu64 " wire_in_per_msg=%.1f "
		    "wire_out_per_msg=%.1f"
		    " errors=%" PRIu64 "%s\n", nconns, opt.depth, secs, n_msgs,
		    rate, h_percentile(&hist, 50) / 1e3,
		    h_percentile(&hist, 99) / 1e3,
		    h_percentile(&hist, 99.9) / 1e3, hist.max / 1e3, srv, per,
		    cli, n_server_pings, gaps.n, n_dropped, gaps.max / 1e3,
		    h_percentile(&gaps, 50) / 1e3, h_percentile(&gaps, 99) / 1e3,
		    opt.gap_limit * 1e3, over, n_deflate,
		    n_msgs > 0 ? (double)wire_in / (double)n_msgs : 0,
		    n_msgs > 0 ? (double)wire_out / (double)n_msgs : 0, err, errs);
		break;
	}
	case MODE_HANDSHAKE: {
		double rate = secs > 0 ? (double)n_handshakes / secs : 0;
		double per = srv >= 0 && n_handshakes > 0 ?
		    srv * 1e6 / (double)n_handshakes : -1;

		printf("handshake: %u at a time, %.2f s: %.0f handshakes/s, "
		    "upgrade latency p50 %.3f ms p99 %.3f ms p99.9 %.3f ms",
		    nconns, secs, rate, h_percentile(&hist, 50) / 1e6,
		    h_percentile(&hist, 99) / 1e6,
		    h_percentile(&hist, 99.9) / 1e6);
		if (per >= 0)
			printf(", server CPU %.1f us/handshake", per);
		printf(", errors %" PRIu64 "\n", err);
		printf("mode=handshake conns=%u seconds=%.3f handshakes=%" PRIu64
		    " handshakes_per_s=%.0f p50_us=%.1f p99_us=%.1f "
		    "p999_us=%.1f server_cpu_s=%.3f "
		    "server_cpu_us_per_handshake=%.2f client_cpu_s=%.3f "
		    "greeting=%d errors=%" PRIu64 "%s\n", nconns, secs,
		    n_handshakes, rate, h_percentile(&hist, 50) / 1e3,
		    h_percentile(&hist, 99) / 1e3,
		    h_percentile(&hist, 99.9) / 1e3, srv, per, cli,
		    opt.greeting, err, errs);
		break;
	}
	case MODE_FANOUT: {
		double rate = secs > 0 ? (double)n_msgs / secs : 0;
		double per = srv >= 0 && n_msgs > 0 ? srv * 1e6 / (double)n_msgs
		    : -1;

		printf("fanout: %u subscribers over %u port(s), 1 publisher, "
		    "%u in flight, %.2f s: %.0f deliveries/s (%.0f "
		    "messages/s), publish to delivery p50 %.3f ms p99 %.3f ms "
		    "max %.3f ms", opt.conns, ndst, opt.depth, secs, rate,
		    secs > 0 ? (double)n_fan_measured / secs : 0,
		    h_percentile(&hist, 50) / 1e6,
		    h_percentile(&hist, 99) / 1e6, hist.max / 1e6);
		if (per >= 0)
			printf(", server CPU %.3f us/delivery", per);
		printf(", errors %" PRIu64 "\n", err);
		printf("mode=fanout conns=%u nodes=%u depth=%u seconds=%.3f "
		    "msgs=%" PRIu64 " msgs_per_s=%.0f deliveries_per_s=%.0f "
		    "published_per_s=%.0f p50_us=%.1f p99_us=%.1f "
		    "p999_us=%.1f max_us=%.1f server_cpu_s=%.3f "
		    "server_cpu_us_per_msg=%.4f client_cpu_s=%.3f "
		    "subscribed=%u errors=%" PRIu64 "%s\n", opt.conns, ndst,
		    opt.depth, secs, n_msgs, rate, rate,
		    secs > 0 ? (double)n_fan_measured / secs : 0,
		    h_percentile(&hist, 50) / 1e3,
		    h_percentile(&hist, 99) / 1e3,
		    h_percentile(&hist, 99.9) / 1e3, hist.max / 1e3, srv, per,
		    cli, n_subscribed, err, errs);
		break;
	}
	case MODE_IDLE: {
		double per = rss0_kib >= 0 && rss1_kib >= 0 && n_idle_target > 0
		    ? (double)(rss1_kib - rss0_kib) / n_idle_target : -1;

		printf("idle: %u of %u connections held, %" PRIu64 " answered "
		    "the final ping, %" PRIu64 " server pings answered",
		    n_idle_target, nconns, n_verified, n_server_pings);
		if (per >= 0)
			printf(", server RSS %ld -> %ld KiB: %.3f KiB per "
			    "connection", rss0_kib, rss1_kib, per);
		printf(", errors %" PRIu64 "\n", err);
		printf("mode=idle conns=%u held=%u verified=%" PRIu64
		    " server_pings=%" PRIu64 " rss_before_kib=%ld "
		    "rss_after_kib=%ld rss_kib_per_conn=%.4f ua_bytes=%ld "
		    "deflate_conns=%" PRIu64 " errors=%" PRIu64 "%s\n", nconns,
		    n_idle_target, n_verified, n_server_pings, rss0_kib,
		    rss1_kib, per, opt.ua_len, n_deflate, err, errs);
		break;
	}
	}
}

int
main(int argc, char *argv[])
{
	struct epoll_event evs[256];
	struct sigaction sa;
	uint64_t now, last_scan = 0;
	int ch, n, i;

	while ((ch = getopt(argc, argv, "m:h:p:P:c:d:C:t:w:T:s:x:b:g:A:U:S:K:GnzLVH"))
	    != -1) {
		switch (ch) {
		case 'm':
			if (strcmp(optarg, "ping") == 0)
				opt.mode = MODE_PING;
			else if (strcmp(optarg, "handshake") == 0)
				opt.mode = MODE_HANDSHAKE;
			else if (strcmp(optarg, "idle") == 0)
				opt.mode = MODE_IDLE;
			else if (strcmp(optarg, "fanout") == 0)
				opt.mode = MODE_FANOUT;
			else
				die("-m: unknown mode \"%s\"", optarg);
			break;
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = optarg; break;
		case 'P':
			if (optarg[0] != '/' || strpbrk(optarg, " \r\n"))
				die("-P: a path starts with / and has no "
				    "spaces");
			opt.path = optarg;
			break;
		case 'c': opt.conns = (unsigned)num_arg(optarg, 1, 1e6, ch);
			break;
		case 'd': opt.depth = (unsigned)num_arg(optarg, 1, 1e5, ch);
			break;
		case 'C':
			opt.concurrency = (unsigned)num_arg(optarg, 1, 1e6, ch);
			break;
		case 't': opt.duration = num_arg(optarg, 0, 1e6, ch); break;
		case 'w': opt.warmup = num_arg(optarg, 0, 1e6, ch); break;
		case 'T': opt.timeout = num_arg(optarg, 0.001, 1e6, ch); break;
		case 's': opt.settle = num_arg(optarg, 0, 1e6, ch); break;
		case 'x':
			opt.server_pid = (pid_t)num_arg(optarg, 1, INT_MAX, ch);
			break;
		case 'b': parse_range(optarg); break;
		case 'g': opt.gap_limit = num_arg(optarg, 0, 1e9, ch); break;
		case 'A':
			if (strpbrk(optarg, "\r\n"))
				die("-A: no line breaks");
			opt.ua = optarg;
			break;
		case 'U': opt.ua_len = (long)num_arg(optarg, 0, 4096, ch);
			break;
		case 'G': opt.greeting = 0; break;
		case 'n': opt.check_id = 0; break;
		case 'z': opt.deflate = 1; break;
		case 'L': opt.tls = 1; break;
		case 'K': opt.ca_file = optarg; opt.tls = 1; break;
		case 'S':
			opt.pad = (unsigned)num_arg(optarg, 0, 60000, ch);
			break;
		case 'V':
			printf("wsplugd-bench %s\n", PACKAGE_VERSION);
			return 0;
		case 'H':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (opt.conns == 0)
		opt.conns = opt.mode == MODE_PING ? 100 :
		    opt.mode == MODE_HANDSHAKE ? 50 : 1000;
	if (opt.concurrency == 0)
		opt.concurrency = 256;
	if (opt.mode != MODE_PING && opt.mode != MODE_FANOUT)
		opt.depth = 1;
	if (opt.mode != MODE_IDLE && opt.duration <= 0)
		die("-t: ping, handshake and fanout need a duration above 0");
	/* fanout: the subscribers and the publisher */
	nconns = opt.conns + (opt.mode == MODE_FANOUT);
	if (opt.tls)
		tls_setup();
	setup();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (opt.server_pid > 0) {
		if (cpu_of(opt.server_pid) < 0)
			die("-x %ld: cannot read /proc/%ld/stat",
			    (long)opt.server_pid, (long)opt.server_pid);
	}
	phase = opt.mode == MODE_IDLE ? P_PROBE : P_RAMP;
	if (opt.mode == MODE_PING || opt.mode == MODE_FANOUT)
		for (i = 0; i < (int)nconns; i++)
			conn_start(&conns[i]);
	now = now_ns();
	advance(now);
	while (phase != P_DONE) {
		n = epoll_wait(epfd, evs, 256, 50);
		if (n == -1 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		now = now_ns();
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c->state == C_FREE)
				continue; /* released earlier in this batch */
			if (c->state == C_CONNECTING) {
				if (evs[i].events & (EPOLLOUT | EPOLLERR |
				    EPOLLHUP))
					conn_connected(c);
				continue;
			}
			if (c->state == C_TLS) {
				tls_handshake(c);
				continue;
			}
			/* Each connection's own clock reading: a batch of
			 * events takes a while to work through. */
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_readable(c, now_ns());
			else if (evs[i].events & EPOLLOUT)
				conn_flush(c);
		}
		if (now - last_scan > 100000000u) {
			check_deadlines(now);
			last_scan = now;
		}
		advance(now);
	}
	report();
	return errors_total() > 0 ? 1 : 0;
}
