/*
 * test_wake.c — cold start (lib/wake.c, lib/profile.c, read-ahead's profile
 * prefetch): a woken volume on an empty cache records the blocks its guest
 * reads first; the next wake on another empty cache prefetches them, so the
 * same reads all hit the cache (no GET of the guest's own) and the prefetch
 * takes far fewer GETs than blocks; a clone's first wake prefetches its
 * parent's profile and then stores its own; a read-only open stores none;
 * a guest that stops following the profile stops the prefetch (a hook holds
 * the prefetch GETs so that is deterministic); layout follows use: once the
 * recording is over, the profile's scattered blocks are copied together in
 * first-read order, stay cached, and the next wake prefetches them with a
 * few GETs (plain and encrypted). Links the internal library for that hook.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <time.h>

#include "testutil.h"
#include "readahead.h"
#include "volume_internal.h"

#define BS 4096u
#define NBLK 4096u     /* 16 MiB */
#define NPROF 300u     /* blocks the "boot" reads */

static uint8_t *expected;

static glidefs_config *cfg_for(struct tu_env *env, const char *cache)
{
    glidefs_config *c = tu_config(env, "64M", "100");
    tu_set(c, "cache.dir", cache);
    tu_set(c, "servers.nbd.block_size", "4096");
    tu_set(c, "servers.nbd.blocks_per_batch", "256");
    /* a heartbeat (every third of it) must not land among the GETs counted */
    tu_set(c, "servers.lease_timeout_ms", "300000");
    return c;
}

static struct glidefs_stats stats_of(glidefs_volume *v)
{
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    return st;
}

/* A drained volume of NBLK random blocks written through config c (NULL:
 * cfg_for's), created unless it exists; no cache left behind. */
static void make_volume_with(struct tu_env *env, const char *name, glidefs_config *c)
{
    glidefs_config *own = c ? NULL : cfg_for(env, env->cache);
    if (own)
        c = own;
    tu_set(c, "cache.profile_s", "0"); /* writing it is not its boot */
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, (uint64_t)NBLK * BS, GLIDEFS_OPEN_CREATE, &v), 0);
    expected = malloc((size_t)NBLK * BS);
    assert_non_null(expected);
    uint64_t s = 11;
    for (size_t i = 0; i + 8 <= (size_t)NBLK * BS; i += 8) {
        uint64_t x = tu_rand(&s);
        memcpy(expected + i, &x, 8);
    }
    for (uint32_t off = 0; off < NBLK * BS; off += 1u << 20)
        assert_int_equal(glidefs_pwrite(v, expected + off, 1u << 20, off, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(own);
    tu_rmrf(env->cache);
}

static void make_volume(struct tu_env *env, const char *name)
{
    make_volume_with(env, name, NULL);
}

/* The i-th block of a "boot": scattered over the volume, no repeats. */
static uint64_t boot_block(uint32_t i, uint32_t salt)
{
    return ((uint64_t)i * 2654435761u + salt) % NBLK;
}

/* Read blocks boot_block(0..n) one 4 KiB read each, checking the bytes. */
static void boot(glidefs_volume *v, uint32_t n, uint32_t salt)
{
    uint8_t buf[BS];
    for (uint32_t i = 0; i < n; i++) {
        uint64_t b = boot_block(i, salt);
        assert_int_equal(glidefs_pread(v, buf, BS, b * BS), 0);
        assert_memory_equal(buf, expected + b * BS, BS);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll (with a deadline) until the counter at `field` of the volume's
 * stats reaches `want`; it must then be exactly want. */
static struct glidefs_stats wait_count(glidefs_volume *v, size_t field, uint64_t want,
                                       const char *what)
{
    int64_t deadline = mono_ms() + 30000;
    struct glidefs_stats st = stats_of(v);
    uint64_t got;
    for (;;) {
        memcpy(&got, (const char *)&st + field, sizeof got);
        if (got >= want || mono_ms() >= deadline)
            break;
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL); /* polling a condition, with a deadline */
        st = stats_of(v);
    }
    if (got != want)
        fail_msg("%s %llu blocks, want %llu", what, (unsigned long long)got,
                 (unsigned long long)want);
    return st;
}

/* ... the prefetch put `want` blocks into the cache. */
static struct glidefs_stats wait_prefetched(glidefs_volume *v, uint64_t want)
{
    return wait_count(v, offsetof(struct glidefs_stats, prefetched_blocks), want, "prefetched");
}

/* Wait until read-ahead's workers are gone (idle ones exit after 20 ms):
 * everything queued has landed. */
static void wait_ra_idle(glidefs_volume *v)
{
    gfs_ra_set_idle_ms(v->ra, 20);
    int64_t deadline = mono_ms() + 30000;
    while (gfs_ra_threads(v->ra) > 0 && mono_ms() < deadline) {
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL); /* polling a condition, with a deadline */
    }
    assert_int_equal(gfs_ra_threads(v->ra), 0);
}

/* Open `name` on an empty cache, wait for its prefetch of `want` blocks,
 * boot it (n blocks, salt) and check every read hit a prefetched block. */
static void wake_warm(struct tu_env *env, const char *name, uint64_t want, uint32_t n,
                      uint32_t salt)
{
    tu_rmrf(env->cache);
    glidefs_config *c = cfg_for(env, env->cache);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, 0, 0, &v), 0);
    struct glidefs_stats a = wait_prefetched(v, want);
    /* open's own GETs (volume.json, lease, manifest) and the profile's
     * included: the prefetch coalesces by segment */
    fprintf(stderr, "%s: %llu blocks prefetched with %llu GETs since open\n", name,
            (unsigned long long)a.prefetched_blocks, (unsigned long long)a.store_gets);
    assert_true(a.store_gets <= want / 5);
    boot(v, n, salt);
    struct glidefs_stats b = stats_of(v);
    assert_int_equal(b.store_gets, a.store_gets); /* the guest fetched nothing itself */
    assert_int_equal(b.cache_misses, 0);
    assert_int_equal(b.prefetch_hits, n < want ? n : want);
    assert_int_equal(b.prefetch_wasted_bytes, (want - b.prefetch_hits) * BS);
    assert_true(b.first_read_ms > 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
}

