/*
 * host.c: the function table handed to plugins.
 *
 * This is the whole of what a plugin may ask of the daemon.  Every entry
 * checks what a plugin could get wrong (invalid UTF-8 in a text frame, a
 * close code that may not go on the wire) and refuses
 * it with -1 and a log line naming the plugin, rather than letting a buggy
 * plugin make the server violate RFC 6455.
 *
 * The table is handed to plugin.c by server.c; it calls only down, into
 * conn.c (sends and closes), timers.c and attrs.c.  The one entry it leaves
 * empty is claim, which plugin.c answers because a claim is part of
 * loading.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

/* The serialization buffer is kept between messages up to this size. */
#define JBUF_KEEP (64 * 1024)

static int
h_send_text(struct wsp_conn *c, const char *data, size_t len)
{
	if (utf8_validate(UTF8_ACCEPT, (const uint8_t *)data, len) !=
	    UTF8_ACCEPT) {
		log_msg(WSP_LOG_WARN, "plugin.error",
		    "send_text with invalid UTF-8 refused (conn %s)", c->id);
		return -1;
	}
	return conn_send(c, WS_OP_TEXT, data, len);
}

static int
h_send_binary(struct wsp_conn *c, const void *data, size_t len)
{
	return conn_send(c, WS_OP_BINARY, data, len);
}

int
host_send_json(struct wsp_conn *c, const json_t *msg)
{
	struct outbuf *b = &c->srv->jbuf;
	int rc;

	/* A message is an object or an array, as for json_dumps without
	 * JSON_ENCODE_ANY.  jansson's strings are valid UTF-8, so the text
	 * needs no second validation. */
	if (!json_is_object(msg) && !json_is_array(msg))
		return -1;
	b->len = 0;
	rc = json_write(b, msg);
	if (rc == 0)
		rc = conn_send(c, WS_OP_TEXT, b->p, b->len);
	/* One huge message should not keep its buffer for good. */
	if (b->cap > JBUF_KEEP) {
		free(b->p);
		memset(b, 0, sizeof(*b));
	}
	return rc;
}

static int
h_close(struct wsp_conn *c, uint16_t code, const char *reason)
{
	if (!ws_close_code_valid(code)) {
		log_msg(WSP_LOG_WARN, "plugin.error",
		    "close with code %u refused: not valid on the wire "
		    "(conn %s)", code, c->id);
		return -1;
	}
	if (reason != NULL && utf8_validate(UTF8_ACCEPT,
	    (const uint8_t *)reason, strlen(reason)) != UTF8_ACCEPT)
		reason = NULL;
	return conn_close(c, code, reason);
}

static void
h_conn_info(const struct wsp_conn *c, struct wsp_conn_info *info)
{
	conn_info(c, info);
}

static const char *
h_conn_id(const struct wsp_conn *c)
{
	return c->id;
}

static int
h_foreach_conn(struct wsp_plugin_ctx *ctx,
    int (*fn)(struct wsp_conn *, void *), void *arg)
{
	struct wsp_conn *c, *next;
	int rc;

	TAILQ_FOREACH_SAFE(c, &ctx->srv->reg.conns, link, next) {
		if (c->state != CONN_OPEN)
			continue;
		if ((rc = fn(c, arg)) != 0)
			return rc;
	}
	return 0;
}

static size_t
h_conn_count(struct wsp_plugin_ctx *ctx)
{
	return ctx->srv->reg.count;
}

static int
h_broadcast_json(struct wsp_plugin_ctx *ctx, const json_t *msg,
    int (*filter)(struct wsp_conn *, void *), void *arg)
{
	struct wsp_conn *c, *next;
	struct outbuf text = { NULL, 0, 0 };
	int sent = 0;

	/* Serialized once for everyone: its own buffer, since a filter may
	 * send JSON through the shared one. */
	if ((!json_is_object(msg) && !json_is_array(msg)) ||
	    json_write(&text, msg) == -1) {
		free(text.p);
		return -1;
	}
	TAILQ_FOREACH_SAFE(c, &ctx->srv->reg.conns, link, next) {
		if (c->state != CONN_OPEN || (filter != NULL && !filter(c, arg)))
			continue;
		if (conn_send(c, WS_OP_TEXT, text.p, text.len) == 0)
			sent++;
	}
	free(text.p);
	return sent;
}

static int
h_attr_set(struct wsp_plugin_ctx *ctx, struct wsp_conn *c, const char *key,
    const json_t *value)
{
	return attrs_set(c, ctx->name, key, value);
}

static json_t *
h_attr_get(struct wsp_plugin_ctx *ctx, const struct wsp_conn *c,
    const char *key)
{
	return attrs_get(c, ctx->name, key);
}

static int64_t
h_now_ms(struct wsp_plugin_ctx *ctx)
{
	(void)ctx;
	return clock_wall_ms();
}

