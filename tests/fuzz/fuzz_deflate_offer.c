/*
 * fuzz_deflate_offer.c: the Sec-WebSocket-Extensions parser and the
 * permessage-deflate answer (core/deflate.c).
 *
 * The input is split at NUL bytes into up to 8 header values; its first
 * byte picks a server policy.  Oracles:
 *  1. acceptance does not depend on the policy: RFC 7692 lets the server
 *     choose windows and no_context_takeover for any acceptable offer, so
 *     whether an offer is acceptable is the client's doing alone;
 *  2. what is agreed keeps within the policy and the RFC: windows 9..15
 *     (ours) and 8..15 (the client's), never above the policy's, and
 *     no context takeover in both directions when the policy forbids it;
 *  3. the answer fits DEFLATE_ANSWER_MAX, names permessage-deflate, and,
 *     offered back under the same policy, is accepted with the same
 *     parameters (what a client that checks the response parses);
 *  4. an accepted header mentions permessage-deflate, case-insensitively;
 *     and when the input is one offer (one header, no comma, no quote),
 *     the windows agreed are no larger than any it names: the answer is
 *     one its client accepts (RFC 7692 7.1.2);
 *  5. every header value ends exactly where its data does, so ASan catches
 *     a read past it.
 */
#include <strings.h>

#include "wsplugd.h"
#include "fuzz.h"

#define MAX_HDRS 8

static int
mentions(const struct http_str *h, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		for (j = 0; j + 18 <= h[i].n; j++)
			if (strncasecmp(h[i].p + j, "permessage-deflate", 18) ==
			    0)
				return 1;
	return 0;
}

/* The value of the last "name = digits" in h, or 0. */
static unsigned
named_value(const struct http_str *h, const char *name)
{
	size_t nl = strlen(name), i, j;
	unsigned v = 0, got = 0;

	for (i = 0; i + nl <= h->n; i++) {
		if (strncasecmp(h->p + i, name, nl) != 0)
			continue;
		j = i + nl;
		while (j < h->n && (h->p[j] == ' ' || h->p[j] == '\t'))
			j++;
		if (j == h->n || h->p[j] != '=')
			continue;
		j++;
		while (j < h->n && (h->p[j] == ' ' || h->p[j] == '\t'))
			j++;
		for (v = 0; j < h->n && h->p[j] >= '0' && h->p[j] <= '9' &&
		    v < 100; j++)
			v = v * 10 + (unsigned)(h->p[j] - '0');
		got = v;
	}
	return got;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct deflate_policy pols[] = {
		{ 15, 15, 1 }, { 9, 8, 0 }, { 12, 10, 1 }, { 10, 15, 0 },
	};
	const struct deflate_policy *pol, *other;
	struct http_str h[MAX_HDRS], back;
	struct deflate_params p, q;
	char *copy[MAX_HDRS], ans[DEFLATE_ANSWER_MAX];
	size_t n = 0, i, start, alen;
	int ok, ok2;

	if (size == 0)
		return 0;
	pol = &pols[data[0] & 3];
	other = &pols[(data[0] >> 2) & 3];
	data++;
	size--;
	start = 0;
	for (i = 0; i <= size && n < MAX_HDRS; i++) {
		if (i == size || data[i] == '\0') {
			copy[n] = (char *)fuzz_dup(data + start, i - start);
			h[n].p = copy[n];
			h[n].n = i - start;
			n++;
			start = i + 1;
		}
	}

	ok = deflate_negotiate(h, n, pol, &p);
	ok2 = deflate_negotiate(h, n, other, &q);
	CHECK(ok == 0 || ok == 1, "negotiate returned %d", ok);
	CHECK(ok == ok2, "acceptance depends on the policy: %d vs %d", ok,
	    ok2);
	if (ok) {
		CHECK(mentions(h, n), "accepted without permessage-deflate");
		if (n == 1 && memchr(h[0].p, ',', h[0].n) == NULL &&
		    memchr(h[0].p, '"', h[0].n) == NULL) {
			unsigned sv = named_value(&h[0],
			    "server_max_window_bits");
			unsigned cv = named_value(&h[0],
			    "client_max_window_bits");

			CHECK(sv == 0 || p.server_wbits <= sv,
			    "server window %u, offered %u", p.server_wbits, sv);
			CHECK(cv == 0 || !p.answer_client_wbits ||
			    p.client_wbits <= cv,
			    "client window %u, offered %u", p.client_wbits, cv);
		}
		CHECK(p.server_wbits >= 9 && p.server_wbits <= pol->server_wbits,
		    "server window %u", p.server_wbits);
		CHECK(p.client_wbits >= 8 && p.client_wbits <= 15,
		    "client window %u", p.client_wbits);
		CHECK(!p.answer_client_wbits ||
		    p.client_wbits <= pol->client_wbits,
		    "client window %u above the policy", p.client_wbits);
		CHECK(pol->context_takeover ||
		    (p.server_no_takeover && p.client_no_takeover),
		    "context takeover the policy forbids");
		alen = deflate_answer(&p, ans, sizeof(ans));
		CHECK(alen > 0 && alen == strlen(ans), "answer length %zu",
		    alen);
		CHECK(strncmp(ans, "permessage-deflate", 18) == 0, "answer %s",
		    ans);
		back.p = ans;
		back.n = alen;
		CHECK(deflate_negotiate(&back, 1, pol, &q) == 1,
		    "answer %s not accepted back", ans);
		CHECK(q.server_wbits == p.server_wbits &&
		    q.server_no_takeover == p.server_no_takeover &&
		    q.client_no_takeover == p.client_no_takeover &&
		    (!p.answer_client_wbits || q.client_wbits == p.client_wbits),
		    "answer %s read back differently", ans);
	}
	for (i = 0; i < n; i++)
		free(copy[i]);
	return 0;
}
