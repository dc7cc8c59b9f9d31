/*
 * cache.c — the clean-block cache (see cache.h).
 */
#include "cache.h"
#include "cache_index.h"
#include "fastread.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void release(struct gfs_cache *c, struct gfs_cache_slot *s);
static inline void bump(struct gfs_cache *c, struct gfs_cache_slot *s);
static void cacct(struct gfs_cache *c, int64_t delta);

static int cache_open(struct gfs_cache *c, const char *path, uint32_t block_size,
                      uint32_t nslots, int keep)
{
    memset(c, 0, sizeof *c);
    c->block_size = block_size;
    c->nslots = nslots ? nslots : 1;
    gfs_u64map_init(&c->map);
    c->slots = calloc(c->nslots, sizeof *c->slots);
    if (!c->slots)
        return -ENOMEM;
    /* Without a parked index what the file held is unknown: start empty. */
    c->fd = open(path, O_RDWR | O_CREAT | (keep ? 0 : O_TRUNC) | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        free(c->slots);
        c->slots = NULL;
        return -errno;
    }
    return 0;
}

int gfs_cache_open(struct gfs_cache *c, const char *path, uint32_t block_size, uint32_t nslots)
{
    return cache_open(c, path, block_size, nslots, 0);
}

int gfs_cache_open_keep(struct gfs_cache *c, const char *path, uint32_t block_size,
                        uint32_t nslots)
{
    return cache_open(c, path, block_size, nslots, 1);
}

int gfs_cache_restore(struct gfs_cache *c, uint64_t block, uint32_t seg, uint32_t offset)
{
    if (gfs_u64map_get(&c->map, block))
        return -EEXIST;
    if (c->nvalid >= c->nslots)
        return -ENOSPC;
    /* restored in order, so the free slot is the next one (no eviction here:
     * the caller admitted each block against the budget) */
    uint32_t i = c->hand;
    while (c->slots[i].state != 0) {
        i = (i + 1) % c->nslots;
        if (i == c->hand)
            return -ENOSPC;
    }
    if (gfs_u64map_put(&c->map, block, (void *)(uintptr_t)(i + 1)) < 0)
        return -ENOMEM;
    struct gfs_cache_slot *s = &c->slots[i];
    s->block = block;
    s->seg = seg;
    s->offset = offset;
    s->state = 2;
    s->doomed = 0;
    s->ref = 0; /* not read in this life yet: first to go if space is short */
    bump(c, s);
    c->nvalid++;
    c->bytes += c->block_size;
    cacct(c, c->block_size);
    c->hand = (i + 1) % c->nslots;
    return 0;
}

void gfs_cache_forget(struct gfs_cache *c, uint64_t block)
{
    if (c->slots && !gfs_u64map_get(&c->map, block))
        fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(block * c->block_size), c->block_size);
}

int gfs_cache_park_entries(struct gfs_cache *c, struct gfs_cidx_entry **out, size_t *count,
                           int (*seg_id)(void *arg, uint32_t seg, uint64_t *epoch, uint64_t *seq),
                           void *arg)
{
    *out = NULL;
    *count = 0;
    if (!c->slots || c->nvalid == 0)
        return 0;
    struct gfs_cidx_entry *e = malloc((size_t)c->nvalid * sizeof *e);
    if (!e)
        return -ENOMEM;
    size_t n = 0;
    for (uint32_t i = 0; i < c->nslots; i++) {
        struct gfs_cache_slot *s = &c->slots[i];
        if (s->state == 1 || (s->state == 2 && s->doomed)) {
            release(c, s); /* a fill that never finished: its bytes are not known good */
            continue;
        }
        if (s->state != 2)
            continue;
        if (n >= c->nvalid || seg_id(arg, s->seg, &e[n].epoch, &e[n].seq) < 0) {
            release(c, s); /* no stable name for where it came from: not kept */
            continue;
        }
        e[n].block = s->block;
        e[n].offset = s->offset;
        n++;
    }
    if (n == 0) {
        free(e);
        e = NULL;
    }
    *out = e;
    *count = n;
    return 0;
}

