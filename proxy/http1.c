/* HTTP/1.x filter: per-request decisions on a relayed connection
 * (weft/http1.h).
 *
 * Two llhttp parsers, one per direction.  The request parser pauses at the
 * end of every head (on_headers_complete) and every message
 * (on_message_complete), so each llhttp_execute covers exactly one segment
 * of the byte stream - a head, or a body - and llhttp_get_error_pos tells
 * where it ended (feasibility §5).  Head bytes wait in f_head until the
 * decision; then they go to the server, or are dropped with the body that
 * follows them.  The response parser pauses at the end of every message;
 * each complete final response retires the oldest forwarded request, and
 * then the filter's own answers that queued up behind it go out.
 *
 * Limits: a head of at most H1_HEAD_MAX bytes and H1_HEADERS_MAX header
 * fields (else 431), a URL of at most H1_URL_MAX (414), H1_QUEUE_MAX
 * requests waiting for responses (then the client's bytes wait). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <llhttp.h>

#include "weft/http1.h"
#include "weft/policy.h"

#define H1_HEAD_MAX	(64 * 1024)
#define H1_URL_MAX	(8 * 1024)
#define H1_HEADERS_MAX	100
#define H1_QUEUE_MAX	32

enum h1_seg {
	H1_SEG_HEAD = 0,	/* parsing a head: bytes wait in f_head */
	H1_SEG_FORWARD,		/* an allowed request's body */
	H1_SEG_DROP,		/* a denied request's body */
	H1_SEG_OPAQUE,		/* after an allowed upgrade: raw */
	H1_SEG_DEAD,		/* after an error: drop everything */
};

enum h1_kind {
	H1_FORWARDED = 0,	/* waits for the server's response */
	H1_DENIED,		/* we answer 403 in its turn */
	H1_BAD,			/* we answer 400 in its turn, then close */
};

struct h1_pending {
	uint8_t		 p_kind;
	uint8_t		 p_method;	/* llhttp_method_t */
	bool		 p_close;	/* close after our answer */
	bool		 p_upgrade;	/* an allowed CONNECT/Upgrade */
	bool		 p_head_seen;	/* response head seen: latency taken */
	char		 p_why[32];	/* denied: the owner's reason token */
	double		 p_latency;
	struct timespec	 p_start;
};

struct h1_field {
	uint32_t	 off;		/* in f_buf */
	uint32_t	 len;
};

struct h1_hdr {
	struct h1_field	 name;
	struct h1_field	 value;
};

struct weft_h1 {
	const struct weft_h1_ops *f_ops;
	void		*f_arg;
	llhttp_t	 f_req;
	llhttp_t	 f_resp;
	enum h1_seg	 f_seg;
	struct evbuffer	*f_head;	/* head bytes not decided yet */
	/* The head being parsed: URL and header fields, copied (spans come
	 * in pieces across reads). */
	char		*f_buf;
	size_t		 f_buflen;
	size_t		 f_bufcap;
	struct h1_field	 f_url;
	struct h1_hdr	*f_hdrs;	/* grown as needed (an idle
					 * connection's filter stays small) */
	size_t		 f_hdrcap;
	size_t		 f_nhdr;
	bool		 f_in_name;	/* the last span was a header name */
	bool		 f_overflow;	/* 431 / 414 */
	int		 f_overflow_status;
	struct timespec	 f_msg_start;
	bool		 f_head_done;	/* pause reason: headers complete */
	bool		 f_msg_done;	/* pause reason: message complete */
	bool		 f_any_head;	/* a head was ever complete */
	/* Requests in order, waiting for a response or for our answer. */
	struct h1_pending *f_q;		/* a ring of f_qcap, grown as
					 * needed up to H1_QUEUE_MAX */
	unsigned	 f_qcap;
	unsigned	 f_qhead;
	unsigned	 f_qlen;
	/* The response side. */
	bool		 f_resp_msg_done;
	bool		 f_resp_opaque;
	bool		 f_closing;	/* an answer with "close" went out */
	bool		 f_reset;
	bool		 f_sniff;	/* not HTTP: opaque, not a reset */
	uint64_t	 f_nreq;
	char		 f_err[128];
};

