/*
 * test_objstore_azure.c — the azure:// backend end to end, against Azurite
 * behind the fault proxy (tests/azure/azproxy.py), both started by
 * tests/azure/azenv.py, which passes AZURE_TEST_ENDPOINT (the proxy,
 * path-style), AZURE_TEST_KEY, AZURE_TEST_CONTAINER, two SAS tokens, the
 * proxy's control address and AZURE_TEST_CHECK_FILE (the blobs azenv.py
 * reads back with its own Python client afterwards).
 *
 * Every op, conditional writes (and racing ones), the conditional-write
 * probe, listings across pages, awkward names, block uploads, Blob Batch
 * deletes, SAS tokens (one read-only), wrong and missing credentials, a
 * missing container, an unreachable endpoint, injected faults (500, 503,
 * resets, truncated bodies, a conditional PUT whose answer is lost), and no
 * secret in any log line. Each test uses its own name prefix.
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
#include <cmocka.h>

#include <curl/curl.h>

#include "config.h"
#include "log.h"
#include "objstore.h"
#include "objstore_azure.h"
#include "sigv4.h"
#include "store_probe.h"

static const char *endpoint, *account, *key, *container, *sas, *sas_ro, *account_sas, *control;
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
    if (level <= GLIDEFS_LOG_WARN || getenv("GLIDEFS_TEST_VERBOSE"))
        fprintf(stderr, "  log[%d]: %s\n", level, msg);
}

static int log_contains(const char *s)
{
    pthread_mutex_lock(&log_lock);
    int r = log_text && strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return r;
}

static struct gfs_log test_log = {capture_log, NULL, GLIDEFS_LOG_DEBUG};

/* ---- store setup ---- */

struct env {
    struct glidefs_config cfg;
    char url[512];
    struct gfs_objstore *st;
};

static void cfg_init(struct env *e, const char *test)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->url, sizeof(e->url), "azure://%s/%s/%s/%s", account, container, run_id, test);
    e->cfg.storage_url = e->url;
    e->cfg.storage_endpoint = (char *)endpoint;
    e->cfg.storage_azure_account_key = (char *)key;
    e->cfg.storage_tls_verify = 1;
    e->cfg.storage_max_connections = 8;
    e->cfg.storage_timeout_ms = 5000;
    e->cfg.storage_max_retries = 8;
}

