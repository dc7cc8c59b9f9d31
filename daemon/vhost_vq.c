/*
 * vhost_vq.c — split virtqueues in shared guest memory (vhost_vq.h).
 *
 * Guest memory is read with memcpy into locals, each field once, with a
 * compiler barrier after it, so a value checked is the value used (the
 * guest may rewrite a descriptor while we walk it: then it gets what it
 * wrote, never an unchecked access). Ring pointers may be misaligned in our
 * mapping (a region's file offset need not share the guest's alignment),
 * which memcpy does not mind. Virtio 1.x rings are little-endian, as is
 * every host glidefsd builds on.
 */
#include "vhost_vq.h"

#include "vhost_inflight.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vhost-user-blk: virtio rings are little-endian; big-endian hosts are not supported"
#endif

#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
#define VRING_DESC_F_INDIRECT 4u
#define VRING_AVAIL_F_NO_INTERRUPT 1u
#define INDIRECT_MAX 1024u /* descriptors in one indirect table (Linux uses up to seg_max + 2) */

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

static uint16_t guest_ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    atomic_signal_fence(memory_order_seq_cst);
    return v;
}

static void guest_ld_desc(const uint8_t *p, struct desc *d)
{
    memcpy(&d->addr, p, 8);
    memcpy(&d->len, p + 8, 4);
    memcpy(&d->flags, p + 12, 2);
    memcpy(&d->next, p + 14, 2);
    atomic_signal_fence(memory_order_seq_cst);
}

void vu_vq_init(struct vu_vq *q)
{
    memset(q, 0, sizeof *q);
    q->kick_fd = q->call_fd = q->err_fd = -1;
}

int vu_vq_map(struct vu_vq *q, const struct vu_mem *m)
{
    q->desc = q->avail = q->used = NULL;
    if (!q->have_addr || q->num == 0)
        return 0;
    uint64_t n = q->num, ev = q->event_idx ? 2 : 0;
    uint8_t *d = vu_mem_uva(m, q->desc_uva, 16 * n);
    uint8_t *a = vu_mem_uva(m, q->avail_uva, 4 + 2 * n + ev);
    uint8_t *u = vu_mem_uva(m, q->used_uva, 4 + 8 * n + ev);
    if (!d || !a || !u)
        return -EFAULT;
    q->desc = d;
    q->avail = a;
    q->used = u;
    return 0;
}

#define BAD(text)                                                                                  \
    do {                                                                                           \
        *why = (text);                                                                             \
        return -EPROTO;                                                                            \
    } while (0)

/* Add a descriptor's buffer to c, split where it crosses regions. */
static int add_buf(const struct vu_mem *m, struct vu_chain *c, const struct desc *d,
                   const char **why)
{
    bool w = d->flags & VRING_DESC_F_WRITE;
    if (!w && c->nw)
        BAD("a readable descriptor after a writable one");
    uint64_t addr = d->addr, left = d->len;
    while (left) {
        uint64_t got = 0;
        uint8_t *p = vu_mem_gpa(m, addr, left, &got);
        if (!p)
            BAD("a descriptor points outside the memory table");
        if (c->nr + c->nw >= VU_CHAIN_MAX)
            BAD("a descriptor chain has too many buffers");
        c->b[c->nr + c->nw] = (struct vu_buf){ p, (size_t)got };
        if (w)
            c->nw++;
        else
            c->nr++;
        /* got <= left and the region's end is representable: no wrap */
        addr += got;
        left -= got;
    }
    return 0;
}

/* Walk the chain that starts at head (< q->num) into *c. */
static int walk(const struct vu_vq *q, const struct vu_mem *m, bool indirect_ok, uint16_t head,
                struct vu_chain *c, const char **why)
{
    c->head = head;
    c->nr = c->nw = 0;
    const uint8_t *table = q->desc;
    unsigned tsize = q->num;
    unsigned i = head, seen = 0;
    bool indirect = false;
    for (;;) {
        /* A chain visits each descriptor of its table at most once: more
         * steps than entries means it loops. */
        if (++seen > tsize)
            BAD("a descriptor chain loops (longer than its table)");
        struct desc d;
        guest_ld_desc(table + 16 * (size_t)i, &d);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (!indirect_ok)
                BAD("an indirect descriptor, not negotiated");
            if (indirect)
                BAD("an indirect table inside an indirect table");
            if (d.flags & VRING_DESC_F_NEXT)
                BAD("an indirect descriptor with NEXT set");
            if (seen != 1)
                BAD("an indirect descriptor that is not the head of its chain");
            if (d.len == 0 || d.len % 16 || d.len / 16 > INDIRECT_MAX)
                BAD("an indirect table of a bad length");
            uint64_t got = 0;
            const uint8_t *t = vu_mem_gpa(m, d.addr, d.len, &got);
            if (!t || got != d.len)
                BAD("an indirect table outside one region of the memory table");
            table = t;
            tsize = d.len / 16;
            i = 0;
            seen = 0;
            indirect = true;
            continue;
        }
        if (add_buf(m, c, &d, why) < 0)
            return -EPROTO;
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        i = d.next;
        if (i >= tsize)
            BAD("a descriptor's next is past its table");
    }
    return 0;
}

