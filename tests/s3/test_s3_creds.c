/*
 * test_s3_creds.c — the credential chain of the s3:// backend end to end:
 * run by tests/s3/s3env.py --credserver, against s3rver behind the strict
 * proxy (tests/s3/s3proxy.py), which accepts the short-lived keys that
 * tests/s3/credserver.py (IMDSv2, the container endpoint, STS web identity)
 * issues, and refuses them once expired (400 ExpiredToken).
 *
 *  - each source works end to end: a volume written through the library,
 *    drained, and read back on a second cache dir, signed with that
 *    source's keys (counted per access key id at the proxy);
 *  - the chain's order (config, environment, web identity, shared file,
 *    container, instance metadata) and the errors of a source given badly;
 *  - expiring keys are refreshed before they expire while 4 threads sign
 *    (short lifetimes, storage.credential_refresh_s small), never used
 *    expired (no ExpiredToken at the proxy), kept while a refresh fails,
 *    and fetched anew when the store calls them expired;
 *  - no instance metadata service: the first request fails within about a
 *    second, naming what was tried.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "config.h"
#include "glidefs/glidefs.h"
#include "log.h"
#include "objstore.h"
#include "objstore_s3.h"

static const char *endpoint, *bucket, *cred_ep;
static char run_id[64];
static char tmpdir[256];

/* ---- log capture ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_text;
static size_t log_len;

static void capture_log(void *arg, int level, const char *msg)
{
    (void)arg;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(msg);
    char *p = realloc(log_text, log_len + n + 2);
    if (p) {
        log_text = p;
        memcpy(log_text + log_len, msg, n);
        log_text[log_len + n] = '\n';
        log_len += n + 1;
        log_text[log_len] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
    if (level <= GLIDEFS_LOG_INFO)
        fprintf(stderr, "  log[%d]: %s\n", level, msg);
}

static int log_contains(const char *s)
{
    pthread_mutex_lock(&log_lock);
    int r = log_text && strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return r;
}

static void log_reset(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_text)
        log_text[0] = '\0';
    log_len = 0;
    pthread_mutex_unlock(&log_lock);
}

static struct gfs_log test_log = {capture_log, NULL, GLIDEFS_LOG_DEBUG};

/* ---- HTTP controls ---- */

struct buf {
    char *p;
    size_t n;
};

static size_t collect(char *d, size_t s, size_t n, void *arg)
{
    struct buf *b = arg;
    char *p = realloc(b->p, b->n + s * n + 1);
    if (!p)
        return 0;
    b->p = p;
    memcpy(b->p + b->n, d, s * n);
    b->n += s * n;
    b->p[b->n] = '\0';
    return s * n;
}

static char *http_get(const char *base, const char *what)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s/%s", base, what);
    struct buf b = {0};
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK || status != 200)
        fail_msg("GET %s: curl %d HTTP %ld", url, cc, status);
    return b.p ? b.p : strdup("");
}

static void proxy_do(const char *what) { free(http_get(endpoint, what)); }
static void cred_do(const char *what) { free(http_get(cred_ep, what)); }

/* The number after "name": inside the object "within" of a JSON answer. */
static long json_num(const char *json, const char *within, const char *name)
{
    const char *p = json;
    if (within) {
        char w[64];
        snprintf(w, sizeof(w), "\"%s\": {", within);
        p = strstr(json, w);
        if (!p)
            return 0;
        const char *end = strchr(p, '}');
        char pat[160];
        snprintf(pat, sizeof(pat), "\"%s\": ", name);
        const char *q = strstr(p, pat);
        if (!q || (end && q > end))
            return 0;
        return strtol(q + strlen(pat), NULL, 10);
    }
    char pat[160];
    snprintf(pat, sizeof(pat), "\"%s\": ", name);
    const char *q = strstr(p, pat);
    return q ? strtol(q + strlen(pat), NULL, 10) : 0;
}

static long proxy_num(const char *within, const char *name)
{
    char *s = http_get(endpoint, "__proxy__/stats");
    long v = json_num(s, within, name);
    free(s);
    return v;
}

