/* Addresses and prefixes. */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/ip.h"

int
weft_ip_parse(const char *s, struct weft_ip *out)
{
	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return -1;
	if (inet_pton(AF_INET, s, &out->v4) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &out->v6) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	return -1;
}

size_t
weft_ip_len(const struct weft_ip *ip)
{
	switch (ip->family) {
	case AF_INET:
		return 4;
	case AF_INET6:
		return 16;
	default:
		return 0;
	}
}

static bool
cidr_host_bits_zero(const struct weft_ip *ip, unsigned prefix)
{
	size_t len = weft_ip_len(ip), i;

	for (i = 0; i < len; i++) {
		unsigned bit0 = (unsigned)i * 8;
		uint8_t mask;

		if (bit0 + 8 <= prefix)
			continue;
		mask = bit0 >= prefix ? 0xff : (uint8_t)(0xff >> (prefix - bit0));
		if (ip->bytes[i] & mask)
			return false;
	}
	return true;
}

int
weft_cidr_parse(const char *s, struct weft_cidr *out)
{
	char buf[WEFT_CIDR_STRLEN];
	const char *slash;
	char *end;
	unsigned long prefix;
	size_t alen;

	memset(out, 0, sizeof(*out));
	if (s == NULL || (slash = strchr(s, '/')) == NULL)
		return -1;
	alen = (size_t)(slash - s);
	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (weft_ip_parse(buf, &out->addr) == -1)
		return -1;
	if (slash[1] < '0' || slash[1] > '9')
		goto fail;
	prefix = strtoul(slash + 1, &end, 10);
	if (*end != '\0' || prefix > weft_ip_len(&out->addr) * 8)
		goto fail;
	out->prefix = (uint8_t)prefix;
	if (!cidr_host_bits_zero(&out->addr, out->prefix))
		goto fail;
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return -1;
}

const char *
weft_ip_str(const struct weft_ip *ip, char *buf, size_t len)
{
	if (ip->family == 0 || inet_ntop(ip->family, ip->bytes, buf,
	    (socklen_t)len) == NULL)
		snprintf(buf, len, "-");
	return buf;
}

const char *
weft_cidr_str(const struct weft_cidr *c, char *buf, size_t len)
{
	char a[WEFT_IP_STRLEN];

	snprintf(buf, len, "%s/%u", weft_ip_str(&c->addr, a, sizeof(a)),
	    c->prefix);
	return buf;
}

bool
weft_ip_equal(const struct weft_ip *a, const struct weft_ip *b)
{
	return a->family == b->family &&
	    memcmp(a->bytes, b->bytes, weft_ip_len(a)) == 0;
}

bool
weft_cidr_contains(const struct weft_cidr *c, const struct weft_ip *ip)
{
	unsigned full, rest;

	if (c->addr.family != ip->family || ip->family == 0)
		return false;
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(c->addr.bytes, ip->bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((c->addr.bytes[full] ^ ip->bytes[full]) &
	    (uint8_t)(0xff << (8 - rest))) == 0;
}

void
weft_ip_to_sockaddr(const struct weft_ip *ip, uint16_t port,
    struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (ip->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		s6->sin6_addr = ip->v6;
		*len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		s4->sin_addr = ip->v4;
		*len = sizeof(*s4);
	}
}

int
weft_ip_from_sockaddr(const struct sockaddr *sa, struct weft_ip *ip,
    uint16_t *port)
{
	memset(ip, 0, sizeof(*ip));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		ip->family = AF_INET;
		ip->v4 = s4->sin_addr;
		if (port != NULL)
			*port = ntohs(s4->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		/* A v4-mapped address is the v4 address it maps. */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			ip->family = AF_INET;
			memcpy(&ip->v4, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			ip->family = AF_INET6;
			ip->v6 = s6->sin6_addr;
		}
		if (port != NULL)
			*port = ntohs(s6->sin6_port);
		return 0;
	}
	return -1;
}

const char *
weft_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	struct weft_ip ip;
	uint16_t port;
	char a[WEFT_IP_STRLEN];

	if (weft_ip_from_sockaddr(sa, &ip, &port) == -1) {
		snprintf(buf, len, "-");
		return buf;
	}
	weft_ip_str(&ip, a, sizeof(a));
	if (ip.family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", a, port);
	else
		snprintf(buf, len, "%s:%u", a, port);
	return buf;
}