static void test_profile_prefetch_clone(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "wake");
    make_volume(&env, "p");

    /* first wake: no profile yet; the boot is recorded and stored at close */
    glidefs_config *c = cfg_for(&env, env.cache);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "p", 0, 0, &v), 0);
    boot(v, NPROF, 0);
    boot(v, NPROF, 0); /* a second pass adds nothing */
    struct glidefs_stats st = stats_of(v);
    assert_int_equal(st.profile_blocks_recorded, NPROF);
    assert_int_equal(st.prefetched_blocks, 0);
    assert_true(st.cache_misses >= NPROF);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* a read-only open (a follower) reads other blocks: it stores nothing */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "p", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    boot(v, 50, 7);
    assert_int_equal(stats_of(v).profile_blocks_recorded, 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* second wake on another empty cache: the profile comes first */
    wake_warm(&env, "p", NPROF, NPROF, 0);

    /* a clone starts with its parent's profile */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "p", 0, 0, &v), 0);
    assert_int_equal(glidefs_clone(v, NULL, "c"), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "c", 0, 0, &v), 0);
    wait_prefetched(v, NPROF);
    boot(v, NPROF, 0);
    boot(v, 40, 1000); /* and reads more: its own profile is refined */
    st = stats_of(v);
    assert_int_equal(st.prefetch_hits, NPROF);
    assert_int_equal(st.profile_blocks_recorded, NPROF + 40);
    assert_int_equal(glidefs_volume_close(v), 0);
    wake_warm(&env, "c", NPROF + 40, NPROF, 0);
    /* the parent kept its own */
    wake_warm(&env, "p", NPROF, NPROF, 0);

    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

/* The prefetch GETs wait here until released. */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hook_cv = PTHREAD_COND_INITIALIZER;
static int hook_entered, hook_open;