static long issued(const char *service)
{
    char *s = http_get(cred_ep, "__cred__/stats");
    long v = json_num(s, "issued", service);
    free(s);
    return v;
}

/* The last access key id credserver issued for service. */
static void last_akid(const char *service, char out[64])
{
    char *s = http_get(cred_ep, "__cred__/stats");
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": \"", service);
    const char *p = strstr(s, "\"last_akid\"");
    p = p ? strstr(p, pat) : NULL;
    out[0] = '\0';
    if (p)
        sscanf(p + strlen(pat), "%63[A-Z0-9]", out);
    free(s);
}

/* A static key pair the proxy accepts (as the file or environment gives it). */
static void add_static_key(const char *akid, const char *secret)
{
    char q[256];
    snprintf(q, sizeof(q), "__proxy__/tempcreds?akid=%s&secret=%s&expires=0", akid, secret);
    proxy_do(q);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- environment ---- */

static const char *const aws_vars[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_METADATA_SERVICE_TIMEOUT", "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_CA_BUNDLE",
};

/* Nothing from the machine's own AWS setup: an empty HOME, no AWS_* at all. */
static void clean_env(void)
{
    for (size_t i = 0; i < sizeof(aws_vars) / sizeof(aws_vars[0]); i++)
        unsetenv(aws_vars[i]);
    char home[300];
    snprintf(home, sizeof(home), "%s/home", tmpdir);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* The instance metadata of credserver, the only source. */
static void env_imds(void)
{
    char ep[256];
    snprintf(ep, sizeof(ep), "%s", cred_ep);
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ep, 1);
}

static void env_container(const char *token)
{
    char url[300], tf[300];
    snprintf(url, sizeof(url), "%s/ecs/v2/credentials/1234-abcd", cred_ep);
    tmp_path(tf, sizeof(tf), "ecs-token");
    write_file(tf, token);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tf, 1);
}

static void env_web_identity(const char *token)
{
    char sts[300], tf[300];
    snprintf(sts, sizeof(sts), "%s/sts", cred_ep);
    tmp_path(tf, sizeof(tf), "web-token");
    write_file(tf, token);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tf, 1);
    setenv("AWS_ROLE_ARN", getenv("CRED_ROLE_ARN"), 1);
    setenv("AWS_ROLE_SESSION_NAME", "glidefs-test", 1);
    setenv("AWS_ENDPOINT_URL_STS", sts, 1);
}

/* ---- stores ---- */

struct env {
    struct glidefs_config cfg;
    char url[512];
    struct gfs_objstore *st;
};

static void cfg_init(struct env *e, const char *test)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->url, sizeof(e->url), "s3://%s/%s/%s", bucket, run_id, test);
    e->cfg.storage_url = e->url;
    e->cfg.storage_endpoint = (char *)endpoint;
    e->cfg.storage_region = (char *)"us-east-1";
    e->cfg.storage_tls_verify = 1;
    e->cfg.storage_max_connections = 8;
    e->cfg.storage_timeout_ms = 5000;
    e->cfg.storage_max_retries = 2;
    e->cfg.storage_credential_refresh_s = 300;
}

static int env_try_open(struct env *e, char *err, size_t errlen)
{
    return gfs_objstore_s3_open(&e->cfg, &test_log, &e->st, err, errlen);
}

static void env_open(struct env *e)
{
    char err[512] = "";
    int rc = env_try_open(e, err, sizeof(err));
    if (rc != 0)
        fail_msg("open %s: %d %s", e->url, rc, err);
}

static void env_close(struct env *e)
{
    gfs_objstore_close(e->st);
    e->st = NULL;
}

static int put_get(struct gfs_objstore *st, const char *key)
{
    char v[64];
    int n = snprintf(v, sizeof(v), "value of %s", key);
    int rc = st->ops->put(st, key, v, (size_t)n, 0, NULL);
    if (rc != 0)
        return rc;
    void *out = NULL;
    size_t outlen = 0;
    rc = st->ops->get(st, key, 1024, &out, &outlen, NULL);
    if (rc == 0 && (outlen != (size_t)n || memcmp(out, v, outlen) != 0))
        rc = -EILSEQ;
    free(out);
    return rc;
}

