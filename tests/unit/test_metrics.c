/*
 * test_metrics.c: metrics.c's counters and their Prometheus rendering.
 *
 * The integration suite parses /metrics with an independent parser; this
 * checks the exact text where a parser would be lenient: label escaping of
 * a plugin's free-form version string (quotes, backslashes, newlines,
 * invalid and cut UTF-8), the overflow slot for close codes, and that an
 * unknown refusal reason lands in "other" instead of being lost.
 */
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <event2/buffer.h>

#include "fake.h"
#include "suite.h"


/* The rendered text, NUL-terminated; the caller frees it. */
static char *
render(void)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(metrics_render(&fake_srv, b), 0);
	n = evbuffer_get_length(b);
	s = malloc(n + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p += n)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	fprintf(stderr, "\n    missing line: %s\n", line);
	return 0;
}

static void
test_counters(void)
{
	char *t;
	unsigned code;

	memset(&fake_srv.metrics, 0, sizeof(fake_srv.metrics));
	metrics_refused(&fake_srv, "origin");
	metrics_refused(&fake_srv, "origin");
	metrics_refused(&fake_srv, "no such reason");
	metrics_message_in(&fake_srv, 10);
	metrics_message_out(&fake_srv, 7);
	metrics_message_out(&fake_srv, 3);
	metrics_ping(&fake_srv);
	metrics_reaped(&fake_srv);
	metrics_closed(&fake_srv, 1000);
	metrics_closed(&fake_srv, 1006);
	metrics_closed(&fake_srv, 1000);
	/* more distinct codes than slots: the rest are "other" */
	for (code = 4000; code < 4000 + METRICS_CODES + 3; code++)
		metrics_closed(&fake_srv, (uint16_t)code);
	fake_srv.metrics.reloads_ok = 2;
	fake_srv.metrics.reloads_failed = 1;

	t = render();
	CU_ASSERT(has_line(t, "wsplugd_handshakes_refused_total"
	    "{reason=\"origin\"} 2"));
	CU_ASSERT(has_line(t, "wsplugd_handshakes_refused_total"
	    "{reason=\"other\"} 1"));
	CU_ASSERT(has_line(t, "wsplugd_handshakes_refused_total"
	    "{reason=\"not_found\"} 0"));
	CU_ASSERT(has_line(t, "wsplugd_messages_received_total 1"));
	CU_ASSERT(has_line(t, "wsplugd_bytes_received_total 10"));
	CU_ASSERT(has_line(t, "wsplugd_messages_sent_total 2"));
	CU_ASSERT(has_line(t, "wsplugd_bytes_sent_total 10"));
	CU_ASSERT(has_line(t, "wsplugd_keepalive_pings_sent_total 1"));
	CU_ASSERT(has_line(t, "wsplugd_connections_reaped_total 1"));
	CU_ASSERT(has_line(t, "wsplugd_connections_closed_total"
	    "{code=\"1000\"} 2"));
	CU_ASSERT(has_line(t, "wsplugd_connections_closed_total"
	    "{code=\"1006\"} 1"));
	CU_ASSERT(has_line(t, "wsplugd_connections_closed_total"
	    "{code=\"4000\"} 1"));
	/* 31 slots: 1000, 1006 and 4000..4028 by code, 4029.. as other */
	CU_ASSERT(has_line(t, "wsplugd_connections_closed_total"
	    "{code=\"4028\"} 1"));
	CU_ASSERT_PTR_NULL(strstr(t, "{code=\"4029\"}"));
	CU_ASSERT(has_line(t, "wsplugd_connections_closed_total"
	    "{code=\"other\"} 6"));
	CU_ASSERT(has_line(t, "wsplugd_reloads_total{result=\"ok\"} 2"));
	CU_ASSERT(has_line(t, "wsplugd_reloads_total{result=\"failed\"} 1"));
	CU_ASSERT(has_line(t, "# TYPE wsplugd_connections_closed_total "
	    "counter"));
	CU_ASSERT(has_line(t, "# TYPE wsplugd_connections_active gauge"));
	free(t);
}

static void
test_labels_are_escaped(void)
{
	static const struct wsp_plugin odd = {
		.abi = WSPLUGD_PLUGIN_ABI,
		.name = "odd",
		/* quote, backslash, newline, an invalid byte, a valid é,
		 * and a cut-short three-byte character at the end */
		.version = "1\"2\\3\n4\xff" "5\xc3\xa9" "6\xe2\x82",
	};
	static const struct wsp_section sec = { .file = "test.conf",
	    .name = "odd", .line = 1 };
	struct wsp_errors errs = { NULL, 0 };
	char *t;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fake_set_new());
	fake_srv.plugins->generation = 7;
	CU_ASSERT_PTR_NOT_NULL_FATAL(fake_plugin(fake_srv.plugins, &sec, &odd,
	    &errs));

	t = render();
	CU_ASSERT(has_line(t, "wsplugd_plugin_info{plugin=\"odd\","
	    "version=\"1\\\"2\\\\3\\n4\xef\xbf\xbd" "5\xc3\xa9" "6\","
	    "generation=\"7\"} 1"));
	free(t);
	plugin_set_free(fake_srv.plugins);
	fake_srv.plugins = NULL;
}

static void
test_process_and_build(void)
{
	char *t, *want;

	fake_srv.started_wall_ms = 1700000000123LL;
	t = render();
	CU_ASSERT(has_line(t, "wsplugd_process_start_time_seconds "
	    "1700000000.123"));
	CU_ASSERT(asprintf(&want, "wsplugd_build_info{version=\"%s\","
	    "abi=\"%d\"} 1", PACKAGE_VERSION, WSPLUGD_PLUGIN_ABI) != -1);
	CU_ASSERT(has_line(t, want));
	CU_ASSERT(has_line(t, "wsplugd_connections_active 0"));
	CU_ASSERT(has_line(t, "wsplugd_handshakes_pending 0"));
	CU_ASSERT(has_line(t, "wsplugd_connections_lingering 0"));
	free(want);
	free(t);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "counters as rendered", test_counters },
		{ "label values escaped", test_labels_are_escaped },
		{ "process and build info", test_process_and_build },
	};
	int rc;

	if (fake_init() == -1)
		return 1;
	rc = suite_run("metrics", tests, nitems(tests));
	fake_fini();
	return rc;
}
