/*
 * variant: a test plugin built twice from this file, with VARIANT "a" and
 * "b", so a test can replace the .so at one path and see which build
 * answers {"type":"variant"}.  Each build also counts the messages it
 * handled in a daemon-owned attribute, to show attributes survive a
 * replacement.
 */
#include <wsplugd/plugin.h>

#ifndef VARIANT
#error "build with -DVARIANT='\"a\"' or '\"b\"'"
#endif

static const struct wsp_host *host;
static struct wsp_plugin_ctx *self;

static int
variant_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *h,
    struct wsp_section *sec, void **state_r)
{
	(void)sec;
	host = h;
	self = ctx;
	*state_r = &host;
	return 0;
}

static void
variant_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	json_t *seen = host->attr_get(self, c, "seen"), *n, *reply;
	json_int_t count = json_integer_value(seen) + 1;

	(void)state;
	(void)m;
	n = json_integer(count);
	host->attr_set(self, c, "seen", n);
	json_decref(n);
	reply = json_pack("{s:s, s:s, s:I}", "type", "variant", "build",
	    VARIANT, "seen", count);
	host->send_json(c, reply);
	json_decref(reply);
}

static const char *const variant_types[] = { "variant", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "variant",
	.version = VARIANT,
	.types = variant_types,
	.load = variant_load,
	.message = variant_message,
};
