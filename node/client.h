/* Internal to node/: the node's client of the controller API (DESIGN §6):
 * the snapshot long-poll and one-shot requests such as certificate
 * signing, over http:// or https:// (TLS 1.2+, server certificate checked
 * against the bootstrap CA bundle and the URL's host name or IP). */
#ifndef WEFT_NODE_CLIENT_H
#define WEFT_NODE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct weft_client;
struct weft_client_req;

/* Called with each snapshot body (borrowed).  Returns 0 if applied (the
 * callback has called weft_client_set_have), -1 if rejected (retried with
 * backoff). */
typedef int (*weft_client_cb)(const char *json, size_t len, void *arg);

/* A client for url ("http://host:port" or "https://host:port").  ca_file:
 * PEM bundle the controller's certificate must chain to; required for
 * https, ignored (may be NULL) for http.  token is copied and sent as a
 * bearer token, never logged.  NULL with *err (malloc'd). */
struct weft_client *weft_client_new(struct event_base *base, const char *url,
	    const char *ca_file, const char *node_name, const char *token,
	    int poll_timeout, weft_client_cb cb, void *arg, char **err);
void	weft_client_start(struct weft_client *c);
/* cb(arg) runs when the controller answers again after failed polls
 * (after it restarted, say), so that work in backoff can go on now. */
void	weft_client_on_reachable(struct weft_client *c, void (*cb)(void *),
	    void *arg);
/* Re-read the token from path whenever the file changes (projected
 * service-account tokens rotate); the token given to weft_client_new is
 * the file's content at start.  Returns 0 or -1 (ENOMEM). */
int	weft_client_set_token_file(struct weft_client *c, const char *path);
/* The generation the node has applied, reported with the next poll. */
void	weft_client_set_have(struct weft_client *c, uint64_t have);
/* Frees c and cancels its outstanding requests (their callbacks are not
 * called).  NULL is fine. */
void	weft_client_free(struct weft_client *c);

/* The result of a one-shot request, called once from the event loop (never
 * from inside weft_client_post).  code: the HTTP status, or 0 when there is
 * no response; then why says what failed ("TLS: certificate verify failed:
 * ...", "connection refused").  body (NUL-terminated) and why are borrowed
 * for the call.  The request handle is freed after the callback returns. */
typedef void (*weft_client_req_cb)(int code, const char *body, size_t len,
	    const char *why, void *arg);

/* POST body (content_type) to path ("/v1/certificates") on the
 * controller, authenticated with the node's token, on a connection of its
 * own (the long-poll holds the other).  Returns a handle for
 * weft_client_req_cancel, or NULL (ENOMEM) and cb is never called. */
struct weft_client_req *weft_client_post(struct weft_client *c,
	    const char *path, const char *content_type, const char *body,
	    size_t len, int timeout, weft_client_req_cb cb, void *arg);
/* Abandon a request: its callback is not called; the handle is freed. */
void	weft_client_req_cancel(struct weft_client_req *r);

#endif
