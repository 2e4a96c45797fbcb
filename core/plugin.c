/*
 * plugin.c: loading a generation of plugins.
 *
 * A plugin set is built whole from a configuration: every enabled
 * [plugin:NAME] section is opened, its descriptor checked against our ABI,
 * its load callback handed its section and the host table, and every type
 * it claims entered in one table.  Any failure anywhere fails the set, and
 * everything already loaded is unloaded again, so a bad configuration never
 * leaves a half-built set behind (nginx builds a cycle the same way).
 *
 * Callbacks are timed: one that holds the loop longer than slow_callback is
 * logged with the plugin's name.  A plugin cannot be isolated from the
 * process, but it can be named.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "wsplugd.h"

struct plugin_type {
	UT_hash_handle hh;
	struct wsp_plugin_ctx *ctx;
	char name[];
};

/* The number of plugin sets built so far: the daemon's other global, next
 * to the log state, so every set and its log lines carry a generation. */
static unsigned plugin_generation;

int
plugin_claim(struct wsp_plugin_ctx *ctx, const char *type)
{
	struct plugin_set *set = ctx->set;
	struct wsp_section *sec = ctx->sec;
	struct plugin_type *t;
	size_t n = strlen(type);

	if (n == 0 || n > 128) {
		errors_add(ctx->errs, sec->file, sec->line,
		    "[plugin:%s] claims an invalid type (empty or over 128 "
		    "bytes)", ctx->name);
		return -1;
	}
	if (strcmp(type, "*") == 0) {
		if (set->catch_all != NULL) {
			errors_add(ctx->errs, sec->file, sec->line,
			    "[plugin:%s] claims \"*\", already claimed by "
			    "[plugin:%s]", ctx->name, set->catch_all->name);
			return -1;
		}
		set->catch_all = ctx;
		return 0;
	}
	HASH_FIND(hh, set->types, type, n, t);
	if (t != NULL) {
		if (t->ctx == ctx)
			return 0;
		errors_add(ctx->errs, sec->file, sec->line,
		    "[plugin:%s] claims type \"%s\", already claimed by "
		    "[plugin:%s]", ctx->name, type, t->ctx->name);
		return -1;
	}
	if ((t = malloc(sizeof(*t) + n + 1)) == NULL)
		return -1;
	memcpy(t->name, type, n + 1);
	t->ctx = ctx;
	HASH_ADD(hh, set->types, name, n, t);
	set->ntypes++;
	return 0;
}

static void
plugin_unload(struct wsp_plugin_ctx *ctx)
{
	host_timers_cancel(ctx);
	if (ctx->desc != NULL && ctx->desc->unload != NULL && ctx->state != NULL)
		ctx->desc->unload(ctx->state);
	if (ctx->dl != NULL)
		dlclose(ctx->dl);
	free(ctx->name);
	free(ctx->path);
	free(ctx);
}

static struct wsp_plugin_ctx *
plugin_load(struct plugin_set *set, struct wsp_server *srv,
    struct wsp_section *sec, struct wsp_errors *errs)
{
	const struct wsp_plugin *d;
	struct wsp_plugin_ctx *ctx;
	const char *const *tp;
	size_t before = errs->n, i;
	struct log_line *l;
	int failed = 0;

	if ((ctx = calloc(1, sizeof(*ctx))) == NULL ||
	    (ctx->name = strdup(sec->name)) == NULL ||
	    (ctx->path = strdup(sec->path)) == NULL) {
		errors_add(errs, sec->file, sec->line, "out of memory");
		if (ctx != NULL) {
			free(ctx->name);
			free(ctx);
		}
		return NULL;
	}
	ctx->set = set;
	ctx->srv = srv;
	ctx->sec = sec;
	ctx->errs = errs;
	TAILQ_INIT(&ctx->timers);

	dlerror();
	if ((ctx->dl = dlopen(sec->path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] cannot load: %s", sec->name, dlerror());
		goto fail;
	}
	d = dlsym(ctx->dl, WSPLUGD_PLUGIN_SYMBOL);
	if (d == NULL) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] %s is not a wsplugd plugin (no \"%s\" symbol)",
		    sec->name, sec->path, WSPLUGD_PLUGIN_SYMBOL);
		goto fail;
	}
	if (d->abi != WSPLUGD_PLUGIN_ABI) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] %s was built for plugin ABI %u, this wsplugd "
		    "has ABI %d: rebuild the plugin", sec->name, sec->path,
		    (unsigned)d->abi, WSPLUGD_PLUGIN_ABI);
		goto fail;
	}
	if (d->name == NULL || d->version == NULL) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] %s: descriptor lacks a name or version",
		    sec->name, sec->path);
		goto fail;
	}
	ctx->desc = d;
	ctx->loading = 1;
	for (tp = d->types; tp != NULL && *tp != NULL; tp++)
		if (plugin_claim(ctx, *tp) == -1)
			failed = 1;
	if (!failed && d->load != NULL &&
	    d->load(ctx, &wsp_host_table, sec, &ctx->state) != 0) {
		if (errs->n == before)
			errors_add(errs, sec->file, sec->line,
			    "[plugin:%s] refused its configuration", sec->name);
		failed = 1;
	}
	ctx->loading = 0;
	for (i = 0; i < sec->nkv; i++) {
		if (!sec->kv[i].used) {
			errors_add(errs, sec->file, sec->kv[i].line,
			    "unknown key '%s' in [plugin:%s]", sec->kv[i].key,
			    sec->name);
			failed = 1;
		}
	}
	if ((ctx->set->catch_all == ctx || ctx->set->ntypes > 0) &&
	    d->message == NULL) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] claims types but has no message callback",
		    sec->name);
		failed = 1;
	}
	if (failed || errs->n > before)
		goto fail;
	if ((l = log_begin(WSP_LOG_INFO, "plugin.load")) != NULL) {
		log_str(l, "plugin", ctx->name);
		log_str(l, "version", d->version);
		log_str(l, "path", ctx->path);
		log_uint(l, "generation", plugin_generation + 1);
		log_end(l);
	}
	return ctx;
