/* The metrics registry: exposition format (escaping, histogram buckets
 * cumulative and consistent with _count), merging of shards, expiry,
 * latency buckets and percentiles, and the edge deltas for the controller. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "weft/metrics.h"
#include "../../tap.h"

static char *
expose(struct weft_metrics *m)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	if (weft_metrics_write_prometheus(m, b) == -1)
		return NULL;
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

/* The value of the sample line that starts with prefix, or -1. */
static double
sample(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while (p != NULL && *p != '\0') {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return -1;
}

static int
count_lines(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);
	int c = 0;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, prefix, n) == 0)
			c++;
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return c;
}

static char *
escaped(const char *v, bool help)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	weft_metrics_escape(b, v, help);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

static char *
value_str(double v)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	weft_metrics_put_value(b, v);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

static void
test_escape(void)
{
	char *s;

	s = escaped("a\"b\\c\nd", false);
	is_str(s, "a\\\"b\\\\c\\nd", "label value: quote, backslash, newline");
	free(s);
	s = escaped("say \"hi\"\\\n", true);
	is_str(s, "say \"hi\"\\\\\\n", "HELP text: quotes stay, backslash and "
	    "newline escaped");
	free(s);
	s = escaped("", false);
	is_str(s, "", "empty value");
	free(s);
	s = value_str(42);
	is_str(s, "42", "integer value");
	free(s);
	s = value_str(0.25);
	is_str(s, "0.25", "fraction");
	free(s);
	s = value_str(INFINITY);
	is_str(s, "+Inf", "+Inf");
	free(s);
	s = value_str(NAN);
	is_str(s, "NaN", "NaN");
	free(s);
}

static struct weft_metrics_req
req(enum weft_metrics_side side, const char *src_pod, const char *dst_pod,
    int status, double dur)
{
	struct weft_metrics_req r;

	memset(&r, 0, sizeof(r));
	r.side = side;
	r.src.ns = "tools";
	r.src.sa = "client";
	r.src.pod = src_pod;
	r.dst.ns = "shop";
	r.dst.sa = "api";
	r.dst.pod = dst_pod;
	r.dst_service = "api";
	r.status = status;
	r.duration_s = dur;
	return r;
}

#define L_OUT "{direction=\"outbound\",source_namespace=\"tools\"," \
	"source_service_account=\"client\",destination_namespace=\"shop\"," \
	"destination_service_account=\"api\",destination_service=\"api\""

