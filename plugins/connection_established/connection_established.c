/*
 * connection_established: greets every client on open with
 * {"type":"connection_established","connectionId":"…","timestamp":<unix ms>}.
 *
 * The connection id is the registry's, the same one every log line about
 * this connection carries, so a front end can quote it in a bug report and
 * the operator can grep for it.
 *
 * The greeting is written as text on the stack: the id is 32 hex digits
 * and the timestamp a number, so there is nothing to escape, and no JSON
 * tree is built or serialized per connection, as ping does with its pong.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <wsplugd/plugin.h>

struct greeter {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
};

static int
greeter_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	struct greeter *g;

	(void)sec;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return -1;
	g->host = host;
	g->ctx = ctx;
	*state_r = g;
	return 0;
}

static void
greeter_unload(void *state)
{
	free(state);
}

static void
greeter_open(void *state, struct wsp_conn *c)
{
	struct greeter *g = state;
	char text[128];
	int n;

	n = snprintf(text, sizeof(text), "{\"type\":\"connection_established\","
	    "\"connectionId\":\"%s\",\"timestamp\":%" PRId64 "}",
	    g->host->conn_id(c), g->host->now_ms(g->ctx));
	if (n > 0 && (size_t)n < sizeof(text))
		g->host->send_text(c, text, (size_t)n);
}

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "connection_established",
	.version = PACKAGE_VERSION,
	.load = greeter_load,
	.unload = greeter_unload,
	.open = greeter_open,
};
