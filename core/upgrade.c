/*
 * upgrade.c: the plugins' say on a handshake, before the 101.
 *
 * conn.c parses the request and asks the handshake policy (admit.c); a
 * request that passes reaches here through the upgrade hook server.c
 * sets.  Every plugin with an upgrade callback is asked in load order,
 * and all must accept: the first refusal answers the client (401, 403,
 * 429... with the plugin's short reason), logged as ws.refuse
 * reason=plugin plugin=NAME and counted under "plugin".  A plugin may
 * also defer -- it asks something slow, or waits on a host timer -- and
 * answer later through the host table's upgrade_answer; the connection
 * then waits without reading, under handshake_timeout, and a plugin that
 * never answers leaves the client its 408.
 *
 * Asking costs nothing when no loaded plugin has the callback: no copy of
 * the request is made.  Otherwise the request head is copied once,
 * NUL-separated, so that plugins get C strings (the request line, the
 * query, every header through request_header) that stay valid until the
 * last plugin has answered, even across a deferral.  The copy goes with
 * the handshake (upgrade_end, which conn.c calls however it ends); a
 * plugin still deciding then is told by its upgrade_cancel callback, so it
 * never answers for a connection that is gone.
 *
 * The answer is kept here; conn_upgrade_resume has conn.c fetch it
 * (upgrade_result) and act on it in the connection's own handler: a
 * plugin's host call never frees or upgrades a connection under its feet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wsplugd.h"

/* A refusal's reason, as the response body and the log show it; the
 * close-reason limit, for one rule across the host table. */
#define UPGRADE_REASON_MAX 123

struct upgrade_header {
	const char *name, *value;
};

struct upgrade {
	struct wsp_conn *c;
	struct plugin_set *set;     /* whose plugins[] next indexes */
	unsigned generation;        /* set's: a reload may free it */
	size_t next;                /* the next plugin to ask */
	struct wsp_plugin_ctx *waiting; /* deferred; NULL when none */
	int in_call;                /* inside a plugin's upgrade callback */
	int status;                 /* the answer, once there is one */
	size_t head_len;
	struct wsp_upgrade_request req;
	struct upgrade_header *hdrs;
	size_t nhdrs;
	char why[UPGRADE_REASON_MAX + 1];
	char by[CONFIG_MAX_PLUGIN_NAME + 1];
	char text[]; /* the head's copy, then the request's strings */
};

static int
upgrade_wanted(const struct plugin_set *set)
{
	size_t i;

	for (i = 0; i < set->nplugins; i++)
		if (set->plugins[i]->desc->upgrade != NULL)
			return 1;
	return 0;
}

/* A C string of s appended at *p. */
static const char *
upgrade_put(char **p, const char *s, size_t n)
{
	char *r = *p;

	memcpy(r, s, n);
	r[n] = '\0';
	*p += n + 1;
	return r;
}

static const char *
upgrade_put_str(char **p, const struct http_str *s)
{
	return upgrade_put(p, s->p != NULL ? s->p : "", s->p != NULL ? s->n : 0);
}

/* The header lines of the copied head, in place: every line after the
 * request line up to the blank one, "Name: value" with the value's
 * surrounding blanks cut.  http_request_parse accepted the head, so
 * lines are CRLF-ended and every header has its colon. */
