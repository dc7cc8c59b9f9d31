/*
 * test_cache.c — the clean-block cache with a handful of slots: claim /
 * commit / lookup / still / drop / shrink, eviction under the byte budget,
 * CLOCK second chance, location-checked lookups, generations that change on
 * eviction and refill, data placement at block * block_size in the cache
 * file, and hole punching of evicted blocks (st_blocks drops). The block
 * map's renumbering (reclaim of deleted segments' rows): valid slots follow
 * it or go, and a fill that straddles it is never committed under an index
 * of the old numbering (which names another segment afterwards). Every
 * punch of a block's data comes after its slot's generation changed (seen
 * by interposing fallocate), so a reader that read the hole retries.
 * What the node's budget hears (acct), a filler's write after its claim
 * was dropped, and the file emptied at close.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "blockmap.h"
#include "cache.h"

#define BS 65536u

struct fx {
    char dir[256];
    char path[300];
    struct gfs_cache c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    const char *t = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/gfs-cache-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/cache.dat", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    gfs_cache_close(&f->c);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static uint64_t file_blocks(const struct gfs_cache *c)
{
    struct stat st;
    assert_int_equal(fstat(c->fd, &st), 0);
    return (uint64_t)st.st_blocks;
}

/* Fill block b's data (a pattern derived from b and tag) at b * BS. */
static void put_data(struct gfs_cache *c, uint64_t b, uint8_t tag)
{
    static uint8_t buf[BS];
    for (uint32_t i = 0; i < BS; i++)
        buf[i] = (uint8_t)(b * 31 + i * 7 + tag);
    assert_int_equal(pwrite(c->fd, buf, BS, (off_t)(b * BS)), (ssize_t)BS);
}

static void check_data(struct gfs_cache *c, uint64_t b, uint8_t tag)
{
    static uint8_t buf[BS];
    assert_int_equal(pread(c->fd, buf, BS, (off_t)(b * BS)), (ssize_t)BS);
    for (uint32_t i = 0; i < BS; i++)
        if (buf[i] != (uint8_t)(b * 31 + i * 7 + tag))
            fail_msg("block %llu byte %u: %u", (unsigned long long)b, i, buf[i]);
}

/* Claim, write the data, commit at (seg, off). Returns the slot and its gen. */
static int64_t fill_gen(struct gfs_cache *c, uint64_t b, uint32_t seg, uint32_t off, uint64_t max,
                        uint32_t *genp)
{
    uint32_t gen;
    int64_t s = gfs_cache_claim(c, b, max, &gen);
    assert_true(s >= 0);
    assert_true(s < c->nslots);
    assert_int_equal(c->slots[s].state, 1);
    put_data(c, b, (uint8_t)seg);
    gfs_cache_commit(c, s, gen, seg, off, 1);
    assert_int_equal(c->slots[s].state, 2);
    *genp = gen;
    return s;
}

static int64_t fill(struct gfs_cache *c, uint64_t b, uint32_t seg, uint32_t off, uint64_t max)
{
    uint32_t gen;
    return fill_gen(c, b, seg, off, max, &gen);
}

static int hit(struct gfs_cache *c, uint64_t b, uint32_t seg, uint32_t off)
{
    uint32_t g;
    return gfs_cache_lookup(c, b, seg, off, &g) >= 0;
}

