/*
 * admit.c: the handshake policy, who may connect and upgrade.
 *
 * conn.c reads and parses the opening handshake; the decisions that are
 * the operator's rather than RFC 6455's are made here: the global and
 * per-address connection limits, the allowed origins, and which of the
 * configured subprotocols is chosen.  A refusal, whatever decided it, is
 * counted, labelled for the metrics and logged (ws.refuse) here too, so
 * conn.c only writes the status and lingers.
 *
 * Every function answers 0 (admitted) or the HTTP status to refuse with,
 * with the metrics label and the text for the response body.
 *
 * Both limits are checked at accept, on plain and TLS listeners alike, and
 * count a connection from its accept to its close(2): still in the
 * handshake, open, closing, or lingering after a refusal.  So idle
 * handshakes from one address cannot take every place, and the sockets a
 * refusal or a close keeps for its linger are within max_connections.
 * admit_accept marks the places it took on the connection (held_conn,
 * held_ip, ip_counted) and admit_release, called once from conn_free,
 * gives them back.  A client over a limit takes no place: conn.c answers
 * it at once and closes its socket.
 *
 * With workers > 1 (srv->limits set) the two limits count every worker's
 * connections (limits.c); one process counts its own (srv->nheld and the
 * registry's table of addresses).
 */
#include <string.h>
#include <strings.h>

#include "wsplugd.h"

int
admit_accept(struct wsp_server *srv, struct wsp_conn *c,
    const char **reason_r, const char **why_r)
{
	const struct wsp_config *cfg = srv->cfg;
	uint64_t per_ip = cfg->max_connections_per_ip;
	int rv = 1;

	if (srv->draining) {
		*reason_r = "shutting_down";
		*why_r = "server is restarting or shutting down";
		return 503;
	}
	/* Every socket that holds a place counts, whatever its state:
	 * handshaking, open, closing, or lingering after a refusal. */
	if (srv->limits != NULL ?
	    limits_conn_take(srv->limits, cfg->max_connections) == -1 :
	    srv->nheld >= cfg->max_connections) {
		*reason_r = "max_connections";
		*why_r = "too many connections";
		return 503;
	}
	if (srv->limits == NULL)
		srv->nheld++;
	c->held_conn = 1;
	if (per_ip > 0 && srv->limits != NULL) {
		rv = limits_ip_take(srv->limits, c->ip, per_ip);
		c->held_ip = rv == 0;
	}
	/* rv 1: counted by this process (one process, or the shared table
	 * has no room for the address) */
	if (per_ip > 0 && (rv == -1 ||
	    (rv == 1 && registry_ip_count(&srv->reg, c->ip) >= per_ip))) {
		admit_release(c);
		*reason_r = "max_connections_per_ip";
		*why_r = "too many connections from this address";
		return 503;
	}
	if (registry_ip_ref(&srv->reg, c->ip) == -1) {
		admit_release(c);
		*reason_r = "other";
		*why_r = "out of memory";
		return 503;
	}
	c->ip_counted = 1;
	return 0;
}

/* A connection handed over by the previous process (handover_child.c)
 * held its places there; it takes them here without being judged: the
 * daemon as a whole has not gained a client, and refusing one now would
 * close a connection the hand-over promised to keep. */
int
admit_adopt(struct wsp_server *srv, struct wsp_conn *c)
{
	if (srv->limits != NULL) {
		limits_conn_take(srv->limits, UINT64_MAX);
		if (srv->cfg->max_connections_per_ip > 0)
			c->held_ip = limits_ip_take(srv->limits, c->ip,
			    UINT64_MAX) == 0;
	} else
		srv->nheld++;
	c->held_conn = 1;
	if (registry_ip_ref(&srv->reg, c->ip) == -1) {
		admit_release(c);
		return -1;
	}
	c->ip_counted = 1;
	return 0;
}

