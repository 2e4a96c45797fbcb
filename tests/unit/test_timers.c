/*
 * test_timers.c: a plugin's timers (timers.c) on the shared in-memory
 * server's event loop: a one-shot fires once and is freed, a repeating
 * timer repeats until it cancels itself from inside its own callback, and
 * timers_cancel_all() leaves nothing that could fire into an unloaded
 * plugin.  LeakSanitizer and valgrind see that every timer is freed.
 */
#include <event2/event.h>

#include <CUnit/Basic.h>

#include "fake.h"
#include "suite.h"

static const struct wsp_section sec = { .file = "test.conf", .name = "t",
    .line = 1 };
static const struct wsp_plugin desc = { .abi = WSPLUGD_PLUGIN_ABI,
    .name = "t", .version = "1" };

static struct wsp_plugin_ctx *
ctx_new(struct plugin_set **set_r)
{
	static struct wsp_errors errs;
	struct wsp_plugin_ctx *ctx;

	CU_ASSERT_PTR_NOT_NULL_FATAL(*set_r = fake_set_new());
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = fake_plugin(*set_r, &sec, &desc,
	    &errs));
	return ctx;
}

static void
set_free(struct plugin_set *set)
{
	plugin_set_free(set); /* unloads: cancels whatever is left */
	fake_srv.plugins = NULL;
}

static size_t
ntimers(struct wsp_plugin_ctx *ctx)
{
	struct wsp_timer *t;
	size_t n = 0;

	TAILQ_FOREACH(t, &ctx->timers, entry)
		n++;
	return n;
}

/* Run the loop until nothing is pending, at most for a second. */
static void
run_loop(void)
{
	struct timeval tv = { 1, 0 };

	event_base_loopexit(fake_srv.base, &tv);
	event_base_dispatch(fake_srv.base);
}

static int fired;

static void
count(void *arg)
{
	(void)arg;
	fired++;
}

static void
test_one_shot_fires_once(void)
{
	struct plugin_set *set;
	struct wsp_plugin_ctx *ctx = ctx_new(&set);

	fired = 0;
	CU_ASSERT_PTR_NULL(timers_add(ctx, 1, 0, NULL, NULL));
	CU_ASSERT_PTR_NOT_NULL(timers_add(ctx, 1, 0, count, NULL));
	CU_ASSERT_EQUAL(ntimers(ctx), 1);
	run_loop();
	CU_ASSERT_EQUAL(fired, 1);
	CU_ASSERT_EQUAL(ntimers(ctx), 0); /* freed once it fired */
	set_free(set);
}

static struct wsp_timer *self;

static void
cancel_on_third(void *arg)
{
	(void)arg;
	if (++fired == 3)
		timers_cancel(self);
}

static void
test_repeat_cancelled_inside_its_callback(void)
{
	struct plugin_set *set;
	struct wsp_plugin_ctx *ctx = ctx_new(&set);

	fired = 0;
	CU_ASSERT_PTR_NOT_NULL_FATAL(self = timers_add(ctx, 1, 1,
	    cancel_on_third, NULL));
	run_loop();
	CU_ASSERT_EQUAL(fired, 3);
	CU_ASSERT_EQUAL(ntimers(ctx), 0);
	set_free(set);
}

static void
test_cancel_all_before_unload(void)
{
	struct plugin_set *set;
	struct wsp_plugin_ctx *ctx = ctx_new(&set);
	struct wsp_timer *t;

	fired = 0;
	CU_ASSERT_PTR_NOT_NULL(timers_add(ctx, 1, 1, count, NULL));
	CU_ASSERT_PTR_NOT_NULL(timers_add(ctx, 1, 0, count, NULL));
	CU_ASSERT_PTR_NOT_NULL_FATAL(t = timers_add(ctx, 1, 0, count, NULL));
	timers_cancel(t);
	timers_cancel(NULL); /* as a plugin may pass */
	CU_ASSERT_EQUAL(ntimers(ctx), 2);
	timers_cancel_all(ctx);
	CU_ASSERT_EQUAL(ntimers(ctx), 0);
	run_loop();
	CU_ASSERT_EQUAL(fired, 0);
	set_free(set);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "a one-shot fires once and is freed",
		    test_one_shot_fires_once },
		{ "a repeating timer cancelled inside its callback",
		    test_repeat_cancelled_inside_its_callback },
		{ "cancel_all leaves nothing to fire",
		    test_cancel_all_before_unload },
	};
	int rc;

	if (fake_init() == -1)
		return 1;
	rc = suite_run("timers", tests, nitems(tests));
	fake_fini();
	return rc;
}
