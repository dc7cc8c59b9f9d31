/*
 * profile.c — the access profile: the recorder the read path feeds, and
 * the nbd/<vol>/profile object's encoder and parser (see profile.h and
 * docs/design.md 5.15).
 */
#include "profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "codec.h"
#include "crc32c.h"
#include "glidefs/glidefs.h"

int gfs_blkset_init(struct gfs_blkset *s, uint32_t cap)
{
    memset(s, 0, sizeof *s);
    if (cap == 0)
        return 0;
    /* at most half full: probes stay short */
    uint64_t slots = 16;
    while (slots < (uint64_t)cap * 2)
        slots <<= 1;
    s->keys = calloc(slots, sizeof *s->keys);
    s->pos = malloc(slots * sizeof *s->pos);
    if (!s->keys || !s->pos) {
        gfs_blkset_free(s);
        return -ENOMEM;
    }
    s->mask = (uint32_t)(slots - 1);
    return 0;
}

void gfs_blkset_free(struct gfs_blkset *s)
{
    free(s->keys);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

static uint32_t slot_of(const struct gfs_blkset *s, uint64_t b)
{
    uint64_t h = b * UINT64_C(0x9E3779B97F4A7C15);
    return (uint32_t)(h >> 32) & s->mask;
}

int64_t gfs_blkset_get(const struct gfs_blkset *s, uint64_t b)
{
    if (!s->keys)
        return -1;
    for (uint32_t i = slot_of(s, b);; i = (i + 1) & s->mask) {
        if (s->keys[i] == 0)
            return -1;
        if (s->keys[i] == b + 1)
            return s->pos[i];
    }
}

int gfs_blkset_add(struct gfs_blkset *s, uint64_t b, uint32_t pos)
{
    if (!s->keys)
        return 0;
    for (uint32_t i = slot_of(s, b);; i = (i + 1) & s->mask) {
        if (s->keys[i] == b + 1)
            return 0;
        if (s->keys[i] == 0) {
            s->keys[i] = b + 1;
            s->pos[i] = pos;
            return 1;
        }
    }
}

int gfs_profile_rec_init(struct gfs_profile_rec *r, uint32_t cap, int64_t now_ms,
                         int64_t window_ms)
{
    memset(r, 0, sizeof *r);
    r->done = 1;
    if (cap == 0 || window_ms <= 0)
        return 0;
    if (cap > GFS_PROFILE_MAX)
        cap = GFS_PROFILE_MAX;
    r->blocks = malloc((size_t)cap * sizeof *r->blocks);
    if (!r->blocks)
        return -ENOMEM;
    int e = gfs_blkset_init(&r->seen, cap);
    if (e < 0) {
        free(r->blocks);
        r->blocks = NULL;
        return e;
    }
    r->cap = cap;
    r->until_ms = now_ms + window_ms;
    r->done = 0;
    return 0;
}

void gfs_profile_rec_free(struct gfs_profile_rec *r)
{
    free(r->blocks);
    gfs_blkset_free(&r->seen);
    memset(r, 0, sizeof *r);
    r->done = 1;
}

void gfs_profile_rec_note(struct gfs_profile_rec *r, uint64_t fb, uint64_t lb, int64_t now_ms)
{
    if (r->done)
        return;
    if (now_ms >= r->until_ms) {
        r->done = 1;
        return;
    }
    for (uint64_t b = fb; b <= lb; b++) {
        if (r->n == r->cap) {
            r->done = 1;
            return;
        }
        if (gfs_blkset_add(&r->seen, b, r->n)) {
            r->blocks[r->n++] = b;
            r->last_new_ms = now_ms;
        }
    }
}

static uint64_t blocks_of(uint64_t size, uint32_t bs)
{
    return size / bs + (size % bs != 0);
}

int gfs_profile_encode(const uint64_t *blocks, uint32_t n, uint64_t volume_size,
                       uint32_t block_size, const struct gfs_codec *codec, uint8_t **out,
                       size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (n > GFS_PROFILE_MAX || block_size == 0 || volume_size == 0)
        return -EINVAL;
    int mac = gfs_codec_sealed(codec);
    size_t body = GFS_PROFILE_HDR + (size_t)n * 8;
    size_t len = body + 4 + (mac ? GFS_MAC_LEN : 0);
    uint8_t *p = malloc(len);
    if (!p)
        return -ENOMEM;
    memcpy(p, GFS_PROFILE_MAGIC, 8);
    gfs_le32_put(p + 8, 1);
    gfs_le32_put(p + 12, mac ? GFS_PROFILEF_MAC : 0);
    gfs_le64_put(p + 16, volume_size);
    gfs_le32_put(p + 24, block_size);
    gfs_le32_put(p + 28, n);
    for (uint32_t i = 0; i < n; i++)
        gfs_le64_put(p + GFS_PROFILE_HDR + (size_t)i * 8, blocks[i]);
    gfs_le32_put(p + body, gfs_crc32c(0, p, body));
    if (mac) {
        int r = gfs_codec_mac(codec, p, body + 4, p + body + 4);
        if (r < 0) {
            free(p);
            return r;
        }
    }
    *out = p;
    *outlen = len;
    return 0;
}

#define BAD(msg)                                                                                   \
    do {                                                                                           \
        if (why)                                                                                   \
            *why = msg;                                                                            \
        return -EIO;                                                                               \
    } while (0)

int gfs_profile_decode(const void *buf, size_t len, uint32_t block_size,
                       const struct gfs_codec *codec, uint64_t **blocks, uint32_t *n,
                       uint64_t *volume_size, const char **why)
{
    const uint8_t *p = buf;
    *blocks = NULL;
    *n = 0;
    *volume_size = 0;
    if (len < GFS_PROFILE_HDR + 4)
        BAD("shorter than its header");
    if (memcmp(p, GFS_PROFILE_MAGIC, 8) != 0)
        BAD("bad magic");
    if (gfs_le32_get(p + 8) != 1)
        BAD("unsupported version");
    uint32_t flags = gfs_le32_get(p + 12);
    if (flags & ~GFS_PROFILEF_MAC)
        BAD("unknown flags");
    int mac = (flags & GFS_PROFILEF_MAC) != 0;
    /* an encrypted volume's profile must carry a MAC, a plain one must not */
    if (mac != gfs_codec_sealed(codec))
        BAD(mac ? "a MAC on a profile of an unencrypted volume" : "no MAC on an encrypted volume");
    uint64_t size = gfs_le64_get(p + 16);
    uint32_t bs = gfs_le32_get(p + 24), cnt = gfs_le32_get(p + 28);
    if (size == 0 || size % 512 || size > GLIDEFS_MAX_VOLUME_SIZE)
        BAD("bad volume size");
    if (bs != block_size || bs == 0)
        BAD("block size differs from the volume's");
    uint64_t nblk = blocks_of(size, bs);
    if (cnt > GFS_PROFILE_MAX || cnt > nblk)
        BAD("more blocks than the volume holds");
    size_t body = GFS_PROFILE_HDR + (size_t)cnt * 8;
    if (len != body + 4 + (mac ? GFS_MAC_LEN : 0))
        BAD("length does not match the block count");
    if (gfs_le32_get(p + body) != gfs_crc32c(0, p, body))
        BAD("CRC mismatch");
    if (mac && gfs_codec_mac_verify(codec, p, body + 4, p + body + 4) != 0)
        BAD("MAC mismatch");
    if (cnt == 0) {
        *volume_size = size;
        return 0;
    }
    uint64_t *out = malloc((size_t)cnt * sizeof *out);
    struct gfs_blkset seen;
    if (!out || gfs_blkset_init(&seen, cnt) < 0) {
        free(out);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < cnt; i++) {
        uint64_t b = gfs_le64_get(p + GFS_PROFILE_HDR + (size_t)i * 8);
        const char *w = b >= nblk ? "a block past the end of the volume"
                        : !gfs_blkset_add(&seen, b, i) ? "a block listed twice" : NULL;
        if (w) {
            gfs_blkset_free(&seen);
            free(out);
            BAD(w);
        }
        out[i] = b;
    }
    gfs_blkset_free(&seen);
    *blocks = out;
    *n = cnt;
    *volume_size = size;
    return 0;
}