static void test_basic(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 4), 0);
    uint64_t max = 4 * (uint64_t)BS;
    uint32_t g;
    assert_int_equal(gfs_cache_lookup(c, 5, 1, 0, &g), -1);
    int64_t s = fill(c, 5, 1, 100, max);
    assert_int_equal(c->bytes, BS);
    assert_int_equal(c->nvalid, 1);
    /* exact location hits, data reads back at 5 * BS */
    uint32_t gen;
    assert_int_equal(gfs_cache_lookup(c, 5, 1, 100, &gen), s);
    assert_true(gfs_cache_still(c, s, 5, gen));
    check_data(c, 5, 1);
    /* another location misses: different seg, different offset, other block */
    assert_int_equal(gfs_cache_lookup(c, 5, 2, 100, &g), -1);
    assert_int_equal(gfs_cache_lookup(c, 5, 1, 101, &g), -1);
    assert_int_equal(gfs_cache_lookup(c, 6, 1, 100, &g), -1);
    assert_true(!gfs_cache_still(c, s, 5, gen + 1));

    /* a block being filled cannot be claimed again, and does not hit */
    uint32_t g7;
    int64_t s7 = gfs_cache_claim(c, 7, max, &g7);
    assert_true(s7 >= 0 && s7 != s);
    assert_int_equal(gfs_cache_claim(c, 7, max, &g), -1);
    assert_int_equal(gfs_cache_lookup(c, 7, 0, 0, &g), -1);
    assert_int_equal(c->bytes, 2 * (uint64_t)BS);
    assert_int_equal(c->nvalid, 1);
    /* commit with ok = 0 releases: space returned, claimable again */
    gfs_cache_commit(c, s7, g7, 3, 0, 0);
    assert_int_equal(c->slots[s7].state, 0);
    assert_int_equal(c->bytes, BS);
    assert_int_equal(c->nvalid, 1);
    assert_int_equal(gfs_cache_lookup(c, 7, 3, 0, &g), -1);
    int64_t s7b = gfs_cache_claim(c, 7, max, &g);
    assert_true(s7b >= 0);
    assert_true(g != g7);
    gfs_cache_commit(c, s7b, g, 3, 0, 1);
    assert_true(hit(c, 7, 3, 0));
    assert_int_equal(c->nvalid, 2);

    /* drop */
    gfs_cache_drop(c, 5);
    assert_true(!gfs_cache_still(c, s, 5, gen));
    assert_int_equal(gfs_cache_lookup(c, 5, 1, 100, &g), -1);
    assert_int_equal(c->bytes, BS);
    assert_int_equal(c->nvalid, 1);
    gfs_cache_drop(c, 5);      /* absent: no-op */
    gfs_cache_drop(c, 12345);  /* never cached: no-op */
    assert_int_equal(c->bytes, BS);
    assert_true(hit(c, 7, 3, 0));
}

static void test_refill_gen(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 2), 0);
    uint64_t max = 2 * (uint64_t)BS;
    int64_t s = fill(c, 3, 1, 0, max);
    uint32_t gen;
    assert_int_equal(gfs_cache_lookup(c, 3, 1, 0, &gen), s);
    /* refill in place: same slot, new gen; the old reader sees stale */
    uint32_t g2;
    assert_int_equal(gfs_cache_claim(c, 3, max, &g2), s);
    assert_true(g2 != gen);
    assert_true(!gfs_cache_still(c, s, 3, gen));
    assert_int_equal(c->nvalid, 0);
    assert_int_equal(c->bytes, BS);
    uint32_t g;
    assert_int_equal(gfs_cache_lookup(c, 3, 1, 0, &g), -1); /* filling: no hit */
    put_data(c, 3, 2);
    gfs_cache_commit(c, s, g2, 2, 512, 1);
    /* the old location misses, the new one hits with the new data */
    assert_int_equal(gfs_cache_lookup(c, 3, 1, 0, &g), -1);
    uint32_t g3;
    assert_int_equal(gfs_cache_lookup(c, 3, 2, 512, &g3), s);
    assert_int_equal(g3, g2);
    assert_true(gfs_cache_still(c, s, 3, g3));
    check_data(c, 3, 2);
    assert_int_equal(c->nvalid, 1);

    /* drop while filling: the filler's commit is ignored */
    uint32_t g4;
    assert_int_equal(gfs_cache_claim(c, 3, max, &g4), s);
    gfs_cache_drop(c, 3);
    assert_int_equal(c->bytes, 0);
    assert_int_equal(c->nvalid, 0);
    gfs_cache_commit(c, s, g4, 2, 512, 1);
    assert_int_equal(gfs_cache_lookup(c, 3, 2, 512, &g), -1);
    assert_int_equal(c->slots[s].state, 0);
    assert_int_equal(c->bytes, 0);

    /* eviction changes gen: a reader that looked up before sees stale */
    int64_t sa = fill(c, 10, 1, 0, max);
    uint32_t ga;
    assert_int_equal(gfs_cache_lookup(c, 10, 1, 0, &ga), sa);
    fill(c, 11, 1, 0, max);
    fill(c, 12, 1, 0, max); /* needs room: evicts 10 or 11 */
    fill(c, 13, 1, 0, max);
    assert_int_equal(c->bytes, max);
    /* two slots, both holding newer blocks: block 10 is gone */
    assert_true(!hit(c, 10, 1, 0));
    assert_true(!gfs_cache_still(c, sa, 10, ga));
}

