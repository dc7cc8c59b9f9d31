/*
 * test_objstore_s3.c — the s3:// backend end to end, against s3rver behind
 * the strict proxy (tests/s3/s3proxy.py), started by tests/s3/s3env.py which
 * passes S3_ENDPOINT (the proxy), S3_BUCKET and S3_CHECK_FILE.
 *
 * Every op, parallel use, awkward keys, wrong credentials, a missing bucket,
 * an unreachable endpoint, injected faults (seeded 500/503/SlowDown on 30% of
 * requests; resets, truncated bodies, stalls past the timeout), and the proxy
 * killed mid-operation then restarted. Each test uses its own key prefix.
 * Conditional writes as real stores answer them (Ceph RGW's If-Match
 * without quotes, 500 to the loser of a race) and batched deletes, with the
 * fallback for a store without DeleteObjects. tests/rgw/rgwenv.py runs it
 * against Ceph RGW too (S3_STORE=rgw), through the proxy in passthrough mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "config.h"
#include "log.h"
#include "objstore.h"
#include "objstore_s3.h"
#include "sigv4.h"

static const char *endpoint, *bucket;
static char run_id[64];

/* ---- log capture: every message is kept to check no secret leaks ---- */

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
    if (level <= GLIDEFS_LOG_WARN)
        fprintf(stderr, "  log[%d]: %s\n", level, msg);
}

static int log_contains(const char *s)
{
    pthread_mutex_lock(&log_lock);
    int r = log_text && strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return r;
}

static struct gfs_log test_log = {capture_log, NULL, GLIDEFS_LOG_INFO};

/* ---- store setup ---- */

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
    e->cfg.storage_access_key_id = (char *)"S3RVER";
    e->cfg.storage_secret_access_key = (char *)"S3RVER";
    e->cfg.storage_tls_verify = 1;
    e->cfg.storage_max_connections = 8;
    e->cfg.storage_timeout_ms = 5000;
    e->cfg.storage_max_retries = 8;
}

static void env_open(struct env *e)
{
    char err[256] = "";
    int rc = gfs_objstore_s3_open(&e->cfg, &test_log, &e->st, err, sizeof(err));
    if (rc != 0)
        fail_msg("open %s: %d %s", e->url, rc, err);
}

static void env_close(struct env *e)
{
    gfs_objstore_close(e->st);
    e->st = NULL;
}

/* ---- proxy control ---- */

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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* GET <proxy>/__proxy__/<what>; polls (the proxy may be restarting) until it
 * answers 200 or 15 s pass. Returns the body (malloc'd). */
static char *proxy_ctl(const char *what)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/__proxy__/%s", endpoint, what);
    double deadline = now_s() + 15;
    long delay_ms = 20;
    for (;;) {
        struct buf b = {0};
        CURL *h = curl_easy_init();
        assert_non_null(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        if (cc == CURLE_OK && status == 200)
            return b.p ? b.p : strdup("");
        free(b.p);
        if (now_s() > deadline)
            fail_msg("proxy control %s: curl %d, HTTP %ld", what, cc, status);
        struct timespec ts = {0, delay_ms * 1000000L};
        nanosleep(&ts, NULL);
        if (delay_ms < 200)
            delay_ms *= 2;
    }
}

static void proxy_do(const char *what) { free(proxy_ctl(what)); }

static long proxy_stat(const char *name)
{
    char *s = proxy_ctl("stats");
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": ", name);
    char *p = strstr(s, pat);
    long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
    free(s);
    return v;
}

/* ---- helpers ---- */

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
}

static void md5hex(const void *p, size_t n, char out[33])
{
    uint8_t m[16];
    assert_int_equal(gfs_md5(p, n, m), 0);
    gfs_hex_encode(m, 16, out);
}

struct listing {
    char *keys[2048];
    uint64_t sizes[2048];
    size_t n;
    size_t stop_after; /* 0: never stop */
};

static int on_key(void *arg, const char *key, uint64_t size)
{
    struct listing *l = arg;
    if (l->n >= 2048)
        return -ENOSPC;
    l->keys[l->n] = strdup(key);
    l->sizes[l->n++] = size;
    if (l->stop_after && l->n == l->stop_after)
        return 42;
    return 0;
}

static void listing_clear(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    l->n = 0;
}

static int on_rgw(void)
{
    const char *s = getenv("S3_STORE");
    return s && strcmp(s, "rgw") == 0;
}

/* ---- tests ---- */

