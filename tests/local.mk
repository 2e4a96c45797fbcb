# Unit tests: one CUnit program per core module, linked against the same
# convenience library as the daemon.
UNIT_CPPFLAGS = $(AM_CPPFLAGS) $(LIBEVENT_CFLAGS) $(JANSSON_CFLAGS) \
	$(INIH_CFLAGS) $(LIBCRYPTO_CFLAGS) $(CUNIT_CFLAGS) \
	-DSRCDIR='"$(abs_top_srcdir)"'
UNIT_LDADD = core/libwspcore.la $(CUNIT_LIBS)

UNIT_TESTS = \
	tests/unit/test_utf8 \
	tests/unit/test_codec \
	tests/unit/test_http_upgrade \
	tests/unit/test_config \
	tests/unit/test_dispatch \
	tests/unit/test_json_read \
	tests/unit/test_json_scan \
	tests/unit/test_json_write \
	tests/unit/test_registry \
	tests/unit/test_limits \
	tests/unit/test_membudget \
	tests/unit/test_metrics \
	tests/unit/test_admit \
	tests/unit/test_listen \
	tests/unit/test_attrs \
	tests/unit/test_upgrade \
	tests/unit/test_timers \
	tests/unit/test_deadlines \
	tests/unit/test_trust \
	tests/unit/test_deflate \
	tests/unit/test_tls \
	tests/unit/test_drain \
	tests/unit/test_handover_state \
	tests/unit/test_handover_io \
	tests/unit/test_bus \
	tests/unit/test_bus_redis \
	tests/unit/test_outbuf \
	tests/unit/test_log
check_PROGRAMS += $(UNIT_TESTS)

tests_unit_test_utf8_SOURCES = tests/unit/test_utf8.c
tests_unit_test_utf8_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_utf8_LDADD = $(UNIT_LDADD)
tests_unit_test_codec_SOURCES = tests/unit/test_codec.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_codec_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_codec_LDADD = $(UNIT_LDADD)
tests_unit_test_http_upgrade_SOURCES = tests/unit/test_http_upgrade.c
tests_unit_test_http_upgrade_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_http_upgrade_LDADD = $(UNIT_LDADD)
tests_unit_test_config_SOURCES = tests/unit/test_config.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_config_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_config_LDADD = $(UNIT_LDADD)
tests_unit_test_dispatch_SOURCES = tests/unit/test_dispatch.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_dispatch_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_dispatch_LDADD = $(UNIT_LDADD)
tests_unit_test_bus_SOURCES = tests/unit/test_bus.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_bus_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_bus_LDADD = $(UNIT_LDADD)
tests_unit_test_bus_redis_SOURCES = tests/unit/test_bus_redis.c
tests_unit_test_bus_redis_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_bus_redis_LDADD = $(UNIT_LDADD)
tests_unit_test_json_read_SOURCES = tests/unit/test_json_read.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_json_read_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_json_read_LDADD = $(UNIT_LDADD)
tests_unit_test_json_scan_SOURCES = tests/unit/test_json_scan.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_json_scan_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_json_scan_LDADD = $(UNIT_LDADD)
tests_unit_test_json_write_SOURCES = tests/unit/test_json_write.c
tests_unit_test_json_write_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_json_write_LDADD = $(UNIT_LDADD)
tests_unit_test_drain_SOURCES = tests/unit/test_drain.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_drain_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_drain_LDADD = $(UNIT_LDADD)
tests_unit_test_limits_SOURCES = tests/unit/test_limits.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_limits_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_limits_LDADD = $(UNIT_LDADD)
tests_unit_test_membudget_SOURCES = tests/unit/test_membudget.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_membudget_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_membudget_LDADD = $(UNIT_LDADD)
tests_unit_test_registry_SOURCES = tests/unit/test_registry.c
tests_unit_test_registry_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_registry_LDADD = $(UNIT_LDADD)
tests_unit_test_metrics_SOURCES = tests/unit/test_metrics.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_metrics_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_metrics_LDADD = $(UNIT_LDADD)
tests_unit_test_admit_SOURCES = tests/unit/test_admit.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_admit_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_admit_LDADD = $(UNIT_LDADD)
tests_unit_test_listen_SOURCES = tests/unit/test_listen.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_listen_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_listen_LDADD = $(UNIT_LDADD)
tests_unit_test_attrs_SOURCES = tests/unit/test_attrs.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_attrs_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_attrs_LDADD = $(UNIT_LDADD)
tests_unit_test_upgrade_SOURCES = tests/unit/test_upgrade.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_upgrade_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_upgrade_LDADD = $(UNIT_LDADD)
tests_unit_test_timers_SOURCES = tests/unit/test_timers.c \
	tests/unit/fake.c tests/unit/fake.h \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_timers_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_timers_LDADD = $(UNIT_LDADD)
