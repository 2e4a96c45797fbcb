/*
 * main.c: the command line.
 *
 * wsplugd runs in the foreground: systemd supervises it, so there is no
 * daemonizing and no pid file.  Start-up validates everything
 * (configuration, every plugin, every listener) before it serves anything,
 * and refuses to start with a precise error otherwise; -t runs the same
 * validation and stops there.  Started as root with [server] user set, it
 * drops to that user once the listeners are bound (privdrop.c).
 */
#include <sys/resource.h>

#include <limits.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "wsplugd.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef PLUGINDIR
#define PLUGINDIR "/usr/lib/wsplugd/plugins"
#endif

#define DEFAULT_CONFIG SYSCONFDIR "/wsplugd/wsplugd.conf"

/* What SIGUSR2 starts (handover.c): this binary's path as it was when we
 * started, so that the file installed there since is what runs, with our
 * own arguments; and in a process started that way, the channel to the
 * old one (HANDOVER_ENV), until serve() takes it. */
static char exec_path[PATH_MAX];
static char **exec_argv;
static int handover_fd = -1;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: wsplugd [-c FILE] [-t] [-l LEVEL] [-U] [-V] [-h]\n"
	    "  -c, --config=FILE      configuration file (default %s)\n"
	    "  -t, --test             check the configuration and plugins, "
	    "then exit\n"
	    "  -l, --log-level=LEVEL  log level: debug, info, warn, error "
	    "(overrides the file)\n"
	    "  -U                     development trees only: warn about, "
	    "rather than\n"
	    "                         refuse, configuration and plugin files "
	    "others\n"
	    "                         could change\n"
	    "  -V, --version          print the version and plugin ABI, then "
	    "exit\n"
	    "  -h, --help             print this help, then exit\n",
	    DEFAULT_CONFIG);
}

static int
parse_level(const char *s)
{
	int i;

	for (i = WSP_LOG_DEBUG; i <= WSP_LOG_ERROR; i++)
		if (strcmp(s, log_level_name(i)) == 0)
			return i;
	return -1;
}

static void
print_errors(const struct wsp_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		fprintf(stderr, "%s\n", e->msg[i]);
}

/* Allow as many descriptors as the hard limit permits: each connection is
 * one, and the default soft limit of 1024 would cap the daemon far below
 * max_connections. */
static void
raise_nofile(const struct wsp_config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY &&
	    cfg->max_connections + 64 > (uint64_t)rl.rlim_cur)
		log_msg(WSP_LOG_WARN, "daemon.limit",
		    "max_connections %llu exceeds the open-file limit %llu: "
		    "accept will fail before the limit is reached",
		    (unsigned long long)cfg->max_connections,
		    (unsigned long long)rl.rlim_cur);
}

/*
 * The loop is over and the process is leaving.  Freeing the signal events
 * gives each signal back its default action, which for a stop signal is
 * death: a SIGTERM that comes late (killall or pkill reach a worker just
 * after the master's own SIGTERM stopped it) would then kill a process in
 * the middle of a clean exit, and the master would report the stop as
 * unclean.  They are held off instead; exit discards them.
 */
static void
quiet_late_signals(void)
{
	sigset_t late;

	sigemptyset(&late);
	sigaddset(&late, SIGTERM);
	sigaddset(&late, SIGINT);
	sigaddset(&late, SIGQUIT);
	sigaddset(&late, SIGHUP);
	sigaddset(&late, SIGUSR1);
	sigaddset(&late, SIGUSR2);
	sigprocmask(SIG_BLOCK, &late, NULL);
}

/* Run the server on cfg until it is told to stop: the whole daemon when
 * workers = 1, one worker process otherwise (hooks from workers.c).  *cfgp
 * is the configuration in force at the end, for the caller to free. */
