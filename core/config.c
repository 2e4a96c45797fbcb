/*
 * config.c: what the INI configuration means, validated whole.
 *
 * config_file.c reads the file and hands us each section header and each
 * key = value with its line; here is the table of keys (cfg_keys[]), the
 * sections they belong to, the syntax and range of each value, the
 * defaults, and the checks across keys once the whole file is read.
 *
 * Every problem is collected, not just the first, so an operator fixes the
 * file in one pass; config_load() then returns NULL and the caller prints
 * the list (`wsplugd -t`, or the log of a failed reload).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "wsplugd.h"

#define DEFAULT_LISTEN "127.0.0.1:8080"
/* Loopback: /connections shows client addresses and user agents, so the
 * admin listener is for the host's own monitoring unless configured
 * otherwise.  9180 keeps clear of the usual 8080-style application ports. */
#define DEFAULT_ADMIN_LISTEN "127.0.0.1:9180"
#define DEFAULT_PATH "/ws"

#define EXPECT_DURATION "a number with a unit: 500ms, 25s, 2m, 1h, 1d"
#define EXPECT_SIZE "a number with a unit: 512B, 64KiB, 1MiB, 1GiB"
#define EXPECT_BOOL "yes or no, true or false, on or off, 1 or 0"

enum cfg_sec {
	SEC_NONE, /* before the first header */
	SEC_SERVER,
	SEC_KEEPALIVE,
	SEC_LOG,
	SEC_PLUGINS,
	SEC_ADMIN,
	SEC_DEFLATE,
	SEC_TLS,
	SEC_BUS,
	SEC_PLUGIN, /* [plugin:NAME]; which one is cfg_parse.plugin */
	SEC_SKIP,   /* a header already reported as bad: ignore its keys */
};

static const char *const cfg_sec_names[] = {
	[SEC_SERVER] = "server",
	[SEC_KEEPALIVE] = "keepalive",
	[SEC_LOG] = "log",
	[SEC_PLUGINS] = "plugins",
	[SEC_ADMIN] = "admin",
	[SEC_DEFLATE] = "deflate",
	[SEC_TLS] = "tls",
	[SEC_BUS] = "bus",
};

enum cfg_type {
	T_LISTEN,
	T_ADMIN_LISTEN, /* like T_LISTEN, but empty means off */
	T_PATH,
	T_ORIGINS,
	T_GONE,   /* [server] gone: a list of paths */
	T_PROTOCOLS,
	T_UINT,
	T_SIZE,
	T_DURATION,
	T_LEVEL,
	T_FORMAT,
	T_TARGET,
	T_DIR,
	T_WORKERS,
	T_MEMORY, /* a size, or auto */
	T_HOSTS,
	T_USER,
	T_GROUP,
	T_BOOL, /* into a uint64_t, as 0 or 1 */
	T_TLS_FILE,    /* [tls] certificate, key, ocsp_staple */
	T_TLS_STRING,  /* [tls] ciphers, ciphersuites: OpenSSL checks them */
	T_TLS_VERSION,
	T_TLS_KTLS,
	T_TLS_BOOL,    /* [tls] session_tickets, into struct wsp_tls_config */
	T_BUS_BACKEND, /* [bus] backend: local or redis */
	T_BUS_REDIS,   /* [bus] redis: host:port or /unix/path */
	T_BUS_STRING,  /* [bus] redis_user, redis_prefix */
	T_BUS_PASSFILE, /* [bus] redis_password_file: read at load */
};

/* How a bad value of each type is named, and what was expected instead. */
static const struct {
	const char *noun;
	const char *expect;
} cfg_types[] = {
	[T_LISTEN] = { "address", "a numeric address and a port, e.g. "
	    "127.0.0.1:8080 or [::1]:8080, each optionally followed by tls" },
	[T_ADMIN_LISTEN] = { "address", "a numeric address and a port, e.g. "
	    "127.0.0.1:9180 or [::1]:9180, or nothing to turn the admin "
	    "listener off" },
	[T_PATH] = { "path", "a path starting with '/', at most 256 bytes of "
	    "printable ASCII without spaces, '?' or '#', e.g. /ws" },
	[T_ORIGINS] = { "origin", "scheme://host[:port] with scheme http or "
	    "https, or null" },
	[T_GONE] = { "path", "paths starting with '/', of printable ASCII "
	    "without spaces, '?' or '#', e.g. /old-ws" },
	[T_PROTOCOLS] = { "subprotocol", "a token of letters, digits and "
	    "!#$%&'*+-.^_`|~" },
	[T_UINT] = { "number", "an integer" },
	[T_SIZE] = { "size", EXPECT_SIZE },
	[T_DURATION] = { "duration", EXPECT_DURATION },
	[T_LEVEL] = { "log level", "debug, info, warn or error" },
	[T_FORMAT] = { "log format", "logfmt or json" },
	[T_TARGET] = { "log target", "stderr, syslog, journal or "
	    "file:/absolute/path" },
	[T_DIR] = { "directory", "an absolute path, or one relative to the "
	    "configuration file" },
	[T_WORKERS] = { "number", "auto or an integer" },
	[T_MEMORY] = { "size", "auto or " EXPECT_SIZE },
	[T_USER] = { "user", "a user name" },
	[T_GROUP] = { "group", "a group name" },
	[T_HOSTS] = { "host", "a host name or address as a Host header has "
	    "it, with or without a port, e.g. monitor.example or "
	    "[::1]:9180" },
	[T_TLS_FILE] = { "file", "an absolute path, or one relative to the "
	    "configuration file" },
	[T_TLS_STRING] = { "list", "an OpenSSL cipher list" },
	[T_TLS_VERSION] = { "version", "TLS1.2 or TLS1.3" },
	[T_TLS_KTLS] = { "value", "auto or off" },
	[T_TLS_BOOL] = { "boolean", EXPECT_BOOL },
	[T_BOOL] = { "boolean", EXPECT_BOOL },
	[T_BUS_BACKEND] = { "backend", "local or redis" },
	[T_BUS_REDIS] = { "address", "host:port, [v6addr]:port or an "
	    "absolute unix socket path, e.g. 127.0.0.1:6379" },
	[T_BUS_STRING] = { "value", "1..128 printable ASCII characters "
	    "without spaces" },
	[T_BUS_PASSFILE] = { "file", "an absolute path, or one relative to "
	    "the configuration file, of a readable file whose first line is "
	    "the password" },
};

struct cfg_key {
	enum cfg_sec sec;
	const char *name;
	enum cfg_type type;
	size_t off; /* of the uint64_t in struct wsp_config (numbers) */
	uint64_t min, max;
	const char *range; /* min..max as an operator writes it */
	int zero_ok;       /* 0 ("off") is allowed below min */
};