tests_unit_test_deadlines_SOURCES = tests/unit/test_deadlines.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_deadlines_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_deadlines_LDADD = $(UNIT_LDADD)
tests_unit_test_trust_SOURCES = tests/unit/test_trust.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_trust_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_trust_LDADD = $(UNIT_LDADD)
tests_unit_test_deflate_SOURCES = tests/unit/test_deflate.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_deflate_CPPFLAGS = $(UNIT_CPPFLAGS) $(ZLIB_CFLAGS)
tests_unit_test_deflate_LDADD = $(UNIT_LDADD) $(ZLIB_LIBS)
tests_unit_test_tls_SOURCES = tests/unit/test_tls.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_tls_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_tls_LDADD = $(UNIT_LDADD)
tests_unit_test_handover_state_SOURCES = tests/unit/test_handover_state.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_handover_state_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_handover_state_LDADD = $(UNIT_LDADD)
tests_unit_test_handover_io_SOURCES = tests/unit/test_handover_io.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_handover_io_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_handover_io_LDADD = $(UNIT_LDADD)
tests_unit_test_outbuf_SOURCES = tests/unit/test_outbuf.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_outbuf_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_outbuf_LDADD = $(UNIT_LDADD)
tests_unit_test_log_SOURCES = tests/unit/test_log.c \
	tests/unit/suite.c tests/unit/suite.h
tests_unit_test_log_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_log_LDADD = $(UNIT_LDADD)

# Integration tests: the real daemon on loopback, driven by Python's
# websockets (Debian's python3-websockets) and raw sockets for the frames
# no conforming client would send.  WSPLUGD_WRAPPER runs the daemon under
# valgrind when set.
INTEGRATION_TESTS = tests/integration/run
TESTS += $(UNIT_TESTS) $(INTEGRATION_TESTS)
AM_TESTS_ENVIRONMENT = \
	WSPLUGD='$(abs_top_builddir)/core/wsplugd'; \
	WSPLUGD_PLUGIN_DIR='$(abs_top_builddir)/plugins/.libs'; \
	WSPLUGD_SRCDIR='$(abs_top_srcdir)'; \
	WSPLUGD_TEST_PLUGIN_DIR='$(abs_top_builddir)/tests/plugins/.libs'; \
	WSPLUGD_BUILDDIR='$(abs_top_builddir)'; \
	WSPLUGD_BENCH='$(abs_top_builddir)/bench/wsplugd-bench'; \
	export WSPLUGD WSPLUGD_PLUGIN_DIR WSPLUGD_SRCDIR WSPLUGD_TEST_PLUGIN_DIR \
	    WSPLUGD_BUILDDIR WSPLUGD_BENCH;



# The daemon as a build that writes another version of the hand-over
# records: what SIGUSR2 meets on a downgrade across an incompatible change
# (tests/integration/test_handover.py).  Its own copies of the files the
# version is compiled into come first, so the library's are not pulled
# in.
check_PROGRAMS += tests/wsplugd-handover-v2
tests_wsplugd_handover_v2_SOURCES = core/main.c core/handover.c \
	core/handover_child.c core/handover_io.c core/handover_state.c
