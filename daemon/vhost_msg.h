/*
 * vhost_msg.h — the vhost-user wire format (QEMU docs/interop/vhost-user.rst):
 * request numbers, feature bits, the message layouts glidefsd accepts, and
 * THE message validator: a pure function over one received message (bytes
 * plus the number of descriptors that came with it), used by vhost_dev.c
 * and by fuzz/fuzz_vhost.c. A frontend is untrusted input: every length,
 * count, index and cross-field relation is checked here, before anything
 * acts on a message.
 */
#ifndef GLIDEFSD_VHOST_MSG_H
#define GLIDEFSD_VHOST_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VU_HDR_SIZE 12
#define VU_MAX_PAYLOAD 512      /* the largest message we take: a config access */
#define VU_MAX_FDS 8            /* descriptors per message (VHOST_MEMORY_BASELINE_NREGIONS) */
#define VU_MAX_REGIONS 8
#define VU_MAX_QUEUES 8         /* virtqueues per device (GET_QUEUE_NUM) */
#define VU_MAX_QUEUE_SIZE 1024  /* descriptors per virtqueue (QEMU's VIRTQUEUE_MAX_SIZE) */
#define VU_CONFIG_MAX 256       /* device config space */
#define VU_CONFIG_HDR 12        /* offset, size, flags before the config bytes */

/* Header flags */
#define VU_VERSION 0x1u
#define VU_VERSION_MASK 0x3u
#define VU_FLAG_REPLY 0x4u
#define VU_FLAG_NEED_REPLY 0x8u

/* Requests (frontend -> backend) */
enum {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_GET_INFLIGHT_FD = 31,
    VU_SET_INFLIGHT_FD = 32,
    VU_RESET_DEVICE = 34,
};

/* Virtio feature bits glidefsd deals with */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VU_F_PROTOCOL_FEATURES 30
#define VIRTIO_F_VERSION_1 32

/* Protocol feature bits */
#define VU_PROTOCOL_F_MQ 0
#define VU_PROTOCOL_F_REPLY_ACK 3
#define VU_PROTOCOL_F_CONFIG 9
#define VU_PROTOCOL_F_INFLIGHT_SHMFD 12
#define VU_PROTOCOL_F_RESET_DEVICE 13

/* GET/SET_INFLIGHT_FD payload: u64 mmap size, u64 mmap offset, u16 queue
 * count, u16 queue size, padded to 24 bytes (QEMU and libvhost-user send
 * sizeof of that struct). The split-ring region (vhost_inflight.h) is one
 * block per queue of VU_INFLIGHT_QUEUE_BYTES(queue size): a 16-byte header
 * and 16 bytes per descriptor, rounded up to 64 (the size libvhost-user
 * uses too, so a region outlives a change of backend). */
#define VU_INFLIGHT_PAYLOAD 24
#define VU_INFLIGHT_QUEUE_BYTES(n) ((16ull + 16ull * (n) + 63ull) & ~63ull)

/* SET_VRING_KICK / CALL / ERR payload */
#define VU_VRING_IDX_MASK 0xffull
#define VU_VRING_NOFD 0x100ull

struct vu_region {
    uint64_t gpa;         /* guest physical address */
    uint64_t size;
    uint64_t uva;         /* the frontend's own virtual address (ring addresses use it) */
    uint64_t mmap_offset; /* where the region starts in its file */
};

struct vu_msg {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
    int nfds;             /* descriptors that came with it (the caller holds them) */
    union {
        uint64_t u64;
        struct {
            uint32_t index, num;
        } state;
        struct {
            uint32_t index, flags;
            uint64_t desc, used, avail, log;
        } addr;
        struct {
            uint32_t nregions;
            struct vu_region r[VU_MAX_REGIONS];
        } mem;
        struct {
            uint32_t offset, size, flags;
            uint8_t data[VU_CONFIG_MAX];
        } config;
        struct {
            uint64_t mmap_size, mmap_offset;
            uint16_t num_queues, queue_size;
        } inflight;
    } p;
};

/* Decode and validate one message: buf holds the header and its whole
 * payload (len bytes), nfds descriptors arrived with it. 0 and *m filled,
 * or -EPROTO with a reason in *why (static text): then the frontend is
 * broken or hostile and its connection goes. Unknown request numbers are
 * refused too (we offer nothing that would make a frontend send them). */
int vu_msg_parse(const uint8_t *buf, size_t len, int nfds, struct vu_msg *m, const char **why);

/* Whether the request is answered with a message of its own (GET_*). */
bool vu_msg_has_reply(uint32_t request);

/* Reply encoders: write a reply to request `req` into out (at least
 * VU_HDR_SIZE + VU_MAX_PAYLOAD bytes) and return its length. */
size_t vu_reply_u64(uint8_t *out, uint32_t req, uint64_t v);
size_t vu_reply_state(uint8_t *out, uint32_t req, uint32_t index, uint32_t num);
size_t vu_reply_config(uint8_t *out, uint32_t offset, uint32_t size, uint32_t flags,
                       const uint8_t *data);
size_t vu_reply_inflight(uint8_t *out, uint64_t mmap_size, uint64_t mmap_offset,
                         uint16_t num_queues, uint16_t queue_size);

const char *vu_request_name(uint32_t req);

#endif
