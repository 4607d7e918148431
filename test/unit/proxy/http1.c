/* Unit tests for proxy/http1.c: the per-request HTTP/1.x filter, driven
 * with byte strings (no sockets).  Each case feeds client and server bytes
 * and compares, byte for byte, what reaches the server and the client. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "weft/http1.h"
#include "weft/policy.h"
#include "../../tap.h"

/* --- a filter with a scriptable policy ------------------------------------ */

struct t_ctx {
	char		 deny_prefix[64];	/* deny paths starting with it */
	char		 seen_path[256];	/* last path decide saw */
	char		 seen_method[16];
	char		 seen_hdrs[512];	/* "name=value;" */
	int		 ndecide;
	int		 ndone;
	int		 statuses[64];
	int		 ndenied;
};

static bool
t_decide(void *arg, const struct weft_policy_http *req, char *why,
    size_t whylen)
{
	struct t_ctx *t = arg;
	size_t i, o = 0;

	t->ndecide++;
	snprintf(t->seen_path, sizeof(t->seen_path), "%.*s",
	    (int)req->path_len, req->path);
	snprintf(t->seen_method, sizeof(t->seen_method), "%.*s",
	    (int)req->method_len, req->method);
	t->seen_hdrs[0] = '\0';
	for (i = 0; i < req->n_headers && o < sizeof(t->seen_hdrs); i++)
		o += (size_t)snprintf(t->seen_hdrs + o, sizeof(t->seen_hdrs) - o,
		    "%.*s=%.*s;", (int)req->headers[i].name_len,
		    req->headers[i].name, (int)req->headers[i].value_len,
		    req->headers[i].value);
	if (t->deny_prefix[0] != '\0' && req->path_len >=
	    strlen(t->deny_prefix) && memcmp(req->path, t->deny_prefix,
	    strlen(t->deny_prefix)) == 0) {
		snprintf(why, whylen, "test says no");	/* sanitised in the header */
		return false;
	}
	return true;
}

static void
t_done(void *arg, const struct weft_h1_exchange *ex)
{
	struct t_ctx *t = arg;

	if (t->ndone < 64)
		t->statuses[t->ndone] = ex->status;
	t->ndone++;
	if (ex->denied)
		t->ndenied++;
	ok(ex->duration_s >= 0 && ex->duration_s < 10,
	    "exchange %d: duration %.6f s is sane", t->ndone, ex->duration_s);
}

static const struct weft_h1_ops t_ops = { t_decide, t_done };

struct t_run {
	struct weft_h1	*f;
	struct t_ctx	 ctx;
	struct evbuffer	*cin, *sin, *to_server, *to_client;
	enum weft_h1_result last;
};

static void
run_init(struct t_run *r, const char *deny)
{
	memset(r, 0, sizeof(*r));
	if (deny != NULL)
		snprintf(r->ctx.deny_prefix, sizeof(r->ctx.deny_prefix), "%s",
		    deny);
	r->f = weft_h1_new(&t_ops, &r->ctx);
	r->cin = evbuffer_new();
	r->sin = evbuffer_new();
	r->to_server = evbuffer_new();
	r->to_client = evbuffer_new();
}

static void
run_free(struct t_run *r)
{
	weft_h1_free(r->f);
	evbuffer_free(r->cin);
	evbuffer_free(r->sin);
	evbuffer_free(r->to_server);
	evbuffer_free(r->to_client);
}

/* Feed client bytes, step bytes at a time (0: all at once). */
static enum weft_h1_result
client(struct t_run *r, const char *s, size_t step)
{
	size_t len = strlen(s), off = 0, n;

	if (step == 0)
		step = len;
	r->last = WEFT_H1_OK;
	while (off < len) {
		n = len - off < step ? len - off : step;
		evbuffer_add(r->cin, s + off, n);
		off += n;
		r->last = weft_h1_from_client(r->f, r->cin, r->to_server,
		    r->to_client);
		if (r->last == WEFT_H1_RESET)
			break;
	}
	return r->last;
}

