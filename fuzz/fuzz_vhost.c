/*
 * fuzz_vhost.c — libFuzzer target for what a vhost-user frontend and its
 * guest hand glidefsd (daemon/vhost_msg.c, vhost_mem.c, vhost_vq.c). The
 * first input byte picks the mode:
 *   < 0x40: one message (header and payload) with (byte % 9) descriptors
 *           through vu_msg_parse(); an accepted one must keep the
 *           invariants the handlers rely on (checked, abort() otherwise);
 *   0x40..0x7f: an inflight region's queue block (vhost_inflight.c) of
 *           2^(byte & 7) descriptors (the rest of the input after a
 *           16-bit used index, zero-padded), for a ring of that size (or
 *           half of it with bit 0x08), through vu_inflight_resume(): the
 *           heads listed must be below the ring size, each once, and
 *           after they are resubmitted (marked done) nothing is marked;
 *   >= 0x80: guest memory (the rest of the input) holding a split ring of
 *           2^min(byte & 7, 4) entries at fixed addresses (bit 0x40:
 *           indirect descriptors negotiated), walked by vu_vq_pop()
 *           until it is empty or broken: every buffer handed out must lie
 *           inside the memory table.
 * Built with clang -fsanitize=fuzzer; with any compiler, replay_main.c
 * replays the seed corpus (corpus-vhost/) in the test suite.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhost_inflight.h"
#include "vhost_mem.h"
#include "vhost_msg.h"
#include "vhost_vq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUEST_SIZE 8192u
#define GUEST_GPA 0x100000ull
#define DESC_OFF 0u
#define AVAIL_OFF 1024u
#define USED_OFF 2048u

static void check_msg(const struct vu_msg *m)
{
    switch (m->request) {
    case VU_SET_MEM_TABLE:
        if (m->p.mem.nregions == 0 || m->p.mem.nregions > VU_MAX_REGIONS ||
            (int)m->p.mem.nregions != m->nfds)
            abort();
        for (uint32_t i = 0; i < m->p.mem.nregions; i++) {
            const struct vu_region *r = &m->p.mem.r[i];
            if (r->size == 0 || r->gpa + r->size < r->gpa || r->uva + r->size < r->uva ||
                r->mmap_offset + r->size < r->mmap_offset)
                abort();
        }
        break;
    case VU_GET_CONFIG:
    case VU_SET_CONFIG:
        if (m->p.config.offset + m->p.config.size > VU_CONFIG_MAX)
            abort();
        break;
    case VU_SET_VRING_NUM:
        if (m->p.state.num == 0 || m->p.state.num > VU_MAX_QUEUE_SIZE ||
            (m->p.state.num & (m->p.state.num - 1)))
            abort();
        /* fall through */
    case VU_SET_VRING_BASE:
    case VU_GET_VRING_BASE:
    case VU_SET_VRING_ENABLE:
        if (m->p.state.index >= VU_MAX_QUEUES)
            abort();
        break;
    case VU_SET_VRING_ADDR:
        if (m->p.addr.index >= VU_MAX_QUEUES)
            abort();
        break;
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR:
        if ((m->p.u64 & VU_VRING_IDX_MASK) >= VU_MAX_QUEUES ||
            m->nfds != ((m->p.u64 & VU_VRING_NOFD) ? 0 : 1))
            abort();
        break;
    case VU_GET_INFLIGHT_FD:
    case VU_SET_INFLIGHT_FD: {
        unsigned nq = m->p.inflight.num_queues, qs = m->p.inflight.queue_size;
        if (nq == 0 || nq > VU_MAX_QUEUES || qs == 0 || qs > VU_MAX_QUEUE_SIZE ||
            (qs & (qs - 1)) || m->nfds != (m->request == VU_SET_INFLIGHT_FD))
            abort();
        if (m->request == VU_SET_INFLIGHT_FD &&
            (m->p.inflight.mmap_size != nq * VU_INFLIGHT_QUEUE_BYTES(qs) ||
             m->p.inflight.mmap_offset + m->p.inflight.mmap_size < m->p.inflight.mmap_offset))
            abort();
        break;
    }
    default:
        break;
    }
}

