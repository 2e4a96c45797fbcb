# Hand-written mdoc pages, linted by `make check`.
dist_man_MANS = man/wsplugd.8 man/wsplugd.conf.5 man/wsplugd-plugin.7 \
	man/wsplugd-echo.7 man/wsplugd-broadcast.7 man/wsplugd-jwt.7 \
	man/wsplugd-bench.1

# mandoc -Tlint and man --warnings on every page.  The script finds the
# pages next to itself (dirname "$0"), so it works in VPATH builds without
# touching AM_TESTS_ENVIRONMENT, which tests/local.mk owns.
TESTS += man/lint
EXTRA_DIST += man/lint

# The pages against the code: config keys, signals, log events, metrics,
# options, the ABI number and SEE ALSO (man/check-code says how).
TESTS += man/check-code
EXTRA_DIST += man/check-code
