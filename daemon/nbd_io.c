/*
 * nbd_io.c — a connection's bytes: the plain socket, or the TLS session
 * once NBD_OPT_STARTTLS succeeded (tls.c). Everything in nbd_conn.c,
 * nbd_reader.c and nbd_exec.c that reads, writes or waits for the client
 * goes through here, so neither path can bypass the other.
 */
#include "nbd_internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include "tls.h"

ssize_t nbd_conn_recv(struct conn *c, void *buf, size_t n, int flags)
{
    if (c->tls)
        return gd_tls_recv(c->tls, buf, n, flags);
    return recv(c->fd, buf, n, flags);
}

ssize_t nbd_conn_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
    if (c->tls)
        return gd_tls_sendv(c->tls, iov, iovcnt);
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
    return sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

int nbd_conn_poll_in(struct conn *c, int timeout_ms)
{
    /* Bytes TLS decrypted already are not on the socket any more. */
    if (c->tls && gd_tls_pending(c->tls))
        return 1;
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    return poll(&pfd, 1, timeout_ms);
}
