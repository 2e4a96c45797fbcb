/*
 * config_value.c: the syntax of configuration values.
 *
 * Numbers with units, booleans, addresses, lists, origins, tokens, names
 * and paths: what a value may look like, independent of which key it is
 * for.  These functions never print; config.c turns a refusal into a
 * FILE:LINE message, and the plugin getters in host.c share the parsers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wsplugd.h"

/*
 * Copy s into buf (CONFIG_SHOW_SIZE bytes) for quoting in a message: cut
 * long, control characters made visible as '?', so a bad value can neither
 * flood nor mangle the terminal that shows the error.
 */
const char *
config_show(const char *s, char *buf)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < CONFIG_SHOW_MAX; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    '?' : s[i];
	if (s[i] != '\0') {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

int
config_is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	    c == '\f';
}

int
config_all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!is_digit((unsigned char)*s))
			return 0;
	return 1;
}

/*
 * Value syntax.  These never print: the plugin getters share them and
 * report in their own words.
 */

int
config_parse_uint(const char *s, uint64_t max, uint64_t *value_r)
{
	uint64_t n = 0;
	unsigned d;

	if (!config_all_digits(s))
		return -1;
	for (; *s != '\0'; s++) {
		d = (unsigned)(*s - '0');
		if (n > max / 10 || d > max - n * 10)
			return -1;
		n = n * 10 + d;
	}
	*value_r = n;
	return 0;
}


const struct config_unit config_duration_units[] = {
	{ "ms", 1 }, { "s", MS_SEC }, { "m", MS_MIN }, { "h", MS_HOUR },
	{ "d", MS_DAY }, { NULL, 0 },
};

const struct config_unit config_size_units[] = {
	{ "B", 1 }, { "KiB", KIB }, { "MiB", MIB }, { "GiB", GIB },
	{ NULL, 0 },
};

/*
 * Digits then exactly one unit from units; a bare 0 too when zero_bare.
 * *overflow_r tells a well-formed but too large value from junk, so the
 * caller can say "out of range" instead of "invalid".
 */
int
config_parse_units(const char *s, const struct config_unit *units,
    int zero_bare,
    uint64_t *value_r, int *overflow_r)
{
	const struct config_unit *u;
	uint64_t n = 0;
	unsigned d;
	int over = 0;

	*overflow_r = 0;
	if (!is_digit((unsigned char)*s))
		return -1;
	for (; is_digit((unsigned char)*s); s++) {
		d = (unsigned)(*s - '0');
		if (n > (UINT64_MAX - d) / 10)
			over = 1;
		else
			n = n * 10 + d;
	}
	if (*s == '\0') {
		if (!zero_bare || over || n != 0)
			return -1;
		*value_r = 0;
		return 0;
	}
	for (u = units; u->name != NULL; u++)
		if (strcmp(s, u->name) == 0)
			break;
	if (u->name == NULL)
		return -1;
	if (over || n > UINT64_MAX / u->mult) {
		*overflow_r = 1;
		return -1;
	}
	*value_r = n * u->mult;
	return 0;
}

int
config_parse_duration(const char *s, uint64_t *ms_r)
{
	int overflow;

	return config_parse_units(s, config_duration_units, 1, ms_r, &overflow);
}

int
config_parse_size(const char *s, uint64_t *bytes_r)
{
	int overflow;

	return config_parse_units(s, config_size_units, 0, bytes_r, &overflow);
}

int
config_parse_bool(const char *s, int *value_r)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < nitems(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*value_r = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*value_r = 0;
			return 0;
		}
	}
	return -1;
}

/* The one comparison of listen addresses: the configuration's duplicate
 * check, and the listeners and admin sockets a reload keeps. */
int
config_listen_same(const struct sockaddr_storage *ss, socklen_t len,
    const struct wsp_listen_addr *a)
{
	return len == a->sslen && memcmp(ss, &a->ss, a->sslen) == 0;
}

/* ADDRESS:PORT, the address numeric: 127.0.0.1:8080 or [::1]:8080. */
int
config_parse_listen(const char *s, struct wsp_listen_addr *addr_r)
{
	struct wsp_listen_addr a;
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;
	char host[INET6_ADDRSTRLEN];
	const char *h, *end, *port;
	uint64_t pnum;
	size_t hlen;
	int af;

	if (s[0] == '[') {
		h = s + 1;
		if ((end = strchr(h, ']')) == NULL || end[1] != ':')
			return -1;
		port = end + 2;
		af = AF_INET6;
	} else {
		/* one colon only: a bare IPv6 address is ambiguous */
		if ((end = strchr(s, ':')) == NULL || strchr(end + 1, ':'))
			return -1;
		h = s;
		port = end + 1;
		af = AF_INET;
	}
	hlen = (size_t)(end - h);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (config_parse_uint(port, 65535, &pnum) == -1)
		return -1;

	memset(&a, 0, sizeof(a));
	if (af == AF_INET) {
		sin = (struct sockaddr_in *)&a.ss;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)pnum);
		a.sslen = sizeof(*sin);
	} else {
		sin6 = (struct sockaddr_in6 *)&a.ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)pnum);
		a.sslen = sizeof(*sin6);
	}
	if ((a.text = strdup(s)) == NULL)
		return -1;
	*addr_r = a;
	return 0;
}

