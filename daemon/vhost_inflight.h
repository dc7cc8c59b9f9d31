/*
 * vhost_inflight.h — VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD for split rings
 * (QEMU docs/interop/vhost-user.rst, "Inflight I/O tracking"): a shared
 * memory region the frontend keeps across backend restarts, in which the
 * backend marks each request it takes from the available ring before it
 * acts on it and clears the mark after it has published the used entry.
 * A restarted backend gets the region back (SET_INFLIGHT_FD) and resubmits
 * the marked requests in the order it took them, so a request is neither
 * lost (taken, never completed) nor run again after the guest saw it done.
 *
 * Layout (VU_INFLIGHT_QUEUE_BYTES(queue size) per queue, little-endian):
 *   0  u64 features   8 u16 version   10 u16 desc_num
 *   12 u16 last_batch_head            14 u16 used_idx
 *   16 + 16*i: descriptor i: u8 inflight, 5 pad, u16 next, u64 counter
 * The region is the frontend's memory: everything read from it is checked
 * (version, desc_num, inflight flags 0/1, indices below the ring size,
 * unique counters) and nonsense is -EPROTO (the frontend is disconnected).
 */
#ifndef GLIDEFSD_VHOST_INFLIGHT_H
#define GLIDEFSD_VHOST_INFLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "vhost_msg.h"

#define VU_INFLIGHT_VERSION 1

struct vu_inflight {
    void *map;           /* the mapping, NULL: none */
    size_t map_len;
    uint8_t *base;       /* the region's first byte */
    unsigned nq, qsize;  /* queues and descriptors per queue in it */
};

/* A new zeroed region (memfd) for GET_INFLIGHT_FD: *fd is the caller's to
 * send and close. 0, or -errno with a reason in why; *f untouched then. */
int vu_inflight_new(struct vu_inflight *f, unsigned nq, unsigned qsize, int *fd, char *why,
                    size_t wl);
/* Map the region of a validated SET_INFLIGHT_FD message (the caller keeps
 * fd): a regular file (memfd) at least mmap_offset + mmap_size long, a
 * page-aligned offset. 0, or -errno with a reason in why. */
int vu_inflight_map(struct vu_inflight *f, const struct vu_msg *m, int fd, char *why, size_t wl);
void vu_inflight_unmap(struct vu_inflight *f);
/* Queue qi's block, NULL when the region has none for it. */
uint8_t *vu_inflight_queue(const struct vu_inflight *f, unsigned qi);

/* A (re)started ring of num descriptors (num <= qsize, the region's queue
 * size) whose used ring says ring_used_idx: bring the block qr up to date
 * and list the heads to resubmit in the order they were taken (list holds
 * qsize entries); *next_counter is what the next taken head gets. A fresh
 * block (version 0) is initialised. If the backend died between
 * publishing a used entry and clearing its mark (the block's used_idx is
 * not the ring's), that head (last_batch_head) was completed and is
 * unmarked, not resubmitted: *done_head says which (else -1). The count, or -EPROTO with why. */
int vu_inflight_resume(uint8_t *qr, unsigned qsize, unsigned num, uint16_t ring_used_idx,
                       uint16_t *list, uint64_t *next_counter, int *done_head,
                       const char **why);
/* Head taken from the available ring, before anything acts on it. */
void vu_inflight_mark(uint8_t *qr, uint16_t head, uint64_t counter);
/* Around publishing head on the used ring: before (remember it as the
 * last batch) and after (clear the mark, then record the used index). */
void vu_inflight_pre_put(uint8_t *qr, uint16_t head);
void vu_inflight_post_put(uint8_t *qr, uint16_t head, uint16_t used_idx);

#endif
