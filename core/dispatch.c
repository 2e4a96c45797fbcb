/*
 * dispatch.c: a complete message to the plugin that handles it.
 *
 * conn.c hands every complete message to the server's message hook, which
 * server.c points here.  Text messages are JSON objects routed by their
 * "type" string.  The type and the "id" are read from the text without a
 * tree (json_scan.c); the plugin gets the text, and the tree only if it
 * asks (host.c's message_json), built once.  Text the scan declines --
 * invalid JSON, no type, an escaped type -- takes the old path: the tree
 * is built here, so every error answer stays exactly what jansson says,
 * and a message delivered that way lends the tree it already has.
 * A plugin that claimed "*" gets
 * everything no other plugin claims, raw: binary messages, text that is not
 * JSON or has an unknown type.  When nothing but a catch-all is loaded the
 * parse is skipped entirely, which is what an echo relay wants.
 *
 * Without a catch-all, bad input gets an error reply and the connection
 * stays open: the protocol is intact, only the application message was
 * wrong.  Binary data with no one to take it closes with 1003, as RFC 6455
 * 7.4.1 prescribes for data an endpoint cannot accept.
 *
 * The plugin's message callback (plugin.c times it) answers through the
 * host table (host.c), which queues the reply on the connection (conn.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsplugd.h"

void
dispatch_error(struct wsp_conn *c, const char *code, json_t *id,
    const char *fmt, ...)
{
	char text[256];
	json_t *reply;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	reply = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code,
	    "message", text);
	/* Never leave bad input unanswered, even if the detail won't pack. */
	if (reply == NULL)
		reply = json_pack("{s:s, s:s}", "type", "error", "code", code);
	if (reply == NULL)
		return;
	if (id != NULL)
		json_object_set(reply, "id", id);
	host_send_json(c, reply);
	json_decref(reply);
}

/* jansson's error text quotes the input near the error, possibly half a
 * UTF-8 sequence of it: keep the text printable ASCII, in place. */
