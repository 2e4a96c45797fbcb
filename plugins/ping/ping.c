/*
 * ping: answers {"type":"ping"} with {"type":"pong","timestamp":<unix ms>}.
 *
 * This is the application-level heartbeat browsers send because they
 * cannot send protocol pings.  The ping's "id", when present, is echoed so
 * a client can match replies and measure round trips.
 *
 * Every client sends these, so the reply is one object built at load and
 * updated in place: no allocation and no format parsing per ping.  The
 * daemon is single-threaded, and send_json serializes before it returns.
 */
#include <stdlib.h>

#include <wsplugd/plugin.h>

struct ping {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	json_t *reply;     /* {"type":"pong","timestamp":…[,"id":…]} */
	json_t *timestamp; /* the reply's, borrowed */
};

static void ping_unload(void *);

static int
ping_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	struct ping *p;

	(void)sec;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	p->host = host;
	p->ctx = ctx;
	p->reply = json_pack("{s:s, s:I}", "type", "pong", "timestamp",
	    (json_int_t)0);
	if (p->reply == NULL) {
		ping_unload(p);
		return -1;
	}
	p->timestamp = json_object_get(p->reply, "timestamp");
	*state_r = p;
	return 0;
}

static void
ping_unload(void *state)
{
	struct ping *p = state;

	json_decref(p->reply);
	free(p);
}

static void
ping_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct ping *p = state;
	json_t *id;

	json_integer_set(p->timestamp, (json_int_t)p->host->now_ms(p->ctx));
	/* The id stays in the reply until the next ping without one: a
	 * reference to a value, not to the message it came from. */
	if ((id = json_object_get(m->json, "id")) != NULL)
		json_object_set(p->reply, "id", id);
	else
		json_object_del(p->reply, "id");
	p->host->send_json(c, p->reply);
	p->host->log(p->ctx, WSP_LOG_DEBUG, c, "pong sent");
}

static const char *const ping_types[] = { "ping", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "ping",
	.version = PACKAGE_VERSION,
	.types = ping_types,
	.load = ping_load,
	.unload = ping_unload,
	.message = ping_message,
};
