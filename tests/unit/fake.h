/*
 * fake.h: one in-memory server for the unit tests and the fuzzers, so
 * none of them sets a core structure's private fields by hand.
 *
 * The server is core's own server_setup() (the one -t uses) over a
 * configuration with the limits the tests need; plugins are compiled in
 * (plugin_ctx_builtin) rather than dlopen()ed; a connection is open, has
 * no socket, and keeps its output queued in c->out for the caller to read
 * back, because it looks to conn.c as if its own read were running.
 */
#ifndef FAKE_H
#define FAKE_H

#include "wsplugd.h"

extern struct wsp_config fake_cfg;
extern struct wsp_server fake_srv;

/* Log errors only to stderr; the server over fake_cfg.  0 or -1. */
int fake_init(void);
void fake_fini(void);
/* An empty set that becomes fake_srv.plugins (the caller frees it and
 * sets fake_srv.plugins to NULL). */
struct plugin_set *fake_set_new(void);
/* A plugin in set for sec with desc, its state the context itself, still
 * loading: plugin_claim() enters claims in set and reports problems to
 * errs at sec's FILE:LINE.  NULL when out of memory. */
struct wsp_plugin_ctx *fake_plugin(struct plugin_set *set,
    const struct wsp_section *sec, const struct wsp_plugin *desc,
    struct wsp_errors *errs);
/* An open connection of fake_srv without a socket, and its end. */
struct wsp_conn *fake_conn_new(void);
void fake_conn_free(struct wsp_conn *c);

#endif /* FAKE_H */
