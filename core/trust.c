/*
 * trust.c: whether a file may be trusted with the daemon's privileges.
 *
 * The configuration names the code the daemon runs (plugins) and how it
 * runs; whoever can change either file, or rename something into its
 * place, can run code as the daemon, often root.  So these files are
 * checked as sshd checks its own: the file and every directory above it
 * must be owned by root or by the daemon's user, and writable by neither
 * group nor others.  One exception, as in sshd: a directory owned by root
 * with the sticky bit (/tmp) is a safe ancestor although everyone may
 * write to it, since nobody but root may rename or remove what root keeps
 * there, and the entries below it are checked as usual.
 *
 * A symlink is judged by its target: the path is resolved (realpath) and
 * the resolved chain checked; the directories of the path as written are
 * checked too, because whoever may write the directory holding a link may
 * point the link elsewhere.
 *
 * The check runs at -t, start-up and reload (config_load), for the
 * configuration file and every enabled plugin's file.  Development trees
 * that fail it (a group-writable checkout, say) can be run with -U, which
 * turns refusals into warnings and says so, loudly, each time; the policy
 * is set once from the command line, so it is file-scope state.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsplugd.h"

static int trust_relaxed;

void
trust_relax(int relax)
{
	trust_relaxed = relax;
}

/* One path (a file, or a directory above it): NULL if safe, else why, in
 * buf. */
static const char *
trust_one(const char *path, int is_dir, uid_t uid, char *buf, size_t len)
{
	struct stat st;

	if (stat(path, &st) == -1) {
		/* Nothing there runs or is read: the loader reports a
		 * missing plugin, and the nearest directory that exists
		 * above it is checked, so nobody else can create it. */
		if (errno == ENOENT)
			return NULL;
		snprintf(buf, len, "%s: %s", path, strerror(errno));
		return buf;
	}
	if (is_dir && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
	    (st.st_mode & S_ISVTX) != 0 && st.st_uid == 0)
		return NULL; /* root's sticky directory, such as /tmp */
	if (st.st_uid != 0 && st.st_uid != uid) {
		snprintf(buf, len, "%s is owned by uid %ju, neither root nor "
		    "the daemon's user (uid %ju)", path, (uintmax_t)st.st_uid,
		    (uintmax_t)uid);
		return buf;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(buf, len, "%s is writable by group or others (mode "
		    "%04o)", path, (unsigned)(st.st_mode & 07777));
		return buf;
	}
	return NULL;
}

/* path and every directory above it, as given (absolute or relative to
 * the working directory, which is then checked too). */
static const char *
trust_chain(const char *path, uid_t uid, char *buf, size_t len)
{
	char dir[PATH_MAX], *slash;
	const char *why;

	if ((why = trust_one(path, 0, uid, buf, len)) != NULL)
		return why;
	if (strlen(path) >= sizeof(dir)) {
		snprintf(buf, len, "%s: path too long", path);
		return buf;
	}
	if (path[0] != '/') {
		if (getcwd(dir, sizeof(dir)) == NULL) {
			snprintf(buf, len, "%s: cannot find the working "
			    "directory: %s", path, strerror(errno));
			return buf;
		}
		return trust_chain(dir, uid, buf, len);
	}
	strcpy(dir, path);
	while ((slash = strrchr(dir, '/')) != NULL) {
		if (slash == dir) {
			if (dir[1] == '\0')
				break;
			dir[1] = '\0';
		} else
			*slash = '\0';
		if ((why = trust_one(dir, 1, uid, buf, len)) != NULL)
			return why;
	}
	return NULL;
}

const char *
trust_check(const char *path, uid_t uid, char *buf, size_t len)
{
	char real[PATH_MAX];
	const char *why;

	if ((why = trust_chain(path, uid, buf, len)) != NULL)
		return why;
	if (realpath(path, real) == NULL) {
		if (errno == ENOENT)
			return NULL; /* as in trust_one() */
		snprintf(buf, len, "%s: %s", path, strerror(errno));
		return buf;
	}
	return strcmp(real, path) == 0 ? NULL :
	    trust_chain(real, uid, buf, len);
}

/* Every file cfg makes the daemon trust.  Refusals go to errs; relaxed,
 * they are logged as warnings instead. */
int
trust_config(const struct wsp_config *cfg, uid_t uid, struct wsp_errors *errs)
{
	char buf[PATH_MAX + 256];
	const struct wsp_section *sec;
	const char *why;
	size_t i, before = errs->n;

	if (trust_relaxed)
		log_msg(WSP_LOG_WARN, "trust.relaxed", "-U: configuration "
		    "and plugin files are not checked for safe ownership and "
		    "permissions; for development trees only");
	if ((why = trust_check(cfg->file, uid, buf, sizeof(buf))) != NULL) {
		if (trust_relaxed)
			log_msg(WSP_LOG_WARN, "trust.relaxed", "%s: %s",
			    cfg->file, why);
		else
			errors_add(errs, cfg->file, 0, "%s", why);
	}
	for (i = 0; i < cfg->nplugins; i++) {
		sec = &cfg->plugins[i];
		if (!sec->enabled || sec->path == NULL)
			continue;
		if ((why = trust_check(sec->path, uid, buf, sizeof(buf))) ==
		    NULL)
			continue;
		if (trust_relaxed)
			log_msg(WSP_LOG_WARN, "trust.relaxed", "%s:%d: "
			    "[plugin:%s] %s", sec->file, sec->line, sec->name,
			    why);
		else
			errors_add(errs, sec->file, sec->line, "[plugin:%s] %s",
			    sec->name, why);
	}
	return errs->n > before ? -1 : 0;
}
