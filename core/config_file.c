/*
 * config_file.c: reading an INI file through inih, line by line, so that
 * every problem says FILE:LINE.
 *
 * inih splits lines into section headers and key = value pairs; what the
 * sections and keys mean is config.c's, which this file reaches only
 * through the two hooks in struct config_reader.  We feed inih through our
 * own line reader rather than letting it read the file, for three reasons:
 * the reader knows which line inih is working on, so every message can say
 * FILE:LINE; it sees each section header, so an empty [plugin:ping] still
 * registers (inih only ever reports keys) and an unknown section is
 * reported even when it holds nothing; and it hands inih only lines that fit
 * inih's buffer, because inih truncates a longer line and passes the stump
 * to the handler as if it were the value.
 *
 * Every problem is collected, not just the first, so an operator fixes the
 * file in one pass.
 *
 * inih's knobs are process globals in Debian's build (ini_allow_multiline
 * and friends).  We set them before every parse: only this file uses inih,
 * and the daemon parses on its one thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "wsplugd.h"

/*
 * Longest line accepted, line ending excluded: a generous origins list fits
 * many times over.  inih's heap buffer grows on demand up to this plus CR,
 * LF and NUL, so it never has to truncate a line we gave it.
 */
#define CONFIG_MAX_LINE (1024 * 1024)

void
config_file_verror(struct config_reader *r, int line, const char *fmt,
    va_list ap)
{
	r->failed = 1;
	errors_vadd(r->errs, r->file, line, fmt, ap);
}

void
config_file_error(struct config_reader *r, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_file_verror(r, line, fmt, ap);
	va_end(ap);
}

static void
cfr_nomem(struct config_reader *r)
{
	config_file_error(r, r->lineno, "out of memory");
}

static void
cfr_syntax(struct config_reader *r, int line)
{
	int *ns;

	config_file_error(r, line,
	    "syntax error (expected [section] or key = value)");
	if ((ns = reallocarray(r->syntax, r->nsyntax + 1,
	    sizeof(*ns))) != NULL) {
		r->syntax = ns;
		r->syntax[r->nsyntax++] = line;
	}
}

/*
 * Look at a line before inih does.  Headers are ours to interpret; for any
 * other line that is not blank or a comment inih must call the handler, and
 * when it does not, it rejected the line.
 */
