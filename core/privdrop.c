/*
 * privdrop.c: giving up root once the privileged work is done.
 *
 * Started as root (outside systemd, or by a unit without User=), the daemon
 * needs root only to bind ports below 1024 and to open its log file.  With
 * [server] user set, main() binds every listener and opens the log, then
 * calls privdrop_apply(): supplementary groups, group and user are all
 * switched (real, effective and saved), every capability is cleared
 * (bounding, ambient, and the effective, permitted and inheritable sets,
 * with PR_SET_KEEPCAPS off), no_new_privs is set so no later execve() can
 * gain any, and getting root back is tried and must fail.  Plugins are
 * loaded before, as root, at start-up, and as the user at every reload.
 *
 * The user stays for the life of the process: a reload cannot bind a
 * privileged port (its error says why) nor switch to another user
 * (refused, FILE:LINE).  What the process became is file-scope state, like
 * the process identity it mirrors.
 */
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <linux/capability.h>

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "wsplugd.h"

static struct {
	int dropped;
	uid_t uid;
	gid_t gid;
	char user[64];
} P;

static int
privdrop_caps_clear(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3,
	    0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	return (int)syscall(SYS_capset, &hdr, data);
}

int
privdrop_apply(const struct wsp_config *cfg, struct wsp_errors *errs)
{
	const char *step = NULL;
	struct log_line *l;
	int cap;

	if (cfg->user == NULL)
		return 0;
	if (geteuid() != 0) {
		if (geteuid() == cfg->uid && getegid() == cfg->gid)
			return 0; /* started as that user already */
		errors_add(errs, cfg->file, cfg->user_line, "[server] user: "
		    "cannot switch to %s: not started as root", cfg->user);
		return -1;
	}
	/* The bounding set can only be cut while CAP_SETPCAP is held, so
	 * before the switch; EINVAL past the last capability the kernel
	 * knows. */
	for (cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 &&
		    errno == EINVAL)
			break;
	if (setgroups(1, &cfg->gid) == -1)
		step = "setgroups";
	else if (setresgid(cfg->gid, cfg->gid, cfg->gid) == -1)
		step = "setresgid";
	else if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) == -1)
		step = "PR_SET_KEEPCAPS";
	else if (setresuid(cfg->uid, cfg->uid, cfg->uid) == -1)
		step = "setresuid";
	else if (privdrop_caps_clear() == -1)
		step = "capset";
	else if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) ==
	    -1 && errno != EINVAL)
		step = "PR_CAP_AMBIENT_CLEAR_ALL";
	else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		step = "PR_SET_NO_NEW_PRIVS";
	if (step != NULL) {
		errors_add(errs, cfg->file, cfg->user_line, "[server] user: "
		    "cannot switch to %s: %s: %s", cfg->user, step,
		    strerror(errno));
		return -1;
	}
	if (cfg->uid != 0 && (setuid(0) != -1 || seteuid(0) != -1)) {
		errors_add(errs, cfg->file, cfg->user_line, "[server] user: "
		    "switched to %s, but root could be regained", cfg->user);
		return -1;
	}
	P.dropped = 1;
	P.uid = cfg->uid;
	P.gid = cfg->gid;
	snprintf(P.user, sizeof(P.user), "%s", cfg->user);
	if ((l = log_begin(WSP_LOG_INFO, "daemon.privileges")) != NULL) {
		log_str(l, "user", cfg->user);
		log_uint(l, "uid", cfg->uid);
		log_str(l, "group", cfg->group);
		log_uint(l, "gid", cfg->gid);
		log_end(l);
	}
	return 0;
}

int
privdrop_reload_check(const struct wsp_config *cfg, struct wsp_errors *errs)
{
	if (!P.dropped || (cfg->user != NULL && cfg->uid == P.uid &&
	    cfg->gid == P.gid))
		return 0;
	errors_add(errs, cfg->file, cfg->user_line, "[server] user: the "
	    "daemon runs as %s since start-up; another user or group needs "
	    "a restart", P.user);
	return -1;
}

const char *
privdrop_hint(int err)
{
	static char buf[160];

	if (!P.dropped || err != EACCES)
		return "";
	snprintf(buf, sizeof(buf), " (the daemon runs as %s since start-up: "
	    "a port below 1024 needs a restart)", P.user);
	return buf;
}