#define NUM(s, n, t, field, lo, hi, r, z)                                     \
	{ .sec = (s), .name = (n), .type = (t),                               \
	  .off = offsetof(struct wsp_config, field), .min = (lo),             \
	  .max = (hi), .range = (r), .zero_ok = (z) }

static const struct cfg_key cfg_keys[] = {
	{ .sec = SEC_SERVER, .name = "listen", .type = T_LISTEN },
	{ .sec = SEC_SERVER, .name = "path", .type = T_PATH },
	{ .sec = SEC_SERVER, .name = "origins", .type = T_ORIGINS },
	{ .sec = SEC_SERVER, .name = "subprotocols", .type = T_PROTOCOLS },
	NUM(SEC_SERVER, "max_connections", T_UINT, max_connections,
	    1, 1000000, "1..1000000", 0),
	NUM(SEC_SERVER, "max_connections_per_ip", T_UINT,
	    max_connections_per_ip, 0, 1000000, "0..1000000", 0),
	NUM(SEC_SERVER, "max_message_size", T_SIZE, max_message_size,
	    1, GIB, "1B..1GiB", 0),
	NUM(SEC_SERVER, "max_header_size", T_SIZE, max_header_size,
	    KIB, 64 * KIB, "1KiB..64KiB", 0),
	NUM(SEC_SERVER, "max_output_buffer", T_SIZE, max_output_buffer,
	    4 * KIB, 4 * GIB, "4KiB..4GiB", 0),
	NUM(SEC_SERVER, "max_buffer_memory", T_MEMORY, max_buffer_memory,
	    MIB, 1024 * GIB, "auto, or 1MiB..1TiB", 0),
	NUM(SEC_SERVER, "handshake_timeout", T_DURATION, handshake_timeout,
	    100, MS_HOUR, "100ms..1h", 0),
	NUM(SEC_SERVER, "shutdown_timeout", T_DURATION, shutdown_timeout,
	    0, MS_HOUR, "0..1h", 0),
	NUM(SEC_SERVER, "restart_spread", T_DURATION, restart_spread,
	    0, MS_HOUR, "0..1h", 0),
	{ .sec = SEC_SERVER, .name = "gone", .type = T_GONE },
	NUM(SEC_SERVER, "handover_timeout", T_DURATION, handover_timeout,
	    100, MS_HOUR, "100ms..1h", 0),
	NUM(SEC_SERVER, "slow_callback", T_DURATION, slow_callback,
	    1, MS_HOUR, "1ms..1h", 0),
	NUM(SEC_SERVER, "timer_slack", T_DURATION, timer_slack,
	    0, MS_SEC, "0..1s", 0),
	NUM(SEC_SERVER, "workers", T_WORKERS, workers, 1, CONFIG_MAX_WORKERS,
	    "auto, or 1..256", 0),
	NUM(SEC_SERVER, "worker_watchdog", T_DURATION, worker_watchdog,
	    100, MS_HOUR, "0, or 100ms..1h", 1),
	{ .sec = SEC_SERVER, .name = "user", .type = T_USER },
	{ .sec = SEC_SERVER, .name = "group", .type = T_GROUP },
	NUM(SEC_KEEPALIVE, "ping_interval", T_DURATION, ping_interval,
	    100, MS_DAY, "0, or 100ms..1d", 1),
	NUM(SEC_KEEPALIVE, "sweep_interval", T_DURATION, sweep_interval,
	    100, MS_DAY, "100ms..1d", 0),
	NUM(SEC_KEEPALIVE, "idle_timeout", T_DURATION, idle_timeout,
	    100, 7 * MS_DAY, "0, or 100ms..7d", 1),
	{ .sec = SEC_LOG, .name = "level", .type = T_LEVEL },
	{ .sec = SEC_LOG, .name = "format", .type = T_FORMAT },
	{ .sec = SEC_LOG, .name = "target", .type = T_TARGET },
	{ .sec = SEC_PLUGINS, .name = "dir", .type = T_DIR },
	{ .sec = SEC_ADMIN, .name = "listen", .type = T_ADMIN_LISTEN },
	{ .sec = SEC_ADMIN, .name = "allowed_hosts", .type = T_HOSTS },
	NUM(SEC_ADMIN, "max_connections", T_UINT, admin_max_connections,
	    1, 10000, "1..10000", 0),
	NUM(SEC_ADMIN, "timeout", T_DURATION, admin_timeout,
	    100, MS_HOUR, "100ms..1h", 0),
	NUM(SEC_DEFLATE, "enabled", T_BOOL, deflate_enabled, 0, 1, "", 0),
	NUM(SEC_DEFLATE, "server_max_window_bits", T_UINT,
	    deflate_server_wbits, 9, 15, "9..15", 0),
	NUM(SEC_DEFLATE, "client_max_window_bits", T_UINT,
	    deflate_client_wbits, 8, 15, "8..15", 0),
	NUM(SEC_DEFLATE, "context_takeover", T_BOOL, deflate_context_takeover,
	    0, 1, "", 0),
	NUM(SEC_DEFLATE, "level", T_UINT, deflate_level, 1, 9, "1..9", 0),
	NUM(SEC_DEFLATE, "mem_level", T_UINT, deflate_mem_level, 1, 9, "1..9",
	    0),
	NUM(SEC_DEFLATE, "threshold", T_SIZE, deflate_threshold, 0, GIB,
	    "0B..1GiB", 0),
	NUM(SEC_DEFLATE, "context_budget", T_SIZE, deflate_context_budget,
	    0, 64 * GIB, "0B..64GiB", 0),
	{ .sec = SEC_TLS, .name = "certificate", .type = T_TLS_FILE },
	{ .sec = SEC_TLS, .name = "key", .type = T_TLS_FILE },
	{ .sec = SEC_TLS, .name = "ocsp_staple", .type = T_TLS_FILE },
	{ .sec = SEC_TLS, .name = "ciphers", .type = T_TLS_STRING },
	{ .sec = SEC_TLS, .name = "ciphersuites", .type = T_TLS_STRING },
	{ .sec = SEC_TLS, .name = "min_version", .type = T_TLS_VERSION },
	{ .sec = SEC_TLS, .name = "session_tickets", .type = T_TLS_BOOL },
	{ .sec = SEC_TLS, .name = "ktls", .type = T_TLS_KTLS },
	{ .sec = SEC_BUS, .name = "backend", .type = T_BUS_BACKEND },
	NUM(SEC_BUS, "history_size", T_UINT, bus_history_size, 0, 1000000,
	    "0..1000000", 0),
	NUM(SEC_BUS, "history_ttl", T_DURATION, bus_history_ttl, 1000,
	    7 * MS_DAY, "1s..7d", 0),
	NUM(SEC_BUS, "history_memory", T_SIZE, bus_history_memory, 0,
	    64 * GIB, "0B..64GiB", 0),
	{ .sec = SEC_BUS, .name = "redis", .type = T_BUS_REDIS },
	{ .sec = SEC_BUS, .name = "redis_user", .type = T_BUS_STRING,
	  .off = offsetof(struct wsp_config, bus_redis_user) },
	{ .sec = SEC_BUS, .name = "redis_password_file",
	  .type = T_BUS_PASSFILE },
	NUM(SEC_BUS, "redis_db", T_UINT, bus_redis_db, 0, 65535, "0..65535",
	    0),
	{ .sec = SEC_BUS, .name = "redis_prefix", .type = T_BUS_STRING,
	  .off = offsetof(struct wsp_config, bus_redis_prefix) },
	NUM(SEC_BUS, "redis_timeout", T_DURATION, bus_redis_timeout, 100,
	    MS_MIN, "100ms..1m", 0),
	NUM(SEC_BUS, "redis_presence_ttl", T_DURATION, bus_redis_presence_ttl,
	    3 * MS_SEC, MS_HOUR, "3s..1h", 0),
	NUM(SEC_BUS, "redis_queue", T_SIZE, bus_redis_queue, 0, GIB,
	    "0B..1GiB", 0),
};