static void
cfr_scan_line(struct config_reader *r)
{
	char *s = r->buf + r->off, *close, *rest, *name;

	while (config_is_space((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == ';' || *s == '#')
		return;
	if (*s != '[') {
		r->kv_wanted = 1;
		r->kv_seen = 0;
		return;
	}
	/* what follows a header may only be a comment */
	close = strchr(s, ']');
	rest = close != NULL ? close + 1 : NULL;
	while (rest != NULL && config_is_space((unsigned char)*rest))
		rest++;
	if (rest == NULL || (*rest != '\0' && *rest != ';' && *rest != '#')) {
		cfr_syntax(r, r->lineno);
		r->section(r->arg, NULL);
		return;
	}
	if ((name = strndup(s + 1, (size_t)(close - s - 1))) == NULL) {
		cfr_nomem(r);
		r->section(r->arg, NULL);
		return;
	}
	r->section(r->arg, name);
	free(name);
}

static void
cfr_end_line(struct config_reader *r)
{
	if (r->kv_wanted && !r->kv_seen)
		cfr_syntax(r, r->lineno);
	r->kv_wanted = 0;
}

/* Read the next line whole; 0, or -1 at the end of the file. */
static int
cfr_next_line(struct config_reader *r)
{
	ssize_t n;
	size_t content;

	cfr_end_line(r);
	if (r->eof)
		return -1;
	errno = 0;
	if ((n = getline(&r->buf, &r->bufsz, r->fp)) == -1) {
		if (ferror(r->fp))
			r->read_errno = errno != 0 ? errno : EIO;
		r->eof = 1;
		return -1;
	}
	r->lineno++;
	r->len = (size_t)n;
	r->off = 0;
	/* a UTF-8 byte order mark, as some Windows editors write */
	if (r->lineno == 1 && r->len >= 3 &&
	    memcmp(r->buf, "\xef\xbb\xbf", 3) == 0)
		r->off = 3;

	content = r->len - r->off;
	if (content > 0 && r->buf[r->len - 1] == '\n')
		content--;
	if (content > 0 && r->buf[r->off + content - 1] == '\r')
		content--;
	if (strlen(r->buf + r->off) != r->len - r->off) {
		/* inih works on C strings and would see half the line */
		config_file_error(r, r->lineno, "NUL byte in line");
		strcpy(r->buf, "\n");
		r->len = 1;
		r->off = 0;
	} else if (content > CONFIG_MAX_LINE) {
		config_file_error(r, r->lineno, "line too long (%zu bytes; "
		    "at most %d)", content, CONFIG_MAX_LINE);
		strcpy(r->buf, "\n");
		r->len = 1;
		r->off = 0;
	}
	cfr_scan_line(r);
	return 0;
}

/* inih's fgets: the current line, in as many pieces as inih asks for. */
static char *
cfr_reader(char *str, int num, void *arg)
{
	struct config_reader *r = arg;
	size_t n;

	if (num < 2)
		return NULL;
	if (r->off >= r->len && cfr_next_line(r) == -1)
		return NULL;
	n = r->len - r->off;
	if (n > (size_t)num - 1)
		n = (size_t)num - 1;
	memcpy(str, r->buf + r->off, n);
	str[n] = '\0';
	r->off += n;
	return str;
}

static int
cfr_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct config_reader *r = arg;

	/* inih cuts section names at 49 bytes; ours, from the reader, are
	 * whole */
	(void)section;

	r->kv_seen = 1;
	if (*name == '\0')
		cfr_syntax(r, r->lineno);
	else
		r->key(r->arg, name, value);
	/* never 0: inih would take it for its one syntax error */
	return 1;
}

/* 0, or -1 when the file could not be read to its end. */
static int
cfr_parse(struct config_reader *r)
{
	/* inih's defaults, set anyway: cfr_scan_line() must agree with
	 * inih on what a comment is */
	static char start_comments[] = ";#", inline_comments[] = ";";
	size_t i;
	int rv;

	/* Python-style continuation lines would glue an indented line onto
	 * the previous value without a word; off, an indented line is a
	 * line of its own */
	ini_allow_multiline = false;
	/* the reader strips the BOM itself: it classifies lines too */
	ini_allow_bom = false;
	ini_start_comment_prefixes = start_comments;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = inline_comments;
	ini_allow_no_value = false;
	ini_stop_on_first_error = false;
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = CONFIG_MAX_LINE + 3; /* CR, LF, NUL */

	rv = ini_parse_stream(cfr_reader, r, cfr_handler, r);
	cfr_end_line(r);
	if (rv == -2) {
		config_file_error(r, 0, "out of memory");
		return -1;
	}
	if (r->read_errno != 0) {
		config_file_error(r, 0, "cannot read: %s",
		    strerror(r->read_errno));
		return -1;
	}
	/* inih returns only its first error line; the reader normally has
	 * reported it already */
	if (rv > 0) {
		for (i = 0; i < r->nsyntax; i++)
			if (r->syntax[i] == rv)
				break;
		if (i == r->nsyntax)
			cfr_syntax(r, rv);
	}
	return 0;
}

int
config_file_read(struct config_reader *r)
{
	int rv = -1;

	if ((r->fp = fopen(r->file, "re")) == NULL)
		config_file_error(r, 0, "cannot open: %s", strerror(errno));
	else {
		rv = cfr_parse(r);
		fclose(r->fp);
		r->fp = NULL;
	}
	free(r->buf);
	r->buf = NULL;
	free(r->syntax);
	r->syntax = NULL;
	r->nsyntax = 0;
	return rv;
}