static enum weft_h1_result
server(struct t_run *r, const char *s, size_t step)
{
	size_t len = strlen(s), off = 0, n;

	if (step == 0)
		step = len;
	r->last = WEFT_H1_OK;
	while (off < len) {
		n = len - off < step ? len - off : step;
		evbuffer_add(r->sin, s + off, n);
		off += n;
		r->last = weft_h1_from_server(r->f, r->sin, r->to_client);
		if (r->last == WEFT_H1_RESET)
			break;
	}
	/* The client's bytes may have waited for a slot in the queue. */
	if (r->last != WEFT_H1_RESET && evbuffer_get_length(r->cin) > 0)
		r->last = weft_h1_from_client(r->f, r->cin, r->to_server,
		    r->to_client);
	return r->last;
}

/* Drain an evbuffer into a static string. */
static const char *
take(struct evbuffer *b)
{
	static char out[4][65536];
	static int k;
	size_t n = evbuffer_get_length(b);
	char *o = out[k++ % 4];

	if (n >= sizeof(out[0]))
		n = sizeof(out[0]) - 1;
	evbuffer_remove(b, o, n);
	o[n] = '\0';
	return o;
}

#define DENIAL_KA	"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n" \
	"content-length: 37\r\nx-weft-denied: test-says-no\r\n\r\n"		\
	"403 Forbidden: denied by mesh policy\n"
#define DENIAL_CLOSE	"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n" \
	"content-length: 37\r\nx-weft-denied: test-says-no\r\n"		\
	"connection: close\r\n\r\n"					\
	"403 Forbidden: denied by mesh policy\n"

#define REQ_A	"GET /ok/a?x=1 HTTP/1.1\r\nHost: web\r\n\r\n"
#define REQ_ADMIN "GET /admin HTTP/1.1\r\nHost: web\r\n\r\n"
#define RESP_A	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
#define RESP_B	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes"

/* --- cases ---------------------------------------------------------------- */

static void
t_allow_pipelined(size_t step)
{
	struct t_run r;

	run_init(&r, NULL);
	is_int(client(&r, REQ_A "POST /ok/b HTTP/1.1\r\nContent-Length: 4"
	    "\r\n\r\nbody", step), WEFT_H1_OK, "[step %zu] two requests", step);
	is_str(take(r.to_server), REQ_A "POST /ok/b HTTP/1.1\r\n"
	    "Content-Length: 4\r\n\r\nbody", "[step %zu] forwarded byte for "
	    "byte", step);
	is_int(weft_h1_pending(r.f), 2, "[step %zu] two await responses",
	    step);
	is_int(server(&r, RESP_A RESP_B, step), WEFT_H1_OK,
	    "[step %zu] two responses", step);
	is_str(take(r.to_client), RESP_A RESP_B, "[step %zu] responses pass "
	    "unchanged", step);
	is_int(r.ctx.ndone, 2, "[step %zu] two exchanges done", step);
	is_int(r.ctx.statuses[0], 200, "[step %zu] status recorded", step);
	is_str(r.ctx.seen_method, "POST", "[step %zu] method seen", step);
	is_int(weft_h1_requests(r.f), 2, "[step %zu] requests counted", step);
	run_free(&r);
}

static void
t_deny_in_turn(size_t step)
{
	struct t_run r;

	run_init(&r, "/admin");
	client(&r, REQ_A REQ_ADMIN "GET /ok/c HTTP/1.1\r\n\r\n", step);
	is_str(take(r.to_server), REQ_A "GET /ok/c HTTP/1.1\r\n\r\n",
	    "[step %zu] the denied request never reaches the server", step);
	is_str(take(r.to_client), "", "[step %zu] the 403 waits for the "
	    "first response", step);
	server(&r, RESP_A, step);
	is_str(take(r.to_client), RESP_A DENIAL_KA, "[step %zu] first "
	    "response, then the 403", step);
	server(&r, RESP_B, step);
	is_str(take(r.to_client), RESP_B, "[step %zu] then the third "
	    "request's response", step);
	is_int(r.ctx.ndenied, 1, "[step %zu] one denied", step);
	is_int(r.ctx.ndone, 3, "[step %zu] three done", step);
	is_int(r.ctx.statuses[1], 403, "[step %zu] the denial is a 403", step);
	is_int(r.last, WEFT_H1_OK, "[step %zu] the connection stays usable",
	    step);
	run_free(&r);
}