#define NKEYS nitems(cfg_keys)

/* Where [plugin:NAME]'s own keys were first set, for duplicate reports. */
struct cfg_plugin_lines {
	int path;
	int enabled;
};

struct cfg_parse {
	struct config_reader rd; /* the file, the line, the errors */
	struct wsp_config *cfg;
	char *confdir; /* directory of file: base of relative paths */
	const char *default_plugin_dir;

	/* where keys go */
	enum cfg_sec sec;
	size_t plugin;
	int seen[NKEYS]; /* line a key was set at, 0 if not yet */
	int bad[NKEYS];  /* the value was rejected */
	struct cfg_plugin_lines *plines; /* parallel to cfg->plugins */
};

static int cfg_set_redis(struct cfg_parse *p, const struct cfg_key *k,
    const char *value);
static void cfg_error(struct cfg_parse *, int, const char *, ...)
    WSP_PRINTFLIKE(3, 4);

static void
cfg_error(struct cfg_parse *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_file_verror(&p->rd, line, fmt, ap);
	va_end(ap);
}

static void
cfg_nomem(struct cfg_parse *p)
{
	cfg_error(p, p->rd.lineno, "out of memory");
}

static char *
path_resolve(struct cfg_parse *p, const char *path)
{
	if (path[0] == '/')
		return strdup(path);
	return config_path_join(p->confdir, path);
}

/*
 * Keys of the fixed sections.
 */

static void
cfg_invalid(struct cfg_parse *p, const struct cfg_key *k, const char *value)
{
	char v[CONFIG_SHOW_SIZE];

	if (k->type == T_UINT || k->type == T_WORKERS)
		cfg_error(p, p->rd.lineno, "[%s] %s: invalid number '%s' "
		    "(expected an integer, %s)", cfg_sec_names[k->sec],
		    k->name, config_show(value, v), k->range);
	else
		cfg_error(p, p->rd.lineno, "[%s] %s: invalid %s '%s' "
		    "(expected %s)", cfg_sec_names[k->sec], k->name,
		    cfg_types[k->type].noun, config_show(value, v),
		    cfg_types[k->type].expect);
}

static int
cfg_set_number(struct cfg_parse *p, const struct cfg_key *k,
    const char *value)
{
	char v[CONFIG_SHOW_SIZE];
	uint64_t n;
	int overflow = 0, rv;

	if (k->type == T_UINT || k->type == T_WORKERS) {
		rv = config_parse_uint(value, UINT64_MAX, &n);
		overflow = rv == -1 && config_all_digits(value);
	} else if (k->type == T_SIZE || k->type == T_MEMORY)
		rv = config_parse_units(value, config_size_units, 0, &n, &overflow);
	else
		rv = config_parse_units(value, config_duration_units, 1, &n, &overflow);
	if (rv == -1 && !overflow) {
		cfg_invalid(p, k, value);
		return -1;
	}
	if (overflow || !((n == 0 && k->zero_ok) ||
	    (n >= k->min && n <= k->max))) {
		cfg_error(p, p->rd.lineno, "[%s] %s: %s is out of range (%s)",
		    cfg_sec_names[k->sec], k->name, config_show(value, v), k->range);
		return -1;
	}
	*(uint64_t *)(void *)((char *)p->cfg + k->off) = n;
	return 0;
}

static in_port_t
ss_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)ss)->sin6_port;
	return ((const struct sockaddr_in *)ss)->sin_port;
}

/* [server] listen or [admin] listen, into *list_r. */
static int
cfg_set_listen(struct cfg_parse *p, const struct cfg_key *k,
    const char *value, struct wsp_listen_addr **list_r, size_t *n_r)
{
	struct wsp_listen_addr a, *na;
	char *copy, *rest, *s, v[CONFIG_SHOW_SIZE];
	size_t i;
	int rv = 0;

	if ((rest = copy = strdup(value)) == NULL) {
		cfg_nomem(p);
		return -1;
	}
	while ((s = config_list_next(&rest)) != NULL) {
		/* "ADDRESS tls": the word marks the address before it */
		if (strcmp(s, "tls") == 0 && k->type == T_LISTEN) {
			if (*n_r == 0 || (*list_r)[*n_r - 1].line !=
			    p->rd.lineno || (*list_r)[*n_r - 1].tls) {
				cfg_error(p, p->rd.lineno, "[server] listen: "
				    "'tls' must follow an address, e.g. "
				    "0.0.0.0:443 tls");
				rv = -1;
			} else {
				(*list_r)[*n_r - 1].tls = 1;
				p->cfg->ntls_listen++;
			}
			continue;
		}
		if (config_parse_listen(s, &a) == -1) {
			cfg_invalid(p, k, s);
			rv = -1;
			continue;
		}
		a.line = p->rd.lineno;
		/* port 0 twice is two kernel-picked ports, not a clash */
		for (i = 0; i < *n_r; i++)
			if (config_listen_same(&(*list_r)[i].ss,
			    (*list_r)[i].sslen, &a) &&
			    ss_port(&a.ss) != 0)
				break;
		if (i < *n_r) {
			cfg_error(p, p->rd.lineno, "[%s] listen: %s is listed "
			    "twice", cfg_sec_names[k->sec], config_show(s, v));
			free(a.text);
			rv = -1;
			continue;
		}
		if ((na = reallocarray(*list_r, *n_r + 1,
		    sizeof(*na))) == NULL) {
			free(a.text);
			cfg_nomem(p);
			rv = -1;
			break;
		}
		*list_r = na;
		(*list_r)[(*n_r)++] = a;
	}
	/* [admin] listen with no address is the way to turn it off */
	if (rv == 0 && *n_r == 0 && k->type == T_LISTEN) {
		cfg_error(p, p->rd.lineno, "[server] listen: empty value "
		    "(expected %s)", cfg_types[T_LISTEN].expect);
		rv = -1;
	}
	free(copy);
	return rv;
}

