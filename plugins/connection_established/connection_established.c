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
 * tree is built or serialized per connection, as ping does with its pong,
 * nor any format string parsed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	static const char head[] =
	    "{\"type\":\"connection_established\",\"connectionId\":\"";
	static const char mid[] = "\",\"timestamp\":";
	struct greeter *g = state;
	const char *id = g->host->conn_id(c);
	int64_t t = g->host->now_ms(g->ctx);
	uint64_t u = t < 0 ? 0 - (uint64_t)t : (uint64_t)t;
	char text[sizeof(head) + 64 + sizeof(mid) + 24], digits[24];
	char *d = digits + sizeof(digits);
	size_t idn = strlen(id), n;

	if (idn > 64) /* the registry's are 32 */
		return;
	/* Pieces copied, the number's digits by hand: snprintf was a
	 * thousand instructions of every handshake. */
	do
		*--d = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (t < 0)
		*--d = '-';
	memcpy(text, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	memcpy(text + n, id, idn);
	n += idn;
	memcpy(text + n, mid, sizeof(mid) - 1);
	n += sizeof(mid) - 1;
	memcpy(text + n, d, (size_t)(digits + sizeof(digits) - d));
	n += (size_t)(digits + sizeof(digits) - d);
	text[n++] = '}';
	g->host->send_text(c, text, n);
}

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "connection_established",
	.version = PACKAGE_VERSION,
	.load = greeter_load,
	.unload = greeter_unload,
	.open = greeter_open,
};
