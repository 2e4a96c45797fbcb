/*
 * echo: returns messages to their sender.
 *
 * By default it handles {"type":"echo",…} and replies with the same object.
 * With `catch_all = yes` in its section it also claims "*": every message
 * no other plugin claims, text or binary, comes back verbatim without being
 * parsed.  With echo alone loaded that makes wsplugd a plain RFC 6455 echo
 * server, the mode in which conformance suites grade a server.
 */
#include <wsplugd/plugin.h>

struct echo {
	const struct wsp_host *host;
};

static struct echo echo_state;

static int
echo_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	int catch_all;

	if (host->cfg_bool(sec, "catch_all", 0, &catch_all) == -1)
		return -1;
	if (catch_all && host->claim(ctx, "*") == -1)
		return -1;
	echo_state.host = host;
	*state_r = &echo_state;
	return 0;
}

static void
echo_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct echo *e = state;

	if (m->binary)
		e->host->send_binary(c, m->data, m->len);
	else
		e->host->send_text(c, m->data, m->len);
}

static const char *const echo_types[] = { "echo", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "echo",
	.version = PACKAGE_VERSION,
	.types = echo_types,
	.load = echo_load,
	.message = echo_message,
};