/* A volume written through the library with whatever source the
 * environment names, drained, and read back on another cache dir. */
static void volume_round_trip(const char *tag)
{
    char cache1[300], cache2[300], url[400];
    snprintf(cache1, sizeof(cache1), "%s/%s-cache1", tmpdir, tag);
    snprintf(cache2, sizeof(cache2), "%s/%s-cache2", tmpdir, tag);
    snprintf(url, sizeof(url), "s3://%s/%s/vol-%s", bucket, run_id, tag);
    char err[256];
    enum { SZ = 4 << 20, W = 384 * 1024 };
    static uint8_t data[W], back[W];
    for (size_t i = 0; i < W; i++)
        data[i] = (uint8_t)(i * 7 + (size_t)tag[0]);
    for (int pass = 0; pass < 2; pass++) {
        glidefs_config *c = glidefs_config_new();
        assert_non_null(c);
        const char *kv[][2] = {
            {"cache.dir", pass ? cache2 : cache1}, {"storage.url", url},
            {"storage.endpoint", endpoint}, {"storage.timeout_ms", "5000"},
            {"cache.disk_size", "64M"}, {"servers.nbd.sync_delay_ms", "10"},
        };
        for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
            if (glidefs_config_set(c, kv[i][0], kv[i][1], err, sizeof(err)) != 0)
                fail_msg("config %s: %s", kv[i][0], err);
        glidefs_config_set_log(c, capture_log, NULL, GLIDEFS_LOG_INFO);
        glidefs_volume *v = NULL;
        int rc = glidefs_volume_open(c, "vm", SZ, pass ? GLIDEFS_OPEN_READONLY
                                                       : GLIDEFS_OPEN_CREATE, &v);
        if (rc != 0)
            fail_msg("%s: volume open (pass %d): %s", tag, pass, glidefs_strerror(rc));
        if (!pass) {
            assert_int_equal(glidefs_pwrite(v, data, W, 512 * 1024, 0), 0);
            assert_int_equal(glidefs_drain(v, 60000), 0);
        } else {
            assert_int_equal(glidefs_pread(v, back, W, 512 * 1024), 0);
            assert_memory_equal(back, data, W);
        }
        assert_int_equal(glidefs_volume_close(v), 0);
        glidefs_config_free(c);
    }
    fprintf(stderr, "  %s: a volume written, drained and read back on another cache dir\n",
            tag);
}

/* ---- tests ---- */

