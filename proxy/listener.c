/* Listeners: TPROXY-capable sockets we build ourselves (evconnlistener_new_bind
 * cannot set IP_TRANSPARENT before bind, feasibility §3), one per port per
 * worker, spread by the kernel with SO_REUSEPORT. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "weft/conn.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "proxy/proxy-int.h"

#define LISTENER_BACKLOG	1024
/* After accept() fails for lack of descriptors, stop accepting this long
 * instead of spinning on a listener that stays readable. */
#define LISTENER_RETRY_MS	100

static void
listener_acceptcb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct weft_listener *l = arg;

	(void)lev;
	(void)sa;
	(void)salen;
	(void)weft_conn_accept(l->l_ctx, fd, l->l_dir, l->l_port);
}

static void
listener_retrycb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_listener *l = arg;

	(void)fd;
	(void)what;
	if (l->l_lev != NULL)
		evconnlistener_enable(l->l_lev);
}

static void
listener_errorcb(struct evconnlistener *lev, void *arg)
{
	struct weft_listener *l = arg;
	struct timeval tv = { 0, LISTENER_RETRY_MS * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	errno = err;
	log_warn("listener %s: accept", l->l_name);
	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		evconnlistener_disable(lev);
		evtimer_add(l->l_retry, &tv);
	}
}

int
weft_listener_open(struct weft_listener *l, struct weft_conn_ctx *cx,
    enum weft_conn_dir dir, const struct sockaddr *sa, socklen_t salen,
    bool transparent)
{
	struct weft_ip ip;
	int fd, one = 1, saved;

	memset(l, 0, sizeof(*l));
	l->l_ctx = cx;
	l->l_dir = dir;
	if (weft_ip_from_sockaddr(sa, &ip, &l->l_port) == -1) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	weft_sockaddr_str(sa, l->l_name, sizeof(l->l_name));

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
		goto fail;
	if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	/* TPROXY hands us connections to any address; only a transparent
	 * socket may accept them. */
	if (transparent) {
		if (sa->sa_family == AF_INET6) {
			if (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one,
			    sizeof(one)) == -1)
				goto fail;
		} else if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one,
		    sizeof(one)) == -1)
			goto fail;
	}
	if (bind(fd, sa, salen) == -1)
		goto fail;
	/* evconnlistener_new calls listen(); on failure the fd is still ours. */
	l->l_lev = evconnlistener_new(cx->cx_base, listener_acceptcb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, LISTENER_BACKLOG, fd);
	if (l->l_lev == NULL)
		goto fail;
	evconnlistener_set_error_cb(l->l_lev, listener_errorcb);
	if ((l->l_retry = evtimer_new(cx->cx_base, listener_retrycb,
	    l)) == NULL) {
		saved = errno;
		evconnlistener_free(l->l_lev);
		l->l_lev = NULL;
		errno = saved ? saved : ENOMEM;
		return -1;
	}
	log_debug("listener %s (%s) open", l->l_name, weft_conn_dir_name(dir));
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

void
weft_listener_close(struct weft_listener *l)
{
	if (l->l_lev != NULL) {
		evconnlistener_free(l->l_lev);
		l->l_lev = NULL;
	}
	if (l->l_retry != NULL) {
		event_free(l->l_retry);
		l->l_retry = NULL;
	}
}