static int h1_on_message_begin(llhttp_t *);
static int h1_on_url(llhttp_t *, const char *, size_t);
static int h1_on_header_field(llhttp_t *, const char *, size_t);
static int h1_on_header_value(llhttp_t *, const char *, size_t);
static int h1_on_headers_complete(llhttp_t *);
static int h1_on_message_complete(llhttp_t *);
static int h1_on_resp_headers_complete(llhttp_t *);
static int h1_on_resp_message_complete(llhttp_t *);

static const llhttp_settings_t h1_req_settings = {
	.on_message_begin = h1_on_message_begin,
	.on_url = h1_on_url,
	.on_header_field = h1_on_header_field,
	.on_header_value = h1_on_header_value,
	.on_headers_complete = h1_on_headers_complete,
	.on_message_complete = h1_on_message_complete,
};

static const llhttp_settings_t h1_resp_settings = {
	.on_headers_complete = h1_on_resp_headers_complete,
	.on_message_complete = h1_on_resp_message_complete,
};

static double
h1_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

struct weft_h1 *
weft_h1_new(const struct weft_h1_ops *ops, void *arg)
{
	struct weft_h1 *f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->f_ops = ops;
	f->f_arg = arg;
	llhttp_init(&f->f_req, HTTP_REQUEST, &h1_req_settings);
	f->f_req.data = f;
	llhttp_init(&f->f_resp, HTTP_RESPONSE, &h1_resp_settings);
	f->f_resp.data = f;
	return f;
}

static struct h1_pending *
h1_front(struct weft_h1 *f)
{
	return f->f_qlen > 0 ? &f->f_q[f->f_qhead] : NULL;
}

static void
h1_done(struct weft_h1 *f, const struct h1_pending *p, int status)
{
	struct weft_h1_exchange ex;

	if (f->f_ops == NULL || f->f_ops->h1_done == NULL)
		return;
	memset(&ex, 0, sizeof(ex));
	ex.method = llhttp_method_name((llhttp_method_t)p->p_method);
	ex.status = status;
	ex.denied = p->p_kind == H1_DENIED;
	ex.bad = p->p_kind == H1_BAD;
	ex.why = p->p_kind == H1_DENIED ? p->p_why : NULL;
	ex.duration_s = p->p_head_seen ? p->p_latency : h1_since(&p->p_start);
	f->f_ops->h1_done(f->f_arg, &ex);
}

static void
h1_pop(struct weft_h1 *f)
{
	f->f_qhead = (f->f_qhead + 1) % f->f_qcap;
	f->f_qlen--;
}

void
weft_h1_free(struct weft_h1 *f)
{
	struct h1_pending *p;

	if (f == NULL)
		return;
	while ((p = h1_front(f)) != NULL) {
		h1_done(f, p, p->p_kind == H1_FORWARDED ? 0 :
		    p->p_kind == H1_DENIED ? 403 : 400);
		h1_pop(f);
	}
	if (f->f_head != NULL)
		evbuffer_free(f->f_head);
	free(f->f_buf);
	free(f->f_hdrs);
	free(f->f_q);
	free(f);
}

/* --- the filter's own answers --------------------------------------------- */

static const char h1_denied_body[] = "403 Forbidden: denied by mesh policy\n";
static const char h1_bad_body[] = "400 Bad Request\n";

void
weft_h1_add_denial(struct evbuffer *out, bool keep_alive, const char *token)
{
	char t[32];
	size_t i;

	/* A token, never free text: nothing of it can break the head. */
	snprintf(t, sizeof(t), "%s", token != NULL && token[0] != '\0' ?
	    token : "policy");
	for (i = 0; t[i] != '\0'; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' &&
		    t[i] <= '9') || t[i] == '-'))
			t[i] = '-';
	evbuffer_add_printf(out, "HTTP/1.1 403 Forbidden\r\n"
	    "content-type: text/plain\r\ncontent-length: %zu\r\n"
	    "x-weft-denied: %s\r\n%s\r\n%s", sizeof(h1_denied_body) - 1, t,
	    keep_alive ? "" : "connection: close\r\n", h1_denied_body);
}

static void
h1_add_bad(struct evbuffer *out, int status)
{
	const char *text = status == 431 ? "Request Header Fields Too Large" :
	    status == 414 ? "URI Too Long" : "Bad Request";

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\n"
	    "content-length: %zu\r\nconnection: close\r\n\r\n%s", status, text,
	    sizeof(h1_bad_body) - 1, h1_bad_body);
}