static void
test_exposition(void)
{
	struct weft_metrics *m = weft_metrics_new(NULL, 3);
	struct weft_metrics_req r;
	struct weft_metrics_conn c;
	struct weft_metrics_tcp_series *ts;
	const double *bounds;
	size_t nb, i;
	char *text, pfx[512];
	double prev, v;
	bool mono = true;
	int n;

	/* Two shards record the same label set: one series, summed. */
	r = req(WEFT_METRICS_OUTBOUND, "client-1", "api-1", 200, 0.0003);
	weft_metrics_request(weft_metrics_shard(m, 0), &r);
	r.duration_s = 0.002;
	weft_metrics_request(weft_metrics_shard(m, 1), &r);
	r.duration_s = 20;	/* above the last bucket: +Inf only */
	weft_metrics_request(weft_metrics_shard(m, 1), &r);
	r = req(WEFT_METRICS_OUTBOUND, "client-1", "api-1", 503, 0.01);
	weft_metrics_request(weft_metrics_shard(m, 2), &r);
	r = req(WEFT_METRICS_OUTBOUND, "client-1", "api-1", 0, 0);
	weft_metrics_request(weft_metrics_shard(m, 2), &r);
	r = req(WEFT_METRICS_INBOUND, "client-1", "api-1", 403, 0.0001);
	r.denied = true;
	r.reason = "no-traffic-target";
	weft_metrics_request(weft_metrics_shard(m, 0), &r);
	r = req(WEFT_METRICS_INBOUND, "client-1", "api-1", 200, 0.001);
	r.dst.sa = "we\"ird\\sa\n";
	weft_metrics_request(weft_metrics_shard(m, 0), &r);
	weft_metrics_request(NULL, &r);		/* metrics off: no-op */

	memset(&c, 0, sizeof(c));
	c.side = WEFT_METRICS_OUTBOUND;
	c.src.ns = "tools";
	c.src.sa = "client";
	c.dst.ns = "shop";
	c.dst.sa = "api";
	c.dst_service = "api";
	ts = weft_metrics_tcp_open(weft_metrics_shard(m, 1), &c);
	ok(ts != NULL, "tcp series");
	weft_metrics_tcp_close(weft_metrics_shard(m, 1), ts, 100, 2000);
	ts = weft_metrics_tcp_open(weft_metrics_shard(m, 2), &c);
	ok(weft_metrics_tcp_open(NULL, &c) == NULL, "tcp off: NULL");

	text = expose(m);
	ok(text != NULL, "exposition");
	diag("exposition is %zu bytes", strlen(text));

	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"200\"}"),
	    3, "200s summed over two shards");
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"503\"}"),
	    1, "503");
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"0\"}"),
	    1, "no response: status_code 0");
	is_int(count_lines(text, "weft_requests_total{"), 5,
	    "one line per label set");
	ok(sample(text, "weft_requests_total{direction=\"inbound\","
	    "source_namespace=\"tools\",source_service_account=\"client\","
	    "destination_namespace=\"shop\",destination_service_account="
	    "\"we\\\"ird\\\\sa\\n\",destination_service=\"api\","
	    "status_code=\"200\"}") == 1, "label value escaped");
	is_int(sample(text, "weft_policy_denials_total{direction=\"inbound\","
	    "source_namespace=\"tools\",source_service_account=\"client\","
	    "destination_namespace=\"shop\",destination_service_account="
	    "\"api\",destination_service=\"api\",reason=\"no-traffic-target\"}"),
	    1, "denial with its reason");

	/* Buckets: cumulative, non-decreasing, +Inf == _count. */
	bounds = weft_metrics_buckets(&nb);
	is_int(nb, 16, "16 buckets");
	ok(bounds[0] == 0.0001 && bounds[nb - 1] == 10,
	    "buckets from 100 us to 10 s");
	prev = 0;
	for (i = 0; i < nb; i++) {
		snprintf(pfx, sizeof(pfx), "weft_request_duration_seconds_bucket"
		    L_OUT ",status_code=\"200\",le=\"%g\"}", bounds[i]);
		v = sample(text, pfx);
		if (v < prev || v < 0)
			mono = false;
		prev = v;
	}
	ok(mono, "bucket counts never decrease");
	is_int(sample(text, "weft_request_duration_seconds_bucket" L_OUT
	    ",status_code=\"200\",le=\"0.0005\"}"), 1, "0.3 ms in le=0.0005");
	is_int(sample(text, "weft_request_duration_seconds_bucket" L_OUT
	    ",status_code=\"200\",le=\"0.0025\"}"), 2, "2 ms in le=0.0025");
	is_int(sample(text, "weft_request_duration_seconds_bucket" L_OUT
	    ",status_code=\"200\",le=\"10\"}"), 2, "20 s not in le=10");
	is_int(sample(text, "weft_request_duration_seconds_bucket" L_OUT
	    ",status_code=\"200\",le=\"+Inf\"}"), 3, "+Inf has all");
	is_int(sample(text, "weft_request_duration_seconds_count" L_OUT
	    ",status_code=\"200\"}"), 3, "_count == +Inf");
	v = sample(text, "weft_request_duration_seconds_sum" L_OUT
	    ",status_code=\"200\"}");
	ok(fabs(v - 20.0023) < 1e-9, "_sum %.9f", v);
	is_int(count_lines(text, "weft_request_duration_seconds_count" L_OUT
	    ",status_code=\"0\"}"), 0, "no histogram without a response");

	is_int(sample(text, "weft_tcp_connections_opened_total" L_OUT "}"), 2,
	    "tcp opened over two shards");
	is_int(sample(text, "weft_tcp_connections_closed_total" L_OUT "}"), 1,
	    "tcp closed");
	is_int(sample(text, "weft_tcp_sent_bytes_total" L_OUT "}"), 100,
	    "tcp sent");
	is_int(sample(text, "weft_tcp_received_bytes_total" L_OUT "}"), 2000,
	    "tcp received");

	n = count_lines(text, "# TYPE ");
	is_int(n, 7, "seven families typed");
	ok(strstr(text, "# TYPE weft_request_duration_seconds histogram\n") !=
	    NULL, "histogram type");
	free(text);

	/* Expiry: idle series go, a series held by an open connection
	 * stays. */
	for (i = 0; i < 3; i++)
		weft_metrics_sweep(weft_metrics_shard(m, (int)i), (int64_t)1 << 40);
	text = expose(m);
	is_int(count_lines(text, "weft_requests_total{"), 0,
	    "idle request series expired");
	is_int(sample(text, "weft_tcp_connections_opened_total" L_OUT "}"), 1,
	    "open connection's series kept");
	free(text);
	weft_metrics_tcp_close(weft_metrics_shard(m, 2), ts, 1, 1);
	weft_metrics_sweep(weft_metrics_shard(m, 2), (int64_t)1 << 40);
	text = expose(m);
	is_int(count_lines(text, "weft_tcp_connections_opened_total{"), 0,
	    "closed connection's series expired");
	free(text);
	weft_metrics_free(m);

	text = expose(NULL);
	ok(text != NULL && count_lines(text, "# TYPE ") == 7,
	    "no registry: families described, no samples");
	free(text);
}

