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
 * are formatted on the stack; only a huge id costs an allocation.  The
 * timestamp is written by hand: snprintf cost about 950 instructions a
 * reply, more than all the rest of the plugin.  And it is written once a
 * tick of the host's clock, not once a reply: the clock moves every few
 * milliseconds, a busy daemon answers thousands of pings between, and
 * the digits were a tenth of a ping's cost in the daemon.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <wsplugd/plugin.h>

/* {"type":"pong","timestamp":-9223372036854775808,"id":} */
#define PONG_OVERHEAD 64
#define PONG_HEAD "{\"type\":\"pong\",\"timestamp\":"

struct ping {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	int64_t ts;      /* the time ts_text holds */
	size_t ts_len;   /* 0: none yet */
	char ts_text[20];
};

/* v in decimal at out; returns the bytes written (at most 20). */
static size_t
put_int64(char *out, int64_t v)
{
	char tmp[20];
	uint64_t u;
	size_t n = 0, len = 0;

	if (v < 0) {
		out[len++] = '-';
		/* INT64_MIN has no positive int64_t: negate as unsigned */
		u = (uint64_t)0 - (uint64_t)v;
	} else
		u = (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	while (n > 0)
		out[len++] = tmp[--n];
	return len;
}

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
	memcpy(out, PONG_HEAD, sizeof(PONG_HEAD) - 1);
	n = sizeof(PONG_HEAD) - 1;
	if (p->ts_len == 0 || now != p->ts) {
		p->ts_len = put_int64(p->ts_text, now);
		p->ts = now;
	}
	/* All of ts_text, a fixed size the compiler copies in two moves
	 * rather than a call; out has room (PONG_OVERHEAD), and what is
	 * past ts_len is written over next or never sent. */
	memcpy(out + n, p->ts_text, sizeof(p->ts_text));
	n += p->ts_len;
	if (m->id != NULL) {
		memcpy(out + n, ",\"id\":", 6);
		n += 6;
		memcpy(out + n, m->id, m->id_len);
		n += m->id_len;
	}
	out[n++] = '}';
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
