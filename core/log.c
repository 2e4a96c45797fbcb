/*
 * log.c: every event as one line.
 *
 * A line is built field by field into one static buffer and written with a
 * single write(2), so lines from one process never interleave and building
 * one costs no allocation.  The same builder emits logfmt
 * (`ts=… level=info event=ws.open conn=… ua="…"`) or one JSON object per
 * line, to stderr, a file (reopened on SIGUSR1 for logrotate), syslog, or
 * the systemd journal.
 *
 * A reload changes the log in two steps, like every module a reload
 * touches: log_reload_prepare() opens the new file, which is the one
 * thing that can fail, and log_reload_commit() switches to it; a reload
 * that fails anywhere closes it again, and its errors go to the old log.
 *
 * Once the event loop runs, lines for stderr and files are gathered and
 * written together LOG_FLUSH_MS after the first of them, or sooner when
 * LOG_PENDING_MAX bytes have gathered: a handshake logs two lines, and a
 * write(2) each was a tenth of its cost; one a loop turn was still one
 * for every two handshakes under load.  A line of level warn or above is
 * written at once, with everything before it, so an error is on disk
 * before whatever follows it can go wrong; so is everything before the
 * process forks, execs a successor or exits.  A worker gathers in memory
 * it shares with the master (log_set_worker), where the master finds
 * what a worker killed or crashed had not written (log_salvage).
 *
 * For the journal the line is sent as MESSAGE= and each of its fields also
 * as a journal field of its own, so `journalctl CONNECTION_ID=…` finds a
 * connection's every line without parsing text.  The raw values are kept
 * while the line is built, in a second static buffer: still no allocation.
 *
 * The log state is one of the daemon's two globals: every file logs, and
 * threading a handle through each call would add noise and nothing else.
 * The daemon is single-threaded.
 *
 * The events, the same names in every format and target (each line also
 * has ts, except for syslog and the journal, which stamp lines themselves,
 * level and event):
 *
 *   daemon.start      version abi pid config path
 *   daemon.stop       uptime_s opened closed refused reaped msgs_in msgs_out
 *                     left_open
 *   daemon.shutdown   msg (closing N connections; timeout reached)
 *   daemon.limit      msg (open-file limit below max_connections; the
 *                     shared address table is full, workers > 1)
 *   daemon.privileges user uid group gid (switched to [server] user)
 *   daemon.error      msg
 *   config.error      msg (FILE:LINE: message; at start-up or reload)
 *   listen.start      addr (the bound address, with the kernel's port)
 *   listen.stop       addr
 *   listen.error      msg
 *   admin.start       addr (the admin listener)
 *   admin.stop        addr
 *   admin.request     method path status ip (debug)
 *   admin.timeout     ip port timeout_ms (the deadline from accept)
 *   ws.open           conn ip port ua origin path subprotocol user active
 *   ws.close          conn ip user code reason duration_ms msgs_in
 *                     msgs_out bytes_in bytes_out active (user: when a
 *                     plugin named one)
 *   ws.refuse         ip port status reason plugin detail (reason as
 *                     counted in wsplugd_handshakes_refused_total; plugin
 *                     when reason=plugin)
 *   ws.error          conn ip code reason (a protocol violation)
 *   ws.slow_consumer  conn ip limit
 *   ws.ping, ws.pong  conn, rtt_ms (debug)
 *   ws.ping_missed    conn ip missed idle_ms
 *   ws.reap           conn ip idle_ms pings_missed
 *   reload            result (ok: generation ok_total kept loaded unloaded
 *                     active; failed: errors failed_total msg; workers > 1:
 *                     aborted in a worker, and the master's line with
 *                     workers, failed_in)
 *   plugin.load       plugin version path generation
 *   plugin.unload     plugin generation
 *   plugin.log        plugin conn msg (a plugin's own line)
 *   plugin.slow       plugin callback ms
 *   plugin.error      msg
 *   trust.relaxed     msg (-U: an untrusted file allowed, or the warning
 *                     that -U is in effect)
 *   log.reopen        msg
 *   log.error         msg (target = journal, but journald is not running:
 *                     the lines go to stderr)
 *   notify.error      msg (sd_notify failed)
 *   libevent          msg (libevent's own warnings and errors)
 *   master.start      workers pid (workers > 1: the master, before forking)
 *   worker.start      pid (the master, each time it forks worker=N)
 *   worker.ready      pid (the worker, serving)
 *   worker.exit       pid status or signal, plugin callback (the call it
 *                     was in, if any), respawn_ms; warn unless shutting
 *                     down
 *   worker.watchdog   pid ms (its loop stalled: killed)
 *
 * With workers > 1 every line of a worker also carries worker=N (1..N).
 *
 * Journal fields: MESSAGE (the line), PRIORITY, SYSLOG_IDENTIFIER=wsplugd,
 * CONNECTION_ID (conn), CLIENT_IP (ip), and WSPLUGD_<KEY> for every other
 * key (WSPLUGD_EVENT, WSPLUGD_CODE, ...).
 */
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#ifdef HAVE_SYSTEMD
/* Without this every entry would carry CODE_FILE=log.c: useless. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#endif

#include "wsplugd.h"

#define LOG_LINE_MAX 4096
#define LOG_RESERVE 32
/* "MESSAGE=", written before the line for the journal. */
#define LOG_JOURNAL_PREFIX "MESSAGE="
#define LOG_JOURNAL_PREFIX_LEN 8
/* Journal fields of one line: the most keys a line has, with room. */
#define LOG_MAX_FIELDS 32
#define LOG_FIELD_NAME_MAX 64 /* journald's limit on a field name */
#define LOG_JOURNAL_SOCKET "/run/systemd/journal/socket"
/* Lines gathered for one write, and how long the first may wait: too
 * short for anyone reading the log to notice, long enough that a loop
 * under load writes once for a hundred lines or more.  At 1 ms a daemon
 * taking 12,000 handshakes a second wrote its file every 12 of them;
 * at 10 ms a handshake cost 1.7 % less CPU (each write(2) to ext4 pays
 * its entry, the inode's times and the page lookups).  LOG_PENDING_MAX
 * still bounds a burst, and warn and error lines are never held. */
