/*
 * ping: answers {"type":"ping"} with {"type":"pong","timestamp":<unix ms>}.
 *
 * This is the application-level heartbeat browsers send because they
 * cannot send protocol pings.  The ping's "id", when present, is echoed so
 * a client can match replies and measure round trips.
 */
#include <wsplugd/plugin.h>

struct ping {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
};

static struct ping ping_state;

static int
ping_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	(void)sec;
	ping_state.host = host;
	ping_state.ctx = ctx;
	*state_r = &ping_state;
	return 0;
}

static void
ping_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct ping *p = state;
	json_t *reply, *id;

	reply = json_pack("{s:s, s:I}", "type", "pong", "timestamp",
	    (json_int_t)p->host->now_ms(p->ctx));
	if (reply == NULL)
		return;
	if ((id = json_object_get(m->json, "id")) != NULL)
		json_object_set(reply, "id", id);
	p->host->send_json(c, reply);
	json_decref(reply);
	p->host->log(p->ctx, WSP_LOG_DEBUG, c, "pong sent");
}

static const char *const ping_types[] = { "ping", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "ping",
	.version = PACKAGE_VERSION,
	.types = ping_types,
	.load = ping_load,
	.message = ping_message,
};
