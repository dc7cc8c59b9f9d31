/*
 * sockets.c — listening sockets shared by the NBD server and the REST API
 * (sockets.h).
 */
#include "sockets.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

bool gd_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

int gd_listen_unix(const char *key, const char *path, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "%s: path too long: %s", key, path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s: %s exists and is not a socket", key, path);
            return -EEXIST;
        }
        /* A socket someone still answers on belongs to a running server. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            snprintf(err, errlen, "%s: %s is in use by a running server", key, path);
            return -EADDRINUSE;
        }
        if (probe >= 0)
            close(probe);
        if (unlink(path) < 0) {
            snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
            return -errno;
        }
        gd_info("removed stale socket %s", path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "%s: cannot bind %s: %s", key, path, strerror(e));
        return -e;
    }
    if (chmod(path, 0660) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        snprintf(err, errlen, "%s: cannot listen on %s: %s", key, path, strerror(e));
        return -e;
    }
    return fd;
}

int gd_listen_tcp(const char *key, const char *spec, int backlog, bool allow_remote,
                  const char *refusal, const char *hint, char host[256], char port[8], char *err,
                  size_t errlen)
{
    uint16_t pn;
    if (gfs_hostport_split(spec, host, 256, &pn) < 0) {
        snprintf(err, errlen, "%s: cannot parse \"%s\" (want host:port)", key, spec);
        return -EINVAL;
    }
    snprintf(port, 8, "%u", (unsigned)pn);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "%s: cannot resolve \"%s\": %s", key, host, gai_strerror(g));
        return -EINVAL;
    }
    if (!allow_remote) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
            if (!gd_addr_is_loopback(ai->ai_addr)) {
                freeaddrinfo(res);
                snprintf(err, errlen, "%s", refusal);
                return -EPERM;
            }
    }
    int last = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
            last = errno;
            close(fd);
            continue;
        }
        freeaddrinfo(res);
        return fd;
    }
    freeaddrinfo(res);
    snprintf(err, errlen, "%s: cannot listen on %s port %s: %s%s", key, host, port,
             strerror(last ? last : EADDRNOTAVAIL), hint ? hint : "");
    return -(last ? last : EADDRNOTAVAIL);
}