fail:
	plugin_unload(ctx);
	return NULL;
}

static void
plugin_types_free(struct plugin_set *set)
{
	struct plugin_type *t, *tmp;

	HASH_ITER(hh, set->types, t, tmp) {
		HASH_DEL(set->types, t);
		free(t);
	}
	set->ntypes = 0;
	set->catch_all = NULL;
}

/* Drop every claim held by a plugin that is not in the set: one that
 * failed to load.  Its pointer is compared, never followed. */
static void
plugin_types_unclaim(struct plugin_set *set)
{
	struct plugin_type *t, *tmp;
	struct wsp_plugin_ctx *ctx;
	int found;

	HASH_ITER(hh, set->types, t, tmp) {
		found = 0;
		TAILQ_FOREACH(ctx, &set->plugins, entry)
			if (ctx == t->ctx)
				found = 1;
		if (!found) {
			HASH_DEL(set->types, t);
			free(t);
			set->ntypes--;
		}
	}
	found = 0;
	TAILQ_FOREACH(ctx, &set->plugins, entry)
		if (ctx == set->catch_all)
			found = 1;
	if (!found)
		set->catch_all = NULL;
}

struct plugin_set *
plugin_set_load(struct wsp_server *srv, struct wsp_config *cfg,
    struct wsp_errors *errs)
{
	struct plugin_set *set;
	struct wsp_plugin_ctx *ctx;
	size_t i, before = errs->n;

	if ((set = calloc(1, sizeof(*set))) == NULL) {
		errors_add(errs, cfg->file, 0, "out of memory");
		return NULL;
	}
	TAILQ_INIT(&set->plugins);
	for (i = 0; i < cfg->nplugins; i++) {
		struct wsp_section *sec = &cfg->plugins[i];

		if (!sec->enabled)
			continue;
		sec->errors = errs;
		if ((ctx = plugin_load(set, srv, sec, errs)) != NULL)
			TAILQ_INSERT_TAIL(&set->plugins, ctx, entry);
		else
			/* Its claims would point at freed memory. */
			plugin_types_unclaim(set);
	}
	if (errs->n > before) {
		plugin_set_free(set);
		return NULL;
	}
	set->generation = ++plugin_generation;
	return set;
}

void
plugin_set_free(struct plugin_set *set)
{
	struct wsp_plugin_ctx *ctx;
	struct log_line *l;

	if (set == NULL)
		return;
	plugin_types_free(set);
	/* Reverse order: a plugin may depend on one loaded before it. */
	while ((ctx = TAILQ_LAST(&set->plugins, plugin_list)) != NULL) {
		TAILQ_REMOVE(&set->plugins, ctx, entry);
		if ((l = log_begin(WSP_LOG_INFO, "plugin.unload")) != NULL) {
			log_str(l, "plugin", ctx->name);
			log_uint(l, "generation", set->generation);
			log_end(l);
		}
		plugin_unload(ctx);
	}
	free(set);
}

struct wsp_plugin_ctx *
plugin_set_lookup(struct plugin_set *set, const char *type)
{
	struct plugin_type *t;

	HASH_FIND_STR(set->types, type, t);
	return t == NULL ? NULL : t->ctx;
}

static void
plugin_timed_end(struct wsp_plugin_ctx *ctx, const char *callback,
    uint64_t t0)
{
	uint64_t took = clock_mono_ms() - t0;
	struct log_line *l;

	if (took < ctx->srv->cfg->slow_callback)
		return;
	if ((l = log_begin(WSP_LOG_WARN, "plugin.slow")) != NULL) {
		log_str(l, "plugin", ctx->name);
		log_str(l, "callback", callback);
		log_uint(l, "ms", took);
		log_end(l);
	}
}

void
plugin_call_open(struct plugin_set *set, struct wsp_conn *c)
{
	struct wsp_plugin_ctx *ctx;
	uint64_t t0;

	TAILQ_FOREACH(ctx, &set->plugins, entry) {
		if (ctx->desc->open == NULL)
			continue;
		t0 = clock_mono_ms();
		ctx->desc->open(ctx->state, c);
		plugin_timed_end(ctx, "open", t0);
	}
}

void
plugin_call_close(struct plugin_set *set, struct wsp_conn *c, uint16_t code)
{
	struct wsp_plugin_ctx *ctx;
	uint64_t t0;

	TAILQ_FOREACH(ctx, &set->plugins, entry) {
		if (ctx->desc->close == NULL)
			continue;
		t0 = clock_mono_ms();
		ctx->desc->close(ctx->state, c, code);
		plugin_timed_end(ctx, "close", t0);
	}
}

void
plugin_call_message(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const struct wsp_message *m)
{
	uint64_t t0 = clock_mono_ms();

	ctx->desc->message(ctx->state, c, m);
	plugin_timed_end(ctx, "message", t0);
}