/* The line itself, apart from h_log: its 1 KiB buffer and the stack
 * guard that comes with it are paid only by lines that are written. */
static void __attribute__((noinline))
h_log_line(struct wsp_plugin_ctx *ctx, enum wsp_log_level level,
    const struct wsp_conn *c, const char *fmt, va_list ap)
{
	struct log_line *l;
	char msg[1024];

	if ((l = log_begin(level, "plugin.log")) == NULL)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_str(l, "plugin", ctx->name);
	if (c != NULL)
		log_str(l, "conn", c->id);
	log_str(l, "msg", msg);
	log_end(l);
}

/* Plugins log at debug level on hot paths (the ping plugin, once a
 * pong): a level the daemon does not write returns at once. */
static void
h_log(struct wsp_plugin_ctx *ctx, enum wsp_log_level level,
    const struct wsp_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (level < WSP_LOG_DEBUG || level > WSP_LOG_ERROR)
		level = WSP_LOG_ERROR;
	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	h_log_line(ctx, level, c, fmt, ap);
	va_end(ap);
}

/* Users show in logs and /connections: valid UTF-8 without control
 * characters, and short. */
#define HOST_USER_MAX 255

static int
h_set_user(struct wsp_conn *c, const char *user)
{
	size_t n, i;
	char *copy;

	if (user == NULL) {
		free(c->user);
		c->user = NULL;
		return 0;
	}
	n = strlen(user);
	for (i = 0; i < n; i++)
		if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f)
			break;
	if (n > HOST_USER_MAX || i < n || utf8_validate(UTF8_ACCEPT,
	    (const uint8_t *)user, n) != UTF8_ACCEPT) {
		log_msg(WSP_LOG_WARN, "plugin.error", "set_user refused: not "
		    "printable UTF-8 of at most %d bytes (conn %s)",
		    HOST_USER_MAX, c->id[0] != '\0' ? c->id : c->ip);
		return -1;
	}
	if ((copy = strdup(user)) == NULL)
		return -1;
	free(c->user);
	c->user = copy;
	return 0;
}

static const char *
h_conn_user(const struct wsp_conn *c)
{
	return c->user;
}

static json_t *
h_attr_read(const struct wsp_conn *c, const char *plugin, const char *key)
{
	if (plugin == NULL || key == NULL)
		return NULL;
	return attrs_get(c, plugin, key);
}

/* The tree of a message dispatch.c lent (struct dispatch_msg): built on
 * the first call, freed by dispatch.c after the callback. */
static json_t *
h_message_json(const struct wsp_message *msg)
{
	struct dispatch_msg *d;

	if (msg == NULL)
		return NULL;
	/* The plugin holds a const view of dispatch.c's own mutable
	 * struct; memcpy drops the qualifier without a cast. */
	memcpy(&d, &msg, sizeof(d));
	if (d->magic != DISPATCH_MSG_MAGIC)
		return NULL;
	if (!d->tried && !msg->binary) {
		d->tried = 1;
		d->tree = json_read(msg->data, msg->len, NULL);
		if (d->tree != NULL && !json_is_object(d->tree)) {
			json_decref(d->tree);
			d->tree = NULL;
		}
	}
	return d->tree;
}

static struct wsp_kv *
section_find(struct wsp_section *sec, const char *key)
{
	size_t i;

	for (i = 0; i < sec->nkv; i++)
		if (strcmp(sec->kv[i].key, key) == 0) {
			sec->kv[i].used = 1;
			return &sec->kv[i];
		}
	return NULL;
}

static int
cfg_bad(struct wsp_section *sec, struct wsp_kv *kv, const char *expected)
{
	errors_add(sec->errors, sec->file, kv->line,
	    "[plugin:%s] %s: invalid value '%s' (expected %s)", sec->name,
	    kv->key, kv->value, expected);
	return -1;
}

static int
h_cfg_string(struct wsp_section *sec, const char *key, const char *def,
    const char **value_r)
{
	struct wsp_kv *kv = section_find(sec, key);

	*value_r = kv == NULL ? def : kv->value;
	return 0;
}

static int
h_cfg_bool(struct wsp_section *sec, const char *key, int def, int *value_r)
{
	struct wsp_kv *kv = section_find(sec, key);

	*value_r = def;
	if (kv == NULL)
		return 0;
	if (config_parse_bool(kv->value, value_r) == -1)
		return cfg_bad(sec, kv, "yes or no");
	return 0;
}

static int
h_cfg_uint(struct wsp_section *sec, const char *key, uint64_t def,
    uint64_t max, uint64_t *value_r)
{
	struct wsp_kv *kv = section_find(sec, key);
	char what[64];

	*value_r = def;
	if (kv == NULL)
		return 0;
	if (config_parse_uint(kv->value, max, value_r) == -1) {
		snprintf(what, sizeof(what), "an integer from 0 to %llu",
		    (unsigned long long)max);
		return cfg_bad(sec, kv, what);
	}
	return 0;
}