#define LOG_PENDING_MAX 65536
#define LOG_FLUSH_MS 10

struct log_line {
	char buf[LOG_LINE_MAX];
	size_t start; /* the line proper begins here: after "MESSAGE=" */
	size_t len;
	int level;
	int truncated;
	/* the journal only: "NAME=raw value" fields, in fbuf */
	char fbuf[LOG_LINE_MAX];
	size_t flen;
	struct {
		size_t off, len;
	} fields[LOG_MAX_FIELDS];
	size_t nfields;
};

struct log_state {
	int level;
	enum log_format format;
	enum log_target target;
	char *file;
	int fd;
	char ident[64]; /* "SYSLOG_IDENTIFIER=wsplugd" for the journal */
	/* A reload's file, opened by log_reload_prepare() for its commit */
	int staged;
	char *next_file;
	int next_fd;
	int no_journald; /* target journal, but nothing listens: stderr */
	int direct; /* write at once: inside libevent, which may not be
	               called back from its log callback */
	struct log_line line;
	struct event *flush_ev; /* NULL: no loop yet, write each line */
	int worker;             /* log_set_worker's N, 0: not a worker */
	size_t pending_max;     /* how much pend may gather */
	/* the gathered lines: the process's own buffer, or a worker's area
	 * shared with the master (log_set_worker) */
	char *pend;
	_Atomic size_t *plen;
	time_t ts_sec; /* the second ts_text holds, "YYYY-MM-DDTHH:MM:SS" */
	char ts_text[24];
};

_Static_assert(LOG_WORKER_PENDING <= PIPE_BUF,
    "a worker's write must be one piece on a pipe");

static char own_pending[LOG_PENDING_MAX];
static _Atomic size_t own_plen;

static struct log_state L = { .level = WSP_LOG_INFO, .fd = STDERR_FILENO,
    .ts_sec = -1, .pending_max = sizeof(own_pending), .pend = own_pending,
    .plen = &own_plen };

