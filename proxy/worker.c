/* Worker threads: one event_base each, with its own listeners and
 * connections (DESIGN §3: a connection never leaves its thread, so the data
 * path takes no locks).  Start and stop happen from the caller's thread: the
 * listeners are opened before any thread runs (so errors are reported
 * synchronously), and stop activates an event in each loop, which closes
 * that worker's listeners and connections on its own thread. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "weft/conn.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/proxy.h"
#include "weft/tunnel.h"
#include "proxy/proxy-int.h"

#define WORKER_LISTENERS_MAX	6	/* {outbound, inbound, tunnel} x {v4, v6} */

struct weft_worker {
	struct weft_proxy *w_proxy;		/* back pointer */
	int		 w_index;
	pthread_t	 w_thread;
	bool		 w_running;		/* w_thread was created */
	struct event_base *w_base;		/* owned */
	struct event	*w_stop;		/* owned; activated by stop */
	struct event	*w_policy;		/* owned; generation watch */
	struct weft_listener w_listeners[WORKER_LISTENERS_MAX];
	size_t		 w_nlisteners;
	struct weft_conn_ctx w_ctx;
};

struct weft_proxy {
	struct weft_proxy_config p_cfg;		/* with defaults filled in */
	struct weft_worker *p_workers;		/* owned, p_nworkers */
	int		 p_nworkers;
};

static pthread_once_t worker_evthread_once = PTHREAD_ONCE_INIT;
static int worker_evthread_ok;

static void
worker_evthread_init(void)
{
	/* Lets another thread activate an event in a worker's base (stop). */
	worker_evthread_ok = evthread_use_pthreads() == 0;
}

/* The end of a worker: what is still open is closed, the loop returns. */
static void
worker_finish(void *arg)
{
	struct weft_worker *w = arg;

	if (w->w_ctx.cx_nconns > 0)
		log_info("worker %d: closing %zu connections", w->w_index,
		    w->w_ctx.cx_nconns);
	weft_conn_ctx_shutdown(&w->w_ctx);
	event_base_loopbreak(w->w_base);
}

/* Stop accepting; tunnel peers are told (GOAWAY) and open streams get a
 * short while to finish (weft_tunnel_drain) before everything closes. */
static void
worker_stopcb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_worker *w = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < w->w_nlisteners; i++)
		weft_listener_close(&w->w_listeners[i]);
	if (w->w_ctx.cx_tunnel != NULL)
		weft_tunnel_drain(w->w_ctx.cx_tunnel, worker_finish, w);
	else
		worker_finish(w);
}

/* Every WORKER_POLICY_MS: if a new generation was published, connections
 * let in at L4 are decided again and closed if no longer allowed (DESIGN
 * §5).  Requests need no watch: each is decided on the current one. */
#define WORKER_POLICY_MS	100

static void
worker_policycb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_worker *w = arg;
	struct weft_gen *g;
	uint64_t gen;

	(void)fd;
	(void)what;
	if ((g = weft_gen_current()) == NULL)
		return;
	gen = weft_gen_generation(g);
	if (gen != w->w_ctx.cx_policy_gen) {
		w->w_ctx.cx_policy_gen = gen;
		weft_conn_recheck(&w->w_ctx, g);
		if (w->w_ctx.cx_tunnel != NULL)
			weft_tunnel_recheck(w->w_ctx.cx_tunnel, g);
	}
	weft_gen_unref(g);
}

static void *
worker_main(void *arg)
{
	struct weft_worker *w = arg;

	log_debug("worker %d: running", w->w_index);
	if (event_base_loop(w->w_base, EVLOOP_NO_EXIT_ON_EMPTY) == -1)
		log_warnx("worker %d: event loop failed", w->w_index);
	return NULL;
}

static int
worker_listen(struct weft_worker *w, enum weft_conn_dir dir, int family,
    const char *addr, uint16_t port, bool transparent)
{
	struct weft_listener *l = &w->w_listeners[w->w_nlisteners];
	struct sockaddr_storage ss;
	socklen_t len;
	struct weft_ip ip;

	if (weft_ip_parse(addr, &ip) == -1 || ip.family != family) {
		errno = EINVAL;
		return -1;
	}
	weft_ip_to_sockaddr(&ip, port, &ss, &len);
	if (weft_listener_open(l, &w->w_ctx, dir, (struct sockaddr *)&ss, len,
	    transparent) == -1)
		return -1;
	w->w_nlisteners++;
	return 0;
}