static void fuzz_ring(uint8_t mode, const uint8_t *data, size_t size)
{
    static uint8_t guest[GUEST_SIZE];
    static struct vu_chain chain;
    memset(guest, 0, sizeof guest);
    memcpy(guest, data, size < GUEST_SIZE ? size : GUEST_SIZE);
    struct vu_mem mem;
    memset(&mem, 0, sizeof mem);
    mem.n = 1;
    mem.r[0] = (struct vu_mem_region){ .gpa = GUEST_GPA, .uva = GUEST_GPA, .size = GUEST_SIZE,
                                       .host = guest };
    struct vu_vq q;
    vu_vq_init(&q);
    q.num = 1u << ((mode & 7) < 4 ? (mode & 7) : 4);
    q.desc_uva = GUEST_GPA + DESC_OFF;
    q.avail_uva = GUEST_GPA + AVAIL_OFF;
    q.used_uva = GUEST_GPA + USED_OFF;
    q.have_addr = true;
    if (vu_vq_map(&q, &mem) < 0)
        abort();
    for (int n = 0; n < 64; n++) {
        const char *why = NULL;
        int r = vu_vq_pop(&q, &mem, mode & 0x40, &chain, &why);
        if (r <= 0) {
            if (r < 0 && !why)
                abort();
            break;
        }
        if (chain.head >= q.num || chain.nr + chain.nw > VU_CHAIN_MAX)
            abort();
        for (unsigned i = 0; i < chain.nr + chain.nw; i++) {
            const struct vu_buf *b = &chain.b[i];
            if (b->p < guest || b->len == 0 || b->len > GUEST_SIZE ||
                (size_t)(b->p - guest) > GUEST_SIZE - b->len)
                abort();
            /* touch it, as a request would */
            volatile uint8_t x = b->p[b->len - 1];
            (void)x;
        }
        vu_vq_push(&q, chain.head, 1);
        vu_vq_done(&q, chain.head);
    }
}

static void fuzz_inflight(uint8_t mode, const uint8_t *data, size_t size)
{
    static uint8_t qr[VU_INFLIGHT_QUEUE_BYTES(128)];
    static uint16_t list[128];
    unsigned qsize = 1u << (mode & 7);
    unsigned num = (mode & 0x08) && qsize > 1 ? qsize / 2 : qsize;
    if (size < 2)
        return;
    uint16_t used = (uint16_t)(data[0] | data[1] << 8);
    size_t len = (size_t)VU_INFLIGHT_QUEUE_BYTES(qsize);
    memset(qr, 0, sizeof qr);
    memcpy(qr, data + 2, size - 2 < len ? size - 2 : len);
    uint64_t next = 0;
    int done = -1;
    const char *why = NULL;
    int n = vu_inflight_resume(qr, qsize, num, used, list, &next, &done, &why);
    if (n < 0) {
        if (!why)
            abort();
        return;
    }
    if ((unsigned)n > num || done >= (int)num)
        abort();
    uint16_t ui = used;
    for (int i = 0; i < n; i++) {
        if (list[i] >= num)
            abort();
        for (int j = 0; j < i; j++)
            if (list[j] == list[i])
                abort();
        vu_inflight_pre_put(qr, list[i]);
        vu_inflight_post_put(qr, list[i], ++ui);
    }
    /* everything resubmitted and done: a second scan finds nothing */
    n = vu_inflight_resume(qr, qsize, num, ui, list, &next, &done, &why);
    if (n != 0 || done != -1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    if (mode >= 0x80) {
        fuzz_ring(mode, data + 1, size - 1);
        return 0;
    }
    if (mode >= 0x40) {
        fuzz_inflight(mode, data + 1, size - 1);
        return 0;
    }
    struct vu_msg m;
    const char *why = NULL;
    int nfds = mode % 9;
    if (vu_msg_parse(data + 1, size - 1, nfds, &m, &why) == 0) {
        check_msg(&m);
        uint8_t out[VU_HDR_SIZE + VU_MAX_PAYLOAD];
        if (m.request == VU_GET_CONFIG)
            vu_reply_config(out, m.p.config.offset, m.p.config.size, 0, m.p.config.data);
    } else if (!why) {
        abort();
    }
    return 0;
}