static const char *level_names[] = { "debug", "info", "warn", "error" };
static const unsigned char level_lens[] = { 5, 4, 4, 5 };

const char *
log_level_name(int level)
{
	if (level < WSP_LOG_DEBUG || level > WSP_LOG_ERROR)
		return "?";
	return level_names[level];
}

#define LOG_IDENT_KEY "SYSLOG_IDENTIFIER="

static int
log_open_file(const char *file)
{
	return open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* Switch every line to these settings; file, when the target is one, is
 * already open as fd and is the log's from now on.  Cannot fail. */
static void
log_switch(int level, enum log_format format, enum log_target target,
    char *file, int fd)
{
	log_fini();
	L.level = level;
	L.format = format;
	L.target = target;
	L.file = file;
	L.fd = target == LOG_TARGET_FILE ? fd : STDERR_FILENO;
	if (target == LOG_TARGET_SYSLOG)
		/* openlog keeps the pointer: L.ident outlives it */
		openlog(L.ident + strlen(LOG_IDENT_KEY), LOG_PID | LOG_NDELAY,
		    LOG_DAEMON);
	else if (target == LOG_TARGET_JOURNAL) {
		/* sd_journal_send() drops lines without a word when
		 * journald's socket is missing: rather write them to stderr.
		 * Looked at here (start, reload), not per line. */
		L.no_journald = access(LOG_JOURNAL_SOCKET, W_OK) == -1;
		if (L.no_journald)
			log_msg(WSP_LOG_WARN, "log.error", "journald is not "
			    "running (no %s): logging to stderr",
			    LOG_JOURNAL_SOCKET);
	}
}

int
log_init(int level, enum log_format format, enum log_target target,
    const char *file, const char *ident)
{
	char *f = NULL;
	int fd = -1, err;

	if (target == LOG_TARGET_FILE) {
		if ((f = strdup(file)) == NULL)
			return -1;
		if ((fd = log_open_file(f)) == -1) {
			err = errno;
			free(f);
			errno = err;
			return -1;
		}
	}
	snprintf(L.ident, sizeof(L.ident), LOG_IDENT_KEY "%s", ident);
	log_switch(level, format, target, f, fd);
	return 0;
}

int
log_reload_prepare(const struct wsp_config *cfg, struct wsp_errors *errs)
{
	log_reload_abort();
	if (cfg->log_target != LOG_TARGET_FILE)
		return 0;
	if ((L.next_file = strdup(cfg->log_file)) == NULL ||
	    (L.next_fd = log_open_file(L.next_file)) == -1) {
		errors_add(errs, cfg->file, cfg->log_target_line,
		    "[log] target: cannot open %s: %s", cfg->log_file,
		    strerror(errno));
		free(L.next_file);
		L.next_file = NULL;
		return -1;
	}
	L.staged = 1;
	return 0;
}

void
log_reload_commit(const struct wsp_config *cfg)
{
	log_switch(cfg->log_level, cfg->log_format, cfg->log_target,
	    L.next_file, L.staged ? L.next_fd : -1);
	L.staged = 0;
	L.next_file = NULL;
}

void
log_reload_abort(void)
{
	if (L.staged)
		close(L.next_fd);
	free(L.next_file);
	L.staged = 0;
	L.next_file = NULL;
}

int
log_reopen(void)
{
	int fd;

	if (L.target != LOG_TARGET_FILE)
		return 0;
	log_sync(); /* what was logged before belongs to the old file */
	if ((fd = log_open_file(L.file)) == -1)
		return -1; /* keep writing to the old file rather than nowhere */
	if (L.fd != STDERR_FILENO)
		close(L.fd);
	L.fd = fd;
	return 0;
}

void
log_fini(void)
{
	log_sync();
	/* a worker's area may be unmapped next: gather in our own again */
	L.pending_max = sizeof(own_pending);
	L.pend = own_pending;
	L.plen = &own_plen;
	if (L.target == LOG_TARGET_FILE && L.fd != STDERR_FILENO)
		close(L.fd);
	else if (L.target == LOG_TARGET_SYSLOG)
		closelog();
	free(L.file);
	L.file = NULL;
	L.fd = STDERR_FILENO;
	L.target = LOG_TARGET_STDERR;
	L.no_journald = 0;
}

int
log_enabled(int level)
{
	return level >= L.level;
}

/* A piece that does not fit: keep room for the truncation mark and the
 * closing "}\n", and cut before a character, never inside one. */
static void __attribute__((noinline))
append_cut(struct log_line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->buf) - LOG_RESERVE - l->len;

	if (n > room) {
		n = room;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		l->truncated = 1;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/* n bytes, at most 16, without a call: two loads and two stores that
 * overlap cover every length from 4 to 16.  Keys, numbers and most
 * values are this short, and memcpy's call and length dispatch were
 * more than the copy: some 500 instructions a handshake. */
static inline void
copy_small(char *d, const char *s, size_t n)
{
	uint64_t a, b;
	uint32_t x, y;

	if (n >= 8) {
		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
	} else if (n >= 4) {
		memcpy(&x, s, 4);
		memcpy(&y, s + n - 4, 4);
		memcpy(d, &x, 4);
		memcpy(d + n - 4, &y, 4);
	} else if (n > 0) {
		d[0] = s[0];
		d[n / 2] = s[n / 2];
		d[n - 1] = s[n - 1];
	}
}

static inline void
append_copy(char *d, const char *s, size_t n)
{
	if (n <= 16)
		copy_small(d, s, n);
	else
		memcpy(d, s, n);
}

/* Inline, so that the many short constant pieces of a line are a store
 * each, not a call and a memcpy call: two lines a handshake spent a
 * quarter of their building in those calls. */
static inline void
append(struct log_line *l, const char *s, size_t n)
{
	if (l->len + n > sizeof(l->buf) - LOG_RESERVE) {
		append_cut(l, s, n);
		return;
	}
	append_copy(l->buf + l->len, s, n);
	l->len += n;
}

static inline void
append_c(struct log_line *l, char c)
{
	if (l->len + 1 > sizeof(l->buf) - LOG_RESERVE) {
		l->truncated = 1;
		return;
	}
	l->buf[l->len++] = c;
}

/*
 * Byte classes: AS_IS, copied as it is into a JSON string or a quoted
 * logfmt value (printable ASCII but '"' and '\\'); BARE, allowed in a bare
 * logfmt value (the same but the space and '='; bytes from 0x80 need
 * quotes too, since the escaper is what makes them valid UTF-8).
 */
#define AS_IS 1
#define BARE 2
#ifndef __SSE2__
static const unsigned char byte_class[256] = {
	[' '] = AS_IS, ['!'] = AS_IS | BARE, ['#' ... '<'] = AS_IS | BARE,
	['='] = AS_IS, ['>' ... '['] = AS_IS | BARE, [']' ... '~'] = AS_IS | BARE,
};
#endif

/* The length of the run at the start of [s, s + n) of bytes of class
 * cls.  Every connection logs a 100-byte User-Agent and two 32-digit ids:
 * a table load a byte was still about a third of its two lines' building
 * (1,400 of some 4,000 instructions).  Where SSE2 is (every amd64),
 * sixteen bytes are classed with four vector compares (six for BARE),
 * and so is the tail: a byte a table load was still 260 instructions a
 * handshake for IPs, paths and event names.  Elsewhere, by the table.
 * Eight-byte words (SWAR) cost as much as the table on values this
 * short, which is why it is vectors or nothing. */
#ifdef __SSE2__
/* A bit for each of v's sixteen bytes that is not of class cls. */
static inline unsigned
span_bits(__m128i v, unsigned cls)
{
	__m128i out;

	/* Compared as signed bytes, below 0x20 is a control byte or one
	 * from 0x80: neither class has either. */
	out = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
	    _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)));
	out = _mm_or_si128(out, _mm_or_si128(
	    _mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
	    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
	if (cls == BARE)
		out = _mm_or_si128(out, _mm_or_si128(
		    _mm_cmpeq_epi8(v, _mm_set1_epi8(' ')),
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('='))));
	return (unsigned)_mm_movemask_epi8(out);
}
#endif

