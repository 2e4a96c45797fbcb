/*
 * connection_established: greets every client on open with
 * {"type":"connection_established","connectionId":"…","timestamp":<unix ms>}.
 *
 * The connection id is the registry's, the same one every log line about
 * this connection carries, so a front end can quote it in a bug report and
 * the operator can grep for it.
 */
#include <wsplugd/plugin.h>

struct greeter {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
};

static struct greeter greeter_state;

static int
greeter_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	(void)sec;
	greeter_state.host = host;
	greeter_state.ctx = ctx;
	*state_r = &greeter_state;
	return 0;
}

static void
greeter_open(void *state, struct wsp_conn *c)
{
	struct greeter *g = state;
	json_t *msg;

	msg = json_pack("{s:s, s:s, s:I}", "type", "connection_established",
	    "connectionId", g->host->conn_id(c), "timestamp",
	    (json_int_t)g->host->now_ms(g->ctx));
	if (msg == NULL)
		return;
	g->host->send_json(c, msg);
	json_decref(msg);
}

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "connection_established",
	.version = PACKAGE_VERSION,
	.load = greeter_load,
	.open = greeter_open,
};
