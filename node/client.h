/* Internal to node/: the snapshot long-poll client. */
#ifndef WEFT_NODE_CLIENT_H
#define WEFT_NODE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct weft_client;

/* Called with each snapshot body (borrowed).  Returns 0 if applied (the
 * callback has called weft_client_set_have), -1 if rejected (retried with
 * backoff). */
typedef int (*weft_client_cb)(const char *json, size_t len, void *arg);

/* A client for url ("http://host:port").  NULL with *err (malloc'd). */
struct weft_client *weft_client_new(struct event_base *base, const char *url,
	    const char *node_name, const char *token, int poll_timeout,
	    weft_client_cb cb, void *arg, char **err);
void	weft_client_start(struct weft_client *c);
/* The generation the node has applied, reported with the next poll. */
void	weft_client_set_have(struct weft_client *c, uint64_t have);
void	weft_client_free(struct weft_client *c);

#endif
