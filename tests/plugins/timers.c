/*
 * timers: a test plugin that holds host-owned timers and per-connection
 * attributes, to be replaced and removed under load by the reload tests
 * (run under ASan: a timer firing into an unloaded build, or an attribute
 * freed twice, would be caught).
 *
 * Every tick_ms a repeating timer stamps every open connection with an
 * attribute; each open connection also gets a one-shot timer that greets
 * it.  {"type":"timers"} answers with the tick count and the connection's
 * stamp; {"type":"sleep","ms":N} blocks the loop for N ms, for the test of
 * slow-callback logging.
 */
#include <stdlib.h>
#include <time.h>

#include <wsplugd/plugin.h>

struct greeting {
	struct greeting *next, **prevp;
	struct timers *t;
	char id[33];
};

struct timers {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	struct wsp_timer *tick;
	json_int_t ticks;
	struct greeting *pending; /* one-shot timer arguments not yet fired */
};

static int
stamp(struct wsp_conn *c, void *arg)
{
	struct timers *t = arg;
	json_t *v = json_integer(t->ticks);

	t->host->attr_set(t->ctx, c, "stamp", v);
	json_decref(v);
	return 0;
}

static void
tick(void *arg)
{
	struct timers *t = arg;

	t->ticks++;
	t->host->foreach_conn(t->ctx, stamp, t);
}

static int
timers_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	struct timers *t;
	uint64_t ms;

	if (host->cfg_duration_ms(sec, "tick", 5, &ms) == -1)
		return -1;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -1;
	t->host = host;
	t->ctx = ctx;
	t->tick = host->timer_add(ctx, ms, 1, tick, t);
	*state_r = t;
	return t->tick == NULL ? -1 : 0;
}

static void
greeting_free(struct greeting *g)
{
	*g->prevp = g->next;
	if (g->next != NULL)
		g->next->prevp = g->prevp;
	free(g);
}

static void
timers_unload(void *state)
{
	struct timers *t = state;

	/* The daemon has cancelled our timers, so nothing fires after this;
	 * the arguments of those that never fired are ours to free. */
	while (t->pending != NULL)
		greeting_free(t->pending);
	free(t);
}

static void
greet(void *arg)
{
	struct greeting *g = arg;

	g->t->host->log(g->t->ctx, WSP_LOG_DEBUG, NULL, "greeted %s", g->id);
	greeting_free(g);
}

static void
timers_open(void *state, struct wsp_conn *c)
{
	struct timers *t = state;
	struct greeting *g = calloc(1, sizeof(*g));
	const char *id = t->host->conn_id(c);
	int i;

	if (g == NULL)
		return;
	g->t = t;
	for (i = 0; i < 32 && id[i] != '\0'; i++)
		g->id[i] = id[i];
	g->next = t->pending;
	g->prevp = &t->pending;
	if (t->pending != NULL)
		t->pending->prevp = &g->next;
	t->pending = g;
	if (t->host->timer_add(t->ctx, 20, 0, greet, g) == NULL)
		greeting_free(g);
	stamp(c, t);
}

static void
timers_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct timers *t = state;
	json_t *reply;

	if (m->type[0] == 's') {
		json_int_t ms = json_integer_value(json_object_get(
		    t->host->message_json(m), "ms"));
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
		t->host->send_text(c, "{\"type\":\"slept\"}", 16);
		return;
	}
	reply = json_pack("{s:s, s:I, s:O?}", "type", "timers", "ticks",
	    t->ticks, "stamp", t->host->attr_get(t->ctx, c, "stamp"));
	t->host->send_json(c, reply);
	json_decref(reply);
}

static const char *const timers_types[] = { "timers", "sleep", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "timers",
	.version = "1",
	.types = timers_types,
	.load = timers_load,
	.unload = timers_unload,
	.open = timers_open,
	.adopt = timers_open,
	.message = timers_message,
};
