# Each plugin is a libtool module exporting exactly its descriptor.  They
# link jansson themselves and nothing of the daemon's.
PLUGIN_CFLAGS = $(AM_CFLAGS) -fvisibility=hidden $(JANSSON_CFLAGS)
PLUGIN_LDFLAGS = -module -avoid-version -shared -no-undefined \
	-export-symbols-regex '^wsplugd_plugin$$'

plugin_LTLIBRARIES += plugins/ping.la
plugins_ping_la_SOURCES = plugins/ping/ping.c
plugins_ping_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_ping_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_ping_la_LIBADD = $(JANSSON_LIBS)

plugin_LTLIBRARIES += plugins/connection_established.la
plugins_connection_established_la_SOURCES = \
	plugins/connection_established/connection_established.c
plugins_connection_established_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_connection_established_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_connection_established_la_LIBADD = $(JANSSON_LIBS)

plugin_LTLIBRARIES += plugins/echo.la
plugins_echo_la_SOURCES = plugins/echo/echo.c
plugins_echo_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_echo_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_echo_la_LIBADD = $(JANSSON_LIBS)

# dlopen() needs only the .so; libtool's .la files are not shipped.  So
# libtool cannot uninstall the .so either (it reads the .la): we do.
install-data-hook: plugins-remove-la
plugins-remove-la:
	rm -f $(DESTDIR)$(plugindir)/*.la
uninstall-hook: plugins-remove-so
plugins-remove-so:
	for la in $(plugin_LTLIBRARIES); do \
	    rm -f "$(DESTDIR)$(plugindir)/$$(basename "$$la" .la).so"; \
	done
.PHONY: plugins-remove-la plugins-remove-so

# jwt links Debian's libjwt for the signature; token.c, its first look at
# a token, is also compiled alone into tests/fuzz/fuzz_jwt_token.
plugin_LTLIBRARIES += plugins/jwt.la
plugins_jwt_la_SOURCES = plugins/jwt/jwt.c plugins/jwt/token.c \
	plugins/jwt/token.h
plugins_jwt_la_CFLAGS = $(PLUGIN_CFLAGS) $(LIBJWT_CFLAGS) $(LIBCRYPTO_CFLAGS)
plugins_jwt_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_jwt_la_LIBADD = $(JANSSON_LIBS) $(LIBJWT_LIBS) $(LIBCRYPTO_LIBS)

plugin_LTLIBRARIES += plugins/broadcast.la
plugins_broadcast_la_SOURCES = plugins/broadcast/broadcast.c
plugins_broadcast_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_broadcast_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_broadcast_la_LIBADD = $(JANSSON_LIBS)
EXTRA_DIST += examples/plugin-hello/hello.c examples/plugin-hello/Makefile \
	examples/plugin-hello/README.md