static int
serve(struct wsp_config **cfgp, const char *file, int level,
    const struct server_hooks *hooks)
{
	struct wsp_errors errs = { NULL, 0 };
	struct wsp_config *cfg = *cfgp;
	struct wsp_server srv;
	struct server_hooks ho_hooks;
	struct handover_child *hc = NULL;
	int ho_fd = handover_fd;
	size_t i;

	/* Started by a hand-over: the old process's listeners first, so
	 * that listen.c and admin.c take them instead of binding. */
	if (ho_fd >= 0 && hooks == NULL) {
		handover_fd = -1;
		if ((hc = handover_child_new(ho_fd, cfg->handover_timeout,
		    &errs)) == NULL) {
			for (i = 0; i < errs.n; i++)
				log_msg(WSP_LOG_ERROR, "handover.failed", "%s",
				    errs.msg[i]);
			errors_clear(&errs);
			return 1;
		}
		/* A master's sockets, one per worker: one process cannot
		 * take them all (wsplugd(8): the worker count stays). */
		if (handover_child_group(hc) > 1) {
			handover_child_refuse(ho_fd, NULL, "the running daemon "
			    "has workers > 1, the new configuration one: the "
			    "worker count cannot change in a hand-over");
			log_msg(WSP_LOG_ERROR, "handover.failed", "the running "
			    "daemon has %zu workers, the new configuration 1",
			    handover_child_group(hc));
			handover_child_done(hc);
			return 1;
		}
		ho_hooks.setup = handover_child_setup;
		ho_hooks.arg = hc;
		hooks = &ho_hooks;
	} else
		ho_fd = -1;

	/* Every process that accepts keeps its own reserve descriptor. */
	if (fdlimit_init() == -1)
		log_msg(WSP_LOG_WARN, "daemon.limit", "cannot open /dev/null "
		    "as the reserve descriptor: %s", strerror(errno));
	if (server_init(&srv, cfg, hooks, &errs) == -1) {
		if (ho_fd >= 0)
			handover_child_refuse(ho_fd, &errs, NULL);
		for (i = 0; i < errs.n; i++)
			log_msg(WSP_LOG_ERROR, "config.error", "%s",
			    errs.msg[i]);
		if (cfg->log_target != LOG_TARGET_STDERR)
			print_errors(&errs);
		server_free(&srv);
		errors_clear(&errs);
		return 1;
	}
	/* Listeners bound, log open: root is no longer needed.  A worker
	 * was forked by a master that has already switched (workers.c), so
	 * there this finds the user in place and changes nothing. */
	if (privdrop_apply(cfg, &errs) == -1) {
		for (i = 0; i < errs.n; i++)
			log_msg(WSP_LOG_ERROR, "daemon.error", "%s",
			    errs.msg[i]);
		server_free(&srv);
		errors_clear(&errs);
		return 1;
	}
	srv.config_file = file;
	srv.log_level_override = level;
	srv.default_plugin_dir = PLUGINDIR;
	srv.exec_path = exec_path[0] != '\0' ? exec_path : NULL;
	srv.exec_argv = exec_argv;
	if (keepalive_start(&srv) == -1 || server_signals(&srv) == -1) {
		log_msg(WSP_LOG_ERROR, "daemon.error",
		    "cannot set up timers and signals");
		server_free(&srv);
		return 1;
	}
	if (srv.handover_child != NULL && handover_child_run(&srv) == -1) {
		/* The old process keeps every connection: leave without a
		 * word on any of them. */
		log_detach();
		_exit(1);
	}
	{
		struct log_line *l = log_begin(WSP_LOG_INFO, "daemon.start");

		log_str(l, "version", PACKAGE_VERSION);
		log_int(l, "abi", WSPLUGD_PLUGIN_ABI);
		log_int(l, "pid", getpid());
		log_str(l, "config", file);
		log_str(l, "path", cfg->path);
		log_end(l);
	}
	if (histstore_start(&srv) == -1)
		log_msg(WSP_LOG_WARN, "history.store", "cannot keep the bus "
		    "history for systemd: out of memory");
	if (notify_start(&srv) == -1)
		log_msg(WSP_LOG_WARN, "notify.error", "cannot set up systemd "
		    "notification: out of memory");
	event_base_dispatch(srv.base);
	quiet_late_signals();
	server_log_summary(&srv);
	*cfgp = srv.cfg; /* a reload may have replaced it */
	server_free(&srv);
	return 0;
}