static int
h_cfg_duration_ms(struct wsp_section *sec, const char *key, uint64_t def,
    uint64_t *value_r)
{
	struct wsp_kv *kv = section_find(sec, key);

	*value_r = def;
	if (kv == NULL)
		return 0;
	if (config_parse_duration(kv->value, value_r) == -1)
		return cfg_bad(sec, kv, "a duration such as 500ms, 25s, 2m");
	return 0;
}

static int
h_cfg_size(struct wsp_section *sec, const char *key, uint64_t def,
    uint64_t *value_r)
{
	struct wsp_kv *kv = section_find(sec, key);

	*value_r = def;
	if (kv == NULL)
		return 0;
	if (config_parse_size(kv->value, value_r) == -1)
		return cfg_bad(sec, kv, "a size such as 512B, 64KiB, 1MiB");
	return 0;
}

static void
h_cfg_error(struct wsp_section *sec, const char *key, const char *fmt, ...)
{
	struct wsp_kv *kv = key == NULL ? NULL : section_find(sec, key);
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (kv != NULL)
		errors_add(sec->errors, sec->file, kv->line,
		    "[plugin:%s] %s: %s", sec->name, key, msg);
	else
		errors_add(sec->errors, sec->file, sec->line,
		    "[plugin:%s] %s", sec->name, msg);
}

/* ABI 3: the bus (bus.c), for connections of this process */

static int
h_bus_subscribe(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel, const struct wsp_bus_since *since,
    void (*done)(void *, struct wsp_conn *, const struct wsp_bus_subscribed *),
    void *arg)
{
	if (c == NULL || channel == NULL)
		return -1;
	return bus_subscribe(c->srv->bus, ctx, c, channel, since, done, arg);
}

static int
h_bus_unsubscribe(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel)
{
	(void)ctx;
	if (c == NULL || channel == NULL)
		return -1;
	return bus_unsubscribe(c->srv->bus, c, channel);
}

static int
h_bus_publish(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel, const char *text, size_t len, unsigned flags,
    void (*done)(void *, struct wsp_conn *, const struct wsp_bus_published *),
    void *arg)
{
	if (channel == NULL || text == NULL)
		return -1;
	if (bus_publish(ctx->srv->bus, ctx, c, channel, text, len, flags, done,
	    arg) == -1) {
		log_msg(WSP_LOG_WARN, "plugin.error", "[plugin:%s] bus_publish "
		    "refused: not a JSON object of valid UTF-8, a bad channel "
		    "name, or out of memory", ctx->name);
		return -1;
	}
	return 0;
}

static size_t
h_bus_channels(struct wsp_plugin_ctx *ctx, const struct wsp_conn *c,
    void (*fn)(const char *, void *), void *arg)
{
	if (c == NULL)
		return 0;
	return bus_channels(ctx->srv->bus, c, fn, arg);
}

static int
h_bus_presence(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const char *channel, size_t max,
    void (*done)(void *, struct wsp_conn *, const char *const *, size_t,
    uint64_t), void *arg)
{
	if (channel == NULL)
		return -1;
	return bus_presence(ctx->srv->bus, ctx, c, channel, max, done, arg);
}

const struct wsp_host wsp_host_table = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.size = sizeof(struct wsp_host),
	.claim = NULL, /* answered by plugin.c, which loads */
	.send_text = h_send_text,
	.send_binary = h_send_binary,
	.send_json = host_send_json,
	.close = h_close,
	.conn_info = h_conn_info,
	.conn_id = h_conn_id,
	.foreach_conn = h_foreach_conn,
	.conn_count = h_conn_count,
	.broadcast_json = h_broadcast_json,
	.attr_set = h_attr_set,
	.attr_get = h_attr_get,
	.timer_add = timers_add,
	.timer_cancel = timers_cancel,
	.now_ms = h_now_ms,
	.log = h_log,
	.cfg_string = h_cfg_string,
	.cfg_bool = h_cfg_bool,
	.cfg_uint = h_cfg_uint,
	.cfg_duration_ms = h_cfg_duration_ms,
	.cfg_size = h_cfg_size,
	.cfg_error = h_cfg_error,
	.bus_subscribe = h_bus_subscribe,
	.bus_unsubscribe = h_bus_unsubscribe,
	.bus_publish = h_bus_publish,
	.bus_channels = h_bus_channels,
	.bus_presence = h_bus_presence,
	/* ABI 3: the handshake and JSON */
	.message_json = h_message_json,
	.upgrade_answer = NULL, /* answered by upgrade.c (server.c) */
	.set_user = h_set_user,
	.conn_user = h_conn_user,
	.request_header = NULL, /* answered by upgrade.c (server.c) */
	.attr_read = h_attr_read,
};