/* Static sources: config, environment, shared files and profiles. */
static void test_static_sources(void **state)
{
    (void)state;
    clean_env();
    add_static_key("AKIDENVIRONMENT01", "env-secret-1");
    add_static_key("AKIDFILEDEFAULT01", "file-secret-default");
    add_static_key("AKIDFILEPROD00001", "file-secret-prod");
    add_static_key("AKIDCONFIGONLY001", "config-secret-only");
    char creds[300], conf[300];
    tmp_path(creds, sizeof(creds), "credentials");
    tmp_path(conf, sizeof(conf), "config");
    write_file(creds, "# shared credentials\n"
                      "[default]\n"
                      "aws_access_key_id = AKIDFILEDEFAULT01\n"
                      "aws_secret_access_key=file-secret-default\n"
                      "\n"
                      "[prod]\n"
                      "  ; indented comment\n"
                      "AWS_ACCESS_KEY_ID = AKIDFILEPROD00001\r\n"
                      "aws_secret_access_key = file-secret-prod\r\n"
                      "[assumer]\n"
                      "role_arn = arn:aws:iam::1:role/x\n"
                      "source_profile = default\n");
    write_file(conf, "[default]\n"
                     "region = us-east-1\n"
                     "s3 =\n"
                     "    addressing_style = path\n"
                     "[profile cfgonly]\n"
                     "aws_access_key_id = AKIDCONFIGONLY001\n"
                     "aws_secret_access_key = config-secret-only\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);
    static const struct {
        const char *profile, *akid;
    } cases[] = {
        {NULL, "AKIDFILEDEFAULT01"}, {"prod", "AKIDFILEPROD00001"},
        {"cfgonly", "AKIDCONFIGONLY001"},
    };
    for (size_t i = 0; i < 3; i++) {
        if (cases[i].profile)
            setenv("AWS_PROFILE", cases[i].profile, 1);
        else
            unsetenv("AWS_PROFILE");
        long before = proxy_num("by_akid", cases[i].akid);
        struct env e;
        cfg_init(&e, "files");
        env_open(&e);
        assert_int_equal(put_get(e.st, "k"), 0);
        env_close(&e);
        assert_int_equal(proxy_num("by_akid", cases[i].akid), before + 2);
    }
    /* a profile named that does not exist, or gives no keys we can use */
    static const struct {
        const char *profile, *want;
    } bad[] = {
        {"nosuch", "names profile nosuch, which is in neither"},
        {"assumer", "role_arn, source_profile, which GlideFS does not do"},
    };
    for (size_t i = 0; i < 2; i++) {
        setenv("AWS_PROFILE", bad[i].profile, 1);
        struct env e;
        cfg_init(&e, "files");
        char err[512] = "";
        assert_int_equal(env_try_open(&e, err, sizeof(err)), -EINVAL);
        fprintf(stderr, "  open said: %s\n", err);
        assert_non_null(strstr(err, bad[i].want));
    }
    unsetenv("AWS_PROFILE");
    /* a malformed file is an error at open, naming the file and the line */
    write_file(conf, "[default]\naws_access_key_id = AKIDCONFIGONLY001\nno delimiter here\n");
    setenv("AWS_PROFILE", "cfgonly", 1);
    struct env e;
    cfg_init(&e, "files");
    char err[512] = "";
    assert_int_equal(env_try_open(&e, err, sizeof(err)), -EINVAL);
    fprintf(stderr, "  open said: %s\n", err);
    assert_non_null(strstr(err, conf));
    assert_non_null(strstr(err, "line 3"));
    unsetenv("AWS_PROFILE");
    /* half a pair in the environment */
    setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01", 1);
    assert_int_equal(env_try_open(&e, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "without a secret access key"));
    clean_env();
}

/* Which source wins when several are there: config, environment, web
 * identity, shared file, container, instance metadata, in that order. */
static void test_chain_order(void **state)
{
    (void)state;
    clean_env();
    char creds[300];
    tmp_path(creds, sizeof(creds), "credentials-order");
    write_file(creds, "[default]\naws_access_key_id = AKIDFILEDEFAULT01\n"
                      "aws_secret_access_key = file-secret-default\n");
    env_imds();
    env_container(getenv("CRED_ECS_TOKEN"));
    setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
    env_web_identity(getenv("CRED_WEB_TOKEN"));
    setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env-secret-1", 1);
    static const char *const wins[] = {
        "the config", "the environment", "web identity", "profile default",
        "the container credentials endpoint", "the EC2 instance metadata",
    };
    static const char *const akid_of[] = {"S3RVER", "AKIDENVIRONMENT01", NULL,
                                          "AKIDFILEDEFAULT01", NULL, NULL};
    static const char *const service_of[] = {NULL, NULL, "sts", NULL, "ecs", "imds"};
    for (int step = 0; step < 6; step++) {
        /* step 1: the config keys are no longer given (below) */
        if (step == 2) {
            unsetenv("AWS_ACCESS_KEY_ID");
            unsetenv("AWS_SECRET_ACCESS_KEY");
        }
        if (step == 3)
            unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
        if (step == 4)
            unsetenv("AWS_SHARED_CREDENTIALS_FILE");
        if (step == 5)
            unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        struct env e;
        cfg_init(&e, "order");
        if (step == 0) {
            e.cfg.storage_access_key_id = (char *)"S3RVER";
            e.cfg.storage_secret_access_key = (char *)"S3RVER";
        }
        log_reset();
        long before = akid_of[step] ? proxy_num("by_akid", akid_of[step])
                                    : issued(service_of[step]);
        env_open(&e);
        char line[200];
        snprintf(line, sizeof(line), "credentials from %s", wins[step]);
        if (!log_contains(line))
            fail_msg("step %d: the log does not say \"%s\"", step, line);
        assert_int_equal(put_get(e.st, "k"), 0);
        env_close(&e);
        if (akid_of[step])
            assert_int_equal(proxy_num("by_akid", akid_of[step]), before + 2);
        else
            assert_int_equal(issued(service_of[step]), before + 1);
        fprintf(stderr, "  step %d: %s\n", step, wins[step]);
    }
    clean_env();
}

/* Each network source end to end: a volume through the library. */
static void test_imds_volume(void **state)
{
    (void)state;
    clean_env();
    env_imds();
    long before = issued("imds");
    volume_round_trip("imds");
    assert_true(issued("imds") > before);
    char akid[64];
    last_akid("imds", akid);
    assert_true(proxy_num("by_akid", akid) > 0);
    clean_env();
}

static void test_container_volume(void **state)
{
    (void)state;
    clean_env();
    env_container(getenv("CRED_ECS_TOKEN"));
    long before = issued("ecs");
    volume_round_trip("ecs");
    assert_true(issued("ecs") > before);
    /* a token the endpoint refuses: -EACCES with what it answered */
    env_container("not-the-token");
    struct env e;
    cfg_init(&e, "ecsbad");
    env_open(&e);
    char err[600] = "";
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EACCES);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "HTTP 401"));
    assert_null(strstr(err, "not-the-token"));
    env_close(&e);
    /* the relative form goes to the ECS agent's address; a foreign http URL is refused */
    clean_env();
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc", 1);
    cfg_init(&e, "ecsrel");
    log_reset();
    env_open(&e);
    assert_true(log_contains("http://169.254.170.2/v2/credentials/abc"));
    env_close(&e);
    clean_env();
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds", 1);
    cfg_init(&e, "ecsfull");
    assert_int_equal(env_try_open(&e, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "AWS_CONTAINER_CREDENTIALS_FULL_URI"));
    clean_env();
}