static void env_open(struct env *e)
{
    char err[512] = "";
    int rc = gfs_objstore_open(&e->cfg, &test_log, &e->st, err, sizeof(err));
    if (rc != 0)
        fail_msg("open %s: %d %s", e->url, rc, err);
    assert_true(gfs_objstore_is_azure(e->st));
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

static char *proxy_ctl(const char *what)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/__proxy__/%s", control, what);
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
    if (cc != CURLE_OK || status != 200)
        fail_msg("proxy control %s: curl %d, HTTP %ld", what, cc, status);
    return b.p ? b.p : strdup("");
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

struct listing {
    char *keys[1024];
    uint64_t sizes[1024];
    size_t n;
    size_t stop_after; /* 0: never stop */
};

static int on_key(void *arg, const char *k, uint64_t size)
{
    struct listing *l = arg;
    if (l->n >= 1024)
        return -ENOSPC;
    l->keys[l->n] = strdup(k);
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

static void get_expect(struct gfs_objstore *st, const char *k, const void *want, size_t n)
{
    void *got = NULL;
    size_t len = 0;
    struct gfs_obj_info info = {0};
    int rc = st->ops->get(st, k, 64u << 20, &got, &len, &info);
    if (rc != 0)
        fail_msg("get %s: %d", k, rc);
    assert_int_equal(len, n);
    assert_memory_equal(got, want, n);
    assert_int_equal(info.size, n);
    free(got);
}

/* Note a blob for azenv.py's read-back (full name, size, sha256). */
static void check_later(const struct env *e, const char *k, const void *data, size_t n)
{
    const char *path = getenv("AZURE_TEST_CHECK_FILE");
    if (!path)
        return;
    char sha[GFS_SHA256_HEX_LEN + 1];
    assert_int_equal(gfs_sha256_hex(data, n, sha), 0);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    /* the URL's path after the container is the store prefix */
    const char *pre = e->url + strlen("azure://") + strlen(account) + 1 + strlen(container) + 1;
    fprintf(f, "%s/%s\t%zu\t%s\n", pre, k, n, sha);
    fclose(f);
}

/* ---- tests ---- */

static void test_every_op(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "ops");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    uint8_t data[70000];
    fill(data, sizeof data, 1);
    char etag[72] = "";
    assert_int_equal(st->ops->put_etag(st, "a/obj", data, sizeof data, 0, NULL, etag), 0);
    assert_true(etag[0] != '\0' && etag[0] != '"');
    struct gfs_obj_info info = {0};
    assert_int_equal(st->ops->head(st, "a/obj", &info), 0);
    assert_int_equal(info.size, sizeof data);
    assert_string_equal(info.etag, etag);
    get_expect(st, "a/obj", data, sizeof data);
    check_later(&e, "a/obj", data, sizeof data);

    /* ranged reads: inside, across the end (short), at and past the end */
    uint8_t buf[5000];
    size_t got = 0;
    assert_int_equal(st->ops->get_range(st, "a/obj", 1234, 5000, buf, &got), 0);
    assert_int_equal(got, 5000);
    assert_memory_equal(buf, data + 1234, 5000);
    assert_int_equal(st->ops->get_range(st, "a/obj", sizeof data - 100, 5000, buf, &got), 0);
    assert_int_equal(got, 100);
    assert_memory_equal(buf, data + sizeof data - 100, 100);
    assert_int_equal(st->ops->get_range(st, "a/obj", sizeof data, 10, buf, &got), 0);
    assert_int_equal(got, 0);

    /* an empty blob */
    assert_int_equal(st->ops->put(st, "a/empty", "", 0, 0, NULL), 0);
    assert_int_equal(st->ops->head(st, "a/empty", &info), 0);
    assert_int_equal(info.size, 0);
    assert_int_equal(st->ops->get_range(st, "a/empty", 0, 10, buf, &got), 0);
    assert_int_equal(got, 0);
    get_expect(st, "a/empty", "", 0);

    /* missing blobs */
    assert_int_equal(st->ops->head(st, "a/none", &info), -ENOENT);
    void *p = NULL;
    size_t len = 0;
    assert_int_equal(st->ops->get(st, "a/none", 100, &p, &len, NULL), -ENOENT);
    assert_int_equal(st->ops->get_range(st, "a/none", 0, 10, buf, &got), -ENOENT);
    /* too large for the caller */
    assert_int_equal(st->ops->get(st, "a/obj", 1000, &p, &len, NULL), -EFBIG);
    /* deleting: present, then missing (success both times) */
    assert_int_equal(st->ops->del(st, "a/empty"), 0);
    assert_int_equal(st->ops->del(st, "a/empty"), 0);
    assert_int_equal(st->ops->head(st, "a/empty", &info), -ENOENT);
    /* bad keys never reach the wire */
    assert_int_equal(st->ops->put(st, "/abs", "x", 1, 0, NULL), -EINVAL);
    assert_int_equal(st->ops->put(st, "a/../b", "x", 1, 0, NULL), -EINVAL);
    assert_int_equal(st->ops->put(st, "a/\nb", "x", 1, 0, NULL), -EINVAL);
    assert_true(st->stats.puts >= 2 && st->stats.gets >= 5 && st->stats.heads >= 3);
    env_close(&e);
}

/* Names that need encoding in the URL and in the signed resource. */
static void test_awkward_names(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "names");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    static const char *const names[] = {
        "sp ace/x", "plus+sign", "pct%41", "tilde~under_dot.dash-", "quote'paren()star*",
        "amp&eq=q?hash#", "uni\xc3\xa9\xe2\x82\xac", "semi;colon:comma,at@",
    };
    size_t n = sizeof names / sizeof names[0];
    for (size_t i = 0; i < n; i++) {
        char body[64];
        int bl = snprintf(body, sizeof body, "body of %zu", i);
        int rc = st->ops->put(st, names[i], body, (size_t)bl, 0, NULL);
        if (rc != 0)
            fail_msg("put '%s': %d", names[i], rc);
        get_expect(st, names[i], body, (size_t)bl);
    }
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "", NULL, on_key, &l), 0);
    assert_int_equal(l.n, n);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t k = 0; k < l.n; k++)
            found |= strcmp(l.keys[k], names[i]) == 0;
        if (!found)
            fail_msg("'%s' not listed", names[i]);
        assert_int_equal(st->ops->del(st, names[i]), 0);
    }
    listing_clear(&l);
    env_close(&e);
}

