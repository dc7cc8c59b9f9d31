/*
 * vhost_vq.h — one split virtqueue (virtio 1.x, 2.7) in guest memory: its
 * ring addresses, taking the next available descriptor chain as a list of
 * host buffers, and returning it on the used ring. The guest writes these
 * rings while we read them: every index is read once into a local, checked
 * against the queue size, and every buffer translated through the memory
 * table (vhost_mem.h). A ring that breaks the rules (an index past the
 * queue, more chains than fit, a chain that loops or is too long, a nested
 * or chained indirect table, a readable buffer after a writable one, an
 * address outside the memory table) is reported as -EPROTO: the device is
 * broken and its frontend is disconnected (vhost_dev.c); nothing else is
 * touched.
 */
#ifndef GLIDEFSD_VHOST_VQ_H
#define GLIDEFSD_VHOST_VQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhost_mem.h"

#define VU_CHAIN_MAX 512       /* host buffers per chain (after splits at region borders) */

struct vu_buf {
    uint8_t *p;
    size_t len;
};

/* One chain taken from the available ring: readable buffers first, then
 * writable ones (the spec's order, enforced). */
struct vu_chain {
    uint16_t head;
    unsigned nr, nw;           /* readable and writable buffers */
    struct vu_buf b[VU_CHAIN_MAX];
};

struct vu_vq {
    unsigned num;              /* queue size (SET_VRING_NUM), 0: not set */
    uint64_t desc_uva, avail_uva, used_uva;
    bool have_addr;
    uint8_t *desc, *avail, *used; /* host pointers once mapped, else NULL */
    uint16_t last_avail;       /* next available entry to take */
    uint16_t used_idx;         /* next used entry to fill */
    int kick_fd, call_fd, err_fd; /* -1: none */
    bool started;              /* a kick descriptor arrived (and no GET_VRING_BASE since) */
    bool enabled;              /* SET_VRING_ENABLE (or always, without protocol features) */
    /* VIRTIO_RING_F_EVENT_IDX (virtio 1.x 2.7.7.2, 2.7.10): the guest says
     * in avail's used_event when it wants an interrupt, we say in used's
     * avail_event when we want a kick; both rings are 2 bytes longer. */
    bool event_idx;
    bool signalled_valid;      /* signalled_used is the used index at our last call */
    uint16_t signalled_used;
    /* Inflight tracking (vhost_inflight.h), while the ring runs with it: */
    uint8_t *inflight;         /* this queue's block of the region, NULL: not tracked */
    uint64_t counter;          /* the next taken head's counter */
    unsigned nresubmit, resubmit_next; /* heads left from before a reconnect */
    bool resumed;              /* started on a used region: call the guest once */
    uint16_t resubmit[VU_MAX_QUEUE_SIZE];
};

void vu_vq_init(struct vu_vq *q);
/* Translate the ring addresses through the memory table (with the event
 * fields when q->event_idx). 0, or -EFAULT when a ring is not wholly
 * inside one region. */
int vu_vq_map(struct vu_vq *q, const struct vu_mem *m);
/* Take the next chain into *c: first the heads left to resubmit
 * (vu_vq_resume), then the available ring's, each marked in flight when
 * the ring is tracked. With EVENT_IDX, finding the ring empty publishes
 * avail_event (kick me for the next entry) and looks once more. 1: taken, 0: none available, -EPROTO: the ring is
 * malformed (why says how). */
int vu_vq_pop(struct vu_vq *q, const struct vu_mem *m, bool indirect_ok, struct vu_chain *c,
              const char **why);
/* The ring starts with inflight tracking in block qr of a region of
 * qsize descriptors per queue: read the block (vu_inflight_resume), take
 * the used index from the used ring, continue the available ring after
 * the heads still in flight and queue those for resubmission. The number
 * to resubmit, or -EPROTO with why; *done_head as vu_inflight_resume. */
int vu_vq_resume(struct vu_vq *q, uint8_t *qr, unsigned qsize, int *done_head,
                 const char **why);
/* Put a finished chain on the used ring (len bytes written into its
 * writable buffers) and publish it; then vu_vq_done() unmarks it in the
 * inflight region (two calls so the test hook of vhost_dev.c can die
 * between them, the window the region's used_idx is for). */
void vu_vq_push(struct vu_vq *q, uint16_t head, uint32_t len);
void vu_vq_done(struct vu_vq *q, uint16_t head);
/* Signal the guest (call eventfd) unless it asked not to be interrupted:
 * the NO_INTERRUPT flag, or with EVENT_IDX its used_event not crossed
 * since our last call. */
void vu_vq_notify(struct vu_vq *q);

#endif