static void
test_latency(void)
{
	struct weft_lat_hist h;
	double v, prev = 0;
	size_t i;
	bool mono = true, inside = true;

	for (i = 0; i < WEFT_LAT_NBUCKETS - 1; i++) {
		if (weft_lat_bucket_upper(i) <= prev)
			mono = false;
		prev = weft_lat_bucket_upper(i);
		if (weft_lat_bucket(weft_lat_bucket_upper(i)) != i ||
		    weft_lat_bucket(weft_lat_bucket_upper(i) * 1.0001) != i + 1)
			inside = false;
	}
	ok(mono, "latency bounds increase");
	ok(inside, "bounds are upper-inclusive");
	is_int(weft_lat_bucket(0), 0, "0 s -> bucket 0");
	is_int(weft_lat_bucket(-1), 0, "negative -> bucket 0");
	is_int(weft_lat_bucket(1e6), WEFT_LAT_NBUCKETS - 1, "huge -> overflow");
	ok(weft_lat_bucket_upper(WEFT_LAT_NBUCKETS - 2) > 60,
	    "last finite bound above a minute");

	memset(&h, 0, sizeof(h));
	ok(weft_lat_quantile(&h, 0.5) < 0, "empty: no quantile");

	/* 100 samples: 1 ms .. 100 ms. */
	for (i = 1; i <= 100; i++)
		h.lh_count[weft_lat_bucket((double)i / 1000)]++;
	v = weft_lat_quantile(&h, 0.5);
	ok(fabs(v - 0.050) / 0.050 < 0.10, "p50 of 1..100 ms ~ 50 ms: %.4f", v);
	v = weft_lat_quantile(&h, 0.9);
	ok(fabs(v - 0.090) / 0.090 < 0.10, "p90 ~ 90 ms: %.4f", v);
	v = weft_lat_quantile(&h, 0.99);
	ok(fabs(v - 0.099) / 0.099 < 0.10, "p99 ~ 99 ms: %.4f", v);
	ok(weft_lat_quantile(&h, 0.5) <= weft_lat_quantile(&h, 0.9) &&
	    weft_lat_quantile(&h, 0.9) <= weft_lat_quantile(&h, 0.99),
	    "p50 <= p90 <= p99");

	/* One sample: every quantile inside its bucket. */
	memset(&h, 0, sizeof(h));
	i = weft_lat_bucket(0.0035);
	h.lh_count[i] = 1;
	v = weft_lat_quantile(&h, 0.99);
	ok(v > weft_lat_bucket_lower(i) && v <= weft_lat_bucket_upper(i),
	    "single sample: p99 within its bucket (%.5f)", v);
	ok(fabs(v - 0.0035) / 0.0035 < 0.2, "single sample: close to 3.5 ms");
}

static struct json_object *
edges_of(const char *json)
{
	struct json_object *o = json_tokener_parse(json), *e = NULL;

	if (o != NULL && json_object_object_get_ex(o, "edges", &e))
		json_object_get(e);
	json_object_put(o);
	return e;
}

static int64_t
edge_int(struct json_object *e, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(e, k, &v) ? json_object_get_int64(v)
	    : -1;
}

static const char *
edge_str(struct json_object *e, const char *a, const char *b)
{
	struct json_object *v, *w;

	if (!json_object_object_get_ex(e, a, &v))
		return NULL;
	if (b == NULL)
		return json_object_get_string(v);
	return json_object_object_get_ex(v, b, &w) ? json_object_get_string(w) :
	    NULL;
}

