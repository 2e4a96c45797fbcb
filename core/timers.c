/*
 * timers.c: the timers a plugin sets, kept on its context.
 *
 * Timers belong to the daemon, not to the plugin: each is listed on the
 * context of the plugin that set it, and timers_cancel_all() runs before
 * that plugin is unloaded, so no callback into unmapped code can fire.  A
 * timer cancelled from inside its own callback is freed once the callback
 * returns.  Callbacks are timed like every other plugin callback.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "wsplugd.h"

static void
timers_destroy(struct wsp_timer *t)
{
	TAILQ_REMOVE(&t->ctx->timers, t, entry);
	event_free(t->ev);
	free(t);
}

static void
timers_fire_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_timer *t = arg;
	uint64_t t0 = clock_mono_ms(), took;

	(void)fd;
	(void)what;
	t->firing = 1;
	plugin_calls_mark(t->ctx->srv->calls, t->ctx->call_id,
	    PLUGIN_CB_TIMER);
	t->fn(t->arg);
	plugin_calls_mark(t->ctx->srv->calls, t->ctx->call_id,
	    PLUGIN_CB_NONE);
	t->firing = 0;
	took = clock_mono_ms() - t0;
	if (took >= t->ctx->srv->cfg->slow_callback)
		log_msg(WSP_LOG_WARN, "plugin.slow",
		    "[plugin:%s] timer callback took %llu ms", t->ctx->name,
		    (unsigned long long)took);
	if (t->cancelled || !t->repeat)
		timers_destroy(t);
}

struct wsp_timer *
timers_add(struct wsp_plugin_ctx *ctx, uint64_t after_ms, int repeat,
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
	    timers_fire_cb, t);
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

void
timers_cancel(struct wsp_timer *t)
{
	if (t == NULL)
		return;
	if (t->firing) {
		/* Freed by timers_fire_cb once the callback returns. */
		t->cancelled = 1;
		event_del(t->ev);
		return;
	}
	timers_destroy(t);
}

void
timers_cancel_all(struct wsp_plugin_ctx *ctx)
{
	struct wsp_timer *t;

	while ((t = TAILQ_FIRST(&ctx->timers)) != NULL)
		timers_destroy(t);
}
