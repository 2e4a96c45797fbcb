# The shipped configuration, filled in with this build's plugin directory:
# wsplugd.conf for `make install`, wsplugd.build.conf to run the daemon from
# the build tree (`make run`).  One template, so the two cannot drift.
wsplugdconfdir = $(sysconfdir)/wsplugd
wsplugdconf_DATA = etc/wsplugd.conf
noinst_DATA += etc/wsplugd.build.conf
EXTRA_DIST += etc/wsplugd.conf.in
CLEANFILES += etc/wsplugd.conf etc/wsplugd.build.conf

etc/wsplugd.conf: $(srcdir)/etc/wsplugd.conf.in Makefile
	$(AM_V_GEN)$(MKDIR_P) etc && \
	sed -e 's|@plugindir[@]|$(plugindir)|g' \
	    $(srcdir)/etc/wsplugd.conf.in > $@.tmp && mv $@.tmp $@

etc/wsplugd.build.conf: $(srcdir)/etc/wsplugd.conf.in Makefile
	$(AM_V_GEN)$(MKDIR_P) etc && \
	sed -e 's|@plugindir[@]|$(abs_top_builddir)/plugins/.libs|g' \
	    $(srcdir)/etc/wsplugd.conf.in > $@.tmp && mv $@.tmp $@

# The systemd unit, installed where systemd looks when configure found it
# (or --with-systemdsystemunitdir said).
if HAVE_SYSTEMDUNITDIR
systemdsystemunit_DATA = etc/wsplugd.service
endif
noinst_DATA += etc/wsplugd.service
EXTRA_DIST += etc/wsplugd.service.in
CLEANFILES += etc/wsplugd.service

# The watchdog needs the daemon's pings, which need libsystemd: without it
# WatchdogSec=0 turns it off rather than have systemd kill a healthy daemon.
if HAVE_SYSTEMD
WATCHDOG_SEC = 30s
else
WATCHDOG_SEC = 0
endif

etc/wsplugd.service: $(srcdir)/etc/wsplugd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) etc && \
	sed -e 's|@sbindir[@]|$(sbindir)|g' \
	    -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	    -e 's|@SERVICE_TYPE[@]|$(SERVICE_TYPE)|g' \
	    -e 's|@WATCHDOG_SEC[@]|$(WATCHDOG_SEC)|g' \
	    $(srcdir)/etc/wsplugd.service.in > $@.tmp && mv $@.tmp $@

# Build, then run the daemon in the foreground on the shipped config.
run: all etc/wsplugd.build.conf
	./core/wsplugd -c etc/wsplugd.build.conf
.PHONY: run

# Completion of the options, configuration files and log levels in bash
# (tests/integration/test_completion.py drives it).
bashcompletiondir = $(datadir)/bash-completion/completions
dist_bashcompletion_DATA = etc/bash-completion/wsplugd
