/*
 * test_config.c: config.c against real files.
 *
 * Each test writes a configuration into a temporary file (mkstemp in
 * $TMPDIR), loads it and checks either the values or the exact
 * "FILE:LINE: message" errors an operator would see from `wsplugd -t`.
 * The shipped etc/wsplugd.conf.in is loaded too, so the default config
 * cannot drift from what the loader accepts.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

#ifndef SRCDIR
#define SRCDIR "."
#endif

#define PLUGINDIR "/usr/lib/wsplugd"

/* The file, result and errors of the last load(); reset() frees them. */
static char *t_path;
static struct wsp_config *t_cfg;
static struct wsp_errors t_errs;

static const char *
tmpdir(void)
{
	const char *d = getenv("TMPDIR");

	return d != NULL && *d != '\0' ? d : "/tmp";
}

static void
reset(void)
{
	config_free(t_cfg);
	t_cfg = NULL;
	errors_clear(&t_errs);
	if (t_path != NULL) {
		unlink(t_path);
		free(t_path);
		t_path = NULL;
	}
}

/* Write len bytes into a new temporary file; returns its path. */
static char *
write_temp(const char *text, size_t len)
{
	char *path;
	int fd;

	if (asprintf(&path, "%s/wsplugd-test-XXXXXX", tmpdir()) == -1)
		return NULL;
	if ((fd = mkstemp(path)) == -1) {
		free(path);
		return NULL;
	}
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		unlink(path);
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}

static struct wsp_config *
load_len(const char *text, size_t len, const char *plugindir)
{
	reset();
	t_path = write_temp(text, len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t_path);
	t_cfg = config_load(t_path, plugindir, &t_errs);
	return t_cfg;
}

static struct wsp_config *
load(const char *text)
{
	return load_len(text, strlen(text), PLUGINDIR);
}

static struct wsp_config *
load_dir(const char *text, const char *plugindir)
{
	return load_len(text, strlen(text), plugindir);
}

static void
dump_errors(void)
{
	size_t i;

	fprintf(stderr, "\n    errors (%zu):\n", t_errs.n);
	for (i = 0; i < t_errs.n; i++)
		fprintf(stderr, "      %s\n", t_errs.msg[i]);
}

/* Is "t_path:line: msg" (or "t_path: msg" for line 0) among the errors? */
static int
has_error(int line, const char *msg)
{
	char *want;
	size_t i;
	int found = 0;

	if (line > 0) {
		if (asprintf(&want, "%s:%d: %s", t_path, line, msg) == -1)
			return 0;
	} else if (asprintf(&want, "%s: %s", t_path, msg) == -1)
		return 0;
	for (i = 0; i < t_errs.n; i++)
		if (strcmp(t_errs.msg[i], want) == 0)
			found = 1;
	if (!found) {
		fprintf(stderr, "\n    missing: %s", want);
		dump_errors();
	}
	free(want);
	return found;
}

static int
nerrors(size_t n)
{
	if (t_errs.n != n) {
		fprintf(stderr, "\n    expected %zu errors", n);
		dump_errors();
	}
	return t_errs.n == n;
}

/* Load text expecting exactly one error, msg at line. */
static void
expect_one(const char *text, int line, const char *msg)
{
	CU_ASSERT_PTR_NULL(load(text));
	CU_ASSERT(nerrors(1));
	CU_ASSERT(has_error(line, msg));
}