static void test_conditional(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "cond");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    char e1[72], e2[72], e3[72];
    assert_int_equal(st->ops->put_etag(st, "lease", "one", 3, GFS_PUT_IF_NONE_MATCH, NULL, e1), 0);
    assert_int_equal(st->ops->put_etag(st, "lease", "two", 3, GFS_PUT_IF_NONE_MATCH, NULL, e2),
                     -EEXIST);
    /* the same bytes again: the second create must hear that the first exists */
    assert_int_equal(st->ops->put_etag(st, "lease", "one", 3, GFS_PUT_IF_NONE_MATCH, NULL, e2),
                     -EEXIST);
    get_expect(st, "lease", "one", 3);
    assert_int_equal(st->ops->put_etag(st, "lease", "two", 3, 0, "0x8D0000000000000", e2),
                     -ECANCELED);
    get_expect(st, "lease", "one", 3);
    assert_int_equal(st->ops->put_etag(st, "lease", "two", 3, 0, e1, e2), 0);
    assert_string_not_equal(e1, e2);
    get_expect(st, "lease", "two", 3);
    /* the old ETag no longer matches */
    assert_int_equal(st->ops->put_etag(st, "lease", "three", 5, 0, e1, e3), -ECANCELED);
    get_expect(st, "lease", "two", 3);
    /* If-Match on a blob that does not exist */
    assert_int_equal(st->ops->put_etag(st, "nothing", "x", 1, 0, e2, e3), -ECANCELED);
    assert_int_equal(st->ops->head(st, "nothing", NULL), -ENOENT);
    /* both conditions at once is a caller bug */
    assert_int_equal(st->ops->put(st, "lease", "x", 1, GFS_PUT_IF_NONE_MATCH, e2), -EINVAL);

    /* the start-up probe trusts Azurite */
    int cond = -1;
    char detail[256];
    assert_int_equal(gfs_store_probe(st, &test_log, &cond, detail, sizeof detail), 0);
    if (cond != GLIDEFS_STORE_COND_OK)
        fail_msg("probe: %s (%s)", gfs_store_cond_name(cond), detail);
    env_close(&e);
}

struct racer {
    struct gfs_objstore *st;
    const char *k;
    const char *if_match;
    int id, rc;
    pthread_barrier_t *bar;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    char body[32];
    snprintf(body, sizeof body, "racer %d", r->id);
    pthread_barrier_wait(r->bar);
    r->rc = r->st->ops->put(r->st, r->k, body, strlen(body),
                            r->if_match ? 0 : GFS_PUT_IF_NONE_MATCH, r->if_match);
    return NULL;
}

/* 16 conditional PUTs at once: exactly one wins, the others are told. */
static void test_racing(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "race");
    e.cfg.storage_max_connections = 16;
    env_open(&e);
    enum { N = 16 };
    for (int round = 0; round < 2; round++) {
        char etag[72] = "";
        if (round == 1)
            assert_int_equal(e.st->ops->put_etag(e.st, "r1", "base", 4, 0, NULL, etag), 0);
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, N);
        struct racer r[N];
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            r[i] = (struct racer){e.st, round ? "r1" : "r0", round ? etag : NULL, i, 0, &bar};
            pthread_create(&t[i], NULL, race, &r[i]);
        }
        int wins = 0, winner = -1;
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            if (r[i].rc == 0) {
                wins++;
                winner = i;
            } else {
                assert_int_equal(r[i].rc, round ? -ECANCELED : -EEXIST);
            }
        }
        pthread_barrier_destroy(&bar);
        assert_int_equal(wins, 1);
        char want[32];
        snprintf(want, sizeof want, "racer %d", winner);
        get_expect(e.st, round ? "r1" : "r0", want, strlen(want));
    }
    env_close(&e);
}