static void
t_denied_bodies(void)
{
	struct t_run r;

	run_init(&r, "/admin");
	client(&r, "POST /admin HTTP/1.1\r\nContent-Length: 11\r\n\r\n"
	    "GET /ok HTT" "GET /ok/x HTTP/1.1\r\n\r\n", 3);
	is_str(take(r.to_server), "GET /ok/x HTTP/1.1\r\n\r\n",
	    "a denied request's body is dropped, even when it looks like a "
	    "request");
	is_str(take(r.to_client), DENIAL_KA, "the 403 comes at once (nothing "
	    "before it)");
	client(&r, "POST /admin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n0\r\n\r\n", 0);
	is_str(take(r.to_server), "", "a denied chunked body is dropped");
	server(&r, RESP_A, 0);
	is_str(take(r.to_client), RESP_A DENIAL_KA, "its 403 follows the "
	    "pending response");
	client(&r, "POST /ok HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n0\r\n\r\n", 1);
	is_str(take(r.to_server), "POST /ok HTTP/1.1\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "an allowed chunked "
	    "body passes byte for byte");
	run_free(&r);
}

static void
t_policy_view(void)
{
	struct t_run r;

	run_init(&r, NULL);
	client(&r, "GET http://web.shop:8080/api/v1?q=2#f HTTP/1.1\r\n"
	    "Host: web\r\nX-Beta:  yes  \r\nCookie: a=1\r\n\r\n", 0);
	is_str(r.ctx.seen_path, "/api/v1", "absolute-form: path without "
	    "scheme, authority and query");
	is_str(r.ctx.seen_hdrs, "Host=web;X-Beta=yes;Cookie=a=1;",
	    "headers as sent, values trimmed");
	server(&r, RESP_A, 0);
	client(&r, "GET /?only=query HTTP/1.1\r\n\r\n", 0);
	is_str(r.ctx.seen_path, "/", "a bare query leaves /");
	server(&r, RESP_A, 0);
	client(&r, "OPTIONS * HTTP/1.1\r\n\r\n", 0);
	is_str(r.ctx.seen_path, "*", "OPTIONS *");
	is_str(r.ctx.seen_method, "OPTIONS", "its method");
	run_free(&r);
}

static void
t_head_and_interim(void)
{
	struct t_run r;

	run_init(&r, "/admin");
	client(&r, "HEAD /ok HTTP/1.1\r\n\r\n" REQ_ADMIN, 0);
	server(&r, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0);
	is_str(take(r.to_client), "HTTP/1.1 200 OK\r\nContent-Length: 1000"
	    "\r\n\r\n" DENIAL_KA, "a response to HEAD has no body: the 403 "
	    "follows its head");
	client(&r, "PUT /ok HTTP/1.1\r\nContent-Length: 2\r\n"
	    "Expect: 100-continue\r\n\r\n", 0);
	is_str(take(r.to_client), "", "nothing yet");
	server(&r, "HTTP/1.1 100 Continue\r\n\r\n", 0);
	is_str(take(r.to_client), "HTTP/1.1 100 Continue\r\n\r\n",
	    "an interim response does not retire the request");
	take(r.to_server);
	client(&r, "ok" REQ_ADMIN, 0);
	is_str(take(r.to_server), "ok", "the body after 100");
	is_str(take(r.to_client), "", "the 403 waits for the final response");
	server(&r, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 0);
	is_str(take(r.to_client), "HTTP/1.1 201 Created\r\nContent-Length: "
	    "0\r\n\r\n" DENIAL_KA, "the final response does");
	run_free(&r);
}

