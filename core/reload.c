/*
 * reload.c: SIGHUP, all or nothing.
 *
 * server.c's signal event calls server_reload(), which reads and validates
 * the file whole and then runs three verbs over every module a reload
 * touches, in one direction:
 *
 *   prepare  listeners, admin, log, keepalive, TLS, plugins: bind the
 *            new addresses, open the new log file, make the new sweep,
 *            load and check the certificate and key into a new TLS
 *            context, load every new or changed plugin next to the
 *            running ones.  Each may fail, with FILE:LINE; none changes
 *            what runs.
 *   abort    if any prepare failed: every module throws away what it
 *            prepared, every error is logged (to the log as it was), and
 *            nothing the clients see has changed.
 *   commit   otherwise: the new configuration becomes srv->cfg and every
 *            module switches to what it prepared.  Commits cannot fail.
 *
 * All of it runs inside one signal event, so between two events of the
 * loop.  With workers > 1 the three verbs are run one by one at the
 * master's word (workers.c): every worker prepares, and all commit or all
 * abort.  Unchanged plugins (same file, same section) carry on with their
 * state; removed ones are unloaded after their timers are cancelled and
 * their connection attributes released; new ones adopt every open
 * connection.  Listeners no longer configured are closed; connections
 * stay.  Settings read per event (limits, timeouts) apply at once; a
 * connection keeps the max_message_size it was opened with.
 */
#include "wsplugd.h"

static void
reload_fail(struct wsp_server *srv, struct wsp_errors *errs)
{
	struct log_line *l;
	uint64_t total = metrics_reloaded(srv, 0);
	size_t i;

	for (i = 0; i < errs->n; i++)
		log_msg(WSP_LOG_ERROR, "config.error", "%s", errs->msg[i]);
	if ((l = log_begin(WSP_LOG_ERROR, "reload")) != NULL) {
		log_str(l, "result", "failed");
		log_uint(l, "errors", errs->n);
		log_uint(l, "failed_total", total);
		log_str(l, "msg", "the running configuration and plugins "
		    "are unchanged");
		log_end(l);
	}
}

static void
reload_ok(struct wsp_server *srv, const struct plugin_reload_counts *n)
{
	struct log_line *l;
	uint64_t total = metrics_reloaded(srv, 1);

	if ((l = log_begin(WSP_LOG_INFO, "reload")) != NULL) {
		log_str(l, "result", "ok");
		log_uint(l, "generation", n->generation);
		log_uint(l, "ok_total", total);
		log_uint(l, "kept", n->kept);
		log_uint(l, "loaded", n->loaded);
		log_uint(l, "unloaded", n->unloaded);
		log_uint(l, "active", srv->reg.count);
		log_end(l);
	}
}

int
server_reload_prepare(struct wsp_server *srv)
{
	struct wsp_errors errs = { NULL, 0 };
	struct wsp_config *cfg;
	int failed = 0;

	log_msg(WSP_LOG_INFO, "reload", "SIGHUP: reloading %s",
	    srv->config_file);
	if ((cfg = config_load(srv->config_file, srv->default_plugin_dir,
	    &errs)) == NULL) {
		reload_fail(srv, &errs);
		errors_clear(&errs);
		return -1;
	}
	if (srv->log_level_override != -1)
		cfg->log_level = srv->log_level_override;

	/* Every prepare runs, so every error is reported at once; loading
	 * plugins, the costly one, only when the rest succeeded. */
	failed |= listen_reload_prepare(srv, cfg, &errs) == -1;
	failed |= admin_reload_prepare(srv, cfg, &errs) == -1;
	failed |= log_reload_prepare(cfg, &errs) == -1;
	failed |= keepalive_reload_prepare(srv, cfg, &errs) == -1;
	failed |= tls_reload_prepare(srv, cfg, &errs) == -1;
	if (!failed)
		failed = plugin_reload_prepare(srv, cfg, &errs) == -1;
	srv->cfg_staged = cfg;
	if (failed) {
		server_reload_abort(srv);
		reload_fail(srv, &errs);
		errors_clear(&errs);
		return -1;
	}
	return 0;
}

void
server_reload_abort(struct wsp_server *srv)
{
	plugin_reload_abort(srv);
	tls_reload_abort(srv);
	keepalive_reload_abort(srv);
	log_reload_abort();
	admin_reload_abort(srv);
	listen_reload_abort(srv);
	config_free(srv->cfg_staged);
	srv->cfg_staged = NULL;
}

void
server_reload_commit(struct wsp_server *srv)
{
	struct plugin_reload_counts counts;
	struct wsp_config *old = srv->cfg;

	srv->cfg = srv->cfg_staged;
	srv->cfg_staged = NULL;
	listen_reload_commit(srv);
	admin_reload_commit(srv);
	keepalive_reload_commit(srv);
	membudget_set_limit(&srv->mem, srv->cfg->max_buffer_memory);
	clock_timer_slack(srv->cfg->timer_slack);
	tls_reload_commit(srv);
	log_reload_commit(srv->cfg);
	plugin_reload_commit(srv, &counts);
	bus_configure(srv->bus, srv->cfg);
	config_free(old);
	reload_ok(srv, &counts);
	/* A lowered max_connections: the excess leaves with a slot. */
	drain_shed(srv);
}

void
server_reload(struct wsp_server *srv)
{
	if (server_reload_prepare(srv) == 0)
		server_reload_commit(srv);
}
