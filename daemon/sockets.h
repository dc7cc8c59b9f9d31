/*
 * sockets.h — listening sockets for the NBD server and the REST API (as
 * nbdkit's server/sockets.c): a unix socket that replaces a stale one but
 * never takes over a live one, and TCP on host:port (parsed as the config
 * checks it, gfs_hostport_split) that refuses a non-loopback address unless
 * the caller allows it.
 */
#ifndef GD_SOCKETS_H
#define GD_SOCKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* 127.0.0.0/8, ::1, or ::ffff:127.x.y.z. */
bool gd_addr_is_loopback(const struct sockaddr *sa);

/* A listening unix socket at path, mode 0660. key names the config key in
 * messages. A socket file nobody answers on is replaced (and logged); a
 * live one is -EADDRINUSE; anything else at path -EEXIST. Returns the fd,
 * or a negative errno with one line in err (path removed again if this
 * call made it). */
int gd_listen_unix(const char *key, const char *path, int backlog, char *err, size_t errlen);

/* A listening TCP socket on spec ("host:port", "[v6]:port"; the config
 * normalised it). Unless allow_remote, an address that is not loopback is
 * refused with -EPERM and err = refusal. host[256] and port[8] get what it
 * listens on (for the log line). hint (may be NULL) is appended to the
 * message when nothing could be bound. Returns the fd or a negative errno
 * with one line in err. */
int gd_listen_tcp(const char *key, const char *spec, int backlog, bool allow_remote,
                  const char *refusal, const char *hint, char host[256], char port[8], char *err,
                  size_t errlen);

#endif