/* What a Host header may hold (RFC 3986 reg-name, IPv4 or a bracketed
 * IPv6 literal, and an optional port), without percent-encoding, which no
 * client uses in a host name. */
static int
cfg_valid_host(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 255)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    strchr("-._~!$&'()*+;=:[]", s[i]) != NULL))
			return 0;
	return 1;
}

/* origins, subprotocols and allowed_hosts: lists whose empty value means
 * "none given". */
static int
cfg_set_strings(struct cfg_parse *p, const struct cfg_key *k,
    const char *value, char ***v, size_t *n)
{
	char *copy, *rest, *s;
	int rv = 0;

	if ((rest = copy = strdup(value)) == NULL) {
		cfg_nomem(p);
		return -1;
	}
	while ((s = config_list_next(&rest)) != NULL) {
		if (k->type == T_ORIGINS ? !config_valid_origin(s) :
		    k->type == T_GONE ? !config_valid_url_path(s) :
		    k->type == T_HOSTS ? !cfg_valid_host(s) :
		    !config_valid_token(s)) {
			cfg_invalid(p, k, s);
			rv = -1;
		} else if (config_strv_add(v, n, s) == -1) {
			cfg_nomem(p);
			rv = -1;
			break;
		}
	}
	free(copy);
	return rv;
}

/* [server] user and group: looked up now, so that -t finds a typo and
 * the trust check knows the daemon's user. */
static int
cfg_set_identity(struct cfg_parse *p, const struct cfg_key *k,
    const char *value)
{
	struct wsp_config *cfg = p->cfg;
	char show[CONFIG_SHOW_SIZE];
	struct passwd *pw;
	struct group *gr;
	char **slot = k->type == T_USER ? &cfg->user : &cfg->group;

	if (k->type == T_USER) {
		if ((pw = getpwnam(value)) == NULL) {
			cfg_error(p, p->rd.lineno, "[server] user: no such user "
			    "'%s'", config_show(value, show));
			return -1;
		}
		cfg->uid = pw->pw_uid;
		cfg->user_line = p->rd.lineno;
		if (cfg->group == NULL)
			cfg->gid = pw->pw_gid;
	} else {
		if ((gr = getgrnam(value)) == NULL) {
			cfg_error(p, p->rd.lineno, "[server] group: no such group "
			    "'%s'", config_show(value, show));
			return -1;
		}
		cfg->gid = gr->gr_gid;
	}
	if ((*slot = strdup(value)) == NULL) {
		cfg_nomem(p);
		return -1;
	}
	return 0;
}

static int
cfg_set_log(struct cfg_parse *p, const struct cfg_key *k, const char *value)
{
	static const char *const levels[] = {
		[WSP_LOG_DEBUG] = "debug",
		[WSP_LOG_INFO] = "info",
		[WSP_LOG_WARN] = "warn",
		[WSP_LOG_ERROR] = "error",
	};
	struct wsp_config *cfg = p->cfg;
	size_t i;

	switch (k->type) {
	case T_LEVEL:
		for (i = 0; i < nitems(levels); i++)
			if (strcmp(value, levels[i]) == 0) {
				cfg->log_level = (int)i;
				return 0;
			}
		break;
	case T_FORMAT:
		if (strcmp(value, "logfmt") == 0) {
			cfg->log_format = LOG_FORMAT_LOGFMT;
			return 0;
		}
		if (strcmp(value, "json") == 0) {
			cfg->log_format = LOG_FORMAT_JSON;
			return 0;
		}
		break;
	case T_TARGET:
		if (strcmp(value, "stderr") == 0) {
			cfg->log_target = LOG_TARGET_STDERR;
			return 0;
		}
		if (strcmp(value, "syslog") == 0) {
			cfg->log_target = LOG_TARGET_SYSLOG;
			return 0;
		}
		if (strcmp(value, "journal") == 0) {
#ifdef HAVE_SYSTEMD
			cfg->log_target = LOG_TARGET_JOURNAL;
			return 0;
#else
			cfg_error(p, p->rd.lineno, "[log] target: journal: not "
			    "built with libsystemd (under systemd, stderr "
			    "reaches the journal too)");
			return -1;
#endif
		}
		if (strncmp(value, "file:/", 6) == 0 && value[6] != '\0') {
			if ((cfg->log_file = strdup(value + 5)) == NULL) {
				cfg_nomem(p);
				return -1;
			}
			cfg->log_target = LOG_TARGET_FILE;
			cfg->log_target_line = p->rd.lineno;
			return 0;
		}
		break;
	default:
		break;
	}
	cfg_invalid(p, k, value);
	return -1;
}

/* [tls]: the values' syntax only; whether the files load and match is
 * tls.c's check, run by -t, at start and by every reload. */
static int
cfg_set_tls(struct cfg_parse *p, const struct cfg_key *k, const char *value)
{
	struct wsp_tls_config *t = &p->cfg->tls;
	char **str = NULL;
	int *line = NULL;

	if (k->type == T_TLS_VERSION) {
		if (strcasecmp(value, "TLS1.2") == 0)
			t->min_version = 12;
		else if (strcasecmp(value, "TLS1.3") == 0)
			t->min_version = 13;
		else {
			cfg_invalid(p, k, value);
			return -1;
		}
		return 0;
	}
	if (k->type == T_TLS_KTLS) {
		if (strcmp(value, "auto") == 0 || strcmp(value, "off") == 0) {
			t->ktls = value[0] == 'a';
			return 0;
		}
		cfg_invalid(p, k, value);
		return -1;
	}
	if (k->type == T_TLS_BOOL) {
		if (config_parse_bool(value, &t->session_tickets) == -1) {
			cfg_invalid(p, k, value);
			return -1;
		}
		return 0;
	}
	if (strcmp(k->name, "certificate") == 0) {
		str = &t->certificate;
		line = &t->certificate_line;
	} else if (strcmp(k->name, "key") == 0) {
		str = &t->key;
		line = &t->key_line;
	} else if (strcmp(k->name, "ocsp_staple") == 0) {
		str = &t->ocsp_staple;
		line = &t->ocsp_staple_line;
	} else if (strcmp(k->name, "ciphers") == 0) {
		str = &t->ciphers;
		line = &t->ciphers_line;
	} else {
		str = &t->ciphersuites;
		line = &t->ciphersuites_line;
	}
	*str = k->type == T_TLS_FILE ? path_resolve(p, value) : strdup(value);
	if (*str == NULL) {
		cfg_nomem(p);
		return -1;
	}
	*line = p->rd.lineno;
	return 0;
}

