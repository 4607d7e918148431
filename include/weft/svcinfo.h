/* `weft ctl service NS/NAME`: one Service as the mesh sees it - its ports,
 * its endpoints (pods its selector picks, targetPort resolved, ready or
 * not, on which node), the TrafficSplits whose root it is (backends,
 * weights, `matches`) and the share of requests each backend received
 * recently, from the nodes' pushed metrics (weft/smimetrics.h; client-side
 * requests the split sent there, within the window).
 *
 * Wire form: GET /v1/services/NS/NAME[?t=30s] with an admin token; 200 and
 *   {"namespace","name","clusterIP","window":"30s",
 *    "ports":[{"name","port","protocol","targetPort","appProtocol"}],
 *    "endpoints":[{"pod","node","ip","ready","targetPorts":[N...]}],
 *    "splits":[{"name","created","matches":[...],"catchAll":bool,
 *       "backends":[{"service","weight","exists","endpoints",
 *                    "requests","success","failure"}]}],
 *    "backendOf":[{"split","root"}]}
 * 404 {"error"} for an unknown Service.  Return convention: a pointer /
 * NULL, 0 / -1. */
#ifndef WEFT_SVCINFO_H
#define WEFT_SVCINFO_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct weft_model;
struct weft_smim;

/* The JSON above for ns/name in m (borrowed), shares from s (may be NULL:
 * no counts) over window seconds ending at now (monotonic seconds; wall:
 * the time for the metrics API).  *status: 200 or 404.  Returns malloc'd
 * text, NULL on allocation failure. */
char	*weft_svcinfo_json(const struct weft_model *m, struct weft_smim *s,
	    const char *ns, const char *name, int window, int64_t now,
	    time_t wall, int *status);

/* Print that JSON as ctl shows it.  Returns 0, or -1 if json is not such a
 * document. */
int	weft_svcinfo_print(const char *json, FILE *f);

#endif