static int
port_of(const struct wsp_listen_addr *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

static void
test_defaults(void)
{
	struct wsp_config *cfg;
	struct sockaddr_in *sin;

	cfg = load("");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT(nerrors(0));
	CU_ASSERT_STRING_EQUAL(cfg->file, t_path);
	CU_ASSERT_EQUAL(cfg->workers, 1); /* the shipped file says auto */
	CU_ASSERT_EQUAL(cfg->workers_line, 0);
	CU_ASSERT_EQUAL_FATAL(cfg->nlisten, 1);
	CU_ASSERT_STRING_EQUAL(cfg->listen[0].text, "127.0.0.1:8080");
	CU_ASSERT_EQUAL(cfg->listen[0].ss.ss_family, AF_INET);
	CU_ASSERT_EQUAL(cfg->listen[0].sslen, sizeof(struct sockaddr_in));
	sin = (struct sockaddr_in *)&cfg->listen[0].ss;
	CU_ASSERT_EQUAL(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	CU_ASSERT_EQUAL(port_of(&cfg->listen[0]), 8080);
	CU_ASSERT_STRING_EQUAL(cfg->path, "/ws");
	CU_ASSERT_EQUAL(cfg->norigins, 0);
	CU_ASSERT_EQUAL(cfg->nsubprotocols, 0);
	CU_ASSERT_EQUAL(cfg->max_connections, 10000);
	CU_ASSERT_EQUAL(cfg->max_connections_per_ip, 0);
	CU_ASSERT_EQUAL(cfg->max_message_size, 1024 * 1024);
	CU_ASSERT_EQUAL(cfg->max_header_size, 8 * 1024);
	CU_ASSERT_EQUAL(cfg->max_output_buffer, 16 * 1024 * 1024);
	CU_ASSERT_EQUAL(cfg->handshake_timeout, 10000);
	CU_ASSERT_EQUAL(cfg->shutdown_timeout, 5000);
	CU_ASSERT_EQUAL(cfg->slow_callback, 100);
	CU_ASSERT_EQUAL(cfg->timer_slack, 4);
	CU_ASSERT_EQUAL(cfg->ping_interval, 25000);
	CU_ASSERT_EQUAL(cfg->sweep_interval, 60000);
	CU_ASSERT_EQUAL(cfg->idle_timeout, 60000);
	CU_ASSERT_EQUAL(cfg->log_level, WSP_LOG_INFO);
	CU_ASSERT_EQUAL(cfg->log_format, LOG_FORMAT_LOGFMT);
	CU_ASSERT_EQUAL(cfg->log_target, LOG_TARGET_STDERR);
	CU_ASSERT_PTR_NULL(cfg->log_file);
	CU_ASSERT_STRING_EQUAL(cfg->plugin_dir, PLUGINDIR);
	CU_ASSERT_EQUAL(cfg->nplugins, 0);
	/* the admin listener: on, loopback */
	CU_ASSERT_EQUAL_FATAL(cfg->nadmin_listen, 1);
	CU_ASSERT_STRING_EQUAL(cfg->admin_listen[0].text, "127.0.0.1:9180");
	CU_ASSERT_EQUAL(cfg->admin_listen[0].line, 0);
	sin = (struct sockaddr_in *)&cfg->admin_listen[0].ss;
	CU_ASSERT_EQUAL(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	CU_ASSERT_EQUAL(port_of(&cfg->admin_listen[0]), 9180);
	CU_ASSERT_EQUAL(cfg->nadmin_hosts, 0);
	CU_ASSERT_EQUAL(cfg->admin_max_connections, 16);
	CU_ASSERT_EQUAL(cfg->admin_timeout, 10000);

	/* empty sections change nothing */
	cfg = load("[server]\n[keepalive]\n[log]\n[admin]\n[plugins]\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->nlisten, 1);
	CU_ASSERT_EQUAL(cfg->nadmin_listen, 1);
	CU_ASSERT_STRING_EQUAL(cfg->path, "/ws");
	reset();
}

static void
test_every_key(void)
{
	struct wsp_config *cfg;
	struct sockaddr_in6 *sin6;

	cfg = load(
	    "[server]\n"
	    "listen = 0.0.0.0:80, [::]:8081 127.0.0.1:0\n"
	    "path = /socket/v1\n"
	    "origins = https://app.example.com, http://localhost:3000 null\n"
	    "subprotocols = chat.v1,json\n"
	    "max_connections = 500\n"
	    "max_connections_per_ip = 20\n"
	    "max_message_size = 64KiB\n"
	    "max_header_size = 16KiB\n"
	    "max_output_buffer = 4GiB\n"
	    "handshake_timeout = 3s\n"
	    "shutdown_timeout = 0\n"
	    "slow_callback = 250ms\n"
	    "timer_slack = 0\n"
	    "[keepalive]\n"
	    "ping_interval = 30s\n"
	    "sweep_interval = 2m\n"
	    "idle_timeout = 1h\n"
	    "[log]\n"
	    "level = debug\n"
	    "format = json\n"
	    "target = file:/var/log/wsplugd.log\n"
	    "[plugins]\n"
	    "dir = /opt/wsplugd/plugins/\n"
	    "[plugin:ping]\n"
	    "enabled = no\n"
	    "path = /srv/ping.so\n"
	    "[admin]\n"
	    "listen = 0.0.0.0:9100, [::1]:0\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT(nerrors(0));
	CU_ASSERT_EQUAL_FATAL(cfg->nlisten, 3);
	CU_ASSERT_STRING_EQUAL(cfg->listen[0].text, "0.0.0.0:80");
	CU_ASSERT_EQUAL(cfg->listen[0].ss.ss_family, AF_INET);
	CU_ASSERT_EQUAL(port_of(&cfg->listen[0]), 80);
	CU_ASSERT_EQUAL(cfg->listen[0].line, 2);
	CU_ASSERT_STRING_EQUAL(cfg->listen[1].text, "[::]:8081");
	CU_ASSERT_EQUAL(cfg->listen[1].ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL(cfg->listen[1].sslen, sizeof(struct sockaddr_in6));
	sin6 = (struct sockaddr_in6 *)&cfg->listen[1].ss;
	CU_ASSERT(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	CU_ASSERT_EQUAL(port_of(&cfg->listen[1]), 8081);
	CU_ASSERT_EQUAL(port_of(&cfg->listen[2]), 0);
	CU_ASSERT_STRING_EQUAL(cfg->path, "/socket/v1");
	CU_ASSERT_EQUAL_FATAL(cfg->norigins, 3);
	CU_ASSERT_STRING_EQUAL(cfg->origins[0], "https://app.example.com");
	CU_ASSERT_STRING_EQUAL(cfg->origins[1], "http://localhost:3000");
	CU_ASSERT_STRING_EQUAL(cfg->origins[2], "null");
	CU_ASSERT_EQUAL_FATAL(cfg->nsubprotocols, 2);
	CU_ASSERT_STRING_EQUAL(cfg->subprotocols[0], "chat.v1");
	CU_ASSERT_STRING_EQUAL(cfg->subprotocols[1], "json");
	CU_ASSERT_EQUAL(cfg->max_connections, 500);
	CU_ASSERT_EQUAL(cfg->max_connections_per_ip, 20);
	CU_ASSERT_EQUAL(cfg->max_message_size, 64 * 1024);
	CU_ASSERT_EQUAL(cfg->max_header_size, 16 * 1024);
	CU_ASSERT_EQUAL(cfg->max_output_buffer, 4ULL << 30);
	CU_ASSERT_EQUAL(cfg->handshake_timeout, 3000);
	CU_ASSERT_EQUAL(cfg->shutdown_timeout, 0);
	CU_ASSERT_EQUAL(cfg->slow_callback, 250);
	CU_ASSERT_EQUAL(cfg->timer_slack, 0);
	CU_ASSERT_EQUAL(cfg->ping_interval, 30000);
	CU_ASSERT_EQUAL(cfg->sweep_interval, 120000);
	CU_ASSERT_EQUAL(cfg->idle_timeout, 3600000);
	CU_ASSERT_EQUAL(cfg->log_level, WSP_LOG_DEBUG);
	CU_ASSERT_EQUAL(cfg->log_format, LOG_FORMAT_JSON);
	CU_ASSERT_EQUAL(cfg->log_target, LOG_TARGET_FILE);
	CU_ASSERT_STRING_EQUAL(cfg->log_file, "/var/log/wsplugd.log");
	CU_ASSERT_STRING_EQUAL(cfg->plugin_dir, "/opt/wsplugd/plugins/");
	CU_ASSERT_EQUAL_FATAL(cfg->nplugins, 1);
	CU_ASSERT_EQUAL(cfg->plugins[0].enabled, 0);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].path, "/srv/ping.so");
	CU_ASSERT_EQUAL(cfg->plugins[0].nkv, 0);
	CU_ASSERT_EQUAL_FATAL(cfg->nadmin_listen, 2);
	CU_ASSERT_STRING_EQUAL(cfg->admin_listen[0].text, "0.0.0.0:9100");
	CU_ASSERT_EQUAL(port_of(&cfg->admin_listen[0]), 9100);
	CU_ASSERT_EQUAL(cfg->admin_listen[0].line, 29);
	CU_ASSERT_STRING_EQUAL(cfg->admin_listen[1].text, "[::1]:0");
	CU_ASSERT_EQUAL(cfg->admin_listen[1].ss.ss_family, AF_INET6);

	cfg = load("[log]\nlevel = warn\ntarget = syslog\nformat = logfmt\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->log_level, WSP_LOG_WARN);
	CU_ASSERT_EQUAL(cfg->log_target, LOG_TARGET_SYSLOG);
	CU_ASSERT_EQUAL(cfg->log_format, LOG_FORMAT_LOGFMT);
	cfg = load("[log]\nlevel = error\ntarget = stderr\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->log_level, WSP_LOG_ERROR);
	CU_ASSERT_EQUAL(cfg->log_target, LOG_TARGET_STDERR);

	/* the ends of each range */
	cfg = load("[server]\nmax_connections = 1000000\n"
	    "max_connections_per_ip = 1000000\nmax_message_size = 1B\n"
	    "max_header_size = 1KiB\nmax_output_buffer = 4KiB\n"
	    "handshake_timeout = 100ms\nshutdown_timeout = 1h\n"
	    "slow_callback = 1ms\ntimer_slack = 1s\n[keepalive]\n"
	    "ping_interval = 0\nsweep_interval = 1d\nidle_timeout = 7d\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->max_connections, 1000000);
	CU_ASSERT_EQUAL(cfg->timer_slack, 1000);
	CU_ASSERT_EQUAL(cfg->max_message_size, 1);
	CU_ASSERT_EQUAL(cfg->max_header_size, 1024);
	CU_ASSERT_EQUAL(cfg->ping_interval, 0);
	CU_ASSERT_EQUAL(cfg->idle_timeout, 7 * 86400000ULL);
	reset();
}

static void
test_parse_duration(void)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} ok[] = {
		{ "0", 0 }, { "0ms", 0 }, { "1ms", 1 }, { "500ms", 500 },
		{ "25s", 25000 }, { "2m", 120000 }, { "1h", 3600000 },
		{ "1d", 86400000 }, { "007s", 7000 },
		{ "18446744073709551615ms", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", "abc", "25", "-1s", "+1s", "1.5s", "25 s", " 25s", "25s ",
		"25S", "1w", "s", "ms", "0x10s", "1sec", "1s1", "10ms5",
		"99999999999999999999s", "18446744073709551616ms",
		"18446744073709552s", "213503982335d",
	};
	uint64_t ms;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = 12345;
		CU_ASSERT_EQUAL(config_parse_duration(ok[i].s, &ms), 0);
		CU_ASSERT_EQUAL(ms, ok[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_duration(bad[i], &ms) != -1) {
			fprintf(stderr, "\n    accepted '%s'", bad[i]);
			CU_FAIL("bad duration accepted");
		}
	}
}

static void
test_parse_size(void)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} ok[] = {
		{ "0B", 0 }, { "1B", 1 }, { "512B", 512 }, { "64KiB", 65536 },
		{ "1MiB", 1048576 }, { "1GiB", 1073741824 },
		{ "17179869183GiB", 17179869183ULL << 30 },
	};
	static const char *const bad[] = {
		"", "0", "1", "1K", "1M", "1G", "1KB", "1kib", "1kB", "1 KiB",
		"-1B", "+1B", "1.5MiB", "KiB", "1KiBs", "1TiB",
		"99999999999999999999B", "17179869184GiB",
	};
	uint64_t n;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		n = 12345;
		CU_ASSERT_EQUAL(config_parse_size(ok[i].s, &n), 0);
		CU_ASSERT_EQUAL(n, ok[i].bytes);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_size(bad[i], &n) != -1) {
			fprintf(stderr, "\n    accepted '%s'", bad[i]);
			CU_FAIL("bad size accepted");
		}
	}
}

static void
test_parse_bool(void)
{
	static const char *const yes[] = { "yes", "YES", "True", "on", "1" };
	static const char *const no[] = { "no", "No", "FALSE", "off", "0" };
	static const char *const bad[] = { "", "y", "n", "2", "yess", "enabled",
	    " yes", "01" };
	size_t i;
	int v;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		v = -1;
		CU_ASSERT_EQUAL(config_parse_bool(yes[i], &v), 0);
		CU_ASSERT_EQUAL(v, 1);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		v = -1;
		CU_ASSERT_EQUAL(config_parse_bool(no[i], &v), 0);
		CU_ASSERT_EQUAL(v, 0);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(config_parse_bool(bad[i], &v), -1);
}

static void
test_parse_uint(void)
{
	static const char *const bad[] = { "", "101", "-1", "+1", "1a", " 1",
	    "1 ", "0x10", "1e2", "99999999999999999999" };
	uint64_t v;
	size_t i;

	CU_ASSERT_EQUAL(config_parse_uint("0", 100, &v), 0);
	CU_ASSERT_EQUAL(v, 0);
	CU_ASSERT_EQUAL(config_parse_uint("100", 100, &v), 0);
	CU_ASSERT_EQUAL(v, 100);
	CU_ASSERT_EQUAL(config_parse_uint("007", 100, &v), 0);
	CU_ASSERT_EQUAL(v, 7);
	CU_ASSERT_EQUAL(config_parse_uint("0", 0, &v), 0);
	CU_ASSERT_EQUAL(config_parse_uint("5", 0, &v), -1);
	CU_ASSERT_EQUAL(config_parse_uint("10", 9, &v), -1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(config_parse_uint(bad[i], 100, &v), -1);
	CU_ASSERT_EQUAL(config_parse_uint("18446744073709551615", UINT64_MAX,
	    &v), 0);
	CU_ASSERT_EQUAL(v, UINT64_MAX);
	CU_ASSERT_EQUAL(config_parse_uint("18446744073709551616", UINT64_MAX,
	    &v), -1);
	CU_ASSERT_EQUAL(config_parse_uint("99999999999999999999", UINT64_MAX,
	    &v), -1);
}

static void
test_parse_listen(void)
{
	static const char *const bad[] = {
		"", "localhost:8080", "127.0.0.1", "127.0.0.1:", ":80",
		"127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x",
		"127.0.0.1:99999999999999999999", "1.2.3:80", "1.2.3.4.5:80",
		"256.0.0.1:80", "::1:8080", "[::1]8080", "[::1]", "[::1]:",
		"[]:80", "[127.0.0.1]:80", "[::1:80", "[fe80::1%lo]:80",
		"127.0.0.1:80,", " 127.0.0.1:80",
	};
	struct wsp_listen_addr a;
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;
	struct in6_addr lo6 = IN6ADDR_LOOPBACK_INIT;
	size_t i;

	CU_ASSERT_EQUAL_FATAL(config_parse_listen("127.0.0.1:8080", &a), 0);
	CU_ASSERT_EQUAL(a.ss.ss_family, AF_INET);
	CU_ASSERT_EQUAL(a.sslen, sizeof(*sin));
	sin = (struct sockaddr_in *)&a.ss;
	CU_ASSERT_EQUAL(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	CU_ASSERT_EQUAL(ntohs(sin->sin_port), 8080);
	CU_ASSERT_STRING_EQUAL(a.text, "127.0.0.1:8080");
	free(a.text);

	CU_ASSERT_EQUAL_FATAL(config_parse_listen("[::1]:8080", &a), 0);
	CU_ASSERT_EQUAL(a.ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL(a.sslen, sizeof(*sin6));
	sin6 = (struct sockaddr_in6 *)&a.ss;
	CU_ASSERT(memcmp(&sin6->sin6_addr, &lo6, sizeof(lo6)) == 0);
	CU_ASSERT_EQUAL(ntohs(sin6->sin6_port), 8080);
	CU_ASSERT_STRING_EQUAL(a.text, "[::1]:8080");
	free(a.text);

	CU_ASSERT_EQUAL_FATAL(config_parse_listen("0.0.0.0:0", &a), 0);
	CU_ASSERT_EQUAL(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 0);
	free(a.text);
	CU_ASSERT_EQUAL_FATAL(config_parse_listen("[::]:65535", &a), 0);
	CU_ASSERT_EQUAL(ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port),
	    65535);
	free(a.text);
	CU_ASSERT_EQUAL_FATAL(config_parse_listen("[2001:db8::7]:443", &a), 0);
	free(a.text);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_listen(bad[i], &a) != -1) {
			fprintf(stderr, "\n    accepted '%s'", bad[i]);
			CU_FAIL("bad listen address accepted");
			free(a.text);
		}
	}
}

/* [bus]: defaults, every key, both backends, bad values. */
static void
test_bus_section(void)
{
	struct wsp_config *c;

	c = load("[server]\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->bus_backend, BUS_BACKEND_LOCAL);
	CU_ASSERT_EQUAL(c->bus_history_size, 100);
	CU_ASSERT_EQUAL(c->bus_history_ttl, 5 * MS_MIN);
	CU_ASSERT_EQUAL(c->bus_history_memory, 64 * MIB);
	c = load("[bus]\nbackend = local\nhistory_size = 0\n"
	    "history_ttl = 1h\nhistory_memory = 1MiB\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->bus_history_size, 0);
	CU_ASSERT_EQUAL(c->bus_history_ttl, MS_HOUR);
	CU_ASSERT_EQUAL(c->bus_history_memory, MIB);
	CU_ASSERT_EQUAL(c->bus_redis_timeout, 2 * MS_SEC);
	CU_ASSERT_EQUAL(c->bus_redis_presence_ttl, 30 * MS_SEC);
	CU_ASSERT_EQUAL(c->bus_redis_queue, MIB);
	CU_ASSERT_PTR_NULL(c->bus_redis_prefix);
	c = load("[bus]\nbackend = redis\nredis = [::1]:6380\n"
	    "redis_user = u\nredis_db = 7\nredis_prefix = x:\n"
	    "redis_timeout = 1s\nredis_presence_ttl = 9s\n"
	    "redis_queue = 0B\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->bus_backend, BUS_BACKEND_REDIS);
	CU_ASSERT_STRING_EQUAL(c->bus_redis, "[::1]:6380");
	CU_ASSERT_STRING_EQUAL(c->bus_redis_user, "u");
	CU_ASSERT_STRING_EQUAL(c->bus_redis_prefix, "x:");
	CU_ASSERT_EQUAL(c->bus_redis_db, 7);
	CU_ASSERT_EQUAL(c->bus_redis_timeout, MS_SEC);
	CU_ASSERT_EQUAL(c->bus_redis_presence_ttl, 9 * MS_SEC);
	CU_ASSERT_EQUAL(c->bus_redis_queue, 0);
	expect_one("[bus]\nbackend = memcached\n", 2,
	    "[bus] backend: invalid backend 'memcached' (expected local or "
	    "redis)");
	expect_one("[bus]\nbackend = redis\n", 2,
	    "[bus] backend = redis needs [bus] redis = host:port or a unix "
	    "socket path");
	/* with workers, each worker is a node of its own on Redis */
	c = load("[server]\nworkers = 2\n[bus]\nbackend = redis\n"
	    "redis = /run/r.sock\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->workers, 2);
	CU_ASSERT_EQUAL(c->bus_backend, BUS_BACKEND_REDIS);
	expect_one("[bus]\nredis = ::1:6379\n", 2,
	    "[bus] redis: invalid address '::1:6379' (expected host:port, "
	    "[v6addr]:port or an absolute unix socket path, e.g. "
	    "127.0.0.1:6379)");
	expect_one("[bus]\nredis_presence_ttl = 1s\n", 2,
	    "[bus] redis_presence_ttl: 1s is out of range (3s..1h)");
	expect_one("[bus]\n\nhistory_ttl = 500ms\n", 3,
	    "[bus] history_ttl: 500ms is out of range (1s..7d)");
	expect_one("[bus]\nhistory_size = 1000001\n", 2,
	    "[bus] history_size: 1000001 is out of range (0..1000000)");
}

/* [deflate]: defaults, every key, and bad values with FILE:LINE. */
static void
test_deflate_section(void)
{
	struct wsp_config *c;

	c = load("[server]\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->deflate_enabled, 1);
	CU_ASSERT_EQUAL(c->deflate_server_wbits, 15);
	CU_ASSERT_EQUAL(c->deflate_client_wbits, 15);
	CU_ASSERT_EQUAL(c->deflate_context_takeover, 1);
	CU_ASSERT_EQUAL(c->deflate_level, 6);
	CU_ASSERT_EQUAL(c->deflate_mem_level, 8);
	CU_ASSERT_EQUAL(c->deflate_threshold, 128);
	CU_ASSERT_EQUAL(c->deflate_context_budget, 64 * MIB);
	c = load("[deflate]\nenabled = off\nserver_max_window_bits = 9\n"
	    "client_max_window_bits = 8\ncontext_takeover = no\n"
	    "level = 1\nmem_level = 9\nthreshold = 0B\n"
	    "context_budget = 0B\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->deflate_enabled, 0);
	CU_ASSERT_EQUAL(c->deflate_server_wbits, 9);
	CU_ASSERT_EQUAL(c->deflate_client_wbits, 8);
	CU_ASSERT_EQUAL(c->deflate_context_takeover, 0);
	CU_ASSERT_EQUAL(c->deflate_level, 1);
	CU_ASSERT_EQUAL(c->deflate_mem_level, 9);
	CU_ASSERT_EQUAL(c->deflate_threshold, 0);
	CU_ASSERT_EQUAL(c->deflate_context_budget, 0);
	expect_one("[deflate]\nenabled = maybe\n", 2,
	    "[deflate] enabled: invalid boolean 'maybe' (expected yes or no, "
	    "true or false, on or off, 1 or 0)");
	expect_one("[deflate]\nserver_max_window_bits = 8\n", 2,
	    "[deflate] server_max_window_bits: 8 is out of range (9..15)");
	expect_one("[deflate]\nclient_max_window_bits = 16\n", 2,
	    "[deflate] client_max_window_bits: 16 is out of range (8..15)");
	expect_one("[deflate]\nlevel = 0\n", 2,
	    "[deflate] level: 0 is out of range (1..9)");
	expect_one("[deflate]\n\nthreshold = 128\n", 3,
	    "[deflate] threshold: invalid size '128' (expected a number with "
	    "a unit: 512B, 64KiB, 1MiB, 1GiB)");
	expect_one("[deflate]\ncontext_budget = 65GiB\n", 2,
	    "[deflate] context_budget: 65GiB is out of range (0B..64GiB)");
	expect_one("[deflate]\nenabled = yes\nenabled = no\n", 3,
	    "duplicate key 'enabled' (first set at line 2)");
	expect_one("[server]\nthreshold = 1KiB\n", 2,
	    "unknown key 'threshold' in [server] (it belongs in [deflate])");
}

static void
test_error_kinds(void)
{
	char *dir, *msg;

	expect_one("[server]\nlisten = 127.0.0.1:1\nbogus = 1\n", 3,
	    "unknown key 'bogus' in [server]");
	expect_one("[server]\nping_interval = 5s\n", 2,
	    "unknown key 'ping_interval' in [server] (it belongs in "
	    "[keepalive])");
	/* the keys of an unknown section are not reported again */
	expect_one("[server]\n\n[foo]\nbar = 1\n", 3,
	    "unknown section [foo]");
	expect_one("[Server]\n", 1, "unknown section [Server]");
	expect_one("[Admin]\n", 1, "unknown section [Admin]");
	expect_one("[server]\nmax_connections = 5\nmax_connections = 6\n", 3,
	    "duplicate key 'max_connections' (first set at line 2)");
	expect_one("[keepalive]\n\n\n\n\n\n\n\n\n\n\nping_interval = abc\n", 12,
	    "[keepalive] ping_interval: invalid duration 'abc' (expected a "
	    "number with a unit: 500ms, 25s, 2m, 1h, 1d)");
	expect_one("[keepalive]\nsweep_interval = 60\n", 2,
	    "[keepalive] sweep_interval: invalid duration '60' (expected a "
	    "number with a unit: 500ms, 25s, 2m, 1h, 1d)");
	expect_one("[keepalive]\nsweep_interval = 99999999999999999999s\n", 2,
	    "[keepalive] sweep_interval: 99999999999999999999s is out of "
	    "range (100ms..1d)");
	expect_one("[keepalive]\nping_interval = 50ms\n", 2,
	    "[keepalive] ping_interval: 50ms is out of range "
	    "(0, or 100ms..1d)");
	expect_one("[server]\ntimer_slack = 1001ms\n", 2,
	    "[server] timer_slack: 1001ms is out of range (0..1s)");
	expect_one("[server]\n\n\n\n\n\nmax_connections = 0\n", 7,
	    "[server] max_connections: 0 is out of range (1..1000000)");
	expect_one("[server]\nmax_connections = 99999999999999999999\n", 2,
	    "[server] max_connections: 99999999999999999999 is out of range "
	    "(1..1000000)");
	expect_one("[server]\nmax_connections = ten\n", 2,
	    "[server] max_connections: invalid number 'ten' (expected an "
	    "integer, 1..1000000)");
	expect_one("[server]\nmax_connections =\n", 2,
	    "[server] max_connections: empty value (expected an integer, "
	    "1..1000000)");
	expect_one("[server]\nhandshake_timeout =   \n", 2,
	    "[server] handshake_timeout: empty value (expected a number with "
	    "a unit: 500ms, 25s, 2m, 1h, 1d)");
	expect_one("[server]\nmax_message_size = 1024\n", 2,
	    "[server] max_message_size: invalid size '1024' (expected a "
	    "number with a unit: 512B, 64KiB, 1MiB, 1GiB)");
	expect_one("[server]\nmax_message_size = 2GiB\n", 2,
	    "[server] max_message_size: 2GiB is out of range (1B..1GiB)");
	expect_one("[server]\nmax_header_size = 512B\n", 2,
	    "[server] max_header_size: 512B is out of range (1KiB..64KiB)");
	expect_one("[server]\nmax_output_buffer = 5GiB\n", 2,
	    "[server] max_output_buffer: 5GiB is out of range (4KiB..4GiB)");
	expect_one("[server]\npath = ws\n", 2,
	    "[server] path: invalid path 'ws' (expected a path starting with "
	    "'/', at most 256 bytes of printable ASCII without spaces, '?' "
	    "or '#', e.g. /ws)");
	expect_one("[server]\npath = /ws?x=1\n", 2,
	    "[server] path: invalid path '/ws?x=1' (expected a path starting "
	    "with '/', at most 256 bytes of printable ASCII without spaces, "
	    "'?' or '#', e.g. /ws)");
	expect_one("[server]\npath =\n", 2,
	    "[server] path: empty value (expected a path starting with '/', "
	    "at most 256 bytes of printable ASCII without spaces, '?' or '#', "
	    "e.g. /ws)");
	expect_one("[log]\nlevel = verbose\n", 2,
	    "[log] level: invalid log level 'verbose' (expected debug, info, "
	    "warn or error)");
	expect_one("[log]\nformat = xml\n", 2,
	    "[log] format: invalid log format 'xml' (expected logfmt or json)");
	expect_one("[log]\ntarget = file:wsplugd.log\n", 2,
	    "[log] target: invalid log target 'file:wsplugd.log' (expected "
	    "stderr, syslog, journal or file:/absolute/path)");
#ifndef HAVE_SYSTEMD
	expect_one("[log]\ntarget = journal\n", 2,
	    "[log] target: journal: not built with libsystemd (under systemd, "
	    "stderr reaches the journal too)");
#endif
	expect_one("[log]\ntarget = Journal\n", 2,
	    "[log] target: invalid log target 'Journal' (expected stderr, "
	    "syslog, journal or file:/absolute/path)");
	expect_one("[plugins]\ndir =\n", 2,
	    "[plugins] dir: empty value (expected an absolute path, or one "
	    "relative to the configuration file)");
	expect_one("[server]\nlisten\n", 2,
	    "syntax error (expected [section] or key = value)");
	expect_one("[server]\n= 5\n", 2,
	    "syntax error (expected [section] or key = value)");
	expect_one("[server\nlisten = 1.2.3.4:5\n", 1,
	    "syntax error (expected [section] or key = value)");
	expect_one("[server] listen = 1.2.3.4:5\n", 1,
	    "syntax error (expected [section] or key = value)");
	expect_one("listen = 1.2.3.4:5\n", 1,
	    "key 'listen' outside any section (expected a [section] header "
	    "first)");
	expect_one("[plugin:bad name]\npath = /x.so\n", 1,
	    "invalid plugin name in [plugin:bad name] (expected 1 to 64 "
	    "letters, digits, '_' or '-')");
	expect_one("[plugin:]\n", 1, "invalid plugin name in [plugin:] "
	    "(expected 1 to 64 letters, digits, '_' or '-')");
	expect_one("[plugin:"
	    "a123456789b123456789c123456789d123456789e123456789f123456789g1234]"
	    "\n", 1, "invalid plugin name in [plugin:"
	    "a123456789b123456789c123456789d123456789e123456789f123456789g123"
	    "...] (expected 1 to 64 letters, digits, '_' or '-')");
	expect_one("[plugin:ping]\n[server]\n[plugin:ping]\n", 3,
	    "duplicate section [plugin:ping] (first at line 1)");
	expect_one("[plugin:ping]\nenabled = maybe\n", 2,
	    "[plugin:ping] enabled: invalid boolean 'maybe' (expected yes or "
	    "no, true or false, on or off, 1 or 0)");
	expect_one("[plugin:ping]\nenabled =\n", 2,
	    "[plugin:ping] enabled: empty value (expected yes or no, true or "
	    "false, on or off, 1 or 0)");
	expect_one("[plugin:ping]\npath =\n", 2,
	    "[plugin:ping] path: empty value (expected the plugin's .so, "
	    "absolute or relative to the configuration file)");
	/* inih would see the line end at the NUL */
	CU_ASSERT_PTR_NULL(load_len("[server]\nmax_connections = 5\0junk\n"
	    "bogus = 1\n", 44, PLUGINDIR));
	CU_ASSERT(nerrors(2));
	CU_ASSERT(has_error(2, "NUL byte in line"));
	CU_ASSERT(has_error(3, "unknown key 'bogus' in [server]"));

	/* a value is quoted cut short and with control characters shown */
	expect_one("[log]\nlevel = \x1b[31mred\n", 2,
	    "[log] level: invalid log level '?[31mred' (expected debug, info, "
	    "warn or error)");

	/* files that cannot be read */
	reset();
	t_path = write_temp("", 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t_path);
	unlink(t_path);
	CU_ASSERT_PTR_NULL(config_load(t_path, PLUGINDIR, &t_errs));
	CU_ASSERT(nerrors(1));
	CU_ASSERT(has_error(0, "cannot open: No such file or directory"));
	reset();

	CU_ASSERT_FATAL(asprintf(&dir, "%s/wsplugd-test-XXXXXX", tmpdir()) !=
	    -1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	CU_ASSERT_PTR_NULL(config_load(dir, PLUGINDIR, &t_errs));
	CU_ASSERT_FATAL(asprintf(&msg, "%s: cannot read: Is a directory",
	    dir) != -1);
	CU_ASSERT_EQUAL(t_errs.n, 1);
	if (t_errs.n == 1)
		CU_ASSERT_STRING_EQUAL(t_errs.msg[0], msg);
	rmdir(dir);
	free(dir);
	free(msg);
	reset();
}

static void
test_value_lists(void)
{
	struct wsp_config *cfg;

	CU_ASSERT_PTR_NULL(load("[server]\n"
	    "listen = localhost:8080 127.0.0.1:99999, [::1]:1\n"));
	CU_ASSERT(nerrors(2));
	CU_ASSERT(has_error(2, "[server] listen: invalid address "
	    "'localhost:8080' (expected a numeric address and a port, e.g. "
	    "127.0.0.1:8080 or [::1]:8080, each optionally followed by tls)"));
	CU_ASSERT(has_error(2, "[server] listen: invalid address "
	    "'127.0.0.1:99999' (expected a numeric address and a port, e.g. "
	    "127.0.0.1:8080 or [::1]:8080, each optionally followed by tls)"));

	expect_one("[server]\nlisten = ,\n", 2, "[server] listen: empty value "
	    "(expected a numeric address and a port, e.g. 127.0.0.1:8080 or "
	    "[::1]:8080, each optionally followed by tls)");
	expect_one("[server]\nlisten = 127.0.0.1:80 [::1]:80 127.0.0.1:80\n", 2,
	    "[server] listen: 127.0.0.1:80 is listed twice");
	cfg = load("[server]\nlisten = 127.0.0.1:0 127.0.0.1:0\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->nlisten, 2);

	/* an empty list means any origin, or no subprotocol */
	cfg = load("[server]\norigins =\nsubprotocols = ,\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->norigins, 0);
	CU_ASSERT_EQUAL(cfg->nsubprotocols, 0);

	cfg = load("[server]\norigins = https://[::1]:8443,,"
	    "HTTPS://App.Example.COM\thttp://a-b.c:1\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL_FATAL(cfg->norigins, 3);
	CU_ASSERT_STRING_EQUAL(cfg->origins[0], "https://[::1]:8443");
	CU_ASSERT_STRING_EQUAL(cfg->origins[1], "HTTPS://App.Example.COM");

	CU_ASSERT_PTR_NULL(load("[server]\norigins = https://a.example.com/ "
	    "ftp://x example.com https://a:0 https:// http://[::1 NULL "
	    "https://a.example.com\n"));
	CU_ASSERT(nerrors(7));
#define BAD_ORIGIN(o)                                                         \
	CU_ASSERT(has_error(2, "[server] origins: invalid origin '" o "' "    \
	    "(expected scheme://host[:port] with scheme http or https, or "   \
	    "null)"))
	BAD_ORIGIN("https://a.example.com/");
	BAD_ORIGIN("ftp://x");
	BAD_ORIGIN("example.com");
	BAD_ORIGIN("https://a:0");
	BAD_ORIGIN("https://");
	BAD_ORIGIN("http://[::1");
	BAD_ORIGIN("NULL");
#undef BAD_ORIGIN

	/* gone: retired paths, none the endpoint's own; empty is none */
	cfg = load("[server]\npath = /v2\ngone = /ws, /v1/socket\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL_FATAL(cfg->ngone, 2);
	CU_ASSERT_STRING_EQUAL(cfg->gone[0], "/ws");
	CU_ASSERT_STRING_EQUAL(cfg->gone[1], "/v1/socket");
	CU_ASSERT_EQUAL(cfg->restart_spread, 10000); /* the default */
	cfg = load("[server]\ngone =\nrestart_spread = 0\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->ngone, 0);
	CU_ASSERT_EQUAL(cfg->restart_spread, 0);
	expect_one("[server]\ngone = /old ws?x\n", 2,
	    "[server] gone: invalid path 'ws?x' (expected paths starting "
	    "with '/', of printable ASCII without spaces, '?' or '#', e.g. "
	    "/old-ws)");
	expect_one("[server]\ngone = /old /ws\n", 2,
	    "[server] gone: /ws is the endpoint's own path");
	expect_one("[server]\nrestart_spread = 2h\n", 2,
	    "[server] restart_spread: 2h is out of range (0..1h)");

	expect_one("[server]\nsubprotocols = chat bad/proto\n", 2,
	    "[server] subprotocols: invalid subprotocol 'bad/proto' (expected "
	    "a token of letters, digits and !#$%&'*+-.^_`|~)");

	/* the admin listener's other names, and its limits */
	cfg = load("[admin]\nallowed_hosts = monitor.example, [::1]:9180\n"
	    "max_connections = 4\ntimeout = 2s\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL_FATAL(cfg->nadmin_hosts, 2);
	CU_ASSERT_STRING_EQUAL(cfg->admin_hosts[0], "monitor.example");
	CU_ASSERT_STRING_EQUAL(cfg->admin_hosts[1], "[::1]:9180");
	CU_ASSERT_EQUAL(cfg->admin_max_connections, 4);
	CU_ASSERT_EQUAL(cfg->admin_timeout, 2000);
	cfg = load("[admin]\nallowed_hosts =\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->nadmin_hosts, 0);
	expect_one("[admin]\nallowed_hosts = a.example b/c\n", 2,
	    "[admin] allowed_hosts: invalid host 'b/c' (expected a host name "
	    "or address as a Host header has it, with or without a port, e.g. "
	    "monitor.example or [::1]:9180)");
	/* [server] user and group, looked up at load */
	cfg = load("[server]\nuser = root\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_STRING_EQUAL(cfg->user, "root");
	CU_ASSERT_EQUAL(cfg->uid, 0);
	CU_ASSERT_EQUAL(cfg->gid, 0);
	CU_ASSERT_EQUAL(cfg->user_line, 2);
	CU_ASSERT_PTR_NULL(cfg->group);
	cfg = load("[server]\ngroup = nogroup\nuser = root\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_STRING_EQUAL(cfg->group, "nogroup");
	CU_ASSERT_EQUAL(cfg->gid, 65534);
	expect_one("[server]\nuser = no-such-user-x\n", 2,
	    "[server] user: no such user 'no-such-user-x'");
	expect_one("[server]\nuser = root\ngroup = no-such-group-x\n", 3,
	    "[server] group: no such group 'no-such-group-x'");
	expect_one("[admin]\nmax_connections = 0\n", 2,
	    "[admin] max_connections: 0 is out of range (1..10000)");
	reset();
}

static void
test_multiple_errors(void)
{
	CU_ASSERT_PTR_NULL(load(
	    "[server]\n"                      /* 1 */
	    "max_connections = 0\n"           /* 2 */
	    "path = /ok\n"                    /* 3 */
	    "nonsense\n"                      /* 4 */
	    "bogus = 1\n"                     /* 5 */
	    "[keepalive]\n"                   /* 6 */
	    "ping_interval = 25\n"            /* 7 */
	    "[nope]\n"                        /* 8 */
	    "[log]\n"                         /* 9 */
	    "level = loud\n"                  /* 10 */
	    "[server]\n"                      /* 11 */
	    "path = /again\n"                 /* 12 */
	    "[plugin:a b]\n"                  /* 13 */
	    "[plugin:ok]\n"                   /* 14 */
	    "enabled = perhaps\n"));          /* 15 */
	CU_ASSERT(nerrors(9));
	CU_ASSERT(has_error(2, "[server] max_connections: 0 is out of range "
	    "(1..1000000)"));
	CU_ASSERT(has_error(4, "syntax error (expected [section] or key = "
	    "value)"));
	CU_ASSERT(has_error(5, "unknown key 'bogus' in [server]"));
	CU_ASSERT(has_error(7, "[keepalive] ping_interval: invalid duration "
	    "'25' (expected a number with a unit: 500ms, 25s, 2m, 1h, 1d)"));
	CU_ASSERT(has_error(8, "unknown section [nope]"));
	CU_ASSERT(has_error(10, "[log] level: invalid log level 'loud' "
	    "(expected debug, info, warn or error)"));
	CU_ASSERT(has_error(12, "duplicate key 'path' (first set at line 3)"));
	CU_ASSERT(has_error(13, "invalid plugin name in [plugin:a b] "
	    "(expected 1 to 64 letters, digits, '_' or '-')"));
	CU_ASSERT(has_error(15, "[plugin:ok] enabled: invalid boolean "
	    "'perhaps' (expected yes or no, true or false, on or off, 1 or "
	    "0)"));
	reset();
}

static void
test_duplicates(void)
{
	/* a repeated header continues the section: its keys still count */
	CU_ASSERT_PTR_NULL(load(
	    "[server]\n"
	    "max_connections = 5\n"
	    "[log]\n"
	    "level = info\n"
	    "[server]\n"
	    "max_connections = 6\n"
	    "path = /x\n"
	    "[log]\n"
	    "level = debug\n"));
	CU_ASSERT(nerrors(2));
	CU_ASSERT(has_error(6, "duplicate key 'max_connections' (first set at "
	    "line 2)"));
	CU_ASSERT(has_error(9, "duplicate key 'level' (first set at line 4)"));

	/* the first value given stands; an invalid first value still counts */
	CU_ASSERT_PTR_NULL(load("[server]\npath = bad\npath = /good\n"));
	CU_ASSERT(nerrors(2));
	CU_ASSERT(has_error(3, "duplicate key 'path' (first set at line 2)"));

	CU_ASSERT_PTR_NULL(load(
	    "[plugin:p]\n"
	    "path = /a.so\n"
	    "enabled = yes\n"
	    "greeting = hi\n"
	    "path = /b.so\n"
	    "enabled = no\n"
	    "greeting = hello\n"));
	CU_ASSERT(nerrors(3));
	CU_ASSERT(has_error(5, "duplicate key 'path' (first set at line 2)"));
	CU_ASSERT(has_error(6, "duplicate key 'enabled' (first set at line "
	    "3)"));
	CU_ASSERT(has_error(7, "duplicate key 'greeting' (first set at line "
	    "4)"));
	reset();
}

static void
test_plugin_sections(void)
{
	struct wsp_config *cfg;
	struct wsp_section *s;
	const char *longname =
	    "a123456789b123456789c123456789d123456789e123456789f123456789g123";
	char *text, *want;

	CU_ASSERT_FATAL(asprintf(&text,
	    "[plugin:connection_established]\n"  /* 1 */
	    "\n"
	    "[plugin:ping]\n"                    /* 3 */
	    "[plugin:echo]\n"                    /* 4 */
	    "enabled = off\n"
	    "catch_all = yes\n"                  /* 6 */
	    "; between\n"
	    "greeting = hello world ; comment\n" /* 8 */
	    "empty =\n"                          /* 9 */
	    "[plugin:%s]\n"                      /* 10 */
	    "x = 1\n", longname) != -1);
	cfg = load(text);
	free(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL_FATAL(cfg->nplugins, 4);

	s = &cfg->plugins[0];
	CU_ASSERT_STRING_EQUAL(s->name, "connection_established");
	CU_ASSERT_STRING_EQUAL(s->file, t_path);
	CU_ASSERT_EQUAL(s->line, 1);
	CU_ASSERT_EQUAL(s->enabled, 1);
	CU_ASSERT_STRING_EQUAL(s->path,
	    PLUGINDIR "/connection_established.so");
	CU_ASSERT_EQUAL(s->nkv, 0);
	CU_ASSERT_PTR_NULL(s->errors);

	/* a section with no keys never reaches inih's handler */
	s = &cfg->plugins[1];
	CU_ASSERT_STRING_EQUAL(s->name, "ping");
	CU_ASSERT_EQUAL(s->line, 3);
	CU_ASSERT_EQUAL(s->enabled, 1);
	CU_ASSERT_STRING_EQUAL(s->path, PLUGINDIR "/ping.so");

	s = &cfg->plugins[2];
	CU_ASSERT_STRING_EQUAL(s->name, "echo");
	CU_ASSERT_EQUAL(s->line, 4);
	CU_ASSERT_EQUAL(s->enabled, 0);
	CU_ASSERT_STRING_EQUAL(s->path, PLUGINDIR "/echo.so");
	CU_ASSERT_EQUAL_FATAL(s->nkv, 3);
	CU_ASSERT_STRING_EQUAL(s->kv[0].key, "catch_all");
	CU_ASSERT_STRING_EQUAL(s->kv[0].value, "yes");
	CU_ASSERT_EQUAL(s->kv[0].line, 6);
	CU_ASSERT_EQUAL(s->kv[0].used, 0);
	CU_ASSERT_STRING_EQUAL(s->kv[1].key, "greeting");
	CU_ASSERT_STRING_EQUAL(s->kv[1].value, "hello world");
	CU_ASSERT_EQUAL(s->kv[1].line, 8);
	CU_ASSERT_STRING_EQUAL(s->kv[2].key, "empty");
	CU_ASSERT_STRING_EQUAL(s->kv[2].value, "");
	CU_ASSERT_EQUAL(s->kv[2].line, 9);

	/* longer than the 49 bytes inih keeps of a section name */
	s = &cfg->plugins[3];
	CU_ASSERT_STRING_EQUAL(s->name, longname);
	CU_ASSERT_EQUAL(s->line, 10);
	CU_ASSERT_EQUAL_FATAL(s->nkv, 1);
	CU_ASSERT_EQUAL(s->kv[0].line, 11);
	CU_ASSERT_FATAL(asprintf(&want, PLUGINDIR "/%s.so", longname) != -1);
	CU_ASSERT_STRING_EQUAL(s->path, want);
	free(want);

	/* no [plugins] dir and no default: a plugin needs its own path */
	CU_ASSERT_PTR_NULL(load_dir("[plugin:a]\n[plugin:b]\npath = /b.so\n",
	    NULL));
	CU_ASSERT(nerrors(1));
	CU_ASSERT(has_error(1, "[plugin:a] has no path and there is no "
	    "[plugins] dir"));
	reset();
}

static void
test_relative_paths(void)
{
	struct wsp_config *cfg;
	char *dir, *want;

	/* [plugins] dir after the sections that depend on it */
	cfg = load(
	    "[plugin:one]\n"
	    "[plugin:two]\n"
	    "path = sub/two.so\n"
	    "[plugin:three]\n"
	    "path = /abs/three.so\n"
	    "[plugins]\n"
	    "dir = ../plugins/.libs\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL_FATAL(cfg->nplugins, 3);
	dir = strdup(t_path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	*strrchr(dir, '/') = '\0';

	CU_ASSERT_FATAL(asprintf(&want, "%s/../plugins/.libs", dir) != -1);
	CU_ASSERT_STRING_EQUAL(cfg->plugin_dir, want);
	free(want);
	CU_ASSERT_FATAL(asprintf(&want, "%s/../plugins/.libs/one.so", dir) !=
	    -1);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].path, want);
	free(want);
	CU_ASSERT_FATAL(asprintf(&want, "%s/sub/two.so", dir) != -1);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[1].path, want);
	free(want);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[2].path, "/abs/three.so");
	free(dir);

	/* the default directory is used as given */
	cfg = load_dir("[plugin:one]\n", "plugins");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_STRING_EQUAL(cfg->plugin_dir, "plugins");
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].path, "plugins/one.so");
	reset();
}

static void
test_keepalive_cross_check(void)
{
	struct wsp_config *cfg;

	expect_one("[keepalive]\nping_interval = 25s\nidle_timeout = 25s\n", 3,
	    "[keepalive] idle_timeout: 25s must be greater than ping_interval "
	    "(25s), or clients that only answer pings are reaped");
	expect_one("[keepalive]\nidle_timeout = 10s\n", 2,
	    "[keepalive] idle_timeout: 10s must be greater than ping_interval "
	    "(25s), or clients that only answer pings are reaped");
	expect_one("[keepalive]\n\nping_interval = 90s\n", 3,
	    "[keepalive] ping_interval: 90s must be less than idle_timeout "
	    "(1m, the default), or clients that only answer pings are reaped");
	expect_one("[keepalive]\nidle_timeout = 1500ms\nping_interval = 2s\n",
	    2, "[keepalive] idle_timeout: 1500ms must be greater than "
	    "ping_interval (2s), or clients that only answer pings are reaped");

	/* a bad value is reported once, not compared */
	expect_one("[keepalive]\nping_interval = soon\nidle_timeout = 10s\n", 2,
	    "[keepalive] ping_interval: invalid duration 'soon' (expected a "
	    "number with a unit: 500ms, 25s, 2m, 1h, 1d)");

	cfg = load("[keepalive]\nping_interval = 0\nidle_timeout = 10s\n");
	CU_ASSERT_PTR_NOT_NULL(cfg);
	cfg = load("[keepalive]\nping_interval = 1d\nidle_timeout = 0\n");
	CU_ASSERT_PTR_NOT_NULL(cfg);
	cfg = load("[keepalive]\nping_interval = 30s\nidle_timeout = 31s\n");
	CU_ASSERT_PTR_NOT_NULL(cfg);
	reset();
}

static void
test_comments(void)
{
	struct wsp_config *cfg;

	cfg = load(
	    "; a comment\n"
	    "# another\n"
	    "[server] ; the server\n"
	    "  ; an indented comment\n"
	    "\t# and another\n"
	    "max_connections = 42 ; inline\n"
	    "path = /a;b\n"
	    "[plugin:p] # the plugin\n"
	    "note = a # b ; c\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->max_connections, 42);
	/* ';' starts a comment only after whitespace */
	CU_ASSERT_STRING_EQUAL(cfg->path, "/a;b");
	/* '#' is a comment only at the start of a line */
	CU_ASSERT_EQUAL_FATAL(cfg->nplugins, 1);
	CU_ASSERT_EQUAL_FATAL(cfg->plugins[0].nkv, 1);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].kv[0].value, "a # b");

	expect_one("[server]\nmax_connections = 7 # seven\n", 2,
	    "[server] max_connections: invalid number '7 # seven' (expected "
	    "an integer, 1..1000000)");
	reset();
}

/*
 * inih follows Python's configparser by default: an indented line continues
 * the previous value.  We turn that off, so an indented line is a line of
 * its own and can never silently extend a value.
 */
static void
test_continuation_lines(void)
{
	struct wsp_config *cfg;

	/* inih splits name:value too, so most of these become keys */
	CU_ASSERT_PTR_NULL(load(
	    "[server]\n"
	    "listen = 127.0.0.1:1\n"
	    "  127.0.0.1:2\n"
	    "origins = https://a.example.com\n"
	    "    https://b.example.com\n"
	    "[plugin:p]\n"
	    "greeting = hello\n"
	    "    world\n"));
	CU_ASSERT(nerrors(3));
	CU_ASSERT(has_error(3, "unknown key '127.0.0.1' in [server]"));
	CU_ASSERT(has_error(5, "unknown key 'https' in [server]"));
	CU_ASSERT(has_error(8, "syntax error (expected [section] or key = "
	    "value)"));

	cfg = load("[server]\npath = /x\n    max_connections = 5\n"
	    "[plugin:p]\na = 1\n  b = 2\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_STRING_EQUAL(cfg->path, "/x");
	CU_ASSERT_EQUAL(cfg->max_connections, 5);
	CU_ASSERT_EQUAL_FATAL(cfg->plugins[0].nkv, 2);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].kv[0].value, "1");
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].kv[1].key, "b");
	CU_ASSERT_EQUAL(cfg->plugins[0].kv[1].line, 6);
	reset();
}

static void
test_long_lines(void)
{
	struct wsp_config *cfg;
	char *text, *p, msg[128];
	size_t i, n, big = 1024 * 1024 + 1;

	/* 200 origins on one line: far past inih's 200-byte default */
	text = malloc(64 * 200 + 64);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	p = text + sprintf(text, "[server]\norigins =");
	for (i = 0; i < 200; i++)
		p += sprintf(p, " https://host%03zu.example.com", i);
	sprintf(p, "\npath = /after\n");
	CU_ASSERT(strlen(text) > 5000);
	cfg = load(text);
	free(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL_FATAL(cfg->norigins, 200);
	CU_ASSERT_STRING_EQUAL(cfg->origins[0], "https://host000.example.com");
	CU_ASSERT_STRING_EQUAL(cfg->origins[199],
	    "https://host199.example.com");
	CU_ASSERT_STRING_EQUAL(cfg->path, "/after");

	/* over the limit: reported, not truncated, and the next lines go on */
	n = strlen("[plugin:p]\nk = ");
	text = malloc(n + big + 64);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	memcpy(text, "[plugin:p]\nk = ", n);
	memset(text + n, 'x', big - 4);
	strcpy(text + n + big - 4, "\nbogus\n");
	CU_ASSERT_PTR_NULL(load(text));
	free(text);
	CU_ASSERT(nerrors(2));
	snprintf(msg, sizeof(msg), "line too long (%zu bytes; at most %d)",
	    big, 1024 * 1024);
	CU_ASSERT(has_error(2, msg));
	CU_ASSERT(has_error(3, "syntax error (expected [section] or key = "
	    "value)"));
	reset();
}

static void
test_bom_and_crlf(void)
{
	struct wsp_config *cfg;

	cfg = load("\xef\xbb\xbf[server]\r\nmax_connections = 3\r\n"
	    "path = /x\r\n\r\n[plugin:ping]\r\nk = v\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT(nerrors(0));
	CU_ASSERT_EQUAL(cfg->max_connections, 3);
	CU_ASSERT_STRING_EQUAL(cfg->path, "/x");
	CU_ASSERT_EQUAL_FATAL(cfg->nplugins, 1);
	CU_ASSERT_EQUAL(cfg->plugins[0].line, 5);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].kv[0].value, "v");
	CU_ASSERT_EQUAL(cfg->plugins[0].kv[0].line, 6);

	CU_ASSERT_PTR_NULL(load("\xef\xbb\xbf[server]\r\n\r\nbogus = 1\r\n"
	    "[nope]\r\n"));
	CU_ASSERT(nerrors(2));
	CU_ASSERT(has_error(3, "unknown key 'bogus' in [server]"));
	CU_ASSERT(has_error(4, "unknown section [nope]"));

	/* no newline at the end of the file */
	cfg = load("[server]\npath = /end");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_STRING_EQUAL(cfg->path, "/end");
	expect_one("[server]\nlisten", 2,
	    "syntax error (expected [section] or key = value)");
	reset();
}

/* The shipped default, as `make` would install it. */
static void
test_log_journal(void)
{
#ifdef HAVE_SYSTEMD
	struct wsp_config *cfg;

	cfg = load("[log]\ntarget = journal\nformat = json\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT(nerrors(0));
	CU_ASSERT_EQUAL(cfg->log_target, LOG_TARGET_JOURNAL);
	CU_ASSERT_PTR_NULL(cfg->log_file);
	reset();
#else
	expect_one("[log]\n\ntarget = journal\n", 3,
	    "[log] target: journal: not built with libsystemd (under systemd, "
	    "stderr reaches the journal too)");
	reset();
#endif
}

static void
test_tls_keys(void)
{
	struct wsp_config *cfg;

	cfg = load("[server]\nlisten = 127.0.0.1:0, 127.0.0.1:0 tls\n"
	    "[tls]\ncertificate = /etc/c.pem\nkey = k.pem\n"
	    "min_version = TLS1.3\nsession_tickets = no\n"
	    "ciphers = ECDHE+AESGCM\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->nlisten, 2);
	CU_ASSERT_EQUAL(cfg->listen[0].tls, 0);
	CU_ASSERT_EQUAL(cfg->listen[1].tls, 1);
	CU_ASSERT_EQUAL(cfg->ntls_listen, 1);
	CU_ASSERT_STRING_EQUAL(cfg->tls.certificate, "/etc/c.pem");
	CU_ASSERT_EQUAL(cfg->tls.key[0], '/'); /* relative to the file */
	CU_ASSERT_EQUAL(cfg->tls.key_line, 5);
	CU_ASSERT_EQUAL(cfg->tls.min_version, 13);
	CU_ASSERT_EQUAL(cfg->tls.session_tickets, 0);
	CU_ASSERT_STRING_EQUAL(cfg->tls.ciphers, "ECDHE+AESGCM");

	cfg = load("[server]\nlisten = 127.0.0.1:1\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->tls.min_version, 12);
	CU_ASSERT_EQUAL(cfg->tls.session_tickets, 1);
	CU_ASSERT_EQUAL(cfg->tls.ktls, 0);
	cfg = load("[tls]\nktls = auto\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->tls.ktls, 1);
	expect_one("[tls]\nktls = yes\n", 2, "[tls] ktls: invalid value "
	    "'yes' (expected auto or off)");

	expect_one("[server]\nlisten = tls 127.0.0.1:1\n", 2,
	    "[server] listen: 'tls' must follow an address, e.g. "
	    "0.0.0.0:443 tls");
	expect_one("[server]\nlisten = 127.0.0.1:1 tls tls\n"
	    "[tls]\ncertificate = /c\nkey = /k\n", 2,
	    "[server] listen: 'tls' must follow an address, e.g. "
	    "0.0.0.0:443 tls");
	expect_one("[server]\nlisten = 127.0.0.1:1 tls\n", 2,
	    "[server] listen: 127.0.0.1:1 tls needs [tls] certificate and "
	    "key");
	expect_one("[tls]\ncertificate = /c.pem\n", 2,
	    "[tls] certificate without key");
	expect_one("[tls]\nmin_version = SSLv3\n", 2,
	    "[tls] min_version: invalid version 'SSLv3' (expected TLS1.2 or "
	    "TLS1.3)");
	expect_one("[tls]\nsession_tickets = maybe\n", 2,
	    "[tls] session_tickets: invalid boolean 'maybe' (expected yes or "
	    "no, true or false, on or off, 1 or 0)");
	expect_one("[admin]\nlisten = 127.0.0.1:1 tls\n", 2,
	    "[admin] listen: invalid address 'tls' (expected a numeric "
	    "address and a port, e.g. 127.0.0.1:9180 or [::1]:9180, or "
	    "nothing to turn the admin listener off)");
}

static void
test_admin_listen(void)
{
	struct wsp_config *cfg;

	/* empty turns it off; so does a list of nothing but separators */
	cfg = load("[admin]\nlisten =\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT(nerrors(0));
	CU_ASSERT_EQUAL(cfg->nadmin_listen, 0);
	CU_ASSERT_PTR_NULL(cfg->admin_listen);
	cfg = load("[admin]\nlisten = ,\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->nadmin_listen, 0);

	/* port 0 on both sides is two kernel-picked ports */
	cfg = load("[server]\nlisten = 127.0.0.1:0\n[admin]\n"
	    "listen = 127.0.0.1:0\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_EQUAL(cfg->nadmin_listen, 1);

	expect_one("[admin]\nlisten = localhost:9180\n", 2,
	    "[admin] listen: invalid address 'localhost:9180' (expected a "
	    "numeric address and a port, e.g. 127.0.0.1:9180 or [::1]:9180, "
	    "or nothing to turn the admin listener off)");
	expect_one("[admin]\nlisten = 127.0.0.1\n", 2,
	    "[admin] listen: invalid address '127.0.0.1' (expected a "
	    "numeric address and a port, e.g. 127.0.0.1:9180 or [::1]:9180, "
	    "or nothing to turn the admin listener off)");
	expect_one("[admin]\nlisten = 127.0.0.1:9000 127.0.0.1:9000\n", 2,
	    "[admin] listen: 127.0.0.1:9000 is listed twice");
	expect_one("[admin]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n", 3,
	    "duplicate key 'listen' (first set at line 2)");
	expect_one("[admin]\npath = /x\n", 2,
	    "unknown key 'path' in [admin] (it belongs in [server])");
	expect_one("[server]\nlisten = 127.0.0.1:8080\n[admin]\n"
	    "listen = 127.0.0.1:8080\n", 4,
	    "[admin] listen: 127.0.0.1:8080 is also a [server] listen "
	    "address");
	/* the default collides: the message says how to get out */
	expect_one("[server]\n\nlisten = 127.0.0.1:9180\n", 3,
	    "[admin] listen: 127.0.0.1:9180 is also a [server] listen "
	    "address (the [admin] default: set [admin] listen to another "
	    "address, or empty to turn it off)");
	reset();
}

static void
test_shipped_config(void)
{
	static const char *const marker = "@plugindir@";
	const char *dir = "/usr/lib/x86_64-linux-gnu/wsplugd";
	struct wsp_config *cfg;
	FILE *fp;
	char *in = NULL, *out, *o, *s, *m;
	size_t insz = 0, n;

	fp = fopen(SRCDIR "/etc/wsplugd.conf.in", "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	n = (size_t)getdelim(&in, &insz, '\0', fp);
	fclose(fp);
	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	CU_ASSERT_PTR_NOT_NULL(strstr(in, marker));

	out = malloc(n * 4 + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	for (s = in, o = out; (m = strstr(s, marker)) != NULL;
	    s = m + strlen(marker)) {
		memcpy(o, s, (size_t)(m - s));
		o += m - s;
		o += sprintf(o, "%s", dir);
	}
	strcpy(o, s);
	free(in);

	cfg = load(out);
	free(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT(nerrors(0));
	CU_ASSERT_EQUAL_FATAL(cfg->nlisten, 1);
	CU_ASSERT_STRING_EQUAL(cfg->listen[0].text, "127.0.0.1:8080");
	CU_ASSERT_STRING_EQUAL(cfg->path, "/ws");
	CU_ASSERT_STRING_EQUAL(cfg->plugin_dir, dir);
	CU_ASSERT_EQUAL(cfg->ping_interval, 25000);
	CU_ASSERT_EQUAL(cfg->idle_timeout, 60000);
	/* workers = auto: one per online CPU, where the built-in is 1 */
	CU_ASSERT_NOT_EQUAL(cfg->workers_line, 0);
	CU_ASSERT_EQUAL(cfg->workers, (uint64_t)(sysconf(_SC_NPROCESSORS_ONLN)
	    > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS :
	    sysconf(_SC_NPROCESSORS_ONLN)));
	CU_ASSERT_EQUAL_FATAL(cfg->nplugins, 2);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].name, "connection_established");
	CU_ASSERT_EQUAL(cfg->plugins[0].enabled, 1);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[0].path,
	    "/usr/lib/x86_64-linux-gnu/wsplugd/connection_established.so");
	CU_ASSERT_STRING_EQUAL(cfg->plugins[1].name, "ping");
	CU_ASSERT_EQUAL(cfg->plugins[1].enabled, 1);
	CU_ASSERT_STRING_EQUAL(cfg->plugins[1].path,
	    "/usr/lib/x86_64-linux-gnu/wsplugd/ping.so");
	reset();
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "defaults", test_defaults },
		{ "every key", test_every_key },
		{ "[deflate]", test_deflate_section },
		{ "config_parse_duration", test_parse_duration },
		{ "config_parse_size", test_parse_size },
		{ "config_parse_bool", test_parse_bool },
		{ "config_parse_uint", test_parse_uint },
		{ "config_parse_listen", test_parse_listen },
		{ "each kind of error", test_error_kinds },
		{ "listen, origins, subprotocols", test_value_lists },
		{ "many errors in one pass", test_multiple_errors },
		{ "duplicate keys", test_duplicates },
		{ "plugin sections", test_plugin_sections },
		{ "relative paths", test_relative_paths },
		{ "idle_timeout against ping_interval",
		    test_keepalive_cross_check },
		{ "comments", test_comments },
		{ "continuation lines", test_continuation_lines },
		{ "long lines", test_long_lines },
		{ "BOM and CRLF", test_bom_and_crlf },
		{ "[log] target = journal", test_log_journal },
		{ "[admin] listen", test_admin_listen },
		{ "[bus]", test_bus_section },
		{ "[tls] and listen ... tls", test_tls_keys },
		{ "shipped wsplugd.conf.in", test_shipped_config },
	};
	return suite_run("config", tests, nitems(tests));
}
