/*
 * notify.c: telling systemd how the daemon is doing, for Type=notify.
 *
 *   READY=1 + STATUS=        once every listener is bound and serving
 *   RELOADING=1 + MONOTONIC_USEC=
 *                            when a SIGHUP reload starts, READY=1 after it,
 *                            whether it succeeded or kept the old config
 *   STOPPING=1               when shutdown begins
 *   STATUS=N active connections
 *                            at most once a second, only when N changed:
 *                            `systemctl status` shows it without a scrape
 *   WATCHDOG=1               every WatchdogSec/2 when the unit sets it,
 *                            from the event loop, so a loop that is stuck
 *                            (a plugin blocking it) stops the pings and
 *                            systemd restarts the daemon
 *
 * Through libsystemd's sd_notify(3), which is optional at configure time:
 * without it, or when NOTIFY_SOCKET is unset (not started by systemd),
 * every function here does nothing and no timer is armed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "wsplugd.h"

#define NOTIFY_STATUS_MS 1000

struct notify {
	struct event *status;   /* every second: STATUS= if the count moved */
	struct event *watchdog; /* every WatchdogSec/2 */
	size_t last_active;
	int failed; /* sd_notify failed once: said so, stay quiet now */
};

#ifdef HAVE_SYSTEMD

static void
notify_send(struct wsp_server *srv, const char *fmt, ...) WSP_PRINTFLIKE(2, 3);

static void
notify_send(struct wsp_server *srv, const char *fmt, ...)
{
	struct notify *n = srv->notify;
	char msg[256];
	va_list ap;
	int rc;

	if (n == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((rc = sd_notify(0, msg)) < 0 && !n->failed) {
		n->failed = 1;
		log_msg(WSP_LOG_WARN, "notify.error", "sd_notify: %s",
		    strerror(-rc));
	}
}

static void
notify_status_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;

	(void)fd;
	(void)what;
	if (srv->reg.count == srv->notify->last_active || srv->draining)
		return;
	srv->notify->last_active = srv->reg.count;
	notify_send(srv, "STATUS=%zu active connections", srv->reg.count);
}

static void
notify_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	notify_send(arg, "WATCHDOG=1");
}

static int
notify_timer(struct wsp_server *srv, struct event **ev_r, uint64_t usec,
    event_callback_fn cb)
{
	struct timeval tv = { (time_t)(usec / 1000000),
	    (suseconds_t)(usec % 1000000) };

	*ev_r = event_new(srv->base, -1, EV_PERSIST, cb, srv);
	return *ev_r == NULL || event_add(*ev_r, &tv) == -1 ? -1 : 0;
}

int
notify_start(struct wsp_server *srv)
{
	uint64_t wd = 0;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	if ((srv->notify = calloc(1, sizeof(*srv->notify))) == NULL)
		return -1;
	if (notify_timer(srv, &srv->notify->status,
	    NOTIFY_STATUS_MS * 1000ULL, notify_status_cb) == -1)
		return -1;
	/* > 0: WATCHDOG_USEC is set and meant for this process */
	if (sd_watchdog_enabled(0, &wd) > 0 && wd > 0 &&
	    notify_timer(srv, &srv->notify->watchdog, wd / 2,
	    notify_watchdog_cb) == -1)
		return -1;
	srv->notify->last_active = srv->reg.count;
	notify_send(srv, "READY=1\nSTATUS=%zu active connections",
	    srv->reg.count);
	return 0;
}

void
notify_reloading(struct wsp_server *srv)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	notify_send(srv, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000);
}

void
notify_ready(struct wsp_server *srv)
{
	notify_send(srv, "READY=1\nSTATUS=%zu active connections",
	    srv->reg.count);
}

void
notify_stopping(struct wsp_server *srv)
{
	notify_send(srv, "STOPPING=1\nSTATUS=shutting down, closing %zu "
	    "connections", srv->reg.count);
}

/* A hand-over: pid serves now.  Sent by the process systemd knows as the
 * main one, so NotifyAccess=main suffices; the successor's READY=1 and
 * everything after it come from the new main process. */
void
notify_mainpid(struct wsp_server *srv, long pid)
{
	notify_send(srv, "MAINPID=%ld\nSTATUS=handed over to pid %ld", pid,
	    pid);
}

#else /* !HAVE_SYSTEMD */

int
notify_start(struct wsp_server *srv)
{
	(void)srv;
	return 0;
}

void
notify_reloading(struct wsp_server *srv)
{
	(void)srv;
}

void
notify_ready(struct wsp_server *srv)
{
	(void)srv;
}

void
notify_stopping(struct wsp_server *srv)
{
	(void)srv;
}

void
notify_mainpid(struct wsp_server *srv, long pid)
{
	(void)srv;
	(void)pid;
}

#endif /* HAVE_SYSTEMD */

void
notify_free(struct wsp_server *srv)
{
	struct notify *n = srv->notify;

	if (n == NULL)
		return;
	if (n->status != NULL)
		event_free(n->status);
	if (n->watchdog != NULL)
		event_free(n->watchdog);
	free(n);
	srv->notify = NULL;
}
