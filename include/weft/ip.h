/* Addresses and prefixes, v4 and v6, in network byte order. */
#ifndef WEFT_IP_H
#define WEFT_IP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct weft_ip {
	sa_family_t	family;		/* AF_INET or AF_INET6; 0 = unset */
	union {
		struct in_addr	v4;
		struct in6_addr	v6;
		uint8_t		bytes[16];
	};
};

struct weft_cidr {
	struct weft_ip	addr;		/* host bits are zero */
	uint8_t		prefix;
};

#define WEFT_IP_STRLEN	46		/* INET6_ADDRSTRLEN */
#define WEFT_CIDR_STRLEN 50
#define WEFT_SOCKADDR_STRLEN 56	/* "[v6]:port" */

/* Parse "10.0.0.1" or "fd00::1".  Returns 0, or -1 on bad input. */
int	weft_ip_parse(const char *s, struct weft_ip *out);
/* Parse "10.244.1.0/24"; host bits must be zero.  Returns 0 or -1. */
int	weft_cidr_parse(const char *s, struct weft_cidr *out);
/* Format into buf (at least WEFT_IP_STRLEN / WEFT_CIDR_STRLEN); returns buf. */
const char *weft_ip_str(const struct weft_ip *ip, char *buf, size_t len);
const char *weft_cidr_str(const struct weft_cidr *c, char *buf, size_t len);
bool	weft_ip_equal(const struct weft_ip *a, const struct weft_ip *b);
bool	weft_cidr_contains(const struct weft_cidr *c, const struct weft_ip *ip);
size_t	weft_ip_len(const struct weft_ip *ip);	/* 4, 16 or 0 */

/* Conversions to and from sockaddrs; port in host order. */
void	weft_ip_to_sockaddr(const struct weft_ip *ip, uint16_t port,
	    struct sockaddr_storage *ss, socklen_t *len);
int	weft_ip_from_sockaddr(const struct sockaddr *sa, struct weft_ip *ip,
	    uint16_t *port);
/* "10.0.0.1:80" or "[fd00::1]:80" into buf (>= WEFT_SOCKADDR_STRLEN). */
const char *weft_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);

#endif
