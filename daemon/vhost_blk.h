/*
 * vhost_blk.h — the virtio-blk device behind a vhost-user socket: its
 * feature bits, its config space, and running one request (a descriptor
 * chain, vhost_vq.h) against the export's volume through the same library
 * calls the NBD path makes (glidefs_pread / pwrite / flush / trim /
 * write_zeroes). Requests the guest gets wrong (a short header, a range
 * past the end, an unaligned length, an unknown type) are answered with a
 * virtio-blk status; only a chain with no room for the status byte is a
 * broken ring (-EPROTO).
 */
#ifndef GLIDEFSD_VHOST_BLK_H
#define GLIDEFSD_VHOST_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "glidefs/glidefs.h"
#include "vhost_vq.h"

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VU_BLK_SEG_MAX 126             /* data buffers per request */
#define VU_BLK_MAX_DISCARD_SEG 16      /* ranges per DISCARD / WRITE_ZEROES */
#define VU_BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per range */
#define VU_BLK_BOUNCE_MAX (32u << 20)  /* a request whose buffers are not whole sectors */
#define VU_BLK_REQ_MAX (256u << 20)    /* data bytes per IN / OUT */
#define VU_BLK_CONFIG_SIZE 60          /* struct virtio_blk_config up to write_zeroes_may_unmap */

struct vu_blk {
    glidefs_volume *vol;
    uint64_t size;        /* bytes, a multiple of 512 */
    bool ro;
    uint16_t num_queues;
    char serial[21];      /* GET_ID: the export name, cut to 20 bytes */
};

/* Device feature bits (virtio-blk's and the ring's) offered for this export. */
uint64_t vu_blk_features(const struct vu_blk *b);

/* The config space (little-endian struct virtio_blk_config), zero-padded to
 * VU_CONFIG_MAX bytes. */
void vu_blk_config(const struct vu_blk *b, uint8_t out[256]);

/* Run the request in c and write its status. 0 and *used_len (bytes put
 * into writable buffers, status included), or -EPROTO (no status byte). */
int vu_blk_run(const struct vu_blk *b, struct vu_chain *c, uint32_t *used_len);

#endif