int
main(int argc, char *argv[])
{
	struct wsp_errors errs = { NULL, 0 }, warns = { NULL, 0 };
	struct wsp_config *cfg;
	struct wsp_server srv;
	const char *file = DEFAULT_CONFIG;
	int ch, check = 0, level = -1, rc = 1;
	size_t i;
	/* The GNU long forms an administrator types first; each is a
	 * synonym of its short option. */
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	log_libevent();
	exec_argv = argv;
	{
		ssize_t n = readlink("/proc/self/exe", exec_path,
		    sizeof(exec_path) - 1);
		const char *e = getenv(HANDOVER_ENV);
		char *end;
		long fd;

		if (n > 0)
			exec_path[n] = '\0';
		else if (realpath(argv[0], exec_path) == NULL)
			exec_path[0] = '\0';
		if (e != NULL) {
			fd = strtol(e, &end, 10);
			if (*e != '\0' && *end == '\0' && fd > 2 &&
			    fd < INT_MAX)
				handover_fd = (int)fd;
			unsetenv(HANDOVER_ENV);
		}
	}
	while ((ch = getopt_long(argc, argv, "c:tl:UVh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'U':
			trust_relax(1);
			break;
		case 'l':
			if ((level = parse_level(optarg)) == -1) {
				fprintf(stderr, "wsplugd: unknown log level "
				    "'%s' (debug, info, warn, error)\n", optarg);
				return 1;
			}
			break;
		case 'V':
			printf("wsplugd %s (plugin ABI %d)\n", PACKAGE_VERSION,
			    WSPLUGD_PLUGIN_ABI);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}

	if ((cfg = config_load(file, PLUGINDIR, &errs)) == NULL) {
		if (handover_fd >= 0) /* a hand-over: tell the old one */
			handover_child_refuse(handover_fd, &errs, NULL);
		print_errors(&errs);
		errors_clear(&errs);
		return 1;
	}
	if (level != -1)
		cfg->log_level = level;
	if (check) {
		/* Plugins log their load at info; -t prints only the
		 * verdict and the errors. */
		log_init(WSP_LOG_WARN, cfg->log_format, LOG_TARGET_STDERR,
		    NULL, "wsplugd");
		if (server_setup(&srv, cfg) == -1)
			errors_add(&errs, NULL, 0,
			    "cannot initialise: out of memory");
		else if ((srv.tls_ctx = tls_ctx_new(cfg, &errs,
		    &warns)) == NULL && errs.n > 0)
			; /* the certificate or key is unusable */
		else if ((srv.plugins = plugin_set_build(&srv, cfg, NULL,
		    &errs)) != NULL)
			rc = 0;
		for (i = 0; i < warns.n; i++)
			fprintf(stderr, "warning: %s\n", warns.msg[i]);
		errors_clear(&warns);
		if (rc == 0)
			printf("%s: configuration OK\n", file);
		else
			print_errors(&errs);
		server_free(&srv);
		goto done;
	}
	if (log_init(cfg->log_level, cfg->log_format, cfg->log_target,
	    cfg->log_file, "wsplugd") == -1) {
		fprintf(stderr, "%s: cannot open log file %s: %s\n", file,
		    cfg->log_file, strerror(errno));
		goto done;
	}
	signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code */
	raise_nofile(cfg);
	if (cfg->workers > 1) {
		struct workers_exec ex = { exec_path[0] != '\0' ? exec_path :
		    NULL, exec_argv, NULL };

		/* Started by a hand-over: the master takes the old one's
		 * sockets (workers.c); its workers, the connections. */
		if (handover_fd >= 0 && (ex.hc = handover_child_new(
		    handover_fd, cfg->handover_timeout, &errs)) == NULL) {
			for (i = 0; i < errs.n; i++)
				log_msg(WSP_LOG_ERROR, "handover.failed", "%s",
				    errs.msg[i]);
			goto done;
		}
		handover_fd = -1;
		rc = workers_run(&cfg, file, level, PLUGINDIR, serve, &ex);
	} else
		rc = serve(&cfg, file, level, NULL);
done:
	config_free(cfg);
	errors_clear(&errs);
	fdlimit_fini();
	log_fini();
	libevent_global_shutdown();
	return rc;
}
