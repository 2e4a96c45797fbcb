/*
 * hello: the smallest useful wsplugd plugin, built out of tree.
 *
 * It answers {"type":"hello","name":"Ada"} with
 * {"type":"hello","greeting":"Hello, Ada!","connectionId":"…"}, using a
 * greeting configurable in its section:
 *
 *   [plugin:hello]
 *   greeting = Hello
 *
 * with hello.so installed in the daemon's plugin directory,
 * `pkg-config --variable=plugindir wsplugd-plugin` (or named with a
 * path = key in the section).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wsplugd/plugin.h>

struct hello {
	const struct wsp_host *host;
	char *greeting;
};

static int
hello_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	struct hello *h;
	const char *greeting;

	(void)ctx;
	if (host->cfg_string(sec, "greeting", "Hello", &greeting) == -1)
		return -1;
	if (strlen(greeting) > 64) {
		host->cfg_error(sec, "greeting", "at most 64 bytes");
		return -1;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -1;
	h->host = host;
	/* Section values are only valid during load: keep a copy. */
	if ((h->greeting = strdup(greeting)) == NULL) {
		free(h);
		return -1;
	}
	*state_r = h;
	return 0;
}

static void
hello_unload(void *state)
{
	struct hello *h = state;

	free(h->greeting);
	free(h);
}

static void
hello_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct hello *h = state;
	/* The tree is built only when asked for: once per message. */
	const char *name = json_string_value(json_object_get(
	    h->host->message_json(m), "name"));
	char text[128];
	json_t *reply;

	snprintf(text, sizeof(text), "%s, %.40s!", h->greeting,
	    name != NULL ? name : "world");
	reply = json_pack("{s:s, s:s, s:s}", "type", "hello", "greeting", text,
	    "connectionId", h->host->conn_id(c));
	if (reply == NULL)
		return;
	h->host->send_json(c, reply);
	json_decref(reply);
}

static const char *const hello_types[] = { "hello", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "hello",
	.version = "1.0",
	.types = hello_types,
	.load = hello_load,
	.unload = hello_unload,
	.message = hello_message,
};
