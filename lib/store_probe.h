/*
 * store_probe.h — does the object store honour conditional writes? Every
 * lease change (lease.h) is a conditional PUT; a store that accepts such a
 * PUT and overwrites anyway (older Ceph RGW and MinIO releases, s3rver,
 * several gateways) lets two nodes that take the lease at once both win.
 *
 * The probe asks the store itself, on a scratch key of its own under the
 * store's prefix ("probe/<random>"; volumes live under "nbd/", so it never
 * meets one), through the generic object-store operations only:
 *   1. PUT If-None-Match: *  on the new key           must succeed
 *   2. PUT If-None-Match: *  again (other bytes)        must fail, object unchanged
 *   3. PUT If-Match: <a wrong ETag> (other bytes)       must fail, object unchanged
 *   4. PUT If-Match: <the object's ETag>                must succeed
 * and deletes the key again, whatever happened.
 */
#ifndef GLIDEFS_STORE_PROBE_H
#define GLIDEFS_STORE_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "glidefs/glidefs.h"
#include "objstore.h"

struct gfs_log;

/* Run the probe on st. Returns 0 with *state set to GLIDEFS_STORE_COND_OK,
 * _IGNORED (step 2 or 3 overwrote the object) or _BROKEN (step 4 was
 * refused), and detail (may be NULL) saying what was seen; or a negative
 * errno when the store could not be asked (*state is then _UNKNOWN). */
int gfs_store_probe(struct gfs_objstore *st, struct gfs_log *log, int *state, char *detail,
                    size_t detail_len);

/* "ok", "ignored", "broken" or "unknown". */
const char *gfs_store_cond_name(int state);

#endif