static void test_every_op(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "ops");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    assert_true(gfs_objstore_is_s3(st));
    char err[256];
    assert_int_equal(gfs_s3_check(st, err, sizeof(err)), 0);

    enum { N = 10000 };
    static uint8_t data[N], back[N];
    fill(data, N, 1);
    assert_int_equal(st->ops->put(st, "a/one", data, N, 0, NULL), 0);

    struct gfs_obj_info info;
    char md5[33];
    md5hex(data, N, md5);
    assert_int_equal(st->ops->head(st, "a/one", &info), 0);
    assert_int_equal(info.size, N);
    assert_string_equal(info.etag, md5);

    void *out = NULL;
    size_t outlen = 0;
    assert_int_equal(st->ops->get(st, "a/one", N, &out, &outlen, &info), 0);
    assert_int_equal(outlen, N);
    assert_memory_equal(out, data, N);
    assert_string_equal(info.etag, md5);
    free(out);
    assert_int_equal(st->ops->get(st, "a/one", N - 1, &out, &outlen, NULL), -EFBIG);
    assert_null(out);

    size_t got = 0;
    assert_int_equal(st->ops->get_range(st, "a/one", 100, 50, back, &got), 0);
    assert_int_equal(got, 50);
    assert_memory_equal(back, data + 100, 50);
    assert_int_equal(st->ops->get_range(st, "a/one", N - 10, 100, back, &got), 0);
    assert_int_equal(got, 10);
    assert_memory_equal(back, data + N - 10, 10);
    assert_int_equal(st->ops->get_range(st, "a/one", 0, N, back, &got), 0);
    assert_int_equal(got, N);
    assert_memory_equal(back, data, N);
    assert_int_equal(st->ops->get_range(st, "a/one", N, 10, back, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(st->ops->get_range(st, "a/one", 5 * N, 10, back, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(st->ops->get_range(st, "a/one", 0, 0, back, &got), -EINVAL);

    /* a server that ignores Range and answers 200 with the whole object */
    proxy_do("config?ignore_range=1");
    memset(back, 0, N);
    assert_int_equal(st->ops->get_range(st, "a/one", 100, 50, back, &got), 0);
    assert_int_equal(got, 50);
    assert_memory_equal(back, data + 100, 50);
    assert_int_equal(st->ops->get_range(st, "a/one", N - 10, 100, back, &got), 0);
    assert_int_equal(got, 10);
    assert_memory_equal(back, data + N - 10, 10);
    assert_int_equal(st->ops->get_range(st, "a/one", N + 5, 10, back, &got), 0);
    assert_int_equal(got, 0);
    proxy_do("config?ignore_range=0");

    /* empty object */
    assert_int_equal(st->ops->put(st, "a/empty", NULL, 0, 0, NULL), 0);
    assert_int_equal(st->ops->head(st, "a/empty", &info), 0);
    assert_int_equal(info.size, 0);
    assert_int_equal(st->ops->get(st, "a/empty", 10, &out, &outlen, NULL), 0);
    assert_int_equal(outlen, 0);
    free(out);
    assert_int_equal(st->ops->get_range(st, "a/empty", 0, 10, back, &got), 0);
    assert_int_equal(got, 0);

    /* missing objects */
    assert_int_equal(st->ops->head(st, "a/missing", &info), -ENOENT);
    assert_int_equal(st->ops->get(st, "a/missing", 10, &out, &outlen, NULL), -ENOENT);
    assert_int_equal(st->ops->get_range(st, "a/missing", 0, 10, back, &got), -ENOENT);
    assert_int_equal(st->ops->del(st, "a/missing"), 0);

    /* conditional PUT (the proxy implements it; s3rver alone would not) */
    assert_int_equal(st->ops->put(st, "c/x", "v1", 2, GFS_PUT_IF_NONE_MATCH, NULL), 0);
    assert_int_equal(st->ops->put(st, "c/x", "v2", 2, GFS_PUT_IF_NONE_MATCH, NULL), -EEXIST);
    assert_int_equal(st->ops->head(st, "c/x", &info), 0);
    char etag1[72];
    snprintf(etag1, sizeof(etag1), "%s", info.etag);
    assert_int_equal(st->ops->put(st, "c/x", "v3", 2, 0, etag1), 0);
    assert_int_equal(st->ops->put(st, "c/x", "v4", 2, 0, etag1), -ECANCELED);
    assert_int_equal(st->ops->put(st, "c/nope", "v", 1, 0, etag1), -ECANCELED);
    assert_int_equal(st->ops->get(st, "c/x", 10, &out, &outlen, NULL), 0);
    assert_int_equal(outlen, 2);
    assert_memory_equal(out, "v3", 2);
    free(out);
    /* RFC 7232 If-Match (quoted) worked: no fallback (RGW needs it) */
    assert_int_equal(gfs_s3_if_match_bare(st), on_rgw());

    /* bad arguments never reach the network */
    assert_int_equal(st->ops->put(st, "/abs", "v", 1, 0, NULL), -EINVAL);
    assert_int_equal(st->ops->put(st, "", "v", 1, 0, NULL), -EINVAL);
    assert_int_equal(st->ops->put(st, "ctl\nkey", "v", 1, 0, NULL), -EINVAL);
    assert_int_equal(st->ops->put(st, "bad\xff", "v", 1, 0, NULL), -EINVAL);
    assert_int_equal(st->ops->put(st, "k", "v", 1, GFS_PUT_IF_NONE_MATCH, "etag"), -EINVAL);

    /* listing, with pages of 7 forced by the proxy: continuation tokens */
    proxy_do("config?max_keys=7");
    for (int i = 0; i < 25; i++) {
        char k[32];
        snprintf(k, sizeof(k), "l/k%03d", i);
        assert_int_equal(st->ops->put(st, k, data, (size_t)i, 0, NULL), 0);
    }
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "l/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 25);
    for (size_t i = 0; i < l.n; i++) {
        char k[32];
        snprintf(k, sizeof(k), "l/k%03zu", i);
        assert_string_equal(l.keys[i], k);
        assert_int_equal(l.sizes[i], i);
    }
    listing_clear(&l);
    assert_int_equal(st->ops->list(st, "l/", "l/k010", on_key, &l), 0);
    assert_int_equal(l.n, 14);
    assert_string_equal(l.keys[0], "l/k011");
    listing_clear(&l);
    l.stop_after = 9; /* across a page boundary */
    assert_int_equal(st->ops->list(st, "l/", NULL, on_key, &l), 42);
    assert_int_equal(l.n, 9);
    listing_clear(&l);
    l.stop_after = 0;
    assert_int_equal(st->ops->list(st, "nothing/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    /* the whole store: a/empty a/one c/x l/... */
    assert_int_equal(st->ops->list(st, "", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 28);
    assert_string_equal(l.keys[0], "a/empty");
    listing_clear(&l);
    proxy_do("config?max_keys=0");

    /* delete, single and batched */
    assert_int_equal(st->ops->del(st, "a/one"), 0);
    assert_int_equal(st->ops->head(st, "a/one", &info), -ENOENT);
    const char *batch[26];
    char names[26][32];
    for (int i = 0; i < 25; i++) {
        snprintf(names[i], sizeof(names[i]), "l/k%03d", i);
        batch[i] = names[i];
    }
    batch[25] = "l/never-existed";
    size_t failed = 99;
    assert_int_equal(gfs_s3_delete_batch(st, batch, 26, &failed), 0);
    assert_int_equal(failed, 0);
    assert_int_equal(st->ops->list(st, "l/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    const char *badbatch[] = {"ok", "/bad"};
    assert_int_equal(gfs_s3_delete_batch(st, badbatch, 2, NULL), -EINVAL);

    assert_true(st->stats.puts >= 29);
    assert_true(st->stats.gets >= 10);
    assert_int_equal(st->stats.retries, 0);
    env_close(&e);
}

/* If-Match as Ceph RGW 16 compares it (the stored ETag without its quotes:
 * the RFC form never matches; the proxy's if_match=rgw mode does the same in
 * front of s3rver), and a 500 answered to a conditional PUT (RGW's answer
 * to the loser of a race) read as what it is. */
static void test_conditional_quirks(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "quirks");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    if (!on_rgw())
        proxy_do("config?if_match=rgw");
    struct gfs_obj_info info;
    void *out = NULL;
    size_t outlen = 0;

    assert_int_equal(st->ops->put(st, "q/x", "v1", 2, GFS_PUT_IF_NONE_MATCH, NULL), 0);
    assert_int_equal(st->ops->put(st, "q/x", "v2", 2, GFS_PUT_IF_NONE_MATCH, NULL), -EEXIST);
    assert_int_equal(st->ops->head(st, "q/x", &info), 0);
    char etag[72];
    snprintf(etag, sizeof(etag), "%s", info.etag);
    assert_int_equal(gfs_s3_if_match_bare(st), 0);
    /* refused quoted although it matches: the bare ETag, remembered */
    char etag_out[72] = "";
    assert_int_equal(st->ops->put_etag(st, "q/x", "v2", 2, 0, etag, etag_out), 0);
    assert_int_equal(gfs_s3_if_match_bare(st), 1);
    assert_true(log_contains("compares If-Match with the stored ETag without its quotes"));
    assert_int_equal(st->ops->head(st, "q/x", &info), 0);
    assert_string_equal(info.etag, etag_out);
    uint64_t puts = st->stats.puts;
    assert_int_equal(st->ops->put_etag(st, "q/x", "v3", 2, 0, info.etag, etag_out), 0);
    assert_int_equal(st->stats.puts, puts + 1); /* bare at once now */
    assert_int_equal(st->ops->put(st, "q/x", "v4", 2, 0, info.etag), -ECANCELED); /* stale */
    assert_int_equal(st->ops->put(st, "q/none", "v", 1, 0, etag_out), -ECANCELED);
    assert_int_equal(st->ops->get(st, "q/x", 10, &out, &outlen, NULL), 0);
    assert_int_equal(outlen, 2);
    assert_memory_equal(out, "v3", 2);
    free(out);

    /* a 500 after someone else's write: the race is lost, no blind retries */
    assert_int_equal(st->ops->head(st, "q/x", &info), 0);
    snprintf(etag, sizeof(etag), "%s", info.etag);
    assert_int_equal(st->ops->put(st, "q/x", "other", 5, 0, NULL), 0);
    uint64_t retries = st->stats.retries;
    proxy_do("faults?rate=0&next=500");
    assert_int_equal(st->ops->put(st, "q/x", "v5", 2, 0, etag), -ECANCELED);
    assert_int_equal(st->stats.retries, retries);
    /* a 500 while the condition still holds: a failure, tried again */
    assert_int_equal(st->ops->head(st, "q/x", &info), 0);
    proxy_do("faults?rate=0&next=500");
    assert_int_equal(st->ops->put(st, "q/x", "v6", 2, 0, info.etag), 0);
    assert_int_equal(st->stats.retries, retries + 1);
    /* If-None-Match answered 500 on a key that exists: it exists */
    proxy_do("faults?rate=0&next=500");
    assert_int_equal(st->ops->put(st, "q/x", "v7", 2, GFS_PUT_IF_NONE_MATCH, NULL), -EEXIST);
    assert_int_equal(st->ops->get(st, "q/x", 10, &out, &outlen, NULL), 0);
    assert_int_equal(outlen, 2);
    assert_memory_equal(out, "v6", 2);
    free(out);
    proxy_do("faults?rate=0&next=");
    if (!on_rgw())
        proxy_do("config?if_match=");
    env_close(&e);
}

/* Deletes in batches: 1,200 keys (most never existed) are two DeleteObjects
 * requests; a store that answers DeleteObjects 501 gets single DELETEs, and
 * that is remembered. Requests counted by the client and by the proxy. */
static void test_delete_many(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "delmany");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    enum { N = 1200 };
    static char names[N][32];
    const char *keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), i < 5 ? "d/k%04d" : "d/none%04d", i);
        keys[i] = names[i];
        if (i < 5)
            assert_int_equal(st->ops->put(st, keys[i], "x", 1, 0, NULL), 0);
    }
    long post0 = proxy_stat("POST"), del0 = proxy_stat("DELETE");
    uint64_t req0 = st->stats.delete_requests;
    size_t failed = 99;
    assert_int_equal(gfs_objstore_del_many(st, keys, N, &failed), 0);
    assert_int_equal(failed, 0);
    assert_int_equal(st->stats.delete_requests - req0, 2);
    assert_int_equal(proxy_stat("POST") - (post0 > 0 ? post0 : 0), 2);
    assert_int_equal(proxy_stat("DELETE"), del0);
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "d/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);

    /* no DeleteObjects here: one DELETE per key, found out once */
    proxy_do("config?no_batch=1");
    for (int i = 0; i < 3; i++)
        assert_int_equal(st->ops->put(st, keys[i], "y", 1, 0, NULL), 0);
    post0 = proxy_stat("POST");
    del0 = proxy_stat("DELETE");
    del0 = del0 > 0 ? del0 : 0;
    assert_int_equal(gfs_objstore_del_many(st, keys, 3, &failed), 0);
    assert_int_equal(proxy_stat("POST") - post0, 1);
    assert_int_equal(proxy_stat("DELETE") - del0, 3);
    assert_true(log_contains("does not implement DeleteObjects"));
    for (int i = 0; i < 2; i++)
        assert_int_equal(st->ops->put(st, keys[i], "z", 1, 0, NULL), 0);
    assert_int_equal(gfs_objstore_del_many(st, keys, 2, &failed), 0);
    assert_int_equal(proxy_stat("POST") - post0, 1); /* not asked again */
    assert_int_equal(proxy_stat("DELETE") - del0, 5);
    assert_int_equal(st->ops->list(st, "d/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    proxy_do("config?no_batch=0");
    env_close(&e);
}

/* ---- many threads, one store ---- */

struct worker {
    struct gfs_objstore *st;
    int id;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    enum { OBJ = 64 * 1024, NOBJ = 12 };
    uint8_t *data = malloc(OBJ), *back = malloc(OBJ);
    for (int i = 0; i < NOBJ && data && back; i++) {
        char key[64];
        snprintf(key, sizeof(key), "w%d/obj%02d", w->id, i);
        fill(data, OBJ, (uint32_t)(w->id * 100 + i));
        if (w->st->ops->put(w->st, key, data, OBJ, 0, NULL) != 0) {
            w->failures++;
            continue;
        }
        for (int r = 0; r < 4; r++) {
            uint64_t off = (uint64_t)((r * 7919 + i * 104729) % (OBJ - 1000));
            size_t got = 0;
            if (w->st->ops->get_range(w->st, key, off, 1000, back, &got) != 0 || got != 1000 ||
                memcmp(back, data + off, 1000) != 0)
                w->failures++;
        }
    }
    if (!data || !back)
        w->failures++;
    free(data);
    free(back);
    return NULL;
}

static void test_parallel(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "parallel");
    e.cfg.storage_max_connections = 4; /* fewer handles than threads: they queue */
    env_open(&e);
    enum { T = 8 };
    pthread_t th[T];
    struct worker w[T];
    double t0 = now_s();
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){e.st, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    fprintf(stderr, "  parallel: %d puts + %d ranged gets in %.2f s\n", T * 12, T * 48,
            now_s() - t0);
    assert_int_equal(e.st->stats.puts, T * 12);
    assert_int_equal(e.st->stats.gets, T * 48);
    env_close(&e);
}

/* ---- keys that need encoding ---- */

static void test_awkward_keys(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "keys");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    static const char *const keys[] = {
        "k/with space",
        "k/plus+sign",
        "k/equals=sign",
        "k/percent%25and%",
        "k/unicode-\xc3\xa9\xe2\x82\xac\xe6\x97\xa5\xe6\x9c\xac",
        "k/amp&semi;colon:at@",
        "k/quest?hash#",
        "k/tilde~star*bang!quote'paren()",
        "k/dollar$comma,bracket[]",
        /* not "a/./b" or "a/../b": S3 keeps such keys (and curl is told not
         * to squash them), but s3rver maps keys to file paths and folds them */
    };
    enum { NK = sizeof(keys) / sizeof(keys[0]) };
    for (size_t i = 0; i < NK; i++) {
        size_t len = strlen(keys[i]);
        if (st->ops->put(st, keys[i], keys[i], len, 0, NULL) != 0)
            fail_msg("put %s", keys[i]);
        void *out = NULL;
        size_t outlen = 0;
        assert_int_equal(st->ops->get(st, keys[i], 4096, &out, &outlen, NULL), 0);
        assert_int_equal(outlen, len);
        assert_memory_equal(out, keys[i], len);
        free(out);
        struct gfs_obj_info info;
        assert_int_equal(st->ops->head(st, keys[i], &info), 0);
        assert_int_equal(info.size, len);
    }
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "k/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, NK);
    for (size_t i = 0; i < NK; i++) {
        int found = 0;
        for (size_t j = 0; j < l.n; j++)
            found += strcmp(l.keys[j], keys[i]) == 0;
        if (found != 1)
            fail_msg("key %s listed %d times", keys[i], found);
    }
    for (size_t j = 1; j < l.n; j++)
        assert_true(strcmp(l.keys[j - 1], l.keys[j]) < 0);
    listing_clear(&l);
    /* start-after with a key that needs encoding */
    assert_int_equal(st->ops->list(st, "k/", "k/plus+sign", on_key, &l), 0);
    for (size_t j = 0; j < l.n; j++)
        assert_true(strcmp(l.keys[j], "k/plus+sign") > 0);
    listing_clear(&l);
    for (size_t i = 0; i < NK; i++)
        assert_int_equal(st->ops->del(st, keys[i]), 0);
    assert_int_equal(st->ops->list(st, "k/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    env_close(&e);
}

/* ---- credentials, bucket, endpoint ---- */

#define LEAKY_SECRET "wrong-SECRET-must-not-leak-7f3a"

static void test_wrong_secret(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "badsecret");
    e.cfg.storage_secret_access_key = (char *)LEAKY_SECRET;
    env_open(&e);
    struct gfs_objstore *st = e.st;
    char err[512] = "";
    assert_int_equal(gfs_s3_check(st, err, sizeof(err)), -EACCES);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "SignatureDoesNotMatch"));
    assert_null(strstr(err, LEAKY_SECRET));
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "", NULL, on_key, &l), -EACCES);
    assert_int_equal(st->ops->put(st, "x", "v", 1, 0, NULL), -EACCES);
    void *out = NULL;
    size_t outlen;
    assert_int_equal(st->ops->get(st, "x", 10, &out, &outlen, NULL), -EACCES);
    assert_int_equal(st->ops->del(st, "x"), -EACCES);
    assert_int_equal(st->stats.retries, 0); /* 403 fails fast */
    assert_true(log_contains("SignatureDoesNotMatch"));
    assert_false(log_contains(LEAKY_SECRET));
    env_close(&e);

    cfg_init(&e, "badkey");
    e.cfg.storage_access_key_id = (char *)"AKIDNOTKNOWN";
    env_open(&e);
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EACCES);
    assert_non_null(strstr(err, "InvalidAccessKeyId"));
    assert_int_equal(e.st->ops->put(e.st, "x", "v", 1, 0, NULL), -EACCES);
    env_close(&e);
}