static void hold_hook(void *arg, uint64_t b0, uint32_t n)
{
    (void)arg;
    (void)b0;
    (void)n;
    pthread_mutex_lock(&hook_mu);
    hook_entered++;
    pthread_cond_broadcast(&hook_cv);
    while (!hook_open)
        pthread_cond_wait(&hook_cv, &hook_mu);
    pthread_mutex_unlock(&hook_mu);
}

static void test_stop_when_not_followed(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "wake-stop");
    make_volume(&env, "s");
    /* a long profile: every block */
    glidefs_config *c = cfg_for(&env, env.cache);
    tu_set(c, "cache.readahead_kb", "256"); /* 64 blocks in flight at most */
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "s", 0, 0, &v), 0);
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    for (uint32_t off = 0; off < NBLK * BS; off += 1u << 20)
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
    free(buf);
    assert_int_equal(stats_of(v).profile_blocks_recorded, NBLK);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* shrink the profile to the first half of the volume, read in order:
     * the guest then reads only the second half */
    tu_rmrf(env.cache);
    tu_set(c, "cache.profile_mb", "8");
    assert_int_equal(glidefs_volume_open(c, "s", 0, 0, &v), 0);
    buf = malloc(BS);
    for (uint32_t b = 0; b < NBLK / 2; b++)
        assert_int_equal(glidefs_pread(v, buf, BS, (uint64_t)b * BS), 0);
    assert_int_equal(stats_of(v).profile_blocks_recorded, NBLK / 2);
    assert_int_equal(glidefs_volume_close(v), 0);

    tu_rmrf(env.cache);
    /* set at open, before the profile loads: the first prefetch GETs wait */
    c->ra_test_hook = hold_hook;
    assert_int_equal(glidefs_volume_open(c, "s", 0, 0, &v), 0);
    pthread_mutex_lock(&hook_mu);
    while (!hook_entered)
        pthread_cond_wait(&hook_cv, &hook_mu);
    pthread_mutex_unlock(&hook_mu);
    /* the guest reads blocks of the second half, none in the profile */
    for (uint32_t i = 0; i < GFS_WAKE_OFF_RUN + 8; i++) {
        uint64_t b = NBLK / 2 + (uint64_t)i * 29 % (NBLK / 2);
        assert_int_equal(glidefs_pread(v, buf, BS, b * BS), 0);
        assert_memory_equal(buf, expected + b * BS, BS);
    }
    pthread_mutex_lock(&v->lock);
    int stopped = v->wake.stopped;
    pthread_mutex_unlock(&v->lock);
    assert_true(stopped);
    /* let the held GETs land; no worker left means nothing more was queued */
    pthread_mutex_lock(&hook_mu);
    hook_open = 1;
    pthread_cond_broadcast(&hook_cv);
    pthread_mutex_unlock(&hook_mu);
    wait_ra_idle(v);
    pthread_mutex_lock(&v->lock);
    uint32_t pos = gfs_ra_prefetch_pos(v->ra);
    pthread_mutex_unlock(&v->lock);
    struct glidefs_stats st = stats_of(v);
    fprintf(stderr, "stopped at profile position %u of %u (%llu blocks prefetched)\n", pos,
            NBLK / 2, (unsigned long long)st.prefetched_blocks);
    /* nothing past the first in-flight batch (64 blocks) was fetched */
    assert_true(pos <= 64);
    assert_true(st.prefetched_blocks <= 64);
    assert_int_equal(glidefs_volume_close(v), 0);
    free(buf);
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

/* While the guest follows the profile, a sequential stream's read-ahead
 * fetches only the profile's blocks: a boot that reads a file in order
 * gets what it reads, not the 16 MiB window past it. */
