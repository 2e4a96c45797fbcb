/*
 * histstore.c: the bus's history kept in systemd's file descriptor store,
 * so that a crash-restart (Restart=on-failure) or a systemctl restart
 * lets clients resume from their offset.
 *
 * A hand-over carries the history to its successor (handover.c); a
 * process that dies has no successor to tell.  Under systemd it does not
 * need one: the daemon writes its history (bus_store_save's bytes,
 * versioned and CRC-checked) into a memfd it gave the service manager
 * (sd_pid_notify_with_fds, "FDSTORE=1", "FDNAME=bus-history"; the unit
 * sets FileDescriptorStoreMax=), and the manager hands the very same file
 * back to the next process it starts (LISTEN_FDS, LISTEN_FDNAMES).  Being
 * the same file, it is rewritten in place: nothing is sent again after
 * the first time.
 *
 * How often: at most once a second, and only when the bus changed (a
 * publish, or history expired or trimmed), plus once at a clean exit.
 * Each write copies the whole history (up to history_memory), so writing
 * on every publish would cost a copy per message; once a second bounds
 * that to one copy a second whatever the publish rate, on the timer the
 * store already uses for history_ttl.  What a crash loses is the last
 * second at most, and a client whose offset fell in it is told
 * recovered:false and refetches, as it would with no copy at all.  A
 * crash in the middle of a write leaves bytes whose length or CRC does
 * not match: they are refused at the next start, never half-read.
 *
 * At start, the copy is read before any plugin loads (a plugin may
 * subscribe as it loads, and only an empty store takes a history): the
 * last "bus-history" descriptor handed back is checked whole and loaded,
 * or logged (history.restore) and ignored; the process then stores a new
 * memfd of its own, after asking the manager to drop the old one by name
 * (FDSTOREREMOVE=1), so that a successor after a hand-over, which never
 * received the old descriptor, does not leave two behind.
 *
 * Only when built with libsystemd, run under systemd (NOTIFY_SOCKET) and
 * with a backend that keeps its history in this process (the local bus
 * with workers = 1); otherwise every function here does nothing.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "wsplugd.h"

#ifdef HAVE_SYSTEMD

#define HISTSTORE_NAME "bus-history"
#define HISTSTORE_MS 1000 /* at most one write a second */

struct histstore {
	int fd; /* the memfd in the manager's store */
	struct event *tick;
	struct outbuf buf;
	/* the bus as of the last write: unchanged, no write */
	uint64_t published, bytes, channels;
};

static int
histstore_read(struct wsp_server *srv, int fd, const char **why_r)
{
	struct stat st;
	uint8_t *p;
	size_t off = 0, n;
	ssize_t got;
	int rc;

	if (fstat(fd, &st) == -1) {
		*why_r = strerror(errno);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > BUS_HISTORY_MAX + 16) {
		*why_r = "not a file of a bus history's size";
		return -1;
	}
	n = (size_t)st.st_size;
	if ((p = malloc(n)) == NULL) {
		*why_r = "out of memory";
		return -1;
	}
	while (off < n) {
		got = pread(fd, p + off, n - off, (off_t)off);
		if (got == -1 && errno == EINTR)
			continue;
		if (got <= 0) {
			*why_r = got == 0 ? "shorter than its size" :
			    strerror(errno);
			free(p);
			return -1;
		}
		off += (size_t)got;
	}
	rc = bus_history_load(srv->bus, p, n, 0, why_r);
	free(p);
	return rc;
}

void
histstore_restore(struct wsp_server *srv)
{
	struct log_line *l;
	char **names = NULL;
	const char *why = NULL;
	int n, i, fd, done = 0;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	/* the variables go: a hand-over's successor inherits none */
	if ((n = sd_listen_fds_with_names(1, &names)) <= 0)
		return;
	for (i = n - 1; i >= 0; i--) {
		if (names == NULL || strcmp(names[i], HISTSTORE_NAME) != 0)
			continue;
		fd = SD_LISTEN_FDS_START + i;
		if (!done) {
			if (histstore_read(srv, fd, &why) == 0) {
				done = 1;
				if ((l = log_begin(WSP_LOG_INFO,
				    "history.restore")) != NULL) {
					log_uint(l, "channels",
					    srv->metrics.bus_channels);
					log_uint(l, "bytes",
					    srv->metrics.bus_history_bytes);
					log_end(l);
				}
			} else
				log_msg(WSP_LOG_WARN, "history.restore",
				    "the bus history handed back by systemd "
				    "is ignored: %s", why);
		}
		close(fd);
	}
	for (i = 0; names != NULL && i < n; i++)
		free(names[i]);
	free(names);
}