static int
cfg_set(struct cfg_parse *p, const struct cfg_key *k, const char *value)
{
	struct wsp_config *cfg = p->cfg;

	switch (k->type) {
	case T_LISTEN:
		return cfg_set_listen(p, k, value, &cfg->listen, &cfg->nlisten);
	case T_ADMIN_LISTEN:
		return cfg_set_listen(p, k, value, &cfg->admin_listen,
		    &cfg->nadmin_listen);
	case T_PATH:
		if (!config_valid_url_path(value)) {
			cfg_invalid(p, k, value);
			return -1;
		}
		if ((cfg->path = strdup(value)) == NULL) {
			cfg_nomem(p);
			return -1;
		}
		return 0;
	case T_ORIGINS:
		return cfg_set_strings(p, k, value, &cfg->origins,
		    &cfg->norigins);
	case T_GONE:
		cfg->gone_line = p->rd.lineno;
		return cfg_set_strings(p, k, value, &cfg->gone, &cfg->ngone);
	case T_PROTOCOLS:
		return cfg_set_strings(p, k, value, &cfg->subprotocols,
		    &cfg->nsubprotocols);
	case T_HOSTS:
		return cfg_set_strings(p, k, value, &cfg->admin_hosts,
		    &cfg->nadmin_hosts);
	case T_USER:
	case T_GROUP:
		return cfg_set_identity(p, k, value);
	case T_UINT:
	case T_SIZE:
	case T_DURATION:
		return cfg_set_number(p, k, value);
	case T_LEVEL:
	case T_FORMAT:
	case T_TARGET:
		return cfg_set_log(p, k, value);
	case T_WORKERS:
		cfg->workers_line = p->rd.lineno;
		if (strcmp(value, "auto") == 0) {
			long n = sysconf(_SC_NPROCESSORS_ONLN);

			cfg->workers = n < 1 ? 1 : n > CONFIG_MAX_WORKERS ?
			    CONFIG_MAX_WORKERS : (uint64_t)n;
			return 0;
		}
		return cfg_set_number(p, k, value);
	case T_MEMORY:
		if (strcmp(value, "auto") == 0) {
			cfg->max_buffer_memory = membudget_auto();
			return 0;
		}
		return cfg_set_number(p, k, value);
	case T_DIR:
		if ((cfg->plugin_dir = path_resolve(p, value)) == NULL) {
			cfg_nomem(p);
			return -1;
		}
		return 0;
	case T_BOOL: {
		int b;

		if (config_parse_bool(value, &b) == -1) {
			cfg_invalid(p, k, value);
			return -1;
		}
		*(uint64_t *)(void *)((char *)cfg + k->off) = (uint64_t)b;
		return 0;
	}
	case T_TLS_FILE:
	case T_TLS_STRING:
	case T_TLS_VERSION:
	case T_TLS_KTLS:
	case T_TLS_BOOL:
		return cfg_set_tls(p, k, value);
	case T_BUS_BACKEND:
		cfg->bus_backend_line = p->rd.lineno;
		if (strcmp(value, "local") == 0) {
			cfg->bus_backend = BUS_BACKEND_LOCAL;
			return 0;
		}
		if (strcmp(value, "redis") == 0) {
			cfg->bus_backend = BUS_BACKEND_REDIS;
			return 0;
		}
		cfg_invalid(p, k, value);
		return -1;
	case T_BUS_REDIS:
	case T_BUS_STRING:
	case T_BUS_PASSFILE:
		return cfg_set_redis(p, k, value);
	}
	return -1;
}

/* [bus] redis, redis_user, redis_prefix, redis_password_file. */
static int
cfg_set_redis(struct cfg_parse *p, const struct cfg_key *k, const char *value)
{
	struct wsp_config *cfg = p->cfg;
	char **slot, *path, line[256];
	size_t n = strlen(value), i;
	FILE *f;

	switch (k->type) {
	case T_BUS_REDIS:
		if (redis_addr_parse(value, NULL, 0, NULL) == -1) {
			cfg_invalid(p, k, value);
			return -1;
		}
		slot = &cfg->bus_redis;
		break;
	case T_BUS_STRING:
		for (i = 0; i < n; i++)
			if (value[i] <= 0x20 || value[i] >= 0x7f)
				break;
		if (n == 0 || n > 128 || i < n) {
			cfg_invalid(p, k, value);
			return -1;
		}
		slot = (char **)(void *)((char *)cfg + k->off);
		break;
	default: /* T_BUS_PASSFILE: read now, before privileges drop */
		if ((path = path_resolve(p, value)) == NULL) {
			cfg_nomem(p);
			return -1;
		}
		f = fopen(path, "re");
		if (f == NULL || fgets(line, sizeof(line), f) == NULL) {
			cfg_error(p, p->rd.lineno, "[bus] redis_password_file: "
			    "cannot read %s: %s", path, f == NULL ?
			    strerror(errno) : "empty");
			if (f != NULL)
				fclose(f);
			free(path);
			return -1;
		}
		fclose(f);
		free(path);
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0') {
			cfg_error(p, p->rd.lineno, "[bus] redis_password_file: "
			    "its first line is empty");
			return -1;
		}
		free(cfg->bus_redis_password);
		if ((cfg->bus_redis_password = strdup(line)) == NULL) {
			cfg_nomem(p);
			return -1;
		}
		explicit_bzero(line, sizeof(line));
		return 0;
	}
	free(*slot);
	if ((*slot = strdup(value)) == NULL) {
		cfg_nomem(p);
		return -1;
	}
	return 0;
}

static size_t
cfg_key_find(enum cfg_sec sec, const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (cfg_keys[i].sec == sec && strcmp(cfg_keys[i].name, name) == 0)
			break;
	return i;
}

