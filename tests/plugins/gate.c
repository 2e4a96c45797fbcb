/*
 * gate: a test plugin that decides handshakes as the request's query asks,
 * for tests/integration/test_upgrade.py.
 *
 * Its section's `param` key (default "gate") names the query parameter it
 * obeys, so two copies loaded under different names can be told apart:
 *
 *   gate=accept            accept at once (also when the parameter is
 *                          absent)
 *   gate=refuse-STATUS     refuse with STATUS and the reason "gate says no"
 *   gate=later-MS          defer, accept after MS milliseconds (host timer)
 *   gate=laterno-MS        defer, refuse 403 after MS milliseconds
 *   gate=never             defer and never answer
 *
 * It names the user from the query's `user=` and keeps the X-Role request
 * header as its attribute "role".  {"type":"whoami"} answers with what the
 * connection looks like to a plugin: conn_user, conn_info's user, its own
 * role attribute read through attr_read, and the message's id text (the
 * copy whose section says whoami = no leaves the type to the other).  Every
 * upgrade_cancel is logged ("cancelled"), so a test can see the plugin was
 * told.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wsplugd/plugin.h>

struct gate {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	char name[65];
	char param[33];
	struct pending *pending;
};

/* A deferred answer: the timer's argument until it fires or c goes. */
struct pending {
	struct pending *next;
	struct gate *g;
	struct wsp_conn *c;
	struct wsp_timer *t;
	int status;
};

static int
gate_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	struct gate *g;
	const char *param, *name;
	int whoami;

	if (host->cfg_string(sec, "param", "gate", &param) == -1 ||
	    host->cfg_string(sec, "name", "gate", &name) == -1 ||
	    host->cfg_bool(sec, "whoami", 1, &whoami) == -1)
		return -1;
	/* one copy answers whoami: two claiming it is a config error */
	if (whoami && host->claim(ctx, "whoami") == -1)
		return -1;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return -1;
	g->host = host;
	g->ctx = ctx;
	snprintf(g->param, sizeof(g->param), "%s", param);
	snprintf(g->name, sizeof(g->name), "%s", name);
	*state_r = g;
	return 0;
}

static void
gate_unload(void *state)
{
	struct gate *g = state;
	struct pending *p;

	/* the host cancels the timers; their arguments are ours */
	while ((p = g->pending) != NULL) {
		g->pending = p->next;
		free(p);
	}
	free(g);
}

/* The value of name= in the query, copied into buf; NULL when absent. */
static const char *
query_get(const char *q, const char *name, char *buf, size_t size)
{
	size_t n = strlen(name), k;
	const char *p = q;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			p += n + 1;
			k = strcspn(p, "&");
			if (k >= size)
				k = size - 1;
			memcpy(buf, p, k);
			buf[k] = '\0';
			return buf;
		}
		p = strchr(p, '&');
		if (p != NULL)
			p++;
	}
	return NULL;
}

static void
pending_drop(struct gate *g, struct pending *p)
{
	struct pending **pp;

	for (pp = &g->pending; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
}

static void
answer_later(void *arg)
{
	struct pending *p = arg;
	struct gate *g = p->g;

	g->host->upgrade_answer(g->ctx, p->c, p->status,
	    p->status == 0 ? NULL : "gate says no, later");
	pending_drop(g, p);
}

static int
gate_upgrade(void *state, struct wsp_conn *c,
    const struct wsp_upgrade_request *req, const char **reason_r)
{
	struct gate *g = state;
	char act[64], user[256];
	const char *role;
	struct pending *p;
	json_t *v;
	int ms;

	if (query_get(req->query, "user", user, sizeof(user)) != NULL)
		g->host->set_user(c, user);
	if ((role = g->host->request_header(c, "x-role")) != NULL) {
		v = json_string(role);
		g->host->attr_set(g->ctx, c, "role", v);
		json_decref(v);
	}
	g->host->log(g->ctx, WSP_LOG_INFO, c, "%s: %s %s from %s:%u "
	    "query='%s' subprotocol='%s' origin='%s'", g->name, req->method,
	    req->path, req->ip, req->port, req->query, req->subprotocol,
	    req->origin);
	if (query_get(req->query, g->param, act, sizeof(act)) == NULL ||
	    strcmp(act, "accept") == 0)
		return WSP_UPGRADE_ACCEPT;
	if (strncmp(act, "refuse-", 7) == 0) {
		*reason_r = "gate says no";
		return atoi(act + 7);
	}
	if (strcmp(act, "never") == 0) {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return 500;
		p->g = g;
		p->c = c;
		p->next = g->pending;
		g->pending = p;
		return WSP_UPGRADE_DEFER;
	}
	if (sscanf(act, "later-%d", &ms) == 1 ||
	    sscanf(act, "laterno-%d", &ms) == 1) {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return 500;
		p->g = g;
		p->c = c;
		p->status = act[5] == 'n' ? 403 : 0;
		if ((p->t = g->host->timer_add(g->ctx, (uint64_t)ms, 0,
		    answer_later, p)) == NULL) {
			free(p);
			return 500;
		}
		p->next = g->pending;
		g->pending = p;
		return WSP_UPGRADE_DEFER;
	}
	*reason_r = "gate: unknown action";
	return 400;
}

static void
gate_upgrade_cancel(void *state, struct wsp_conn *c)
{
	struct gate *g = state;
	struct pending *p, *next;

	for (p = g->pending; p != NULL; p = next) {
		next = p->next;
		if (p->c != c)
			continue;
		if (p->t != NULL)
			g->host->timer_cancel(p->t);
		pending_drop(g, p);
	}
	g->host->log(g->ctx, WSP_LOG_INFO, NULL, "%s: cancelled", g->name);
}

static void
gate_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct gate *g = state;
	struct wsp_conn_info info;
	const char *user = g->host->conn_user(c);
	json_t *reply, *id = NULL;

	g->host->conn_info(c, &info);
	if (m->id != NULL)
		id = json_stringn(m->id, m->id_len);
	reply = json_pack("{s:s, s:s?, s:s, s:O?, s:o?}", "type", "whoami",
	    "user", user, "info_user", info.user, "role",
	    g->host->attr_read(c, g->name, "role"), "id_text", id);
	g->host->send_json(c, reply);
	json_decref(reply);
}

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "gate",
	.version = "1",
	.load = gate_load,
	.unload = gate_unload,
	.message = gate_message,
	.upgrade = gate_upgrade,
	.upgrade_cancel = gate_upgrade_cancel,
};