/* Our answers at the front of the queue go out now; stop at the first
 * request that waits for the server. */
static void
h1_emit(struct weft_h1 *f, struct evbuffer *to_client)
{
	struct h1_pending *p;

	while (!f->f_closing && (p = h1_front(f)) != NULL &&
	    p->p_kind != H1_FORWARDED) {
		if (p->p_kind == H1_DENIED)
			weft_h1_add_denial(to_client, !p->p_close, p->p_why);
		else
			h1_add_bad(to_client, f->f_overflow_status != 0 ?
			    f->f_overflow_status : 400);
		if (p->p_close)
			f->f_closing = true;
		h1_done(f, p, p->p_kind == H1_DENIED ? 403 :
		    f->f_overflow_status != 0 ? f->f_overflow_status : 400);
		h1_pop(f);
	}
}

/* Room for one more in the ring (the caller checked H1_QUEUE_MAX). */
static int
h1_qgrow(struct weft_h1 *f)
{
	struct h1_pending *q;
	unsigned cap, i;

	if (f->f_qlen < f->f_qcap)
		return 0;
	cap = f->f_qcap == 0 ? 2 : f->f_qcap * 2;
	if (cap > H1_QUEUE_MAX)
		cap = H1_QUEUE_MAX;
	if ((q = calloc(cap, sizeof(*q))) == NULL)
		return -1;
	for (i = 0; i < f->f_qlen; i++)
		q[i] = f->f_q[(f->f_qhead + i) % f->f_qcap];
	free(f->f_q);
	f->f_q = q;
	f->f_qcap = cap;
	f->f_qhead = 0;
	return 0;
}

static struct h1_pending *
h1_push(struct weft_h1 *f, enum h1_kind kind)
{
	struct h1_pending *p;

	if (h1_qgrow(f) == -1)
		return NULL;
	p = &f->f_q[(f->f_qhead + f->f_qlen) % f->f_qcap];
	f->f_qlen++;
	memset(p, 0, sizeof(*p));
	p->p_kind = (uint8_t)kind;
	p->p_method = (uint8_t)llhttp_get_method(&f->f_req);
	p->p_start = f->f_msg_start;
	return p;
}

/* --- request parsing ------------------------------------------------------ */

static int
h1_append(struct weft_h1 *f, struct h1_field *fl, const char *at, size_t len)
{
	size_t cap;
	char *nb;

	if (f->f_buflen + len > H1_HEAD_MAX) {
		f->f_overflow = true;
		f->f_overflow_status = 431;
		return -1;
	}
	if (f->f_buflen + len > f->f_bufcap) {
		cap = f->f_bufcap == 0 ? 512 : f->f_bufcap;
		while (cap < f->f_buflen + len)
			cap *= 2;
		if ((nb = realloc(f->f_buf, cap)) == NULL)
			return -1;
		f->f_buf = nb;
		f->f_bufcap = cap;
	}
	if (fl->len == 0)
		fl->off = (uint32_t)f->f_buflen;
	memcpy(f->f_buf + f->f_buflen, at, len);
	f->f_buflen += len;
	fl->len += (uint32_t)len;
	return 0;
}

static int
h1_on_message_begin(llhttp_t *p)
{
	struct weft_h1 *f = p->data;

	clock_gettime(CLOCK_MONOTONIC, &f->f_msg_start);
	f->f_buflen = 0;
	memset(&f->f_url, 0, sizeof(f->f_url));
	f->f_nhdr = 0;
	f->f_in_name = false;
	return 0;
}

static int
h1_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct weft_h1 *f = p->data;

	if (f->f_url.len + len > H1_URL_MAX) {
		f->f_overflow = true;
		f->f_overflow_status = 414;
		return -1;
	}
	return h1_append(f, &f->f_url, at, len);
}

static int
h1_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct weft_h1 *f = p->data;

	if (!f->f_in_name) {
		if (f->f_nhdr == H1_HEADERS_MAX) {
			f->f_overflow = true;
			f->f_overflow_status = 431;
			return -1;
		}
		if (f->f_nhdr == f->f_hdrcap) {
			size_t cap = f->f_hdrcap == 0 ? 16 : f->f_hdrcap * 2;
			struct h1_hdr *h;

			if ((h = reallocarray(f->f_hdrs, cap,
			    sizeof(*h))) == NULL)
				return -1;
			f->f_hdrs = h;
			f->f_hdrcap = cap;
		}
		f->f_nhdr++;
		memset(&f->f_hdrs[f->f_nhdr - 1], 0, sizeof(f->f_hdrs[0]));
		f->f_in_name = true;
	}
	return h1_append(f, &f->f_hdrs[f->f_nhdr - 1].name, at, len);
}