static void test_web_identity_volume(void **state)
{
    (void)state;
    clean_env();
    env_web_identity(getenv("CRED_WEB_TOKEN"));
    long before = issued("sts");
    volume_round_trip("sts");
    assert_true(issued("sts") > before);
    /* a token STS refuses: -EACCES naming STS's code */
    env_web_identity("some.other.token");
    struct env e;
    cfg_init(&e, "stsbad");
    env_open(&e);
    char err[600] = "";
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EACCES);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "InvalidIdentityToken"));
    assert_null(strstr(err, "some.other.token"));
    env_close(&e);
    /* no role to assume */
    unsetenv("AWS_ROLE_ARN");
    assert_int_equal(env_try_open(&e, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "AWS_ROLE_ARN"));
    clean_env();
}

/* Many threads sign while short-lived keys are refreshed ahead of expiry. */
struct hammer {
    struct gfs_objstore *st;
    double until;
    int id;
    int ops, errors;
    int first_error;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    char key[32];
    snprintf(key, sizeof(key), "h%d", h->id);
    while (now_s() < h->until) {
        int rc = put_get(h->st, key);
        h->ops++;
        if (rc != 0) {
            if (!h->errors)
                h->first_error = rc;
            h->errors++;
        }
        sleep_s(0.05);
    }
    return NULL;
}

