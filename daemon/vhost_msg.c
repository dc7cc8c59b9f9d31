/*
 * vhost_msg.c — the vhost-user message validator and reply encoders (pure
 * functions: no I/O, no state; vhost_msg.h says what is checked and why).
 * The wire is little-endian (the spec: "in the native endianness of the
 * host", and glidefsd runs on little-endian hosts only, see vhost_vq.c).
 */
#include "vhost_msg.h"

#include <errno.h>
#include <string.h>

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

static void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void st64(uint8_t *p, uint64_t v)
{
    st32(p, (uint32_t)v);
    st32(p + 4, (uint32_t)(v >> 32));
}

const char *vu_request_name(uint32_t req)
{
    switch (req) {
    case VU_GET_FEATURES: return "GET_FEATURES";
    case VU_SET_FEATURES: return "SET_FEATURES";
    case VU_SET_OWNER: return "SET_OWNER";
    case VU_RESET_OWNER: return "RESET_OWNER";
    case VU_SET_MEM_TABLE: return "SET_MEM_TABLE";
    case VU_SET_LOG_BASE: return "SET_LOG_BASE";
    case VU_SET_LOG_FD: return "SET_LOG_FD";
    case VU_SET_VRING_NUM: return "SET_VRING_NUM";
    case VU_SET_VRING_ADDR: return "SET_VRING_ADDR";
    case VU_SET_VRING_BASE: return "SET_VRING_BASE";
    case VU_GET_VRING_BASE: return "GET_VRING_BASE";
    case VU_SET_VRING_KICK: return "SET_VRING_KICK";
    case VU_SET_VRING_CALL: return "SET_VRING_CALL";
    case VU_SET_VRING_ERR: return "SET_VRING_ERR";
    case VU_GET_PROTOCOL_FEATURES: return "GET_PROTOCOL_FEATURES";
    case VU_SET_PROTOCOL_FEATURES: return "SET_PROTOCOL_FEATURES";
    case VU_GET_QUEUE_NUM: return "GET_QUEUE_NUM";
    case VU_SET_VRING_ENABLE: return "SET_VRING_ENABLE";
    case VU_GET_CONFIG: return "GET_CONFIG";
    case VU_SET_CONFIG: return "SET_CONFIG";
    case VU_RESET_DEVICE: return "RESET_DEVICE";
    case VU_GET_INFLIGHT_FD: return "GET_INFLIGHT_FD";
    case VU_SET_INFLIGHT_FD: return "SET_INFLIGHT_FD";
    default: return "unknown";
    }
}

bool vu_msg_has_reply(uint32_t request)
{
    switch (request) {
    case VU_GET_FEATURES:
    case VU_GET_PROTOCOL_FEATURES:
    case VU_GET_VRING_BASE:
    case VU_GET_QUEUE_NUM:
    case VU_GET_CONFIG:
    case VU_GET_INFLIGHT_FD:
        return true;
    default:
        return false;
    }
}

#define FAIL(text)                                                                                 \
    do {                                                                                           \
        *why = (text);                                                                             \
        return -EPROTO;                                                                            \
    } while (0)

/* A vring index in a state or address payload. */
static int check_index(uint32_t index, const char **why)
{
    if (index >= VU_MAX_QUEUES)
        FAIL("vring index out of range");
    return 0;
}

static int parse_mem(const uint8_t *p, uint32_t size, int nfds, struct vu_msg *m, const char **why)
{
    if (size < 8)
        FAIL("memory table shorter than its header");
    uint32_t n = ld32(p);
    if (n == 0 || n > VU_MAX_REGIONS)
        FAIL("memory table region count out of range");
    if (size != 8 + 32u * n)
        FAIL("memory table size does not match its region count");
    if ((uint32_t)nfds != n)
        FAIL("memory table needs one descriptor per region");
    m->p.mem.nregions = n;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *q = p + 8 + 32 * i;
        struct vu_region *r = &m->p.mem.r[i];
        r->gpa = ld64(q);
        r->size = ld64(q + 8);
        r->uva = ld64(q + 16);
        r->mmap_offset = ld64(q + 24);
        if (r->size == 0)
            FAIL("empty memory region");
        /* Every end must be representable: the translations rely on it. */
        if (r->gpa > UINT64_MAX - r->size || r->uva > UINT64_MAX - r->size ||
            r->mmap_offset > UINT64_MAX - r->size)
            FAIL("memory region wraps around");
#if SIZE_MAX < UINT64_MAX
        if (r->size > SIZE_MAX || r->mmap_offset > SIZE_MAX - r->size)
            FAIL("memory region too large to map");
#endif
        for (uint32_t j = 0; j < i; j++) {
            const struct vu_region *o = &m->p.mem.r[j];
            if (r->gpa < o->gpa + o->size && o->gpa < r->gpa + r->size)
                FAIL("memory regions overlap in guest physical addresses");
            if (r->uva < o->uva + o->size && o->uva < r->uva + r->size)
                FAIL("memory regions overlap in frontend addresses");
        }
    }
    return 0;
}