static void test_missing_bucket(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "nobucket");
    snprintf(e.url, sizeof(e.url), "s3://no-such-bucket-%s/p", run_id);
    env_open(&e);
    char err[512] = "";
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -ENOENT);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "NoSuchBucket"));
    assert_non_null(strstr(err, "does not exist"));
    struct listing l = {0};
    assert_int_equal(e.st->ops->list(e.st, "", NULL, on_key, &l), -ENOENT);
    assert_int_equal(e.st->ops->put(e.st, "x", "v", 1, 0, NULL), -ENOENT);
    assert_int_equal(e.st->stats.retries, 0);
    env_close(&e);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd); /* nothing listens there now */
    return ntohs(a.sin_port);
}

static void test_unreachable(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "unreachable");
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", free_port());
    e.cfg.storage_endpoint = ep;
    e.cfg.storage_max_retries = 3;
    env_open(&e);
    char err[512] = "";
    double t0 = now_s();
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EIO);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "cannot reach"));
    assert_true(now_s() - t0 < 5);
    assert_int_equal(e.st->ops->put(e.st, "x", "v", 1, 0, NULL), -EIO);
    assert_int_equal(e.st->stats.retries, 2 + 3); /* check: 2 retries, put: 3 */
    env_close(&e);
}

static void test_open_errors(void **state)
{
    (void)state;
    static const char *const bad_urls[] = {
        "s3://", "s3://ab", "s3://bucket/a//b", "s3://bucket/../x", "s3://bucket/./x",
        "file:///x", "s3://bu cket/x", "s3://-bucket/x", "s3://bucket/ctl\x01x",
    };
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        struct env e;
        cfg_init(&e, "x");
        snprintf(e.url, sizeof(e.url), "%s", bad_urls[i]);
        char err[256] = "";
        struct gfs_objstore *st = (struct gfs_objstore *)1;
        int rc = gfs_objstore_s3_open(&e.cfg, &test_log, &st, err, sizeof(err));
        if (rc != -EINVAL)
            fail_msg("url %s: rc %d", bad_urls[i], rc);
        assert_null(st);
        assert_true(strlen(err) > 0);
    }
    static const char *const bad_endpoints[] = {
        "ftp://127.0.0.1", "http://user:" LEAKY_SECRET "@127.0.0.1:1", "http://host/path",
        "http://", "127.0.0.1:9000", "http://host?x=1",
    };
    for (size_t i = 0; i < sizeof(bad_endpoints) / sizeof(bad_endpoints[0]); i++) {
        struct env e;
        cfg_init(&e, "x");
        e.cfg.storage_endpoint = (char *)bad_endpoints[i];
        char err[256] = "";
        struct gfs_objstore *st = NULL;
        int rc = gfs_objstore_s3_open(&e.cfg, &test_log, &st, err, sizeof(err));
        if (rc != -EINVAL)
            fail_msg("endpoint %s: rc %d", bad_endpoints[i], rc);
        assert_null(strstr(err, LEAKY_SECRET));
    }
    /* no credentials anywhere (the whole chain: tests/s3/test_s3_creds.c) */
    struct env e;
    cfg_init(&e, "x");
    e.cfg.storage_access_key_id = NULL;
    e.cfg.storage_secret_access_key = NULL;
    static const char *const vars[] = {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", "/nonexistent-glidefs-test-home", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    char err[1024] = "";
    struct gfs_objstore *st = NULL;
    assert_int_equal(gfs_objstore_s3_open(&e.cfg, &test_log, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "AWS_ACCESS_KEY_ID"));
    unsetenv("AWS_EC2_METADATA_DISABLED");
    if (home)
        setenv("HOME", home, 1);
    free(home);
    /* bad region */
    cfg_init(&e, "x");
    e.cfg.storage_region = (char *)"us-east-1/../x";
    assert_int_equal(gfs_objstore_s3_open(&e.cfg, &test_log, &st, err, sizeof(err)), -EINVAL);
    /* no endpoint: AWS virtual-hosted; opening does no network I/O */
    cfg_init(&e, "x");
    e.cfg.storage_endpoint = NULL;
    assert_int_equal(gfs_objstore_s3_open(&e.cfg, &test_log, &st, err, sizeof(err)), 0);
    assert_true(log_contains("glidefs-test.s3.us-east-1.amazonaws.com"));
    gfs_objstore_close(st);
}