static inline size_t
span(const char *s, size_t n, unsigned cls)
{
	size_t i = 0;

#ifdef __SSE2__
	unsigned bits;
	size_t rest;

	for (; n - i >= 16; i += 16)
		if ((bits = span_bits(_mm_loadu_si128(
		    (const __m128i *)(s + i)), cls)) != 0)
			return i + (size_t)__builtin_ctz(bits);
	if ((rest = n - i) == 0)
		return n;
	/* The tail, shorter than sixteen bytes, in one vector as well: the
	 * last sixteen of a value that had that many, or the tail copied
	 * into a block of its own (never a read past the value's end). */
	if (n >= 16)
		bits = span_bits(_mm_loadu_si128((const __m128i *)(s + n -
		    16)), cls) >> (16 - rest);
	else {
		char t[16] = { 0 };

		copy_small(t, s + i, rest);
		bits = span_bits(_mm_loadu_si128((const __m128i *)t), cls) &
		    ((1u << rest) - 1);
	}
	return bits != 0 ? i + (size_t)__builtin_ctz(bits) : n;
#else
	while (i < n && (byte_class[(unsigned char)s[i]] & cls))
		i++;
	return i;
#endif
}

/* Escape for a JSON string or a quoted logfmt value: both take \" \\ \n
 * \t and \u00XX, so one routine serves both formats.  A line is valid
 * UTF-8 whatever a client sent: invalid bytes become U+FFFD, and a
 * character cut short at the end (a value capped to a byte length) is
 * dropped. */
