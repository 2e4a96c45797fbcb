/*
 * ping: answers {"type":"ping"} with {"type":"pong","timestamp":<unix ms>}.
 *
 * This is the application-level heartbeat browsers send because they
 * cannot send protocol pings.  The ping's "id", when present, is echoed so
 * a client can match replies and measure round trips.
 *
 * Every client sends these, so the reply is written as text: the daemon
 * hands over the id as the JSON text it read, which is pasted in as is,
 * and no JSON tree is built for either message.  Replies with a short id
 * are formatted on the stack; only a huge id costs an allocation.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wsplugd/plugin.h>

/* {"type":"pong","timestamp":-9223372036854775808,"id":} */
#define PONG_OVERHEAD 64

struct ping {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
};

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
	*state_r = p;
	return 0;
}

static void
ping_unload(void *state)
{
	free(state);
}

static void
ping_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct ping *p = state;
	char stack[256], *out = stack;
	size_t need = PONG_OVERHEAD + m->id_len, n;
	int64_t now = p->host->now_ms(p->ctx);

	if (need > sizeof(stack) && (out = malloc(need)) == NULL)
		return;
	if (m->id == NULL)
		n = (size_t)snprintf(out, need, "{\"type\":\"pong\","
		    "\"timestamp\":%" PRId64 "}", now);
	else {
		n = (size_t)snprintf(out, need, "{\"type\":\"pong\","
		    "\"timestamp\":%" PRId64 ",\"id\":", now);
		memcpy(out + n, m->id, m->id_len);
		n += m->id_len;
		out[n++] = '}';
	}
	p->host->send_text(c, out, n);
	if (out != stack)
		free(out);
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