/* A filler whose block was dropped while it filled commits late, after a
 * second claimant got the same slot (for the same or another block). The
 * late commit must not make anything valid, and must not take the slot away
 * from the second claimant: its own claim/commit is "valid with the
 * location" (cache.h), and the bytes it wrote must stay accounted. */
static void run_stale_commit(struct fx *f, int same_block)
{
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 1), 0);
    uint64_t max = (uint64_t)BS;
    uint64_t ba = 7, bb = same_block ? 7 : 8;
    uint32_t ga, gb, g;
    int64_t sa = gfs_cache_claim(c, ba, max, &ga); /* A starts filling */
    assert_int_equal(sa, 0);
    gfs_cache_drop(c, ba);                         /* a write invalidates it */
    assert_int_equal(c->bytes, 0);
    int64_t sb = gfs_cache_claim(c, bb, max, &gb); /* B gets the only slot */
    assert_int_equal(sb, 0);
    assert_true(gb != ga);
    put_data(c, ba, 1);                            /* A's pread of the store lands */
    gfs_cache_commit(c, sa, ga, 1, 0, 1);          /* A commits late: stale */
    assert_int_equal(gfs_cache_lookup(c, ba, 1, 0, &g), -1); /* never valid */
    put_data(c, bb, 2);                            /* B's data */
    gfs_cache_commit(c, sb, gb, 2, 0, 1);          /* B commits: its claim is current */
    int64_t hb = gfs_cache_lookup(c, bb, 2, 0, &g);
    assert_int_equal(hb, sb);
    check_data(c, bb, 2);
    assert_int_equal(c->bytes, BS);
    assert_int_equal(c->nvalid, 1);
}

static void sum_acct(void *arg, int64_t delta)
{
    *(int64_t *)arg += delta;
}

/* What the node's budget hears: every byte claimed before its data is
 * written, every byte given back after its hole is punched, the file emptied
 * at close; a filler whose claim was dropped while it wrote leaves no
 * allocated block behind that nobody counts. */
static void test_acct(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 8), 0);
    int64_t acct = 0;
    c->acct = sum_acct;
    c->acct_arg = &acct;
    uint64_t max = UINT64_MAX;
    for (uint64_t b = 0; b < 3; b++)
        fill(c, b, 1, 0, max);
    assert_int_equal(acct, 3 * BS);
    assert_int_equal(file_blocks(c) * 512, 3 * BS);
    assert_int_equal(gfs_cache_shrink(c, BS), 2 * BS);
    assert_int_equal(acct, BS);
    assert_int_equal(file_blocks(c) * 512, BS);
    /* a claim is charged before the filler writes */
    uint32_t ga, gb;
    int64_t sa = gfs_cache_claim(c, 5, max, &ga);
    assert_true(sa >= 0);
    assert_int_equal(acct, 2 * BS);
    assert_true(gfs_cache_present(c, 5));
    /* dropped while filling; the filler's write lands after the punch */
    gfs_cache_drop(c, 5);
    assert_false(gfs_cache_present(c, 5));
    assert_int_equal(acct, BS);
    put_data(c, 5, 1);
    assert_int_equal(file_blocks(c) * 512, 2 * BS); /* allocated, counted by nobody */
    assert_int_equal(gfs_cache_commit(c, sa, ga, 1, 0, 1), 0);
    gfs_cache_stale_write(c, 5);
    assert_int_equal(file_blocks(c) * 512, BS); /* punched again */
    /* the same, but the block was claimed again meanwhile: that claim owns it */
    sa = gfs_cache_claim(c, 6, max, &ga);
    gfs_cache_drop(c, 6);
    int64_t sb = gfs_cache_claim(c, 6, max, &gb);
    assert_true(sb >= 0);
    put_data(c, 6, 1);
    assert_int_equal(gfs_cache_commit(c, sa, ga, 1, 0, 1), 0);
    gfs_cache_stale_write(c, 6);
    assert_int_equal(file_blocks(c) * 512, 2 * BS);
    assert_int_equal(gfs_cache_commit(c, sb, gb, 1, 0, 1), 1);
    check_data(c, 6, 1);
    assert_int_equal(acct, 2 * BS);
    assert_int_equal((uint64_t)acct, c->bytes);
    /* closing empties the file: the space goes back at once */
    int fd = dup(c->fd);
    gfs_cache_close(c);
    assert_int_equal(acct, 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_blocks, 0);
    assert_int_equal(st.st_size, 0);
    close(fd);
}