void
admit_release(struct wsp_conn *c)
{
	struct wsp_server *srv = c->srv;

	if (c->held_conn) {
		if (srv->limits != NULL)
			limits_conn_put(srv->limits);
		else
			srv->nheld--;
	}
	if (c->held_ip)
		limits_ip_put(srv->limits, c->ip);
	if (c->ip_counted)
		registry_ip_unref(&srv->reg, c->ip);
	c->held_conn = c->held_ip = c->ip_counted = 0;
}

int
admit_gone(const struct wsp_config *cfg, const struct http_str *path)
{
	size_t i;

	for (i = 0; i < cfg->ngone; i++)
		if (strlen(cfg->gone[i]) == path->n &&
		    memcmp(cfg->gone[i], path->p, path->n) == 0)
			return 1;
	return 0;
}

int
admit_origin_allowed(const struct wsp_config *cfg, const struct http_str *o)
{
	size_t i;

	if (cfg->norigins == 0)
		return 1;
	if (o->p == NULL)
		return 0;
	for (i = 0; i < cfg->norigins; i++)
		if (strlen(cfg->origins[i]) == o->n &&
		    strncasecmp(cfg->origins[i], o->p, o->n) == 0)
			return 1;
	return 0;
}

/* The first of the server's subprotocols that the client offers. */
static const char *
admit_subprotocol(const struct wsp_config *cfg, const struct http_request *r)
{
	size_t i, j, n;
	const char *p, *end, *tok;

	for (i = 0; i < cfg->nsubprotocols; i++) {
		n = strlen(cfg->subprotocols[i]);
		for (j = 0; j < r->nprotocols; j++) {
			p = r->protocols[j].p;
			end = p + r->protocols[j].n;
			while (p < end) {
				while (p < end && (*p == ' ' || *p == '\t' ||
				    *p == ','))
					p++;
				tok = p;
				while (p < end && *p != ',' && *p != ' ' &&
				    *p != '\t')
					p++;
				if ((size_t)(p - tok) == n &&
				    memcmp(tok, cfg->subprotocols[i], n) == 0)
					return cfg->subprotocols[i];
			}
		}
	}
	return NULL;
}

int
admit_request(struct wsp_server *srv, const struct http_request *req,
    const char **protocol_r, const char **reason_r, const char **why_r)
{
	const struct wsp_config *cfg = srv->cfg;

	/* A handshake begun before a restart: it would open after the
	 * restart planned its closes, so it is turned away with a slot. */
	if (srv->draining) {
		*reason_r = "shutting_down";
		*why_r = "server is restarting or shutting down";
		return 503;
	}
	if (!admit_origin_allowed(cfg, &req->origin)) {
		*reason_r = "origin";
		*why_r = "origin not allowed";
		return 403;
	}
	*protocol_r = admit_subprotocol(cfg, req);
	return 0;
}

const char *
admit_reason(int status)
{
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
		{ 400, "bad_request" }, { 403, "origin" },
		{ 404, "not_found" }, { 405, "method" },
		{ 410, "gone" }, { 426, "version" },
	};
	size_t i;

	for (i = 0; i < nitems(reasons); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "bad_request";
}

void
admit_refused(struct wsp_server *srv, const char *ip, uint16_t port,
    int status, const char *reason, const char *why)
{
	admit_refused_by(srv, ip, port, status, reason, why, NULL);
}

void
admit_refused_by(struct wsp_server *srv, const char *ip, uint16_t port,
    int status, const char *reason, const char *why, const char *by)
{
	struct log_line *l;

	srv->total_refused++;
	metrics_refused(srv, reason);
	if ((l = log_begin(WSP_LOG_INFO, "ws.refuse")) != NULL) {
		log_str(l, "ip", ip);
		log_uint(l, "port", port);
		log_int(l, "status", status);
		log_str(l, "reason", reason);
		if (by != NULL)
			log_str(l, "plugin", by);
		log_str(l, "detail", why);
		log_end(l);
	}
}