static int parse_config(const uint8_t *p, uint32_t size, struct vu_msg *m, const char **why)
{
    if (size < VU_CONFIG_HDR)
        FAIL("config access shorter than its header");
    uint32_t off = ld32(p), len = ld32(p + 4);
    if (off > VU_CONFIG_MAX || len > VU_CONFIG_MAX - off)
        FAIL("config access beyond the config space");
    if (size != VU_CONFIG_HDR + len)
        FAIL("config access size does not match its length");
    m->p.config.offset = off;
    m->p.config.size = len;
    m->p.config.flags = ld32(p + 8);
    memcpy(m->p.config.data, p + VU_CONFIG_HDR, len);
    return 0;
}

/* GET_INFLIGHT_FD (the frontend's queue count and size; the rest is ours
 * to fill) and SET_INFLIGHT_FD (a region we or an earlier backend made:
 * its size must be exactly what that queue count and size take, so every
 * queue's block, descriptors included, lies inside the mapping). */
static int parse_inflight(const uint8_t *p, uint32_t size, struct vu_msg *m, const char **why)
{
    if (size != VU_INFLIGHT_PAYLOAD)
        FAIL("inflight payload is not 24 bytes");
    m->p.inflight.mmap_size = ld64(p);
    m->p.inflight.mmap_offset = ld64(p + 8);
    m->p.inflight.num_queues = (uint16_t)(p[16] | p[17] << 8);
    m->p.inflight.queue_size = (uint16_t)(p[18] | p[19] << 8);
    uint16_t nq = m->p.inflight.num_queues, qs = m->p.inflight.queue_size;
    if (nq == 0 || nq > VU_MAX_QUEUES)
        FAIL("inflight queue count out of range");
    if (qs == 0 || qs > VU_MAX_QUEUE_SIZE || (qs & (qs - 1)))
        FAIL("inflight queue size is not a power of two up to the maximum");
    if (m->request == VU_SET_INFLIGHT_FD) {
        if (m->p.inflight.mmap_size != nq * VU_INFLIGHT_QUEUE_BYTES(qs))
            FAIL("inflight region size does not match its queue count and size");
        if (m->p.inflight.mmap_offset > UINT64_MAX - m->p.inflight.mmap_size)
            FAIL("inflight region wraps around");
    }
    return 0;
}

