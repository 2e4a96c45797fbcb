/*
 * server.c: the server's life cycle.
 *
 * Building the server (event base, shared buffers, deadline queues, the
 * plugin set, the listeners), its signals, and its end.
 *
 * This is the top of the core: it wires the lower files to the upper ones
 * with hooks, so that each of them only calls down.  listen.c hands an
 * accepted socket to on_accept (conn.c); a connection reports through
 * conn_hooks (opened, closed: the plugins; message: dispatch.c; vet: the
 * plugins' say before the 101, upgrade.c; gone: the shutdown below); the
 * keepalive sweep hands an idle connection to
 * sweep_expire (conn.c's reap); plugins get the host table (host.c)
 * through plugin.c.  SIGHUP goes to server_reload (reload.c), which runs
 * every module's prepare, then its commit or its abort.  Shutdown on
 * SIGTERM or SIGINT stops accepting, sends close 1001 to every client and
 * waits up to shutdown_timeout for the close handshakes; the loop ends as
 * soon as the last connection is gone.  A second signal exits at once.
 * SIGQUIT is the graceful restart (drain.c): close 1012 to every client,
 * spread over restart_spread, each told when to come back.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "wsplugd.h"

/* One read buffer serves every connection: large enough that a burst of
 * frames is one read(2), small enough not to matter beside the rest. */
#define READ_BUFFER_SIZE (256 * 1024)
/* How long a connection that sent its close frame waits for the peer's. */
#define CLOSING_MS 5000
/* How long a refused or closed socket may take to read our last bytes and
 * send its FIN: it holds a descriptor and a place in max_connections
 * meanwhile, so this is short. */
#define LINGER_MS 1000

/*
 * The hooks: how the lower files reach the upper ones.  A connection tells
 * its owner it opened, carried a message, closed and is gone; the message
 * goes straight to dispatch.c, the rest to the plugins or the shutdown.
 */
static void
server_conn_opened(struct wsp_conn *c)
{
	plugin_call_open(c->srv->plugins, c);
}

static void
server_conn_closed(struct wsp_conn *c, uint16_t code)
{
	plugin_call_close(c->srv->plugins, c, code);
	/* after the plugins: their close may still publish on its channels */
	bus_conn_closed(c->srv->bus, c);
}

static const struct conn_hooks server_conn_hooks = {
	.opened = server_conn_opened,
	.message = dispatch_message,
	.closed = server_conn_closed,
	.gone = server_maybe_done,
	.vet = upgrade_begin,
	.vet_result = upgrade_result,
	.vet_end = upgrade_end,
};

void
server_maybe_done(struct wsp_server *srv)
{
	if (srv->draining && srv->reg.count == 0 && srv->npending == 0)
		event_base_loopbreak(srv->base);
}

static void
shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;

	(void)fd;
	(void)what;
	log_msg(WSP_LOG_WARN, "daemon.shutdown",
	    "shutdown_timeout reached with %zu connections open",
	    srv->reg.count + srv->npending);
	event_base_loopbreak(srv->base);
}