static void
cfg_fixed_key(struct cfg_parse *p, const char *name, const char *value)
{
	const struct cfg_key *k;
	char n[CONFIG_SHOW_SIZE];
	size_t i;

	if ((i = cfg_key_find(p->sec, name)) == NKEYS) {
		/* a key put in the wrong section is an easy slip: say where */
		for (i = 0; i < NKEYS; i++)
			if (strcmp(cfg_keys[i].name, name) == 0)
				break;
		if (i < NKEYS)
			cfg_error(p, p->rd.lineno, "unknown key '%s' in [%s] "
			    "(it belongs in [%s])", name, cfg_sec_names[p->sec],
			    cfg_sec_names[cfg_keys[i].sec]);
		else
			cfg_error(p, p->rd.lineno, "unknown key '%s' in [%s]",
			    config_show(name, n), cfg_sec_names[p->sec]);
		return;
	}
	k = &cfg_keys[i];
	if (p->seen[i] != 0) {
		cfg_error(p, p->rd.lineno, "duplicate key '%s' (first set at "
		    "line %d)", name, p->seen[i]);
		return;
	}
	p->seen[i] = p->rd.lineno;
	if (*value == '\0' && k->type != T_ORIGINS && k->type != T_PROTOCOLS &&
	    k->type != T_ADMIN_LISTEN && k->type != T_HOSTS &&
	    k->type != T_GONE) {
		if (k->type == T_UINT || k->type == T_WORKERS)
			cfg_error(p, p->rd.lineno, "[%s] %s: empty value "
			    "(expected an integer, %s)", cfg_sec_names[k->sec],
			    k->name, k->range);
		else
			cfg_error(p, p->rd.lineno, "[%s] %s: empty value "
			    "(expected %s)", cfg_sec_names[k->sec], k->name,
			    cfg_types[k->type].expect);
		p->bad[i] = 1;
		return;
	}
	if (cfg_set(p, k, value) == -1)
		p->bad[i] = 1;
}

/*
 * [plugin:NAME] sections.
 */

static void
cfg_plugin_section(struct cfg_parse *p, const char *name)
{
	struct wsp_config *cfg = p->cfg;
	struct wsp_section *sec, *ns;
	struct cfg_plugin_lines *nl;
	char n[CONFIG_SHOW_SIZE];
	size_t i;

	p->sec = SEC_SKIP;
	if (!config_valid_plugin_name(name)) {
		cfg_error(p, p->rd.lineno, "invalid plugin name in [plugin:%s] "
		    "(expected 1 to 64 letters, digits, '_' or '-')",
		    config_show(name, n));
		return;
	}
	for (i = 0; i < cfg->nplugins; i++)
		if (strcmp(cfg->plugins[i].name, name) == 0) {
			cfg_error(p, p->rd.lineno, "duplicate section "
			    "[plugin:%s] (first at line %d)", name,
			    cfg->plugins[i].line);
			return;
		}
	if ((nl = reallocarray(p->plines, cfg->nplugins + 1,
	    sizeof(*nl))) == NULL) {
		cfg_nomem(p);
		return;
	}
	p->plines = nl;
	if ((ns = reallocarray(cfg->plugins, cfg->nplugins + 1,
	    sizeof(*ns))) == NULL) {
		cfg_nomem(p);
		return;
	}
	cfg->plugins = ns;
	sec = &cfg->plugins[cfg->nplugins];
	memset(sec, 0, sizeof(*sec));
	sec->line = p->rd.lineno;
	sec->enabled = 1;
	sec->file = strdup(p->rd.file);
	sec->name = strdup(name);
	if (sec->file == NULL || sec->name == NULL) {
		free(sec->file);
		free(sec->name);
		cfg_nomem(p);
		return;
	}
	memset(&p->plines[cfg->nplugins], 0, sizeof(*p->plines));
	p->plugin = cfg->nplugins++;
	p->sec = SEC_PLUGIN;
}

static void
cfg_plugin_key(struct cfg_parse *p, const char *name, const char *value)
{
	struct wsp_section *sec = &p->cfg->plugins[p->plugin];
	struct cfg_plugin_lines *pl = &p->plines[p->plugin];
	struct wsp_kv *nkv;
	char v[CONFIG_SHOW_SIZE];
	int *first = NULL;
	size_t i;

	if (strcmp(name, "path") == 0)
		first = &pl->path;
	else if (strcmp(name, "enabled") == 0)
		first = &pl->enabled;
	else {
		for (i = 0; i < sec->nkv; i++)
			if (strcmp(sec->kv[i].key, name) == 0) {
				cfg_error(p, p->rd.lineno, "duplicate key '%s' "
				    "(first set at line %d)", config_show(name, v),
				    sec->kv[i].line);
				return;
			}
		/* the plugin validates its own keys; an empty value may
		 * well mean something to it */
		if ((nkv = reallocarray(sec->kv, sec->nkv + 1,
		    sizeof(*nkv))) == NULL) {
			cfg_nomem(p);
			return;
		}
		sec->kv = nkv;
		nkv = &sec->kv[sec->nkv];
		nkv->key = strdup(name);
		nkv->value = strdup(value);
		nkv->line = p->rd.lineno;
		nkv->used = 0;
		if (nkv->key == NULL || nkv->value == NULL) {
			free(nkv->key);
			free(nkv->value);
			cfg_nomem(p);
			return;
		}
		sec->nkv++;
		return;
	}

	if (*first != 0) {
		cfg_error(p, p->rd.lineno, "duplicate key '%s' (first set at "
		    "line %d)", name, *first);
		return;
	}
	*first = p->rd.lineno;
	if (first == &pl->enabled) {
		if (*value == '\0')
			cfg_error(p, p->rd.lineno, "[plugin:%s] enabled: empty "
			    "value (expected " EXPECT_BOOL ")", sec->name);
		else if (config_parse_bool(value, &sec->enabled) == -1)
			cfg_error(p, p->rd.lineno, "[plugin:%s] enabled: invalid "
			    "boolean '%s' (expected " EXPECT_BOOL ")", sec->name,
			    config_show(value, v));
		return;
	}
	if (*value == '\0') {
		cfg_error(p, p->rd.lineno, "[plugin:%s] path: empty value "
		    "(expected the plugin's .so, absolute or relative to the "
		    "configuration file)", sec->name);
		return;
	}
	if ((sec->path = path_resolve(p, value)) == NULL)
		cfg_nomem(p);
}

/*
 * The hooks config_file.c calls for each header and key.
 */

/* A header: pick the section its keys go to, or SEC_SKIP (also for a
 * header the reader rejected, name NULL). */
