/*
 * codec.c — the block codec of codec.h: zstd compression and AES-256-GCM
 * sealing of block payloads, the header MAC, and the crypto helpers keywrap.c
 * shares (random bytes, constant-time compare); the AEAD is aead.c.
 *
 * Stored bytes are hostile input: decoding checks every length before it is
 * used, opens the seal before it decompresses anything, and decompresses into
 * the caller's block_size buffer only (a frame must declare exactly
 * block_size bytes and be the only frame), so no input makes it allocate or
 * write more than one block. zstd contexts are expensive to build, so a few
 * are kept in a mutex-protected pool.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/platform_util.h>
#include <zstd.h>

#include "bytes.h"
#include "cleanup.h"
#include "codec.h"
#include "segment.h"
#include "sigv4.h"

#define POOL_MAX 16
#define DEFAULT_LEVEL 3
#define AAD_LEN 48
#define BLOCK_KEY_LABEL "glidefs block key v1"
#define MAC_KEY_LABEL "glidefs header mac v1"

struct gfs_codec {
    uint32_t bs;
    int compress, level, sealed;
    uint8_t uuid[16];
    uint8_t block_key[GFS_KEY_LEN];
    uint8_t mac_key[GFS_KEY_LEN];
    unsigned char window_log; /* log2(bs): no valid frame needs a bigger window */
    pthread_mutex_t lock;     /* guards the pools */
    ZSTD_CCtx *cpool[POOL_MAX];
    ZSTD_DCtx *dpool[POOL_MAX];
    unsigned ncpool, ndpool;
};

/* ---- helpers ---- */

int gfs_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= (uint8_t)(x[i] ^ y[i]);
    return d == 0;
}

int gfs_random_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -EIO;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* ---- the codec ---- */

static int block_size_ok(uint32_t bs)
{
    return bs >= 4096u && bs <= (4u << 20) && (bs & (bs - 1)) == 0;
}