static void
server_drain(struct wsp_server *srv)
{
	struct wsp_conn *c, *next;
	struct timeval tv;
	uint64_t ms = srv->cfg->shutdown_timeout;

	srv->draining = 1;
	notify_stopping(srv);
	log_msg(WSP_LOG_INFO, "daemon.shutdown",
	    "closing %zu connections (up to %llu ms)", srv->reg.count,
	    (unsigned long long)ms);
	listen_close_all(&srv->listeners);
	TAILQ_FOREACH_SAFE(c, &srv->reg.conns, link, next)
		conn_close(c, WSP_CLOSE_GOING_AWAY, "server shutting down");
	TAILQ_FOREACH_SAFE(c, &srv->pending, link, next)
		if (c->state == CONN_HANDSHAKE)
			conn_free(c);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	srv->shutdown_timer = evtimer_new(srv->base, shutdown_timeout_cb, srv);
	if (srv->shutdown_timer == NULL ||
	    evtimer_add(srv->shutdown_timer, &tv) == -1)
		event_base_loopbreak(srv->base);
	server_maybe_done(srv);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct wsp_server *srv = arg;

	(void)what;
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		if (srv->draining) {
			log_msg(WSP_LOG_WARN, "daemon.shutdown",
			    "second %s: exiting now", strsignal(sig));
			event_base_loopbreak(srv->base);
			return;
		}
		handover_stop(srv); /* the new binary is not wanted now */
		server_drain(srv);
		break;
	case SIGHUP:
		if (srv->draining)
			log_msg(WSP_LOG_WARN, "reload",
			    "SIGHUP ignored while shutting down");
		else if (srv->worker != NULL) /* the master runs reloads */
			log_msg(WSP_LOG_WARN, "reload", "SIGHUP ignored by a "
			    "worker: send it to the master");
		else {
			notify_reloading(srv);
			server_reload(srv);
			notify_ready(srv);
		}
		break;
	case SIGQUIT:
		/* The graceful restart: clients are told when to come
		 * back, and leave spread over restart_spread (drain.c). */
		if (srv->draining)
			log_msg(WSP_LOG_WARN, "daemon.restart",
			    "SIGQUIT ignored while shutting down");
		else {
			handover_stop(srv); /* the new binary is not wanted now */
			drain_restart(srv, WS_CLOSE_SERVICE_RESTART);
		}
		break;
	case SIGUSR2:
		if (srv->worker != NULL)
			handover_refuse(srv, "workers > 1: a worker cannot "
			    "hand over alone");
		else
			handover_start(srv);
		break;
	case SIGUSR1:
		if (log_reopen() == -1)
			log_msg(WSP_LOG_ERROR, "log.reopen",
			    "cannot reopen the log file: %s", strerror(errno));
		else
			log_msg(WSP_LOG_INFO, "log.reopen", "log file reopened");
		break;
	}
}

int
server_signals(struct wsp_server *srv)
{
	struct event **slots[] = { &srv->sig_term, &srv->sig_int,
	    &srv->sig_hup, &srv->sig_usr1, &srv->sig_quit, &srv->sig_usr2 };
	int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGQUIT, SIGUSR2 };
	size_t i;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		*slots[i] = evsignal_new(srv->base, sigs[i], signal_cb, srv);
		if (*slots[i] == NULL || evsignal_add(*slots[i], NULL) == -1)
			return -1;
	}
	return 0;
}

