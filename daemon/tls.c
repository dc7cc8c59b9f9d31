/*
 * tls.c — TLS on GnuTLS for the NBD server (tls.h says why GnuTLS): the
 * credentials and their reload, a connection's session set-up and
 * handshake, and its record I/O; the REST API's certificate holder and the
 * retrieve function libmicrohttpd calls per handshake.
 *
 * Credentials are one reference-counted bundle (X.509 certificate and key,
 * the CA that client certificates must chain to, the PSK file, the priority
 * cache); a session holds the bundle it started with, so a reload never
 * pulls credentials from under a running session.
 *
 * Sessions: TLS 1.3 or 1.2 only, no session tickets (nothing to resume, and
 * no post-handshake message the receiving side would have to send), a
 * renegotiation attempt ends the connection. GnuTLS allows one thread
 * sending and another receiving on a session, as the connection's writer
 * and reader do; the socket stays blocking (its timeouts keep working) and
 * MSG_DONTWAIT is passed per call through our own push/pull functions.
 */
#include "tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "log.h"

/* Versions: 1.3 first, 1.2 at least. PSK key exchanges only when a PSK
 * file is loaded (with ECDHE/DHE first: forward secrecy). */
#define PRIO_BASE "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define PRIO_PSK ":+ECDHE-PSK:+DHE-PSK:+PSK"
#define PSK_LINE_MAX 1024

enum gd_tls_mode gd_tls_mode_of(const char *s)
{
    if (s && strcmp(s, "require") == 0)
        return GD_TLS_REQUIRE;
    if (s && strcmp(s, "on") == 0)
        return GD_TLS_ON;
    return GD_TLS_OFF;
}

struct creds {
    atomic_int refs;
    gnutls_certificate_credentials_t x509; /* NULL: no certificate directory */
    bool verify_clients;                   /* ca-cert.pem present: mutual TLS */
    gnutls_psk_server_credentials_t psk;   /* NULL: no PSK file */
    struct psk_key { char *name; uint8_t *key; size_t len; } *keys; /* the file, parsed */
    size_t nkeys;
    gnutls_priority_t prio;
    /* the REST API's (gd_tls_rest_create): what the retrieve function hands out */
    gnutls_pcert_st pcerts[8];
    unsigned npcerts;
    gnutls_privkey_t key;
    struct creds *retired_next;
};

struct gd_tls {
    char *cert_dir;
    char *psk_file;
    bool rest;             /* the REST API's holder: certificate and key only */
    pthread_mutex_t lock;
    struct creds *cur;
    struct creds *retired; /* REST: replaced bundles, kept until the holder is freed */
};

/* GnuTLS's retrieve function carries no pointer of ours and libmicrohttpd
 * keeps the session's for itself: the REST API's holder (one per process)
 * is found here. */
static _Atomic(struct gd_tls *) rest_holder;

struct gd_tls_session {
    gnutls_session_t ss;
    struct creds *creds;
    int fd;
    uint64_t id;
    char peer[96];
    int pull_flags;        /* the reader's: 0 or MSG_DONTWAIT */
    int push_flags;        /* the sender's */
    size_t pend;           /* bytes in a record GnuTLS holds, not yet reported */
    char unknown_psk[72];  /* a PSK identity the client offered that the file lacks */
    uint8_t *stage;        /* small pieces gathered into one record */
    uint8_t *ahead;        /* bytes read past what GnuTLS asked for (tr_pull) */
    size_t ahead_pos, ahead_len;
};

/* GnuTLS pulls a record's 5-byte header, then its body: two recv calls per
 * record, and a client pipelining small requests sends a record each. One
 * recvmsg fills what GnuTLS asked for and, past it, up to this much more,
 * so a burst of records costs one system call. */
#define PULL_AHEAD (64u * 1024u)

