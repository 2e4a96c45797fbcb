/*
 * dispatch.c: a complete message to the plugin that handles it.
 *
 * conn.c hands every complete message to the server's message hook, which
 * server.c points here.  Text messages are JSON objects routed by their
 * "type" string; the JSON is
 * parsed once here and lent to the plugin.  A plugin that claimed "*" gets
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
unknown_type(struct wsp_conn *c, json_t *msg, const char *type)
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
	dispatch_error(c, "unknown_type", json_object_get(msg, "id"),
	    "no handler for type \"%s\"%s", shown,
	    n < strlen(type) ? " (truncated)" : "");
}

static void
deliver_raw(struct plugin_set *set, struct wsp_conn *c, uint8_t opcode,
    const uint8_t *data, size_t len)
{
	struct wsp_message m = {
		.type = NULL,
		.json = NULL,
		.data = data,
		.len = len,
		.binary = opcode == WS_OP_BINARY,
	};

	plugin_call_message(set->catch_all, c, &m);
}

void
dispatch_message(struct wsp_server *srv, struct wsp_conn *c, uint8_t opcode,
    uint8_t *data, size_t len)
{
	struct plugin_set *set = srv->plugins;
	struct wsp_plugin_ctx *to;
	struct wsp_message m;
	json_error_t err;
	json_t *msg, *type;

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
			unknown_type(c, msg, json_string_value(type));
		json_decref(msg);
		return;
	}
	m.type = json_string_value(type);
	m.json = msg;
	m.data = data;
	m.len = len;
	m.binary = 0;
	plugin_call_message(to, c, &m);
	json_decref(msg);
}