static void hammer(struct gfs_objstore *st, double seconds, struct hammer hs[4])
{
    pthread_t th[4];
    double until = now_s() + seconds;
    for (int i = 0; i < 4; i++) {
        hs[i] = (struct hammer){st, until, i, 0, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &hs[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
}

static void test_refresh_ahead(void **state)
{
    (void)state;
    clean_env();
    env_imds();
    cred_do("__cred__/config?ttl=8&fail=0&down=0");
    long expired0 = proxy_num("by_code", "ExpiredToken");
    long issued0 = issued("imds");
    struct env e;
    cfg_init(&e, "refresh");
    e.cfg.storage_credential_refresh_s = 3; /* keys of 8 s: refreshed 3 s before */
    env_open(&e);
    log_reset();
    struct hammer hs[4];
    hammer(e.st, 13.0, hs);
    int ops = 0;
    for (int i = 0; i < 4; i++) {
        ops += hs[i].ops;
        if (hs[i].errors)
            fail_msg("thread %d: %d of %d requests failed, first %d", i, hs[i].errors,
                     hs[i].ops, hs[i].first_error);
    }
    long n = issued("imds") - issued0;
    fprintf(stderr, "  %d requests in 13 s from 4 threads, %ld key sets issued\n", ops, n);
    /* at 0, about 5 and 10 s: three sets, each fetched before the last expired */
    assert_true(n >= 3 && n <= 4);
    assert_true(log_contains("refreshed: access key id"));
    assert_int_equal(proxy_num("by_code", "ExpiredToken"), expired0);
    env_close(&e);
    cred_do("__cred__/config?ttl=900");
    clean_env();
}

/* A refresh that fails keeps the current keys until they expire, and no
 * request is signed with expired ones; once the source is back, new keys. */
static void test_refresh_failure(void **state)
{
    (void)state;
    clean_env();
    env_imds();
    cred_do("__cred__/config?ttl=8&fail=0&down=0");
    long expired0 = proxy_num("by_code", "ExpiredToken");
    struct env e;
    cfg_init(&e, "refreshfail");
    e.cfg.storage_credential_refresh_s = 4;
    env_open(&e);
    log_reset();
    /* The Expiration the server answers has whole seconds, as IMDS's does:
     * keys fetched late in a second lose up to 1 s of their 8 and would stop
     * signing before t0 + 6.5 (failed one run in four or five). Start just
     * after a second begins: they then last at least 7.7 s. */
    for (int i = 0; i < 60; i++) {
        struct timespec w;
        clock_gettime(CLOCK_REALTIME, &w);
        if (w.tv_nsec < 150000000L)
            break;
        sleep_s(0.02);
    }
    double t0 = now_s();
    assert_int_equal(put_get(e.st, "a"), 0); /* keys valid until about t0 + 8 */
    cred_do("__cred__/config?down=1");
    /* refresh from about t0 + 4 fails; the old keys sign until about t0 + 7 */
    while (now_s() < t0 + 6.5) {
        assert_int_equal(put_get(e.st, "a"), 0);
        sleep_s(0.1);
    }
    assert_true(log_contains("signing with the current ones"));
    while (now_s() < t0 + 8.5)
        sleep_s(0.1);
    /* expired, source down: refused here, never sent */
    char err[600] = "";
    int rc = e.st->ops->put(e.st, "a", "x", 1, 0, NULL);
    assert_int_equal(rc, -EACCES);
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EACCES);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "expired and fetching new ones failed"));
    assert_int_equal(proxy_num("by_code", "ExpiredToken"), expired0);
    /* back: the next request after the backoff gets new keys */
    cred_do("__cred__/config?down=0");
    double deadline = now_s() + 40;
    while ((rc = put_get(e.st, "a")) != 0 && now_s() < deadline)
        sleep_s(0.2);
    assert_int_equal(rc, 0);
    assert_int_equal(proxy_num("by_code", "ExpiredToken"), expired0);
    env_close(&e);
    cred_do("__cred__/config?ttl=900");
    clean_env();
}

/* The store calls the keys expired although our clock does not: new keys,
 * the request signed again, once. */
