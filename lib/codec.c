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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

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
#define SEG_BASE_LABEL "glidefs segment key v2"
#define SEG_KEY_TAG "GFSSEGK1"

/* The keys derived from the data keys live in a page of their own: locked in
 * RAM where RLIMIT_MEMLOCK allows (never written to swap), left out of core
 * dumps, wiped before the page is returned. */
struct codec_gen {
    uint32_t gen;                  /* data key generation, >= 1 */
    uint8_t seg_base[GFS_KEY_LEN]; /* segment keys derive from it */
    uint8_t mac_key[GFS_KEY_LEN];
};
struct codec_keys {
    uint8_t block_key[GFS_KEY_LEN]; /* legacy (key_gen 0): generation 1's one block key */
    uint8_t kek[GFS_KEY_LEN];       /* the password's key-encryption key (have_kek) */
    int have_legacy, have_kek;      /* generation 1 is known; kek is set */
    /* Generations are appended (gfs_codec_add_gen) while other threads read:
     * an entry is complete before ngens (release) counts it, and entries
     * never move or change. Retired ones stay until the page is wiped. */
    _Atomic unsigned ngens, cur;    /* cur: index of the newest generation */
    _Atomic uint32_t retired;       /* generations <= retired are no longer held */
    pthread_mutex_t add_lock;       /* one gfs_codec_add_gen at a time; guards the two below */
    unsigned writers[GFS_CODEC_MAX_GENS]; /* segments being sealed under g[i] */
    uint32_t frozen;                /* no new segment under generations <= frozen */
    struct codec_gen g[GFS_CODEC_MAX_GENS];
};

struct gfs_codec {
    uint32_t bs;
    int compress, level, sealed;
    uint8_t uuid[16];
    struct codec_keys *keys;  /* NULL when not sealed */
    int keys_locked;          /* mlock of the key page succeeded */
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

static size_t key_page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 && (size_t)ps >= sizeof(struct codec_keys) ? (size_t)ps : 4096;
}

static struct codec_keys *keys_new(int *locked)
{
    size_t n = key_page_size();
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    *locked = mlock(p, n) == 0; /* best effort: an unprivileged limit may be 0 */
    (void)madvise(p, n, MADV_DONTDUMP);
    return p;
}

static void keys_free(struct codec_keys *k, int locked)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->add_lock);
    size_t n = key_page_size();
    mbedtls_platform_zeroize(k, sizeof *k);
    if (locked)
        munlock(k, n);
    munmap(k, n);
}

static int hmac_label(const uint8_t key[GFS_KEY_LEN], const char *label, uint8_t out[GFS_KEY_LEN])
{
    return gfs_hmac_sha256(key, GFS_KEY_LEN, label, strlen(label), out);
}

/* Every generation's keys into a fresh key page: gens distinct, 1 and up,
 * at most GFS_CODEC_MAX_GENS. */
static int derive_keys(struct gfs_codec *c, const struct gfs_datakey *dks, unsigned n)
{
    if (n == 0 || n > GFS_CODEC_MAX_GENS)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        if (dks[i].gen == 0)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (dks[j].gen == dks[i].gen)
                return -EINVAL;
    }
    c->keys = keys_new(&c->keys_locked);
    if (!c->keys)
        return -ENOMEM;
    struct codec_keys *k = c->keys;
    if (pthread_mutex_init(&k->add_lock, NULL) != 0) {
        keys_free(k, c->keys_locked);
        c->keys = NULL;
        return -ENOMEM;
    }
    unsigned cur = 0;
    for (unsigned i = 0; i < n; i++) {
        struct codec_gen *g = &k->g[i];
        g->gen = dks[i].gen;
        if (hmac_label(dks[i].key, SEG_BASE_LABEL, g->seg_base) < 0 ||
            hmac_label(dks[i].key, MAC_KEY_LABEL, g->mac_key) < 0 ||
            (g->gen == 1 && hmac_label(dks[i].key, BLOCK_KEY_LABEL, k->block_key) < 0)) {
            keys_free(k, c->keys_locked);
            c->keys = NULL;
            return -EIO;
        }
        if (g->gen == 1)
            k->have_legacy = 1;
        if (g->gen > k->g[cur].gen)
            cur = i;
    }
    atomic_store(&k->cur, cur);
    atomic_store(&k->ngens, n);
    c->sealed = 1;
    return 0;
}

