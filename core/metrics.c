/*
 * metrics.c: what the daemon counts.
 *
 * Plain integers bumped on the event loop thread: no atomics, no locks.
 * Refusals are counted by a fixed set of reasons and closes by close code,
 * so the set of series stays bounded whatever clients send.
 */
#include <string.h>

#include "wsplugd.h"

const char *const metrics_refuse_reasons[METRICS_REASONS] = {
	"bad_request", "not_found", "method", "version", "origin",
	"max_connections", "max_connections_per_ip", "header_too_large",
	"handshake_timeout", "shutting_down", "other",
};

void
metrics_refused(struct wsp_server *srv, const char *reason)
{
	size_t i, last = METRICS_REASONS - 1;

	for (i = 0; i < last; i++)
		if (strcmp(metrics_refuse_reasons[i], reason) == 0)
			break;
	srv->metrics.refused[i]++;
}

void
metrics_closed(struct wsp_server *srv, uint16_t code)
{
	size_t i;

	for (i = 0; i < METRICS_CODES - 1; i++) {
		if (srv->metrics.closed[i].code == code)
			break;
		if (srv->metrics.closed[i].code == 0) {
			srv->metrics.closed[i].code = code;
			break;
		}
	}
	srv->metrics.closed[i].n++; /* i == METRICS_CODES - 1: "other" */
}

void
metrics_message_in(struct wsp_server *srv, size_t bytes)
{
	srv->metrics.msgs_in++;
	srv->metrics.bytes_in += bytes;
}

void
metrics_message_out(struct wsp_server *srv, size_t bytes)
{
	srv->metrics.msgs_out++;
	srv->metrics.bytes_out += bytes;
}

void
metrics_ping(struct wsp_server *srv)
{
	srv->metrics.pings++;
}

void
metrics_reaped(struct wsp_server *srv)
{
	srv->metrics.reaps++;
}
