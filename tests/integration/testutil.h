/*
 * testutil.h — helpers shared by the volume integration tests: temporary
 * directories, a config for a tiny-budget volume on the file:// store (or the
 * store named by GLIDEFS_TEST_STORE_URL, e.g. s3:// behind the test proxy, or
 * azure:// in Azurite under tests/azure/azenv.py with GLIDEFS_TEST_AZURE=1),
 * deterministic random numbers and recursive removal.
 */
#ifndef GLIDEFS_TESTUTIL_H
#define GLIDEFS_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "glidefs/glidefs.h"

static inline uint64_t tu_rand(uint64_t *s)
{
    /* xorshift64*: deterministic from the seed, so a failure can be replayed */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int tu_rm_cb(const char *p, const struct stat *sb, int f, struct FTW *w)
{
    (void)sb;
    (void)f;
    (void)w;
    return remove(p);
}

static inline void tu_rmrf(const char *path)
{
    nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

struct tu_env {
    char root[256];
    char cache[300];
    char store[300];
    char url[400];
    char endpoint[256]; /* s3 mode: the test proxy in front of s3rver; azure: of Azurite */
    int azure;          /* azure:// under tests/azure/azenv.py */
};

static inline void tu_env_init(struct tu_env *e, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(e->root, sizeof e->root, "%s/glidefs-%s-XXXXXX", tmp ? tmp : "/tmp", tag);
    if (!mkdtemp(e->root)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(e->cache, sizeof e->cache, "%s/cache", e->root);
    snprintf(e->store, sizeof e->store, "%s/store", e->root);
    const char *url = getenv("GLIDEFS_TEST_STORE_URL");
    e->endpoint[0] = 0;
    e->azure = 0;
    if (getenv("GLIDEFS_TEST_AZURE") && getenv("AZURE_TEST_ENDPOINT") &&
        getenv("AZURE_TEST_ACCOUNT") && getenv("AZURE_TEST_CONTAINER")) {
        /* run by tests/azure/azenv.py: a fresh prefix in its container per test */
        snprintf(e->url, sizeof e->url, "azure://%s/%s/%s", getenv("AZURE_TEST_ACCOUNT"),
                 getenv("AZURE_TEST_CONTAINER"), strrchr(e->root, '/') + 1);
        snprintf(e->endpoint, sizeof e->endpoint, "%s", getenv("AZURE_TEST_ENDPOINT"));
        e->azure = 1;
    } else if (getenv("GLIDEFS_TEST_S3") && getenv("S3_ENDPOINT") && getenv("S3_BUCKET")) {
        /* run by tests/s3/s3env.py: a fresh prefix in its bucket per test */
        snprintf(e->url, sizeof e->url, "s3://%s/%s", getenv("S3_BUCKET"),
                 strrchr(e->root, '/') + 1);
        snprintf(e->endpoint, sizeof e->endpoint, "%s", getenv("S3_ENDPOINT"));
    } else if (url && *url) {
        snprintf(e->url, sizeof e->url, "%s", url);
    } else {
        snprintf(e->url, sizeof e->url, "file://%s", e->store);
    }
}

static inline void tu_env_done(struct tu_env *e)
{
    if (!getenv("GLIDEFS_TEST_KEEP"))
        tu_rmrf(e->root);
}

static void tu_log(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level <= GLIDEFS_LOG_WARN || getenv("GLIDEFS_TEST_VERBOSE"))
        fprintf(stderr, "[lib %d] %s\n", level, msg);
}

static inline void tu_set(glidefs_config *c, const char *k, const char *v)
{
    char err[256] = "";
    int r = glidefs_config_set(c, k, v, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "config set %s=%s: %s (%s)\n", k, v, err, glidefs_strerror(r));
        abort();
    }
}

/* A config with a small cache budget so eviction and back-pressure happen. */
static inline glidefs_config *tu_config(const struct tu_env *e, const char *disk_size,
                                        const char *sync_delay_ms)
{
    glidefs_config *c = glidefs_config_new();
    if (!c)
        abort();
    tu_set(c, "cache.dir", e->cache);
    tu_set(c, "storage.url", e->url);
    tu_set(c, "cache.disk_size", disk_size);
    tu_set(c, "servers.nbd.sync_delay_ms", sync_delay_ms);
    tu_set(c, "servers.nbd.max_dirty_age_ms", "200");
    tu_set(c, "servers.nbd.blocks_per_batch", "4");
    if (e->endpoint[0] && e->azure) {
        tu_set(c, "storage.endpoint", e->endpoint);
        tu_set(c, "storage.azure_account_key", getenv("AZURE_TEST_KEY"));
        tu_set(c, "storage.timeout_ms", "10000");
    } else if (e->endpoint[0]) {
        tu_set(c, "storage.endpoint", e->endpoint);
        tu_set(c, "storage.access_key_id", "S3RVER"); /* s3rver's built-in account */
        tu_set(c, "storage.secret_access_key", "S3RVER");
        tu_set(c, "storage.timeout_ms", "10000");
    }
    glidefs_config_set_log(c, tu_log, NULL, GLIDEFS_LOG_DEBUG);
    return c;
}

/* One of several nodes on the same store: its own cache dir and node id. */
struct tu_node {
    char cache[512];
    glidefs_config *cfg;
};

static inline void tu_node_init(struct tu_node *n, const struct tu_env *e, const char *id,
                                const char *sync_delay_ms, const char *lease_ms)
{
    snprintf(n->cache, sizeof n->cache, "%s/cache-%s", e->root, id);
    n->cfg = tu_config(e, "64M", sync_delay_ms);
    tu_set(n->cfg, "cache.dir", n->cache);
    tu_set(n->cfg, "node_id", id);
    tu_set(n->cfg, "servers.lease_timeout_ms", lease_ms);
}

#endif
