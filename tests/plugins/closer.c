/*
 * closer: a test plugin that closes the connection that asks it to, with
 * the code and reason asked for: {"type":"close_me","code":1013,
 * "reason":"{\"retry_after_ms\":1500}"}.  It stands in for a server that
 * sheds load or restarts with a retry hint in its close frame, so that the
 * client package's tests can check the hint is obeyed over a real close
 * handshake.  A code the host refuses is answered with an error.
 */
#include <wsplugd/plugin.h>

static const struct wsp_host *host;

static int
closer_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *h,
    struct wsp_section *sec, void **state_r)
{
	(void)ctx;
	(void)sec;
	host = h;
	*state_r = &host;
	return 0;
}

static void
closer_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	json_t *j = host->message_json(m);
	json_t *code = json_object_get(j, "code");
	const char *reason = json_string_value(json_object_get(j, "reason"));
	json_int_t n = json_integer_value(code);
	json_t *reply;

	(void)state;
	if (json_is_integer(code) && n >= 1000 && n <= 4999 &&
	    host->close(c, (uint16_t)n, reason != NULL ? reason : "") == 0)
		return;
	reply = json_pack("{s:s, s:s}", "type", "error", "code",
	    "bad_close_code");
	host->send_json(c, reply);
	json_decref(reply);
}

static const char *const closer_types[] = { "close_me", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "closer",
	.version = "1",
	.types = closer_types,
	.load = closer_load,
	.message = closer_message,
};