/* Credentials from the environment when the config has none. */
static void test_env_credentials(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "envcreds");
    e.cfg.storage_access_key_id = NULL;
    e.cfg.storage_secret_access_key = NULL;
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    env_open(&e);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    char err[256];
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), 0);
    assert_int_equal(e.st->ops->put(e.st, "x", "v", 1, 0, NULL), 0);
    env_close(&e);
}

/* ---- faults ---- */

/* The proxy answers 500 / 503 ServiceUnavailable / 503 SlowDown to 30% of the
 * requests (seeded schedule): every op still succeeds, and each injected
 * fault cost exactly one retry. */
static void test_faults_5xx(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "faults5xx");
    e.cfg.storage_max_retries = 10;
    env_open(&e);
    struct gfs_objstore *st = e.st;
    proxy_do("faults?rate=0&next=");
    long injected0 = proxy_stat("injected");
    proxy_do("config?max_keys=5");
    proxy_do("faults?rate=0.3&kinds=500,503,slowdown&seed=42");
    enum { N = 16, SZ = 16 * 1024 };
    static uint8_t data[SZ], back[SZ];
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "f/%02d", i);
        fill(data, SZ, (uint32_t)i);
        assert_int_equal(st->ops->put(st, key, data, SZ, 0, NULL), 0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "f/%02d", i);
        fill(data, SZ, (uint32_t)i);
        void *out = NULL;
        size_t outlen = 0, got = 0;
        assert_int_equal(st->ops->get(st, key, SZ, &out, &outlen, NULL), 0);
        assert_int_equal(outlen, SZ);
        assert_memory_equal(out, data, SZ);
        free(out);
        assert_int_equal(st->ops->get_range(st, key, 1000, 3000, back, &got), 0);
        assert_int_equal(got, 3000);
        assert_memory_equal(back, data + 1000, 3000);
        struct gfs_obj_info info;
        assert_int_equal(st->ops->head(st, key, &info), 0);
        assert_int_equal(info.size, SZ);
    }
    assert_int_equal(st->ops->put(st, "f/cond", "x", 1, GFS_PUT_IF_NONE_MATCH, NULL), 0);
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "f/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, N + 1);
    listing_clear(&l);
    for (int i = 0; i < N / 2; i++) {
        snprintf(key, sizeof(key), "f/%02d", i);
        assert_int_equal(st->ops->del(st, key), 0);
    }
    const char *rest[N / 2 + 1];
    char names[N / 2][32];
    for (int i = 0; i < N / 2; i++) {
        snprintf(names[i], sizeof(names[i]), "f/%02d", N / 2 + i);
        rest[i] = names[i];
    }
    rest[N / 2] = "f/cond";
    assert_int_equal(gfs_s3_delete_batch(st, rest, N / 2 + 1, NULL), 0);
    assert_int_equal(st->ops->list(st, "f/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    proxy_do("faults?rate=0");
    proxy_do("config?max_keys=0");
    long injected = proxy_stat("injected") - injected0;
    fprintf(stderr, "  faults: %ld injected, %" PRIu64 " retries, %" PRIu64 " requests' ops\n",
            injected, st->stats.retries,
            st->stats.puts + st->stats.gets + st->stats.heads + st->stats.lists +
                st->stats.deletes);
    assert_true(injected >= 10);
    assert_int_equal((long)st->stats.retries, injected);
    assert_true(log_contains("SlowDown"));
    env_close(&e);
}

/* Faults on the wire, each on the next request, deterministically. */
static void test_faults_wire(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "faultswire");
    e.cfg.storage_timeout_ms = 1500;
    e.cfg.storage_max_retries = 6;
    env_open(&e);
    struct gfs_objstore *st = e.st;
    enum { SZ = 200 * 1024 };
    static uint8_t data[SZ], back[SZ];
    fill(data, SZ, 77);

    /* PUT lands, the answer is reset: retried; If-None-Match then sees our
     * own object (412), and the backend recognises it by its MD5 */
    proxy_do("faults?rate=0&next=reset");
    assert_int_equal(st->ops->put(st, "w/cond", data, SZ, GFS_PUT_IF_NONE_MATCH, NULL), 0);
    assert_true(st->stats.retries >= 1);
    assert_int_equal(st->ops->put(st, "w/cond", data, SZ, GFS_PUT_IF_NONE_MATCH, NULL),
                     -EEXIST);

    /* truncated and reset bodies */
    uint64_t r0 = st->stats.retries;
    proxy_do("faults?next=truncate");
    void *out = NULL;
    size_t outlen = 0, got = 0;
    assert_int_equal(st->ops->get(st, "w/cond", SZ, &out, &outlen, NULL), 0);
    assert_int_equal(outlen, SZ);
    assert_memory_equal(out, data, SZ);
    free(out);
    proxy_do("faults?next=reset");
    assert_int_equal(st->ops->get_range(st, "w/cond", 4096, 100000, back, &got), 0);
    assert_int_equal(got, 100000);
    assert_memory_equal(back, data + 4096, 100000);
    assert_int_equal(st->stats.retries, r0 + 2);

    /* the same PUT reset on a connection that served a request before:
     * libcurl itself sends it again on a new connection (one attempt for
     * us), and the store answers that copy 412 - our own object */
    struct gfs_obj_info winfo;
    assert_int_equal(st->ops->head(st, "w/cond", &winfo), 0);
    proxy_do("faults?rate=0&next=reset");
    assert_int_equal(st->ops->put(st, "w/cond2", data, SZ, GFS_PUT_IF_NONE_MATCH, NULL), 0);
    assert_int_equal(st->ops->put(st, "w/cond2", data, SZ, GFS_PUT_IF_NONE_MATCH, NULL),
                     -EEXIST);

    /* a stall longer than the timeout: the attempt is abandoned, not waited for */
    proxy_do("faults?next=stall&stall_ms=4000");
    double t0 = now_s();
    struct gfs_obj_info info;
    assert_int_equal(st->ops->head(st, "w/cond", &info), 0);
    double dt = now_s() - t0;
    fprintf(stderr, "  stall: HEAD done after %.2f s\n", dt);
    assert_true(dt >= 1.0 && dt < 3.9);
    assert_int_equal(info.size, SZ);

    /* three answers in a row fail: 500, 503, SlowDown, then success */
    r0 = st->stats.retries;
    proxy_do("faults?next=500,503,slowdown");
    assert_int_equal(st->ops->put(st, "w/three", "abc", 3, 0, NULL), 0);
    assert_int_equal(st->stats.retries, r0 + 3);

    proxy_do("faults?next=");
    env_close(&e);

    /* more faults than the retry budget (3): a clear -EIO after 4 attempts */
    cfg_init(&e, "faultswire");
    e.cfg.storage_max_retries = 3;
    env_open(&e);
    proxy_do("faults?next=503,503,503,503");
    assert_int_equal(e.st->ops->put(e.st, "w/never", "abc", 3, 0, NULL), -EIO);
    assert_true(log_contains("failed after 4 attempt(s)"));
    assert_int_equal(e.st->stats.retries, 3);
    assert_int_equal(e.st->stats.errors, 1);
    proxy_do("faults?next=");
    env_close(&e);
}