static void
cfg_section(void *arg, const char *name)
{
	struct cfg_parse *p = arg;
	char n[CONFIG_SHOW_SIZE];
	size_t i;

	if (name == NULL) {
		p->sec = SEC_SKIP;
		return;
	}
	if (strncmp(name, "plugin:", 7) == 0) {
		cfg_plugin_section(p, name + 7);
		return;
	}
	for (i = 0; i < nitems(cfg_sec_names); i++)
		if (cfg_sec_names[i] != NULL &&
		    strcmp(cfg_sec_names[i], name) == 0) {
			/* a repeated header adds to the same section;
			 * a key repeated across the two is a duplicate */
			p->sec = (enum cfg_sec)i;
			return;
		}
	cfg_error(p, p->rd.lineno, "unknown section [%s]", config_show(name, n));
	p->sec = SEC_SKIP;
}

/* A key = value line; inih has already rejected a line without a key. */
static void
cfg_key(void *arg, const char *name, const char *value)
{
	struct cfg_parse *p = arg;
	char n[CONFIG_SHOW_SIZE];

	if (p->sec == SEC_NONE)
		cfg_error(p, p->rd.lineno, "key '%s' outside any section "
		    "(expected a [section] header first)", config_show(name, n));
	else if (p->sec == SEC_PLUGIN)
		cfg_plugin_key(p, name, value);
	else if (p->sec != SEC_SKIP)
		cfg_fixed_key(p, name, value);
}

/* A list's default address, when the file gave none; 0 or -1. */
static int
cfg_default_listen(struct cfg_parse *p, const char *text,
    struct wsp_listen_addr **list_r, size_t *n_r)
{
	struct wsp_listen_addr a;

	if (config_parse_listen(text, &a) == -1) {
		cfg_nomem(p);
		return -1;
	}
	if ((*list_r = malloc(sizeof(a))) == NULL) {
		free(a.text);
		cfg_nomem(p);
		return -1;
	}
	(*list_r)[0] = a;
	*n_r = 1;
	return 0;
}

/*
 * [admin] listen: the default unless the key was given (even empty, which
 * turns it off), and never an address [server] listens on, which would
 * fail to bind with a less helpful message.
 */
static int
cfg_finish_admin(struct cfg_parse *p)
{
	struct wsp_config *cfg = p->cfg;
	const struct wsp_listen_addr *a, *b;
	size_t key = cfg_key_find(SEC_ADMIN, "listen"), i, j;
	char v[CONFIG_SHOW_SIZE];

	if (p->seen[key] == 0 && cfg_default_listen(p, DEFAULT_ADMIN_LISTEN,
	    &cfg->admin_listen, &cfg->nadmin_listen) == -1)
		return -1;
	for (i = 0; i < cfg->nadmin_listen; i++) {
		a = &cfg->admin_listen[i];
		for (j = 0; j < cfg->nlisten; j++) {
			b = &cfg->listen[j];
			if (!config_listen_same(&a->ss, a->sslen, b) ||
			    ss_port(&a->ss) == 0)
				continue;
			cfg_error(p, a->line != 0 ? a->line : b->line,
			    "[admin] listen: %s is also a [server] listen "
			    "address%s", config_show(a->text, v), a->line != 0 ? "" :
			    " (the [admin] default: set [admin] listen to "
			    "another address, or empty to turn it off)");
		}
	}
	return 0;
}

/* A TLS listener needs a certificate and its key, which come together. */
static void
cfg_finish_tls(struct cfg_parse *p)
{
	struct wsp_config *cfg = p->cfg;
	struct wsp_tls_config *t = &cfg->tls;
	size_t i;

	if ((t->certificate == NULL) != (t->key == NULL) &&
	    !p->bad[cfg_key_find(SEC_TLS, "certificate")] &&
	    !p->bad[cfg_key_find(SEC_TLS, "key")])
		cfg_error(p, t->certificate != NULL ? t->certificate_line :
		    t->key_line, "[tls] %s without %s",
		    t->certificate != NULL ? "certificate" : "key",
		    t->certificate != NULL ? "key" : "certificate");
	if (cfg->ntls_listen == 0 || t->certificate != NULL ||
	    t->key != NULL)
		return;
	for (i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].tls) {
			cfg_error(p, cfg->listen[i].line, "[server] listen: "
			    "%s tls needs [tls] certificate and key",
			    cfg->listen[i].text);
			break;
		}
}

/*
 * After the whole file: defaults that depend on other keys, and checks
 * across keys.
 */
static void
cfg_finish(struct cfg_parse *p)
{
	struct wsp_config *cfg = p->cfg;
	struct wsp_section *sec;
	char *so, b1[32], b2[32];
	size_t i, ping, idle;

	if (cfg->nlisten == 0 && !p->bad[cfg_key_find(SEC_SERVER, "listen")] &&
	    cfg_default_listen(p, DEFAULT_LISTEN, &cfg->listen,
	    &cfg->nlisten) == -1)
		return;
	if (cfg_finish_admin(p) == -1)
		return;
	cfg_finish_tls(p);
	if (cfg->path == NULL && (cfg->path = strdup(DEFAULT_PATH)) == NULL) {
		cfg_nomem(p);
		return;
	}
	if (cfg->plugin_dir == NULL && p->default_plugin_dir != NULL &&
	    !p->bad[cfg_key_find(SEC_PLUGINS, "dir")] &&
	    (cfg->plugin_dir = strdup(p->default_plugin_dir)) == NULL) {
		cfg_nomem(p);
		return;
	}

	/* now that [plugins] dir is known, wherever it was in the file */
	for (i = 0; i < cfg->nplugins &&
	    !p->bad[cfg_key_find(SEC_PLUGINS, "dir")]; i++) {
		sec = &cfg->plugins[i];
		if (sec->path != NULL || p->plines[i].path != 0)
			continue;
		if (cfg->plugin_dir == NULL) {
			cfg_error(p, sec->line, "[plugin:%s] has no path and "
			    "there is no [plugins] dir", sec->name);
			continue;
		}
		if (asprintf(&so, "%s.so", sec->name) == -1) {
			cfg_nomem(p);
			return;
		}
		sec->path = config_path_join(cfg->plugin_dir, so);
		free(so);
		if (sec->path == NULL) {
			cfg_nomem(p);
			return;
		}
	}

	/*
	 * A client that answers pings but says nothing else is alive only
	 * through its pongs: reaping it before the next ping is due would
	 * drop healthy idle clients.
	 */
	ping = cfg_key_find(SEC_KEEPALIVE, "ping_interval");
	idle = cfg_key_find(SEC_KEEPALIVE, "idle_timeout");
	if (p->bad[ping] || p->bad[idle] || cfg->ping_interval == 0 ||
	    cfg->idle_timeout == 0 || cfg->idle_timeout > cfg->ping_interval)
		return;
	config_fmt_duration(cfg->ping_interval, b1, sizeof(b1));
	config_fmt_duration(cfg->idle_timeout, b2, sizeof(b2));
	if (p->seen[idle] != 0)
		cfg_error(p, p->seen[idle], "[keepalive] idle_timeout: %s must "
		    "be greater than ping_interval (%s), or clients that only "
		    "answer pings are reaped", b2, b1);
	else
		cfg_error(p, p->seen[ping], "[keepalive] ping_interval: %s "
		    "must be less than idle_timeout (%s, the default), or "
		    "clients that only answer pings are reaped", b1, b2);
}

