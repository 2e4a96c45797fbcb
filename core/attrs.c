/*
 * attrs.c: per-connection attributes, namespaced by plugin.
 *
 * A connection's attributes are one JSON object, { plugin: { key: value } },
 * made on first use.  They belong to the daemon rather than to the plugin
 * that set them: values are deep copies, so the daemon can free them
 * without the plugin, when the connection ends or when a reload drops the
 * plugin whose namespace they are in.
 */
#include "wsplugd.h"

int
attrs_set(struct wsp_conn *c, const char *ns_name, const char *key,
    const json_t *value)
{
	json_t *ns, *copy;

	if (c->attrs == NULL) {
		if (value == NULL)
			return 0;
		if ((c->attrs = json_object()) == NULL)
			return -1;
	}
	ns = json_object_get(c->attrs, ns_name);
	if (value == NULL) {
		if (ns != NULL)
			json_object_del(ns, key);
		return 0;
	}
	if (ns == NULL) {
		if ((ns = json_object()) == NULL ||
		    json_object_set_new(c->attrs, ns_name, ns) == -1)
			return -1;
	}
	/* json_deep_copy takes a non-const pointer but does not modify. */
	if ((copy = json_deep_copy((json_t *)(uintptr_t)value)) == NULL)
		return -1;
	return json_object_set_new(ns, key, copy);
}

json_t *
attrs_get(const struct wsp_conn *c, const char *ns_name, const char *key)
{
	json_t *ns;

	if (c->attrs == NULL)
		return NULL;
	if ((ns = json_object_get(c->attrs, ns_name)) == NULL)
		return NULL;
	return json_object_get(ns, key);
}

void
attrs_release(struct registry *reg, const char *ns_name)
{
	struct wsp_conn *c;

	TAILQ_FOREACH(c, &reg->conns, link)
		if (c->attrs != NULL)
			json_object_del(c->attrs, ns_name);
}

void
attrs_free(struct wsp_conn *c)
{
	if (c->attrs != NULL)
		json_decref(c->attrs);
	c->attrs = NULL;
}