/* ---- the proxy itself must be strict, or the tests above prove nothing ---- */

struct raw_req {
    const char *method, *path, *query; /* path and query exactly as sent */
    const char *sign_path;             /* decoded path the signature covers */
    const struct gfs_sigv4_kv *sign_query;
    size_t nsign_query;
    const char *body;
    const char *payload_hash;          /* NULL: the real one */
    const char *content_md5;           /* NULL: none */
    time_t when;
    int tamper;                        /* flip the signature's last digit */
};

/* Send one hand-signed request to the proxy; returns the HTTP status and
 * copies the S3 error code (if any) into code. */
static long raw_request(const struct raw_req *r, char *code, size_t codelen)
{
    const char *host = endpoint + strlen("http://");
    char amz_date[17], hash[65];
    assert_int_equal(gfs_sigv4_amz_date(r->when ? r->when : time(NULL), amz_date), 0);
    const char *body = r->body ? r->body : "";
    assert_int_equal(gfs_sha256_hex(body, strlen(body), hash), 0);
    const char *ph = r->payload_hash ? r->payload_hash : hash;
    struct gfs_sigv4_kv h[4] = {
        {"Host", host}, {"x-amz-content-sha256", ph}, {"x-amz-date", amz_date},
        {"Content-MD5", r->content_md5},
    };
    size_t nh = r->content_md5 ? 4 : 3;
    struct gfs_sigv4_request sr = {
        .method = r->method, .path = r->sign_path, .query = r->sign_query,
        .nquery = r->nsign_query, .headers = h, .nheaders = nh, .payload_hash = ph,
    };
    struct gfs_sigv4_signer signer = {"S3RVER", "S3RVER", "us-east-1", "s3"};
    char *authz = NULL;
    assert_int_equal(gfs_sigv4_authorization(&signer, &sr, amz_date, &authz), 0);
    if (r->tamper) {
        char *last = authz + strlen(authz) - 1;
        *last = *last == '0' ? '1' : '0';
    }
    struct curl_slist *list = NULL;
    char line[512];
    for (size_t i = 0; i < nh; i++) {
        snprintf(line, sizeof(line), "%s: %s", h[i].name, h[i].value);
        list = curl_slist_append(list, line);
    }
    snprintf(line, sizeof(line), "Authorization: %s", authz);
    list = curl_slist_append(list, line);
    free(authz);
    char url[1024];
    snprintf(url, sizeof(url), "%s%s%s%s", endpoint, r->path, r->query ? "?" : "",
             r->query ? r->query : "");
    struct buf b = {0};
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(list);
    code[0] = '\0';
    char *p = b.p ? strstr(b.p, "<Code>") : NULL;
    if (p)
        snprintf(code, codelen, "%.*s", (int)strcspn(p + 6, "<"), p + 6);
    free(b.p);
    return status;
}

