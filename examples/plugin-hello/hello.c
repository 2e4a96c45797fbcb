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
 * A client may also be named before it is upgraded, in its URL: with
 * /ws?name=Ada the upgrade callback makes "Ada" the connection's user (as
 * the logs and /connections show it) and the default name of its hellos;
 * a name over 32 bytes is refused with 400.  Real plugins check tokens
 * there (see the jwt plugin).
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
	const char *user = h->host->conn_user(c);
	char text[128];
	json_t *reply;

	if (name == NULL)
		name = user != NULL ? user : "world";
	snprintf(text, sizeof(text), "%s, %.40s!", h->greeting, name);
	reply = json_pack("{s:s, s:s, s:s}", "type", "hello", "greeting", text,
	    "connectionId", h->host->conn_id(c));
	if (reply == NULL)
		return;
	h->host->send_json(c, reply);
	json_decref(reply);
}

/* Before the 101: ?name=NAME in the query names the connection's user. */
static int
hello_upgrade(void *state, struct wsp_conn *c,
    const struct wsp_upgrade_request *req, const char **reason_r)
{
	struct hello *h = state;
	const char *p = strstr(req->query, "name=");
	char name[33];
	size_t n;

	if (p == NULL || (p != req->query && p[-1] != '&'))
		return WSP_UPGRADE_ACCEPT;
	p += 5;
	if ((n = strcspn(p, "&")) >= sizeof(name)) {
		*reason_r = "name too long";
		return 400;
	}
	memcpy(name, p, n);
	name[n] = '\0';
	if (n > 0)
		h->host->set_user(c, name);
	return WSP_UPGRADE_ACCEPT;
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
	.upgrade = hello_upgrade,
};
