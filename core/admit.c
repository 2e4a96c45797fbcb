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
 * with the metrics label and the text for the response body; none of them
 * touches the connection.
 *
 * With workers > 1 (srv->limits set) the two limits count every worker's
 * connections (limits.c): admitting takes a place there, which conn.c
 * marks on the connection and admit_release gives back.  One process
 * counts its own registry, as it always did.
 */
#include <string.h>
#include <strings.h>

#include "wsplugd.h"

int
admit_accept(struct wsp_server *srv, const char **reason_r,
    const char **why_r)
{
	/* Lingering sockets are on their way out and do not count; this
	 * one is already among the handshakes. */
	if (srv->draining) {
		*reason_r = "shutting_down";
		*why_r = "server is shutting down";
		return 503;
	}
	if (srv->limits != NULL ?
	    limits_conn_take(srv->limits, srv->cfg->max_connections) == -1 :
	    srv->reg.count + srv->nhandshake > srv->cfg->max_connections) {
		*reason_r = "max_connections";
		*why_r = "too many connections";
		return 503;
	}
	return 0;
}

void
admit_release(struct wsp_conn *c)
{
	if (c->held_conn)
		limits_conn_put(c->srv->limits);
	if (c->held_ip)
		limits_ip_put(c->srv->limits, c->ip);
	c->held_conn = c->held_ip = 0;
}

/* The per-address limit: the daemon's count with workers > 1 (unless its
 * table is full), else this process's registry. */
static int
admit_ip_over(struct wsp_server *srv, const char *ip, uint64_t max)
{
	int rv;

	if (srv->limits != NULL &&
	    (rv = limits_ip_take(srv->limits, ip, max)) != 1)
		return rv == -1;
	return registry_ip_count(&srv->reg, ip) >= max;
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
admit_address(struct wsp_server *srv, const char *ip, const char **reason_r,
    const char **why_r)
{
	const struct wsp_config *cfg = srv->cfg;

	if (cfg->max_connections_per_ip > 0 &&
	    admit_ip_over(srv, ip, cfg->max_connections_per_ip)) {
		*reason_r = "max_connections_per_ip";
		*why_r = "too many connections from this address";
		return 503;
	}
	return 0;
}

int
admit_request(struct wsp_server *srv, const char *ip, int ip_held,
    const struct http_request *req, const char **protocol_r,
    const char **reason_r, const char **why_r)
{
	const struct wsp_config *cfg = srv->cfg;
	int status;

	if (!admit_origin_allowed(cfg, &req->origin)) {
		*reason_r = "origin";
		*why_r = "origin not allowed";
		return 403;
	}
	/* ip_held: a TLS listener's connection took its address's shared
	 * place at accept (admit_address); taking it again would count it
	 * twice. */
	if (!ip_held && (status = admit_address(srv, ip, reason_r, why_r)) != 0)
		return status;
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
		{ 426, "version" },
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