static int
h1_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct weft_h1 *f = p->data;

	f->f_in_name = false;
	if (f->f_nhdr == 0)
		return 0;
	return h1_append(f, &f->f_hdrs[f->f_nhdr - 1].value, at, len);
}

static int
h1_on_headers_complete(llhttp_t *p)
{
	struct weft_h1 *f = p->data;

	f->f_head_done = true;
	return HPE_PAUSED;
}

static int
h1_on_message_complete(llhttp_t *p)
{
	struct weft_h1 *f = p->data;

	f->f_msg_done = true;
	return HPE_PAUSED;
}

/* The path a policy sees: no query or fragment; an absolute-form target
 * ("http://host/p?q") loses its scheme and authority too. */
static void
h1_path(const char *url, size_t len, const char **path, size_t *plen)
{
	const char *s = url, *end = url + len, *q;

	if (len > 0 && url[0] != '/' && len >= 3) {
		const char *sep = memchr(url, ':', len);

		if (sep != NULL && sep + 2 < end && sep[1] == '/' &&
		    sep[2] == '/') {
			s = memchr(sep + 3, '/', (size_t)(end - (sep + 3)));
			if (s == NULL)
				s = end;
		}
	}
	for (q = s; q < end && *q != '?' && *q != '#'; q++)
		;
	if (q == s && s == end && url != end && url[0] != '/') {
		/* "*" (OPTIONS) or an authority (CONNECT): as it is. */
		*path = url;
		*plen = len;
		return;
	}
	if (q == s) {
		*path = "/";
		*plen = 1;
		return;
	}
	*path = s;
	*plen = (size_t)(q - s);
}

static bool
h1_expects_continue(const struct weft_policy_http *req)
{
	size_t i;

	for (i = 0; i < req->n_headers; i++)
		if (req->headers[i].name_len == 6 &&
		    strncasecmp(req->headers[i].name, "expect", 6) == 0)
			return true;
	return false;
}

/* A complete head: decide, and queue the request. */
static void
h1_decide(struct weft_h1 *f, struct evbuffer *to_server,
    struct evbuffer *to_client)
{
	struct weft_http_header hdrs[H1_HEADERS_MAX];
	struct weft_policy_http req;
	struct h1_pending *p;
	const char *method;
	char why[160];
	bool allow = true, upgrade;
	size_t i;

	f->f_any_head = true;
	f->f_nreq++;
	method = llhttp_method_name((llhttp_method_t)llhttp_get_method(
	    &f->f_req));
	memset(&req, 0, sizeof(req));
	req.method = method;
	req.method_len = strlen(method);
	h1_path(f->f_buf != NULL ? f->f_buf + f->f_url.off : "", f->f_url.len,
	    &req.path, &req.path_len);
	for (i = 0; i < f->f_nhdr; i++) {
		hdrs[i].name = f->f_buf + f->f_hdrs[i].name.off;
		hdrs[i].name_len = f->f_hdrs[i].name.len;
		hdrs[i].value = f->f_hdrs[i].value.len > 0 ?
		    f->f_buf + f->f_hdrs[i].value.off : "";
		hdrs[i].value_len = f->f_hdrs[i].value.len;
		/* llhttp leaves optional whitespace after the value. */
		while (hdrs[i].value_len > 0 &&
		    (hdrs[i].value[hdrs[i].value_len - 1] == ' ' ||
		    hdrs[i].value[hdrs[i].value_len - 1] == '\t'))
			hdrs[i].value_len--;
	}
	req.headers = hdrs;
	req.n_headers = f->f_nhdr;
	why[0] = '\0';
	if (f->f_ops != NULL && f->f_ops->h1_decide != NULL)
		allow = f->f_ops->h1_decide(f->f_arg, &req, why, sizeof(why));
	upgrade = llhttp_get_upgrade(&f->f_req) != 0 ||
	    llhttp_get_method(&f->f_req) == HTTP_CONNECT;
	if ((p = h1_push(f, allow ? H1_FORWARDED : H1_DENIED)) == NULL) {
		snprintf(f->f_err, sizeof(f->f_err), "out of memory");
		f->f_reset = true;
		return;
	}
	if (allow) {
		p->p_upgrade = upgrade;
		evbuffer_add_buffer(to_server, f->f_head);
		f->f_seg = H1_SEG_FORWARD;
	} else {
		snprintf(p->p_why, sizeof(p->p_why), "%s", why[0] != '\0' ?
		    why : "denied");
		/* A denied upgrade may be followed by bytes of the protocol
		 * it asked for, and a client that waits for "100 Continue"
		 * may or may not send the body it announced: end the
		 * connection after our answer in both cases. */
		p->p_close = upgrade || h1_expects_continue(&req) ||
		    !llhttp_should_keep_alive(&f->f_req);
		evbuffer_drain(f->f_head, evbuffer_get_length(f->f_head));
		f->f_seg = H1_SEG_DROP;
	}
	h1_emit(f, to_client);
}