static void test_proxy_is_strict(void **state)
{
    (void)state;
    char path[256], code[64], md5b64[32];
    snprintf(path, sizeof(path), "/%s/%s/strict/obj", bucket, run_id);
    uint8_t md5[16];
    assert_int_equal(gfs_md5("data", 4, md5), 0);
    assert_int_equal(gfs_base64(md5, 16, md5b64, sizeof(md5b64)), 0);

    /* baseline: a correct request passes */
    struct raw_req ok = {.method = "PUT", .path = path, .sign_path = path, .body = "data",
                         .content_md5 = md5b64};
    assert_int_equal(raw_request(&ok, code, sizeof(code)), 200);

    struct raw_req r = ok;
    r.tamper = 1;
    assert_int_equal(raw_request(&r, code, sizeof(code)), 403);
    assert_string_equal(code, "SignatureDoesNotMatch");

    r = ok; /* signed and sent hash agree, but not with the body */
    r.payload_hash = GFS_SHA256_EMPTY_HEX;
    assert_int_equal(raw_request(&r, code, sizeof(code)), 400);
    assert_string_equal(code, "XAmzContentSHA256Mismatch");

    r = ok;
    r.content_md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
    assert_int_equal(raw_request(&r, code, sizeof(code)), 400);
    assert_string_equal(code, "BadDigest");

    r = ok;
    r.when = time(NULL) - 20 * 60;
    assert_int_equal(raw_request(&r, code, sizeof(code)), 403);
    assert_string_equal(code, "RequestTimeTooSkewed");

    /* signed for one key, sent for another */
    r = ok;
    char other[512];
    snprintf(other, sizeof(other), "%s2", path);
    r.sign_path = other;
    assert_int_equal(raw_request(&r, code, sizeof(code)), 403);
    assert_string_equal(code, "SignatureDoesNotMatch");

    /* a raw '+' in the query: s3rver would read a space, SigV4 a '+' */
    char bpath[128];
    snprintf(bpath, sizeof(bpath), "/%s", bucket);
    const struct gfs_sigv4_kv q[] = {{"list-type", "2"}, {"prefix", "a+b"}};
    struct raw_req l = {.method = "GET", .path = bpath, .sign_path = bpath,
                        .query = "list-type=2&prefix=a+b", .sign_query = q, .nsign_query = 2};
    assert_int_equal(raw_request(&l, code, sizeof(code)), 400);
    assert_string_equal(code, "InvalidURI");
    l.query = "list-type=2&prefix=a%2Bb";
    assert_int_equal(raw_request(&l, code, sizeof(code)), 200);
    /* a path with an unencoded character is refused the same way */
    snprintf(other, sizeof(other), "%s/%s/strict/a$b", bucket, run_id);
    char sent[600];
    snprintf(sent, sizeof(sent), "/%s", other);
    r = ok;
    r.path = r.sign_path = sent;
    assert_int_equal(raw_request(&r, code, sizeof(code)), 400);
    assert_string_equal(code, "InvalidURI");

    /* and DeleteObjects without Content-MD5 is refused, as by S3 */
    const struct gfs_sigv4_kv dq[] = {{"delete", ""}};
    struct raw_req d = {.method = "POST", .path = bpath, .sign_path = bpath,
                        .query = "delete=", .sign_query = dq, .nsign_query = 1,
                        .body = "<Delete><Object><Key>x</Key></Object></Delete>"};
    assert_int_equal(raw_request(&d, code, sizeof(code)), 400);
    assert_string_equal(code, "InvalidRequest");
    assert_true(proxy_stat("rejected") >= 7);
}

/* The proxy dies mid-answer (process exit) and comes back 0.5 s later. */
static void test_server_restart(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "restart");
    e.cfg.storage_max_retries = 12;
    env_open(&e);
    struct gfs_objstore *st = e.st;
    enum { SZ = 1 << 20 };
    uint8_t *data = malloc(SZ), *back = malloc(SZ);
    assert_non_null(data);
    assert_non_null(back);
    fill(data, SZ, 5);
    assert_int_equal(st->ops->put(st, "r/big", data, SZ, 0, NULL), 0);

    /* killed while sending the GET's body */
    proxy_do("die?mode=next");
    size_t got = 0;
    assert_int_equal(st->ops->get_range(st, "r/big", 0, SZ, back, &got), 0);
    assert_int_equal(got, SZ);
    assert_memory_equal(back, data, SZ);
    uint64_t r1 = st->stats.retries;
    assert_true(r1 >= 2); /* the broken answer, then at least one refused connect */

    /* killed after the PUT reached s3rver, before the answer got out */
    fill(data, SZ, 6);
    proxy_do("die?mode=next");
    assert_int_equal(st->ops->put(st, "r/big2", data, SZ, 0, NULL), 0);
    assert_true(st->stats.retries > r1);
    void *out = NULL;
    size_t outlen = 0;
    assert_int_equal(st->ops->get(st, "r/big2", SZ, &out, &outlen, NULL), 0);
    assert_int_equal(outlen, SZ);
    assert_memory_equal(out, data, SZ);
    free(out);

    /* down before the request: the listing waits for it to come back */
    proxy_do("die?mode=now");
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "r/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 2);
    listing_clear(&l);
    free(data);
    free(back);
    env_close(&e);
}

