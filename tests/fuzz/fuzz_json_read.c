/*
 * fuzz_json_read.c: json_read (core/json_read.c) against json_loadb, and
 * json_write (core/json_write.c) against json_dumps.
 *
 * json_read promises exactly json_loadb(buf, len, 0, err), with a fast
 * path for the common messages that declines everything it does not
 * treat as jansson does.  The whole input is the JSON text.  Oracles:
 *
 *  1. both fail, with the same json_error_t (text, position, line,
 *     column, source), or both succeed with the same json_dumps
 *     (JSON_COMPACT) text -- key order and duplicate keys included -- and
 *     json_equal trees; on success the error struct is left as jansson
 *     leaves it too;
 *  2. whatever the fast path alone takes, jansson takes, to the same tree:
 *     the fast path may decline anything, but never accept what jansson
 *     rejects;
 *  3. the input is not written to;
 *  4. json_write (core/json_write.c), which serializes every reply, writes
 *     the parsed tree as json_dumps does, byte for byte.
 *
 * The input is an exact-size heap copy, so ASan reports any read past the
 * end; LeakSanitizer checks that a declined parse freed what it built.
 */
#include <jansson.h>

#include "wsplugd.h"
#include "fuzz.h"

static char *
dump(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	/* jansson's dumper refuses only out of memory or on a string that
	 * is not UTF-8, which json_stringn_nocheck would have let in */
	CHECK(s != NULL, "json_dumps fails: a string is not UTF-8?");
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p = (char *)fuzz_dup(data, size);
	json_error_t e1, e2;
	json_t *a, *b, *f;
	char *da, *db, *df;
	static struct outbuf w; /* kept between runs, as the daemon keeps it */

	memset(&e1, 0xA5, sizeof(e1));
	memset(&e2, 0xA5, sizeof(e2));
	a = json_read(p, size, &e1);
	b = json_loadb(p, size, 0, &e2);
	f = json_read_fast(p, size);
	CHECK(memcmp(p, data, size) == 0, "the input was modified");

	/* 1 */
	if (a == NULL || b == NULL) {
		CHECK(a == NULL && b == NULL, "json_read %s, json_loadb %s "
		    "(%s at %d)", a ? "succeeds" : "fails",
		    b ? "succeeds" : "fails", b ? e1.text : e2.text,
		    b ? e1.position : e2.position);
		CHECK(strcmp(e1.text, e2.text) == 0 &&
		    e1.position == e2.position, "errors differ: json_read "
		    "'%s' at %d, json_loadb '%s' at %d", e1.text, e1.position,
		    e2.text, e2.position);
	} else {
		da = dump(a);
		db = dump(b);
		CHECK(strcmp(da, db) == 0, "trees differ: json_read %s, "
		    "json_loadb %s", da, db);
		CHECK(json_equal(a, b), "json_equal says no: %s", da);
		/* 4 */
		w.len = 0;
		CHECK(json_write(&w, a) == 0, "json_write fails on %s", da);
		CHECK(w.len == strlen(da) && memcmp(w.p, da, w.len) == 0,
		    "json_write %.*s, json_dumps %s", (int)w.len, w.p, da);
		free(da);
		free(db);
	}
	CHECK(memcmp(&e1, &e2, sizeof(e1)) == 0, "json_error_t differs: "
	    "json_read %d:%d@%d '%s' '%s', json_loadb %d:%d@%d '%s' '%s'",
	    e1.line, e1.column, e1.position, e1.source, e1.text, e2.line,
	    e2.column, e2.position, e2.source, e2.text);

	/* 2 */
	if (f != NULL) {
		CHECK(b != NULL, "the fast path takes what jansson rejects: "
		    "'%s' at %d", e2.text, e2.position);
		df = dump(f);
		db = dump(b);
		CHECK(strcmp(df, db) == 0, "fast path %s, json_loadb %s", df,
		    db);
		free(df);
		free(db);
	}

	json_decref(a);
	json_decref(b);
	json_decref(f);
	free(p);
	return 0;
}