static const struct codec_gen *find_gen(const struct gfs_codec *c, uint32_t gen)
{
    if (!c->keys || gen <= atomic_load_explicit(&c->keys->retired, memory_order_acquire))
        return NULL;
    unsigned n = atomic_load_explicit(&c->keys->ngens, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (c->keys->g[i].gen == gen)
            return &c->keys->g[i];
    return NULL;
}

static const struct codec_gen *newest(const struct gfs_codec *c)
{
    return &c->keys->g[atomic_load_explicit(&c->keys->cur, memory_order_acquire)];
}

uint32_t gfs_codec_key_gen(const struct gfs_codec *c)
{
    return c && c->sealed ? newest(c)->gen : 0;
}

int gfs_codec_has_gen(const struct gfs_codec *c, uint32_t gen)
{
    if (!c || !c->sealed)
        return 0;
    return gen == 0 ? c->keys->have_legacy && atomic_load(&c->keys->retired) < 1
                    : find_gen(c, gen) != NULL;
}

unsigned gfs_codec_gens(const struct gfs_codec *c, uint32_t *gens, unsigned max)
{
    unsigned n = 0;
    if (!c || !c->sealed)
        return 0;
    unsigned all = atomic_load_explicit(&c->keys->ngens, memory_order_acquire);
    uint32_t retired = atomic_load(&c->keys->retired);
    for (unsigned i = 0; i < all; i++) {
        if (c->keys->g[i].gen <= retired)
            continue;
        if (n < max)
            gens[n] = c->keys->g[i].gen;
        n++;
    }
    return n;
}

int gfs_codec_add_gen(struct gfs_codec *c, const struct gfs_datakey *dk)
{
    if (!c || !c->sealed || !dk || dk->gen == 0)
        return -EINVAL;
    struct codec_keys *k = c->keys;
    SCOPED_LOCK(&k->add_lock);
    unsigned n = atomic_load(&k->ngens);
    for (unsigned i = 0; i < n; i++)
        if (k->g[i].gen == dk->gen)
            return 0; /* held already */
    if (n == GFS_CODEC_MAX_GENS)
        return -ENOSPC;
    struct codec_gen *g = &k->g[n];
    g->gen = dk->gen;
    if (hmac_label(dk->key, SEG_BASE_LABEL, g->seg_base) < 0 ||
        hmac_label(dk->key, MAC_KEY_LABEL, g->mac_key) < 0) {
        mbedtls_platform_zeroize(g, sizeof *g);
        return -EIO;
    }
    atomic_store_explicit(&k->ngens, n + 1, memory_order_release);
    if (dk->gen > k->g[atomic_load(&k->cur)].gen)
        atomic_store_explicit(&k->cur, n, memory_order_release);
    return 0;
}

/* The slot of generation gen, or -1. add_lock held (or any: slots never move). */
static int slot_of(const struct codec_keys *k, uint32_t gen)
{
    unsigned n = atomic_load_explicit(&k->ngens, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (k->g[i].gen == gen)
            return (int)i;
    return -1;
}

int gfs_codec_writer_begin(struct gfs_codec *c, uint32_t gen)
{
    if (!c || !c->sealed)
        return -EINVAL;
    SCOPED_LOCK(&c->keys->add_lock);
    int i = slot_of(c->keys, gen);
    if (i < 0 || gen <= c->keys->frozen || gen <= atomic_load(&c->keys->retired))
        return -ENOKEY;
    c->keys->writers[i]++;
    return 0;
}

void gfs_codec_writer_end(struct gfs_codec *c, uint32_t gen)
{
    if (!c || !c->sealed)
        return;
    SCOPED_LOCK(&c->keys->add_lock);
    int i = slot_of(c->keys, gen);
    if (i >= 0 && c->keys->writers[i])
        c->keys->writers[i]--;
}

int gfs_codec_freeze(struct gfs_codec *c, uint32_t upto, uint32_t *was)
{
    if (!c || !c->sealed || upto >= gfs_codec_key_gen(c))
        return -EINVAL;
    struct codec_keys *k = c->keys;
    SCOPED_LOCK(&k->add_lock);
    unsigned n = atomic_load(&k->ngens);
    for (unsigned i = 0; i < n; i++)
        if (k->g[i].gen <= upto && k->writers[i])
            return -EBUSY; /* a segment is being sealed under one of them */
    if (was)
        *was = k->frozen;
    if (upto > k->frozen)
        k->frozen = upto;
    return 0;
}

void gfs_codec_unfreeze(struct gfs_codec *c, uint32_t to)
{
    if (!c || !c->sealed)
        return;
    SCOPED_LOCK(&c->keys->add_lock);
    c->keys->frozen = to;
}

int gfs_codec_retire(struct gfs_codec *c, uint32_t upto)
{
    if (!c || !c->sealed || upto >= gfs_codec_key_gen(c))
        return -EINVAL; /* the newest generation stays */
    if (upto > atomic_load(&c->keys->retired))
        atomic_store_explicit(&c->keys->retired, upto, memory_order_release);
    return 0;
}

int gfs_codec_set_kek(struct gfs_codec *c, const uint8_t kek[GFS_KEY_LEN])
{
    if (!c || !c->sealed || !kek)
        return -EINVAL;
    SCOPED_LOCK(&c->keys->add_lock);
    memcpy(c->keys->kek, kek, GFS_KEY_LEN);
    c->keys->have_kek = 1;
    return 0;
}

int gfs_codec_kek(const struct gfs_codec *c, uint8_t kek[GFS_KEY_LEN])
{
    if (!c || !c->sealed)
        return -ENOKEY;
    SCOPED_LOCK(&c->keys->add_lock);
    if (!c->keys->have_kek)
        return -ENOKEY;
    memcpy(kek, c->keys->kek, GFS_KEY_LEN);
    return 0;
}

int gfs_codec_sealkey(const struct gfs_codec *c, uint32_t gen, const char *name,
                      struct gfs_sealkey *out)
{
    if (!c || !out || (gen && !name))
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (!c->sealed)
        return -EINVAL;
    out->gen = gen;
    if (gen == 0) {
        if (!gfs_codec_has_gen(c, 0))
            return -ENOKEY;
        memcpy(out->k, c->keys->block_key, GFS_KEY_LEN);
        return 0;
    }
    const struct codec_gen *g = find_gen(c, gen);
    if (!g)
        return -ENOKEY;
    /* HMAC(seg_base, "GFSSEGK1" || name): one key per segment object name */
    size_t nl = strlen(name);
    if (nl > 1024)
        return -EINVAL;
    uint8_t msg[8 + 1024];
    memcpy(msg, SEG_KEY_TAG, 8);
    memcpy(msg + 8, name, nl);
    return gfs_hmac_sha256(g->seg_base, GFS_KEY_LEN, msg, 8 + nl, out->k) < 0 ? -EIO : 0;
}

void gfs_sealkey_wipe(struct gfs_sealkey *k)
{
    if (k)
        mbedtls_platform_zeroize(k, sizeof *k);
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
    struct gfs_datakey one;
    const struct gfs_datakey *dks = p->keys;
    unsigned ndk = p->nkeys;
    if (p->data_key && !p->keys) {
        one.gen = 1;
        memcpy(one.key, p->data_key, GFS_KEY_LEN);
        dks = &one;
        ndk = 1;
    }
    if (dks) {
        int r = derive_keys(c, dks, ndk);
        if (dks == &one)
            mbedtls_platform_zeroize(&one, sizeof one);
        if (r < 0) {
            free(c);
            return r;
        }
        if (p->kek) {
            memcpy(c->keys->kek, p->kek, GFS_KEY_LEN);
            c->keys->have_kek = 1;
        }
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        keys_free(c->keys, c->keys_locked);
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
    keys_free(c->keys, c->keys_locked);
    free(c);
}

int gfs_codec_keys_locked(const struct gfs_codec *c)
{
    return c && c->keys && c->keys_locked;
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

/* key: the AES key for sealed codecs (ignored otherwise). */
static int encode_with(struct gfs_codec *c, const uint8_t *key, uint64_t block_index,
                       uint64_t write_seq, const void *in, void *out, uint32_t *outlen,
                       uint32_t *flags)
{
    if (!c || !in || !out || !outlen || !flags || (c->sealed && !key))
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
    int r = gfs_aes256gcm_seal(key, o, aad, sizeof(aad), src, plen, dst, dst + plen);
    if (r < 0)
        return r;
    *outlen = (uint32_t)(plen + GFS_SEAL_OVERHEAD);
    *flags = f;
    return 0;
}

int gfs_codec_encode_k(struct gfs_codec *c, const struct gfs_sealkey *k, uint64_t block_index,
                       uint64_t write_seq, const void *in, void *out, uint32_t *outlen,
                       uint32_t *flags)
{
    if (c && c->sealed && !k)
        return -EINVAL;
    return encode_with(c, k ? k->k : NULL, block_index, write_seq, in, out, outlen, flags);
}

int gfs_codec_encode_seq(struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                         const void *in, void *out, uint32_t *outlen, uint32_t *flags)
{
    if (c && c->sealed && !gfs_codec_has_gen(c, 0))
        return -ENOKEY;
    return encode_with(c, c && c->sealed ? c->keys->block_key : NULL, block_index, write_seq, in,
                       out, outlen, flags);
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

static int decode_inner(struct gfs_codec *c, const uint8_t *key, uint64_t block_index,
                        uint64_t write_seq, uint32_t flags, const uint8_t *in, uint32_t inlen,
                        uint8_t *out)
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
        if (!key)
            return -EIO; /* no key for this payload's generation */
        int r = gfs_aes256gcm_open(key, in, aad, sizeof(aad), in + GFS_GCM_NONCE_LEN, plen, dst,
                                   in + GFS_GCM_NONCE_LEN + plen);
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

static int decode_with(struct gfs_codec *c, const uint8_t *key, uint64_t block_index,
                       uint64_t write_seq, uint32_t flags, const void *in, uint32_t inlen,
                       void *out)
{
    if (!c || !out)
        return -EINVAL;
    if (!in && inlen)
        return -EINVAL;
    int r = decode_inner(c, key, block_index, write_seq, flags, in, inlen, out);
    if (r < 0)
        memset(out, 0, c->bs);
    return r;
}

int gfs_codec_decode_k(struct gfs_codec *c, const struct gfs_sealkey *k, uint64_t block_index,
                       uint64_t write_seq, uint32_t flags, const void *in, uint32_t inlen,
                       void *out)
{
    return decode_with(c, k ? k->k : NULL, block_index, write_seq, flags, in, inlen, out);
}

int gfs_codec_decode_seq(struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                         uint32_t flags, const void *in, uint32_t inlen, void *out)
{
    const uint8_t *key = gfs_codec_has_gen(c, 0) ? c->keys->block_key : NULL;
    return decode_with(c, key, block_index, write_seq, flags, in, inlen, out);
}

int gfs_codec_reseal(struct gfs_codec *c, const struct gfs_sealkey *from,
                     const struct gfs_sealkey *to, uint64_t block_index, uint64_t write_seq,
                     uint32_t flags, const void *in, uint32_t inlen, void *out)
{
    if (!c || !c->sealed || !from || !to || !in || !out || !(flags & GFS_SEGF_SEALED) ||
        (flags & ~(uint32_t)GFS_SEGF_CODED) || inlen <= GFS_SEAL_OVERHEAD ||
        inlen > gfs_codec_max_stored(c))
        return -EINVAL;
    /* open and seal again under a fresh nonce: no decompression, the
     * payload keeps its length and coded flags */
    uint8_t aad[AAD_LEN];
    make_aad(c, block_index, write_seq, flags, aad);
    const uint8_t *ip = in;
    uint8_t *op = out;
    size_t plen = inlen - GFS_SEAL_OVERHEAD;
    int r = gfs_aes256gcm_open(from->k, ip, aad, sizeof aad, ip + GFS_GCM_NONCE_LEN, plen,
                               op + GFS_GCM_NONCE_LEN, ip + GFS_GCM_NONCE_LEN + plen);
    if (r < 0) {
        mbedtls_platform_zeroize(out, inlen);
        return r == -ENOMEM ? r : -EIO;
    }
    if (gfs_random_bytes(op, GFS_GCM_NONCE_LEN) < 0)
        r = -EIO;
    else
        r = gfs_aes256gcm_seal(to->k, op, aad, sizeof aad, op + GFS_GCM_NONCE_LEN, plen,
                               op + GFS_GCM_NONCE_LEN, op + GFS_GCM_NONCE_LEN + plen);
    if (r < 0)
        mbedtls_platform_zeroize(out, inlen);
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
    const struct codec_gen *g = newest(c);
    return gfs_hmac_sha256(g->mac_key, sizeof(g->mac_key), buf, len, mac);
}

int gfs_codec_mac_verify(const struct gfs_codec *c, const void *buf, size_t len,
                         const uint8_t mac[GFS_MAC_LEN])
{
    uint8_t want[GFS_MAC_LEN];
    if (!c || !c->sealed || !mac || (!buf && len))
        return -EINVAL;
    /* any generation the volume still keeps: objects written before a
     * rotation carry the MAC of the generation current then */
    int r = -EBADMSG;
    unsigned n = atomic_load_explicit(&c->keys->ngens, memory_order_acquire);
    unsigned cur = atomic_load_explicit(&c->keys->cur, memory_order_acquire);
    uint32_t retired = atomic_load_explicit(&c->keys->retired, memory_order_acquire);
    for (unsigned i = 0; i < n && r == -EBADMSG; i++) {
        const struct codec_gen *g = &c->keys->g[(cur + n - i) % n]; /* newest first */
        if (g->gen <= retired)
            continue;
        int h = gfs_hmac_sha256(g->mac_key, sizeof(g->mac_key), buf, len, want);
        if (h < 0)
            r = h;
        else if (gfs_ct_equal(want, mac, GFS_MAC_LEN))
            r = 0;
    }
    mbedtls_platform_zeroize(want, sizeof(want));
    return r;
}
