/*
 * segwriter.h — building one segment object (docs/design.md 5.5) and
 * putting it into the store and the block map: the one writer of segments,
 * used by the syncer (blocks encoded from journal data) and by compaction
 * (payloads copied as they are stored, still compressed; sealed ones are
 * opened and sealed again under the new segment's key).
 *
 *   gfs_segw_begin   room for the header and the payloads; on a sealed
 *                    volume the segment's own key (codec.h: the newest data
 *                    key generation and the object's name)
 *   gfs_segw_add_*   exactly max entries, in increasing block order: a block
 *                    encoded by the codec, a payload copied, or a hole;
 *                    every payload gets its CRC-32C trailer
 *   gfs_segw_finish  the header and its MAC in front: the object is ready
 *   gfs_segw_put     PUT under nbd/<vol>/seg/<epoch>-<seq>
 *   gfs_segw_commit  a row in the block map's segment table, and the
 *                    volume's newest-segment position (lock held)
 *
 * A writer is used by one thread; nothing here takes a lock.
 */
#ifndef GLIDEFS_SEGWRITER_H
#define GLIDEFS_SEGWRITER_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "segment.h"

struct glidefs_volume;
struct gfs_codec;
struct gfs_objstore;

struct gfs_segw {
    uint8_t *obj;               /* header room, then the payloads */
    size_t hlen, off, cap;      /* header length, end of the payloads, room */
    struct gfs_seg_entry *ents; /* max entries */
    uint32_t n, max;
    struct gfs_codec *codec;
    uint64_t epoch, seq;
    char name[512];             /* the object's key: nbd/<vol>/seg/<epoch>-<seq> */
    int sealed;
    struct gfs_sealkey key;     /* the segment's key when sealed (wiped by free) */
    uint32_t writer_gen;        /* registered with the codec (gfs_codec_writer_begin) */
};

/* Room for max entries of segment (epoch, seq) of volume vol whose payloads,
 * trailers included, take at most payload_max bytes, encoded by codec (a
 * sealed one: a header MAC, and the segment key of its newest generation). */
int gfs_segw_begin(struct gfs_segw *w, struct gfs_codec *codec, const char *vol, uint64_t epoch,
                   uint64_t seq, uint32_t max, size_t payload_max);

/* Block `block` (bs bytes of data) encoded by the writer's codec, at
 * write_seq. Its entry into *out (may be NULL). */
int gfs_segw_add_block(struct gfs_segw *w, uint32_t bs, uint64_t block, uint64_t write_seq,
                       const void *data, struct gfs_seg_entry *out);

/* A payload as some segment stores it (length bytes with flags, raw_length
 * decoded, crc its CRC-32C, checked by the caller), copied; a sealed one is
 * opened under from (its segment's key) and sealed under this segment's
 * (-EIO if it does not open: nothing is added). */
int gfs_segw_add_stored(struct gfs_segw *w, const struct gfs_sealkey *from, uint64_t block,
                        uint64_t write_seq, const void *payload, uint32_t length, uint32_t flags,
                        uint32_t crc, uint32_t raw_length, struct gfs_seg_entry *out);

/* A block that reads as zeroes: an entry, no payload. */
void gfs_segw_add_hole(struct gfs_segw *w, uint64_t block, uint64_t write_seq,
                       struct gfs_seg_entry *out);

/* The header (and its MAC when sealed) in front of the payloads.
 * Then w->obj holds the object, gfs_segw_len(w) bytes long. */
int gfs_segw_finish(struct gfs_segw *w, uint32_t bs, const uint8_t volume_uuid[16]);
static inline size_t gfs_segw_len(const struct gfs_segw *w)
{
    return w->off;
}

/* PUT the finished object under w->name. */
int gfs_segw_put(const struct gfs_segw *w, struct gfs_objstore *st);

void gfs_segw_free(struct gfs_segw *w);

/* The segment w wrote is in the store: its row in the block map's segment
 * table (the index, or a negative errno), and the volume's newest segment
 * and count since the last manifest. v->lock held. */
int64_t gfs_segw_commit(struct glidefs_volume *v, const struct gfs_segw *w);

#endif
