/*
 * aead_bench.c — AES-256-GCM seal and open throughput on one core: the
 * library's AEAD (lib/aead.c, OpenSSL EVP) and, in the same run, mbedTLS's
 * GCM as the library used it before (issue 25). bench/lib.sh aead adds
 * `openssl speed` and writes bench/results/aead.md.
 *
 *   aead_bench SECONDS     CSV rows: scenario,metric,unit,system,value
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/gcm.h>

#include "aead.h"

typedef int (*aead_fn)(const uint8_t *key, const uint8_t *nonce, const void *aad, size_t aadlen,
                       const void *in, size_t len, void *out, uint8_t *tag);

static int mbed_seal(const uint8_t *key, const uint8_t *nonce, const void *aad, size_t aadlen,
                     const void *in, size_t len, void *out, uint8_t *tag)
{
    mbedtls_gcm_context g;
    mbedtls_gcm_init(&g);
    int r = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256);
    if (r == 0)
        r = mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, len, nonce, GFS_GCM_NONCE_LEN, aad,
                                      aadlen, in, out, GFS_GCM_TAG_LEN, tag);
    mbedtls_gcm_free(&g);
    return r;
}

static int mbed_open(const uint8_t *key, const uint8_t *nonce, const void *aad, size_t aadlen,
                     const void *in, size_t len, void *out, uint8_t *tag)
{
    mbedtls_gcm_context g;
    mbedtls_gcm_init(&g);
    int r = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256);
    if (r == 0)
        r = mbedtls_gcm_auth_decrypt(&g, len, nonce, GFS_GCM_NONCE_LEN, aad, aadlen, tag,
                                     GFS_GCM_TAG_LEN, in, out);
    mbedtls_gcm_free(&g);
    return r;
}

static int evp_seal(const uint8_t *key, const uint8_t *nonce, const void *aad, size_t aadlen,
                    const void *in, size_t len, void *out, uint8_t *tag)
{
    return gfs_aes256gcm_seal(key, nonce, aad, aadlen, in, len, out, tag);
}

static int evp_open(const uint8_t *key, const uint8_t *nonce, const void *aad, size_t aadlen,
                    const void *in, size_t len, void *out, uint8_t *tag)
{
    return gfs_aes256gcm_open(key, nonce, aad, aadlen, in, len, out, tag);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* MiB/s of fn over len-byte messages for about secs seconds; open runs over
 * a message sealed once (it must authenticate every time). */
static double rate(aead_fn seal, aead_fn fn, size_t len, double secs)
{
    uint8_t key[32], nonce[12], aad[48], tag[16];
    memset(key, 7, sizeof key);
    memset(nonce, 9, sizeof nonce);
    memset(aad, 1, sizeof aad);
    uint8_t *in = malloc(len), *ct = malloc(len), *out = malloc(len);
    if (!in || !ct || !out)
        abort();
    for (size_t i = 0; i < len; i++)
        in[i] = (uint8_t)(i * 131 + 7);
    if (seal(key, nonce, aad, sizeof aad, in, len, ct, tag) != 0)
        abort();
    double t0 = now(), t;
    uint64_t n = 0;
    do {
        for (int i = 0; i < 16; i++, n++)
            if (fn(key, nonce, aad, sizeof aad, fn == seal ? in : ct, len, out, tag) != 0)
                abort();
        t = now();
    } while (t - t0 < secs);
    free(in);
    free(ct);
    free(out);
    return (double)n * (double)len / (t - t0) / 1048576.0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    static const size_t sizes[] = {4096, 131072};
    for (size_t s = 0; s < 2; s++) {
        char scen[64];
        snprintf(scen, sizeof scen, "%zu KiB messages, one core", sizes[s] / 1024);
        printf("\"%s\",seal,MiB/s,glidefs (OpenSSL EVP),%.1f\n", scen,
               rate(evp_seal, evp_seal, sizes[s], secs));
        printf("\"%s\",seal,MiB/s,mbedTLS 2.28 (before),%.1f\n", scen,
               rate(mbed_seal, mbed_seal, sizes[s], secs));
        printf("\"%s\",open,MiB/s,glidefs (OpenSSL EVP),%.1f\n", scen,
               rate(evp_seal, evp_open, sizes[s], secs));
        printf("\"%s\",open,MiB/s,mbedTLS 2.28 (before),%.1f\n", scen,
               rate(mbed_seal, mbed_open, sizes[s], secs));
    }
    return 0;
}