static void test_stale_commit_same_block(void **state)
{
    run_stale_commit(*state, 1);
}

static void test_stale_commit_other_block(void **state)
{
    run_stale_commit(*state, 0);
}

static void test_budget(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 8), 0);
    /* the byte budget allows 3 blocks even though there are 8 slots */
    uint64_t max = 3 * (uint64_t)BS;
    for (uint64_t b = 0; b < 50; b++) {
        fill(c, b, 1, (uint32_t)b, max);
        assert_true(c->bytes <= max);
        assert_true(c->nvalid <= 3);
        int live = 0;
        for (uint64_t q = 0; q <= b; q++)
            live += hit(c, q, 1, (uint32_t)q);
        assert_int_equal(live, b < 3 ? (int)b + 1 : 3);
        assert_true(hit(c, b, 1, (uint32_t)b)); /* the newest is always there */
        check_data(c, b, 1);
    }
    /* a budget smaller than one block: claim refuses once nothing is evictable */
    uint32_t g;
    gfs_cache_shrink(c, 0);
    assert_int_equal(c->bytes, 0);
    assert_int_equal(c->nvalid, 0);
    assert_int_equal(gfs_cache_claim(c, 100, BS - 1, &g), -1);
    assert_int_equal(c->bytes, 0);
    /* filling slots count against the budget and are never evicted */
    uint32_t ga, gb;
    int64_t sa = gfs_cache_claim(c, 200, 2 * (uint64_t)BS, &ga);
    int64_t sb = gfs_cache_claim(c, 201, 2 * (uint64_t)BS, &gb);
    assert_true(sa >= 0 && sb >= 0 && sa != sb);
    assert_int_equal(gfs_cache_claim(c, 202, 2 * (uint64_t)BS, &g), -1);
    gfs_cache_shrink(c, 0);
    assert_int_equal(c->bytes, 2 * (uint64_t)BS);
    assert_int_equal(c->slots[sa].state, 1);
    gfs_cache_commit(c, sa, ga, 1, 0, 1);
    gfs_cache_commit(c, sb, gb, 1, 0, 0);
    assert_int_equal(c->bytes, BS);
    assert_true(hit(c, 200, 1, 0));
    assert_true(!hit(c, 201, 1, 0));
}

static void test_all_slots_filling(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 3), 0);
    uint64_t max = UINT64_MAX / 2;
    uint32_t g[3], gx;
    int64_t s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = gfs_cache_claim(c, (uint64_t)i, max, &g[i]);
        assert_true(s[i] >= 0);
    }
    /* every slot busy filling: nothing to evict */
    assert_int_equal(gfs_cache_claim(c, 9, max, &gx), -1);
    for (int i = 0; i < 3; i++)
        gfs_cache_commit(c, s[i], g[i], 1, (uint32_t)i, 1);
    assert_int_equal(c->nvalid, 3);
    /* slot count, not bytes, is the limit now: a fourth block evicts one */
    assert_true(gfs_cache_claim(c, 9, max, &gx) >= 0);
    assert_int_equal(c->bytes, 3 * (uint64_t)BS);
    assert_int_equal(c->nvalid, 2);
    assert_int_equal(hit(c, 0, 1, 0) + hit(c, 1, 1, 1) + hit(c, 2, 1, 2), 2);
}