static void
append_escaped(struct log_line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, run = 0;
	char esc[6];
	int k;

	for (;;) {
		unsigned char ch;

		i += span(s + i, n - i, AS_IS);
		if (i == n)
			break;
		ch = (unsigned char)s[i];
		if (ch >= 0x80) {
			k = utf8_char_len((const uint8_t *)s + i, n - i);
			if (k > 0) {
				i += (size_t)k;
				continue;
			}
			append(l, s + run, i - run);
			if (k < 0)
				return;
			append(l, "\xef\xbf\xbd", 3);
			run = ++i;
			continue;
		}
		append(l, s + run, i - run);
		run = ++i;
		switch (ch) {
		case '"': append(l, "\\\"", 2); break;
		case '\\': append(l, "\\\\", 2); break;
		case '\n': append(l, "\\n", 2); break;
		case '\r': append(l, "\\r", 2); break;
		case '\t': append(l, "\\t", 2); break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			append(l, esc, 6);
		}
	}
	append(l, s + run, n - run);
}

static int
needs_quotes(const char *s, size_t n)
{
	return n == 0 || span(s, n, BARE) != n;
}

/* " key=" or ",\"key\":" with one test for room: the common case, a
 * line far from full, is two stores and a copy of the key. */
static inline __attribute__((always_inline)) void
append_key(struct log_line *l, const char *key, size_t klen)
{
	char *p = l->buf + l->len;

	if (l->len + klen + 4 > sizeof(l->buf) - LOG_RESERVE) {
		if (L.format == LOG_FORMAT_JSON) {
			append(l, ",\"", 2);
			append(l, key, klen);
			append(l, "\":", 2);
		} else {
			append_c(l, ' ');
			append(l, key, klen);
			append_c(l, '=');
		}
		return;
	}
	if (L.format == LOG_FORMAT_JSON) {
		p[0] = ',';
		p[1] = '"';
		append_copy(p + 2, key, klen);
		p[2 + klen] = '"';
		p[3 + klen] = ':';
		l->len += klen + 4;
	} else {
		p[0] = ' ';
		append_copy(p + 1, key, klen);
		p[1 + klen] = '=';
		l->len += klen + 2;
	}
}

/*
 * The journal's name for a key: conn and ip by the names other programs'
 * journal entries use for the same things, the rest WSPLUGD_KEY (field
 * names are upper-case letters, digits and '_').
 */