/* Pages of 7 names, start_after, a callback that stops the listing. */
static void test_list(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "list");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    gfs_azure_set_limits(st, 0, 0, 7);
    char k[64];
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof k, "seg/%04d", i);
        assert_int_equal(st->ops->put(st, k, k, strlen(k), 0, NULL), 0);
    }
    assert_int_equal(st->ops->put(st, "segment-not", "x", 1, 0, NULL), 0);
    assert_int_equal(st->ops->put(st, "other/x", "x", 1, 0, NULL), 0);
    uint64_t lists0 = st->stats.lists;
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "seg/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 40);
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof k, "seg/%04d", i);
        assert_string_equal(l.keys[i], k);
        assert_int_equal(l.sizes[i], strlen(k));
    }
    assert_true(st->stats.lists - lists0 >= 6); /* 40 names in pages of 7 */
    listing_clear(&l);
    assert_int_equal(st->ops->list(st, "seg/", "seg/0031", on_key, &l), 0);
    assert_int_equal(l.n, 8);
    assert_string_equal(l.keys[0], "seg/0032");
    listing_clear(&l);
    /* start_after between names, and past every name */
    assert_int_equal(st->ops->list(st, "seg/", "seg/0031x", on_key, &l), 0);
    assert_int_equal(l.n, 8);
    listing_clear(&l);
    assert_int_equal(st->ops->list(st, "seg/", "seg/9", on_key, &l), 0);
    assert_int_equal(l.n, 0);
    l.stop_after = 10;
    assert_int_equal(st->ops->list(st, "seg/", NULL, on_key, &l), 42);
    assert_int_equal(l.n, 10);
    l.stop_after = 0;
    listing_clear(&l);
    assert_int_equal(st->ops->list(st, "", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 42);
    listing_clear(&l);
    assert_int_equal(st->ops->list(st, "nothing/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    env_close(&e);
}

/* Above the single-put limit: Put Block + Put Block List, conditions kept. */
static void test_blocks(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "blocks");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    gfs_azure_set_limits(st, 1000, 300, 0);
    uint8_t data[2500];
    fill(data, sizeof data, 7);
    uint64_t puts0 = st->stats.puts;
    char e1[72], e2[72];
    assert_int_equal(st->ops->put_etag(st, "big", data, sizeof data, GFS_PUT_IF_NONE_MATCH, NULL,
                                       e1), 0);
    assert_int_equal(st->stats.puts - puts0, 10); /* 9 blocks of up to 300 bytes, the list */
    get_expect(st, "big", data, sizeof data);
    struct gfs_obj_info info;
    assert_int_equal(st->ops->head(st, "big", &info), 0);
    assert_string_equal(info.etag, e1);
    uint8_t other[1500];
    fill(other, sizeof other, 8);
    assert_int_equal(st->ops->put_etag(st, "big", other, sizeof other, GFS_PUT_IF_NONE_MATCH,
                                       NULL, e2), -EEXIST);
    assert_int_equal(st->ops->put_etag(st, "big", other, sizeof other, 0, "0x8D0000000000001",
                                       e2), -ECANCELED);
    get_expect(st, "big", data, sizeof data);
    assert_int_equal(st->ops->put_etag(st, "big", other, sizeof other, 0, e1, e2), 0);
    get_expect(st, "big", other, sizeof other);
    check_later(&e, "big", other, sizeof other);
    uint8_t buf[400];
    size_t got;
    assert_int_equal(st->ops->get_range(st, "big", 250, 400, buf, &got), 0);
    assert_int_equal(got, 400);
    assert_memory_equal(buf, other + 250, 400);
    /* exactly the limit: one Put Blob */
    puts0 = st->stats.puts;
    assert_int_equal(st->ops->put(st, "edge", data, 1000, 0, NULL), 0);
    assert_int_equal(st->stats.puts - puts0, 1);
    get_expect(st, "edge", data, 1000);
    env_close(&e);
}

static void test_batch_delete(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "batch");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    enum { N = 300 };
    static char names[N + 2][32];
    const char *keys[N + 2];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "d/%04d", i);
        keys[i] = names[i];
        assert_int_equal(st->ops->put(st, keys[i], "x", 1, 0, NULL), 0);
    }
    snprintf(names[N], sizeof names[N], "d/missing-1");
    snprintf(names[N + 1], sizeof names[N + 1], "d/missing-2");
    keys[N] = names[N];
    keys[N + 1] = names[N + 1];
    assert_int_equal(st->ops->put(st, "keep", "k", 1, 0, NULL), 0);
    uint64_t b0 = gfs_azure_batch_requests(st);
    size_t failed = 99;
    assert_int_equal(gfs_azure_delete_batch(st, keys, N + 2, &failed), 0);
    assert_int_equal(failed, 0);
    assert_int_equal(gfs_azure_batch_requests(st) - b0, 2); /* 256 + 46 */
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0], "keep");
    listing_clear(&l);
    const char *bad[] = {"ok", "a/../b"};
    assert_int_equal(gfs_azure_delete_batch(st, bad, 2, NULL), -EINVAL);
    assert_int_equal(st->ops->head(st, "keep", NULL), 0);
    env_close(&e);
}

