/*
 * lws-peer: wsplugd's protocol on Debian's libwebsockets, written the way
 * the library's examples write a server, for bench/run.
 *
 * A connection_established greeting, ping -> pong after parsing the JSON
 * with jansson (the daemon's JSON library), an error for anything else,
 * binary closes with 1003; libwebsockets' own idle policy sends a protocol
 * ping after 25 s of silence and hangs up after 60.  Replies wait in a
 * per-connection queue and leave one per WRITEABLE callback, as lws
 * requires.  Like the daemon it keeps a registry of its connections with
 * their id, address, user agent and start time.
 *
 *   lws-peer PORT       listens on 127.0.0.1:PORT, path /ws
 *   lws-peer PORT CERT KEY
 *                       the same over TLS (wss://), with this PEM
 *                       certificate and key and the library's TLS
 *                       defaults otherwise
 */
#include <sys/random.h>
#include <sys/resource.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libwebsockets.h>

struct msg {
	struct msg *next;
	size_t len;
	unsigned char buf[]; /* LWS_PRE of headroom, then the payload */
};

struct session {
	struct session *next, *prev; /* the registry */
	char id[33];
	char ip[64];
	char *user_agent;
	int64_t connected_at_ms;
	uint64_t msgs_in, msgs_out;
	struct msg *head, *tail;
	unsigned char *rx; /* a fragmented message */
	size_t rx_len;
};

static struct session *registry;
static size_t registry_count;
static volatile sig_atomic_t interrupted;
static struct lws_context *context;

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
queue_json(struct lws *wsi, struct session *s, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	struct msg *m;
	size_t n;

	if (text == NULL)
		return;
	n = strlen(text);
	if ((m = malloc(sizeof(*m) + LWS_PRE + n)) == NULL) {
		free(text);
		return;
	}
	m->next = NULL;
	m->len = n;
	memcpy(m->buf + LWS_PRE, text, n);
	free(text);
	if (s->tail != NULL)
		s->tail->next = m;
	else
		s->head = m;
	s->tail = m;
	lws_callback_on_writable(wsi);
}

static void
send_error(struct lws *wsi, struct session *s, const char *code,
    const char *message, json_t *id)
{
	json_t *r = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code,
	    "message", message);

	if (r == NULL)
		return;
	if (id != NULL)
		json_object_set(r, "id", id);
	queue_json(wsi, s, r);
	json_decref(r);
}