static size_t
field_name(const char *key, char *out)
{
	static const struct {
		const char *key, *name;
	} known[] = {
		{ "conn", "CONNECTION_ID" }, { "ip", "CLIENT_IP" },
	};
	size_t i, n;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(key, known[i].key) == 0) {
			n = strlen(known[i].name);
			memcpy(out, known[i].name, n);
			return n;
		}
	memcpy(out, "WSPLUGD_", 8);
	for (n = 8; *key != '\0' && n < LOG_FIELD_NAME_MAX; key++, n++) {
		if (*key >= 'a' && *key <= 'z')
			out[n] = (char)(*key - 'a' + 'A');
		else if ((*key >= 'A' && *key <= 'Z') ||
		    (*key >= '0' && *key <= '9'))
			out[n] = *key;
		else
			out[n] = '_';
	}
	return n;
}

/* Keep key=val, raw, as a journal field of the line being built.  Fields
 * that do not fit are left out: MESSAGE still has them. */
static void __attribute__((noinline))
field_add_journal(struct log_line *l, const char *key, const char *val,
    size_t n)
{
	char name[LOG_FIELD_NAME_MAX];
	size_t nl;

	if (l->nfields == LOG_MAX_FIELDS)
		return;
	nl = field_name(key, name);
	if (l->flen + nl + 1 + n > sizeof(l->fbuf))
		return;
	l->fields[l->nfields].off = l->flen;
	memcpy(l->fbuf + l->flen, name, nl);
	l->fbuf[l->flen + nl] = '=';
	memcpy(l->fbuf + l->flen + nl + 1, val, n);
	l->fields[l->nfields].len = nl + 1 + n;
	l->flen += nl + 1 + n;
	l->nfields++;
}

static inline void
field_add(struct log_line *l, const char *key, const char *val, size_t n)
{
	if (L.target == LOG_TARGET_JOURNAL)
		field_add_journal(l, key, val, n);
}

struct log_line *
log_begin(int level, const char *event)
{
	struct log_line *l = &L.line;
	struct timespec ts;
	struct tm tm;
	char tbuf[32];
	long ms;

	if (level < L.level)
		return NULL;
	l->len = 0;
	l->level = level;
	l->truncated = 0;
	l->flen = 0;
	l->nfields = 0;
	l->start = 0;
	if (L.target == LOG_TARGET_JOURNAL) {
		append(l, LOG_JOURNAL_PREFIX, LOG_JOURNAL_PREFIX_LEN);
		l->start = LOG_JOURNAL_PREFIX_LEN;
	}
	/* syslog and the journal stamp lines themselves. */
	if (L.target != LOG_TARGET_SYSLOG && L.target != LOG_TARGET_JOURNAL) {
		/* strftime once a second; the milliseconds by hand */
		clock_gettime(CLOCK_REALTIME, &ts);
		if (ts.tv_sec != L.ts_sec) {
			gmtime_r(&ts.tv_sec, &tm);
			if (strftime(L.ts_text, sizeof(L.ts_text),
			    "%Y-%m-%dT%H:%M:%S", &tm) != 19)
				memcpy(L.ts_text, "0000-00-00T00:00:00", 20);
			L.ts_sec = ts.tv_sec;
		}
		ms = ts.tv_nsec / 1000000;
		memcpy(tbuf, L.ts_text, 19);
		tbuf[19] = '.';
		tbuf[20] = (char)('0' + ms / 100);
		tbuf[21] = (char)('0' + ms / 10 % 10);
		tbuf[22] = (char)('0' + ms % 10);
		tbuf[23] = 'Z';
		if (L.format == LOG_FORMAT_JSON) {
			append(l, "{\"ts\":\"", 7);
			append(l, tbuf, 24);
			append(l, "\",\"level\":\"", 11);
		} else {
			append(l, "ts=", 3);
			append(l, tbuf, 24);
			append(l, " level=", 7);
		}
	} else if (L.format == LOG_FORMAT_JSON)
		append(l, "{\"level\":\"", 10);
	else
		append(l, "level=", 6);
	append(l, level_names[level], level_lens[level]);
	if (L.format == LOG_FORMAT_JSON)
		append_c(l, '"');
	log_str(l, "event", event);
	if (L.worker != 0)
		log_uint(l, "worker", (unsigned)L.worker);
	return l;
}