/* A SAS token instead of the key: every op, batches included; a read-only
 * one is refused writes (403 -> -EACCES); an account SAS works too; none
 * is ever logged. (Azurite 3.35 answers a container's Blob Batch carrying
 * an account SAS with 500: batches are tested with the container's SAS.) */
static void test_sas(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "sas");
    e.cfg.storage_azure_account_key = NULL;
    char with_q[4200];
    snprintf(with_q, sizeof with_q, "?%s", sas); /* as the portal gives it */
    e.cfg.storage_azure_sas_token = with_q;
    env_open(&e);
    struct gfs_objstore *st = e.st;
    char err[512];
    assert_int_equal(gfs_azure_check(st, err, sizeof err), 0);
    char etag[72];
    assert_int_equal(st->ops->put_etag(st, "s/1", "one", 3, GFS_PUT_IF_NONE_MATCH, NULL, etag), 0);
    assert_int_equal(st->ops->put(st, "s/1", "two", 3, 0, etag), 0);
    get_expect(st, "s/1", "two", 3);
    assert_int_equal(st->ops->put(st, "s/2", "x", 1, 0, NULL), 0);
    struct listing l = {0};
    assert_int_equal(st->ops->list(st, "s/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 2);
    listing_clear(&l);
    const char *keys[] = {"s/1", "s/2", "s/3"};
    uint64_t b0 = gfs_azure_batch_requests(st);
    assert_int_equal(gfs_azure_delete_batch(st, keys, 3, NULL), 0);
    assert_int_equal(gfs_azure_batch_requests(st) - b0, 1);
    assert_int_equal(st->ops->list(st, "s/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 0);
    env_close(&e);

    cfg_init(&e, "sas");
    e.cfg.storage_azure_account_key = NULL;
    e.cfg.storage_azure_sas_token = (char *)sas_ro;
    env_open(&e);
    assert_int_equal(gfs_azure_check(e.st, err, sizeof err), 0); /* it may list */
    assert_int_equal(e.st->ops->put(e.st, "s/ro", "x", 1, 0, NULL), -EACCES);
    assert_true(log_contains("storage.azure_sas_token"));
    env_close(&e);

    cfg_init(&e, "sas");
    e.cfg.storage_azure_account_key = NULL;
    e.cfg.storage_azure_sas_token = (char *)account_sas;
    env_open(&e);
    assert_int_equal(gfs_azure_check(e.st, err, sizeof err), 0);
    assert_int_equal(e.st->ops->put_etag(e.st, "a/1", "one", 3, GFS_PUT_IF_NONE_MATCH, NULL, etag),
                     0);
    get_expect(e.st, "a/1", "one", 3);
    assert_int_equal(e.st->ops->list(e.st, "a/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 1);
    listing_clear(&l);
    assert_int_equal(e.st->ops->del(e.st, "a/1"), 0);
    assert_int_equal(e.st->ops->head(e.st, "a/1", NULL), -ENOENT);
    env_close(&e);

    /* neither token's signature may appear in any log line */
    const char *sig = strstr(sas, "sig=");
    const char *sig_ro = strstr(sas_ro, "sig=");
    assert_non_null(sig);
    assert_non_null(sig_ro);
    const char *sig_acct = strstr(account_sas, "sig=");
    assert_non_null(sig_acct);
    char s1[64], s2[64], s3[64];
    snprintf(s1, sizeof s1, "%.20s", sig + 4);
    snprintf(s2, sizeof s2, "%.20s", sig_ro + 4);
    snprintf(s3, sizeof s3, "%.20s", sig_acct + 4);
    assert_false(log_contains(s1));
    assert_false(log_contains(s2));
    assert_false(log_contains(s3));
}

static void test_bad_credentials(void **state)
{
    (void)state;
    struct env e;
    char err[512];
    /* a well-formed key that is not the account's */
    cfg_init(&e, "wrongkey");
    char wrong[128];
    snprintf(wrong, sizeof wrong, "%s", key);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    e.cfg.storage_azure_account_key = wrong;
    env_open(&e);
    assert_int_equal(gfs_azure_check(e.st, err, sizeof err), -EACCES);
    assert_non_null(strstr(err, "refused the credentials"));
    assert_non_null(strstr(err, "storage.azure_account_key"));
    assert_int_equal(e.st->ops->put(e.st, "x", "x", 1, 0, NULL), -EACCES);
    assert_int_equal(e.st->stats.retries, 0); /* 403 is not retried */
    env_close(&e);
    assert_false(log_contains(wrong));
    assert_false(log_contains(key));

    /* not base64 at all, both key and SAS, no credentials: refused at open */
    struct gfs_objstore *st = NULL;
    cfg_init(&e, "badkey");
    e.cfg.storage_azure_account_key = (char *)"not a key!";
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), -EINVAL);
    assert_null(strstr(err, "not a key!"));
    assert_non_null(strstr(err, "storage.azure_account_key"));
    e.cfg.storage_azure_account_key = (char *)key;
    e.cfg.storage_azure_sas_token = (char *)sas;
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), -EINVAL);
    e.cfg.storage_azure_sas_token = (char *)"sv=2021-08-06&sp=r";
    e.cfg.storage_azure_account_key = NULL;
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), -EINVAL);
    e.cfg.storage_azure_sas_token = NULL;
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "AZURE_STORAGE_KEY"));

    /* the environment, as the Azure CLI reads it */
    setenv("AZURE_STORAGE_KEY", key, 1);
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), 0);
    assert_int_equal(gfs_azure_check(st, err, sizeof err), 0);
    gfs_objstore_close(st);
    setenv("AZURE_STORAGE_ACCOUNT", "someotheraccount", 1);
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "AZURE_STORAGE_ACCOUNT"));
    setenv("AZURE_STORAGE_ACCOUNT", account, 1);
    setenv("AZURE_STORAGE_SAS_TOKEN", sas_ro, 1); /* wins over the key */
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), 0);
    assert_int_equal(st->ops->put(st, "envsas", "x", 1, 0, NULL), -EACCES);
    assert_true(log_contains("AZURE_STORAGE_SAS_TOKEN"));
    gfs_objstore_close(st);
    unsetenv("AZURE_STORAGE_KEY");
    unsetenv("AZURE_STORAGE_ACCOUNT");
    unsetenv("AZURE_STORAGE_SAS_TOKEN");
}

