# The daemon is main.c over a convenience library of the core modules; the
# unit tests link the same library, so every module is compiled once.
noinst_LTLIBRARIES += core/libwspcore.la
core_libwspcore_la_SOURCES = \
	core/wsplugd.h \
	core/admin.c \
	core/admit.c \
	core/attrs.c \
	core/bus.c \
	core/bus_frame.c \
	core/bus_local.c \
	core/bus_redis.c \
	core/clock.c \
	core/config.c \
	core/config_file.c \
	core/config_value.c \
	core/conn.c \
	core/ctl_msg.c \
	core/deflate.c \
	core/dispatch.c \
	core/drain.c \
	core/errors.c \
	core/fdlimit.c \
	core/handover.c \
	core/handover_child.c \
	core/handover_io.c \
	core/handover_state.c \
	core/histstore.c \
	core/host.c \
	core/json_write.c \
	core/outbuf.c \
	core/http_upgrade.c \
	core/json_read.c \
	core/json_scan.c \
	core/keepalive.c \
	core/limits.c \
	core/listen.c \
	core/log.c \
	core/membudget.c \
	core/metrics.c \
	core/notify.c \
	core/plugin.c \
	core/privdrop.c \
	core/redis_proto.c \
	core/registry.c \
	core/reload.c \
	core/server.c \
	core/slots.c \
	core/timers.c \
	core/trust.c \
	core/upgrade.c \
	core/tls.c \
	core/utf8.c \
	core/workers.c \
	core/ws_codec.c \
	core/zstream.c
core_libwspcore_la_CPPFLAGS = $(AM_CPPFLAGS) $(LIBEVENT_CFLAGS) \
	$(JANSSON_CFLAGS) $(INIH_CFLAGS) $(LIBCRYPTO_CFLAGS) $(LIBSSL_CFLAGS) \
	$(SYSTEMD_CFLAGS) $(ZLIB_CFLAGS) $(HIREDIS_CFLAGS)
core_libwspcore_la_LIBADD = $(LIBEVENT_LIBS) $(JANSSON_LIBS) $(INIH_LIBS) \
	$(LIBCRYPTO_LIBS) $(LIBSSL_LIBS) $(SYSTEMD_LIBS) $(ZLIB_LIBS) $(HIREDIS_LIBS)

sbin_PROGRAMS += core/wsplugd
core_wsplugd_SOURCES = core/main.c
core_wsplugd_CPPFLAGS = $(core_libwspcore_la_CPPFLAGS) \
	-DSYSCONFDIR='"$(sysconfdir)"' -DPLUGINDIR='"$(plugindir)"'
core_wsplugd_LDADD = core/libwspcore.la

# What a plugin author builds against: the header and a pkg-config file.
wsplugdincludedir = $(includedir)/wsplugd
wsplugdinclude_HEADERS = include/wsplugd/plugin.h
pkgconfigdir = $(libdir)/pkgconfig
pkgconfig_DATA = include/wsplugd-plugin.pc
EXTRA_DIST += include/wsplugd-plugin.pc.in
