/*
 * fuzz_config.c: config_load (core/config.c, core/config_file.c,
 * core/errors.c, inih) on any file.
 *
 * The input is written to one file per process,
 * /tmp/wsplugd-fuzz-config-PID.conf, removed at exit, and loaded with the
 * default plugin directory /usr/lib/wsplugd/plugins.
 *
 * Oracles:
 *  - exactly one of: a config and no error, or NULL and at least one error;
 *  - every error is "FILE:LINE: message" or "FILE: message", FILE being the
 *    path given, LINE at most the number of lines in the file, message
 *    non-empty and without a newline;
 *  - a config respects its own documented ranges: at least one listen
 *    address (each with text and a family), a path starting with '/',
 *    numbers within the bounds config.c enforces, idle_timeout past
 *    ping_interval when both are on, a log file only for the file target,
 *    every enabled plugin with a name and a resolved path;
 *  - loading the same file twice gives the same answer and the same
 *    errors (inih's process-global knobs are set on every call);
 *  - nothing leaks: LeakSanitizer runs after every input.
 */
#include <sys/socket.h>

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "wsplugd.h"
#include "fuzz.h"

#define PLUGIN_DIR "/usr/lib/wsplugd/plugins"

static char path[64];

static void
remove_file(void)
{
	unlink(path);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(path, sizeof(path), "/tmp/wsplugd-fuzz-config-%ld.conf",
	    (long)getpid());
	atexit(remove_file);
	return 0;
}

static void
write_file(const uint8_t *data, size_t size)
{
	size_t off = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd != -1, "cannot create %s", path);
	while (off < size) {
		n = write(fd, data + off, size - off);
		CHECK(n > 0, "cannot write %s", path);
		off += (size_t)n;
	}
	close(fd);
}

static void
check_errors(const struct wsp_errors *e, size_t lines)
{
	size_t i, plen = strlen(path);
	const char *m, *q;
	unsigned long line;
	char *end;

	for (i = 0; i < e->n; i++) {
		m = e->msg[i];
		CHECK(m != NULL && strncmp(m, path, plen) == 0 &&
		    m[plen] == ':', "error %zu does not begin with the file "
		    "name and ':': %s", i, m);
		q = m + plen + 1;
		if (*q >= '0' && *q <= '9') {
			line = strtoul(q, &end, 10);
			CHECK(*end == ':' && line >= 1 && line <= lines,
			    "error %zu names line %lu of %zu: %s", i, line,
			    lines, m);
			q = end + 1;
		}
		CHECK(q[0] == ' ' && q[1] != '\0', "error %zu has no message: "
		    "%s", i, m);
		CHECK(strchr(m, '\n') == NULL, "error %zu spans lines: %s", i,
		    m);
	}
}