static void cacct(struct gfs_cache *c, int64_t delta)
{
    if (c->acct && delta)
        c->acct(c->acct_arg, delta);
}

static void cache_close(struct gfs_cache *c, int keep)
{
    gfs_fr_inval_all(c->fr); /* the file goes */
    if (c->slots) {
        /* without an index the data is of no use to anyone: give the space
         * back before the budget forgets this volume (kept: the budget
         * counts it as parked from now on) */
        if (!keep && ftruncate(c->fd, 0) == 0)
            cacct(c, -(int64_t)c->bytes);
        close(c->fd);
        free(c->slots);
        gfs_u64map_free(&c->map);
    }
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

void gfs_cache_close(struct gfs_cache *c)
{
    cache_close(c, 0);
}

int gfs_cache_sync(struct gfs_cache *c)
{
    return c->slots && fdatasync(c->fd) < 0 ? -errno : 0;
}

void gfs_cache_close_keep(struct gfs_cache *c)
{
    cache_close(c, 1);
}

int64_t gfs_cache_lookup(struct gfs_cache *c, uint64_t block, uint32_t seg, uint32_t offset,
                         uint32_t *gen)
{
    uintptr_t v = (uintptr_t)gfs_u64map_get(&c->map, block);
    if (!v)
        return -1;
    struct gfs_cache_slot *s = &c->slots[v - 1];
    if (s->state != 2 || s->seg != seg || s->offset != offset)
        return -1;
    s->ref = 1;
    *gen = s->gen;
    return (int64_t)(v - 1);
}

int gfs_cache_has(const struct gfs_cache *c, uint64_t block, uint32_t seg, uint32_t offset)
{
    uintptr_t v = (uintptr_t)gfs_u64map_get(&c->map, block);
    if (!v)
        return 0;
    const struct gfs_cache_slot *s = &c->slots[v - 1];
    return s->state == 1 || (s->state == 2 && s->seg == seg && s->offset == offset);
}

int gfs_cache_still(const struct gfs_cache *c, int64_t slot, uint64_t block, uint32_t gen)
{
    /* Every change of a slot bumps gen, so an unchanged gen means unchanged
     * contents; this runs without the volume lock. */
    (void)block;
    atomic_thread_fence(memory_order_seq_cst); /* after the data read, like a seqlock's reader */
    return atomic_load_explicit(&c->slots[slot].gen, memory_order_acquire) == gen;
}

static inline void bump(struct gfs_cache *c, struct gfs_cache_slot *s)
{
    /* ordered before whatever changes the slot's data next (a punch, a fill):
     * the lock-free readers' entries for the block too */
    gfs_fr_inval_block(c->fr, s->block);
    atomic_fetch_add(&s->gen, 1);
    atomic_thread_fence(memory_order_seq_cst);
}

static void release(struct gfs_cache *c, struct gfs_cache_slot *s)
{
    /* The generation changes before the hole is punched: a reader whose pread
     * saw the hole must see the new generation, or it would serve zeroes. */
    bump(c, s);
    gfs_u64map_del(&c->map, s->block);
    /* Give the space back; the data is in the store, so losing it is harmless. */
    fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              (off_t)(s->block * c->block_size), c->block_size);
    if (s->state == 2)
        c->nvalid--;
    s->state = 0;
    c->bytes -= c->block_size;
    cacct(c, -(int64_t)c->block_size); /* after the punch: the space is free */
}

/* One CLOCK sweep step: returns a free slot index or -1. */
static int64_t evict_one(struct gfs_cache *c)
{
    for (uint32_t steps = 0; steps < 2 * c->nslots + 1; steps++) {
        uint32_t i = c->hand;
        c->hand = (c->hand + 1) % c->nslots;
        struct gfs_cache_slot *s = &c->slots[i];
        if (s->state == 0)
            return i;
        if (s->state == 1)
            continue;
        if (s->ref) {
            s->ref = 0;
            continue;
        }
        release(c, s);
        return i;
    }
    return -1;
}

void gfs_cache_clear(struct gfs_cache *c)
{
    for (uint32_t i = 0; i < c->nslots; i++) {
        struct gfs_cache_slot *s = &c->slots[i];
        if (s->state == 2)
            release(c, s);
        else if (s->state == 1)
            s->doomed = 1; /* its filler's commit releases it */
    }
}