static void
test_edges(void)
{
	struct weft_metrics *m = weft_metrics_new(NULL, 2);
	struct weft_metrics_req r;
	struct json_object *edges, *e, *lat;
	size_t n;
	char *json;
	int64_t succ = 0, fail = 0, lcount = 0;
	size_t i, k;

	json = weft_metrics_edges_delta(m, "node-1", &n);
	ok(json != NULL && n == 0, "nothing recorded: no edges");
	free(json);

	r = req(WEFT_METRICS_OUTBOUND, "client-1", "api-1", 200, 0.002);
	r.split_apex = "api-root";
	weft_metrics_request(weft_metrics_shard(m, 0), &r);
	weft_metrics_request(weft_metrics_shard(m, 1), &r);
	r.status = 500;
	weft_metrics_request(weft_metrics_shard(m, 1), &r);
	r.status = 0;
	weft_metrics_request(weft_metrics_shard(m, 1), &r);
	r.status = 403;		/* a denial is an answer: success */
	r.denied = true;
	weft_metrics_request(weft_metrics_shard(m, 0), &r);

	json = weft_metrics_edges_delta(m, "node-1", &n);
	ok(json != NULL, "delta");
	is_int(n, 2, "one edge per shard");
	edges = edges_of(json);
	ok(edges != NULL && json_object_array_length(edges) == 2, "edges array");
	for (i = 0; edges != NULL && i < json_object_array_length(edges); i++) {
		e = json_object_array_get_idx(edges, i);
		succ += edge_int(e, "success");
		fail += edge_int(e, "failure");
		is_str(edge_str(e, "side", NULL), "client", "side client");
		is_str(edge_str(e, "src", "pod"), "client-1", "src pod");
		is_str(edge_str(e, "dst", "pod"), "api-1", "dst pod");
		is_str(edge_str(e, "dst", "serviceAccount"), "api", "dst sa");
		is_str(edge_str(e, "apex", NULL), "api-root", "apex");
		json_object_object_get_ex(e, "latency", &lat);
		for (k = 0; k < json_object_array_length(lat); k++)
			lcount += json_object_get_int64(json_object_array_get_idx(
			    json_object_array_get_idx(lat, k), 1));
	}
	is_int(succ, 3, "success: 200, 200, 403");
	is_int(fail, 2, "failure: 500 and no response");
	is_int(lcount, 4, "latency samples: every answered request");
	json_object_put(edges);
	free(json);

	/* Without commit the same delta comes again. */
	json = weft_metrics_edges_delta(m, "node-1", &n);
	is_int(n, 2, "not committed: sent again");
	free(json);
	weft_metrics_edges_commit(m);
	json = weft_metrics_edges_delta(m, "node-1", &n);
	is_int(n, 0, "committed: nothing new");
	free(json);

	r.status = 200;
	r.denied = false;
	weft_metrics_request(weft_metrics_shard(m, 1), &r);
	json = weft_metrics_edges_delta(m, "node-1", &n);
	is_int(n, 1, "one new request: one edge");
	edges = edges_of(json);
	e = edges ? json_object_array_get_idx(edges, 0) : NULL;
	is_int(e ? edge_int(e, "success") : -1, 1, "delta only");
	json_object_put(edges);
	free(json);
	weft_metrics_edges_commit(m);

	/* A push holds at most WEFT_METRICS_PUSH_MAX edges; the rest follow. */
	{
		char pod[32];
		int p;

		for (p = 0; p < WEFT_METRICS_PUSH_MAX + 10; p++) {
			snprintf(pod, sizeof(pod), "api-%d", p);
			r = req(WEFT_METRICS_INBOUND, "client-1", pod, 200, 0.001);
			weft_metrics_request(weft_metrics_shard(m, 0), &r);
		}
		json = weft_metrics_edges_delta(m, "node-1", &n);
		is_int(n, WEFT_METRICS_PUSH_MAX, "a push is bounded");
		free(json);
		weft_metrics_edges_commit(m);
		json = weft_metrics_edges_delta(m, "node-1", &n);
		is_int(n, 10, "the rest in the next push");
		free(json);
		weft_metrics_edges_commit(m);
		json = weft_metrics_edges_delta(m, "node-1", &n);
		is_int(n, 0, "then nothing");
		free(json);
	}
	weft_metrics_free(m);
}

/* A flow keeps the series it uses: its requests need no lookup, and a
 * sweep leaves them alone while it lives. */