/* 25000 -> "25s": the largest unit that divides evenly. */
const char *
config_fmt_duration(uint64_t ms, char *buf, size_t sz)
{
	size_t i;

	if (ms == 0) {
		snprintf(buf, sz, "0");
		return buf;
	}
	for (i = nitems(config_duration_units) - 1; i-- > 0;)
		if (ms % config_duration_units[i].mult == 0)
			break;
	snprintf(buf, sz, "%llu%s",
	    (unsigned long long)(ms / config_duration_units[i].mult),
	    config_duration_units[i].name);
	return buf;
}

/*
 * Paths.  Relative ones are relative to the directory of the configuration
 * file, so a build-tree config can point into the build tree.
 */

char *
config_path_join(const char *dir, const char *name)
{
	char *s;
	size_t n = strlen(dir);

	if (asprintf(&s, "%s%s%s", dir, n > 0 && dir[n - 1] == '/' ? "" : "/",
	    name) == -1)
		return NULL;
	return s;
}

char *
config_path_dirname(const char *file)
{
	const char *slash;

	if ((slash = strrchr(file, '/')) == NULL)
		return strdup(".");
	if (slash == file)
		return strdup("/");
	return strndup(file, (size_t)(slash - file));
}

/*
 * Lists: entries separated by whitespace and/or commas.  Returns the next
 * entry NUL-terminated in place, or NULL at the end.
 */
char *
config_list_next(char **sp)
{
	char *s = *sp, *e;

	while (*s != '\0' && (config_is_space((unsigned char)*s) || *s == ','))
		s++;
	if (*s == '\0')
		return NULL;
	for (e = s; *e != '\0' && !config_is_space((unsigned char)*e) && *e != ',';
	    e++)
		;
	if (*e != '\0')
		*e++ = '\0';
	*sp = e;
	return s;
}

int
config_strv_add(char ***v, size_t *n, const char *s)
{
	char **nv, *d;

	if ((d = strdup(s)) == NULL)
		return -1;
	if ((nv = reallocarray(*v, *n + 1, sizeof(**v))) == NULL) {
		free(d);
		return -1;
	}
	nv[(*n)++] = d;
	*v = nv;
	return 0;
}

void
config_strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int
config_valid_url_path(const char *s)
{
	size_t n;

	if (s[0] != '/')
		return 0;
	for (n = 0; s[n] != '\0'; n++)
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f ||
		    s[n] == '?' || s[n] == '#')
			return 0;
	return n <= CONFIG_MAX_PATH;
}

/* scheme://host[:port] as browsers serialize an Origin, or "null". */
int
config_valid_origin(const char *s)
{
	char host[INET6_ADDRSTRLEN];
	const char *h, *e;
	uint64_t port;

	if (strcmp(s, "null") == 0)
		return 1;
	if (strncasecmp(s, "http://", 7) == 0)
		h = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		h = s + 8;
	else
		return 0;
	if (*h == '[') {
		if ((e = strchr(h, ']')) == NULL ||
		    (size_t)(e - h - 1) >= sizeof(host))
			return 0;
		memcpy(host, h + 1, (size_t)(e - h - 1));
		host[e - h - 1] = '\0';
		if (inet_pton(AF_INET6, host, &(struct in6_addr){ 0 }) != 1)
			return 0;
		e++;
	} else {
		for (e = h; (*e >= 'a' && *e <= 'z') || (*e >= 'A' &&
		    *e <= 'Z') || is_digit((unsigned char)*e) || *e == '-' ||
		    *e == '.'; e++)
			;
		if (e == h)
			return 0;
	}
	if (*e == '\0')
		return 1;
	if (*e != ':' || config_parse_uint(e + 1, 65535, &port) == -1 ||
	    port == 0)
		return 0;
	return 1;
}

/* RFC 7230 token, the syntax of a Sec-WebSocket-Protocol value. */
int
config_valid_token(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    is_digit((unsigned char)*s) ||
		    strchr("!#$%&'*+-.^_`|~", *s) != NULL))
			return 0;
	return 1;
}

int
config_valid_plugin_name(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' &&
		    s[n] <= 'Z') || is_digit((unsigned char)s[n]) ||
		    s[n] == '_' || s[n] == '-'))
			return 0;
	return n >= 1 && n <= CONFIG_MAX_PLUGIN_NAME;
}
