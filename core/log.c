/*
 * log.c: every event as one line.
 *
 * A line is built field by field into one static buffer and written with a
 * single write(2), so lines from one process never interleave and building
 * one costs no allocation.  The same builder emits logfmt
 * (`ts=… level=info event=ws.open conn=… ua="…"`) or one JSON object per
 * line, to stderr, a file (reopened on SIGUSR1 for logrotate) or syslog.
 *
 * The log state is one of the daemon's two globals: every file logs, and
 * threading a handle through each call would add noise and nothing else.
 * The daemon is single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "wsplugd.h"

#define LOG_LINE_MAX 4096
#define LOG_RESERVE 32

struct log_line {
	char buf[LOG_LINE_MAX];
	size_t len;
	int level;
	int truncated;
};

static struct {
	int level;
	enum log_format format;
	enum log_target target;
	char *file;
	int fd;
	struct log_line line;
} L = { .level = WSP_LOG_INFO, .fd = STDERR_FILENO };

static const char *level_names[] = { "debug", "info", "warn", "error" };

const char *
log_level_name(int level)
{
	if (level < WSP_LOG_DEBUG || level > WSP_LOG_ERROR)
		return "?";
	return level_names[level];
}

int
log_init(int level, enum log_format format, enum log_target target,
    const char *file, const char *ident)
{
	log_fini();
	L.level = level;
	L.format = format;
	L.target = target;
	L.fd = STDERR_FILENO;
	if (target == LOG_TARGET_FILE) {
		if ((L.file = strdup(file)) == NULL)
			return -1;
		if (log_reopen() == -1)
			return -1;
	} else if (target == LOG_TARGET_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	return 0;
}

int
log_reopen(void)
{
	int fd;

	if (L.target != LOG_TARGET_FILE)
		return 0;
	fd = open(L.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1; /* keep writing to the old file rather than nowhere */
	if (L.fd != STDERR_FILENO)
		close(L.fd);
	L.fd = fd;
	return 0;
}

void
log_fini(void)
{
	if (L.target == LOG_TARGET_FILE && L.fd != STDERR_FILENO)
		close(L.fd);
	else if (L.target == LOG_TARGET_SYSLOG)
		closelog();
	free(L.file);
	L.file = NULL;
	L.fd = STDERR_FILENO;
	L.target = LOG_TARGET_STDERR;
}

int
log_enabled(int level)
{
	return level >= L.level;
}

static void
append(struct log_line *l, const char *s, size_t n)
{
	/* Keep room for the truncation mark and the closing "}\n". */
	if (l->len + n > sizeof(l->buf) - LOG_RESERVE) {
		n = sizeof(l->buf) - LOG_RESERVE - l->len;
		l->truncated = 1;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
append_c(struct log_line *l, char c)
{
	append(l, &c, 1);
}

/* Escape for a JSON string or a quoted logfmt value: both take \" \\ \n
 * \t and \u00XX, so one routine serves both formats. */
static void
append_escaped(struct log_line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;
	char esc[6];

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f)
			continue;
		append(l, s + run, i - run);
		run = i + 1;
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
	size_t i;

	if (n == 0)
		return 1;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == '"' || s[i] == '=' ||
		    s[i] == '\\' || (unsigned char)s[i] == 0x7f)
			return 1;
	return 0;
}

static void
append_key(struct log_line *l, const char *key)
{
	if (L.format == LOG_FORMAT_JSON) {
		append(l, ",\"", 2);
		append(l, key, strlen(key));
		append(l, "\":", 2);
	} else {
		append_c(l, ' ');
		append(l, key, strlen(key));
		append_c(l, '=');
	}
}

struct log_line *
log_begin(int level, const char *event)
{
	struct log_line *l = &L.line;
	struct timespec ts;
	struct tm tm;
	char tbuf[40];
	size_t n;

	if (level < L.level)
		return NULL;
	l->len = 0;
	l->level = level;
	l->truncated = 0;
	/* syslog and the journal stamp lines themselves. */
	if (L.target != LOG_TARGET_SYSLOG) {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
		n += snprintf(tbuf + n, sizeof(tbuf) - n, ".%03ldZ",
		    ts.tv_nsec / 1000000);
		if (L.format == LOG_FORMAT_JSON) {
			append(l, "{\"ts\":\"", 7);
			append(l, tbuf, n);
			append(l, "\",\"level\":\"", 11);
		} else {
			append(l, "ts=", 3);
			append(l, tbuf, n);
			append(l, " level=", 7);
		}
	} else if (L.format == LOG_FORMAT_JSON)
		append(l, "{\"level\":\"", 10);
	else
		append(l, "level=", 6);
	append(l, level_names[level], strlen(level_names[level]));
	if (L.format == LOG_FORMAT_JSON)
		append_c(l, '"');
	log_str(l, "event", event);
	return l;
}

void
log_strn(struct log_line *l, const char *key, const char *val, size_t n)
{
	if (l == NULL)
		return;
	append_key(l, key);
	if (L.format == LOG_FORMAT_JSON || needs_quotes(val, n)) {
		append_c(l, '"');
		append_escaped(l, val, n);
		append_c(l, '"');
	} else
		append(l, val, n);
}

void
log_str(struct log_line *l, const char *key, const char *val)
{
	if (l == NULL)
		return;
	if (val == NULL)
		val = "";
	log_strn(l, key, val, strlen(val));
}

void
log_int(struct log_line *l, const char *key, long long val)
{
	char b[24];
	int n;

	if (l == NULL)
		return;
	n = snprintf(b, sizeof(b), "%lld", val);
	append_key(l, key);
	append(l, b, (size_t)n);
}

void
log_uint(struct log_line *l, const char *key, unsigned long long val)
{
	char b[24];
	int n;

	if (l == NULL)
		return;
	n = snprintf(b, sizeof(b), "%llu", val);
	append_key(l, key);
	append(l, b, (size_t)n);
}

void
log_end(struct log_line *l)
{
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	ssize_t w;
	size_t off = 0;

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
		syslog(prio[l->level], "%.*s", (int)l->len, l->buf);
		return;
	}
	l->buf[l->len++] = '\n';
	while (off < l->len) {
		w = write(L.fd, l->buf + off, l->len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* nowhere left to report a logging failure */
		off += (size_t)w;
	}
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
