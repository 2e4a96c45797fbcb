/*
 * fuzz_json_scan.c: json_scan (core/json_scan.c) against json_loadb.
 *
 * The scan reads a message's "type" and "id" without building a tree and
 * may decline anything; dispatch then builds the tree as before.  What it
 * must never do is take text jansson rejects, since a plugin may ask for
 * the tree afterwards.  The whole input is the message text.  Oracles:
 *
 *  1. when the scan takes the input, json_loadb (flags 0) takes it too,
 *     and the tree's "type" is a string with exactly the scanned bytes;
 *  2. the scanned id is there exactly when the tree has an "id", and its
 *     text parses (JSON_DECODE_ANY) to a value json_equal to the tree's;
 *  3. a declined scan leaves nothing in its answer;
 *  4. the input is not written to.
 *
 * The input is an exact-size heap copy, so ASan reports any read past the
 * end.
 */
#include <jansson.h>

#include "wsplugd.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p = (char *)fuzz_dup(data, size);
	struct json_scan sc;
	json_t *tree, *type, *id, *idv;

	if (json_scan(p, size, &sc) == -1) {
		/* 3 */
		CHECK(sc.type == NULL && sc.id == NULL && sc.type_len == 0 &&
		    sc.id_len == 0, "a declined scan left an answer");
	} else {
		/* 1 */
		tree = json_loadb(p, size, 0, NULL);
		CHECK(tree != NULL, "the scan takes what jansson refuses");
		type = json_object_get(tree, "type");
		CHECK(json_is_string(type) &&
		    json_string_length(type) == sc.type_len &&
		    memcmp(json_string_value(type), sc.type,
		    sc.type_len) == 0, "type %.*s is not the tree's",
		    (int)sc.type_len, sc.type);
		/* 2 */
		id = json_object_get(tree, "id");
		CHECK((id == NULL) == (sc.id == NULL),
		    "id in one and not the other");
		if (sc.id != NULL) {
			CHECK(sc.id >= p && sc.id + sc.id_len <= p + size,
			    "id outside the input");
			idv = json_loadb(sc.id, sc.id_len, JSON_DECODE_ANY,
			    NULL);
			CHECK(idv != NULL && json_equal(idv, id),
			    "id text %.*s is not the tree's id",
			    (int)sc.id_len, sc.id);
			json_decref(idv);
		}
		json_decref(tree);
	}
	/* 4 */
	CHECK(memcmp(p, data, size) == 0, "the input was modified");
	free(p);
	return 0;
}