/* A request error: 400 in its turn and close, or a reset if the bytes were
 * never HTTP (the first thing sent is not a method). */
static enum weft_h1_result
h1_request_error(struct weft_h1 *f, llhttp_errno_t e, struct evbuffer *in,
    struct evbuffer *to_client)
{
	struct h1_pending *p;

	snprintf(f->f_err, sizeof(f->f_err), "request: %s%s%s",
	    f->f_overflow ? "too large" : llhttp_errno_name(e),
	    f->f_overflow ? "" : ": ", f->f_overflow ? "" :
	    llhttp_get_error_reason(&f->f_req) != NULL ?
	    llhttp_get_error_reason(&f->f_req) : "");
	f->f_seg = H1_SEG_DEAD;
	evbuffer_drain(in, evbuffer_get_length(in));
	if (f->f_head != NULL)
		evbuffer_drain(f->f_head, evbuffer_get_length(f->f_head));
	if (!f->f_any_head && !f->f_overflow && e == HPE_INVALID_METHOD) {
		f->f_reset = true;
		return WEFT_H1_RESET;
	}
	if (f->f_qlen == H1_QUEUE_MAX) {
		f->f_reset = true;
		return WEFT_H1_RESET;
	}
	if ((p = h1_push(f, H1_BAD)) == NULL) {
		f->f_reset = true;
		return WEFT_H1_RESET;
	}
	p->p_close = true;
	h1_emit(f, to_client);
	return f->f_closing ? WEFT_H1_CLOSE : WEFT_H1_OK;
}

static void
h1_go_opaque(struct weft_h1 *f)
{
	f->f_seg = H1_SEG_OPAQUE;
	f->f_resp_opaque = true;
	snprintf(f->f_err, sizeof(f->f_err), "not HTTP: passed as it is");
}

void
weft_h1_set_sniff(struct weft_h1 *f, bool on)
{
	f->f_sniff = on;
}

/* Move n bytes from in to where the current segment sends them. */
static void
h1_take(struct weft_h1 *f, struct evbuffer *in, size_t n,
    struct evbuffer *to_server)
{
	if (n == 0)
		return;
	switch (f->f_seg) {
	case H1_SEG_HEAD:
		evbuffer_remove_buffer(in, f->f_head, n);
		break;
	case H1_SEG_FORWARD:
	case H1_SEG_OPAQUE:
		evbuffer_remove_buffer(in, to_server, n);
		break;
	case H1_SEG_DROP:
	case H1_SEG_DEAD:
		evbuffer_drain(in, n);
		break;
	}
}

enum weft_h1_result
weft_h1_from_client(struct weft_h1 *f, struct evbuffer *in,
    struct evbuffer *to_server, struct evbuffer *to_client)
{
	struct evbuffer_iovec v;
	llhttp_errno_t e;
	size_t used;
	bool step = false;