static void
test_flow(void)
{
	struct weft_metrics *m = weft_metrics_new(NULL, 1);
	struct weft_metrics_shard *sh = weft_metrics_shard(m, 0);
	struct weft_metrics_conn c;
	struct weft_metrics_flow *f;
	static const int codes[] = { 200, 404, 500, 503, 200, 302, 200, 0 };
	char *text, *json;
	size_t i, n;

	memset(&c, 0, sizeof(c));
	c.side = WEFT_METRICS_OUTBOUND;
	c.src.ns = "tools";
	c.src.sa = "client";
	c.src.pod = "client-1";
	c.dst.ns = "shop";
	c.dst.sa = "api";
	c.dst.pod = "api-1";
	c.dst_service = "api";
	ok(weft_metrics_flow_new(NULL, &c) == NULL, "metrics off: no flow");
	weft_metrics_flow_request(sh, NULL, 200, 0.1, NULL);
	f = weft_metrics_flow_new(sh, &c);
	ok(f != NULL, "flow");
	/* more statuses than the flow caches */
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		weft_metrics_flow_request(sh, f, codes[i], 0.001, NULL);
	weft_metrics_flow_request(sh, f, 403, 0.0001, "no-traffic-target");
	text = expose(m);
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"200\"}"),
	    3, "flow: 200s");
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"0\"}"),
	    1, "flow: no response");
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"403\"}"),
	    1, "flow: denial");
	is_int(count_lines(text, "weft_requests_total{"), 7,
	    "one series per status, even past the cache");
	is_int(sample(text, "weft_tcp_connections_opened_total" L_OUT "}"), 1,
	    "flow opened its connection");
	free(text);
	/* Idle for ages: what the flow holds stays (its last four statuses:
	 * 403, 0, 200, 302), the rest goes. */
	weft_metrics_sweep(sh, (int64_t)1 << 40);
	text = expose(m);
	is_int(count_lines(text, "weft_requests_total{"), 4,
	    "held series survive a sweep, the others expire");
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"200\"}"),
	    3, "held series keep their counts");
	free(text);
	json = weft_metrics_edges_delta(m, "n", &n);
	ok(n == 1 && strstr(json, "\"success\":6,\"failure\":3") != NULL,
	    "flow edge: 200 x3, 404, 302, 403 succeed; 500, 503, 0 fail");
	free(json);
	/* a status seen again after its series expired starts over */
	weft_metrics_flow_request(sh, f, 404, 0.001, NULL);
	text = expose(m);
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"404\"}"),
	    1, "an expired status comes back");
	free(text);
	weft_metrics_flow_close(sh, f, 100, 200);
	weft_metrics_sweep(sh, (int64_t)1 << 40);
	text = expose(m);
	is_int(count_lines(text, "weft_requests_total{"), 0,
	    "closed flow's series expire");
	is_int(count_lines(text, "weft_tcp_connections_opened_total{"), 0,
	    "and its connection's");
	free(text);
	weft_metrics_free(m);
}

static struct weft_metrics_conn
conn(enum weft_metrics_side side, const char *src_pod, const char *dst_pod)
{
	struct weft_metrics_conn c;

	memset(&c, 0, sizeof(c));
	c.side = side;
	c.src.ns = "tools";
	c.src.sa = "client";
	c.src.pod = src_pod;
	c.dst.ns = "shop";
	c.dst.sa = "api";
	c.dst.pod = dst_pod;
	c.dst_service = "api";
	return c;
}

/* The exposition and the edges of a fixed script of flows, from scratch:
 * flows of one label set at a time, so that nothing is shared, or all open
 * together, so that equal labels share their set.  Equal either way. */