uint64_t gfs_cache_shrink(struct gfs_cache *c, uint64_t max_bytes)
{
    uint64_t before = c->bytes;
    while (c->bytes > max_bytes && c->nvalid > 0)
        if (evict_one(c) < 0)
            break;
    return before - c->bytes;
}

int gfs_cache_present(const struct gfs_cache *c, uint64_t block)
{
    return c->slots && gfs_u64map_get(&c->map, block) != NULL;
}

int64_t gfs_cache_claim(struct gfs_cache *c, uint64_t block, uint64_t max_bytes, uint32_t *gen)
{
    uintptr_t v = (uintptr_t)gfs_u64map_get(&c->map, block);
    struct gfs_cache_slot *s;
    if (v) {
        s = &c->slots[v - 1];
        if (s->state == 1)
            return -1;
        /* refill in place (new contents for the same block) */
        if (s->state == 2)
            c->nvalid--;
        s->state = 1;
        s->doomed = 0;
        bump(c, s);
        *gen = s->gen;
        return (int64_t)(v - 1);
    }
    while (c->bytes + c->block_size > max_bytes && c->nvalid > 0)
        if (evict_one(c) < 0)
            return -1;
    if (c->bytes + c->block_size > max_bytes)
        return -1;
    int64_t i = -1;
    /* find a free slot: the hand usually points near one */
    for (uint32_t k = 0; k < c->nslots; k++) {
        uint32_t j = (c->hand + k) % c->nslots;
        if (c->slots[j].state == 0) {
            i = j;
            break;
        }
    }
    if (i < 0)
        i = evict_one(c);
    if (i < 0)
        return -1;
    s = &c->slots[i];
    if (gfs_u64map_put(&c->map, block, (void *)(uintptr_t)(i + 1)) < 0)
        return -1;
    s->block = block;
    s->state = 1;
    s->doomed = 0;
    s->ref = 1;
    bump(c, s);
    c->bytes += c->block_size;
    cacct(c, c->block_size); /* charged before the filler's pwrite allocates it */
    *gen = s->gen;
    return i;
}

int gfs_cache_commit(struct gfs_cache *c, int64_t slot, uint32_t gen, uint32_t seg,
                     uint32_t offset, int ok)
{
    struct gfs_cache_slot *s = &c->slots[slot];
    if (s->state != 1 || s->gen != gen)
        return 0; /* dropped while we filled it; the slot may be someone else's claim now */
    if (!ok || s->doomed) {
        release(c, s);
        return 1;
    }
    s->seg = seg;
    s->offset = offset;
    s->state = 2;
    c->nvalid++;
    return 1;
}

void gfs_cache_renumber(void *cache, const uint32_t *map, uint32_t n)
{
    struct gfs_cache *c = cache;
    for (uint32_t i = 0; i < c->nslots; i++) {
        struct gfs_cache_slot *s = &c->slots[i];
        if (s->state == 1) {
            s->doomed = 1; /* its commit would record an index of the old numbering */
        } else if (s->state == 2) {
            uint32_t ns = s->seg < n ? map[s->seg] : 0;
            if (ns)
                s->seg = ns; /* same data, same place: readers need not notice */
            else
                release(c, s);
        }
    }
}

void gfs_cache_drop(struct gfs_cache *c, uint64_t block)
{
    uintptr_t v = (uintptr_t)gfs_u64map_get(&c->map, block);
    if (!v)
        return;
    struct gfs_cache_slot *s = &c->slots[v - 1];
    if (s->state == 1) {
        bump(c, s); /* the filler's commit will be ignored */
        s->state = 2; /* so release() accounts it */
        c->nvalid++;
    }
    release(c, s);
}

void gfs_cache_stale_write(struct gfs_cache *c, uint64_t block)
{
    if (!c->slots || gfs_u64map_get(&c->map, block))
        return; /* a claim of this block owns (and counts) that space now */
    fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              (off_t)(block * c->block_size), c->block_size);
}