struct wsp_config *
config_load(const char *file, const char *default_plugin_dir,
    struct wsp_errors *errs)
{
	struct cfg_parse p;
	struct wsp_config *cfg = NULL;

	memset(&p, 0, sizeof(p));
	p.rd.errs = errs;
	p.rd.file = file;
	p.rd.section = cfg_section;
	p.rd.key = cfg_key;
	p.rd.arg = &p;
	p.default_plugin_dir = default_plugin_dir;

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (cfg->file = strdup(file)) == NULL ||
	    (p.confdir = config_path_dirname(file)) == NULL) {
		cfg_nomem(&p);
		goto done;
	}
	p.cfg = cfg;
	cfg->max_connections = 10000;
	cfg->max_connections_per_ip = 0;
	cfg->max_message_size = 1 * MIB;
	cfg->max_header_size = 8 * KIB;
	cfg->max_output_buffer = 16 * MIB;
	cfg->max_buffer_memory = membudget_auto();
	cfg->handshake_timeout = 10 * MS_SEC;
	cfg->shutdown_timeout = 5 * MS_SEC;
	cfg->restart_spread = 10 * MS_SEC;
	cfg->handover_timeout = 10 * MS_SEC;
	cfg->slow_callback = 100;
	cfg->timer_slack = 4;
	cfg->workers = 1;
	cfg->worker_watchdog = 10 * MS_SEC;
	cfg->ping_interval = 25 * MS_SEC;
	cfg->sweep_interval = 60 * MS_SEC;
	cfg->idle_timeout = 60 * MS_SEC;
	cfg->log_level = WSP_LOG_INFO;
	cfg->log_format = LOG_FORMAT_LOGFMT;
	cfg->log_target = LOG_TARGET_STDERR;
	cfg->admin_max_connections = 16;
	cfg->admin_timeout = 10 * MS_SEC;
	cfg->deflate_enabled = 1;
	cfg->deflate_server_wbits = 15;
	cfg->deflate_client_wbits = 15;
	cfg->deflate_context_takeover = 1;
	cfg->deflate_level = 6;
	cfg->deflate_mem_level = 8;
	cfg->deflate_threshold = 128;
	cfg->deflate_context_budget = 64 * MIB;
	cfg->tls.min_version = 12;
	cfg->tls.session_tickets = 1;
	cfg->bus_backend = BUS_BACKEND_LOCAL;
	cfg->bus_history_size = 100;
	cfg->bus_history_ttl = 5 * MS_MIN;
	cfg->bus_history_memory = 64 * MIB;
	cfg->bus_redis_timeout = 2 * MS_SEC;
	cfg->bus_redis_presence_ttl = 30 * MS_SEC;
	cfg->bus_redis_queue = 1 * MIB;

	if (config_file_read(&p.rd) == 0)
		cfg_finish(&p);
	if (!p.rd.failed && cfg->group != NULL && cfg->user == NULL)
		cfg_error(&p, 0, "[server] group is set but user is not");
	if (!p.rd.failed && cfg->bus_backend == BUS_BACKEND_REDIS &&
	    cfg->bus_redis == NULL)
		cfg_error(&p, cfg->bus_backend_line, "[bus] backend = redis "
		    "needs [bus] redis = host:port or a unix socket path");
	for (size_t g = 0; !p.rd.failed && g < cfg->ngone; g++)
		if (strcmp(cfg->gone[g], cfg->path) == 0)
			cfg_error(&p, cfg->gone_line, "[server] gone: %s is the "
			    "endpoint's own path", cfg->gone[g]);
	/* Only a valid file names its plugins; then the files it makes the
	 * daemon trust must be safe to (trust.c), and a reload may not ask
	 * for another user than the one the daemon became (privdrop.c). */
	if (!p.rd.failed && (privdrop_reload_check(cfg, errs) == -1 ||
	    trust_config(cfg, cfg->user != NULL ? cfg->uid : geteuid(),
	    errs) == -1))
		p.rd.failed = 1;

done:
	if (p.rd.failed) {
		config_free(cfg);
		cfg = NULL;
	}
	free(p.plines);
	free(p.confdir);
	return cfg;
}

void
config_free(struct wsp_config *cfg)
{
	struct wsp_section *sec;
	size_t i, j;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nlisten; i++)
		free(cfg->listen[i].text);
	free(cfg->listen);
	for (i = 0; i < cfg->nadmin_listen; i++)
		free(cfg->admin_listen[i].text);
	free(cfg->admin_listen);
	config_strv_free(cfg->admin_hosts, cfg->nadmin_hosts);
	free(cfg->path);
	free(cfg->user);
	free(cfg->group);
	config_strv_free(cfg->origins, cfg->norigins);
	config_strv_free(cfg->gone, cfg->ngone);
	config_strv_free(cfg->subprotocols, cfg->nsubprotocols);
	free(cfg->log_file);
	free(cfg->tls.certificate);
	free(cfg->tls.key);
	free(cfg->tls.ciphers);
	free(cfg->tls.ciphersuites);
	free(cfg->tls.ocsp_staple);
	free(cfg->bus_redis);
	free(cfg->bus_redis_user);
	free(cfg->bus_redis_prefix);
	if (cfg->bus_redis_password != NULL) {
		explicit_bzero(cfg->bus_redis_password,
		    strlen(cfg->bus_redis_password));
		free(cfg->bus_redis_password);
	}
	free(cfg->plugin_dir);
	for (i = 0; i < cfg->nplugins; i++) {
		sec = &cfg->plugins[i];
		for (j = 0; j < sec->nkv; j++) {
			free(sec->kv[j].key);
			free(sec->kv[j].value);
		}
		free(sec->kv);
		free(sec->file);
		free(sec->name);
		free(sec->path);
	}
	free(cfg->plugins);
	free(cfg->file);
	free(cfg);
}