static void
flow_script(bool together, char **text, char **json)
{
	struct weft_metrics *m = weft_metrics_new(NULL, 2);
	struct weft_metrics_shard *sh = weft_metrics_shard(m, 0);
	struct weft_metrics_flow *f[6];
	struct weft_metrics_conn c[6];
	size_t i, n;

	c[0] = conn(WEFT_METRICS_OUTBOUND, "client-1", "api-1");
	c[1] = conn(WEFT_METRICS_OUTBOUND, "client-1", "api-1");
	c[2] = conn(WEFT_METRICS_INBOUND, "client-1", "api-1");
	c[3] = conn(WEFT_METRICS_OUTBOUND, "client-1", "api-2");
	c[4] = conn(WEFT_METRICS_OUTBOUND, "client-1", "api-2");
	c[4].split_apex = "api-root";
	c[5] = conn(WEFT_METRICS_OUTBOUND, NULL, NULL);
	c[5].dst_service = NULL;
	for (i = 0; i < 6; i++) {
		f[i] = weft_metrics_flow_new(sh, &c[i]);
		weft_metrics_flow_request(sh, f[i], 200, 0.001 * (double)(i + 1),
		    NULL);
		weft_metrics_flow_request(sh, f[i], i % 2 ? 503 : 0, 0.01,
		    NULL);
		if (i == 2)
			weft_metrics_flow_request(sh, f[i], 403, 0.0001,
			    "no-traffic-target");
		if (!together)
			weft_metrics_flow_close(sh, f[i], 10 * i, 100 * i);
	}
	for (i = 0; together && i < 6; i++)
		weft_metrics_flow_close(sh, f[i], 10 * i, 100 * i);
	*text = expose(m);
	*json = weft_metrics_edges_delta(m, "n", &n);
	weft_metrics_free(m);
}

/* Flows with the same labels share one label set of the shard; it goes
 * with their last flow; what is exported does not depend on it. */