static void test_missing_container(void **state)
{
    (void)state;
    struct env e;
    char err[512];
    cfg_init(&e, "nocont");
    snprintf(e.url, sizeof e.url, "azure://%s/no-such-container/x", account);
    env_open(&e);
    assert_int_equal(gfs_azure_check(e.st, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "container 'no-such-container' does not exist"));
    assert_int_equal(e.st->ops->put(e.st, "k", "x", 1, 0, NULL), -ENOENT);
    struct listing l = {0};
    assert_int_equal(e.st->ops->list(e.st, "", NULL, on_key, &l), -ENOENT);
    assert_int_equal(e.st->ops->del(e.st, "k"), -ENOENT);
    env_close(&e);

    /* the library's store check names it too */
    glidefs_config *c = glidefs_config_new();
    assert_non_null(c);
    char url[256];
    snprintf(url, sizeof url, "azure://%s/no-such-container", account);
    assert_int_equal(glidefs_config_set(c, "storage.url", url, err, sizeof err), 0);
    assert_int_equal(glidefs_config_set(c, "storage.endpoint", endpoint, err, sizeof err), 0);
    assert_int_equal(glidefs_config_set(c, "storage.azure_account_key", key, err, sizeof err), 0);
    glidefs_config_set_log(c, capture_log, NULL, GLIDEFS_LOG_INFO);
    err[0] = '\0';
    assert_int_equal(glidefs_store_check(c, err, sizeof err), -ENOENT);
    if (!strstr(err, "no-such-container"))
        fail_msg("store check did not name the container: %s", err);
    /* and, on the real container, it probes conditional writes: OK */
    snprintf(url, sizeof url, "azure://%s/%s/%s/check", account, container, run_id);
    assert_int_equal(glidefs_config_set(c, "storage.url", url, err, sizeof err), 0);
    struct glidefs_store_info info;
    assert_int_equal(glidefs_store_check_info(c, &info, sizeof info, err, sizeof err), 0);
    assert_int_equal(info.conditional_writes, GLIDEFS_STORE_COND_OK);
    glidefs_config_free(c);
}