/* https: certificate checks on by default, a private CA's file given by
 * storage.ca_bundle or AWS_CA_BUNDLE, a wrong CA and a host name the
 * certificate does not name refused at the start-up check with a line that
 * says so, and the switch that turns verification off. The harness serves
 * https with a certificate of a private CA for 127.0.0.1 and *.s3.localhost
 * (S3_TLS_ENDPOINT, S3_TLS_CA; S3_TLS_WRONG_CA another CA): the proxy under
 * s3env.py, radosgw itself under rgwenv.py. */
static void tls_expect_refused(const char *ep, const char *ca, const char *want)
{
    struct env e;
    cfg_init(&e, "tls");
    e.cfg.storage_endpoint = (char *)ep;
    e.cfg.storage_ca_bundle = (char *)ca;
    env_open(&e);
    char err[1024] = "";
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EPROTO);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "TLS"));
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "ca_bundle"));
    assert_int_equal(e.st->ops->put(e.st, "x", "v", 1, 0, NULL), -EIO);
    assert_int_equal(e.st->stats.retries, 0); /* a bad certificate is not retried */
    env_close(&e);
}

static void test_tls(void **state)
{
    (void)state;
    const char *tls_ep = getenv("S3_TLS_ENDPOINT"), *ca = getenv("S3_TLS_CA");
    const char *wrong = getenv("S3_TLS_WRONG_CA");
    if (!tls_ep || !ca)
        skip();
    unsetenv("AWS_CA_BUNDLE");
    tls_expect_refused(tls_ep, NULL, "certificate");
    if (wrong)
        tls_expect_refused(tls_ep, wrong, "certificate");
    /* the right CA, but a name the certificate does not carry */
    const char *port = strrchr(tls_ep, ':');
    char misnamed[128];
    snprintf(misnamed, sizeof(misnamed), "https://localhost%s", port);
    tls_expect_refused(misnamed, ca, "localhost");

    struct env e;
    cfg_init(&e, "tls");
    e.cfg.storage_endpoint = (char *)tls_ep;
    e.cfg.storage_ca_bundle = (char *)ca;
    env_open(&e);
    char err[512] = "";
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), 0);
    assert_int_equal(e.st->ops->put(e.st, "secure", "hello", 5, 0, NULL), 0);
    void *out = NULL;
    size_t outlen = 0;
    assert_int_equal(e.st->ops->get(e.st, "secure", 10, &out, &outlen, NULL), 0);
    assert_int_equal(outlen, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);
    env_close(&e);

    /* AWS_CA_BUNDLE, as the AWS tools read it, when storage.ca_bundle is unset */
    setenv("AWS_CA_BUNDLE", ca, 1);
    cfg_init(&e, "tls");
    e.cfg.storage_endpoint = (char *)tls_ep;
    env_open(&e);
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), 0);
    env_close(&e);
    unsetenv("AWS_CA_BUNDLE");

    /* virtual-hosted over https: BUCKET.s3.localhost matches *.s3.localhost */
    char vhost[128];
    snprintf(vhost, sizeof(vhost), "https://s3.localhost%s", port);
    cfg_init(&e, "tls");
    e.cfg.storage_endpoint = vhost;
    e.cfg.storage_ca_bundle = (char *)ca;
    e.cfg.storage_addressing = (char *)"virtual";
    env_open(&e);
    char want_host[160];
    snprintf(want_host, sizeof(want_host), "%s.s3.localhost%s", bucket, port);
    assert_string_equal(gfs_s3_host(e.st), want_host);
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), 0);
    assert_int_equal(e.st->ops->get(e.st, "secure", 10, &out, &outlen, NULL), 0);
    assert_memory_equal(out, "hello", 5);
    free(out);
    env_close(&e);

    cfg_init(&e, "tls");
    e.cfg.storage_endpoint = (char *)tls_ep;
    e.cfg.storage_tls_verify = 0;
    env_open(&e);
    assert_true(log_contains("TLS certificate verification is off"));
    assert_int_equal(e.st->ops->del(e.st, "secure"), 0);
    env_close(&e);
}

/* Virtual-hosted addressing (storage.addressing: virtual): requests go to
 * BUCKET.s3.localhost:PORT with the key as the path (libcurl resolves any
 * *.localhost name to the loopback address itself); the proxy counts them,
 * and in front of RGW passes them as they came (rgw dns name = s3.localhost). */
