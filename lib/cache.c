/*
 * cache.c — the clean-block cache (see cache.h).
 */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int gfs_cache_open(struct gfs_cache *c, const char *path, uint32_t block_size, uint32_t nslots)
{
    memset(c, 0, sizeof *c);
    c->block_size = block_size;
    c->nslots = nslots ? nslots : 1;
    gfs_u64map_init(&c->map);
    c->slots = calloc(c->nslots, sizeof *c->slots);
    if (!c->slots)
        return -ENOMEM;
    /* The index is not persisted, so what the file held is unknown: start empty. */
    c->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        free(c->slots);
        c->slots = NULL;
        return -errno;
    }
    return 0;
}

static void cacct(struct gfs_cache *c, int64_t delta)
{
    if (c->acct && delta)
        c->acct(c->acct_arg, delta);
}

void gfs_cache_close(struct gfs_cache *c)
{
    if (c->slots) {
        /* the index is not kept, so the data is of no use to anyone: give
         * the space back before the budget forgets this volume */
        if (ftruncate(c->fd, 0) == 0)
            cacct(c, -(int64_t)c->bytes);
        close(c->fd);
        free(c->slots);
        gfs_u64map_free(&c->map);
    }
    memset(c, 0, sizeof *c);
    c->fd = -1;
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

static inline void bump(struct gfs_cache_slot *s)
{
    /* ordered before whatever changes the slot's data next (a punch, a fill) */
    atomic_fetch_add(&s->gen, 1);
    atomic_thread_fence(memory_order_seq_cst);
}

static void release(struct gfs_cache *c, struct gfs_cache_slot *s)
{
    /* The generation changes before the hole is punched: a reader whose pread
     * saw the hole must see the new generation, or it would serve zeroes. */
    bump(s);
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
        bump(s);
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
    bump(s);
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
        bump(s); /* the filler's commit will be ignored */
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
