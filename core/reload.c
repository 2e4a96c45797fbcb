/*
 * reload.c: SIGHUP, all or nothing.
 *
 * Build first, swap second.  The file is read and validated whole, every
 * new or changed plugin is loaded next to the running ones, and every new
 * listener is bound, while the running configuration keeps serving.  If
 * anything fails, what was built is thrown away, every error is logged,
 * and nothing the clients see has changed.  Otherwise the switch happens
 * here, inside one signal event, so between two events of the loop:
 *
 *   - unchanged plugins (same file, same section) carry on with their
 *     state; changed ones are replaced, removed ones unloaded after their
 *     timers are cancelled and their connection attributes released;
 *   - plugins that are new to this generation are shown every open
 *     connection through their adopt callback;
 *   - listeners no longer configured are closed; connections stay.
 *
 * Settings read per event (limits, timeouts, logging) apply at once.  A
 * connection keeps the max_message_size it was opened with.
 */
#include <string.h>

#include <event2/event.h>

#include "wsplugd.h"

static int
same_addr(const struct listener *li, const struct wsp_listen_addr *a)
{
	return li->conf_len == a->sslen &&
	    memcmp(&li->conf, &a->ss, a->sslen) == 0;
}

/* Entries already queued keep their place: clamping every deadline to
 * now + the new interval keeps the FIFO sorted. */
static void
dq_set_interval(struct deadline_queue *q, uint64_t interval)
{
	struct wsp_conn *c;
	uint64_t limit = clock_mono_ms() + interval;

	if (q->interval == interval)
		return;
	q->interval = interval;
	TAILQ_FOREACH(c, &q->head, dq_link)
		if (c->deadline > limit)
			c->deadline = limit;
	dq_rearm(q);
}

static void
reload_fail(struct wsp_server *srv, struct wsp_errors *errs)
{
	size_t i;

	struct log_line *l;

	for (i = 0; i < errs->n; i++)
		log_msg(WSP_LOG_ERROR, "config.error", "%s", errs->msg[i]);
	srv->metrics.reloads_failed++;
	if ((l = log_begin(WSP_LOG_ERROR, "reload")) != NULL) {
		log_str(l, "result", "failed");
		log_uint(l, "errors", errs->n);
		log_uint(l, "failed_total", srv->metrics.reloads_failed);
		log_str(l, "msg", "the running configuration and plugins "
		    "are unchanged");
		log_end(l);
	}
}

static void
release_attrs(struct wsp_server *srv, const char *plugin)
{
	struct wsp_conn *c;

	TAILQ_FOREACH(c, &srv->reg.conns, link)
		if (c->attrs != NULL)
			json_object_del(c->attrs, plugin);
}

void
server_reload(struct wsp_server *srv)
{
	struct wsp_errors errs = { NULL, 0 };
	struct listener_list fresh = TAILQ_HEAD_INITIALIZER(fresh);
	struct wsp_config *cfg, *old_cfg;
	struct plugin_set *set, *old;
	struct listener *li, *next;
	struct wsp_conn *c, *cn;
	struct log_line *l;
	size_t i, j, added = 0, kept = 0, removed = 0;
	int found;

	log_msg(WSP_LOG_INFO, "reload", "SIGHUP: reloading %s",
	    srv->config_file);
	if ((cfg = config_load(srv->config_file, srv->default_plugin_dir,
	    &errs)) == NULL) {
		reload_fail(srv, &errs);
		errors_clear(&errs);
		return;
	}
	for (i = 0; i < cfg->nlisten; i++) {
		found = 0;
		TAILQ_FOREACH(li, &srv->listeners, entry)
			if (same_addr(li, &cfg->listen[i]))
				found = 1;
		if (!found)
			listen_open(srv, &cfg->listen[i], &fresh, &errs);
	}
	admin_reload_prepare(srv, cfg, &errs);
	if (srv->log_level_override != -1)
		cfg->log_level = srv->log_level_override;
	set = errs.n == 0 ? plugin_set_build(srv, cfg, srv->plugins, &errs) :
	    NULL;
	if (set == NULL || errs.n > 0) {
		plugin_set_free(set);
		listen_close_all(&fresh);
		admin_reload_abort(srv);
		config_free(cfg);
		reload_fail(srv, &errs);
		errors_clear(&errs);
		return;
	}

	/* Everything is built: switch. */
	old = srv->plugins;
	old_cfg = srv->cfg;
	srv->plugins = set;
	srv->cfg = cfg;
	TAILQ_FOREACH_SAFE(li, &srv->listeners, entry, next) {
		found = 0;
		for (i = 0; i < cfg->nlisten; i++)
			if (same_addr(li, &cfg->listen[i]))
				found = 1;
		if (!found) {
			TAILQ_REMOVE(&srv->listeners, li, entry);
			listen_free(li);
		}
	}
	while ((li = TAILQ_FIRST(&fresh)) != NULL) {
		TAILQ_REMOVE(&fresh, li, entry);
		TAILQ_INSERT_TAIL(&srv->listeners, li, entry);
	}
	admin_reload_commit(srv);
	dq_set_interval(&srv->dq_handshake, cfg->handshake_timeout);
	dq_set_interval(&srv->dq_ping, cfg->ping_interval);
	keepalive_stop(srv);
	keepalive_start(srv);
	if (cfg->ping_interval == 0)
		while ((c = TAILQ_FIRST(&srv->dq_ping.head)) != NULL)
			dq_remove(c);
	else if (old_cfg->ping_interval == 0)
		TAILQ_FOREACH(c, &srv->reg.conns, link)
			if (c->state == CONN_OPEN && c->dq == NULL)
				dq_push(&srv->dq_ping, c);
	if (log_init(cfg->log_level, cfg->log_format, cfg->log_target,
	    cfg->log_file, "wsplugd") == -1) {
		log_init(cfg->log_level, cfg->log_format, LOG_TARGET_STDERR,
		    NULL, "wsplugd");
		log_msg(WSP_LOG_ERROR, "log.reopen", "cannot open log file "
		    "%s: logging to stderr", cfg->log_file);
	}

	/* Plugins gone from this generation (removed, or replaced by a new
	 * build): their attributes go unless a successor of the same name
	 * takes them over. */
	for (i = 0; i < old->nplugins; i++) {
		if (plugin_set_has(set, old->plugins[i]))
			continue;
		removed++;
		found = 0;
		for (j = 0; j < set->nplugins; j++)
			if (strcmp(set->plugins[j]->name,
			    old->plugins[i]->name) == 0)
				found = 1;
		if (!found)
			release_attrs(srv, old->plugins[i]->name);
	}
	for (i = 0; i < set->nplugins; i++) {
		struct wsp_plugin_ctx *ctx = set->plugins[i];

		if (plugin_set_has(old, ctx)) {
			kept++;
			continue;
		}
		added++;
		TAILQ_FOREACH_SAFE(c, &srv->reg.conns, link, cn)
			if (c->state == CONN_OPEN)
				plugin_call_adopt(ctx, c);
	}
	plugin_set_free(old);
	config_free(old_cfg);
	srv->metrics.reloads_ok++;
	if ((l = log_begin(WSP_LOG_INFO, "reload")) != NULL) {
		log_str(l, "result", "ok");
		log_uint(l, "generation", set->generation);
		log_uint(l, "ok_total", srv->metrics.reloads_ok);
		log_uint(l, "kept", kept);
		log_uint(l, "loaded", added);
		log_uint(l, "unloaded", removed);
		log_uint(l, "active", srv->reg.count);
		log_end(l);
	}
}
