/*
 * vhost_inflight.c — the inflight region: making, mapping, marking and the
 * reconnect scan (vhost_inflight.h). Stores into the region are ordered
 * with fences so that a backend killed at any instruction leaves a state
 * the scan reads right: a head's counter before its mark, the used entry
 * (vhost_vq.c) before the mark is cleared, the clear before used_idx.
 * Fields are read with memcpy (the region need not be aligned in our
 * mapping when the frontend picks an offset) and each once.
 */
#include "vhost_inflight.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR 16
#define OFF_VERSION 8
#define OFF_DESC_NUM 10
#define OFF_LAST_BATCH 12
#define OFF_USED_IDX 14
#define DESC(i) (HDR + 16 * (size_t)(i))
#define DESC_COUNTER 8

static uint16_t ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static void st16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

int vu_inflight_new(struct vu_inflight *f, unsigned nq, unsigned qsize, int *fd, char *why,
                    size_t wl)
{
    size_t len = (size_t)(nq * VU_INFLIGHT_QUEUE_BYTES(qsize));
    int mfd = memfd_create("glidefs-vhost-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0) {
        snprintf(why, wl, "memfd_create: %s", strerror(errno));
        return -errno;
    }
    if (ftruncate(mfd, (off_t)len) < 0) {
        int e = errno;
        snprintf(why, wl, "ftruncate of the inflight region: %s", strerror(e));
        close(mfd);
        return -e;
    }
    /* The frontend gets this file: it must not shrink it under our
     * mapping (SIGBUS here) or grow it. */
    if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        int e = errno;
        snprintf(why, wl, "sealing the inflight region: %s", strerror(e));
        close(mfd);
        return -e;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        snprintf(why, wl, "mmap of the inflight region: %s", strerror(e));
        close(mfd);
        return -e;
    }
    /* A memfd starts zeroed: every block is version 0 (fresh) until its
     * ring starts (vu_inflight_resume). */
    *f = (struct vu_inflight){ .map = p, .map_len = len, .base = p, .nq = nq, .qsize = qsize };
    *fd = mfd;
    return 0;
}

int vu_inflight_map(struct vu_inflight *f, const struct vu_msg *m, int fd, char *why, size_t wl)
{
    uint64_t size = m->p.inflight.mmap_size, off = m->p.inflight.mmap_offset;
    long page = sysconf(_SC_PAGESIZE);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, wl, "the inflight descriptor is not a regular file (memfd)");
        return -EINVAL;
    }
    if (page <= 0 || off % (uint64_t)page) {
        snprintf(why, wl, "inflight region offset %llu is not page-aligned",
                 (unsigned long long)off);
        return -EINVAL;
    }
    /* parse_inflight: off + size does not wrap */
    if ((uint64_t)st.st_size < off + size) {
        snprintf(why, wl, "inflight region (%llu bytes at %llu) is beyond its file's %lld bytes",
                 (unsigned long long)size, (unsigned long long)off, (long long)st.st_size);
        return -EINVAL;
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
    if (p == MAP_FAILED) {
        snprintf(why, wl, "mmap of the inflight region: %s", strerror(errno));
        return -errno;
    }
    *f = (struct vu_inflight){ .map = p, .map_len = (size_t)size, .base = p,
                               .nq = m->p.inflight.num_queues,
                               .qsize = m->p.inflight.queue_size };
    return 0;
}

void vu_inflight_unmap(struct vu_inflight *f)
{
    if (f->map)
        munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

uint8_t *vu_inflight_queue(const struct vu_inflight *f, unsigned qi)
{
    if (!f->base || qi >= f->nq)
        return NULL;
    return f->base + qi * VU_INFLIGHT_QUEUE_BYTES(f->qsize);
}

#define BAD(text)                                                                                  \
    do {                                                                                           \
        *why = (text);                                                                             \
        return -EPROTO;                                                                            \
    } while (0)

struct taken {
    uint64_t counter;
    uint16_t head;
};

static int by_counter(const void *a, const void *b)
{
    const struct taken *x = a, *y = b;
    return x->counter < y->counter ? -1 : x->counter > y->counter;
}

int vu_inflight_resume(uint8_t *qr, unsigned qsize, unsigned num, uint16_t ring_used_idx,
                       uint16_t *list, uint64_t *next_counter, int *done_head,
                       const char **why)
{
    *done_head = -1;
    if (num == 0 || num > qsize || qsize > VU_MAX_QUEUE_SIZE)
        BAD("a ring larger than its inflight region");
    uint16_t version = ld16(qr + OFF_VERSION);
    if (version == 0) {
        /* Fresh (GET_INFLIGHT_FD): nothing was ever taken. */
        memset(qr + HDR, 0, 16 * (size_t)qsize);
        st16(qr + OFF_DESC_NUM, (uint16_t)qsize);
        st16(qr + OFF_LAST_BATCH, 0);
        st16(qr + OFF_USED_IDX, ring_used_idx);
        atomic_thread_fence(memory_order_release);
        st16(qr + OFF_VERSION, VU_INFLIGHT_VERSION);
        *next_counter = 0;
        return 0;
    }
    if (version != VU_INFLIGHT_VERSION)
        BAD("an inflight region of an unknown version");
    if (ld16(qr + OFF_DESC_NUM) != qsize)
        BAD("an inflight region whose queue size is not the one it was set with");
    if (ld16(qr + OFF_USED_IDX) != ring_used_idx) {
        /* Died after publishing last_batch_head on the used ring, before
         * clearing its mark: it is done, the guest may have seen it. */
        uint16_t h = ld16(qr + OFF_LAST_BATCH);
        if (h >= num)
            BAD("an inflight region's last batch head is past the ring");
        qr[DESC(h)] = 0;
        *done_head = h;
        atomic_thread_fence(memory_order_release);
        st16(qr + OFF_USED_IDX, ring_used_idx);
    }
    struct taken t[VU_MAX_QUEUE_SIZE];
    unsigned n = 0;
    for (unsigned i = 0; i < qsize; i++) {
        uint8_t fl = qr[DESC(i)];
        if (fl > 1)
            BAD("an inflight flag that is neither 0 nor 1");
        if (!fl)
            continue;
        if (i >= num)
            BAD("an in-flight descriptor past the ring");
        memcpy(&t[n].counter, qr + DESC(i) + DESC_COUNTER, 8);
        t[n].head = (uint16_t)i;
        n++;
    }
    qsort(t, n, sizeof t[0], by_counter);
    for (unsigned i = 0; i < n; i++) {
        if (i && t[i].counter == t[i - 1].counter)
            BAD("two in-flight descriptors with the same counter");
        list[i] = t[i].head;
    }
    *next_counter = n ? t[n - 1].counter + 1 : 0;
    return (int)n;
}

void vu_inflight_mark(uint8_t *qr, uint16_t head, uint64_t counter)
{
    memcpy(qr + DESC(head) + DESC_COUNTER, &counter, 8);
    atomic_thread_fence(memory_order_release);
    qr[DESC(head)] = 1;
    /* marked before the request acts (vhost_dev.c runs it next) */
    atomic_thread_fence(memory_order_seq_cst);
}

void vu_inflight_pre_put(uint8_t *qr, uint16_t head)
{
    st16(qr + OFF_LAST_BATCH, head);
    atomic_thread_fence(memory_order_release);
}

void vu_inflight_post_put(uint8_t *qr, uint16_t head, uint16_t used_idx)
{
    atomic_thread_fence(memory_order_release);
    qr[DESC(head)] = 0;
    atomic_thread_fence(memory_order_release);
    st16(qr + OFF_USED_IDX, used_idx);
}
