/*
 * test_log.c: the line builder (log.c), through a log file as the daemon
 * writes it: bare and quoted logfmt values, every escape, a client's bytes
 * made valid UTF-8, numbers at their limits, the JSON format, the level
 * filter, and a line cut to its maximum before a character, never inside
 * one, and marked.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

static char path[] = "/tmp/wsplugd-test-log-XXXXXX";

/* Start a fresh file in format, at level info. */
static void
open_log(enum log_format format)
{
	int fd;

	strcpy(path, "/tmp/wsplugd-test-log-XXXXXX");
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(log_init(WSP_LOG_INFO, format, LOG_TARGET_FILE,
	    path, "wsplugd"), 0);
}

/* The file's text, the log closed and the file gone; the caller frees. */
static char *
close_log(void)
{
	FILE *f;
	char *text;
	long n;

	log_fini();
	f = fopen(path, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	unlink(path);
	return text;
}

/* The line after its timestamp: "level=… event=… …\n". */
static const char *
after_ts(const char *line)
{
	const char *p = strstr(line, " level=");

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(strncmp(line, "ts=", 3), 0);
	return p + 1;
}

static void
test_logfmt_values(void)
{
	struct log_line *l;
	char *text;
	const char *first;
	static const char ctl[] = { 'a', 0x01, 0x7f, 'b' };

	open_log(LOG_FORMAT_LOGFMT);
	l = log_begin(WSP_LOG_INFO, "t.bare");
	log_str(l, "conn", "0123abcd");
	log_str(l, "path", "/ws?x");
	log_str(l, "empty", "");
	log_str(l, "none", NULL);
	log_end(l);
	l = log_begin(WSP_LOG_WARN, "t.quoted");
	log_str(l, "ua", "Mozilla/5.0 (X11; Linux x86_64)");
	log_str(l, "q", "say \"hi\"\\ now");
	log_str(l, "ws", "a\nb\rc\td");
	log_strn(l, "ctl", ctl, sizeof(ctl));
	log_str(l, "eq", "a=b");
	log_uint(l, "a_key_longer_than_the_forty_bytes_of_the_fast_way", 1);
	log_end(l);
	text = close_log();
	first = "level=info event=t.bare conn=0123abcd path=/ws?x "
	    "empty=\"\" none=\"\"\n";
	CU_ASSERT_EQUAL(strncmp(after_ts(text), first, strlen(first)), 0);
	CU_ASSERT_STRING_EQUAL(after_ts(strchr(text, '\n') + 1),
	    "level=warn event=t.quoted ua=\"Mozilla/5.0 (X11; Linux x86_64)\" "
	    "q=\"say \\\"hi\\\"\\\\ now\" ws=\"a\\nb\\rc\\td\" "
	    "ctl=\"a\\u0001\\u007fb\" eq=\"a=b\" "
	    "a_key_longer_than_the_forty_bytes_of_the_fast_way=1\n");
	free(text);
}

static void
test_utf8_made_valid(void)
{
	struct log_line *l;
	char *text;

	open_log(LOG_FORMAT_LOGFMT);
	l = log_begin(WSP_LOG_INFO, "t.utf8");
	/* valid two-, three- and four-byte characters stay */
	log_str(l, "ok", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	/* a stray continuation byte and an invalid lead: U+FFFD each */
	log_str(l, "bad", "a\x80" "b\xff" "c");
	/* a character cut short at the end is dropped */
	log_str(l, "cut", "ab\xe2\x82");
	/* an overlong encoding is not a character */
	log_str(l, "long", "\xc0\xaf");
	log_end(l);
	text = close_log();
	CU_ASSERT_STRING_EQUAL(after_ts(text),
	    "level=info event=t.utf8 ok=\"caf\xc3\xa9 \xe2\x82\xac "
	    "\xf0\x9f\x98\x80\" bad=\"a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\" "
	    "cut=\"ab\" long=\"\xef\xbf\xbd\xef\xbf\xbd\"\n");
	CU_ASSERT_EQUAL(utf8_validate(UTF8_ACCEPT, (const uint8_t *)text,
	    strlen(text)), UTF8_ACCEPT);
	free(text);
}

/* What the log must make of one byte b inside a value: the reference,
 * written the slow and obvious way. */
static const char *
expect_byte(unsigned b, int *quoted_r)
{
	static char out[8];

	*quoted_r = 1;
	if (b >= 0x80)
		return "\xef\xbf\xbd"; /* a lone byte is not a character */
	switch (b) {
	case '"': return "\\\"";
	case '\\': return "\\\\";
	case '\n': return "\\n";
	case '\r': return "\\r";
	case '\t': return "\\t";
	}
	if (b < 0x20 || b == 0x7f) {
		snprintf(out, sizeof(out), "\\u%04x", b);
		return out;
	}
	out[0] = (char)b;
	out[1] = '\0';
	*quoted_r = b == ' ' || b == '=';
	return out;
}

/* 1 if the log makes the wrong text of a value of vlen 'a's with byte b
 * at pos, in JSON or logfmt. */
static int
wrong_byte(int json, unsigned b, size_t vlen, size_t pos)
{
	char val[64], want[64 + 16], *text;
	const char *e;
	struct log_line *l;
	int quoted, wrong;

	memset(val, 'a', vlen);
	val[pos] = (char)b;
	open_log(json ? LOG_FORMAT_JSON : LOG_FORMAT_LOGFMT);
	l = log_begin(WSP_LOG_INFO, "t");
	log_strn(l, "v", val, vlen);
	log_end(l);
	text = close_log();
	e = expect_byte(b, &quoted);
	/* a lead byte at the very end: a character cut short, dropped */
	if (b >= 0xc2 && b <= 0xf4 && pos == vlen - 1)
		e = "";
	quoted |= json;
	snprintf(want, sizeof(want), "%s%.*s%s%.*s%s%s", quoted ? "\"" : "",
	    (int)pos, val, e, (int)(vlen - pos - 1), val + pos + 1,
	    quoted ? "\"" : "", json ? "}\n" : "\n");
	e = strstr(text, json ? "\"v\":" : " v=");
	wrong = e == NULL || strcmp(e + (json ? 4 : 3), want) != 0;
	free(text);
	return wrong;
}

/* Every byte at every offset, in both formats, against the reference,
 * of values of the lengths log.c's span classes differently: shorter
 * than a vector (copied into one of its own: each of the copy's length
 * classes), exactly one, and vectors and a tail (the last sixteen bytes
 * again). */
static void
test_every_byte_every_offset(void)
{
	static const size_t lens[] = { 1, 3, 4, 7, 8, 15, 16, 17, 31, 37 };
	unsigned b;
	size_t k, pos;
	int wrong = 0, json;

	for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (json = 0; json < 2; json++)
			for (b = 0; b < 256; b++)
				for (pos = 0; pos < lens[k]; pos++)
					wrong += wrong_byte(json, b, lens[k],
					    pos);
	CU_ASSERT_EQUAL(wrong, 0);
}

static void
test_numbers_and_level(void)
{
	struct log_line *l;
	char *text;

	open_log(LOG_FORMAT_LOGFMT);
	CU_ASSERT_PTR_NULL(log_begin(WSP_LOG_DEBUG, "t.filtered"));
	/* every other call takes the NULL a filtered line gives */
	log_str(NULL, "k", "v");
	log_uint(NULL, "k", 1);
	log_end(NULL);
	l = log_begin(WSP_LOG_ERROR, "t.num");
	log_uint(l, "zero", 0);
	log_uint(l, "max", ULLONG_MAX);
	log_int(l, "neg", -42);
	log_int(l, "min", LLONG_MIN);
	/* every count of digits, odd and even, around each power of ten;
	 * keys of every length the short copy treats apart */
	log_uint(l, "n9", 9);
	log_uint(l, "n10_", 10);
	log_uint(l, "n99_a", 99);
	log_uint(l, "n100_ab", 100);
	log_uint(l, "n1009_abc", 1009);
	log_uint(l, "n65535_abcdefgh", 65535);
	log_int(l, "m100000_abcdefghi", -100000);
	log_end(l);
	text = close_log();
	CU_ASSERT_STRING_EQUAL(after_ts(text),
	    "level=error event=t.num zero=0 max=18446744073709551615 neg=-42 "
	    "min=-9223372036854775808 n9=9 n10_=10 n99_a=99 n100_ab=100 "
	    "n1009_abc=1009 n65535_abcdefgh=65535 "
	    "m100000_abcdefghi=-100000\n");
	free(text);
}

static void
test_json(void)
{
	struct log_line *l;
	char *text, *p;

	open_log(LOG_FORMAT_JSON);
	l = log_begin(WSP_LOG_INFO, "t.json");
	log_str(l, "ua", "a \"b\"\\c\x01");
	log_str(l, "bare", "abc");
	log_uint(l, "n", 7);
	/* longer than the keys copied byte by byte: the general way */
	log_str(l, "a_key_longer_than_the_forty_bytes_of_the_fast_way", "x");
	log_end(l);
	text = close_log();
	CU_ASSERT_EQUAL(strncmp(text, "{\"ts\":\"", 7), 0);
	p = strstr(text, "\",\"level\":");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(p, "\",\"level\":\"info\",\"event\":\"t.json\","
	    "\"ua\":\"a \\\"b\\\"\\\\c\\u0001\",\"bare\":\"abc\",\"n\":7,"
	    "\"a_key_longer_than_the_forty_bytes_of_the_fast_way\":\"x\"}\n");
	free(text);
}

static void
test_truncated_line(void)
{
	struct log_line *l;
	char *text, *big;
	size_t i, n = 6000, len;

	/* two-byte characters: the cut must fall between two of them */
	big = malloc(n + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	for (i = 0; i < n; i += 2) {
		big[i] = '\xc3';
		big[i + 1] = '\xa9';
	}
	big[n] = '\0';
	open_log(LOG_FORMAT_LOGFMT);
	l = log_begin(WSP_LOG_INFO, "t.big");
	log_str(l, "v", big);
	log_str(l, "after", "x"); /* no room left: dropped, no overflow */
	log_end(l);
	text = close_log();
	len = strlen(text);
	CU_ASSERT(len <= 4096);
	CU_ASSERT(len > 4000);
	CU_ASSERT_EQUAL(strcmp(text + len - 15, " truncated=yes\n"), 0);
	CU_ASSERT_PTR_NULL(strstr(text, "after="));
	CU_ASSERT_EQUAL(utf8_validate(UTF8_ACCEPT, (const uint8_t *)text,
	    len), UTF8_ACCEPT);
	free(text);

	/* the same in JSON: still one object */
	open_log(LOG_FORMAT_JSON);
	l = log_begin(WSP_LOG_INFO, "t.big");
	log_str(l, "v", big);
	log_end(l);
	text = close_log();
	len = strlen(text);
	CU_ASSERT(len <= 4096);
	CU_ASSERT_EQUAL(strcmp(text + len - 19, ",\"truncated\":true}\n"), 0);
	CU_ASSERT_EQUAL(utf8_validate(UTF8_ACCEPT, (const uint8_t *)text,
	    len), UTF8_ACCEPT);
	free(text);
	free(big);
}

/*
 * A worker gathers its lines in memory it shares with the master; killed
 * before it wrote them, it leaves them there, and log_salvage writes
 * them, once, after what the master logged itself.  A child process in a
 * loop plays the worker; SIGKILL, as the watchdog sends, ends it.
 */
static void
test_salvage(void)
{
	struct log_pending *area;
	struct event_base *base;
	struct log_line *l;
	const char *p;
	char *text;
	pid_t pid;
	int status, i;

	area = mmap(NULL, sizeof(*area), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CU_ASSERT_FATAL(area != MAP_FAILED);
	open_log(LOG_FORMAT_LOGFMT);
	log_msg(WSP_LOG_INFO, "t.master", "before");
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		if ((base = event_base_new()) == NULL || log_attach(base) != 0)
			_exit(2);
		log_set_worker(2, area);
		for (i = 0; i < 3; i++) {
			l = log_begin(WSP_LOG_INFO, "t.gathered");
			log_int(l, "n", i);
			log_end(l);
		}
		raise(SIGKILL);
		_exit(3);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CU_ASSERT(atomic_load(&area->len) > 0);
	log_salvage(area);
	CU_ASSERT_EQUAL(atomic_load(&area->len), 0);
	log_salvage(area); /* empty: writes nothing */
	log_msg(WSP_LOG_INFO, "t.master", "after");
	text = close_log();
	p = text;
	CU_ASSERT_PTR_NOT_NULL_FATAL(p = strstr(p, "event=t.master msg=before"));
	for (i = 0; i < 3; i++) {
		char want[64];

		snprintf(want, sizeof(want),
		    "event=t.gathered worker=2 n=%d\n", i);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p = strstr(p, want));
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(p, "event=t.master msg=after"));
	/* each once */
	CU_ASSERT_PTR_NULL(strstr(strstr(text, "n=0") + 1, "n=0"));
	free(text);
	munmap(area, sizeof(*area));
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "logfmt: bare values, quoted ones and every escape",
		    test_logfmt_values },
		{ "a client's bytes are made valid UTF-8",
		    test_utf8_made_valid },
		{ "every byte at every offset of a value, both formats",
		    test_every_byte_every_offset },
		{ "numbers at their limits; the level filter",
		    test_numbers_and_level },
		{ "JSON: one object a line, the same escapes",
		    test_json },
		{ "a line past its maximum is cut between characters and "
		    "marked", test_truncated_line },
		{ "a killed worker's gathered lines are salvaged, once",
		    test_salvage },
	};

	return suite_run("log", tests, nitems(tests));
}