static void
worker_free(struct weft_worker *w)
{
	size_t i;

	for (i = 0; i < w->w_nlisteners; i++)
		weft_listener_close(&w->w_listeners[i]);
	w->w_nlisteners = 0;
	if (w->w_base != NULL)
		weft_conn_ctx_shutdown(&w->w_ctx);
	if (w->w_ctx.cx_tunnel != NULL)
		weft_tunnel_free(w->w_ctx.cx_tunnel);
	if (w->w_stop != NULL) {
		event_free(w->w_stop);
		w->w_stop = NULL;
	}
	if (w->w_policy != NULL) {
		event_free(w->w_policy);
		w->w_policy = NULL;
	}
	weft_metrics_shard_detach(w->w_ctx.cx_metrics);
	if (w->w_base != NULL) {
		event_base_free(w->w_base);
		w->w_base = NULL;
	}
}

int
weft_proxy_start(const struct weft_proxy_config *cfg, struct weft_proxy **out)
{
	struct weft_proxy_options opts = {
		.po_transparent = true,
		.po_ipv6 = true,
		.po_listen_v4 = "0.0.0.0",
	};

	return weft_proxy_start_opts(cfg, &opts, out);
}

int
weft_proxy_start_opts(const struct weft_proxy_config *cfg,
    const struct weft_proxy_options *opts, struct weft_proxy **out)
{
	struct weft_proxy *p;
	struct weft_relay_config rc;
	struct weft_tunnel_config tcfg;
	sigset_t all, old;
	bool ipv6 = opts->po_ipv6;
	const char *v4 = opts->po_listen_v4 ? opts->po_listen_v4 : "0.0.0.0";
	int i;
	long ncpu;

	*out = NULL;
	pthread_once(&worker_evthread_once, worker_evthread_init);
	if (!worker_evthread_ok) {
		log_warnx("%s: libevent has no pthreads support", __func__);
		return -1;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		log_warn("%s", __func__);
		return -1;
	}
	p->p_cfg = *cfg;
	if (p->p_cfg.outbound_port == 0)
		p->p_cfg.outbound_port = WEFT_PORT_OUTBOUND;
	if (p->p_cfg.inbound_port == 0)
		p->p_cfg.inbound_port = WEFT_PORT_INBOUND;
	if (p->p_cfg.tunnel_port == 0)
		p->p_cfg.tunnel_port = WEFT_PORT_TUNNEL;
	if (p->p_cfg.workers <= 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		p->p_cfg.workers = ncpu > 0 ? (int)ncpu : 1;
	}

	weft_relay_config_defaults(&rc);
	if (cfg->buffer_high > 0)
		rc.rc_buffer_high = cfg->buffer_high;
	if (cfg->connect_timeout_ms > 0)
		rc.rc_connect_timeout_ms = cfg->connect_timeout_ms;
	if (cfg->hold_ms > 0)
		rc.rc_hold_ms = cfg->hold_ms;
	rc.rc_own_mark = cfg->own_mark;
	rc.rc_transparent = opts->po_transparent;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = p->p_cfg.outbound_port;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = p->p_cfg.inbound_port;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = p->p_cfg.tunnel_port;
	rc.rc_tunnel_port = p->p_cfg.tunnel_port;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = WEFT_PORT_ADMIN;
	if (rc.rc_own_mark == 0)
		log_warnx("proxy: no own_mark: upstream connections may be "
		    "captured again");

	if ((p->p_workers = calloc((size_t)p->p_cfg.workers,
	    sizeof(*p->p_workers))) == NULL) {
		log_warn("%s", __func__);
		free(p);
		return -1;
	}
	p->p_nworkers = p->p_cfg.workers;

	for (i = 0; i < p->p_nworkers; i++) {
		struct weft_worker *w = &p->p_workers[i];

		w->w_proxy = p;
		w->w_index = i;
		if ((w->w_base = event_base_new()) == NULL ||
		    (w->w_stop = event_new(w->w_base, -1, 0, worker_stopcb,
		    w)) == NULL || (w->w_policy = event_new(w->w_base, -1,
		    EV_PERSIST, worker_policycb, w)) == NULL) {
			log_warnx("worker %d: event base", i);
			goto fail;
		}
		{
			struct timeval tv = { 0, WORKER_POLICY_MS * 1000 };

			event_add(w->w_policy, &tv);
		}
		weft_conn_ctx_init(&w->w_ctx, w->w_base, i, &rc);
		/* Its metrics shard; the sweep timer runs on its loop. */
		w->w_ctx.cx_metrics = weft_metrics_shard(cfg->metrics, i);
		if (weft_metrics_shard_attach(w->w_ctx.cx_metrics,
		    w->w_base) == -1) {
			log_warnx("worker %d: metrics timer", i);
			goto fail;
		}
		weft_tunnel_config_defaults(&tcfg);
		tcfg.tu_port = p->p_cfg.tunnel_port;
		tcfg.tu_pool = !p->p_cfg.tunnel_pool_off;
		if (weft_tunnel_new(&w->w_ctx, &tcfg) == NULL) {
			log_warnx("worker %d: tunnel", i);
			goto fail;
		}
		if (worker_listen(w, WEFT_DIR_OUTBOUND, AF_INET, v4,
		    p->p_cfg.outbound_port, opts->po_transparent) == -1) {
			log_warn("proxy: listen on %s:%u", v4,
			    p->p_cfg.outbound_port);
			goto fail;
		}
		if (worker_listen(w, WEFT_DIR_INBOUND, AF_INET, v4,
		    p->p_cfg.inbound_port, opts->po_transparent) == -1) {
			log_warn("proxy: listen on %s:%u", v4,
			    p->p_cfg.inbound_port);
			goto fail;
		}
		if (worker_listen(w, WEFT_DIR_TUNNEL, AF_INET, v4,
		    p->p_cfg.tunnel_port, opts->po_transparent) == -1) {
			log_warn("proxy: listen on %s:%u", v4,
			    p->p_cfg.tunnel_port);
			goto fail;
		}
		if (ipv6 && (worker_listen(w, WEFT_DIR_OUTBOUND, AF_INET6,
		    "::", p->p_cfg.outbound_port, opts->po_transparent) == -1 ||
		    worker_listen(w, WEFT_DIR_INBOUND, AF_INET6, "::",
		    p->p_cfg.inbound_port, opts->po_transparent) == -1 ||
		    worker_listen(w, WEFT_DIR_TUNNEL, AF_INET6, "::",
		    p->p_cfg.tunnel_port, opts->po_transparent) == -1)) {
			/* Optional: a v4-only node has no [::]. */
			log_warn("proxy: IPv6 listeners unavailable, IPv4 only");
			if (i > 0) {
				log_warnx("proxy: IPv6 failed on worker %d "
				    "only", i);
				goto fail;
			}
			while (w->w_nlisteners > 3)
				weft_listener_close(
				    &w->w_listeners[--w->w_nlisteners]);
			ipv6 = false;
		}
	}

	/* Workers leave signals to the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < p->p_nworkers; i++) {
		struct weft_worker *w = &p->p_workers[i];
		int err;

		if ((err = pthread_create(&w->w_thread, NULL, worker_main,
		    w)) != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			errno = err;
			log_warn("worker %d: pthread_create", i);
			goto fail;
		}
		w->w_running = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	log_info("proxy: %d workers, outbound :%u, inbound :%u, tunnel :%u%s%s",
	    p->p_nworkers, p->p_cfg.outbound_port, p->p_cfg.inbound_port,
	    p->p_cfg.tunnel_port,
	    ipv6 ? ", IPv4+IPv6" : ", IPv4", opts->po_transparent ?
	    ", transparent" : "");
	*out = p;
	return 0;
fail:
	weft_proxy_stop(p);
	return -1;
}

void
weft_proxy_stop(struct weft_proxy *p)
{
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < p->p_nworkers; i++) {
		struct weft_worker *w = &p->p_workers[i];

		if (w->w_running)
			event_active(w->w_stop, EV_READ, 0);
	}
	for (i = 0; i < p->p_nworkers; i++) {
		struct weft_worker *w = &p->p_workers[i];

		if (w->w_running) {
			pthread_join(w->w_thread, NULL);
			w->w_running = false;
		}
		worker_free(w);
	}
	free(p->p_workers);
	p->p_workers = NULL;
	free(p);
}

int
weft_proxy_nworkers(const struct weft_proxy *p)
{
	return p->p_nworkers;
}

void
weft_proxy_worker_stats(const struct weft_proxy *p, int i,
    struct weft_conn_stats_view *out)
{
	if (i < 0 || i >= p->p_nworkers) {
		memset(out, 0, sizeof(*out));
		return;
	}
	weft_conn_stats_read(&p->p_workers[i].w_ctx.cx_stats, out);
}