static void test_unreachable(void **state)
{
    (void)state;
    struct env e;
    char err[512];
    cfg_init(&e, "unreach");
    e.cfg.storage_endpoint = (char *)"http://127.0.0.1:1/devstoreaccount1";
    e.cfg.storage_timeout_ms = 1000;
    env_open(&e);
    assert_int_equal(gfs_azure_check(e.st, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "cannot reach"));
    env_close(&e);
    /* endpoints that do not fit the URL */
    struct gfs_objstore *st = NULL;
    cfg_init(&e, "ep");
    e.cfg.storage_endpoint = (char *)"http://127.0.0.1:10000/otheraccount";
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), -EINVAL);
    e.cfg.storage_endpoint = (char *)"ftp://127.0.0.1:10000";
    assert_int_equal(gfs_objstore_open(&e.cfg, &test_log, &st, err, sizeof err), -EINVAL);
}

/* Injected faults: retried with backoff, bounded; a conditional PUT whose
 * success answer was lost is recognised as ours. */
static void test_faults(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "faults");
    env_open(&e);
    struct gfs_objstore *st = e.st;
    uint8_t data[20000];
    fill(data, sizeof data, 3);
    uint64_t r0 = st->stats.retries;
    proxy_do("faults?next=500,503,slowdown");
    assert_int_equal(st->ops->put(st, "f/1", data, sizeof data, 0, NULL), 0);
    assert_int_equal(st->stats.retries - r0, 3);
    /* (libcurl sends again on its own when a kept-alive connection dies
     * before any answer: the reset may cost no retry of ours) */
    uint64_t r1 = st->stats.retries;
    proxy_do("faults?next=reset,truncate");
    get_expect(st, "f/1", data, sizeof data);
    assert_true(st->stats.retries - r1 >= 1 && st->stats.retries - r1 <= 2);
    r1 = st->stats.retries;
    proxy_do("faults?next=truncate");
    get_expect(st, "f/1", data, sizeof data);
    assert_int_equal(st->stats.retries - r1, 1);
    /* the create landed, its answer was lost: the retry's 409 is ours */
    char etag[72] = "";
    proxy_do("faults?next=500after");
    assert_int_equal(st->ops->put_etag(st, "f/lease", "v1", 2, GFS_PUT_IF_NONE_MATCH, NULL, etag),
                     0);
    assert_true(etag[0] != '\0');
    char e2[72];
    proxy_do("faults?next=500after");
    assert_int_equal(st->ops->put_etag(st, "f/lease", "v2", 2, 0, etag, e2), 0);
    get_expect(st, "f/lease", "v2", 2);
    struct gfs_obj_info info;
    assert_int_equal(st->ops->head(st, "f/lease", &info), 0);
    assert_string_equal(info.etag, e2);
    /* a create over a warm connection that dies once the store has it:
     * libcurl sends it again by itself (no retry of ours), the copy is
     * refused, and the blob holds our bytes: success */
    uint64_t r2 = st->stats.retries;
    assert_int_equal(st->ops->head(st, "f/1", NULL), 0); /* warms the handle */
    proxy_do("faults?next=reset");
    assert_int_equal(st->ops->put_etag(st, "f/warm", "w1", 2, GFS_PUT_IF_NONE_MATCH, NULL, etag),
                     0);
    assert_int_equal(st->stats.retries, r2);
    get_expect(st, "f/warm", "w1", 2);
    /* ... but someone else's object is still refused */
    proxy_do("faults?next=500after");
    assert_int_equal(st->ops->put(st, "f/lease", "v3", 2, GFS_PUT_IF_NONE_MATCH, NULL), -EEXIST);
    get_expect(st, "f/lease", "v2", 2);
    /* a store that keeps failing: bounded, -EIO */
    env_close(&e);
    cfg_init(&e, "faults");
    e.cfg.storage_max_retries = 2;
    env_open(&e);
    proxy_do("faults?rate=1&kinds=503&seed=1");
    long before = proxy_stat("requests");
    assert_int_equal(e.st->ops->put(e.st, "f/2", "x", 1, 0, NULL), -EIO);
    proxy_do("faults?rate=0");
    assert_int_equal(proxy_stat("requests") - before, 3);
    assert_true(log_contains("retry 2/2"));
    env_close(&e);
}