static void
test_flow_labels(void)
{
	struct weft_metrics *m = weft_metrics_new(NULL, 2);
	struct weft_metrics_shard *sh = weft_metrics_shard(m, 0);
	const struct weft_metrics_test *t = weft_metrics_test_hooks(sh);
	const struct weft_metrics_test *t1 =
	    weft_metrics_test_hooks(weft_metrics_shard(m, 1));
	struct weft_metrics_conn c, d;
	struct weft_metrics_flow *f1, *f2, *f3, *f4, *f5, *g;
	struct weft_metrics_flow *many[1000];
	char *text, *json, *text2, *json2, pod[32];
	size_t i;

	diag("flow %zu bytes (was 128 and a copy of its strings), label set "
	    "%zu bytes and its strings", t->mt_flow_size, t->mt_labels_size);
	ok(t->mt_flow_size <= 72, "a flow is at most 72 bytes");
	is_int(t->mt_label_sets, 0, "no flow: no label set");

	c = conn(WEFT_METRICS_OUTBOUND, "client-1", "api-1");
	f1 = weft_metrics_flow_new(sh, &c);
	ok(f1 != NULL, "flow 1");
	is_int(t->mt_label_sets, 1, "one set");
	/* the same labels from other strings */
	d = conn(WEFT_METRICS_OUTBOUND, strdup("client-1"), strdup("api-1"));
	f2 = weft_metrics_flow_new(sh, &d);
	is_int(t->mt_label_sets, 1, "same labels: the same set");
	free((char *)d.src.pod);
	free((char *)d.dst.pod);
	ok(weft_metrics_flow_side(f2) == WEFT_METRICS_OUTBOUND, "side kept");

	d = conn(WEFT_METRICS_INBOUND, "client-1", "api-1");
	f3 = weft_metrics_flow_new(sh, &d);
	is_int(t->mt_label_sets, 2, "other side: another set");
	ok(weft_metrics_flow_side(f3) == WEFT_METRICS_INBOUND, "inbound");
	d = conn(WEFT_METRICS_OUTBOUND, "client-1", "api-2");
	f4 = weft_metrics_flow_new(sh, &d);
	is_int(t->mt_label_sets, 3, "other pod: another set");
	d = conn(WEFT_METRICS_OUTBOUND, "client-1", "api-1");
	d.split_apex = "api-root";
	f5 = weft_metrics_flow_new(sh, &d);
	is_int(t->mt_label_sets, 4, "other apex: another set");
	/* unknown (NULL) and "" are one label value */
	d = conn(WEFT_METRICS_OUTBOUND, NULL, "");
	g = weft_metrics_flow_new(sh, &d);
	d = conn(WEFT_METRICS_OUTBOUND, "", NULL);
	many[0] = weft_metrics_flow_new(sh, &d);
	is_int(t->mt_label_sets, 5, "NULL and \"\": the same set");
	weft_metrics_flow_close(sh, many[0], 0, 0);
	weft_metrics_flow_close(sh, g, 0, 0);
	is_int(t->mt_label_sets, 4, "its last flow closed: the set is freed");
	g = weft_metrics_flow_new(weft_metrics_shard(m, 1), &c);
	is_int(t1->mt_label_sets, 1, "another shard has its own sets");
	is_int(t->mt_label_sets, 4, "and this one is unchanged");

	weft_metrics_flow_request(sh, f1, 200, 0.001, NULL);
	weft_metrics_flow_request(sh, f2, 200, 0.001, NULL);
	weft_metrics_flow_close(sh, f1, 1, 2);
	is_int(t->mt_label_sets, 4, "a flow of a set remains: the set stays");
	weft_metrics_sweep(sh, (int64_t)1 << 40);
	text = expose(m);
	/* L_OUT's TCP series: f1, f2, f4, f5, the two unknown pods', g */
	is_int(sample(text, "weft_tcp_connections_opened_total" L_OUT "}"), 7,
	    "seven connections opened");
	is_int(sample(text, "weft_tcp_connections_closed_total" L_OUT "}"), 3,
	    "three closed");
	is_int(sample(text, "weft_tcp_sent_bytes_total" L_OUT "}"), 1,
	    "with their bytes");
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"200\"}"),
	    2, "a live flow's series survive a sweep");
	free(text);
	weft_metrics_flow_close(sh, f2, 3, 4);
	weft_metrics_flow_close(sh, f3, 0, 0);
	weft_metrics_flow_close(sh, f4, 0, 0);
	weft_metrics_flow_close(sh, f5, 0, 0);
	is_int(t->mt_label_sets, 0, "every flow closed: no set");
	weft_metrics_sweep(sh, (int64_t)1 << 40);
	text = expose(m);
	is_int(sample(text, "weft_tcp_connections_opened_total" L_OUT "}"), 1,
	    "shard 0's TCP series expired, shard 1's held by its open flow");
	is_int(sample(text, "weft_tcp_connections_closed_total" L_OUT "}"), 0,
	    "which is not closed");
	is_int(count_lines(text, "weft_requests_total{"), 0,
	    "the sets' series expire once their flows are gone");
	free(text);
	weft_metrics_flow_close(weft_metrics_shard(m, 1), g, 0, 0);
	is_int(t1->mt_label_sets, 0, "shard 1: no set");

	/* Pods come and go: sets do not pile up. */
	for (i = 0; i < 1000; i++) {
		snprintf(pod, sizeof(pod), "api-%zu", i % 300);
		d = conn(WEFT_METRICS_INBOUND, "client-1", pod);
		many[i] = weft_metrics_flow_new(sh, &d);
	}
	is_int(t->mt_label_sets, 300, "1000 flows to 300 pods: 300 sets");
	for (i = 0; i < 1000; i++)
		weft_metrics_flow_close(sh, many[i], 0, 0);
	is_int(t->mt_label_sets, 0, "all closed: none");
	/* A set still held when the registry goes is freed with it (LSan;
	 * the flow itself is one plain allocation). */
	many[0] = weft_metrics_flow_new(sh, &c);
	free(many[0]);
	weft_metrics_free(m);

	/* Exported the same whether flows share their labels or not. */
	flow_script(false, &text, &json);
	flow_script(true, &text2, &json2);
	ok(text != NULL && text2 != NULL && strcmp(text, text2) == 0,
	    "exposition: sharing changes nothing");
	ok(json != NULL && json2 != NULL && strcmp(json, json2) == 0,
	    "edges: sharing changes nothing");
	is_int(sample(text, "weft_tcp_connections_opened_total" L_OUT "}"), 4,
	    "outbound flows to the service: 4 connections");
	is_int(sample(text, "weft_tcp_sent_bytes_total" L_OUT "}"), 80,
	    "their bytes");
	is_int(sample(text, "weft_requests_total" L_OUT ",status_code=\"503\"}"),
	    2, "503 of flows 1 and 3");
	ok(sample(text, "weft_tcp_connections_opened_total{direction="
	    "\"outbound\",source_namespace=\"tools\",source_service_account="
	    "\"client\",destination_namespace=\"shop\","
	    "destination_service_account=\"api\",destination_service="
	    "\"unknown\"}") == 1, "unknown service");
	ok(json != NULL && strstr(json, "\"apex\":\"api-root\"") != NULL,
	    "the apex reaches its edge");
	free(text);
	free(text2);
	free(json);
	free(json2);
}

int
main(void)
{
	test_escape();
	test_exposition();
	test_latency();
	test_edges();
	test_flow();
	test_flow_labels();
	return tap_done();
}
