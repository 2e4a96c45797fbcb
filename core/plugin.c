/*
 * plugin.c: loading a generation of plugins.
 *
 * A plugin set is built whole from a configuration: every enabled
 * [plugin:NAME] section is opened, its descriptor checked against our ABI,
 * its load callback handed its section and the host table, and every type
 * it claims entered in the set's table.  Any failure anywhere fails the
 * set, and what the build loaded is unloaded again, so a bad configuration
 * never leaves a half-built set behind (nginx builds a cycle the same way).
 *
 * The table the load callback gets is the server's host table (host.c,
 * handed in by server.c through srv->host) with its claim entry answered
 * here: claiming is part of loading.  What a load needs to know about its
 * build (the set claims go to, the section, where errors go) is a struct
 * plugin_load on the builder's stack, which only the loading context
 * points at, and only while it loads.
 *
 * On reload the new set is built next to the running one
 * (plugin_reload_prepare) and takes over in plugin_reload_commit.  A
 * plugin whose file and section are both unchanged is not loaded again:
 * its context, state and all, is shared by both sets (contexts are
 * reference-counted by the sets holding them), and freeing whichever set
 * loses unloads only what no set holds any more.
 *
 * glibc's dlopen() hands back the object it already has for a path or an
 * inode, even when the file was rebuilt since.  So every load copies the
 * file into a fresh memfd and opens that: each generation gets its own
 * mapping, and the memfd stays open while the object is loaded so that its
 * /proc/self/fd name is never reused by a later load.
 *
 * Callbacks are timed: one that holds the loop longer than slow_callback is
 * logged with the plugin's name.  A plugin cannot be isolated from the
 * process, but it can be named.
 */
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uthash.h>

#include "wsplugd.h"

static void plugin_enter(struct wsp_plugin_ctx *ctx,
    enum plugin_callback cb);
static void plugin_leave(struct wsp_plugin_ctx *ctx);

struct plugin_type {
	UT_hash_handle hh;
	struct wsp_plugin_ctx *ctx;
	char name[];
};

/* The number of plugin sets built so far: the daemon's other global, next
 * to the log state, so every set and its log lines carry a generation. */
static unsigned plugin_generation;

/* Enter one claim of ctx in set's table; conflicts are reported to errs
 * at sec's header. */
