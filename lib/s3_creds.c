/*
 * s3_creds.c — the credential chain of the s3:// backend and the refresh of
 * expiring keys (see s3_creds.h for the chain and the rules). Owns: reading
 * the environment and the shared files at open, fetching from STS, the
 * container endpoint and the EC2 instance metadata (http_fetch.c), the
 * current keys under a mutex (one fetcher at a time, the others keep
 * signing or wait on a condition variable), and what is logged about it
 * (never a secret). The formats are parsed in s3_creds_parse.c and s3_xml.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <mbedtls/platform_util.h>

#include "http_fetch.h"
#include "log.h"
#include "s3_creds.h"
#include "s3_creds_parse.h"
#include "s3_xml.h"
#include "sigv4.h"

#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_DEFAULT_V6 "http://[fd00:ec2::254]"
#define IMDS_TOKEN_TTL "21600"
#define ECS_HOST "http://169.254.170.2"
#define ENDPOINT_TIMEOUT_MS 5000L   /* container endpoint, STS */
#define ENDPOINT_ATTEMPTS 2
#define WEB_TOKEN_MAX 20000u        /* STS: WebIdentityToken is at most 20,000 characters */
#define AUTH_TOKEN_MAX 16384u
#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 30000
#define HARD_MARGIN_MAX_MS 60000

enum source { SRC_STATIC, SRC_WEB_IDENTITY, SRC_CONTAINER, SRC_IMDS };

struct gfs_s3_creds {
    struct gfs_log *log;
    enum source src;
    char what[400];       /* where the keys come from, for messages */
    char tried[700];      /* SRC_IMDS as the last resort: what came before it */
    int64_t ahead_ms;

    /* fetch parameters */
    char *url;            /* STS, container or IMDS base */
    char *role_arn, *session_name, *token_file;  /* web identity */
    char *auth_token, *auth_token_file;          /* container */
    long imds_timeout_ms;
    int imds_attempts;
    char *ca_bundle;
    int tls_verify;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct gfs_s3_keys *cur; /* NULL until the first fetch */
    int refreshing;
    int64_t next_try_ms;     /* after a failed fetch: not before this */
    int fails;
    char last_err[1024];
};

__attribute__((format(printf, 3, 4)))
static void put_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void free_secret(char *s)
{
    if (s) {
        mbedtls_platform_zeroize(s, strlen(s));
        free(s);
    }
}

/* ---- keys ------------------------------------------------------------------ */

static struct gfs_s3_keys *keys_from(struct gfs_creds_parsed *p, const char *source)
{
    struct gfs_s3_keys *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->akid = p->akid;
    k->secret = p->secret;
    k->token = p->token;
    k->expires_ms = p->expires_ms;
    k->fetched_ms = wall_ms();
    k->source = source;
    k->refs = 1;
    memset(p, 0, sizeof(*p)); /* moved */
    return k;
}

