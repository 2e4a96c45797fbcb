/*
 * connection_established: greets every client on open with
 * {"type":"connection_established","connectionId":"…","timestamp":<unix ms>}.
 *
 * The connection id is the registry's, the same one every log line about
 * this connection carries, so a front end can quote it in a bug report and
 * the operator can grep for it.
 *
 * The greeting is one object built at load and updated in place for each
 * connection, as the ping plugin does with its pong.
 */
#include <stdlib.h>

#include <wsplugd/plugin.h>

struct greeter {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	json_t *msg;
	json_t *id, *timestamp; /* msg's, borrowed */
};

static void greeter_unload(void *);

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
	g->msg = json_pack("{s:s, s:s, s:I}", "type", "connection_established",
	    "connectionId", "", "timestamp", (json_int_t)0);
	if (g->msg == NULL) {
		greeter_unload(g);
		return -1;
	}
	g->id = json_object_get(g->msg, "connectionId");
	g->timestamp = json_object_get(g->msg, "timestamp");
	*state_r = g;
	return 0;
}

static void
greeter_unload(void *state)
{
	struct greeter *g = state;

	json_decref(g->msg);
	free(g);
}

static void
greeter_open(void *state, struct wsp_conn *c)
{
	struct greeter *g = state;

	/* Ids are 32 hex digits: no UTF-8 check needed. */
	if (json_string_set_nocheck(g->id, g->host->conn_id(c)) == -1)
		return;
	json_integer_set(g->timestamp, (json_int_t)g->host->now_ms(g->ctx));
	g->host->send_json(c, g->msg);
}

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "connection_established",
	.version = PACKAGE_VERSION,
	.load = greeter_load,
	.unload = greeter_unload,
	.open = greeter_open,
};