/* CLOCK: a slot referenced since the hand last passed survives one sweep,
 * and is evicted on the next one unless referenced again. Presence is checked
 * with gfs_cache_still, which (unlike lookup) leaves the reference bits alone. */
static void test_clock(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 4), 0);
    uint64_t max = 4 * (uint64_t)BS;
    int64_t sl[4];
    uint32_t gn[4];
    for (int i = 0; i < 4; i++)
        sl[i] = fill_gen(c, 100 + (uint64_t)i, 1, 0, max, &gn[i]);
    /* fresh fills are referenced: the first sweep clears every bit and
     * evicts the slot the hand started at, exactly one block */
    uint32_t h0 = c->hand;
    fill(c, 104, 1, 0, max);
    int gone = 0;
    for (int i = 0; i < 4; i++) {
        int here = gfs_cache_still(c, sl[i], 100 + (uint64_t)i, gn[i]);
        gone += !here;
        if (!here)
            assert_int_equal(sl[i], h0);
    }
    assert_int_equal(gone, 1);
    /* the slot now under the hand holds an unreferenced old block */
    uint32_t h = c->hand;
    assert_int_equal(c->slots[h].state, 2);
    assert_int_equal(c->slots[h].ref, 0);
    uint64_t pb = c->slots[h].block;
    assert_true(pb >= 100 && pb < 104);
    uint32_t pgen;
    assert_int_equal(gfs_cache_lookup(c, pb, 1, 0, &pgen), h); /* reference it */
    uint32_t n = (h + 1) % 4;
    uint64_t nb = c->slots[n].block;
    uint32_t ngen = c->slots[n].gen;
    assert_int_equal(c->slots[n].ref, 0);
    /* the next claim passes over the referenced slot, evicts its neighbour */
    fill(c, 105, 1, 0, max);
    assert_true(gfs_cache_still(c, h, pb, pgen));
    assert_true(!gfs_cache_still(c, n, nb, ngen));
    uint32_t g;
    assert_int_equal(gfs_cache_lookup(c, nb, 1, 0, &g), -1);
    /* the sweep took its bit: without a new reference it goes when the hand
     * comes round again, within one revolution */
    assert_int_equal(c->slots[h].ref, 0);
    uint64_t b = 200;
    while (gfs_cache_still(c, h, pb, pgen)) {
        assert_true(b < 200 + 4);
        fill(c, b++, 1, 0, max);
    }
    assert_int_equal(c->bytes, max);
    assert_int_equal(c->nvalid, 4);
}

static void test_punch(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 2), 0);
    uint64_t max = 2 * (uint64_t)BS;
    assert_int_equal(file_blocks(c), 0);
    fill(c, 1000, 1, 0, max);
    fill(c, 2000, 1, 0, max);
    check_data(c, 1000, 1);
    check_data(c, 2000, 1);
    uint64_t full = file_blocks(c);
    assert_true(full >= 2 * BS / 512);
    /* eviction punches: the file's allocation does not grow with a third
     * block, and the evicted block reads as zeroes */
    fill(c, 3000, 1, 0, max);
    assert_true(file_blocks(c) <= full);
    int gone1000 = !hit(c, 1000, 1, 0);
    uint64_t gone = gone1000 ? 1000 : 2000;
    assert_true(gone1000 ^ !hit(c, 2000, 1, 0));
    static uint8_t buf[BS];
    assert_int_equal(pread(c->fd, buf, BS, (off_t)(gone * BS)), (ssize_t)BS);
    for (uint32_t i = 0; i < BS; i++)
        assert_int_equal(buf[i], 0);
    check_data(c, 3000, 1);
    /* drop punches */
    uint64_t before = file_blocks(c);
    gfs_cache_drop(c, 3000);
    assert_true(file_blocks(c) <= before - BS / 512);
    /* a failed fill punches what the filler wrote */
    uint32_t g;
    int64_t s = gfs_cache_claim(c, 4000, max, &g);
    assert_true(s >= 0);
    before = file_blocks(c);
    put_data(c, 4000, 9);
    assert_true(file_blocks(c) >= before + BS / 512);
    gfs_cache_commit(c, s, g, 1, 0, 0);
    assert_true(file_blocks(c) <= before);
    /* shrink to nothing: the file holds no data */
    gfs_cache_shrink(c, 0);
    assert_int_equal(c->bytes, 0);
    assert_int_equal(file_blocks(c), 0);
}