	if (f->f_reset)
		return WEFT_H1_RESET;
	if (f->f_head == NULL && (f->f_head = evbuffer_new()) == NULL)
		return WEFT_H1_RESET;
	/* After a pause at the end of a head, the end of a message without
	 * a body is one more (empty) step away: take it even when no byte
	 * is left, or an upgrade would wait for the next byte. */
	while (evbuffer_get_length(in) > 0 || step) {
		if (f->f_closing || f->f_seg == H1_SEG_DEAD) {
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		}
		if (f->f_seg == H1_SEG_OPAQUE) {
			evbuffer_add_buffer(to_server, in);
			break;
		}
		/* Backpressure: a new head waits while the queue is full. */
		if (f->f_seg == H1_SEG_HEAD && f->f_qlen >= H1_QUEUE_MAX &&
		    evbuffer_get_length(f->f_head) == 0)
			break;
		if (evbuffer_get_length(in) == 0) {
			v.iov_base = (void *)"";
			v.iov_len = 0;
		} else if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		step = false;
		f->f_head_done = f->f_msg_done = false;
		e = llhttp_execute(&f->f_req, v.iov_base, v.iov_len);
		if (e == HPE_OK)
			used = v.iov_len;
		else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
			used = (size_t)(llhttp_get_error_pos(&f->f_req) -
			    (const char *)v.iov_base);
		else if (f->f_sniff && !f->f_any_head && f->f_qlen == 0) {
			/* The first bytes are not an HTTP request, and the
			 * owner may pass such a connection as it is (the
			 * policy lets it in at L4 anyway). */
			h1_go_opaque(f);
			evbuffer_add_buffer(to_server, f->f_head);
			evbuffer_add_buffer(to_server, in);
			break;
		} else
			return h1_request_error(f, e, in, to_client);
		h1_take(f, in, used, to_server);
		if (f->f_seg == H1_SEG_HEAD &&
		    evbuffer_get_length(f->f_head) > H1_HEAD_MAX) {
			f->f_overflow = true;
			f->f_overflow_status = 431;
			return h1_request_error(f, HPE_USER, in, to_client);
		}
		if (f->f_head_done) {
			h1_decide(f, to_server, to_client);
			if (f->f_reset)
				return WEFT_H1_RESET;
			step = true;
		}
		if (f->f_msg_done) {
			struct h1_pending *last = f->f_qlen > 0 ? &f->f_q[
			    (f->f_qhead + f->f_qlen - 1) % f->f_qcap] : NULL;

			if (f->f_seg == H1_SEG_FORWARD && last != NULL &&
			    last->p_upgrade) {
				/* Whatever follows belongs to the protocol
				 * the client switched to. */
				f->f_seg = H1_SEG_OPAQUE;
				continue;
			}
			if (f->f_seg == H1_SEG_DROP && last != NULL &&
			    last->p_close) {
				f->f_seg = H1_SEG_DEAD;
				continue;
			}
			f->f_seg = H1_SEG_HEAD;
		}
		if (e == HPE_PAUSED)
			llhttp_resume(&f->f_req);
		else if (e == HPE_PAUSED_UPGRADE) {
			/* The end of a CONNECT or Upgrade request (llhttp
			 * may skip on_message_complete for CONNECT): an
			 * allowed one turns opaque, a denied one dead.  The
			 * parser is not used again. */
			f->f_seg = f->f_seg == H1_SEG_FORWARD ||
			    f->f_seg == H1_SEG_OPAQUE ? H1_SEG_OPAQUE :
			    H1_SEG_DEAD;
		}
	}
	return f->f_closing ? WEFT_H1_CLOSE : WEFT_H1_OK;
}

/* --- response parsing ----------------------------------------------------- */

static int
h1_on_resp_headers_complete(llhttp_t *p)
{
	struct weft_h1 *f = p->data;
	struct h1_pending *q = h1_front(f);
	int status = llhttp_get_status_code(p);

	if (q == NULL || q->p_kind != H1_FORWARDED)
		return 0;
	if (status >= 200 || status == 101) {
		if (!q->p_head_seen) {
			q->p_head_seen = true;
			q->p_latency = h1_since(&q->p_start);
		}
		/* A response to HEAD has no body, whatever it says. */
		if (q->p_method == HTTP_HEAD)
			return 1;
		/* A 2xx to CONNECT starts the tunnel (llhttp would parse
		 * its bytes as a body). */
		if (q->p_method == HTTP_CONNECT && status >= 200 &&
		    status < 300)
			return 2;
	}
	return 0;
}

static int
h1_on_resp_message_complete(llhttp_t *p)
{
	struct weft_h1 *f = p->data;

	f->f_resp_msg_done = true;
	return HPE_PAUSED;
}

