/*
 * aead.c — AES-256-GCM (aead.h) through OpenSSL's libcrypto EVP interface.
 *
 * Why libcrypto and not mbedTLS (which the rest of the crypto uses): on
 * x86-64 with AES-NI and PCLMULQDQ, mbedTLS 2.28 (Debian 12's) seals a
 * 128 KiB block at about 107 MiB/s - its GHASH is table-driven C - while
 * EVP's stitched AES-NI/CLMUL code runs at about 3,000 MiB/s on one core
 * (issue 25; bench/results/codec.md has the end-to-end figures). libcrypto
 * is mapped into every glidefsd already (libcurl links it on Debian), so
 * this adds no runtime dependency. The output is the same AES-256-GCM:
 * stores written with mbedTLS open unchanged (tests/integration/
 * test_crypto_compat.c reads a store the mbedTLS build wrote).
 *
 * A context per call: its key setup costs well under a microsecond next to
 * sealing a block, and the functions stay free of shared mutable state, so
 * any thread may call them. EVP_CIPHER_CTX_free clears the key schedule.
 */
#include "aead.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static int lengths_ok(size_t aadlen, size_t len)
{
    return aadlen <= INT_MAX && len <= INT_MAX;
}

int gfs_aes256gcm_seal(const uint8_t key[GFS_KEY_LEN], const uint8_t nonce[GFS_GCM_NONCE_LEN],
                       const void *aad, size_t aadlen, const void *in, size_t len, void *out,
                       uint8_t tag[GFS_GCM_TAG_LEN])
{
    if (!lengths_ok(aadlen, len))
        return -EINVAL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return -ENOMEM;
    int n = 0, ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1;
    if (ok && aadlen)
        ok = EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aadlen) == 1;
    if (ok && len)
        ok = EVP_EncryptUpdate(ctx, out, &n, in, (int)len) == 1 && (size_t)n == len;
    if (ok)
        ok = EVP_EncryptFinal_ex(ctx, (uint8_t *)out + len, &n) == 1 && n == 0;
    if (ok)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GFS_GCM_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -EIO;
}

int gfs_aes256gcm_open(const uint8_t key[GFS_KEY_LEN], const uint8_t nonce[GFS_GCM_NONCE_LEN],
                       const void *aad, size_t aadlen, const void *in, size_t len, void *out,
                       const uint8_t tag[GFS_GCM_TAG_LEN])
{
    if (!lengths_ok(aadlen, len))
        return -EINVAL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return -ENOMEM;
    uint8_t t[GFS_GCM_TAG_LEN];
    memcpy(t, tag, sizeof t); /* the ctrl call takes a non-const pointer */
    int n = 0, ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, sizeof t, t) == 1;
    if (ok && aadlen)
        ok = EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) == 1;
    if (ok && len)
        ok = EVP_DecryptUpdate(ctx, out, &n, in, (int)len) == 1 && (size_t)n == len;
    int auth = 0;
    if (ok)
        auth = EVP_DecryptFinal_ex(ctx, (uint8_t *)out + len, &n) == 1 && n == 0;
    EVP_CIPHER_CTX_free(ctx);
    if (ok && auth)
        return 0;
    if (len)
        OPENSSL_cleanse(out, len); /* never hand back unauthenticated plaintext */
    return ok ? -EBADMSG : -EIO;
}