static int
upgrade_split_headers(struct upgrade *u, char *head, size_t len)
{
	char *p = head, *end = head + len, *eol, *colon, *v, *ve;
	size_t max = 0, i;

	for (i = 0; i < len; i++)
		max += head[i] == '\n';
	if ((u->hdrs = calloc(max + 1, sizeof(*u->hdrs))) == NULL)
		return -1;
	/* past the request line */
	if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
		return 0;
	p = eol + 1;
	while (p < end && (eol = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		ve = eol;
		if (ve > p && ve[-1] == '\r')
			ve--;
		if (ve == p)
			break; /* the blank line */
		*ve = '\0';
		if ((colon = memchr(p, ':', (size_t)(ve - p))) != NULL) {
			*colon = '\0';
			v = colon + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				*--ve = '\0';
			u->hdrs[u->nhdrs].name = p;
			u->hdrs[u->nhdrs].value = v;
			u->nhdrs++;
		}
		p = eol + 1;
	}
	return 0;
}

static const char *
upgrade_header(const struct upgrade *u, const char *name)
{
	size_t i;

	for (i = 0; i < u->nhdrs; i++)
		if (strcasecmp(u->hdrs[i].name, name) == 0)
			return u->hdrs[i].value;
	return NULL;
}

static struct upgrade *
upgrade_new(struct wsp_conn *c, const struct http_request *req,
    const char *head, size_t head_len, const char *proto)
{
	struct upgrade *u;
	const char *q;
	char *p;
	size_t target_n = req->target.n, proto_n = proto ? strlen(proto) : 0;

	/* the head, then method, target, path, query, subprotocol */
	u = calloc(1, sizeof(*u) + head_len + 1 + req->method.n + 1 +
	    2 * (target_n + 1) + 1 + proto_n + 1);
	if (u == NULL)
		return NULL;
	u->c = c;
	u->head_len = head_len;
	memcpy(u->text, head, head_len);
	u->text[head_len] = '\0';
	p = u->text + head_len + 1;
	u->req.method = upgrade_put_str(&p, &req->method);
	u->req.target = upgrade_put_str(&p, &req->target);
	u->req.path = upgrade_put_str(&p, &req->path);
	q = memchr(req->target.p, '?', target_n);
	u->req.query = q == NULL ? upgrade_put(&p, "", 0) : upgrade_put(&p,
	    q + 1, target_n - (size_t)(q + 1 - req->target.p));
	u->req.subprotocol = upgrade_put(&p, proto ? proto : "", proto_n);
	u->req.ip = c->ip;
	u->req.port = c->port;
	if (upgrade_split_headers(u, u->text, head_len) == -1) {
		free(u);
		return NULL;
	}
	u->req.origin = upgrade_header(u, "Origin");
	u->req.user_agent = upgrade_header(u, "User-Agent");
	if (u->req.origin == NULL)
		u->req.origin = "";
	if (u->req.user_agent == NULL)
		u->req.user_agent = "";
	return u;
}

static void
upgrade_free(struct upgrade *u)
{
	if (u == NULL)
		return;
	free(u->hdrs);
	free(u);
}

/* A plugin's refusal: a status we can send, and a reason safe to show. */
static int
upgrade_refusal(struct upgrade *u, struct wsp_plugin_ctx *ctx, int status,
    const char *reason)
{
	size_t n = 0;

	if (status < 400 || status > 599) {
		log_msg(WSP_LOG_WARN, "plugin.error", "[plugin:%s] upgrade "
		    "answered %d, not accept, defer or 400..599: refused "
		    "with 500", ctx->name, status);
		status = 500;
		reason = "internal error";
	}
	if (reason == NULL || reason[0] == '\0')
		reason = http_status_text(status);
	/* The reason goes into a response body and a log line: printable
	 * ASCII only, cut to the limit. */
	for (; reason[n] != '\0' && n < UPGRADE_REASON_MAX; n++)
		u->why[n] = (unsigned char)reason[n] >= 0x20 &&
		    (unsigned char)reason[n] < 0x7f ? reason[n] : '?';
	u->why[n] = '\0';
	snprintf(u->by, sizeof(u->by), "%s", ctx->name);
	return status;
}

/* Ask the plugins from u->next on: 0 when all accepted, CONN_UPGRADE_WAIT
 * when one deferred, else the status one refused with. */
static int
upgrade_run(struct upgrade *u)
{
	struct wsp_plugin_ctx *ctx;
	const char *reason;
	int rc;

	while (u->next < u->set->nplugins) {
		ctx = u->set->plugins[u->next++];
		if (ctx->desc->upgrade == NULL)
			continue;
		reason = NULL;
		u->in_call = 1;
		rc = plugin_call_upgrade(ctx, u->c, &u->req, &reason);
		u->in_call = 0;
		if (rc == WSP_UPGRADE_ACCEPT)
			continue;
		if (rc == WSP_UPGRADE_DEFER) {
			u->waiting = ctx;
			return CONN_UPGRADE_WAIT;
		}
		return upgrade_refusal(u, ctx, rc, reason);
	}
	return 0;
}

int
upgrade_begin(struct wsp_conn *c, const struct http_request *req,
    const char *head, size_t head_len, const char *proto,
    const char **why_r, const char **by_r)
{
	struct upgrade *u;
	int rc;

	if (!upgrade_wanted(c->srv->plugins))
		return 0;
	if ((u = upgrade_new(c, req, head, head_len, proto)) == NULL) {
		*why_r = "out of memory";
		*by_r = NULL;
		return 503;
	}
	u->set = c->srv->plugins;
	u->generation = u->set->generation;
	c->vetting = u;
	rc = upgrade_run(u);
	*why_r = u->why;
	*by_r = u->by;
	return rc;
}

void
upgrade_end(struct wsp_conn *c)
{
	struct upgrade *u = c->vetting;
	struct wsp_plugin_ctx *ctx;

	if (u == NULL)
		return;
	c->vetting = NULL;
	/* A plugin still deciding forgets c -- unless a reload unloaded it
	 * meanwhile, and there is no code left to call. */
	if ((ctx = u->waiting) != NULL) {
		u->waiting = NULL;
		if (plugin_set_has(c->srv->plugins, ctx))
			plugin_call_upgrade_cancel(ctx, c);
	}
	upgrade_free(u);
}

int
upgrade_answer(struct wsp_plugin_ctx *ctx, struct wsp_conn *c, int status,
    const char *reason)
{
	struct upgrade *u = c == NULL ? NULL : c->vetting;
	size_t i;
	int rc;

	if (u == NULL || u->waiting != ctx || u->in_call) {
		log_msg(WSP_LOG_WARN, "plugin.error", "[plugin:%s] "
		    "upgrade_answer for a handshake it is not deciding",
		    ctx->name);
		return -1;
	}
	u->waiting = NULL;
	if (status != WSP_UPGRADE_ACCEPT) {
		u->status = upgrade_refusal(u, ctx, status, reason);
		conn_upgrade_resume(c);
		return 0;
	}
	/* A reload while it waited: go on in the running set, after the
	 * plugin that answered (or from the start if it is gone). */
	if (u->generation != c->srv->plugins->generation) {
		u->set = c->srv->plugins;
		u->generation = u->set->generation;
		u->next = 0;
		for (i = 0; i < u->set->nplugins; i++)
			if (u->set->plugins[i] == ctx)
				u->next = i + 1;
	}
	rc = upgrade_run(u);
	if (rc != CONN_UPGRADE_WAIT) {
		u->status = rc;
		conn_upgrade_resume(c);
	}
	return 0;
}

int
upgrade_result(struct wsp_conn *c, size_t *head_len_r, const char **why_r,
    const char **by_r)
{
	struct upgrade *u = c->vetting;

	if (u == NULL)
		return 500; /* cannot happen: resumed without a record */
	*head_len_r = u->head_len;
	*why_r = u->why;
	*by_r = u->by;
	return u->status;
}

const char *
upgrade_request_header(const struct wsp_conn *c, const char *name)
{
	const struct upgrade *u = c == NULL ? NULL : c->vetting;

	if (u == NULL || name == NULL)
		return NULL;
	return upgrade_header(u, name);
}