static void test_virtual_hosted(void **state)
{
    (void)state;
    const char *port = strrchr(endpoint, ':');
    char ep[128];
    snprintf(ep, sizeof(ep), "http://s3.localhost%s", port);
    struct env e;
    cfg_init(&e, "vhost");
    e.cfg.storage_endpoint = ep;
    e.cfg.storage_addressing = (char *)"virtual";
    env_open(&e);
    struct gfs_objstore *st = e.st;
    char want_host[160];
    snprintf(want_host, sizeof(want_host), "%s.s3.localhost%s", bucket, port);
    assert_string_equal(gfs_s3_host(st), want_host);
    assert_true(log_contains("virtual-host-style"));
    long v0 = proxy_stat("vhost");
    char err[512];
    assert_int_equal(gfs_s3_check(st, err, sizeof(err)), 0);
    static const char *const keys[] = {"a", "dir/b c", "odd+=%\xc3\xbc"};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(st->ops->put(st, keys[i], keys[i], strlen(keys[i]), 0, NULL), 0);
    char etag[72];
    assert_int_equal(st->ops->put_etag(st, "lease", "1", 1, GFS_PUT_IF_NONE_MATCH, NULL, etag),
                     0);
    assert_int_equal(st->ops->put(st, "lease", "2", 1, GFS_PUT_IF_NONE_MATCH, NULL), -EEXIST);
    assert_int_equal(st->ops->put(st, "lease", "2", 1, 0, etag), 0);
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 4);
    listing_clear(&l);
    uint8_t got[16];
    size_t n = 0;
    assert_int_equal(st->ops->get_range(st, "dir/b c", 2, 3, got, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(got, "r/b", 3);
    const char *const del[] = {"a", "dir/b c", "odd+=%\xc3\xbc", "lease"};
    assert_int_equal(gfs_s3_delete_batch(st, del, 4, NULL), 0);
    assert_int_equal(st->ops->list(st, "", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    long v = proxy_stat("vhost") - v0;
    fprintf(stderr, "  %ld virtual-hosted requests\n", v);
    assert_true(v >= 11);
    env_close(&e);

    /* auto on a custom endpoint stays path-style */
    cfg_init(&e, "vhost");
    e.cfg.storage_endpoint = ep;
    env_open(&e);
    assert_string_equal(gfs_s3_host(e.st), ep + 7);
    env_close(&e);
    /* virtual with an address refuses to open */
    cfg_init(&e, "vhost");
    e.cfg.storage_addressing = (char *)"virtual";
    struct gfs_objstore *bad = NULL;
    assert_int_equal(gfs_objstore_s3_open(&e.cfg, &test_log, &bad, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "storage.addressing"));
}

/* Teardown of the tests that change the proxy's region or checksum answers:
 * a failed test must not leave them to the next. */
static int reset_proxy(void **state)
{
    (void)state;
    proxy_do("config?region=us-east-1&region_answer=&crc=verify&crc_max=262144");
    return 0;
}

/* The bucket is in another region than storage.region: the store says so
 * (301 PermanentRedirect with x-amz-bucket-region; 400
 * AuthorizationHeaderMalformed with <Region>), the store is signed for that
 * region from then on and the request sent again, once, logged. */
static void test_region_redirect(void **state)
{
    (void)state;
    static const char *const answers[] = {"redirect", "malformed"};
    for (int i = 0; i < 2; i++) {
        char q[128];
        snprintf(q, sizeof(q), "config?region=eu-west-1&region_answer=%s", answers[i]);
        proxy_do(q);
        long w0 = proxy_stat("wrong_region");
        struct env e;
        cfg_init(&e, "region");
        env_open(&e);
        struct gfs_objstore *st = e.st;
        assert_string_equal(gfs_s3_region(st), "us-east-1");
        if (i == 0) {
            /* a HEAD first: its 301 has no body, only the header */
            struct gfs_obj_info info;
            assert_int_equal(st->ops->head(st, "nothing-here", &info), -ENOENT);
        }
        assert_int_equal(st->ops->put(st, "r", "v", 1, 0, NULL), 0);
        void *out = NULL;
        size_t outlen = 0;
        assert_int_equal(st->ops->get(st, "r", 10, &out, &outlen, NULL), 0);
        free(out);
        assert_int_equal(st->ops->del(st, "r"), 0);
        assert_string_equal(gfs_s3_region(st), "eu-west-1");
        assert_int_equal(proxy_stat("wrong_region") - w0, 1);
        assert_int_equal(st->stats.retries, 0);
        assert_true(log_contains("is in region eu-west-1, not us-east-1"));
        env_close(&e);
    }
    /* an answer that names no region: an error, not a guess */
    proxy_do("config?region=eu-west-1&region_answer=");
    struct env e;
    cfg_init(&e, "region");
    env_open(&e);
    char err[1024];
    assert_int_equal(gfs_s3_check(e.st, err, sizeof(err)), -EPROTO);
    fprintf(stderr, "  check said: %s\n", err);
    assert_non_null(strstr(err, "AuthorizationHeaderMalformed"));
    assert_string_equal(gfs_s3_region(e.st), "us-east-1");
    env_close(&e);
    proxy_do("config?region=us-east-1&region_answer=");
}

/* x-amz-checksum-crc32c on PUT: sent and checked by the proxy (as AWS
 * does), an unknown-header refusal turns it off for that store (auto),
 * storage.checksum on / off. */
static void test_checksum(void **state)
{
    (void)state;
    proxy_do("config?crc=verify&crc_max=0");
    long c0 = proxy_stat("crc_checked");
    struct env e;
    cfg_init(&e, "crc");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    assert_int_equal(gfs_s3_checksum_state(st), GFS_S3_CRC_UNKNOWN);
    enum { BIG = 3 * 1024 * 1024 + 17 };
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    fill(big, BIG, 77);
    assert_int_equal(st->ops->put(st, "small", "checked", 7, 0, NULL), 0);
    assert_int_equal(st->ops->put(st, "big", big, BIG, 0, NULL), 0);
    char etag[72];
    assert_int_equal(st->ops->put_etag(st, "cond", "1", 1, GFS_PUT_IF_NONE_MATCH, NULL, etag),
                     0);
    assert_int_equal(proxy_stat("crc_checked") - c0, 3);
    /* s3rver behind the proxy: echoed, as AWS does; RGW 16 does not answer it */
    assert_int_equal(gfs_s3_checksum_state(st), on_rgw() ? GFS_S3_CRC_IGNORED
                                                         : GFS_S3_CRC_VERIFIED);
    env_close(&e);

    /* a store that refuses the header: auto sends the PUT again without it, then never */
    proxy_do("config?crc=refuse");
    cfg_init(&e, "crc");
    env_open(&e);
    st = e.st;
    for (int i = 0; i < 3; i++)
        assert_int_equal(st->ops->put(st, "small", "again", 5, 0, NULL), 0);
    assert_int_equal(gfs_s3_checksum_state(st), GFS_S3_CRC_REFUSED);
    assert_true(log_contains("refuses x-amz-checksum-crc32c"));
    env_close(&e);
    /* ... but not with storage.checksum: on */
    cfg_init(&e, "crc");
    e.cfg.storage_checksum = (char *)"on";
    env_open(&e);
    assert_int_equal(e.st->ops->put(e.st, "small", "x", 1, 0, NULL), -EIO);
    env_close(&e);
    /* off: never sent */
    proxy_do("config?crc=verify");
    c0 = proxy_stat("crc_checked");
    cfg_init(&e, "crc");
    e.cfg.storage_checksum = (char *)"off";
    env_open(&e);
    assert_int_equal(e.st->ops->put(e.st, "small", "x", 1, 0, NULL), 0);
    assert_int_equal(proxy_stat("crc_checked"), c0);
    assert_int_equal(gfs_s3_checksum_state(e.st), GFS_S3_CRC_OFF);
    const char *const del[] = {"small", "big", "cond"};
    assert_int_equal(gfs_s3_delete_batch(e.st, del, 3, NULL), 0);
    env_close(&e);
    proxy_do("config?crc=verify&crc_max=262144");
    free(big);
}

/* Objects for the harness to check with awscli (real S3 objects). */
static void test_objects_for_awscli(void **state)
{
    (void)state;
    const char *path = getenv("S3_CHECK_FILE");
    if (!path)
        skip();
    struct env e;
    cfg_init(&e, "awscheck");
    env_open(&e);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static const char *const keys[] = {"nbd/vm1/seg/0000000000000001-0000000000000002",
                                       "nbd/vm1/odd key+=%\xc3\xbc.bin"};
    for (size_t i = 0; i < 2; i++) {
        size_t sz = 3000 + 1234 * i;
        uint8_t *d = malloc(sz);
        assert_non_null(d);
        fill(d, sz, (uint32_t)(900 + i));
        assert_int_equal(e.st->ops->put(e.st, keys[i], d, sz, 0, NULL), 0);
        char sha[65];
        assert_int_equal(gfs_sha256_hex(d, sz, sha), 0);
        fprintf(f, "%s/awscheck/%s\t%zu\t%s\n", run_id, keys[i], sz, sha);
        free(d);
    }
    fclose(f);
    env_close(&e);
}

int main(void)
{
    endpoint = getenv("S3_ENDPOINT");
    bucket = getenv("S3_BUCKET");
    if (!endpoint || !bucket) {
        fprintf(stderr, "S3_ENDPOINT / S3_BUCKET not set: run through tests/s3/s3env.py\n");
        return 77;
    }
    snprintf(run_id, sizeof(run_id), "run-%ld-%ld", (long)getpid(), (long)time(NULL));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op),
        cmocka_unit_test(test_conditional_quirks),
        cmocka_unit_test(test_delete_many),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_awkward_keys),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_missing_bucket),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_env_credentials),
        cmocka_unit_test(test_faults_5xx),
        cmocka_unit_test(test_faults_wire),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_virtual_hosted),
        cmocka_unit_test_teardown(test_region_redirect, reset_proxy),
        cmocka_unit_test_teardown(test_checksum, reset_proxy),
        cmocka_unit_test(test_proxy_is_strict),
        cmocka_unit_test(test_objects_for_awscli),
    };
    int rc = cmocka_run_group_tests_name("objstore_s3", tests, NULL, NULL);
    free(log_text);
    curl_global_cleanup();
    return rc;
}