/* A complete response: retire its request unless it was interim (1xx). */
static void
h1_response_done(struct weft_h1 *f, struct evbuffer *to_client)
{
	struct h1_pending *q = h1_front(f);
	int status = llhttp_get_status_code(&f->f_resp);
	bool upgrade;

	if (q == NULL || q->p_kind != H1_FORWARDED)
		return;
	if (status >= 100 && status < 200 && status != 101)
		return;
	upgrade = q->p_upgrade && (status == 101 || (q->p_method ==
	    HTTP_CONNECT && status >= 200 && status < 300));
	h1_done(f, q, status);
	h1_pop(f);
	if (upgrade)
		f->f_resp_opaque = true;
	h1_emit(f, to_client);
}

enum weft_h1_result
weft_h1_from_server(struct weft_h1 *f, struct evbuffer *in,
    struct evbuffer *to_client)
{
	struct evbuffer_iovec v;
	llhttp_errno_t e;
	size_t used;

	if (f->f_reset)
		return WEFT_H1_RESET;
	/* A server that speaks first: not HTTP. */
	if (f->f_sniff && !f->f_any_head && f->f_qlen == 0 &&
	    evbuffer_get_length(in) > 0 && (f->f_head == NULL ||
	    evbuffer_get_length(f->f_head) == 0))
		h1_go_opaque(f);
	while (evbuffer_get_length(in) > 0) {
		if (f->f_resp_opaque) {
			evbuffer_add_buffer(to_client, in);
			break;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		f->f_resp_msg_done = false;
		e = llhttp_execute(&f->f_resp, v.iov_base, v.iov_len);
		if (e == HPE_OK)
			used = v.iov_len;
		else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
			used = (size_t)(llhttp_get_error_pos(&f->f_resp) -
			    (const char *)v.iov_base);
		else {
			/* Without the server's message boundaries our
			 * answers cannot be placed: fail closed. */
			snprintf(f->f_err, sizeof(f->f_err), "response: %s: %s",
			    llhttp_errno_name(e),
			    llhttp_get_error_reason(&f->f_resp) != NULL ?
			    llhttp_get_error_reason(&f->f_resp) : "");
			f->f_reset = true;
			return WEFT_H1_RESET;
		}
		evbuffer_remove_buffer(in, to_client, used);
		if (f->f_resp_msg_done)
			h1_response_done(f, to_client);
		if (e == HPE_PAUSED)
			llhttp_resume(&f->f_resp);
		else if (e == HPE_PAUSED_UPGRADE && !f->f_resp_opaque) {
			/* 101 to a request that did not ask to upgrade. */
			snprintf(f->f_err, sizeof(f->f_err),
			    "response: unexpected upgrade");
			f->f_reset = true;
			return WEFT_H1_RESET;
		}
	}
	return f->f_closing ? WEFT_H1_CLOSE : WEFT_H1_OK;
}

enum weft_h1_result
weft_h1_server_eof(struct weft_h1 *f, struct evbuffer *to_client)
{
	struct h1_pending *p;

	if (f->f_reset)
		return WEFT_H1_RESET;
	if (!f->f_resp_opaque) {
		f->f_resp_msg_done = false;
		if (llhttp_finish(&f->f_resp) == HPE_PAUSED ||
		    f->f_resp_msg_done)
			h1_response_done(f, to_client);
	}
	/* No answer will come for what is still forwarded; our own answers
	 * queued behind them would answer the wrong requests. */
	while ((p = h1_front(f)) != NULL) {
		h1_done(f, p, p->p_kind == H1_FORWARDED ? 0 :
		    p->p_kind == H1_DENIED ? 403 : 400);
		h1_pop(f);
	}
	return f->f_closing ? WEFT_H1_CLOSE : WEFT_H1_OK;
}

bool
weft_h1_is_opaque(const struct weft_h1 *f)
{
	return f->f_seg == H1_SEG_OPAQUE && f->f_resp_opaque;
}

size_t
weft_h1_pending(const struct weft_h1 *f)
{
	return f->f_qlen;
}

uint64_t
weft_h1_requests(const struct weft_h1 *f)
{
	return f->f_nreq;
}

const char *
weft_h1_error(const struct weft_h1 *f)
{
	return f->f_err[0] != '\0' ? f->f_err : "none";
}