static void
check_config(const struct wsp_config *c)
{
	size_t i;

	CHECK(c->file != NULL && strcmp(c->file, path) == 0, "file");
	CHECK(c->nlisten >= 1 && c->listen != NULL, "no listen address");
	for (i = 0; i < c->nlisten; i++)
		CHECK(c->listen[i].text != NULL &&
		    (c->listen[i].ss.ss_family == AF_INET ||
		    c->listen[i].ss.ss_family == AF_INET6) &&
		    c->listen[i].sslen > 0, "listen %zu", i);
	CHECK(c->path != NULL && c->path[0] == '/' && strlen(c->path) <= 256,
	    "path");
	for (i = 0; i < c->norigins; i++)
		CHECK(c->origins[i] != NULL && c->origins[i][0] != '\0',
		    "origin %zu", i);
	for (i = 0; i < c->nsubprotocols; i++)
		CHECK(c->subprotocols[i] != NULL &&
		    c->subprotocols[i][0] != '\0', "subprotocol %zu", i);
	CHECK(c->max_connections >= 1 && c->max_connections <= 1000000,
	    "max_connections %llu", (unsigned long long)c->max_connections);
	CHECK(c->max_connections_per_ip <= 1000000, "max_connections_per_ip");
	CHECK(c->max_message_size >= 1 && c->max_message_size <= 1ULL << 30,
	    "max_message_size");
	CHECK(c->max_header_size >= 1024 && c->max_header_size <= 65536,
	    "max_header_size");
	CHECK(c->max_output_buffer >= 4096 &&
	    c->max_output_buffer <= 4ULL << 30, "max_output_buffer");
	CHECK(c->handshake_timeout >= 100 &&
	    c->handshake_timeout <= 3600000, "handshake_timeout");
	CHECK(c->shutdown_timeout <= 3600000, "shutdown_timeout");
	CHECK(c->slow_callback >= 1 && c->slow_callback <= 3600000,
	    "slow_callback");
	CHECK(c->ping_interval == 0 || (c->ping_interval >= 100 &&
	    c->ping_interval <= 86400000), "ping_interval");
	CHECK(c->sweep_interval >= 100 && c->sweep_interval <= 86400000,
	    "sweep_interval");
	CHECK(c->idle_timeout == 0 || (c->idle_timeout >= 100 &&
	    c->idle_timeout <= 7 * 86400000ULL), "idle_timeout");
	CHECK(c->ping_interval == 0 || c->idle_timeout == 0 ||
	    c->idle_timeout > c->ping_interval, "idle_timeout %llu <= "
	    "ping_interval %llu", (unsigned long long)c->idle_timeout,
	    (unsigned long long)c->ping_interval);
	CHECK(c->log_level >= WSP_LOG_DEBUG && c->log_level <= WSP_LOG_ERROR,
	    "log_level");
	CHECK((c->log_target == LOG_TARGET_FILE) == (c->log_file != NULL),
	    "log file without the file target, or the reverse");
	if (c->log_file != NULL)
		CHECK(c->log_file[0] == '/' && c->log_file[1] != '\0',
		    "log file %s", c->log_file);
	CHECK(c->plugin_dir != NULL && c->plugin_dir[0] == '/', "plugin dir");
	for (i = 0; i < c->nplugins; i++) {
		const struct wsp_section *s = &c->plugins[i];
		size_t j;

		CHECK(s->name != NULL && s->name[0] != '\0' &&
		    strlen(s->name) <= 64, "plugin %zu name", i);
		CHECK(s->file != NULL && strcmp(s->file, path) == 0,
		    "plugin %zu file", i);
		CHECK(s->path != NULL && s->path[0] == '/', "plugin %s has no "
		    "absolute path", s->name);
		CHECK(s->enabled == 0 || s->enabled == 1, "enabled");
		CHECK(s->line >= 1, "plugin line");
		for (j = 0; j < s->nkv; j++)
			CHECK(s->kv[j].key != NULL && s->kv[j].value != NULL &&
			    s->kv[j].line >= s->line, "plugin key %zu", j);
		for (j = 0; j < i; j++)
			CHECK(strcmp(c->plugins[j].name, s->name) != 0,
			    "plugin %s twice", s->name);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsp_errors e1 = { 0 }, e2 = { 0 };
	struct wsp_config *c1, *c2;
	size_t lines = 1, i;

	for (i = 0; i < size; i++)
		if (data[i] == '\n')
			lines++;
	write_file(data, size);

	c1 = config_load(path, PLUGIN_DIR, &e1);
	CHECK((c1 != NULL) == (e1.n == 0), "config %p with %zu errors",
	    (void *)c1, e1.n);
	check_errors(&e1, lines);
	if (c1 != NULL)
		check_config(c1);

	/* again: same answer, same words */
	c2 = config_load(path, PLUGIN_DIR, &e2);
	CHECK((c1 == NULL) == (c2 == NULL) && e1.n == e2.n, "second load "
	    "differs: %zu errors, then %zu", e1.n, e2.n);
	for (i = 0; i < e1.n; i++)
		CHECK(strcmp(e1.msg[i], e2.msg[i]) == 0, "error %zu differs: "
		    "%s / %s", i, e1.msg[i], e2.msg[i]);

	config_free(c1);
	config_free(c2);
	errors_clear(&e1);
	errors_clear(&e2);
	return 0;
}