static void
t_errors(void)
{
	struct t_run r;
	char big[70000];

	run_init(&r, NULL);
	is_int(client(&r, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0),
	    WEFT_H1_RESET, "a TLS hello is not HTTP: reset");
	is_str(take(r.to_server), "", "nothing forwarded");
	is_str(take(r.to_client), "", "nothing answered");
	run_free(&r);

	run_init(&r, NULL);
	is_int(client(&r, "SSH-2.0-OpenSSH_9.2\r\n", 0), WEFT_H1_RESET,
	    "an SSH greeting: reset");
	run_free(&r);

	run_init(&r, NULL);
	client(&r, REQ_A "GET /x HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0);
	is_str(take(r.to_server), REQ_A, "CL + TE: the smuggling request is "
	    "not forwarded");
	is_int(server(&r, RESP_A, 0), WEFT_H1_CLOSE, "a 400 after the first "
	    "response, then close");
	is_str(take(r.to_client), RESP_A "HTTP/1.1 400 Bad Request\r\n"
	    "content-type: text/plain\r\ncontent-length: 16\r\n"
	    "connection: close\r\n\r\n400 Bad Request\n", "the 400 in turn");
	ok(strstr(weft_h1_error(r.f), "HPE_") != NULL, "error says why: %s",
	    weft_h1_error(r.f));
	is_int(client(&r, REQ_A, 0), WEFT_H1_CLOSE, "later bytes are dropped");
	is_str(take(r.to_server), "", "and not forwarded");
	run_free(&r);

	run_init(&r, NULL);
	is_int(client(&r, "GET /x HTTP/1.1\r\nContent-Length: 1\r\n"
	    "Content-Length: 2\r\n\r\nab", 0), WEFT_H1_CLOSE,
	    "duplicate Content-Length: 400 and close");
	is_str(take(r.to_server), "", "not forwarded");
	ok(strncmp(take(r.to_client), "HTTP/1.1 400", 12) == 0, "400 sent");
	run_free(&r);

	run_init(&r, NULL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	is_int(client(&r, big, 4096), WEFT_H1_CLOSE, "a 70 KB head: close");
	ok(strncmp(take(r.to_client), "HTTP/1.1 431", 12) == 0, "with 431");
	is_str(take(r.to_server), "", "nothing of it forwarded");
	run_free(&r);

	run_init(&r, NULL);
	client(&r, REQ_A, 0);
	is_int(server(&r, "HTTP/1.1 2x0 OK\r\n\r\n", 0), WEFT_H1_RESET,
	    "a broken response: reset (our answers could not be placed)");
	run_free(&r);
}

static void
t_close_semantics(void)
{
	struct t_run r;

	run_init(&r, "/admin");
	is_int(client(&r, "GET /admin HTTP/1.0\r\n\r\n", 0), WEFT_H1_CLOSE,
	    "HTTP/1.0 without keep-alive: answer and close");
	is_str(take(r.to_client), DENIAL_CLOSE, "the 403 says close");
	run_free(&r);

	run_init(&r, "/admin");
	is_int(client(&r, "GET /admin HTTP/1.1\r\nConnection: close\r\n\r\n",
	    0), WEFT_H1_CLOSE, "Connection: close: answer and close");
	run_free(&r);

	run_init(&r, "/admin");
	is_int(client(&r, "PUT /admin HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Expect: 100-continue\r\n\r\n", 0), WEFT_H1_CLOSE,
	    "a denied request that waits for 100 Continue: close");
	run_free(&r);

	run_init(&r, "/admin");
	is_int(client(&r, "GET /admin/ws HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n\r\n\x81\x05hello", 0), WEFT_H1_CLOSE,
	    "a denied upgrade: answer and close");
	is_str(take(r.to_server), "", "nothing forwarded");
	is_str(take(r.to_client), DENIAL_CLOSE, "403 with close");
	run_free(&r);
}

static void
t_upgrade(void)
{
	struct t_run r;

	run_init(&r, NULL);
	client(&r, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n\r\n\x81\x05hello", 0);
	is_str(take(r.to_server), "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n\r\n\x81\x05hello", "an allowed upgrade "
	    "and the frames after it pass");
	server(&r, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n\r\n\x81\x02ok", 0);
	is_str(take(r.to_client), "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02ok",
	    "101 and the server's frames pass");
	ok(weft_h1_is_opaque(r.f), "both directions are opaque now");
	client(&r, "GET /admin HTTP/1.1\r\n\r\n", 0);
	is_str(take(r.to_server), "GET /admin HTTP/1.1\r\n\r\n",
	    "bytes of the new protocol are not parsed");
	run_free(&r);

	run_init(&r, NULL);
	client(&r, "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n", 0);
	is_str(r.ctx.seen_path, "db:5432", "CONNECT's authority is its path");
	server(&r, "HTTP/1.1 200 OK\r\n\r\n\x01\x02", 0);
	is_str(take(r.to_client), "HTTP/1.1 200 OK\r\n\r\n\x01\x02",
	    "CONNECT 200 then raw");
	ok(weft_h1_is_opaque(r.f), "opaque after CONNECT (result %d, %s)",
	    r.last, weft_h1_error(r.f));
	run_free(&r);
}

static void
t_queue_and_eof(void)
{
	struct t_run r;
	char many[40 * 32 + 1];
	size_t i;

	run_init(&r, "/admin");
	many[0] = '\0';
	for (i = 0; i < 40; i++)
		strcat(many, "GET /ok HTTP/1.1\r\n\r\n");
	client(&r, many, 0);
	is_int(weft_h1_pending(&*r.f), 32, "at most 32 requests wait for "
	    "responses");
	ok(evbuffer_get_length(r.cin) > 0, "the rest waits in the input");
	take(r.to_server);
	server(&r, RESP_A, 0);
	is_int(weft_h1_requests(r.f), 33, "one response lets one more in");
	run_free(&r);

	run_init(&r, "/admin");
	client(&r, REQ_A REQ_ADMIN, 0);
	server(&r, "HTTP/1.0 200 OK\r\n\r\nuntil the end", 0);
	is_str(take(r.to_client), "HTTP/1.0 200 OK\r\n\r\nuntil the end",
	    "a close-delimited body");
	is_int(r.ctx.ndone, 0, "not done before the close");
	weft_h1_server_eof(r.f, r.to_client);
	is_int(r.ctx.ndone, 2, "done at the close; the queued 403 with it");
	is_int(r.ctx.statuses[0], 200, "with its status");
	run_free(&r);

	run_init(&r, NULL);
	client(&r, REQ_A, 0);
	weft_h1_server_eof(r.f, r.to_client);
	is_int(r.ctx.statuses[0], 0, "no response before the close: status 0");
	run_free(&r);
}

static void
t_sniff(void)
{
	struct t_run r;

	run_init(&r, "/admin");
	weft_h1_set_sniff(r.f, true);
	is_int(client(&r, "\x16\x03\x01\x02\x00hello", 3), WEFT_H1_OK,
	    "sniffing: a TLS hello is not a reset");
	is_str(take(r.to_server), "\x16\x03\x01\x02\x00hello", "it passes "
	    "as it is, even cut in pieces");
	ok(weft_h1_is_opaque(r.f), "and the connection is opaque");
	server(&r, "\x16\x03\x03 server", 0);
	is_str(take(r.to_client), "\x16\x03\x03 server", "both ways");
	run_free(&r);

	run_init(&r, "/admin");
	weft_h1_set_sniff(r.f, true);
	server(&r, "220 smtp ready\r\n", 0);
	is_str(take(r.to_client), "220 smtp ready\r\n", "sniffing: a server "
	    "that speaks first passes");
	ok(weft_h1_is_opaque(r.f), "opaque");
	client(&r, "EHLO x\r\n", 0);
	is_str(take(r.to_server), "EHLO x\r\n", "and so does its client");
	run_free(&r);

	run_init(&r, "/admin");
	weft_h1_set_sniff(r.f, true);
	client(&r, REQ_A REQ_ADMIN, 0);
	ok(!weft_h1_is_opaque(r.f), "sniffing: HTTP is followed");
	is_str(take(r.to_server), REQ_A, "and still decided per request");
	server(&r, RESP_A, 0);
	is_str(take(r.to_client), RESP_A DENIAL_KA, "a withdrawn permission "
	    "is a 403, not a reset");
	run_free(&r);
}

int
main(void)
{
	size_t steps[] = { 0, 1, 7 };
	size_t i;

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		t_allow_pipelined(steps[i]);
		t_deny_in_turn(steps[i]);
	}
	t_denied_bodies();
	t_policy_view();
	t_head_and_interim();
	t_errors();
	t_close_semantics();
	t_upgrade();
	t_queue_and_eof();
	t_sniff();
	return tap_done();
}