void
log_set_worker(int n, struct log_pending *area)
{
	/* Nothing is inherited to write: the master attaches no loop, so
	 * it writes each line at once and has gathered none. */
	L.worker = n;
	/* Processes share the descriptor: a write of at most PIPE_BUF bytes
	 * is one piece on a pipe, so lines of two workers never mix. */
	L.pending_max = sizeof(area->buf);
	L.pend = area->buf;
	L.plen = &area->len;
	atomic_store_explicit(L.plen, 0, memory_order_relaxed);
}

void
log_kstrn(struct log_line *l, const char *key, size_t klen, const char *val,
    size_t n)
{
	if (l == NULL)
		return;
	field_add(l, key, val, n);
	append_key(l, key, klen);
	if (L.format == LOG_FORMAT_JSON || needs_quotes(val, n)) {
		append_c(l, '"');
		append_escaped(l, val, n);
		append_c(l, '"');
	} else
		append(l, val, n);
}

void
log_kstr(struct log_line *l, const char *key, size_t klen, const char *val)
{
	if (l == NULL)
		return;
	if (val == NULL)
		val = "";
	log_kstrn(l, key, klen, val, strlen(val));
}

/* Digits of u, with a minus sign if asked, ending at end; returns the
 * first character.  snprintf costs a thousand instructions a number. */
static char *
format_decimal(char *end, unsigned long long u, int minus)
{
	/* two digits a step: half the divisions */
	static const char pairs[] =
	    "00010203040506070809101112131415161718192021222324"
	    "25262728293031323334353637383940414243444546474849"
	    "50515253545556575859606162636465666768697071727374"
	    "75767778798081828384858687888990919293949596979899";
	char *p = end;

	for (; u >= 100; u /= 100) {
		p -= 2;
		memcpy(p, pairs + 2 * (u % 100), 2);
	}
	if (u >= 10) {
		p -= 2;
		memcpy(p, pairs + 2 * u, 2);
	} else
		*--p = (char)('0' + u);
	if (minus)
		*--p = '-';
	return p;
}

void
log_knum(struct log_line *l, const char *key, size_t klen,
    unsigned long long u, int minus)
{
	char b[24], *p;

	if (l == NULL)
		return;
	p = format_decimal(b + sizeof(b), u, minus);
	field_add(l, key, p, (size_t)(b + sizeof(b) - p));
	append_key(l, key, klen);
	append(l, p, (size_t)(b + sizeof(b) - p));
}

void
log_kint(struct log_line *l, const char *key, size_t klen, long long val)
{
	/* negated in unsigned arithmetic, so LLONG_MIN works */
	log_knum(l, key, klen, val < 0 ? 0 - (unsigned long long)val :
	    (unsigned long long)val, val < 0);
}

static const int log_prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };

/* Write buf whole to L.fd, or give up: there is nowhere left to report a
 * logging failure. */