void
server_free(struct wsp_server *srv)
{
	struct wsp_conn *c;
	struct event **evs[] = { &srv->sig_term, &srv->sig_int, &srv->sig_hup,
	    &srv->sig_usr1, &srv->sig_quit, &srv->sig_usr2, &srv->shutdown_timer,
	    &srv->accept_retry };
	size_t i;

	handover_stop(srv);
	handover_child_free(srv);
	srv->draining = 0; /* no loopbreak from the frees below */
	drain_free(srv);
	while ((c = TAILQ_FIRST(&srv->reg.conns)) != NULL)
		conn_free(c);
	while ((c = TAILQ_FIRST(&srv->pending)) != NULL)
		conn_free(c);
	membudget_fini(&srv->mem);
	histstore_free(srv);
	bus_free(srv->bus);
	srv->bus = NULL;
	listen_reload_abort(srv);
	listen_close_all(&srv->listeners);
	admin_free(srv);
	notify_free(srv);
	tls_free(srv);
	plugin_reload_abort(srv);
	config_free(srv->cfg_staged); /* a worker stopped mid-reload */
	srv->cfg_staged = NULL;
	plugin_set_free(srv->plugins);
	srv->plugins = NULL;
	keepalive_stop(srv);
	dq_fini(&srv->dq_handshake);
	dq_fini(&srv->dq_ping);
	dq_fini(&srv->dq_closing);
	dq_fini(&srv->dq_linger);
	for (i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (*evs[i] != NULL) {
			event_free(*evs[i]);
			*evs[i] = NULL;
		}
	registry_fini(&srv->reg);
	free(srv->rbuf);
	free(srv->stage);
	free(srv->jbuf.p);
	zstream_pool_free(srv);
	conn_path_unref(srv->path);
	if (srv->base != NULL) {
		log_detach();
		event_base_free(srv->base);
	}
}

/* An unloaded plugin's pending bus answers go with it (plugin.c's hook:
 * the bus is above the plugin table). */
static void
server_plugin_forget(struct wsp_server *srv, struct wsp_plugin_ctx *ctx)
{
	bus_forget_plugin(srv->bus, ctx);
}

/* The hand-over's fallback (handover.c), for the connections that could
 * not move or for all of them when the new binary reads another record
 * version: the graceful restart of drain.c, closes spread over
 * restart_spread with a retry slot each, so that even the fallback cannot
 * storm; the plain 1012 for all when that cannot be set up. */
static void
server_restart_fallback(struct wsp_server *srv)
{
	if (drain_restart(srv, WS_CLOSE_SERVICE_RESTART) == -1)
		handover_restart_fallback(srv);
}

int
server_setup(struct wsp_server *srv, struct wsp_config *cfg)
{
	memset(srv, 0, sizeof(*srv));
	srv->cfg = cfg;
	srv->log_level_override = -1;
	srv->bus_fd = -1;
	TAILQ_INIT(&srv->listeners);
	TAILQ_INIT(&srv->listeners_staged);
	TAILQ_INIT(&srv->pending);
	registry_init(&srv->reg);
	membudget_init(&srv->mem, cfg->max_buffer_memory, NULL);
	srv->started_mono = clock_mono_ms();
	srv->started_wall_ms = clock_wall_ms();
	clock_timer_slack(cfg->timer_slack);
	srv->rbuf_size = READ_BUFFER_SIZE;
	srv->calls = &srv->calls_own;
	/* host.c's table, with the handshake's entries, which upgrade.c
	 * answers since they ask plugins again */
	srv->host_table = wsp_host_table;
	srv->host_table.upgrade_answer = upgrade_answer;
	srv->host_table.request_header = upgrade_request_header;
	srv->host = &srv->host_table;
	srv->conn_hooks = server_conn_hooks;
	srv->on_accept = conn_accept;
	srv->sweep_expire = conn_reap;
	srv->restart_fallback = server_restart_fallback;
	srv->plugin_forget = server_plugin_forget;
	if ((srv->base = event_base_new()) == NULL ||
	    (srv->rbuf = malloc(srv->rbuf_size)) == NULL ||
	    (srv->stage = malloc(CONN_STAGE_SIZE)) == NULL ||
	    dq_init(&srv->dq_handshake, srv->base, "handshake",
	    cfg->handshake_timeout, conn_expire_handshake) == -1 ||
	    dq_init(&srv->dq_ping, srv->base, "ping", cfg->ping_interval,
	    conn_expire_ping) == -1 ||
	    dq_init(&srv->dq_closing, srv->base, "closing", CLOSING_MS,
	    conn_expire_closing) == -1 ||
	    dq_init(&srv->dq_linger, srv->base, "linger", LINGER_MS,
	    conn_expire_linger) == -1)
		return -1;
	return 0;
}

int
server_init(struct wsp_server *srv, struct wsp_config *cfg,
    const struct server_hooks *hooks, struct wsp_errors *errs)
{
	size_t i;

	if (server_setup(srv, cfg) == -1 || log_attach(srv->base) == -1) {
		errors_add(errs, NULL, 0, "cannot initialise: out of memory");
		return -1;
	}
	if (hooks != NULL)
		hooks->setup(srv, hooks->arg);
	/* A worker's budget is the daemon's, from the shared total. */
	membudget_init(&srv->mem, cfg->max_buffer_memory, srv->limits);
	if (tls_init(srv, errs) == -1)
		return -1;
	/* before the plugins, which may subscribe as they load */
	if ((srv->bus = bus_new(srv, srv->bus_fd)) == NULL) {
		errors_add(errs, NULL, 0, "cannot start the bus: out of memory");
		return -1;
	}
	srv->bus_fd = -1; /* the bus has it */
	histstore_restore(srv); /* into the empty store, before plugins */
	if ((srv->plugins = plugin_set_build(srv, cfg, NULL, errs)) == NULL)
		return -1;
	for (i = 0; i < cfg->nlisten; i++)
		listen_open(srv, cfg, &cfg->listen[i], &srv->listeners, errs);
	admin_init(srv, errs);
	return errs->n > 0 ? -1 : 0;
}

void
server_log_summary(struct wsp_server *srv)
{
	struct log_line *l;

	if ((l = log_begin(WSP_LOG_INFO, "daemon.stop")) == NULL)
		return;
	log_uint(l, "uptime_s", (clock_mono_ms() - srv->started_mono) / 1000);
	log_uint(l, "opened", srv->total_opened);
	log_uint(l, "closed", srv->total_closed);
	log_uint(l, "refused", srv->total_refused);
	log_uint(l, "reaped", srv->total_reaped);
	log_uint(l, "msgs_in", srv->metrics.msgs_in);
	log_uint(l, "msgs_out", srv->metrics.msgs_out);
	log_uint(l, "left_open", srv->reg.count);
	log_end(l);
}
