# The load generator, installed as wsplugd-bench(1), and `make bench`, the
# comparison with the Node.js ws, Bun and libwebsockets peers
# (bench/README.md).
# The peers are built by bench/run when it runs, not by the main build:
# libwebsockets-dev and npm are benchmark dependencies only.
bin_PROGRAMS = bench/wsplugd-bench
bench_wsplugd_bench_SOURCES = bench/wsplugd-bench.c
bench_wsplugd_bench_CPPFLAGS = $(AM_CPPFLAGS) $(LIBSSL_CFLAGS) \
	$(LIBCRYPTO_CFLAGS) $(ZLIB_CFLAGS)
bench_wsplugd_bench_LDADD = $(LIBSSL_LIBS) $(LIBCRYPTO_LIBS) $(ZLIB_LIBS)

EXTRA_DIST += bench/run bench/README.md bench/deflate-figures \
	bench/peers/node-ws/server.js bench/peers/node-ws/package.json \
	bench/peers/node-ws/package-lock.json \
	bench/peers/bun/server.js bench/peers/bun/package.json \
	bench/peers/bun/package-lock.json \
	bench/peers/lws/lws-peer.c bench/peers/floor/floor.c

# BENCH_ARGS passes options to bench/run, e.g. BENCH_ARGS='--rounds 1'.
bench: all
	$(srcdir)/bench/run --builddir '$(abs_top_builddir)' $(BENCH_ARGS)
.PHONY: bench