/* The history into the memfd: 1 written, 0 nothing to write, -1. */
static int
histstore_write(struct wsp_server *srv, struct histstore *hs)
{
	size_t off = 0;
	ssize_t put;
	int rc;

	hs->buf.len = 0;
	if ((rc = bus_history_save(srv->bus, &hs->buf)) <= 0)
		return rc;
	/* over the old bytes, then cut to length: a write the process
	 * does not live to finish is refused by length or CRC */
	while (off < hs->buf.len) {
		put = pwrite(hs->fd, hs->buf.p + off, hs->buf.len - off,
		    (off_t)off);
		if (put == -1 && errno == EINTR)
			continue;
		if (put <= 0)
			return -1;
		off += (size_t)put;
	}
	if (ftruncate(hs->fd, (off_t)hs->buf.len) == -1)
		return -1;
	hs->published = srv->metrics.bus_published;
	hs->bytes = srv->metrics.bus_history_bytes;
	hs->channels = srv->metrics.bus_channels;
	return 1;
}

static int
histstore_changed(const struct wsp_server *srv, const struct histstore *hs)
{
	return hs->published != srv->metrics.bus_published ||
	    hs->bytes != srv->metrics.bus_history_bytes ||
	    hs->channels != srv->metrics.bus_channels;
}

static void
histstore_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wsp_server *srv = arg;
	struct histstore *hs = srv->histstore;

	(void)fd;
	(void)what;
	if (histstore_changed(srv, hs) && histstore_write(srv, hs) == -1)
		log_msg(WSP_LOG_WARN, "history.store", "cannot write the bus "
		    "history for systemd: %s", strerror(errno));
}

static void
histstore_close(struct histstore *hs)
{
	if (hs->tick != NULL)
		event_free(hs->tick);
	if (hs->fd != -1)
		close(hs->fd);
	free(hs->buf.p);
	free(hs);
}

int
histstore_start(struct wsp_server *srv)
{
	struct timeval tv = { HISTSTORE_MS / 1000, 0 };
	struct histstore *hs;
	int rc;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	if ((hs = calloc(1, sizeof(*hs))) == NULL)
		return -1;
	if ((hs->fd = memfd_create("wsplugd-bus-history", MFD_CLOEXEC)) ==
	    -1) {
		log_msg(WSP_LOG_WARN, "history.store", "memfd_create: %s",
		    strerror(errno));
		histstore_close(hs);
		return 0;
	}
	if ((rc = histstore_write(srv, hs)) == 0) {
		histstore_close(hs); /* no history kept in this process */
		return 0;
	}
	if (rc == -1) {
		log_msg(WSP_LOG_WARN, "history.store", "cannot write the bus "
		    "history for systemd: %s", strerror(errno));
		histstore_close(hs);
		return 0;
	}
	/* a predecessor's copy goes first: one "bus-history" at a time */
	sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" HISTSTORE_NAME);
	if ((rc = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME="
	    HISTSTORE_NAME, &hs->fd, 1)) < 0) {
		log_msg(WSP_LOG_WARN, "history.store", "cannot give the bus "
		    "history to systemd: %s", strerror(-rc));
		histstore_close(hs);
		return 0;
	}
	if ((hs->tick = event_new(srv->base, -1, EV_PERSIST, histstore_tick_cb,
	    srv)) == NULL || event_add(hs->tick, &tv) == -1) {
		histstore_close(hs);
		return -1;
	}
	srv->histstore = hs;
	return 0;
}

void
histstore_free(struct wsp_server *srv)
{
	struct histstore *hs = srv->histstore;

	if (hs == NULL)
		return;
	/* the last word before a clean exit: systemctl restart keeps the
	 * store for the next process */
	if (srv->bus != NULL && histstore_changed(srv, hs) &&
	    histstore_write(srv, hs) == -1)
		log_msg(WSP_LOG_WARN, "history.store", "cannot write the bus "
		    "history for systemd: %s", strerror(errno));
	histstore_close(hs);
	srv->histstore = NULL;
}

#else /* !HAVE_SYSTEMD */

void
histstore_restore(struct wsp_server *srv)
{
	(void)srv;
}

int
histstore_start(struct wsp_server *srv)
{
	(void)srv;
	return 0;
}

void
histstore_free(struct wsp_server *srv)
{
	(void)srv;
}

#endif /* HAVE_SYSTEMD */
