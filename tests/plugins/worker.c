/*
 * worker: a test plugin for the worker processes (workers > 1).
 *
 *   {"type":"whoami"}  answers {"type":"whoami","pid":P,"worker":"N"}: which
 *                      process took the connection (N from WSPLUGD_WORKER)
 *   {"type":"crash"}   dereferences a null pointer inside the message
 *                      callback, so the master must name this plugin and
 *                      "message" when it reaps the worker
 *   {"type":"hang"}    never returns: the loop stops turning and the
 *                      worker_watchdog must kill the worker
 *
 * Key fail_in_worker = N: load fails (with the key's FILE:LINE) in worker
 * N only, so a reload can fail in just one worker's prepare.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wsplugd/plugin.h>

static const struct wsp_host *host;

static int
worker_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *h,
    struct wsp_section *sec, void **state_r)
{
	const char *me = getenv("WSPLUGD_WORKER");
	uint64_t fail;

	(void)ctx;
	host = h;
	*state_r = &host;
	if (h->cfg_uint(sec, "fail_in_worker", 0, 1000, &fail) == -1)
		return -1;
	if (fail != 0 && me != NULL && strtoull(me, NULL, 10) == fail) {
		h->cfg_error(sec, "fail_in_worker", "refusing to load in "
		    "worker %s, as configured", me);
		return -1;
	}
	return 0;
}

static void
worker_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	const char *me = getenv("WSPLUGD_WORKER");
	volatile int *volatile nowhere = NULL;
	json_t *reply;

	(void)state;
	if (strcmp(m->type, "crash") == 0) {
		*nowhere = 1;
		return;
	}
	if (strcmp(m->type, "hang") == 0)
		for (;;)
			sleep(1);
	reply = json_pack("{s:s, s:i, s:s}", "type", "whoami", "pid",
	    (int)getpid(), "worker", me != NULL ? me : "");
	host->send_json(c, reply);
	json_decref(reply);
}

static const char *const worker_types[] = { "whoami", "crash", "hang", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "worker",
	.version = "1",
	.types = worker_types,
	.load = worker_load,
	.message = worker_message,
};