void gfs_s3_keys_put(struct gfs_s3_keys *k)
{
    if (!k || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(k->akid);
    free_secret(k->secret);
    free_secret(k->token);
    free(k);
}

/* ---- files ----------------------------------------------------------------- */

/* Read a whole small file. -ENOENT when missing; else 0 or -errno, -EFBIG. */
static int read_small(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    if ((uint64_t)sb.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* A token from a file: the whole file less trailing white space; printable
 * ASCII only (it goes into a header or a form field). */
static int read_token_file(const char *path, size_t max, char **out, char *why, size_t wl)
{
    size_t len;
    int rc = read_small(path, max + 64, out, &len);
    if (rc != 0) {
        put_err(why, wl, "cannot read the token file %s: %s", path,
                rc == -EFBIG ? "too large" : strerror(-rc));
        return rc;
    }
    while (len && ((*out)[len - 1] == '\n' || (*out)[len - 1] == '\r' ||
                   (*out)[len - 1] == ' ' || (*out)[len - 1] == '\t'))
        (*out)[--len] = '\0';
    int ok = len > 0 && len <= max;
    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)(*out)[i] > 0x20 && (unsigned char)(*out)[i] < 0x7f;
    if (!ok) {
        put_err(why, wl, "the token file %s is empty, too long or holds other than "
                "printable ASCII", path);
        free_secret(*out);
        *out = NULL;
        return -EINVAL;
    }
    return 0;
}

/* ---- the chain at open ------------------------------------------------------ */

/* A static pair from some step: both or neither. */
static int static_pair(const char *akid, const char *secret, const char *token, const char *what,
                       struct gfs_creds_parsed *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!akid && !secret)
        return 0;
    if (!akid || !secret) {
        put_err(err, errlen, "s3 credentials: %s gives %s without %s", what,
                akid ? "an access key id" : "a secret access key",
                akid ? "a secret access key" : "an access key id");
        return -EINVAL;
    }
    out->akid = strdup(akid);
    out->secret = strdup(secret);
    out->token = token ? strdup(token) : NULL;
    if (!out->akid || !out->secret || (token && !out->token)) {
        gfs_creds_parsed_clear(out);
        put_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char why[160];
    if (gfs_creds_check(out, 0, wall_ms(), why, sizeof(why)) != 0) {
        gfs_creds_parsed_clear(out);
        put_err(err, errlen, "s3 credentials from %s: %s", what, why);
        return -EINVAL;
    }
    return 1;
}

/* Step 4: one shared file. 1 keys found, 0 nothing (file or profile
 * missing, or a profile without keys), <0 error. */
static int from_shared_file(const char *path, int explicit_path, const char *profile,
                            int config_file, struct gfs_creds_parsed *out, int *found_profile,
                            char *unsupported, size_t ul, struct gfs_log *log, char *err,
                            size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = read_small(path, GFS_CREDS_FILE_MAX, &buf, &len);
    if (rc == -ENOENT) {
        if (explicit_path)
            gfs_warn(log, "s3 credentials: %s names %s, which does not exist",
                     config_file ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE", path);
        return 0;
    }
    if (rc != 0) {
        put_err(err, errlen, "s3 credentials: cannot read %s: %s", path,
                rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
        return rc == -ENOMEM ? rc : -EIO;
    }
    struct gfs_ini_profile p;
    char why[160] = "";
    rc = gfs_creds_parse_ini(buf, len, profile, config_file, &p, why, sizeof(why));
    mbedtls_platform_zeroize(buf, len);
    free(buf);
    if (rc != 0) {
        put_err(err, errlen, "s3 credentials: %s: %s", path, why);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    if (!p.found)
        return 0;
    *found_profile = 1;
    if (p.unsupported[0] && !unsupported[0])
        snprintf(unsupported, ul, "%s", p.unsupported);
    if (!p.keys.akid && !p.keys.secret) {
        gfs_creds_parsed_clear(&p.keys);
        return 0;
    }
    char what[600];
    snprintf(what, sizeof(what), "profile %s of %s", profile, path);
    rc = static_pair(p.keys.akid, p.keys.secret, p.keys.token, what, out, err, errlen);
    gfs_creds_parsed_clear(&p.keys);
    return rc;
}

/* http(s)://host[:port] (IMDS), with a path when allow_path (an STS
 * endpoint behind a gateway); never a query, fragment or user info. A
 * trailing '/' is dropped by the caller. */
static int base_url_ok(const char *u, int allow_path)
{
    CURLU *h = curl_url();
    if (!h)
        return 0;
    int ok = curl_url_set(h, CURLUPART_URL, u, 0) == CURLUE_OK;
    char *scheme = NULL, *path = NULL, *query = NULL, *user = NULL;
    if (ok)
        ok = curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    if (ok && !allow_path && curl_url_get(h, CURLUPART_PATH, &path, 0) == CURLUE_OK)
        ok = strcmp(path, "/") == 0 || !*path;
    char *frag = NULL;
    if (ok && curl_url_get(h, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK)
        ok = 0;
    curl_free(frag);
    if (ok && curl_url_get(h, CURLUPART_QUERY, &query, 0) == CURLUE_OK)
        ok = 0;
    if (ok && curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK)
        ok = 0;
    curl_free(scheme);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(h);
    return ok;
}

/* AWS_CONTAINER_CREDENTIALS_FULL_URI: https anywhere, http only to a
 * loopback address or the ECS / EKS Pod Identity agent (what the SDKs allow). */
static int container_url_ok(const char *u)
{
    CURLU *h = curl_url();
    if (!h)
        return 0;
    char *scheme = NULL, *host = NULL, *user = NULL;
    int ok = curl_url_set(h, CURLUPART_URL, u, 0) == CURLUE_OK &&
             curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             curl_url_get(h, CURLUPART_USER, &user, 0) != CURLUE_OK;
    if (ok && strcmp(scheme, "https") != 0) {
        ok = strcmp(scheme, "http") == 0 &&
             (strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
              strcasecmp(host, "localhost") == 0 || strcmp(host, "169.254.170.2") == 0 ||
              strcmp(host, "169.254.170.23") == 0 || strcasecmp(host, "[fd00:ec2::23]") == 0);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_url_cleanup(h);
    return ok;
}

static int printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static int session_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("+=,.@_-", ch)))
            return 0;
    }
    return 1;
}

static int setup_web_identity(struct gfs_s3_creds *c, const char *region, char *err,
                              size_t errlen)
{
    const char *file = env("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env("AWS_ROLE_ARN");
    const char *name = env("AWS_ROLE_SESSION_NAME"), *sts = env("AWS_ENDPOINT_URL_STS");
    if (!role) {
        put_err(err, errlen, "s3 credentials: AWS_WEB_IDENTITY_TOKEN_FILE is set but "
                "AWS_ROLE_ARN is not (the role to assume with the token)");
        return -EINVAL;
    }
    if (!printable(role, 2048)) {
        put_err(err, errlen, "s3 credentials: AWS_ROLE_ARN is not a role ARN");
        return -EINVAL;
    }
    char gen[64];
    if (!name) {
        snprintf(gen, sizeof(gen), "glidefs-%" PRId64, wall_ms());
        name = gen;
    }
    if (!session_name_ok(name)) {
        put_err(err, errlen, "s3 credentials: AWS_ROLE_SESSION_NAME must be 2-64 of "
                "A-Z a-z 0-9 + = , . @ _ -");
        return -EINVAL;
    }
    if (sts && (strlen(sts) > 1000 || !base_url_ok(sts, 1))) {
        put_err(err, errlen, "s3 credentials: AWS_ENDPOINT_URL_STS must be "
                "http(s)://host[:port][/path]");
        return -EINVAL;
    }
    c->src = SRC_WEB_IDENTITY;
    c->token_file = strdup(file);
    c->role_arn = strdup(role);
    c->session_name = strdup(name);
    if (sts) {
        c->url = strdup(sts);
        if (c->url && c->url[strlen(c->url) - 1] == '/')
            c->url[strlen(c->url) - 1] = '\0';
    } else if (asprintf(&c->url, "https://sts.%s.amazonaws.com%s", region,
                        strncmp(region, "cn-", 3) == 0 ? ".cn" : "") < 0) {
        c->url = NULL;
    }
    if (!c->token_file || !c->role_arn || !c->session_name || !c->url)
        return -ENOMEM;
    snprintf(c->what, sizeof(c->what), "web identity (AWS_WEB_IDENTITY_TOKEN_FILE %s, role %s, "
             "STS at %s)", file, role, c->url);
    return 0;
}

static int setup_container(struct gfs_s3_creds *c, char *err, size_t errlen)
{
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (rel) {
        size_t n = strlen(rel);
        int ok = rel[0] == '/' && n <= 1024;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)rel[i] > 0x20 && (unsigned char)rel[i] < 0x7f && rel[i] != '#';
        if (!ok) {
            put_err(err, errlen, "s3 credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must "
                    "be a path starting with '/'");
            return -EINVAL;
        }
        if (asprintf(&c->url, "%s%s", ECS_HOST, rel) < 0) {
            c->url = NULL;
            return -ENOMEM;
        }
    } else {
        if (strlen(full) > 2048 || !container_url_ok(full)) {
            put_err(err, errlen, "s3 credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI must be "
                    "an https URL, or http to a loopback address or the ECS / EKS agent "
                    "(169.254.170.2, 169.254.170.23, fd00:ec2::23)");
            return -EINVAL;
        }
        if (!(c->url = strdup(full)))
            return -ENOMEM;
    }
    const char *tf = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tok = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    if (tf && !(c->auth_token_file = strdup(tf)))
        return -ENOMEM;
    if (!tf && tok) {
        if (strlen(tok) > AUTH_TOKEN_MAX || strpbrk(tok, "\r\n")) {
            put_err(err, errlen, "s3 credentials: AWS_CONTAINER_AUTHORIZATION_TOKEN is too "
                    "long or holds a line break");
            return -EINVAL;
        }
        if (!(c->auth_token = strdup(tok)))
            return -ENOMEM;
    }
    c->src = SRC_CONTAINER;
    /* the URL may carry an id; it is no secret (the SDKs log it too) */
    snprintf(c->what, sizeof(c->what), "the container credentials endpoint %s%s", c->url,
             tf ? " (token from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
                : tok ? " (token from AWS_CONTAINER_AUTHORIZATION_TOKEN)" : "");
    return 0;
}

static int setup_imds(struct gfs_s3_creds *c, char *err, size_t errlen)
{
    const char *ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    if (ep && (strlen(ep) > 1000 || !base_url_ok(ep, 0))) {
        put_err(err, errlen, "s3 credentials: AWS_EC2_METADATA_SERVICE_ENDPOINT must be "
                "http(s)://host[:port]");
        return -EINVAL;
    }
    if (!ep)
        ep = mode && strcasecmp(mode, "IPv6") == 0 ? IMDS_DEFAULT_V6 : IMDS_DEFAULT;
    if (!(c->url = strdup(ep)))
        return -ENOMEM;
    if (c->url[strlen(c->url) - 1] == '/')
        c->url[strlen(c->url) - 1] = '\0';
    c->imds_timeout_ms = 1000;
    c->imds_attempts = 1;
    const char *t = env("AWS_METADATA_SERVICE_TIMEOUT");
    if (t) {
        char *end;
        double s = strtod(t, &end);
        if (*end || !(s >= 0.1 && s <= 60)) {
            put_err(err, errlen, "s3 credentials: AWS_METADATA_SERVICE_TIMEOUT must be "
                    "seconds, 0.1 to 60");
            return -EINVAL;
        }
        c->imds_timeout_ms = (long)(s * 1000);
    }
    const char *a = env("AWS_METADATA_SERVICE_NUM_ATTEMPTS");
    if (a) {
        char *end;
        long n = strtol(a, &end, 10);
        if (*end || n < 1 || n > 10) {
            put_err(err, errlen, "s3 credentials: AWS_METADATA_SERVICE_NUM_ATTEMPTS must be "
                    "1 to 10");
            return -EINVAL;
        }
        c->imds_attempts = (int)n;
    }
    c->src = SRC_IMDS;
    snprintf(c->what, sizeof(c->what), "the EC2 instance metadata at %s", c->url);
    return 0;
}

/* Steps 4: the shared files. 1 keys in out, 0 none, <0 error. */
static int shared_files(struct gfs_creds_parsed *out, char *what, size_t whatlen,
                        char *tried, size_t triedlen, struct gfs_log *log, char *err,
                        size_t errlen)
{
    const char *named = env("AWS_PROFILE");
    const char *profile = named ? named : "default";
    const char *home = env("HOME");
    const char *cf = env("AWS_SHARED_CREDENTIALS_FILE"), *kf = env("AWS_CONFIG_FILE");
    char cpath[4096] = "", kpath[4096] = "";
    if (cf)
        snprintf(cpath, sizeof(cpath), "%s", cf);
    else if (home)
        snprintf(cpath, sizeof(cpath), "%s/.aws/credentials", home);
    if (kf)
        snprintf(kpath, sizeof(kpath), "%s", kf);
    else if (home)
        snprintf(kpath, sizeof(kpath), "%s/.aws/config", home);
    if (strlen(profile) > 128 || strpbrk(profile, "[]\r\n")) {
        put_err(err, errlen, "s3 credentials: AWS_PROFILE is not a profile name");
        return -EINVAL;
    }
    int found = 0, rc = 0;
    char unsupported[160] = "";
    if (cpath[0])
        rc = from_shared_file(cpath, cf != NULL, profile, 0, out, &found, unsupported,
                              sizeof(unsupported), log, err, errlen);
    if (rc == 1) {
        snprintf(what, whatlen, "profile %s of %s", profile, cpath);
        return 1;
    }
    if (rc == 0 && kpath[0])
        rc = from_shared_file(kpath, kf != NULL, profile, 1, out, &found, unsupported,
                              sizeof(unsupported), log, err, errlen);
    if (rc == 1) {
        snprintf(what, whatlen, "profile %s of %s", profile, kpath);
        return 1;
    }
    if (rc < 0)
        return rc;
    if (named && !found) {
        put_err(err, errlen, "s3 credentials: AWS_PROFILE names profile %s, which is in "
                "neither %s nor %s", profile, cpath[0] ? cpath : "(no credentials file)",
                kpath[0] ? kpath : "(no config file)");
        return -EINVAL;
    }
    if (found && unsupported[0]) {
        if (named) {
            put_err(err, errlen, "s3 credentials: profile %s gives its credentials through %s, "
                    "which GlideFS does not do: give it aws_access_key_id and "
                    "aws_secret_access_key, or use another source (see glidefs.yaml(5))",
                    profile, unsupported);
            return -EINVAL;
        }
        gfs_warn(log, "s3 credentials: profile %s uses %s, which GlideFS does not do: "
                 "skipped", profile, unsupported);
    } else if (named) {
        put_err(err, errlen, "s3 credentials: profile %s has no aws_access_key_id and "
                "aws_secret_access_key", profile);
        return -EINVAL;
    }
    snprintf(tried, triedlen, "no keys in profile %s of %s or %s", profile,
             cpath[0] ? cpath : "(no credentials file: HOME unset)",
             kpath[0] ? kpath : "(no config file: HOME unset)");
    return 0;
}

int gfs_s3_creds_new(const struct gfs_s3_creds_opts *o, struct gfs_s3_creds **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!o)
        return -EINVAL;
    struct gfs_s3_creds *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->log = o->log;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->ahead_ms = (int64_t)(o->refresh_ahead_s > 0 ? o->refresh_ahead_s : 300) * 1000;
    c->tls_verify = o->tls_verify;
    if (o->ca_bundle && !(c->ca_bundle = strdup(o->ca_bundle))) {
        gfs_s3_creds_free(c);
        return -ENOMEM;
    }
    const char *region = o->region && *o->region ? o->region : "us-east-1";

    struct gfs_creds_parsed p;
    const char *ct = o->token && *o->token ? o->token : NULL;
    int rc = static_pair(o->akid && *o->akid ? o->akid : NULL,
                         o->secret && *o->secret ? o->secret : NULL, ct,
                         "the config (storage.access_key_id, storage.secret_access_key)", &p,
                         err, errlen);
    const char *source = "config";
    if (rc == 1)
        snprintf(c->what, sizeof(c->what), "the config (storage.access_key_id)");
    if (rc == 0) {
        rc = static_pair(env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"),
                         env("AWS_SESSION_TOKEN"),
                         "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)", &p, err,
                         errlen);
        source = "environment";
        if (rc == 1)
            snprintf(c->what, sizeof(c->what), "the environment (AWS_ACCESS_KEY_ID)");
    }
    if (rc == 0 && env("AWS_WEB_IDENTITY_TOKEN_FILE"))
        rc = setup_web_identity(c, region, err, errlen);
    else if (rc == 0) {
        char tried[600] = "";
        rc = shared_files(&p, c->what, sizeof(c->what), tried, sizeof(tried), o->log, err,
                          errlen);
        source = "shared file";
        if (rc == 0 && (env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ||
                        env("AWS_CONTAINER_CREDENTIALS_FULL_URI")))
            rc = setup_container(c, err, errlen);
        else if (rc == 0) {
            const char *off = env("AWS_EC2_METADATA_DISABLED");
            if (off && strcasecmp(off, "true") == 0) {
                put_err(err, errlen, "s3 store: no credentials: set storage.access_key_id and "
                        "storage.secret_access_key, or AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, or a profile in the shared credentials file, "
                        "or a web identity or container source (%s; the EC2 instance metadata "
                        "is off: AWS_EC2_METADATA_DISABLED)", tried);
                rc = -EINVAL;
            } else {
                rc = setup_imds(c, err, errlen);
                snprintf(c->tried, sizeof(c->tried), "no storage.access_key_id, no "
                         "AWS_ACCESS_KEY_ID, no web identity or container source, %s", tried);
            }
        }
    }
    if (rc == -ENOMEM)
        put_err(err, errlen, "out of memory");
    if (rc == 1) {
        c->src = SRC_STATIC;
        if (!(c->cur = keys_from(&p, source))) {
            gfs_creds_parsed_clear(&p);
            rc = -ENOMEM;
        } else {
            rc = 0;
        }
    }
    if (rc < 0) {
        gfs_s3_creds_free(c);
        return rc;
    }
    if (c->src == SRC_STATIC)
        gfs_info(o->log, "s3: credentials from %s: access key id %s%s", c->what, c->cur->akid,
                 c->cur->token ? ", with a session token" : "");
    else
        gfs_info(o->log, "s3: credentials from %s, fetched at the first request", c->what);
    *out = c;
    return 0;
}

void gfs_s3_creds_free(struct gfs_s3_creds *c)
{
    if (!c)
        return;
    gfs_s3_keys_put(c->cur);
    free(c->url);
    free(c->role_arn);
    free(c->session_name);
    free(c->token_file);
    free_secret(c->auth_token);
    free(c->auth_token_file);
    free(c->ca_bundle);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

const char *gfs_s3_creds_describe(const struct gfs_s3_creds *c) { return c ? c->what : ""; }

/* ---- fetching ---------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int fetch_imds_once(struct gfs_s3_creds *c, struct gfs_creds_parsed *out, char *why,
                           size_t wl)
{
    char url[1200];
    struct gfs_http_resp r;
    snprintf(url, sizeof(url), "%s/latest/api/token", c->url);
    const char *th[] = {"X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL};
    struct gfs_http_req q = {.method = "PUT", .url = url, .headers = th, .nheaders = 1,
                             .timeout_ms = c->imds_timeout_ms, .max_body = 4096, .no_proxy = 1,
                             .ca_bundle = c->ca_bundle, .tls_verify = c->tls_verify};
    int rc = gfs_http_fetch(&q, &r);
    if (rc != 0 || r.status != 200) {
        if (rc != 0)
            put_err(why, wl, "no answer to the IMDSv2 token request: %s", r.err);
        else
            put_err(why, wl, "the IMDSv2 token request was answered HTTP %ld%s", r.status,
                    r.status == 403 ? " (IMDS disabled on this instance?)" : "");
        gfs_http_resp_clear(&r);
        return -EIO;
    }
    if (!printable(r.body, 4096)) {
        put_err(why, wl, "the IMDSv2 token is malformed (%zu bytes)", r.len);
        gfs_http_resp_clear(&r);
        return -EIO;
    }
    char hdr[4200];
    snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %s", r.body);
    gfs_http_resp_clear(&r);
    const char *h[] = {hdr};
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", c->url);
    q = (struct gfs_http_req){.method = "GET", .url = url, .headers = h, .nheaders = 1,
                              .timeout_ms = c->imds_timeout_ms, .max_body = 4096,
                              .no_proxy = 1, .ca_bundle = c->ca_bundle,
                              .tls_verify = c->tls_verify};
    rc = gfs_http_fetch(&q, &r);
    char role[GFS_CREDS_ROLE_MAX + 1];
    if (rc != 0 || r.status != 200 || gfs_creds_role_name(r.body, r.len, role, sizeof(role))) {
        if (rc != 0)
            put_err(why, wl, "no answer for the instance's IAM role: %s", r.err);
        else if (r.status == 404)
            put_err(why, wl, "this instance has no IAM role (instance profile) attached");
        else if (r.status != 200)
            put_err(why, wl, "the IAM role request was answered HTTP %ld", r.status);
        else
            put_err(why, wl, "the IAM role name is malformed");
        gfs_http_resp_clear(&r);
        mbedtls_platform_zeroize(hdr, sizeof(hdr));
        return -EIO;
    }
    gfs_http_resp_clear(&r);
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", c->url, role);
    rc = gfs_http_fetch(&q, &r);
    mbedtls_platform_zeroize(hdr, sizeof(hdr));
    if (rc != 0 || r.status != 200) {
        if (rc != 0)
            put_err(why, wl, "no answer for the credentials of role %s: %s", role, r.err);
        else
            put_err(why, wl, "the credentials of role %s were answered HTTP %ld", role,
                    r.status);
        gfs_http_resp_clear(&r);
        return -EIO;
    }
    char pwhy[200] = "";
    rc = gfs_creds_parse_json(r.body, r.len, wall_ms(), out, pwhy, sizeof(pwhy));
    gfs_http_resp_clear(&r);
    if (rc != 0) {
        put_err(why, wl, "the credentials of role %s: %s", role, pwhy);
        return rc == -ENOMEM ? rc : -EIO;
    }
    return 0;
}

static int fetch_container_once(struct gfs_s3_creds *c, struct gfs_creds_parsed *out, char *why,
                                size_t wl)
{
    char *tok = NULL;
    if (c->auth_token_file) {
        int rc = read_token_file(c->auth_token_file, AUTH_TOKEN_MAX, &tok, why, wl);
        if (rc != 0)
            return rc == -ENOMEM ? rc : -EIO;
    } else if (c->auth_token && !(tok = strdup(c->auth_token))) {
        return -ENOMEM;
    }
    char *hdr = NULL;
    if (tok && asprintf(&hdr, "Authorization: %s", tok) < 0)
        hdr = NULL;
    free_secret(tok);
    if (c->auth_token_file || c->auth_token) {
        if (!hdr)
            return -ENOMEM;
    }
    const char *h[] = {hdr};
    struct gfs_http_req q = {.method = "GET", .url = c->url, .headers = h,
                             .nheaders = hdr ? 1 : 0, .timeout_ms = ENDPOINT_TIMEOUT_MS,
                             .max_body = GFS_CREDS_ANSWER_MAX, .no_proxy = 1,
                             .ca_bundle = c->ca_bundle, .tls_verify = c->tls_verify};
    struct gfs_http_resp r;
    int rc = gfs_http_fetch(&q, &r);
    free_secret(hdr);
    if (rc != 0 || r.status != 200) {
        if (rc != 0)
            put_err(why, wl, "no answer: %s", r.err);
        else
            put_err(why, wl, "answered HTTP %ld%s", r.status,
                    r.status == 401 || r.status == 403 ? " (the authorization token refused?)"
                                                       : "");
        gfs_http_resp_clear(&r);
        return rc == -ENOMEM ? rc : -EIO;
    }
    rc = gfs_creds_parse_json(r.body, r.len, wall_ms(), out, why, wl);
    gfs_http_resp_clear(&r);
    return rc == 0 || rc == -ENOMEM ? rc : -EIO;
}

/* "name=value&" with value form-encoded. */
static int form_add(char **body, const char *name, const char *value)
{
    char *ev = gfs_sigv4_uri_encode(value, strlen(value), 0);
    if (!ev)
        return -ENOMEM;
    char *nb = NULL;
    int n = asprintf(&nb, "%s%s%s=%s", *body ? *body : "", *body ? "&" : "", name, ev);
    free_secret(ev);
    if (n < 0)
        return -ENOMEM;
    free_secret(*body);
    *body = nb;
    return 0;
}

static int fetch_sts_once(struct gfs_s3_creds *c, struct gfs_creds_parsed *out, char *why,
                          size_t wl)
{
    char *tok = NULL;
    int rc = read_token_file(c->token_file, WEB_TOKEN_MAX, &tok, why, wl);
    if (rc != 0)
        return rc == -ENOMEM ? rc : -EIO;
    char *body = NULL;
    rc = form_add(&body, "Action", "AssumeRoleWithWebIdentity");
    if (rc == 0)
        rc = form_add(&body, "Version", "2011-06-15");
    if (rc == 0)
        rc = form_add(&body, "RoleArn", c->role_arn);
    if (rc == 0)
        rc = form_add(&body, "RoleSessionName", c->session_name);
    if (rc == 0)
        rc = form_add(&body, "WebIdentityToken", tok);
    free_secret(tok);
    if (rc != 0) {
        free_secret(body);
        return rc;
    }
    char url[1100];
    snprintf(url, sizeof(url), "%s/", c->url);
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8"};
    struct gfs_http_req q = {.method = "POST", .url = url, .headers = h, .nheaders = 1,
                             .body = body, .body_len = strlen(body),
                             .timeout_ms = ENDPOINT_TIMEOUT_MS, .max_body = GFS_CREDS_ANSWER_MAX,
                             .ca_bundle = c->ca_bundle, .tls_verify = c->tls_verify};
    struct gfs_http_resp r;
    rc = gfs_http_fetch(&q, &r);
    free_secret(body);
    if (rc != 0) {
        put_err(why, wl, "no answer from STS at %s: %s", c->url, r.err);
        gfs_http_resp_clear(&r);
        return rc == -ENOMEM ? rc : -EIO;
    }
    struct gfs_s3_error e;
    int pr = gfs_sts_xml_parse_credentials(r.body, r.len, out, &e, c->log);
    long status = r.status;
    gfs_http_resp_clear(&r);
    if (status == 200 && pr == 0) {
        char pwhy[160];
        if (gfs_creds_check(out, 1, wall_ms(), pwhy, sizeof(pwhy)) == 0)
            return 0;
        gfs_creds_parsed_clear(out);
        put_err(why, wl, "STS answered credentials that do not check: %s", pwhy);
        return -EIO;
    }
    if (pr == 0)
        gfs_creds_parsed_clear(out);
    if (pr == 1)
        put_err(why, wl, "STS refused AssumeRoleWithWebIdentity: HTTP %ld %s: %s%s%s%s", status,
                e.code, e.message, e.request_id[0] ? " (request id " : "", e.request_id,
                e.request_id[0] ? ")" : "");
    else
        put_err(why, wl, "STS answered HTTP %ld without %s", status,
                status == 200 ? "well-formed credentials" : "an STS error");
    return -EIO;
}

static int fetch(struct gfs_s3_creds *c, struct gfs_creds_parsed *out, char *why, size_t wl)
{
    int attempts = c->src == SRC_IMDS ? c->imds_attempts : ENDPOINT_ATTEMPTS;
    int rc = -EIO;
    for (int i = 0; i < attempts; i++) {
        if (i)
            sleep_ms(100L << (i - 1));
        if (c->src == SRC_IMDS)
            rc = fetch_imds_once(c, out, why, wl);
        else if (c->src == SRC_CONTAINER)
            rc = fetch_container_once(c, out, why, wl);
        else
            rc = fetch_sts_once(c, out, why, wl);
        if (rc == 0 || rc == -ENOMEM)
            break;
    }
    return rc;
}

/* ---- get / refresh ------------------------------------------------------------- */

/* How long before expiry a refresh starts: refresh_ahead_s, at most half the
 * keys' lifetime (else short-lived keys would be refreshed at every use). */
static int64_t ahead_of(const struct gfs_s3_creds *c, const struct gfs_s3_keys *k)
{
    int64_t life = k->expires_ms - k->fetched_ms;
    int64_t a = c->ahead_ms;
    if (life > 0 && a > life / 2)
        a = life / 2;
    return a;
}

/* Keys this close to expiry are never signed with: a request takes time
 * to arrive, and clocks differ. */
static int64_t margin_of(const struct gfs_s3_creds *c, const struct gfs_s3_keys *k)
{
    int64_t m = ahead_of(c, k) / 5;
    return m > HARD_MARGIN_MAX_MS ? HARD_MARGIN_MAX_MS : m;
}

static void fmt_time(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *src_name(enum source s)
{
    return s == SRC_WEB_IDENTITY ? "web identity"
         : s == SRC_CONTAINER    ? "container endpoint"
         : s == SRC_IMDS         ? "instance metadata"
                                 : "static";
}

int gfs_s3_creds_get(struct gfs_s3_creds *c, struct gfs_s3_keys **out, char *why, size_t wl)
{
    *out = NULL;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        int64_t now = wall_ms();
        struct gfs_s3_keys *k = c->cur;
        if (k && (k->expires_ms == 0 || now < k->expires_ms - ahead_of(c, k))) {
            atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
            *out = k;
            break;
        }
        int usable = k && now < k->expires_ms - margin_of(c, k);
        if (usable && (c->refreshing || now < c->next_try_ms)) {
            /* someone is fetching, or the last fetch failed a moment ago */
            atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
            *out = k;
            break;
        }
        if (c->refreshing) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->cond, &c->lock, &until);
            continue;
        }
        if (now < c->next_try_ms) {
            put_err(why, wl, "%s", c->last_err);
            pthread_mutex_unlock(&c->lock);
            return -EACCES;
        }
        /* this thread fetches; the lock is not held meanwhile */
        c->refreshing = 1;
        pthread_mutex_unlock(&c->lock);
        struct gfs_creds_parsed p;
        memset(&p, 0, sizeof(p));
        char fwhy[300] = "";
        int rc = fetch(c, &p, fwhy, sizeof(fwhy));
        struct gfs_s3_keys *nk = rc == 0 ? keys_from(&p, src_name(c->src)) : NULL;
        if (rc == 0 && !nk) {
            gfs_creds_parsed_clear(&p);
            rc = -ENOMEM;
            snprintf(fwhy, sizeof(fwhy), "out of memory");
        }
        pthread_mutex_lock(&c->lock);
        c->refreshing = 0;
        pthread_cond_broadcast(&c->cond);
        now = wall_ms();
        k = c->cur;
        if (nk) {
            char exp[32];
            fmt_time(nk->expires_ms, exp);
            if (k)
                gfs_info(c->log, "s3: credentials from %s refreshed: access key id %s, "
                         "expire at %s (the previous ones in %" PRId64 " s)", c->what,
                         nk->akid, exp, (k->expires_ms - now) / 1000);
            else
                gfs_info(c->log, "s3: credentials from %s: access key id %s, expire at %s",
                         c->what, nk->akid, exp);
            c->cur = nk;
            gfs_s3_keys_put(k);
            c->fails = 0;
            c->next_try_ms = 0;
            continue;
        }
        /* failed: back off (1 s doubling, at most 30 s, and a few tries
         * before the current keys become unusable) */
        c->fails++;
        int64_t wait = RETRY_MIN_MS * 5;
        for (int i = 1; i < c->fails && wait < RETRY_MAX_MS; i++)
            wait *= 2;
        if (wait > RETRY_MAX_MS)
            wait = RETRY_MAX_MS;
        usable = k && now < k->expires_ms - margin_of(c, k);
        if (usable) {
            int64_t left = k->expires_ms - margin_of(c, k) - now;
            if (wait > left / 3)
                wait = left / 3 > RETRY_MIN_MS ? left / 3 : RETRY_MIN_MS;
        }
        c->next_try_ms = now + wait;
        if (usable) {
            char exp[32];
            fmt_time(k->expires_ms, exp);
            gfs_warn(c->log, "s3: refreshing the credentials from %s failed: %s; signing with "
                     "the current ones (access key id %s) until they expire at %s; next try in "
                     "%" PRId64 " ms", c->what, fwhy, k->akid, exp, wait);
            atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
            *out = k;
            break;
        }
        if (c->src == SRC_IMDS && !k)
            put_err(c->last_err, sizeof(c->last_err), "no credentials found (%s); %s: %s",
                     c->tried, c->what, fwhy);
        else if (k)
            put_err(c->last_err, sizeof(c->last_err), "the credentials from %s expired and "
                     "fetching new ones failed: %s", c->what, fwhy);
        else
            put_err(c->last_err, sizeof(c->last_err), "no credentials from %s: %s", c->what,
                     fwhy);
        gfs_err(c->log, "s3: %s (next try in %" PRId64 " ms)", c->last_err, wait);
        if (k) {
            c->cur = NULL; /* expired: never signed with again */
            gfs_s3_keys_put(k);
        }
        put_err(why, wl, "%s", c->last_err);
        pthread_mutex_unlock(&c->lock);
        return rc == -ENOMEM ? -ENOMEM : -EACCES;
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int gfs_s3_creds_expired(struct gfs_s3_creds *c, const struct gfs_s3_keys *k)
{
    if (!c || !k || k->expires_ms == 0)
        return 0;
    pthread_mutex_lock(&c->lock);
    int r = 0;
    if (c->cur == k) {
        gfs_warn(c->log, "s3: the store refused access key id %s from %s as expired: fetching "
                 "new credentials", k->akid, c->what);
        c->cur = NULL;
        c->next_try_ms = 0;
        gfs_s3_keys_put((struct gfs_s3_keys *)k);
        r = 1;
    } else if (c->cur) {
        r = 1; /* replaced already: the next get has new keys */
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}