static void creds_unref(struct creds *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->x509)
        gnutls_certificate_free_credentials(c->x509);
    if (c->psk)
        gnutls_psk_free_server_credentials(c->psk);
    if (c->prio)
        gnutls_priority_deinit(c->prio);
    for (unsigned i = 0; i < c->npcerts; i++)
        gnutls_pcert_deinit(&c->pcerts[i]);
    if (c->key)
        gnutls_privkey_deinit(c->key);
    for (size_t i = 0; i < c->nkeys; i++) {
        explicit_bzero(c->keys[i].key, c->keys[i].len);
        free(c->keys[i].key);
        free(c->keys[i].name);
    }
    free(c->keys);
    free(c);
}

static int hexval(char ch)
{
    return isdigit((unsigned char)ch) ? ch - '0' : tolower((unsigned char)ch) - 'a' + 10;
}

/* The PSK file: "name:hexkey" lines (psktool's format), read into memory
 * (so SIGHUP reloads keys as it reloads certificates, and an identity the
 * file lacks can be logged as such). A broken file fails at start-up or
 * reload; the error names the line, never the key. */
static int load_psk_file(struct creds *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "servers.nbd.tls_psk_file %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077))
        gd_warn("servers.nbd.tls_psk_file %s: readable by group or others (chmod 600)", path);
    char line[PSK_LINE_MAX + 2];
    int n = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        n++;
        size_t len = strlen(line);
        if (len > PSK_LINE_MAX) {
            snprintf(err, errlen, "servers.nbd.tls_psk_file %s line %d: longer than %d bytes",
                     path, n, PSK_LINE_MAX);
            rc = -EINVAL;
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char *colon = strchr(line, ':');
        const char *hex = colon ? colon + 1 : "";
        size_t hl = strlen(hex);
        bool ok = colon && colon != line && hl >= 2 && hl % 2 == 0;
        for (const char *p = hex; ok && *p; p++)
            ok = isxdigit((unsigned char)*p);
        if (!ok) {
            snprintf(err, errlen, "servers.nbd.tls_psk_file %s line %d: expected "
                     "username:hexkey (as psktool writes)", path, n);
            rc = -EINVAL;
            break;
        }
        struct psk_key *k = realloc(c->keys, (c->nkeys + 1) * sizeof *k);
        if (!k) {
            rc = -ENOMEM;
            break;
        }
        c->keys = k;
        k = &c->keys[c->nkeys];
        k->name = strndup(line, (size_t)(colon - line));
        k->len = hl / 2;
        k->key = malloc(k->len);
        if (!k->name || !k->key) {
            free(k->name);
            free(k->key);
            rc = -ENOMEM;
            break;
        }
        for (size_t i = 0; i < k->len; i++)
            k->key[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
        c->nkeys++;
    }
    explicit_bzero(line, sizeof line);
    fclose(f);
    if (rc == 0 && c->nkeys == 0) {
        snprintf(err, errlen, "servers.nbd.tls_psk_file %s: no keys", path);
        rc = -EINVAL;
    }
    return rc;
}

/* GnuTLS asks for the key of the identity the client offers. */
static int psk_lookup(gnutls_session_t ss, const gnutls_datum_t *user, gnutls_datum_t *key)
{
    struct gd_tls_session *s = gnutls_session_get_ptr(ss);
    struct creds *c = s->creds;
    for (size_t i = 0; i < c->nkeys; i++)
        if (strlen(c->keys[i].name) == user->size &&
            memcmp(c->keys[i].name, user->data, user->size) == 0) {
            key->data = gnutls_malloc(c->keys[i].len);
            if (!key->data)
                return -1;
            memcpy(key->data, c->keys[i].key, c->keys[i].len);
            key->size = (unsigned)c->keys[i].len;
            return 0;
        }
    /* for the log: printable characters only, shortened */
    size_t j = 0;
    for (size_t i = 0; i < user->size && j + 1 < sizeof s->unknown_psk; i++)
        s->unknown_psk[j++] = isprint(user->data[i]) ? (char)user->data[i] : '?';
    s->unknown_psk[j] = '\0';
    return -1;
}

static int load_x509(struct creds *c, const char *dir, char *err, size_t errlen)
{
    char ca[4096], crl[4096], cert[4096], key[4096];
    snprintf(ca, sizeof ca, "%s/ca-cert.pem", dir);
    snprintf(crl, sizeof crl, "%s/ca-crl.pem", dir);
    snprintf(cert, sizeof cert, "%s/server-cert.pem", dir);
    snprintf(key, sizeof key, "%s/server-key.pem", dir);
    int g = gnutls_certificate_allocate_credentials(&c->x509);
    if (g < 0) {
        snprintf(err, errlen, "TLS credentials: %s", gnutls_strerror(g));
        return -ENOMEM;
    }
    g = gnutls_certificate_set_x509_key_file(c->x509, cert, key, GNUTLS_X509_FMT_PEM);
    if (g < 0) {
        snprintf(err, errlen, "servers.nbd.tls_certificates: %s with %s: %s", cert, key,
                 gnutls_strerror(g));
        return -EINVAL;
    }
    if (access(ca, F_OK) == 0) {
        g = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
        if (g <= 0) {
            snprintf(err, errlen, "servers.nbd.tls_certificates: %s: %s", ca,
                     g < 0 ? gnutls_strerror(g) : "no certificate in it");
            return -EINVAL;
        }
        c->verify_clients = true;
        if (access(crl, F_OK) == 0 &&
            (g = gnutls_certificate_set_x509_crl_file(c->x509, crl, GNUTLS_X509_FMT_PEM)) < 0) {
            snprintf(err, errlen, "servers.nbd.tls_certificates: %s: %s", crl,
                     gnutls_strerror(g));
            return -EINVAL;
        }
    }
    gnutls_certificate_set_known_dh_params(c->x509, GNUTLS_SEC_PARAM_MEDIUM);
    return 0;
}

/* The REST API's certificate chain and key from dir (ca-cert.pem is not
 * read: the API does not ask for client certificates). Loaded into an X.509
 * credential first, which checks that the key belongs to the certificate. */
static int load_rest_pair(struct creds *c, const char *dir, char *err, size_t errlen)
{
    char cert[4096], key[4096];
    snprintf(cert, sizeof cert, "%s/server-cert.pem", dir);
    snprintf(key, sizeof key, "%s/server-key.pem", dir);
    const char *paths[2] = { cert, key };
    for (int i = 0; i < 2; i++)
        if (access(paths[i], R_OK) != 0) {
            int e = errno;
            snprintf(err, errlen, "servers.api.tls_certificates: %s: %s", paths[i], strerror(e));
            return -e;
        }
    gnutls_datum_t cd = { 0 }, kd = { 0 };
    const char *bad = cert, *pair = "";
    int g = gnutls_load_file(cert, &cd);
    if (g >= 0) {
        c->npcerts = sizeof c->pcerts / sizeof c->pcerts[0];
        g = gnutls_pcert_list_import_x509_raw(c->pcerts, &c->npcerts, &cd, GNUTLS_X509_FMT_PEM, 0);
        if (g < 0)
            c->npcerts = 0;
    }
    if (g >= 0) {
        bad = key;
        g = gnutls_load_file(key, &kd);
    }
    if (g >= 0 && (g = gnutls_privkey_init(&c->key)) >= 0)
        g = gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
    /* the pair, checked by GnuTLS (the key must be the certificate's) */
    if (g >= 0 && (g = gnutls_certificate_allocate_credentials(&c->x509)) >= 0) {
        pair = " with ";
        g = gnutls_certificate_set_x509_key_mem(c->x509, &cd, &kd, GNUTLS_X509_FMT_PEM);
    }
    if (kd.data) {
        explicit_bzero(kd.data, kd.size);
        gnutls_free(kd.data);
    }
    gnutls_free(cd.data);
    /* the checking credential's copy of the key is not needed */
    if (c->x509) {
        gnutls_certificate_free_credentials(c->x509);
        c->x509 = NULL;
    }
    if (g < 0) {
        snprintf(err, errlen, "servers.api.tls_certificates: %s%s%s: %s", *pair ? cert : bad,
                 pair, *pair ? key : "", gnutls_strerror(g));
        return -EINVAL;
    }
    return 0;
}

static int creds_load(const char *dir, const char *psk, bool rest, struct creds **out,
                      char *err, size_t errlen)
{
    struct creds *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    atomic_init(&c->refs, 1);
    int rc = 0;
    if (rest) {
        rc = load_rest_pair(c, dir, err, errlen);
        if (rc < 0)
            creds_unref(c);
        else
            *out = c;
        return rc;
    }
    if (dir && *dir)
        rc = load_x509(c, dir, err, errlen);
    if (rc == 0 && psk && *psk) {
        rc = load_psk_file(c, psk, err, errlen);
        if (rc == 0) {
            int g = gnutls_psk_allocate_server_credentials(&c->psk);
            if (g < 0) {
                snprintf(err, errlen, "TLS PSK credentials: %s", gnutls_strerror(g));
                rc = -ENOMEM;
            } else {
                gnutls_psk_set_server_credentials_function2(c->psk, psk_lookup);
                gnutls_psk_set_server_known_dh_params(c->psk, GNUTLS_SEC_PARAM_MEDIUM);
            }
        }
    }
    if (rc == 0) {
        const char *bad = NULL;
        int g = gnutls_priority_init(&c->prio, c->psk ? PRIO_BASE PRIO_PSK : PRIO_BASE, &bad);
        if (g < 0) {
            snprintf(err, errlen, "TLS priority: %s", gnutls_strerror(g));
            rc = -EINVAL;
        }
    }
    if (rc < 0) {
        creds_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

int gd_tls_create(const char *cert_dir, const char *psk_file, struct gd_tls **out, char *err,
                  size_t errlen)
{
    if ((!cert_dir || !*cert_dir) && (!psk_file || !*psk_file)) {
        snprintf(err, errlen, "servers.nbd.tls is on but neither servers.nbd.tls_certificates "
                              "nor servers.nbd.tls_psk_file is set");
        return -EINVAL;
    }
    struct gd_tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    t->cert_dir = cert_dir && *cert_dir ? strdup(cert_dir) : NULL;
    t->psk_file = psk_file && *psk_file ? strdup(psk_file) : NULL;
    int rc = creds_load(t->cert_dir, t->psk_file, false, &t->cur, err, errlen);
    if (rc < 0) {
        gd_tls_free(t);
        return rc;
    }
    gd_info("NBD TLS: %s%s%s", t->cert_dir ? "X.509 certificates from " : "",
            t->cert_dir ? t->cert_dir : "", t->cur->verify_clients
                                                 ? " (client certificates required)" : "");
    if (t->psk_file)
        gd_info("NBD TLS: pre-shared keys from %s", t->psk_file);
    *out = t;
    return 0;
}

int gd_tls_reload(struct gd_tls *t, char *err, size_t errlen)
{
    struct creds *c = NULL;
    int rc = creds_load(t->cert_dir, t->psk_file, t->rest, &c, err, errlen);
    if (rc < 0)
        return rc;
    struct creds *old;
    pthread_mutex_lock(&t->lock);
    old = t->cur;
    t->cur = c;
    if (t->rest) {
        /* GnuTLS keeps using what the retrieve function handed out, with no
         * call when it is done with it: kept until the REST API stops */
        old->retired_next = t->retired;
        t->retired = old;
        old = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    creds_unref(old);
    return 0;
}

int gd_tls_rest_create(const char *cert_dir, struct gd_tls **out, char *err, size_t errlen)
{
    struct gd_tls *expect = NULL;
    struct gd_tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    t->rest = true;
    t->cert_dir = strdup(cert_dir);
    int rc = t->cert_dir ? creds_load(t->cert_dir, NULL, true, &t->cur, err, errlen) : -ENOMEM;
    if (rc == 0 && !atomic_compare_exchange_strong(&rest_holder, &expect, t)) {
        snprintf(err, errlen, "REST API TLS: a second certificate holder in one process");
        rc = -EEXIST;
    }
    if (rc < 0) {
        gd_tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int gd_tls_rest_retrieve(gnutls_session_t ss, const gnutls_datum_t *req_ca_rdn, int nreqs,
                         const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                         gnutls_pcert_st **pcert, unsigned int *pcert_length,
                         gnutls_privkey_t *privkey)
{
    (void)ss;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    struct gd_tls *t = atomic_load(&rest_holder);
    if (!t)
        return -1;
    pthread_mutex_lock(&t->lock);
    struct creds *c = t->cur;
    pthread_mutex_unlock(&t->lock);
    *pcert = c->pcerts;
    *pcert_length = c->npcerts;
    *privkey = c->key;
    return 0;
}

void gd_tls_free(struct gd_tls *t)
{
    if (!t)
        return;
    struct gd_tls *self = t;
    atomic_compare_exchange_strong(&rest_holder, &self, NULL);
    creds_unref(t->cur);
    while (t->retired) {
        struct creds *c = t->retired;
        t->retired = c->retired_next;
        creds_unref(c);
    }
    free(t->cert_dir);
    free(t->psk_file);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Transport: the blocking socket, MSG_DONTWAIT per call                     */
/* ------------------------------------------------------------------------ */

static ssize_t tr_pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
    struct gd_tls_session *s = p;
    if (s->ahead_pos < s->ahead_len) {
        size_t k = s->ahead_len - s->ahead_pos;
        if (k > n)
            k = n;
        memcpy(buf, s->ahead + s->ahead_pos, k);
        s->ahead_pos += k;
        return (ssize_t)k;
    }
    /* the first n bytes land where GnuTLS wants them, the rest is kept */
    struct iovec iov[2] = { { buf, n }, { s->ahead, PULL_AHEAD } };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = s->ahead ? 2 : 1 };
    ssize_t r;
    do
        r = recvmsg(s->fd, &mh, s->pull_flags);
    while (r < 0 && errno == EINTR);
    if (r > (ssize_t)n) {
        s->ahead_pos = 0;
        s->ahead_len = (size_t)r - n;
        r = (ssize_t)n;
    }
    return r;
}

static int tr_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    struct gd_tls_session *s = p;
    if (s->ahead_pos < s->ahead_len)
        return 1;
    struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
    int r;
    do
        r = poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
    while (r < 0 && errno == EINTR);
    return r;
}

static ssize_t tr_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n)
{
    struct gd_tls_session *s = p;
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
    ssize_t r;
    do
        r = sendmsg(s->fd, &mh, MSG_NOSIGNAL | s->push_flags);
    while (r < 0 && errno == EINTR);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Sessions                                                                  */
/* ------------------------------------------------------------------------ */

static void session_free(struct gd_tls_session *s)
{
    if (s->ss)
        gnutls_deinit(s->ss);
    creds_unref(s->creds);
    free(s->stage);
    free(s->ahead);
    free(s);
}

/* Why a handshake failed, for the log: the certificate check's verdict when
 * that was it, else GnuTLS's message (and the alert the client sent). */
static void log_handshake_failure(struct gd_tls_session *s, int g)
{
    char why[512];
    snprintf(why, sizeof why, "%s", gnutls_strerror(g));
    if (s->unknown_psk[0]) {
        snprintf(why, sizeof why, "PSK identity \"%s\" is not in the PSK file (%s)",
                 s->unknown_psk, gnutls_strerror(g));
    } else if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        gnutls_datum_t txt = { 0 };
        unsigned status = gnutls_session_get_verify_cert_status(s->ss);
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0) == 0) {
            snprintf(why, sizeof why, "client certificate refused: %s", txt.data);
            gnutls_free(txt.data);
        }
    } else if (g == GNUTLS_E_NO_CERTIFICATE_FOUND || g == GNUTLS_E_CERTIFICATE_REQUIRED) {
        snprintf(why, sizeof why, "client sent no certificate issued by ca-cert.pem (%s)",
                 gnutls_strerror(g));
    } else if (s->creds->psk && (g == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
                                 g == GNUTLS_E_DECRYPTION_FAILED)) {
        snprintf(why, sizeof why, "%s (with a pre-shared key: a wrong key)", gnutls_strerror(g));
    } else if (g == GNUTLS_E_FATAL_ALERT_RECEIVED || g == GNUTLS_E_WARNING_ALERT_RECEIVED) {
        snprintf(why, sizeof why, "client sent alert: %s",
                 gnutls_alert_get_name(gnutls_alert_get(s->ss)));
    }
    gd_warn("connection %" PRIu64 " from %s: TLS handshake failed: %s", s->id, s->peer, why);
}

int gd_tls_session_start(struct gd_tls *t, int fd, const char *peer, uint64_t id,
                         struct gd_tls_session **out)
{
    struct gd_tls_session *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->fd = fd;
    s->id = id;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    s->ahead = malloc(PULL_AHEAD); /* none: one recv per pull, as before */
    pthread_mutex_lock(&t->lock);
    s->creds = t->cur;
    atomic_fetch_add(&s->creds->refs, 1);
    pthread_mutex_unlock(&t->lock);
    struct creds *c = s->creds;
    int g = gnutls_init(&s->ss, GNUTLS_SERVER | GNUTLS_NO_TICKETS);
    if (g == 0)
        g = gnutls_priority_set(s->ss, c->prio);
    if (g == 0 && c->x509)
        g = gnutls_credentials_set(s->ss, GNUTLS_CRD_CERTIFICATE, c->x509);
    if (g == 0 && c->psk)
        g = gnutls_credentials_set(s->ss, GNUTLS_CRD_PSK, c->psk);
    if (g < 0) {
        gd_err("connection %" PRIu64 " from %s: TLS session: %s", id, peer, gnutls_strerror(g));
        session_free(s);
        return -ENOMEM;
    }
    if (c->x509 && c->verify_clients) {
        /* mutual TLS: a certificate chaining to ca-cert.pem, valid now */
        gnutls_certificate_server_set_request(s->ss, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(s->ss, NULL, 0);
    }
    gnutls_session_set_ptr(s->ss, s); /* for psk_lookup */
    gnutls_transport_set_ptr(s->ss, s);
    gnutls_transport_set_pull_function(s->ss, tr_pull);
    gnutls_transport_set_pull_timeout_function(s->ss, tr_pull_timeout);
    gnutls_transport_set_vec_push_function(s->ss, tr_push);
    do
        g = gnutls_handshake(s->ss);
    while (g < 0 && !gnutls_error_is_fatal(g) && g != GNUTLS_E_AGAIN);
    if (g < 0) {
        if (s->unknown_psk[0])
            log_handshake_failure(s, g);
        else if (g == GNUTLS_E_AGAIN)
            gd_warn("connection %" PRIu64 " from %s: TLS handshake failed: timed out", id, peer);
        else if (g == GNUTLS_E_PREMATURE_TERMINATION || g == GNUTLS_E_PUSH_ERROR ||
                 g == GNUTLS_E_PULL_ERROR)
            gd_warn("connection %" PRIu64 " from %s: TLS handshake failed: the client closed the "
                    "connection (does it trust our server-cert.pem?)", id, peer);
        else
            log_handshake_failure(s, g);
        session_free(s);
        return -EPROTO;
    }
    s->stage = malloc(16384);
    if (!s->stage) {
        session_free(s);
        return -ENOMEM;
    }
    char *desc = gnutls_session_get_desc(s->ss);
    const char *user = gnutls_auth_get_type(s->ss) == GNUTLS_CRD_PSK
                           ? gnutls_psk_server_get_username(s->ss) : NULL;
    gd_info("connection %" PRIu64 " from %s: TLS %s%s%s", id, peer, desc ? desc : "",
            user ? ", PSK identity " : "", user ? user : "");
    gnutls_free(desc);
    *out = s;
    return 0;
}

void gd_tls_session_end(struct gd_tls_session *s)
{
    if (!s)
        return;
    s->push_flags = MSG_DONTWAIT;
    if (s->pend == 0)
        gnutls_bye(s->ss, GNUTLS_SHUT_WR);
    session_free(s);
}

ssize_t gd_tls_recv(struct gd_tls_session *s, void *buf, size_t n, int flags)
{
    s->pull_flags = flags & MSG_DONTWAIT;
    for (;;) {
        ssize_t r = gnutls_record_recv(s->ss, buf, n);
        if (r >= 0)
            return r;
        if (r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r == GNUTLS_E_AGAIN) {
            errno = EAGAIN;
            return -1;
        }
        if (r == GNUTLS_E_PREMATURE_TERMINATION)
            return 0; /* closed without close_notify: an end like any other */
        if (r == GNUTLS_E_REHANDSHAKE) {
            gd_info("connection %" PRIu64 " from %s: TLS renegotiation refused; dropping",
                    s->id, s->peer);
            errno = EPROTO;
            return -1;
        }
        if (!gnutls_error_is_fatal((int)r))
            continue; /* a warning alert: the record is consumed */
        if (r != GNUTLS_E_PULL_ERROR)
            gd_info("connection %" PRIu64 " from %s: TLS: %s; dropping", s->id, s->peer,
                    gnutls_strerror((int)r));
        errno = EIO;
        return -1;
    }
}

bool gd_tls_pending(struct gd_tls_session *s)
{
    /* decrypted, or read from the socket and not yet decrypted: either way
     * poll on the socket would not see it */
    return gnutls_record_check_pending(s->ss) > 0 || s->ahead_pos < s->ahead_len;
}

ssize_t gd_tls_sendv(struct gd_tls_session *s, const struct iovec *iov, int iovcnt)
{
    s->push_flags = MSG_DONTWAIT;
    size_t done = 0;
    if (s->pend) {
        /* The record GnuTLS holds goes first; its bytes head iov. */
        ssize_t r = gnutls_record_send(s->ss, NULL, 0);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            errno = EAGAIN;
            return -1;
        }
        if (r < 0) {
            errno = EIO;
            return -1;
        }
        done = s->pend;
        s->pend = 0;
    }
    /* the cursor: entry i, offset off */
    int i = 0;
    size_t off = done;
    while (i < iovcnt && off >= iov[i].iov_len)
        off -= iov[i++].iov_len;
    size_t rec = gnutls_record_get_max_size(s->ss);
    if (rec > 16384 || rec == 0)
        rec = 16384;
    for (;;) {
        while (i < iovcnt && off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            i++;
        }
        if (i >= iovcnt)
            break;
        const uint8_t *p;
        size_t len;
        if (iov[i].iov_len - off >= rec) {
            /* a whole record straight from the caller's buffer */
            p = (const uint8_t *)iov[i].iov_base + off;
            len = rec;
            off += rec;
        } else {
            /* gather the small pieces (headers, short payloads) into one
             * record: fewer records, fewer encryptions, fewer syscalls */
            len = 0;
            while (i < iovcnt && len < rec) {
                size_t k = iov[i].iov_len - off;
                if (k > rec - len)
                    k = rec - len;
                memcpy(s->stage + len, (const uint8_t *)iov[i].iov_base + off, k);
                len += k;
                off += k;
                if (off >= iov[i].iov_len) {
                    off = 0;
                    i++;
                }
            }
            p = s->stage;
        }
        ssize_t r;
        do
            r = gnutls_record_send(s->ss, p, len);
        while (r == GNUTLS_E_INTERRUPTED);
        if (r == GNUTLS_E_AGAIN) {
            s->pend = len; /* encrypted and held: reported once it has left */
            break;
        }
        if (r < 0) {
            if (done)
                return (ssize_t)done;
            errno = EIO;
            return -1;
        }
        done += (size_t)r; /* r == len: len never exceeds the record size */
    }
    if (done == 0 && s->pend) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)done;
}