int vu_vq_pop(struct vu_vq *q, const struct vu_mem *m, bool indirect_ok, struct vu_chain *c,
              const char **why)
{
    if (!q->avail || !q->desc || !q->used)
        return 0;
    if (q->resubmit_next < q->nresubmit) {
        /* Taken (and marked) before a reconnect, never completed: the
         * guest still waits for it. vu_inflight_resume checked head < num. */
        uint16_t head = q->resubmit[q->resubmit_next];
        if (walk(q, m, indirect_ok, head, c, why) < 0)
            return -EPROTO;
        q->resubmit_next++;
        return 1;
    }
    uint16_t aidx = guest_ld16(q->avail + 2);
    uint16_t pending = (uint16_t)(aidx - q->last_avail);
    if (pending == 0 && q->event_idx) {
        /* Ask for a kick at the next entry, then look again: the guest
         * may have added one before it could see our avail_event. */
        uint16_t want = q->last_avail;
        memcpy(q->used + 4 + 8 * (size_t)q->num, &want, 2);
        atomic_thread_fence(memory_order_seq_cst);
        aidx = guest_ld16(q->avail + 2);
        pending = (uint16_t)(aidx - q->last_avail);
    }
    if (pending == 0)
        return 0;
    if (pending > q->num)
        BAD("the available index ran ahead by more than the queue size");
    /* The ring entry is read after the index that published it. */
    atomic_thread_fence(memory_order_acquire);
    uint16_t head = guest_ld16(q->avail + 4 + 2 * (size_t)(q->last_avail % q->num));
    if (head >= q->num)
        BAD("an available entry names a descriptor past the queue size");
    if (walk(q, m, indirect_ok, head, c, why) < 0)
        return -EPROTO;
    if (q->inflight)
        vu_inflight_mark(q->inflight, head, q->counter++);
    q->last_avail++;
    return 1;
}

int vu_vq_resume(struct vu_vq *q, uint8_t *qr, unsigned qsize, int *done_head,
                 const char **why)
{
    if (!q->used || !q->desc) {
        *why = "a tracked ring without mapped addresses";
        return -EPROTO;
    }
    uint16_t used = guest_ld16(q->used + 2);
    int n = vu_inflight_resume(qr, qsize, q->num, used, q->resubmit, &q->counter, done_head,
                               why);
    if (n < 0)
        return n;
    q->inflight = qr;
    q->resumed = true;
    q->signalled_valid = false;
    q->nresubmit = (unsigned)n;
    q->resubmit_next = 0;
    q->used_idx = used;
    /* Every head taken is either on the used ring or still in flight. */
    q->last_avail = (uint16_t)(used + n);
    return n;
}

void vu_vq_push(struct vu_vq *q, uint16_t head, uint32_t len)
{
    if (q->inflight)
        vu_inflight_pre_put(q->inflight, head);
    size_t slot = (size_t)(q->used_idx % q->num);
    uint32_t id = head;
    memcpy(q->used + 4 + 8 * slot, &id, 4);
    memcpy(q->used + 8 + 8 * slot, &len, 4);
    /* The entry is visible before the index that publishes it. */
    atomic_thread_fence(memory_order_release);
    q->used_idx++;
    uint16_t ui = q->used_idx;
    memcpy(q->used + 2, &ui, 2);
}

void vu_vq_done(struct vu_vq *q, uint16_t head)
{
    if (q->inflight)
        vu_inflight_post_put(q->inflight, head, q->used_idx);
}

void vu_vq_notify(struct vu_vq *q)
{
    if (q->call_fd < 0 || !q->avail)
        return;
    /* The used index is out before we look at the guest's wish. */
    atomic_thread_fence(memory_order_seq_cst);
    if (q->event_idx) {
        uint16_t now = q->used_idx, old = q->signalled_used;
        bool valid = q->signalled_valid;
        q->signalled_used = now;
        q->signalled_valid = true;
        uint16_t ev = guest_ld16(q->avail + 4 + 2 * (size_t)q->num);
        /* vring_need_event: used_event in [old, now) */
        if (valid && (uint16_t)(now - ev - 1) >= (uint16_t)(now - old))
            return;
    } else if (guest_ld16(q->avail) & VRING_AVAIL_F_NO_INTERRUPT) {
        return;
    }
    eventfd_write(q->call_fd, 1);
}