static void test_reopen_empties(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 2), 0);
    fill(c, 1, 1, 0, 2 * (uint64_t)BS);
    gfs_cache_close(c);
    assert_int_equal(c->fd, -1);
    gfs_cache_close(c); /* twice is harmless */
    assert_int_equal(gfs_cache_open(c, f->path, BS, 2), 0);
    assert_true(!hit(c, 1, 1, 0));
    assert_int_equal(file_blocks(c), 0);
    struct stat st;
    assert_int_equal(fstat(c->fd, &st), 0);
    assert_int_equal(st.st_size, 0);
    /* a path that cannot be opened */
    struct gfs_cache bad;
    char p[400];
    snprintf(p, sizeof p, "%s/no/such/dir/cache.dat", f->dir);
    assert_int_equal(gfs_cache_open(&bad, p, BS, 2), -ENOENT);
    gfs_cache_close(&bad);
}

/* Random operations against the cache's own invariants and a model of which
 * (block -> location) pairs may hit. */
static void test_random(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    enum { NS = 5, NB = 16 };
    assert_int_equal(gfs_cache_open(c, f->path, 4096, NS), 0);
    uint64_t s = 0x1234567ULL;
    struct { int state; uint32_t seg; int64_t slot; uint32_t gen; } m[NB];
    memset(m, 0, sizeof m);
    for (int it = 0; it < 100000; it++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        uint64_t b = s % NB, op = (s >> 20) % 6;
        uint64_t max = (1 + (s >> 40) % NS) * 4096ull;
        uint32_t g;
        if (op == 0) {
            int64_t sl = gfs_cache_claim(c, b, max, &g);
            if (m[b].state == 1) {
                assert_int_equal(sl, -1);
            } else if (sl >= 0) {
                m[b].state = 1;
                m[b].slot = sl;
                m[b].gen = g;
            }
        } else if (op == 1 && m[b].state == 1) {
            int ok = (s >> 30) % 4 != 0;
            uint32_t seg = 1 + (uint32_t)((s >> 33) % 3);
            gfs_cache_commit(c, m[b].slot, m[b].gen, seg, 0, ok);
            m[b].state = ok ? 2 : 0;
            m[b].seg = seg;
        } else if (op == 2) {
            gfs_cache_drop(c, b);
            m[b].state = 0;
        } else if (op == 3) {
            gfs_cache_shrink(c, max);
            assert_true(c->bytes <= max || c->nvalid == 0);
        } else {
            uint32_t seg = 1 + (uint32_t)((s >> 33) % 3);
            int64_t sl = gfs_cache_lookup(c, b, seg, 0, &g);
            if (sl >= 0) {
                assert_int_equal(m[b].state, 2); /* only committed data hits */
                assert_int_equal(m[b].seg, seg);
                assert_true(gfs_cache_still(c, sl, b, g));
            }
        }
        /* blocks evicted behind the model's back */
        uint32_t nvalid = 0, nused = 0;
        for (uint32_t i = 0; i < NS; i++) {
            if (c->slots[i].state == 2)
                nvalid++;
            if (c->slots[i].state)
                nused++;
        }
        for (uint64_t q = 0; q < NB; q++) {
            if (m[q].state == 2 && !(c->slots[m[q].slot].state == 2 && c->slots[m[q].slot].block == q))
                m[q].state = 0;
            if (m[q].state == 1) {
                assert_int_equal(c->slots[m[q].slot].state, 1);
                assert_int_equal(c->slots[m[q].slot].block, q);
                assert_int_equal(c->slots[m[q].slot].gen, m[q].gen);
            }
        }
        assert_int_equal(c->nvalid, nvalid);
        assert_int_equal(c->bytes, (uint64_t)nused * 4096);
        assert_int_equal(c->map.count, nused);
    }
}

