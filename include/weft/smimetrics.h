/* The SMI TrafficMetrics API (SPEC §6, DESIGN §8), served by the controller
 * from what the nodes push.
 *
 * Feed: every node POSTs, every few seconds, the deltas of its pod-to-pod
 * edges since its last acknowledged push (weft_metrics_edges_delta, format
 * in common/metrics.c): success and failure counts and a latency
 * histogram with weft_lat_bucket()'s buckets, per (side, source pod,
 * destination pod, service, split apex).  The store keeps each edge's
 * deltas with their arrival time for WEFT_SMIM_HISTORY seconds; a query's
 * window (default 30 s, ?t=<Go duration>) sums those that arrived within
 * it, so a window is exact to the push interval.
 *
 * Answers (paths under /apis/metrics.smi-spec.io/v1alpha1):
 *   resources: namespaces, pods, deployments (a pod belongs to the
 *   Deployment whose spec.selector.matchLabels it matches, else to the one
 *   named by its app.kubernetes.io/name or app label), trafficsplits.
 *   A resource's metrics are the requests it served, measured at the
 *   server side; its edges are "to" edges measured at the client side
 *   (side client) and "from" edges measured at the server side (side
 *   server), between resources of the same kind; peers that are no
 *   known pod (unmeshed callers) count in the totals, not in edges.
 *   A trafficsplit gives one item per backend: client-side requests to the
 *   split's root service that the split sent to that backend.
 *   Latency percentiles are in ms and left out when the window has
 *   no answered request; A-30: no standard deviation.
 *
 * Not thread-safe: the controller's loop only.  Return convention: 0 / -1,
 * or a pointer / NULL. */
#ifndef WEFT_SMIMETRICS_H
#define WEFT_SMIMETRICS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>

struct weft_model;
struct weft_smim;

#define WEFT_SMIM_PREFIX	"/apis/metrics.smi-spec.io/v1alpha1"
#define WEFT_SMIM_HISTORY	600	/* seconds of deltas kept */
#define WEFT_SMIM_WINDOW	30	/* default window, seconds */

struct weft_smim *weft_smim_new(void);
void	weft_smim_free(struct weft_smim *s);

/* Add one node's push (json, len bytes) as of now (a CLOCK_MONOTONIC
 * second).  Returns the number of edges taken, or -1 with *err (malloc'd)
 * when the body is not a push (nothing is taken then). */
int	weft_smim_ingest(struct weft_smim *s, const char *json, size_t len,
	    int64_t now, char **err);
/* Forget edges without a delta in the last WEFT_SMIM_HISTORY seconds. */
void	weft_smim_prune(struct weft_smim *s, int64_t now);
/* Edges in the store (tests, status). */
size_t	weft_smim_nedges(const struct weft_smim *s);

/* Answer GET path?query for a path under /apis (the group, the version's
 * resource list, or a TrafficMetrics(List)).  model (borrowed, may be NULL
 * before the first load) names the resources; now is the monotonic second,
 * wall the time for "timestamp".  Returns the HTTP status and *body
 * (malloc'd JSON: the object, or a Kubernetes Status on errors). */
int	weft_smim_serve(struct weft_smim *s, const struct weft_model *model,
	    const char *path, const char *query, int64_t now, time_t wall,
	    char **body);

/* Every pod-to-pod edge with traffic in the window (seconds), for `weft ctl
 * top`: {"window":"30s","edges":[{"side","source":{namespace,pod,
 * serviceAccount},"destination":{...},"service","requests","success",
 * "failure","rps","p50_ms","p90_ms","p99_ms"}]}, sorted by source then
 * destination; ns (NULL: all) keeps edges with either end in it.  Returns
 * malloc'd JSON or NULL. */
char	*weft_smim_top(struct weft_smim *s, const char *ns, int window,
	    int64_t now);

/* Print weft_smim_top's JSON as `weft ctl top`'s table: one line per edge
 * measured at side ("client", "server" or "all"): source and destination
 * pods, service, side, requests per second, success ratio, p50/p90/p99.
 * Returns 0, or -1 when json is not such a document. */
int	weft_smim_top_print(const char *json, const char *side, FILE *f);

/* Go durations as the reference server takes them for ?t= ("30s", "5m",
 * "1m30s", "1h"): whole seconds into *out.  Returns 0 or -1. */
int	weft_smim_parse_duration(const char *s, int *out);
/* And back, as Go prints them ("30s", "5m0s", "1h0m0s"); buf >= 24. */
void	weft_smim_format_duration(int secs, char *buf, size_t len);
/* A Kubernetes Quantity of v (>= 0) in milli-units: "41", "3500m", "0". */
void	weft_smim_quantity(double v, char *buf, size_t len);

#endif