int gfs_codec_new(const struct gfs_codec_params *p, struct gfs_codec **out)
{
    if (!p || !out || !block_size_ok(p->block_size) || (p->compress != 0 && p->compress != 1))
        return -EINVAL;
    int level = p->level ? p->level : DEFAULT_LEVEL;
    if (p->compress && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
        return -EINVAL;
    struct gfs_codec *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->bs = p->block_size;
    c->compress = p->compress;
    c->level = level;
    memcpy(c->uuid, p->volume_uuid, 16);
    while ((1u << c->window_log) < c->bs)
        c->window_log++;
    if (p->data_key) {
        c->sealed = 1;
        if (gfs_hmac_sha256(p->data_key, GFS_KEY_LEN, BLOCK_KEY_LABEL, strlen(BLOCK_KEY_LABEL),
                            c->block_key) < 0 ||
            gfs_hmac_sha256(p->data_key, GFS_KEY_LEN, MAC_KEY_LABEL, strlen(MAC_KEY_LABEL),
                            c->mac_key) < 0) {
            mbedtls_platform_zeroize(c, sizeof(*c));
            free(c);
            return -EIO;
        }
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        mbedtls_platform_zeroize(c, sizeof(*c));
        free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void gfs_codec_free(struct gfs_codec *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->ncpool; i++)
        ZSTD_freeCCtx(c->cpool[i]);
    for (unsigned i = 0; i < c->ndpool; i++)
        ZSTD_freeDCtx(c->dpool[i]);
    pthread_mutex_destroy(&c->lock);
    mbedtls_platform_zeroize(c, sizeof(*c));
    free(c);
}

int gfs_codec_sealed(const struct gfs_codec *c)
{
    return c && c->sealed;
}

uint32_t gfs_codec_block_size(const struct gfs_codec *c)
{
    return c ? c->bs : 0;
}

size_t gfs_codec_max_stored(const struct gfs_codec *c)
{
    _Static_assert(GFS_SEAL_OVERHEAD <= 4096u, "seal overhead must fit GFS_SEG_MAX_STORED");
    return (size_t)c->bs + (c->sealed ? GFS_SEAL_OVERHEAD : 0);
}

static ZSTD_CCtx *cctx_get(struct gfs_codec *c)
{
    ZSTD_CCtx *x = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->ncpool)
        x = c->cpool[--c->ncpool];
    pthread_mutex_unlock(&c->lock);
    return x ? x : ZSTD_createCCtx();
}

static void cctx_put(struct gfs_codec *c, ZSTD_CCtx *x)
{
    pthread_mutex_lock(&c->lock);
    if (c->ncpool < POOL_MAX) {
        c->cpool[c->ncpool++] = x;
        x = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    ZSTD_freeCCtx(x);
}

static ZSTD_DCtx *dctx_get(struct gfs_codec *c)
{
    ZSTD_DCtx *x = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->ndpool)
        x = c->dpool[--c->ndpool];
    pthread_mutex_unlock(&c->lock);
    if (x)
        return x;
    x = ZSTD_createDCtx();
    if (x && ZSTD_isError(ZSTD_DCtx_setParameter(x, ZSTD_d_windowLogMax, c->window_log))) {
        ZSTD_freeDCtx(x);
        x = NULL;
    }
    return x;
}

static void dctx_put(struct gfs_codec *c, ZSTD_DCtx *x)
{
    pthread_mutex_lock(&c->lock);
    if (c->ndpool < POOL_MAX) {
        c->dpool[c->ndpool++] = x;
        x = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    ZSTD_freeDCtx(x);
}

static void make_aad(const struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                     uint32_t flags, uint8_t aad[AAD_LEN])
{
    memcpy(aad, "GFSBLK01", 8);
    memcpy(aad + 8, c->uuid, 16);
    gfs_le64_put(aad + 24, block_index);
    gfs_le64_put(aad + 32, write_seq);
    gfs_le32_put(aad + 40, flags);
    gfs_le32_put(aad + 44, c->bs);
}

int gfs_codec_encode_seq(struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                         const void *in, void *out, uint32_t *outlen, uint32_t *flags)
{
    if (!c || !in || !out || !outlen || !flags)
        return -EINVAL;
    uint8_t *o = out;
    uint8_t *dst = c->sealed ? o + GFS_GCM_NONCE_LEN : o;
    const uint8_t *src = in;
    size_t plen = c->bs;
    uint32_t f = 0;

    if (c->compress) {
        /* Worth it only when it saves 1/64 of the block; a frame that does
         * not fit that is "incompressible" (zstd reports dstSize_tooSmall)
         * and the block is stored as it is. Any other zstd failure also
         * falls back to the raw block: correct, just bigger. */
        size_t cap = c->bs - c->bs / 64;
        ZSTD_CCtx *cc = cctx_get(c);
        if (cc) {
            size_t r = ZSTD_compressCCtx(cc, dst, cap, in, c->bs, c->level);
            cctx_put(c, cc);
            if (!ZSTD_isError(r) && r > 0 && r <= cap) {
                f |= GFS_SEGF_ZSTD;
                plen = r;
                src = dst;
            }
        }
    }
    if (!c->sealed) {
        if (!(f & GFS_SEGF_ZSTD))
            memcpy(o, in, c->bs);
        *outlen = (uint32_t)plen;
        *flags = f;
        return 0;
    }
    f |= GFS_SEGF_SEALED;
    uint8_t aad[AAD_LEN];
    make_aad(c, block_index, write_seq, f, aad);
    if (gfs_random_bytes(o, GFS_GCM_NONCE_LEN) < 0)
        return -EIO;
    /* src is either the caller's block or the frame already at dst
     * (sealed in place, which GCM allows). */
    int r = gfs_aes256gcm_seal(c->block_key, o, aad, sizeof(aad), src, plen, dst, dst + plen);
    if (r < 0)
        return r;
    *outlen = (uint32_t)(plen + GFS_SEAL_OVERHEAD);
    *flags = f;
    return 0;
}

int gfs_codec_encode(struct gfs_codec *c, uint64_t block_index, const void *in, void *out,
                     uint32_t *outlen, uint32_t *flags)
{
    return gfs_codec_encode_seq(c, block_index, 0, in, out, outlen, flags);
}

/* One zstd frame of exactly block_size bytes into out. */
static int inflate_block(struct gfs_codec *c, const uint8_t *p, size_t plen, void *out)
{
    /* The encoder keeps only frames shorter than the block. */
    if (plen == 0 || plen >= c->bs)
        return -EIO;
    if (ZSTD_getFrameContentSize(p, plen) != c->bs)
        return -EIO; /* also unknown size, errors and skippable frames */
    if (ZSTD_findFrameCompressedSize(p, plen) != plen)
        return -EIO; /* truncated, or trailing bytes / a second frame */
    ZSTD_DCtx *dc = dctx_get(c);
    if (!dc)
        return -ENOMEM;
    /* The output capacity is the block: a frame that tries to produce more
     * fails inside zstd, without writing past out. */
    size_t r = ZSTD_decompressDCtx(dc, out, c->bs, p, plen);
    dctx_put(c, dc);
    if (ZSTD_isError(r) || r != c->bs)
        return -EIO;
    return 0;
}

static int decode_inner(struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                        uint32_t flags, const uint8_t *in, uint32_t inlen, uint8_t *out)
{
    if (flags & ~(uint32_t)(GFS_SEGF_ZSTD | GFS_SEGF_SEALED))
        return -EIO; /* HOLE or unknown bits: not a stored payload */
    int sealed = (flags & GFS_SEGF_SEALED) != 0;
    if (sealed != c->sealed)
        return -EIO; /* a seal we cannot open, or plain bytes where a seal is due */
    if (inlen > gfs_codec_max_stored(c))
        return -EIO;
    const uint8_t *p = in;
    size_t plen = inlen;
    CLEANUP_FREE uint8_t *tmp = NULL;
    if (sealed) {
        if (inlen <= GFS_SEAL_OVERHEAD)
            return -EIO;
        plen = inlen - GFS_SEAL_OVERHEAD;
        if (flags & GFS_SEGF_ZSTD) {
            if (plen >= c->bs)
                return -EIO;
            tmp = malloc(plen);
            if (!tmp)
                return -ENOMEM;
        } else if (plen != c->bs) {
            return -EIO;
        }
        uint8_t aad[AAD_LEN];
        make_aad(c, block_index, write_seq, flags, aad);
        uint8_t *dst = tmp ? tmp : out;
        int r = gfs_aes256gcm_open(c->block_key, in, aad, sizeof(aad), in + GFS_GCM_NONCE_LEN,
                                   plen, dst, in + GFS_GCM_NONCE_LEN + plen);
        if (r < 0) {
            if (tmp)
                mbedtls_platform_zeroize(tmp, plen);
            return r == -ENOMEM ? r : -EIO;
        }
        if (!tmp)
            return 0;
        p = tmp;
    }
    int r;
    if (flags & GFS_SEGF_ZSTD) {
        r = inflate_block(c, p, plen, out);
    } else if (plen != c->bs) {
        r = -EIO;
    } else {
        if (p != out)
            memmove(out, p, c->bs);
        r = 0;
    }
    if (tmp)
        mbedtls_platform_zeroize(tmp, plen);
    return r;
}

int gfs_codec_decode_seq(struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                         uint32_t flags, const void *in, uint32_t inlen, void *out)
{
    if (!c || !out)
        return -EINVAL;
    if (!in && inlen)
        return -EINVAL;
    int r = decode_inner(c, block_index, write_seq, flags, in, inlen, out);
    if (r < 0)
        memset(out, 0, c->bs);
    return r;
}

int gfs_codec_decode(struct gfs_codec *c, uint64_t block_index, uint32_t flags, const void *in,
                     uint32_t inlen, void *out)
{
    return gfs_codec_decode_seq(c, block_index, 0, flags, in, inlen, out);
}

int gfs_codec_mac(const struct gfs_codec *c, const void *buf, size_t len,
                  uint8_t mac[GFS_MAC_LEN])
{
    if (!c || !c->sealed || !mac || (!buf && len))
        return -EINVAL;
    return gfs_hmac_sha256(c->mac_key, sizeof(c->mac_key), buf, len, mac);
}

int gfs_codec_mac_verify(const struct gfs_codec *c, const void *buf, size_t len,
                         const uint8_t mac[GFS_MAC_LEN])
{
    uint8_t want[GFS_MAC_LEN];
    if (!mac)
        return -EINVAL;
    int r = gfs_codec_mac(c, buf, len, want);
    if (r < 0)
        return r;
    r = gfs_ct_equal(want, mac, GFS_MAC_LEN) ? 0 : -EBADMSG;
    mbedtls_platform_zeroize(want, sizeof(want));
    return r;
}