int vu_msg_parse(const uint8_t *buf, size_t len, int nfds, struct vu_msg *m, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    memset(m, 0, sizeof *m);
    if (len < VU_HDR_SIZE)
        FAIL("short header");
    if (nfds < 0 || nfds > VU_MAX_FDS)
        FAIL("too many descriptors");
    m->request = ld32(buf);
    m->flags = ld32(buf + 4);
    m->size = ld32(buf + 8);
    m->nfds = nfds;
    if ((m->flags & VU_VERSION_MASK) != VU_VERSION)
        FAIL("unsupported protocol version");
    if (m->flags & ~(VU_VERSION_MASK | VU_FLAG_NEED_REPLY))
        FAIL("unknown or reply flags on a request");
    if (m->size > VU_MAX_PAYLOAD)
        FAIL("payload too large");
    if (len - VU_HDR_SIZE != m->size)
        FAIL("payload length does not match the header");
    const uint8_t *p = buf + VU_HDR_SIZE;
    uint32_t size = m->size;
    int want_fds = 0;

    switch (m->request) {
    case VU_GET_FEATURES:
    case VU_GET_PROTOCOL_FEATURES:
    case VU_GET_QUEUE_NUM:
    case VU_SET_OWNER:
    case VU_RESET_OWNER:
    case VU_RESET_DEVICE:
        if (size != 0)
            FAIL("payload on a request that takes none");
        break;
    case VU_SET_FEATURES:
    case VU_SET_PROTOCOL_FEATURES:
        if (size != 8)
            FAIL("feature payload is not 8 bytes");
        m->p.u64 = ld64(p);
        break;
    case VU_SET_MEM_TABLE:
        if (parse_mem(p, size, nfds, m, why) < 0)
            return -EPROTO;
        want_fds = nfds;
        break;
    case VU_SET_VRING_NUM:
    case VU_SET_VRING_BASE:
    case VU_GET_VRING_BASE:
    case VU_SET_VRING_ENABLE:
        if (size != 8)
            FAIL("vring state payload is not 8 bytes");
        m->p.state.index = ld32(p);
        m->p.state.num = ld32(p + 4);
        if (check_index(m->p.state.index, why) < 0)
            return -EPROTO;
        if (m->request == VU_SET_VRING_NUM &&
            (m->p.state.num == 0 || m->p.state.num > VU_MAX_QUEUE_SIZE ||
             (m->p.state.num & (m->p.state.num - 1))))
            FAIL("vring size is not a power of two up to the maximum");
        if (m->request == VU_SET_VRING_BASE && m->p.state.num > 0xffff)
            FAIL("split ring base beyond 16 bits");
        if (m->request == VU_SET_VRING_ENABLE && m->p.state.num > 1)
            FAIL("vring enable is neither 0 nor 1");
        break;
    case VU_SET_VRING_ADDR:
        if (size != 40)
            FAIL("vring address payload is not 40 bytes");
        m->p.addr.index = ld32(p);
        m->p.addr.flags = ld32(p + 4);
        m->p.addr.desc = ld64(p + 8);
        m->p.addr.used = ld64(p + 16);
        m->p.addr.avail = ld64(p + 24);
        m->p.addr.log = ld64(p + 32);
        if (check_index(m->p.addr.index, why) < 0)
            return -EPROTO;
        if (m->p.addr.flags & ~1u)
            FAIL("unknown vring address flags");
        if (m->p.addr.flags & 1u)
            FAIL("vring logging was not offered");
        /* The spec's alignments: descriptors 16, avail 2, used 4. */
        if ((m->p.addr.desc & 15) || (m->p.addr.avail & 1) || (m->p.addr.used & 3))
            FAIL("misaligned vring address");
        break;
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR:
        if (size != 8)
            FAIL("vring descriptor payload is not 8 bytes");
        m->p.u64 = ld64(p);
        if (m->p.u64 & ~(VU_VRING_IDX_MASK | VU_VRING_NOFD))
            FAIL("unknown bits in a vring descriptor payload");
        if (check_index((uint32_t)(m->p.u64 & VU_VRING_IDX_MASK), why) < 0)
            return -EPROTO;
        want_fds = (m->p.u64 & VU_VRING_NOFD) ? 0 : 1;
        break;
    case VU_GET_CONFIG:
    case VU_SET_CONFIG:
        if (parse_config(p, size, m, why) < 0)
            return -EPROTO;
        break;
    case VU_GET_INFLIGHT_FD:
    case VU_SET_INFLIGHT_FD:
        if (parse_inflight(p, size, m, why) < 0)
            return -EPROTO;
        want_fds = m->request == VU_SET_INFLIGHT_FD;
        break;
    default:
        FAIL("unsupported request");
    }
    if (nfds != want_fds)
        FAIL("wrong number of descriptors for the request");
    return 0;
}

static size_t reply_hdr(uint8_t *out, uint32_t req, uint32_t size)
{
    st32(out, req);
    st32(out + 4, VU_VERSION | VU_FLAG_REPLY);
    st32(out + 8, size);
    return VU_HDR_SIZE;
}

size_t vu_reply_u64(uint8_t *out, uint32_t req, uint64_t v)
{
    size_t n = reply_hdr(out, req, 8);
    st64(out + n, v);
    return n + 8;
}

size_t vu_reply_state(uint8_t *out, uint32_t req, uint32_t index, uint32_t num)
{
    size_t n = reply_hdr(out, req, 8);
    st32(out + n, index);
    st32(out + n + 4, num);
    return n + 8;
}

size_t vu_reply_config(uint8_t *out, uint32_t offset, uint32_t size, uint32_t flags,
                       const uint8_t *data)
{
    if (size > VU_CONFIG_MAX)
        size = VU_CONFIG_MAX;
    size_t n = reply_hdr(out, VU_GET_CONFIG, VU_CONFIG_HDR + size);
    st32(out + n, offset);
    st32(out + n + 4, size);
    st32(out + n + 8, flags);
    memcpy(out + n + VU_CONFIG_HDR, data, size);
    return n + VU_CONFIG_HDR + size;
}

size_t vu_reply_inflight(uint8_t *out, uint64_t mmap_size, uint64_t mmap_offset,
                         uint16_t num_queues, uint16_t queue_size)
{
    size_t n = reply_hdr(out, VU_GET_INFLIGHT_FD, VU_INFLIGHT_PAYLOAD);
    memset(out + n, 0, VU_INFLIGHT_PAYLOAD);
    st64(out + n, mmap_size);
    st64(out + n + 8, mmap_offset);
    out[n + 16] = (uint8_t)num_queues;
    out[n + 17] = (uint8_t)(num_queues >> 8);
    out[n + 18] = (uint8_t)queue_size;
    out[n + 19] = (uint8_t)(queue_size >> 8);
    return n + VU_INFLIGHT_PAYLOAD;
}
