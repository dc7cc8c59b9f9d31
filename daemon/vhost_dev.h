/*
 * vhost_dev.h — one vhost-user-blk session: a connected frontend (QEMU,
 * Cloud Hypervisor, a test) driving a virtio-blk device on one export. A
 * single thread reads the frontend's messages (vhost_msg.h), keeps its
 * memory table (vhost_mem.h) and virtqueues (vhost_vq.h), and runs the
 * requests each kick brings (vhost_blk.h). Anything the frontend or its
 * guest gets wrong at the protocol or ring level ends this session only.
 */
#ifndef GLIDEFSD_VHOST_DEV_H
#define GLIDEFSD_VHOST_DEV_H

#include <stdint.h>

struct gd_export;

/* Serve the frontend on fd (a connected unix socket) for export e until it
 * leaves, breaks the protocol, or stop_fd becomes readable. Closes neither
 * fd nor stop_fd and keeps the caller's reference to e. */
void vu_dev_serve(int fd, int stop_fd, uint64_t id, struct gd_export *e);

#endif