/* fallocate, interposed: the cache's own calls come here (the library is
 * linked statically into this test). A punch while the punched block's
 * slot still has the generation a reader may have taken is a reader
 * serving zeroes. */
static struct gfs_cache *watch;
static uint32_t watch_gen[16];
static uint8_t watch_valid[16];
static int punches, punch_before_bump;

int fallocate(int fd, int mode, off_t off, off_t len)
{
    if (watch && (mode & FALLOC_FL_PUNCH_HOLE)) {
        punches++;
        for (uint32_t i = 0; i < watch->nslots && i < 16; i++)
            if (watch_valid[i] && watch->slots[i].block == (uint64_t)off / BS &&
                __atomic_load_n(&watch->slots[i].gen, __ATOMIC_SEQ_CST) == watch_gen[i])
                punch_before_bump++;
    }
    return (int)syscall(SYS_fallocate, fd, mode, (long)off, (long)len);
}

static void watch_now(struct gfs_cache *c)
{
    watch = c;
    for (uint32_t i = 0; i < c->nslots && i < 16; i++) {
        watch_gen[i] = c->slots[i].gen;
        watch_valid[i] = c->slots[i].state != 0;
    }
}

static void test_punch_after_bump(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 8), 0);
    uint64_t max = 4 * (uint64_t)BS;
    for (uint64_t b = 0; b < 4; b++)
        fill(c, b, 1, (uint32_t)b, max);
    punches = punch_before_bump = 0;
    /* drop of a valid block */
    watch_now(c);
    gfs_cache_drop(c, 2);
    /* eviction by a claim past the budget */
    watch_now(c);
    fill(c, 9, 1, 9, max);
    /* drop of a block being filled, and its filler's commit */
    uint32_t g;
    watch_now(c);
    int64_t s = gfs_cache_claim(c, 2, max + BS, &g);
    assert_true(s >= 0);
    watch_now(c);
    gfs_cache_drop(c, 2);
    gfs_cache_commit(c, s, g, 1, 2, 1);
    /* a failed fill, a renumbering that removes, a shrink, a clear */
    watch_now(c);
    s = gfs_cache_claim(c, 3, max + BS, &g);
    assert_true(s >= 0);
    gfs_cache_commit(c, s, g, 1, 3, 0);
    uint32_t map[2] = {0, 0};
    watch_now(c);
    gfs_cache_renumber(c, map, 2);
    fill(c, 5, 7, 5, max);
    fill(c, 6, 7, 6, max);
    watch_now(c);
    gfs_cache_shrink(c, BS);
    watch_now(c);
    gfs_cache_clear(c);
    watch = NULL;
    assert_true(punches >= 8);
    assert_int_equal(punch_before_bump, 0);
}

/* Valid slots follow the new numbering (no generation change: same data),
 * slots of removed segments go, slots being filled are doomed. */
static void test_renumber(void **state)
{
    struct fx *f = *state;
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 8), 0);
    uint64_t max = 8 * (uint64_t)BS;
    uint32_t g1, g2, g3, g;
    int64_t s1 = fill_gen(c, 1, 5, 100, max, &g1);
    int64_t s2 = fill_gen(c, 2, 7, 0, max, &g2);
    int64_t s3 = fill_gen(c, 3, 9, 0, max, &g3);
    uint32_t g4;
    int64_t s4 = gfs_cache_claim(c, 4, max, &g4);
    assert_true(s4 >= 0);
    assert_int_equal(c->bytes, 4 * (uint64_t)BS);
    uint32_t map[10] = {0, 1, 2, 0, 0, 3, 0, 0, 0, 4};
    gfs_cache_renumber(c, map, 10);
    /* moved: found at the new index only, readers of the old gen unaffected */
    assert_true(hit(c, 1, 3, 100));
    assert_false(hit(c, 1, 5, 100));
    assert_true(gfs_cache_still(c, s1, 1, g1));
    check_data(c, 1, 5);
    assert_true(hit(c, 3, 4, 0));
    assert_true(gfs_cache_still(c, s3, 3, g3));
    /* its segment went: released, a reader of it sees the change */
    assert_false(hit(c, 2, 7, 0));
    assert_false(hit(c, 2, 0, 0));
    assert_false(gfs_cache_still(c, s2, 2, g2));
    assert_int_equal(c->nvalid, 2);
    /* the fill in flight commits nothing */
    put_data(c, 4, 9);
    gfs_cache_commit(c, s4, g4, 9, 0, 1);
    assert_false(hit(c, 4, 9, 0));
    assert_false(hit(c, 4, 4, 0));
    assert_int_equal(c->bytes, 2 * (uint64_t)BS);
    assert_int_equal(c->nvalid, 2);
    /* and the block can be filled again, under the new numbering */
    fill(c, 4, 4, 0, max);
    assert_true(hit(c, 4, 4, 0));
    assert_int_equal(gfs_cache_lookup(c, 2, 7, 0, &g), -1);
}

