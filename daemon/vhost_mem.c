/*
 * vhost_mem.c — mapping a frontend's memory table and translating the
 * addresses it and its guest hand us (vhost_mem.h).
 *
 * Known limit: the frontend could shrink a region's file after we mapped
 * it; a later access would then raise SIGBUS and end glidefsd. QEMU's
 * memfd backend seals its files against that (F_SEAL_SHRINK, its default);
 * a file that is shorter than the region already when it arrives is
 * refused here.
 */
#include "vhost_mem.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

void vu_mem_unmap(struct vu_mem *m)
{
    for (unsigned i = 0; i < m->n; i++)
        if (m->r[i].map)
            munmap(m->r[i].map, m->r[i].map_len);
    memset(m, 0, sizeof *m);
}

int vu_mem_map(struct vu_mem *m, const struct vu_msg *msg, const int *fds, char *why, size_t wl)
{
    struct vu_mem t;
    memset(&t, 0, sizeof t);
    for (uint32_t i = 0; i < msg->p.mem.nregions; i++) {
        const struct vu_region *r = &msg->p.mem.r[i];
        struct stat st;
        if (fstat(fds[i], &st) < 0) {
            int e = errno;
            snprintf(why, wl, "region %u: fstat: %s", i, strerror(e));
            vu_mem_unmap(&t);
            return -e;
        }
        /* The parser made sure mmap_offset + size fits in a size_t. */
        size_t map_len = (size_t)(r->mmap_offset + r->size);
        if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size < map_len) {
            snprintf(why, wl, "region %u: its file is not a regular file of at least %zu bytes",
                     i, map_len);
            vu_mem_unmap(&t);
            return -EINVAL;
        }
        /* Mapped from offset 0: mmap_offset need not be page-aligned. */
        void *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fds[i], 0);
        if (p == MAP_FAILED) {
            int e = errno;
            snprintf(why, wl, "region %u: mmap of %zu bytes: %s", i, map_len, strerror(e));
            vu_mem_unmap(&t);
            return -e;
        }
        t.r[i] = (struct vu_mem_region){ .gpa = r->gpa, .uva = r->uva, .size = r->size,
                                         .host = (uint8_t *)p + r->mmap_offset, .map = p,
                                         .map_len = map_len };
        t.n = i + 1;
    }
    *m = t;
    return 0;
}

void *vu_mem_gpa(const struct vu_mem *m, uint64_t gpa, uint64_t len, uint64_t *got)
{
    if (len == 0)
        return NULL;
    for (unsigned i = 0; i < m->n; i++) {
        const struct vu_mem_region *r = &m->r[i];
        /* gpa - r->gpa only once gpa >= r->gpa: no wrap; off < size. */
        if (gpa < r->gpa || gpa - r->gpa >= r->size)
            continue;
        uint64_t off = gpa - r->gpa;
        uint64_t room = r->size - off;
        *got = len < room ? len : room;
        return r->host + off;
    }
    return NULL;
}

void *vu_mem_uva(const struct vu_mem *m, uint64_t uva, uint64_t len)
{
    if (len == 0)
        return NULL;
    for (unsigned i = 0; i < m->n; i++) {
        const struct vu_mem_region *r = &m->r[i];
        if (uva < r->uva || uva - r->uva >= r->size)
            continue;
        uint64_t off = uva - r->uva;
        if (len > r->size - off)
            return NULL;
        return r->host + off;
    }
    return NULL;
}
