/*
 * tls.h — TLS for glidefsd's NBD server (NBD_OPT_STARTTLS) on GnuTLS: the
 * server's credentials (X.509 from a certificate directory laid out as
 * qemu-nbd and nbdkit have it, pre-shared keys from a psktool file), their
 * reload (SIGHUP) and one connection's TLS session: set-up with the
 * handshake, then record I/O for the connection's reader and writer. Also
 * the REST API's certificate holder, reloaded the same way.
 *
 * Why GnuTLS: qemu-nbd, nbdkit and libnbd use it (the same PSK file format,
 * the same certificate directory, the same priority strings, so what works
 * with them works here), libmicrohttpd does HTTPS through it (the REST API's
 * TLS is the same library), and it speaks TLS 1.3 with PSK natively.
 */
#ifndef GLIDEFSD_TLS_H
#define GLIDEFSD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <gnutls/abstract.h>
#include "config.h"

enum gd_tls_mode { GD_TLS_OFF = 0, GD_TLS_ON = 1, GD_TLS_REQUIRE = 2 };

struct gd_tls;          /* the server's credentials */
struct gd_tls_session;  /* one connection's */

/* servers.nbd.tls as a mode ("off" or unset: GD_TLS_OFF). */
enum gd_tls_mode gd_tls_mode_of(const char *s);

/* Load the credentials servers.nbd.tls_certificates and tls_psk_file name
 * (at least one of them). 0, or negative errno with the reason in err (a
 * path and GnuTLS's message, never key material). */
int gd_tls_create(const char *cert_dir, const char *psk_file, struct gd_tls **out, char *err,
                  size_t errlen);
/* Load them again (SIGHUP): new sessions get the new ones, running sessions
 * keep theirs. On failure the old ones stay and err says why. */
int gd_tls_reload(struct gd_tls *t, char *err, size_t errlen);
void gd_tls_free(struct gd_tls *t);

/* A server TLS session on the connected socket fd, handshake included
 * (blocking: the socket's SO_RCVTIMEO / SO_SNDTIMEO bound each wait, the
 * accept loop's shutdown() the whole). Failures are logged naming peer and
 * connection id. 0 or negative errno. */
int gd_tls_session_start(struct gd_tls *t, int fd, const char *peer, uint64_t id,
                         struct gd_tls_session **out);
/* Send close_notify if the socket takes it at once, and free. */
void gd_tls_session_end(struct gd_tls_session *s);

/* Like recv(2) on the socket (flags: 0 or MSG_DONTWAIT): > 0 bytes, 0 at
 * the end of the stream, -1 with errno (EAGAIN, or EPROTO / EIO after a TLS
 * error, which is logged). At most one record's data per call. One reader
 * at a time. */
ssize_t gd_tls_recv(struct gd_tls_session *s, void *buf, size_t n, int flags);
/* Bytes held inside the session, decrypted or read from the socket ahead
 * of GnuTLS: a poll() on the socket would not see them. */
bool gd_tls_pending(struct gd_tls_session *s);
/* Like sendmsg(2) with MSG_DONTWAIT: the number of bytes of iov now on
 * their way (>= 0), or -1 with errno (EAGAIN: nothing taken). Bytes that
 * went into an encrypted record the socket did not take yet are reported
 * once that record has left, so the caller keeps passing them: the next
 * call must begin with the bytes not yet reported. One sender at a time
 * (it may run beside the reader). */
ssize_t gd_tls_sendv(struct gd_tls_session *s, const struct iovec *iov, int iovcnt);

/* The REST API's HTTPS (libmicrohttpd does the TLS, with GnuTLS): a holder
 * of dir's server-cert.pem (the chain) and server-key.pem, reloaded with
 * gd_tls_reload (SIGHUP; the replaced ones stay in memory until
 * gd_tls_free, as connections that began with them may still use them) and
 * freed with gd_tls_free after the HTTP server stopped. One per process.
 * 0 or negative errno with the reason in err (paths and GnuTLS's message,
 * never key material). */
int gd_tls_rest_create(const char *cert_dir, struct gd_tls **out, char *err, size_t errlen);
/* For MHD_OPTION_HTTPS_CERT_CALLBACK: each handshake gets the holder's
 * current certificate chain and key. */
gnutls_certificate_retrieve_function2 gd_tls_rest_retrieve;

#endif
