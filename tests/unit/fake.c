/*
 * fake.c: the in-memory server of fake.h, shared by the unit tests and the
 * fuzzers.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "fake.h"

/* Each plugin's load state: the loader keeps it on its stack for one
 * load, a test keeps a plugin loading for the whole test. */
#define FAKE_MAX_PLUGINS 8

struct wsp_config fake_cfg;
struct wsp_server fake_srv;
static struct plugin_load fake_loads[FAKE_MAX_PLUGINS];
static size_t fake_nloads;

int
fake_init(void)
{
	log_init(WSP_LOG_ERROR, LOG_FORMAT_LOGFMT, LOG_TARGET_STDERR, NULL,
	    "test");
	fake_cfg.max_output_buffer = 1 << 20;
	fake_cfg.max_buffer_memory = 64 << 20;
	fake_cfg.max_message_size = 1 << 20;
	fake_cfg.slow_callback = 1000;
	fake_cfg.handshake_timeout = 10000;
	fake_cfg.ping_interval = 25000;
	return server_setup(&fake_srv, &fake_cfg);
}

void
fake_fini(void)
{
	server_free(&fake_srv);
	log_fini();
}

struct plugin_set *
fake_set_new(void)
{
	struct plugin_set *set = plugin_set_new();

	fake_srv.plugins = set;
	fake_nloads = 0; /* the previous set's plugins are done loading */
	return set;
}

struct wsp_plugin_ctx *
fake_plugin(struct plugin_set *set, const struct wsp_section *sec,
    const struct wsp_plugin *desc, struct wsp_errors *errs)
{
	struct plugin_load *ld;
	struct wsp_plugin_ctx *ctx;

	if (fake_nloads == FAKE_MAX_PLUGINS)
		return NULL;
	ld = &fake_loads[fake_nloads++];
	ld->set = set;
	ld->sec = sec;
	ld->errs = errs;
	if ((ctx = plugin_ctx_builtin(&fake_srv, ld, desc, NULL)) != NULL)
		ctx->state = ctx;
	return ctx;
}

struct wsp_conn *
fake_conn_new(void)
{
	struct wsp_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->out = evbuffer_new()) == NULL) {
		free(c);
		return NULL;
	}
	c->srv = &fake_srv;
	c->fd = -1;
	c->state = CONN_OPEN;
	c->in_read = 1; /* output stays queued for the caller */
	strcpy(c->id, "00112233445566778899aabbccddeeff");
	return c;
}

void
fake_conn_free(struct wsp_conn *c)
{
	dq_remove(c);
	evbuffer_free(c->out);
	free(c->close_reason); /* conn_close made it */
	attrs_free(c);
	free(c);
}