static void test_guided_readahead(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "wake-guided");
    make_volume(&env, "g");
    glidefs_config *c = cfg_for(&env, env.cache);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "g", 0, 0, &v), 0);
    boot(v, NPROF, 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "g", 0, 0, &v), 0);
    wait_prefetched(v, NPROF);
    struct glidefs_stats a = stats_of(v);
    /* a file read in order from a profile block: 16 blocks, 4 KiB each */
    uint64_t b0 = boot_block(0, 0);
    if (b0 + 16 > NBLK)
        b0 = NBLK - 16;
    uint8_t buf[BS];
    for (uint64_t b = b0; b < b0 + 16; b++) {
        assert_int_equal(glidefs_pread(v, buf, BS, b * BS), 0);
        assert_memory_equal(buf, expected + b * BS, BS);
    }
    wait_ra_idle(v); /* whatever was queued has landed */
    struct glidefs_stats b = stats_of(v);
    uint64_t more = (b.cached_bytes - a.cached_bytes) / BS;
    fprintf(stderr, "guided: a 16-block stream cached %llu more blocks\n",
            (unsigned long long)more);
    assert_true(more <= 16);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

/* ... the layout copied `want` blocks. */
static struct glidefs_stats wait_laid(glidefs_volume *v, uint64_t want)
{
    return wait_count(v, offsetof(struct glidefs_stats, layout_blocks), want, "layout copied");
}

#define LAID 256u /* cache.profile_mb 1 of 4 KiB blocks */

static void layout_case(const char *password)
{
    struct tu_env env;
    tu_env_init(&env, password ? "wake-layout-enc" : "wake-layout");
    /* NBLK blocks written in order: 256 segments of 16; the boot's 300
     * blocks are spread over most of them */
    glidefs_config *c = cfg_for(&env, env.cache);
    tu_set(c, "servers.nbd.blocks_per_batch", "16");
    if (password)
        tu_set(c, "storage.encryption_password", password);
    make_volume_with(&env, "l", c);
    /* the first wake records the first 1 MiB of the boot (256 blocks; a
     * full profile is over at once, whatever the store's speed): a
     * first-time read pattern is not laid out */
    tu_set(c, "cache.profile_s", "60");
    tu_set(c, "cache.profile_mb", "1");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "l", 0, 0, &v), 0);
    boot(v, NPROF, 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(stats_of(v).layout_blocks, 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* the same boot again (another empty cache): it recurs, the layout runs */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "l", 0, 0, &v), 0);
    wait_prefetched(v, LAID);
    boot(v, NPROF, 0);
    struct glidefs_stats a = stats_of(v);
    assert_int_equal(a.profile_blocks_recorded, LAID);
    /* a write to a profile block after it was read: the copy must not undo it */
    uint64_t b5 = boot_block(5, 0);
    memset(expected + b5 * BS, 0x5a, BS);
    assert_int_equal(glidefs_pwrite(v, expected + b5 * BS, BS, b5 * BS, 0), 0);
    struct glidefs_stats b = wait_laid(v, LAID);
    fprintf(stderr, "layout: %llu blocks copied together\n",
            (unsigned long long)b.layout_blocks);
    /* every block reads right after the move */
    boot(v, NPROF, 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* the next wake, another empty cache: the profile's blocks come in a
     * few GETs (16 dense segments; about 170 before the layout) */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "l", 0, 0, &v), 0);
    struct glidefs_stats w = wait_prefetched(v, LAID);
    fprintf(stderr, "layout: %llu blocks prefetched with %llu GETs since open (%llu segments)\n",
            (unsigned long long)w.prefetched_blocks, (unsigned long long)w.store_gets,
            (unsigned long long)w.segments);
    /* one GET per dense segment, plus open's own (volume.json, lease,
     * manifest, profile, ...: 6 or so) */
    assert_true(w.store_gets <= LAID / 16 + 10);
    boot(v, LAID, 0);
    struct glidefs_stats e = stats_of(v);
    assert_int_equal(e.cache_misses, 0);
    assert_int_equal(e.prefetch_hits, LAID);
    assert_int_equal(e.layout_blocks, 0); /* dense already: nothing copied again */
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

static void test_layout(void **state)
{
    (void)state;
    layout_case(NULL);
}

static void test_layout_sealed(void **state)
{
    (void)state;
    layout_case("layout test");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profile_prefetch_clone),
        cmocka_unit_test(test_stop_when_not_followed),
        cmocka_unit_test(test_guided_readahead),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_layout_sealed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