static int
set_claim(struct plugin_set *set, struct wsp_plugin_ctx *ctx,
    const char *type, const struct wsp_section *sec, struct wsp_errors *errs)
{
	const char *file = sec->file;
	int line = sec->line;
	struct plugin_type *t;
	size_t n = strlen(type);

	if (strcmp(type, "*") == 0) {
		if (set->catch_all != NULL && set->catch_all != ctx) {
			errors_add(errs, file, line,
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
		errors_add(errs, file, line,
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

int
plugin_claim(struct wsp_plugin_ctx *ctx, const char *type)
{
	struct plugin_load *ld = ctx->load;
	size_t i, n = strlen(type);
	char **nc;

	if (ld == NULL) {
		log_msg(WSP_LOG_WARN, "plugin.error",
		    "[plugin:%s] claim(\"%s\") outside load is ignored",
		    ctx->name, type);
		return -1;
	}
	if (n == 0 || n > 128) {
		errors_add(ld->errs, ld->sec->file, ld->sec->line,
		    "[plugin:%s] claims an invalid type (empty or over 128 "
		    "bytes)", ctx->name);
		return -1;
	}
	if (set_claim(ld->set, ctx, type, ld->sec, ld->errs) == -1)
		return -1;
	for (i = 0; i < ctx->nclaims; i++)
		if (strcmp(ctx->claims[i], type) == 0)
			return 0;
	/* Remembered so a later set can carry the plugin over. */
	if ((nc = reallocarray(ctx->claims, ctx->nclaims + 1,
	    sizeof(*nc))) == NULL)
		return -1;
	ctx->claims = nc;
	if ((ctx->claims[ctx->nclaims] = strdup(type)) == NULL)
		return -1;
	ctx->nclaims++;
	return 0;
}

struct wsp_plugin_ctx *
plugin_ctx_new(struct wsp_server *srv, const char *name, const char *path)
{
	struct wsp_plugin_ctx *ctx;

	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return NULL;
	ctx->srv = srv;
	ctx->memfd = -1;
	TAILQ_INIT(&ctx->timers);
	/* Ids 1..PLUGIN_CALL_NAMES, 0 meaning none; the name is copied
	 * where a master can read it after this process died. */
	ctx->call_id = srv->calls->next++ % PLUGIN_CALL_NAMES + 1;
	snprintf(srv->calls->names[ctx->call_id - 1],
	    sizeof(srv->calls->names[0]), "%s", name);
	if ((ctx->name = strdup(name)) == NULL ||
	    (ctx->path = strdup(path)) == NULL) {
		free(ctx->name);
		free(ctx);
		return NULL;
	}
	return ctx;
}

struct wsp_plugin_ctx *
plugin_ctx_builtin(struct wsp_server *srv, struct plugin_load *ld,
    const struct wsp_plugin *desc, void *state)
{
	struct wsp_plugin_ctx *ctx;

	if ((ctx = plugin_ctx_new(srv, ld->sec->name, "(built in)")) == NULL)
		return NULL;
	ctx->desc = desc;
	ctx->state = state;
	ctx->load = ld;
	if (plugin_set_add(ld->set, ctx) == -1) {
		free(ctx->name);
		free(ctx->path);
		free(ctx);
		return NULL;
	}
	return ctx;
}

static void
plugin_unload(struct wsp_plugin_ctx *ctx)
{
	size_t i;

	/* unload may still cancel its own timers; whatever it leaves is
	 * cancelled after, and nothing fires in between. */
	if (ctx->desc != NULL && ctx->desc->unload != NULL && ctx->loaded) {
		plugin_enter(ctx, PLUGIN_CB_UNLOAD);
		ctx->desc->unload(ctx->state);
		plugin_leave(ctx);
	}
	timers_cancel_all(ctx);
	if (ctx->srv != NULL && ctx->srv->plugin_forget != NULL)
		ctx->srv->plugin_forget(ctx->srv, ctx);
	if (ctx->dl != NULL)
		dlclose(ctx->dl);
	if (ctx->memfd != -1)
		close(ctx->memfd);
	for (i = 0; i < ctx->nclaims; i++)
		free(ctx->claims[i]);
	free(ctx->claims);
	free(ctx->signature);
	free(ctx->name);
	free(ctx->path);
	free(ctx);
}

/* What makes a plugin "unchanged" across a reload: the same file (path,
 * device, inode, size, modification time) and the same section. */
static char *
plugin_signature(const struct wsp_section *sec, const struct stat *st)
{
	char *sig = NULL, *next;
	size_t i;

	if (asprintf(&sig, "%s\n%ju:%ju:%jd:%lld.%09ld\n", sec->path,
	    (uintmax_t)st->st_dev, (uintmax_t)st->st_ino,
	    (intmax_t)st->st_size, (long long)st->st_mtim.tv_sec,
	    st->st_mtim.tv_nsec) == -1)
		return NULL;
	for (i = 0; i < sec->nkv; i++) {
		if (asprintf(&next, "%s%s=%s\n", sig, sec->kv[i].key,
		    sec->kv[i].value) == -1) {
			free(sig);
			return NULL;
		}
		free(sig);
		sig = next;
	}
	return sig;
}

/* Open sec->path through a private memfd copy; see the top of the file. */
static int
plugin_open(struct wsp_plugin_ctx *ctx, struct wsp_section *sec,
    struct stat *st, struct wsp_errors *errs)
{
	char procpath[64];
	off_t off = 0;
	ssize_t n;
	int src;

	if ((src = open(sec->path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(src, st) == -1) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] cannot open %s: %s", sec->name, sec->path,
		    strerror(errno));
		if (src != -1)
			close(src);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] %s is not a regular file", sec->name,
		    sec->path);
		close(src);
		return -1;
	}
	ctx->memfd = memfd_create(sec->name, MFD_CLOEXEC);
	while (ctx->memfd != -1 && off < st->st_size) {
		n = sendfile(ctx->memfd, src, &off, (size_t)(st->st_size - off));
		if (n <= 0) {
			close(ctx->memfd);
			ctx->memfd = -1;
		}
	}
	close(src);
	dlerror();
	if (ctx->memfd != -1) {
		snprintf(procpath, sizeof(procpath), "/proc/self/fd/%d",
		    ctx->memfd);
		ctx->dl = dlopen(procpath, RTLD_NOW | RTLD_LOCAL);
	} else /* no memfd: a rebuilt file may not be picked up */
		ctx->dl = dlopen(sec->path, RTLD_NOW | RTLD_LOCAL);
	if (ctx->dl == NULL) {
		errors_add(errs, sec->file, sec->line,
		    "[plugin:%s] cannot load %s: %s", sec->name, sec->path,
		    dlerror());
		return -1;
	}
	return 0;
}

static struct wsp_plugin_ctx *
plugin_load(struct plugin_set *set, struct wsp_server *srv,
    struct wsp_section *sec, struct wsp_errors *errs)
{
	struct plugin_load ld = { .set = set, .sec = sec, .errs = errs };
	const struct wsp_plugin *d;
	struct wsp_plugin_ctx *ctx;
	const char *const *tp;
	size_t before = errs->n, i;
	struct log_line *l;
	struct stat st;
	int failed = 0, rv;

	if ((ctx = plugin_ctx_new(srv, sec->name, sec->path)) == NULL) {
		errors_add(errs, sec->file, sec->line, "out of memory");
		return NULL;
	}
	if (plugin_open(ctx, sec, &st, errs) == -1)
		goto fail;
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
	if ((ctx->signature = plugin_signature(sec, &st)) == NULL) {
		errors_add(errs, sec->file, sec->line, "out of memory");
		goto fail;
	}
	ctx->load = &ld;
	for (tp = d->types; tp != NULL && *tp != NULL; tp++)
		if (plugin_claim(ctx, *tp) == -1)
			failed = 1;
	if (!failed && d->load != NULL) {
		plugin_enter(ctx, PLUGIN_CB_LOAD);
		rv = d->load(ctx, &srv->plugin_host, sec, &ctx->state);
		plugin_leave(ctx);
		if (rv != 0) {
			if (errs->n == before)
				errors_add(errs, sec->file, sec->line,
				    "[plugin:%s] refused its configuration",
				    sec->name);
			failed = 1;
		} else
			ctx->loaded = 1;
	} else if (!failed)
		ctx->loaded = 1;
	ctx->load = NULL;
	/* Unread keys are unknown only if load ran to the end: a plugin
	 * that failed earlier never got to ask for the rest. */
	for (i = 0; ctx->loaded && i < sec->nkv; i++) {
		if (!sec->kv[i].used) {
			errors_add(errs, sec->file, sec->kv[i].line,
			    "unknown key '%s' in [plugin:%s]", sec->kv[i].key,
			    sec->name);
			failed = 1;
		}
	}
	if (ctx->nclaims > 0 && d->message == NULL) {
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

struct plugin_set *
plugin_set_new(void)
{
	return calloc(1, sizeof(struct plugin_set));
}

int
plugin_set_add(struct plugin_set *set, struct wsp_plugin_ctx *ctx)
{
	struct wsp_plugin_ctx **n;

	if ((n = reallocarray(set->plugins, set->nplugins + 1,
	    sizeof(*n))) == NULL)
		return -1;
	set->plugins = n;
	set->plugins[set->nplugins++] = ctx;
	ctx->refs++;
	return 0;
}

int
plugin_set_has(const struct plugin_set *set, const struct wsp_plugin_ctx *ctx)
{
	size_t i;

	for (i = 0; set != NULL && i < set->nplugins; i++)
		if (set->plugins[i] == ctx)
			return 1;
	return 0;
}

/* The context of old that sec would load again unchanged, if any. */
static struct wsp_plugin_ctx *
plugin_find_unchanged(struct plugin_set *old, struct wsp_section *sec)
{
	struct wsp_plugin_ctx *ctx;
	struct stat st;
	char *sig;
	size_t i;

	if (old == NULL || stat(sec->path, &st) == -1)
		return NULL;
	if ((sig = plugin_signature(sec, &st)) == NULL)
		return NULL;
	for (i = 0; i < old->nplugins; i++) {
		ctx = old->plugins[i];
		if (strcmp(ctx->name, sec->name) == 0 &&
		    ctx->signature != NULL && strcmp(ctx->signature, sig) == 0)
			break;
	}
	free(sig);
	return i < old->nplugins ? old->plugins[i] : NULL;
}

/* Enter a carried-over plugin's claims in the new set. */
static int
plugin_carry(struct plugin_set *set, struct wsp_plugin_ctx *ctx,
    struct wsp_section *sec, struct wsp_errors *errs)
{
	size_t i;
	int rc = 0;

	/* ctx is the running set's too: nothing of this build is written
	 * on it but the reference plugin_set_add() takes, which freeing a
	 * failed set gives back. */
	for (i = 0; i < ctx->nclaims; i++)
		if (set_claim(set, ctx, ctx->claims[i], sec, errs) == -1)
			rc = -1;
	return rc == 0 ? plugin_set_add(set, ctx) : -1;
}

struct plugin_set *
plugin_set_build(struct wsp_server *srv, struct wsp_config *cfg,
    struct plugin_set *old, struct wsp_errors *errs)
{
	struct plugin_set *set;
	struct wsp_plugin_ctx *ctx;
	size_t i, before = errs->n;

	if ((set = plugin_set_new()) == NULL) {
		errors_add(errs, cfg->file, 0, "out of memory");
		return NULL;
	}
	/* What a load is handed: the server's host table with claim
	 * answered here.  In the server, as plugins may keep the pointer for
	 * as long as they are loaded. */
	srv->plugin_host = *srv->host;
	srv->plugin_host.claim = plugin_claim;
	for (i = 0; i < cfg->nplugins; i++) {
		struct wsp_section *sec = &cfg->plugins[i];

		if (!sec->enabled)
			continue;
		sec->errors = errs;
		if ((ctx = plugin_find_unchanged(old, sec)) != NULL) {
			if (plugin_carry(set, ctx, sec, errs) == -1)
				plugin_set_unclaim_missing(set);
			continue;
		}
		if ((ctx = plugin_load(set, srv, sec, errs)) == NULL) {
			plugin_set_unclaim_missing(set);
			continue;
		}
		if (plugin_set_add(set, ctx) == -1) {
			errors_add(errs, sec->file, sec->line, "out of memory");
			plugin_unload(ctx);
			plugin_set_unclaim_missing(set);
		}
	}
	if (errs->n > before) {
		plugin_set_free(set);
		return NULL;
	}
	set->generation = ++plugin_generation;
	return set;
}

int
plugin_reload_prepare(struct wsp_server *srv, struct wsp_config *cfg,
    struct wsp_errors *errs)
{
	plugin_reload_abort(srv);
	srv->plugins_staged = plugin_set_build(srv, cfg, srv->plugins, errs);
	return srv->plugins_staged == NULL ? -1 : 0;
}

/* Plugins gone from this generation (removed, or replaced by a new build)
 * take their connection attributes with them, unless a successor of the
 * same name takes them over; plugins new to it adopt every open
 * connection. */
void
plugin_reload_commit(struct wsp_server *srv,
    struct plugin_reload_counts *counts)
{
	struct plugin_set *set = srv->plugins_staged, *old = srv->plugins;
	struct wsp_plugin_ctx *ctx;
	struct wsp_conn *c, *cn;
	size_t i, j;
	int found;

	memset(counts, 0, sizeof(*counts));
	srv->plugins = set;
	srv->plugins_staged = NULL;
	for (i = 0; i < old->nplugins; i++) {
		if (plugin_set_has(set, old->plugins[i]))
			continue;
		counts->unloaded++;
		found = 0;
		for (j = 0; j < set->nplugins; j++)
			if (strcmp(set->plugins[j]->name,
			    old->plugins[i]->name) == 0)
				found = 1;
		if (!found)
			attrs_release(&srv->reg, old->plugins[i]->name);
	}
	for (i = 0; i < set->nplugins; i++) {
		ctx = set->plugins[i];
		if (plugin_set_has(old, ctx)) {
			counts->kept++;
			plugin_call_reload(ctx);
			continue;
		}
		counts->loaded++;
		TAILQ_FOREACH_SAFE(c, &srv->reg.conns, link, cn)
			if (c->state == CONN_OPEN)
				plugin_call_adopt(ctx, c);
	}
	counts->generation = set->generation;
	plugin_set_free(old);
}

void
plugin_reload_abort(struct wsp_server *srv)
{
	plugin_set_free(srv->plugins_staged);
	srv->plugins_staged = NULL;
}

/* Drop the claims of plugins that are not in the set (one that failed to
 * load after claiming).  Their pointers are compared, never followed. */
void
plugin_set_unclaim_missing(struct plugin_set *set)
{
	struct plugin_type *t, *tmp;

	HASH_ITER(hh, set->types, t, tmp) {
		if (!plugin_set_has(set, t->ctx)) {
			if (set->last == t)
				set->last = NULL;
			HASH_DEL(set->types, t);
			free(t);
			set->ntypes--;
		}
	}
	if (set->catch_all != NULL && !plugin_set_has(set, set->catch_all))
		set->catch_all = NULL;
}

void
plugin_set_free(struct plugin_set *set)
{
	struct plugin_type *t, *tmp;
	struct wsp_plugin_ctx *ctx;
	struct log_line *l;
	size_t i;

	if (set == NULL)
		return;
	set->last = NULL;
	HASH_ITER(hh, set->types, t, tmp) {
		HASH_DEL(set->types, t);
		free(t);
	}
	/* Reverse order: a plugin may depend on one loaded before it. */
	for (i = set->nplugins; i-- > 0;) {
		ctx = set->plugins[i];
		if (--ctx->refs > 0)
			continue; /* carried over into another set */
		if ((l = log_begin(WSP_LOG_INFO, "plugin.unload")) != NULL) {
			log_str(l, "plugin", ctx->name);
			log_uint(l, "generation", set->generation);
			log_end(l);
		}
		plugin_unload(ctx);
	}
	free(set->plugins);
	free(set);
}

struct wsp_plugin_ctx *
plugin_set_lookup(struct plugin_set *set, const char *type)
{
	return plugin_set_lookup_n(set, type, strlen(type), NULL);
}

/* Clients send runs of one type (pings, a stream of updates): the type
 * routed last is compared first, which costs a fraction of hashing it.
 * *name_r, when asked for, is the type as the set holds it: the same
 * bytes with a NUL after them, valid as long as the set, so that dispatch
 * need not copy a routed type to end it. */
struct wsp_plugin_ctx *
plugin_set_lookup_n(struct plugin_set *set, const char *type, size_t n,
    const char **name_r)
{
	struct plugin_type *t = set->last;

	if (t == NULL || t->hh.keylen != n || memcmp(t->name, type, n) != 0) {
		HASH_FIND(hh, set->types, type, n, t);
		if (t == NULL)
			return NULL;
		set->last = t;
	}
	if (name_r != NULL)
		*name_r = t->name;
	return t->ctx;
}

/* Around every call into a plugin (timers.c marks its own). */
static void
plugin_enter(struct wsp_plugin_ctx *ctx, enum plugin_callback cb)
{
	plugin_calls_mark(ctx->srv->calls, ctx->call_id, cb);
}

static void
plugin_leave(struct wsp_plugin_ctx *ctx)
{
	plugin_calls_mark(ctx->srv->calls, ctx->call_id, PLUGIN_CB_NONE);
}

const char *
plugin_callback_name(uint32_t now)
{
	static const char *const names[] = {
		[PLUGIN_CB_NONE] = "", [PLUGIN_CB_LOAD] = "load",
		[PLUGIN_CB_UNLOAD] = "unload", [PLUGIN_CB_OPEN] = "open",
		[PLUGIN_CB_ADOPT] = "adopt", [PLUGIN_CB_CLOSE] = "close",
		[PLUGIN_CB_MESSAGE] = "message", [PLUGIN_CB_TIMER] = "timer",
		[PLUGIN_CB_BUS] = "bus",
		[PLUGIN_CB_UPGRADE] = "upgrade",
		[PLUGIN_CB_UPGRADE_CANCEL] = "upgrade_cancel",
		[PLUGIN_CB_RELOAD] = "reload",
	};

	return (now & 0xff) < nitems(names) ? names[now & 0xff] : "";
}

const char *
plugin_call_plugin(const struct plugin_calls *calls, uint32_t now)
{
	uint32_t id = now >> 8;

	return id >= 1 && id <= PLUGIN_CALL_NAMES ? calls->names[id - 1] : "";
}

static uint64_t
plugin_timed_begin(struct wsp_plugin_ctx *ctx, enum plugin_callback cb)
{
	plugin_enter(ctx, cb);
	return clock_mono_ms();
}

static void
plugin_timed_end(struct wsp_plugin_ctx *ctx, const char *callback,
    uint64_t t0)
{
	uint64_t took;
	struct log_line *l;

	plugin_leave(ctx);
	took = clock_mono_ms() - t0;
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
	size_t i;

	for (i = 0; i < set->nplugins; i++) {
		ctx = set->plugins[i];
		if (ctx->desc->open == NULL)
			continue;
		t0 = plugin_timed_begin(ctx, PLUGIN_CB_OPEN);
		ctx->desc->open(ctx->state, c);
		plugin_timed_end(ctx, "open", t0);
	}
}

void
plugin_call_adopt(struct wsp_plugin_ctx *ctx, struct wsp_conn *c)
{
	uint64_t t0;

	if (ctx->desc->adopt == NULL)
		return;
	t0 = plugin_timed_begin(ctx, PLUGIN_CB_ADOPT);
	ctx->desc->adopt(ctx->state, c);
	plugin_timed_end(ctx, "adopt", t0);
}

void
plugin_call_close(struct plugin_set *set, struct wsp_conn *c, uint16_t code)
{
	struct wsp_plugin_ctx *ctx;
	uint64_t t0;
	size_t i;

	for (i = 0; i < set->nplugins; i++) {
		ctx = set->plugins[i];
		if (ctx->desc->close == NULL)
			continue;
		t0 = plugin_timed_begin(ctx, PLUGIN_CB_CLOSE);
		ctx->desc->close(ctx->state, c, code);
		plugin_timed_end(ctx, "close", t0);
	}
}

void
plugin_call_message(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const struct wsp_message *m)
{
	uint64_t t0 = plugin_timed_begin(ctx, PLUGIN_CB_MESSAGE);

	ctx->desc->message(ctx->state, c, m);
	plugin_timed_end(ctx, "message", t0);
}

int
plugin_call_upgrade(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const struct wsp_upgrade_request *req, const char **reason_r)
{
	uint64_t t0 = plugin_timed_begin(ctx, PLUGIN_CB_UPGRADE);
	int rc;

	rc = ctx->desc->upgrade(ctx->state, c, req, reason_r);
	plugin_timed_end(ctx, "upgrade", t0);
	return rc;
}

void
plugin_call_reload(struct wsp_plugin_ctx *ctx)
{
	uint64_t t0;

	if (ctx->desc->reload == NULL)
		return;
	t0 = plugin_timed_begin(ctx, PLUGIN_CB_RELOAD);
	ctx->desc->reload(ctx->state);
	plugin_timed_end(ctx, "reload", t0);
}

void
plugin_call_upgrade_cancel(struct wsp_plugin_ctx *ctx, struct wsp_conn *c)
{
	uint64_t t0;

	if (ctx->desc->upgrade_cancel == NULL)
		return;
	t0 = plugin_timed_begin(ctx, PLUGIN_CB_UPGRADE_CANCEL);
	ctx->desc->upgrade_cancel(ctx->state, c);
	plugin_timed_end(ctx, "upgrade_cancel", t0);
}
