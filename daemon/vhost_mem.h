/*
 * vhost_mem.h — a vhost-user frontend's memory table: the regions of guest
 * RAM it shares (one descriptor each, SET_MEM_TABLE), mapped into glidefsd,
 * and the two translations every guest-supplied address goes through:
 * guest physical (descriptor addresses) and the frontend's own virtual
 * addresses (ring addresses, SET_VRING_ADDR) to a host pointer. Nothing
 * outside a region is ever reachable: each translation checks offset and
 * length against the region with subtractions that cannot overflow.
 */
#ifndef GLIDEFSD_VHOST_MEM_H
#define GLIDEFSD_VHOST_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "vhost_msg.h"

struct vu_mem_region {
    uint64_t gpa, uva, size;
    uint8_t *host;  /* the region's first byte in our mapping */
    void *map;      /* the mapping (from file offset 0) and its length */
    size_t map_len;
};

struct vu_mem {
    unsigned n;
    struct vu_mem_region r[VU_MAX_REGIONS];
};

/* Map the regions of a validated SET_MEM_TABLE message (fds[i] for region
 * i; the caller still owns and closes them). Each file must be at least
 * mmap_offset + size long (fstat). On success *m (empty before) holds the
 * mappings; on failure nothing is mapped, -errno and a reason in why. */
int vu_mem_map(struct vu_mem *m, const struct vu_msg *msg, const int *fds, char *why, size_t wl);

/* Unmap everything; *m is empty afterwards. */
void vu_mem_unmap(struct vu_mem *m);

/* Guest physical address -> host pointer to the longest run starting at
 * gpa, at most len bytes, inside one region; *got says how long (> 0).
 * NULL when gpa is in no region (or len is 0). */
void *vu_mem_gpa(const struct vu_mem *m, uint64_t gpa, uint64_t len, uint64_t *got);

/* Frontend virtual address -> host pointer for len bytes (> 0) that must
 * all lie in one region; NULL otherwise. */
void *vu_mem_uva(const struct vu_mem *m, uint64_t uva, uint64_t len);

#endif