static void test_store_says_expired(void **state)
{
    (void)state;
    clean_env();
    env_container(getenv("CRED_ECS_TOKEN"));
    struct env e;
    cfg_init(&e, "storeexpired");
    env_open(&e);
    assert_int_equal(put_get(e.st, "a"), 0);
    char akid[64], q[160];
    last_akid("ecs", akid);
    assert_true(akid[0]);
    long expired0 = proxy_num("by_code", "ExpiredToken");
    long issued0 = issued("ecs");
    snprintf(q, sizeof(q), "__proxy__/tempcreds?akid=%s&secret=x&token=x&expires=1", akid);
    proxy_do(q); /* the proxy now calls those keys expired */
    assert_int_equal(put_get(e.st, "a"), 0);
    assert_int_equal(proxy_num("by_code", "ExpiredToken"), expired0 + 1);
    assert_int_equal(issued("ecs"), issued0 + 1);
    assert_int_equal(e.st->stats.retries, 0); /* signed again at once, not a retry */
    env_close(&e);
    clean_env();
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Nothing configured and no instance metadata: the first request fails
 * within about a second, saying what was tried. */
static void test_no_imds_is_fast(void **state)
{
    (void)state;
    clean_env();
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", closed_port());
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ep, 1);
    struct env e;
    cfg_init(&e, "noimds");
    env_open(&e); /* no network I/O at open */
    char err[700] = "";
    double t0 = now_s();
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EACCES);
    double dt = now_s() - t0;
    fprintf(stderr, "  check said after %.2f s: %s\n", dt, err);
    assert_true(dt < 1.5);
    assert_non_null(strstr(err, "no credentials found"));
    assert_non_null(strstr(err, "AWS_ACCESS_KEY_ID"));
    assert_non_null(strstr(err, "instance metadata"));
    env_close(&e);
    /* an address that takes the connection and never answers: the timeout */
    cred_do("__cred__/config?imds=hang");
    env_imds();
    cfg_init(&e, "hangimds");
    env_open(&e);
    t0 = now_s();
    assert_int_equal(e.st->ops->put(e.st, "x", "v", 1, 0, NULL), -EACCES);
    dt = now_s() - t0;
    fprintf(stderr, "  a hanging metadata service: refused after %.2f s\n", dt);
    assert_true(dt < 2.5);
    env_close(&e);
    cred_do("__cred__/config?imds=ok");
    /* metadata off and nothing else: an error at open, listing the sources */
    clean_env();
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    cfg_init(&e, "nocreds");
    assert_int_equal(env_try_open(&e, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no credentials"));
    clean_env();
}

/* After each test, pass or fail: the credential server back to its
 * defaults and no AWS_* variables, so one failure does not fail the next. */
static int reset_sources(void **state)
{
    (void)state;
    cred_do("__cred__/config?ttl=900&fail=0&down=0&imds=ok");
    clean_env();
    return 0;
}

int main(void)
{
    endpoint = getenv("S3_ENDPOINT");
    bucket = getenv("S3_BUCKET");
    cred_ep = getenv("CRED_ENDPOINT");
    if (!endpoint || !bucket || !cred_ep) {
        fprintf(stderr, "S3_ENDPOINT / S3_BUCKET / CRED_ENDPOINT not set: run through "
                        "tests/s3/s3env.py --credserver\n");
        return 77;
    }
    snprintf(run_id, sizeof(run_id), "creds-%ld-%ld", (long)getpid(), (long)time(NULL));
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/glidefs-creds-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_static_sources, reset_sources),
        cmocka_unit_test_teardown(test_chain_order, reset_sources),
        cmocka_unit_test_teardown(test_imds_volume, reset_sources),
        cmocka_unit_test_teardown(test_container_volume, reset_sources),
        cmocka_unit_test_teardown(test_web_identity_volume, reset_sources),
        cmocka_unit_test_teardown(test_store_says_expired, reset_sources),
        cmocka_unit_test_teardown(test_no_imds_is_fast, reset_sources),
        cmocka_unit_test_teardown(test_refresh_ahead, reset_sources),
        cmocka_unit_test_teardown(test_refresh_failure, reset_sources),
    };
    int rc = cmocka_run_group_tests_name("s3_creds", tests, NULL, NULL);
    free(log_text);
    curl_global_cleanup();
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (!getenv("GLIDEFS_TEST_KEEP") && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return rc;
}