static void
handle(struct lws *wsi, struct session *s, const char *data, size_t len)
{
	json_error_t err;
	json_t *msg, *type, *r, *id;
	char text[200];

	s->msgs_in++;
	msg = json_loadb(data, len, 0, &err);
	if (msg == NULL || !json_is_object(msg)) {
		snprintf(text, sizeof(text), "invalid JSON: %s",
		    msg == NULL ? err.text : "a message must be an object");
		send_error(wsi, s, "invalid_json", text, NULL);
		json_decref(msg);
		return;
	}
	type = json_object_get(msg, "type");
	id = json_object_get(msg, "id");
	if (!json_is_string(type))
		send_error(wsi, s, "missing_type",
		    "a message needs a \"type\" string", id);
	else if (strcmp(json_string_value(type), "ping") == 0) {
		r = json_pack("{s:s, s:I}", "type", "pong", "timestamp",
		    (json_int_t)wall_ms());
		if (r != NULL) {
			if (id != NULL)
				json_object_set(r, "id", id);
			queue_json(wsi, s, r);
			json_decref(r);
		}
	} else {
		snprintf(text, sizeof(text), "no handler for type \"%.64s\"",
		    json_string_value(type));
		send_error(wsi, s, "unknown_type", text, id);
	}
	json_decref(msg);
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct session *s = user;
	unsigned char raw[16];
	char buf[512];
	struct msg *m;
	json_t *g;
	int i, n;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* Only /ws upgrades. */
		if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_GET_URI) < 0 ||
		    strcmp(buf, "/ws") != 0)
			return 1;
		return 0;

	case LWS_CALLBACK_ESTABLISHED:
		memset(s, 0, sizeof(*s));
		if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
			memset(raw, 0, sizeof(raw));
		for (i = 0; i < 16; i++)
			snprintf(s->id + 2 * i, 3, "%02x", raw[i]);
		lws_get_peer_simple(wsi, s->ip, sizeof(s->ip));
		n = lws_hdr_copy(wsi, buf, sizeof(buf),
		    WSI_TOKEN_HTTP_USER_AGENT);
		s->user_agent = strdup(n > 0 ? buf : "");
		s->connected_at_ms = wall_ms();
		s->next = registry;
		if (registry != NULL)
			registry->prev = s;
		registry = s;
		registry_count++;
		g = json_pack("{s:s, s:s, s:I}", "type",
		    "connection_established", "connectionId", s->id,
		    "timestamp", (json_int_t)s->connected_at_ms);
		if (g != NULL) {
			queue_json(wsi, s, g);
			json_decref(g);
		}
		return 0;

	case LWS_CALLBACK_RECEIVE:
		if (lws_frame_is_binary(wsi)) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
			    (unsigned char *)"binary messages are not accepted",
			    32);
			return -1;
		}
		if (s->rx_len == 0 && lws_is_final_fragment(wsi) &&
		    lws_remaining_packet_payload(wsi) == 0) {
			handle(wsi, s, in, len);
			return 0;
		}
		if (s->rx_len + len > 1024 * 1024) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
			    NULL, 0);
			return -1;
		}
		s->rx = realloc(s->rx, s->rx_len + len);
		if (s->rx == NULL)
			return -1;
		memcpy(s->rx + s->rx_len, in, len);
		s->rx_len += len;
		if (lws_is_final_fragment(wsi) &&
		    lws_remaining_packet_payload(wsi) == 0) {
			handle(wsi, s, (char *)s->rx, s->rx_len);
			free(s->rx);
			s->rx = NULL;
			s->rx_len = 0;
		}
		return 0;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		if ((m = s->head) == NULL)
			return 0;
		if (lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) <
		    (int)m->len)
			return -1;
		s->msgs_out++;
		s->head = m->next;
		if (s->head == NULL)
			s->tail = NULL;
		free(m);
		if (s->head != NULL)
			lws_callback_on_writable(wsi);
		return 0;

	case LWS_CALLBACK_CLOSED:
		while ((m = s->head) != NULL) {
			s->head = m->next;
			free(m);
		}
		free(s->rx);
		free(s->user_agent);
		if (s->prev != NULL)
			s->prev->next = s->next;
		else if (registry == s)
			registry = s->next;
		if (s->next != NULL)
			s->next->prev = s->prev;
		registry_count--;
		return 0;

	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols protocols[] = {
	/* First, so a client that names no subprotocol gets it. */
	{ "wsplugd", callback, sizeof(struct session), 4096, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static const lws_retry_bo_t keepalive = {
	.secs_since_valid_ping = 25,
	.secs_since_valid_hangup = 60,
};

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
	if (context != NULL)
		lws_cancel_service(context);
}

int
main(int argc, char *argv[])
{
	struct lws_context_creation_info info;
	struct rlimit rl;

	if (argc != 2 && argc != 4) {
		fprintf(stderr, "usage: lws-peer PORT [CERT KEY]\n");
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);

	memset(&info, 0, sizeof(info));
	info.port = atoi(argv[1]);
	info.iface = "127.0.0.1";
	info.protocols = protocols;
	info.retry_and_idle_policy = &keepalive;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6 |
	    LWS_SERVER_OPTION_VALIDATE_UTF8;
	if (argc == 4) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = argv[2];
		info.ssl_private_key_filepath = argv[3];
	}
	if ((context = lws_create_context(&info)) == NULL) {
		fprintf(stderr, "lws-peer: lws_create_context failed\n");
		return 1;
	}
	printf("listening 127.0.0.1:%d%s\n", info.port, argc == 4 ? " tls" :
	    "");
	fflush(stdout);
	while (!interrupted)
		if (lws_service(context, 0) < 0)
			break;
	lws_context_destroy(context);
	return 0;
}
