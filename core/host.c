/*
 * host.c: the function table handed to plugins.
 *
 * This is the whole of what a plugin may ask of the daemon.  Every entry
 * checks what a plugin could get wrong (invalid UTF-8 in a text frame, a
 * close code that may not go on the wire, a claim after load) and refuses
 * it with -1 and a log line naming the plugin, rather than letting a buggy
 * plugin make the server violate RFC 6455.
 *
 * Timers and attributes belong to the daemon: a plugin's timers are
 * cancelled when it is unloaded, so no callback into unmapped code can
 * fire, and attributes are JSON values the daemon can free without the
 * plugin that set them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "wsplugd.h"

/* The serialization buffer is kept between messages up to this size. */
#define JBUF_KEEP (64 * 1024)

static int
h_claim(struct wsp_plugin_ctx *ctx, const char *type)
{
	if (!ctx->loading) {
		log_msg(WSP_LOG_WARN, "plugin.error",
		    "[plugin:%s] claim(\"%s\") outside load is ignored",
		    ctx->name, type);
		return -1;
	}
	return plugin_claim(ctx, type);
}

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
	json_t *ns, *copy;

	if (c->attrs == NULL) {
		if (value == NULL)
			return 0;
		if ((c->attrs = json_object()) == NULL)
			return -1;
	}
	ns = json_object_get(c->attrs, ctx->name);
	if (value == NULL) {
		if (ns != NULL)
			json_object_del(ns, key);
		return 0;
	}
	if (ns == NULL) {
		if ((ns = json_object()) == NULL ||
		    json_object_set_new(c->attrs, ctx->name, ns) == -1)
			return -1;
	}
	/* json_deep_copy takes a non-const pointer but does not modify. */
	if ((copy = json_deep_copy((json_t *)(uintptr_t)value)) == NULL)
		return -1;
	return json_object_set_new(ns, key, copy);
}

static json_t *
h_attr_get(struct wsp_plugin_ctx *ctx, const struct wsp_conn *c,
    const char *key)
{
	json_t *ns;

	if (c->attrs == NULL)
		return NULL;
	if ((ns = json_object_get(c->attrs, ctx->name)) == NULL)
		return NULL;
	return json_object_get(ns, key);
}

static void
timer_destroy(struct wsp_timer *t)
{
	TAILQ_REMOVE(&t->ctx->timers, t, entry);
	event_free(t->ev);
	free(t);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_timer *t = arg;
	uint64_t t0 = clock_mono_ms(), took;

	(void)fd;
	(void)what;
	t->firing = 1;
	t->fn(t->arg);
	t->firing = 0;
	took = clock_mono_ms() - t0;
	if (took >= t->ctx->srv->cfg->slow_callback)
		log_msg(WSP_LOG_WARN, "plugin.slow",
		    "[plugin:%s] timer callback took %llu ms", t->ctx->name,
		    (unsigned long long)took);
	if (t->cancelled || !t->repeat)
		timer_destroy(t);
}

static struct wsp_timer *
h_timer_add(struct wsp_plugin_ctx *ctx, uint64_t after_ms, int repeat,
    void (*fn)(void *), void *arg)
{
	struct wsp_timer *t;
	struct timeval tv;

	if (fn == NULL || (t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->ctx = ctx;
	t->fn = fn;
	t->arg = arg;
	t->repeat = !!repeat;
	t->ev = event_new(ctx->srv->base, -1, repeat ? EV_PERSIST : 0,
	    timer_cb, t);
	tv.tv_sec = (time_t)(after_ms / 1000);
	tv.tv_usec = (suseconds_t)(after_ms % 1000) * 1000;
	if (t->ev == NULL || event_add(t->ev, &tv) == -1) {
		if (t->ev != NULL)
			event_free(t->ev);
		free(t);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&ctx->timers, t, entry);
	return t;
}

static void
h_timer_cancel(struct wsp_timer *t)
{
	if (t == NULL)
		return;
	if (t->firing) {
		/* Freed by timer_cb once the callback returns. */
		t->cancelled = 1;
		event_del(t->ev);
		return;
	}
	timer_destroy(t);
}

void
host_timers_cancel(struct wsp_plugin_ctx *ctx)
{
	struct wsp_timer *t;

	while ((t = TAILQ_FIRST(&ctx->timers)) != NULL)
		timer_destroy(t);
}

static int64_t
h_now_ms(struct wsp_plugin_ctx *ctx)
{
	(void)ctx;
	return clock_wall_ms();
}

static void
h_log(struct wsp_plugin_ctx *ctx, enum wsp_log_level level,
    const struct wsp_conn *c, const char *fmt, ...)
{
	struct log_line *l;
	char msg[1024];
	va_list ap;

	if (level < WSP_LOG_DEBUG || level > WSP_LOG_ERROR)
		level = WSP_LOG_ERROR;
	if ((l = log_begin(level, "plugin.log")) == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_str(l, "plugin", ctx->name);
	if (c != NULL)
		log_str(l, "conn", c->id);
	log_str(l, "msg", msg);
	log_end(l);
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

const struct wsp_host wsp_host_table = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.size = sizeof(struct wsp_host),
	.claim = h_claim,
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
	.timer_add = h_timer_add,
	.timer_cancel = h_timer_cancel,
	.now_ms = h_now_ms,
	.log = h_log,
	.cfg_string = h_cfg_string,
	.cfg_bool = h_cfg_bool,
	.cfg_uint = h_cfg_uint,
	.cfg_duration_ms = h_cfg_duration_ms,
	.cfg_size = h_cfg_size,
	.cfg_error = h_cfg_error,
};