/* The sequence of a cache fill (blockio.c): the index read from the map
 * under the lock, the slot claimed, the lock dropped for the pwrite, the
 * commit. A reclaim in the gap renumbers the map, and the captured index
 * then names another segment: the commit must not make the block hit
 * there. Without a reclaim the same sequence commits (control). */
static void straddle(struct fx *f, int reclaim)
{
    struct gfs_cache *c = &f->c;
    assert_int_equal(gfs_cache_open(c, f->path, BS, 8), 0);
    uint64_t max = 8 * (uint64_t)BS;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 64), 0);
    for (uint64_t q = 1; q <= 6; q++)
        assert_int_equal(gfs_bm_seg_add(&bm, 1, q, 1000), (int64_t)q);
    struct gfs_bm_entry e10 = {.seg = 3, .offset = 40, .length = 100, .crc = 1, .write_seq = 7};
    struct gfs_bm_entry e11 = {.seg = 5, .offset = 40, .length = 100, .crc = 2, .write_seq = 8};
    assert_int_equal(gfs_bm_set(&bm, 10, &e10), 0);
    assert_int_equal(gfs_bm_set(&bm, 11, &e11), 0);
    bm.segs[1].deleted = bm.segs[2].deleted = 1; /* (1,1) and (1,2): nothing live */
    /* block 11 is cached already, from (1,5) */
    fill(c, 11, 5, 40, max);
    /* the reader of block 10: index and slot under the lock ... */
    struct gfs_bm_entry e = gfs_bm_get(&bm, 10);
    assert_int_equal(e.seg, 3);
    uint32_t gen;
    int64_t slot = gfs_cache_claim(c, 10, max, &gen);
    assert_true(slot >= 0);
    /* ... the lock dropped: the data written, and maybe a reclaim */
    put_data(c, 10, 3);
    if (reclaim)
        assert_int_equal(gfs_bm_seg_reclaim(&bm, 0, gfs_cache_renumber, c), 2);
    /* ... the lock taken again: the commit with the captured index */
    gfs_cache_commit(c, slot, gen, e.seg, e.offset, 1);
    struct gfs_bm_entry now10 = gfs_bm_get(&bm, 10), now11 = gfs_bm_get(&bm, 11);
    assert_int_equal(bm.segs[now10.seg].seq, 3);
    assert_int_equal(bm.segs[now11.seg].seq, 5);
    /* block 11 hits where the map now says */
    assert_true(hit(c, 11, now11.seg, 40));
    if (reclaim) {
        /* index 3 is (1,5) now: block 10 must not hit there, nor anywhere */
        assert_int_equal(now10.seg, 1);
        assert_int_equal(bm.segs[3].seq, 5);
        assert_false(hit(c, 10, 3, 40));
        assert_false(hit(c, 10, now10.seg, 40));
        assert_int_equal(c->nvalid, 1);
    } else {
        assert_true(hit(c, 10, now10.seg, 40));
        assert_int_equal(c->nvalid, 2);
    }
    gfs_bm_free(&bm);
}

static void test_fill_straddles_reclaim(void **state)
{
    straddle(*state, 1);
}

static void test_fill_without_reclaim(void **state)
{
    straddle(*state, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refill_gen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_commit_same_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_commit_other_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_slots_filling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_punch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_empties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renumber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_punch_after_bump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_straddles_reclaim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_without_reclaim, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