tests_wsplugd_handover_v2_CPPFLAGS = $(core_wsplugd_CPPFLAGS) -DHO_VERSION=1
tests_wsplugd_handover_v2_LDADD = core/libwspcore.la

# Test plugins: shared objects built only for `make check` (-rpath makes
# libtool build them shared although they are never installed).
TEST_PLUGIN_LDFLAGS = $(PLUGIN_LDFLAGS) -rpath /nowhere
check_LTLIBRARIES = tests/plugins/variant_a.la tests/plugins/variant_b.la \
	tests/plugins/timers.la
tests_plugins_variant_a_la_SOURCES = tests/plugins/variant.c
tests_plugins_variant_a_la_CFLAGS = $(PLUGIN_CFLAGS) -DVARIANT='"a"'
tests_plugins_variant_a_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_variant_a_la_LIBADD = $(JANSSON_LIBS)
tests_plugins_variant_b_la_SOURCES = tests/plugins/variant.c
tests_plugins_variant_b_la_CFLAGS = $(PLUGIN_CFLAGS) -DVARIANT='"b"'
tests_plugins_variant_b_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_variant_b_la_LIBADD = $(JANSSON_LIBS)
tests_plugins_timers_la_SOURCES = tests/plugins/timers.c
tests_plugins_timers_la_CFLAGS = $(PLUGIN_CFLAGS)
tests_plugins_timers_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_timers_la_LIBADD = $(JANSSON_LIBS)
check_LTLIBRARIES += tests/plugins/closer.la
tests_plugins_closer_la_SOURCES = tests/plugins/closer.c
tests_plugins_closer_la_CFLAGS = $(PLUGIN_CFLAGS)
tests_plugins_closer_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_closer_la_LIBADD = $(JANSSON_LIBS)
check_LTLIBRARIES += tests/plugins/gate.la tests/plugins/abi2.la
tests_plugins_abi2_la_SOURCES = tests/plugins/badabi.c
tests_plugins_abi2_la_CFLAGS = $(PLUGIN_CFLAGS) -DBADABI=2
tests_plugins_abi2_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_gate_la_SOURCES = tests/plugins/gate.c
tests_plugins_gate_la_CFLAGS = $(PLUGIN_CFLAGS)
tests_plugins_gate_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_gate_la_LIBADD = $(JANSSON_LIBS)
check_LTLIBRARIES += tests/plugins/badabi.la tests/plugins/nodesc.la \
	tests/plugins/worker.la
tests_plugins_worker_la_SOURCES = tests/plugins/worker.c
tests_plugins_worker_la_CFLAGS = $(PLUGIN_CFLAGS)
tests_plugins_worker_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_worker_la_LIBADD = $(JANSSON_LIBS)
tests_plugins_badabi_la_SOURCES = tests/plugins/badabi.c
tests_plugins_badabi_la_CFLAGS = $(PLUGIN_CFLAGS)
tests_plugins_badabi_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_nodesc_la_SOURCES = tests/plugins/nodesc.c
tests_plugins_nodesc_la_CFLAGS = $(PLUGIN_CFLAGS)
tests_plugins_nodesc_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere

# Fuzzing: libFuzzer harnesses built with clang straight from the sources
# (tests/fuzz/README.md).  `make fuzz FUZZ_SECONDS=300` for a longer run.
FUZZ_SECONDS = 60
fuzz:
	$(srcdir)/tests/fuzz/run $(FUZZ_SECONDS)
.PHONY: fuzz