static void
write_all(const char *buf, size_t len)
{
	ssize_t w;
	size_t off = 0;

	while (off < len) {
		w = write(L.fd, buf + off, len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

/* The line as MESSAGE and its fields; to stderr if journald is not there
 * (under systemd, stderr reaches the journal anyway). */
static void
journal_send(struct log_line *l)
{
#ifdef HAVE_SYSTEMD
	struct iovec iov[LOG_MAX_FIELDS + 3];
	char prio[16];
	size_t i;
	int n = 0;

	if (L.no_journald)
		goto fallback;
	iov[n].iov_base = l->buf;
	iov[n++].iov_len = l->len;
	snprintf(prio, sizeof(prio), "PRIORITY=%d", log_prio[l->level]);
	iov[n].iov_base = prio;
	iov[n++].iov_len = strlen(prio);
	iov[n].iov_base = L.ident;
	iov[n++].iov_len = strlen(L.ident);
	for (i = 0; i < l->nfields; i++) {
		iov[n].iov_base = l->fbuf + l->fields[i].off;
		iov[n++].iov_len = l->fields[i].len;
	}
	if (sd_journal_sendv(iov, n) >= 0)
		return;
fallback:
#endif
	l->buf[l->len++] = '\n';
	write_all(l->buf + l->start, l->len - l->start);
}

void
log_sync(void)
{
	size_t n = atomic_load_explicit(L.plen, memory_order_relaxed);

	if (n > 0)
		write_all(L.pend, n);
	atomic_store_explicit(L.plen, 0, memory_order_relaxed);
}

void
log_salvage(struct log_pending *area)
{
	size_t n = atomic_load_explicit(&area->len, memory_order_acquire);

	if (n == 0)
		return;
	/* a worker's stray pointer may have written anything here */
	if (n > sizeof(area->buf))
		n = sizeof(area->buf);
	log_sync();
	write_all(area->buf, n);
	atomic_store_explicit(&area->len, 0, memory_order_relaxed);
}

static void
log_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_sync();
}

int
log_attach(struct event_base *base)
{
	log_detach();
	if ((L.flush_ev = evtimer_new(base, log_flush_cb, NULL)) == NULL)
		return -1;
	return 0;
}

void
log_detach(void)
{
	log_sync();
	if (L.flush_ev != NULL)
		event_free(L.flush_ev);
	L.flush_ev = NULL;
}

/* A line for stderr or the file, newline included. */
static void
log_write(const char *line, size_t len, int level)
{
	size_t n;

	if (L.flush_ev == NULL || level >= WSP_LOG_WARN || L.direct ||
	    len > L.pending_max) {
		log_sync();
		write_all(line, len);
		return;
	}
	n = atomic_load_explicit(L.plen, memory_order_relaxed);
	if (n + len > L.pending_max) {
		log_sync();
		n = 0;
	}
	/* The first line pending schedules the write; a log_sync() before
	 * the timer leaves it armed, to write nothing or the next lines. */
	if (n == 0 && !evtimer_pending(L.flush_ev, NULL)) {
		static const struct timeval delay = { 0, LOG_FLUSH_MS * 1000 };

		evtimer_add(L.flush_ev, &delay);
	}
	memcpy(L.pend + n, line, len);
	/* after the line's bytes: the master may read them (log_salvage) */
	atomic_store_explicit(L.plen, n + len, memory_order_release);
}

void
log_end(struct log_line *l)
{
	if (l == NULL)
		return;
	if (l->truncated) {
		const char *mark = L.format == LOG_FORMAT_JSON ?
		    ",\"truncated\":true" : " truncated=yes";

		memcpy(l->buf + l->len, mark, strlen(mark)); /* in the reserve */
		l->len += strlen(mark);
	}
	if (L.format == LOG_FORMAT_JSON)
		l->buf[l->len++] = '}';
	if (L.target == LOG_TARGET_SYSLOG) {
		syslog(log_prio[l->level], "%.*s", (int)l->len, l->buf);
		return;
	}
	if (L.target == LOG_TARGET_JOURNAL) {
		journal_send(l);
		return;
	}
	l->buf[l->len++] = '\n';
	log_write(l->buf, l->len, l->level);
}

/* libevent would write these raw to stderr, outside the log's format and
 * target. */
static void
log_libevent_cb(int severity, const char *msg)
{
	int level;

	switch (severity) {
	case EVENT_LOG_DEBUG:
		level = WSP_LOG_DEBUG;
		break;
	case EVENT_LOG_MSG:
		level = WSP_LOG_INFO;
		break;
	case EVENT_LOG_WARN:
		level = WSP_LOG_WARN;
		break;
	default:
		level = WSP_LOG_ERROR;
	}
	L.direct = 1;
	log_msg(level, "libevent", "%s", msg);
	L.direct = 0;
}

void
log_libevent(void)
{
	event_set_log_callback(log_libevent_cb);
}

void
log_msg(int level, const char *event, const char *fmt, ...)
{
	struct log_line *l;
	char msg[1024];
	va_list ap;

	if ((l = log_begin(level, event)) == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_str(l, "msg", msg);
	log_end(l);
}
