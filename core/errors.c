/*
 * errors.c: an ordered list of "FILE:LINE: message" strings.
 *
 * Configuration checking collects every problem instead of stopping at the
 * first, so an operator fixes a file in one pass; `wsplugd -t` prints the
 * list and a failed reload logs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

void
errors_vadd(struct wsp_errors *e, const char *file, int line, const char *fmt,
    va_list ap)
{
	char body[512], *s, **n;
	int len;

	vsnprintf(body, sizeof(body), fmt, ap);
	if (file != NULL && line > 0)
		len = asprintf(&s, "%s:%d: %s", file, line, body);
	else if (file != NULL)
		len = asprintf(&s, "%s: %s", file, body);
	else
		len = asprintf(&s, "%s", body);
	if (len < 0)
		return; /* out of memory: the caller still fails, less precisely */
	n = realloc(e->msg, (e->n + 1) * sizeof(*e->msg));
	if (n == NULL) {
		free(s);
		return;
	}
	e->msg = n;
	e->msg[e->n++] = s;
}

void
errors_add(struct wsp_errors *e, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vadd(e, file, line, fmt, ap);
	va_end(ap);
}

void
errors_clear(struct wsp_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	e->msg = NULL;
	e->n = 0;
}