/* Parallel use of one store: 8 threads, 20 blobs each. */
struct worker {
    struct gfs_objstore *st;
    int id, bad;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    uint8_t data[3000], *got;
    for (int i = 0; i < 20 && !w->bad; i++) {
        char k[64];
        snprintf(k, sizeof k, "p/%d/%d", w->id, i);
        fill(data, sizeof data, (uint32_t)(w->id * 100 + i));
        size_t len;
        if (w->st->ops->put(w->st, k, data, sizeof data, 0, NULL) != 0 ||
            w->st->ops->get(w->st, k, sizeof data, (void **)&got, &len, NULL) != 0)
            w->bad = 1;
        else {
            w->bad = len != sizeof data || memcmp(got, data, len) != 0;
            free(got);
        }
    }
    return NULL;
}

static void test_parallel(void **state)
{
    (void)state;
    struct env e;
    cfg_init(&e, "parallel");
    e.cfg.storage_max_connections = 4;
    env_open(&e);
    struct worker w[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){e.st, i, 0};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    struct listing l = {0};
    assert_int_equal(e.st->ops->list(e.st, "p/", NULL, on_key, &l), 0);
    assert_int_equal(l.n, 160);
    listing_clear(&l);
    env_close(&e);
}

int main(void)
{
    endpoint = getenv("AZURE_TEST_ENDPOINT");
    account = getenv("AZURE_TEST_ACCOUNT");
    key = getenv("AZURE_TEST_KEY");
    container = getenv("AZURE_TEST_CONTAINER");
    sas = getenv("AZURE_TEST_SAS");
    sas_ro = getenv("AZURE_TEST_SAS_RO");
    account_sas = getenv("AZURE_TEST_ACCOUNT_SAS");
    control = getenv("AZURE_PROXY_CONTROL");
    if (!endpoint || !account || !key || !container || !sas || !sas_ro || !account_sas ||
        !control) {
        fprintf(stderr, "SKIP: run under tests/azure/azenv.py\n");
        return 77;
    }
    snprintf(run_id, sizeof run_id, "run-%ld-%d", (long)time(NULL), (int)getpid());
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op),
        cmocka_unit_test(test_awkward_names),
        cmocka_unit_test(test_conditional),
        cmocka_unit_test(test_racing),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_batch_delete),
        cmocka_unit_test(test_sas),
        cmocka_unit_test(test_bad_credentials),
        cmocka_unit_test(test_missing_container),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_parallel),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    /* no secret in anything logged, whatever the test */
    if (log_contains(key) || log_contains("sig=")) {
        fprintf(stderr, "FAIL: a secret was logged\n");
        rc = 1;
    }
    free(log_text);
    curl_global_cleanup();
    return rc;
}