# End-to-end: Debian's headless Chromium runs the example page
# (examples/browser/) and the client package (clients/js/) against the
# real daemon; tests/e2e/run installs the pinned playwright-core with npm
# ci when it is missing.  The client package's own tests (tsc --noEmit on
# a TypeScript consumer, then Node's test runner against the real daemon)
# install the pinned typescript and ws the same way.  Out of a read-only
# source tree (distcheck) that goes into the build tree, which clean-local
# empties again.
TESTS += tests/e2e/run clients/js/test/run
clean-local: clean-e2e
clean-e2e:
	rm -rf tests/e2e/artifacts
	if test '$(abs_top_builddir)' != '$(abs_top_srcdir)'; then \
	    rm -rf tests/e2e/node_modules tests/e2e/package.json \
	        tests/e2e/package-lock.json clients/js/node_modules \
	        clients/js/package.json clients/js/package-lock.json; \
	fi
.PHONY: clean-e2e

# The end-to-end test, the browser example it drives and the client
# package, file by file: a whole directory would also take the build
# tree's logs, screenshots and node_modules.
EXTRA_DIST += tests/e2e/run tests/e2e/seed.test.mjs tests/e2e/daemon.mjs \
	tests/e2e/package.json tests/e2e/package-lock.json \
	examples/browser/index.html examples/browser/README.md \
	clients/js/wsplugd-client.js clients/js/wsplugd-client.d.ts \
	clients/js/package.json clients/js/package-lock.json \
	clients/js/README.md clients/js/LICENSE clients/js/test/run \
	clients/js/test/daemon.test.mjs clients/js/test/unit.test.mjs \
	clients/js/test/consumer.ts clients/js/test/tsconfig.json

# The integration scenarios file by file, for the same reason (a build
# tree's tests/integration holds logs); the fuzz harnesses, their corpora
# and dictionaries as a directory, which no build tree has.
INTEGRATION_FILES = \
	tests/integration/run \
	tests/integration/conftest.py \
	tests/integration/harness.py \
	tests/integration/rawws.py \
	tests/integration/test_admin.py \
	tests/integration/test_bench_smoke.py \
	tests/integration/test_broadcast.py \
	tests/integration/test_bus.py \
	tests/integration/test_redis.py \
	tests/integration/test_discovery.py \
	tests/integration/test_completion.py \
	tests/integration/test_deflate.py \
	tests/integration/test_echo_conformance.py \
	tests/integration/test_framing.py \
	tests/integration/test_handover.py \
	tests/integration/test_handover_workers.py \
	tests/integration/test_handshake.py \
	tests/integration/test_history_store.py \
	tests/integration/test_hardening.py \
	tests/integration/test_jwt.py \
	tests/integration/test_keepalive.py \
	tests/integration/test_lifecycle.py \
	tests/integration/test_limits.py \
	tests/integration/test_logging.py \
	tests/integration/test_logging_private.py \
	tests/integration/test_logging_targets.py \
	tests/integration/test_man_examples.py \
	tests/integration/test_memory.py \
	tests/integration/test_messages.py \
	tests/integration/test_plugin_example.py \
	tests/integration/test_reload.py \
	tests/integration/test_restart.py \
	tests/integration/test_smoke.py \
	tests/integration/test_tls.py \
	tests/integration/test_upgrade.py \
	tests/integration/test_utf8_close.py \
	tests/integration/test_workers.py \
	tests/integration/tlspki.py
EXTRA_DIST += $(INTEGRATION_FILES) tests/fuzz
dist-hook:
	rm -rf $(distdir)/tests/fuzz/__pycache__

# The soak test (not part of `make check`): churn, garbage, oversize frames
# and reloads for SOAK_SECONDS; fails on RSS growth, leaked descriptors,
# or a missed pong.  See tests/soak/soak.py.
SOAK_SECONDS = 600
soak: all
	WSPLUGD='$(abs_top_builddir)/core/wsplugd' \
	WSPLUGD_PLUGIN_DIR='$(abs_top_builddir)/plugins/.libs' \
	    /usr/bin/python3 $(srcdir)/tests/soak/soak.py \
	    --duration $(SOAK_SECONDS)
.PHONY: soak
EXTRA_DIST += tests/soak