static const char *
ascii_only(char *text)
{
	char *p;

	for (p = text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return text;
}

/* The error names the type, cut to 64 bytes on a UTF-8 boundary so the
 * reply stays valid JSON whatever the client sent. */
static void
unknown_type(struct wsp_conn *c, json_t *id, const char *type)
{
	char shown[68];
	size_t n = strlen(type);

	if (n > 64) {
		n = 64;
		while (n > 0 && ((unsigned char)type[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(shown, type, n);
	shown[n] = '\0';
	dispatch_error(c, "unknown_type", id,
	    "no handler for type \"%s\"%s", shown,
	    n < strlen(type) ? " (truncated)" : "");
}

static void
deliver_raw(struct plugin_set *set, struct wsp_conn *c, uint8_t opcode,
    const uint8_t *data, size_t len)
{
	struct dispatch_msg d;

	memset(&d, 0, sizeof(d));
	d.magic = DISPATCH_MSG_MAGIC;
	d.m.data = data;
	d.m.len = len;
	d.m.binary = opcode == WS_OP_BINARY;
	plugin_call_message(set->catch_all, c, &d.m);
	json_decref(d.tree);
}

/* The common case: a message the scan read.  1 when it was handled, 0
 * when it takes the tree path (a type too long for the buffer). */
static int
dispatch_scanned(struct plugin_set *set, struct wsp_conn *c, uint8_t opcode,
    uint8_t *data, size_t len, const struct json_scan *sc)
{
	struct dispatch_msg d;
	struct wsp_plugin_ctx *to;
	json_t *id;

	/* A routed type is shown to the plugin as the set holds it; only
	 * one nobody takes is copied, to be ended for the error. */
	if ((to = plugin_set_lookup_n(set, sc->type, sc->type_len,
	    &d.m.type)) == NULL) {
		if (sc->type_len >= sizeof(d.type))
			return 0;
		memcpy(d.type, sc->type, sc->type_len);
		d.type[sc->type_len] = '\0';
		if (set->catch_all != NULL) {
			deliver_raw(set, c, opcode, data, len);
			return 1;
		}
		/* rare: the id's own small tree, for the error reply */
		id = sc->id == NULL ? NULL :
		    json_loadb(sc->id, sc->id_len, JSON_DECODE_ANY, NULL);
		unknown_type(c, id, d.type);
		json_decref(id);
		return 1;
	}
	/* Field by field: this runs for every message, and the type buffer
	 * needs no zeroing. */
	d.magic = DISPATCH_MSG_MAGIC;
	d.tried = 0;
	d.tree = NULL;
	d.m.data = data;
	d.m.len = len;
	d.m.binary = 0;
	d.m.id = sc->id;
	d.m.id_len = sc->id_len;
	plugin_call_message(to, c, &d.m);
	json_decref(d.tree);
	return 1;
}

void
dispatch_message(struct wsp_server *srv, struct wsp_conn *c, uint8_t opcode,
    uint8_t *data, size_t len)
{
	struct plugin_set *set = srv->plugins;
	struct wsp_plugin_ctx *to;
	struct dispatch_msg d;
	struct json_scan sc;
	json_error_t err;
	json_t *msg, *type, *id;
	char *id_text;

	if (opcode == WS_OP_BINARY) {
		if (set->catch_all != NULL)
			deliver_raw(set, c, opcode, data, len);
		else
			conn_close(c, WSP_CLOSE_UNSUPPORTED,
			    "binary messages are not accepted");
		return;
	}
	if (set->ntypes == 0 && set->catch_all != NULL) {
		deliver_raw(set, c, opcode, data, len);
		return;
	}
	if (json_scan((const char *)data, len, &sc) == 0 &&
	    dispatch_scanned(set, c, opcode, data, len, &sc))
		return;
	/* The codec validated UTF-8 already, but the parser checks again;
	 * both its paths bound nesting depth, so hostile input cannot
	 * exhaust the stack. */
	msg = json_read((const char *)data, len, &err);
	if (msg == NULL || !json_is_object(msg)) {
		if (set->catch_all != NULL)
			deliver_raw(set, c, opcode, data, len);
		else if (msg == NULL)
			dispatch_error(c, "invalid_json", NULL,
			    "invalid JSON at position %d: %s", err.position,
			    ascii_only(err.text));
		else
			dispatch_error(c, "invalid_json", NULL,
			    "a message must be a JSON object");
		json_decref(msg);
		return;
	}
	type = json_object_get(msg, "type");
	if (!json_is_string(type)) {
		if (set->catch_all != NULL)
			deliver_raw(set, c, opcode, data, len);
		else
			dispatch_error(c, "missing_type",
			    json_object_get(msg, "id"),
			    type == NULL ? "a message needs a \"type\" string" :
			    "\"type\" must be a string");
		json_decref(msg);
		return;
	}
	if ((to = plugin_set_lookup(set, json_string_value(type))) == NULL) {
		if (set->catch_all != NULL)
			deliver_raw(set, c, opcode, data, len);
		else
			unknown_type(c, json_object_get(msg, "id"),
			    json_string_value(type));
		json_decref(msg);
		return;
	}
	/* The scan declined a message a plugin takes (an escaped type, an
	 * exponent somewhere): its id as text, from the tree. */
	id_text = NULL;
	if ((id = json_object_get(msg, "id")) != NULL &&
	    (id_text = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY)) ==
	    NULL) {
		json_decref(msg);
		return;
	}
	memset(&d, 0, sizeof(d));
	d.magic = DISPATCH_MSG_MAGIC;
	d.m.type = json_string_value(type);
	d.m.data = data;
	d.m.len = len;
	d.m.id = id_text;
	d.m.id_len = id_text != NULL ? strlen(id_text) : 0;
	d.tree = msg;
	d.tried = 1;
	plugin_call_message(to, c, &d.m);
	json_decref(msg);
	free(id_text);
}
