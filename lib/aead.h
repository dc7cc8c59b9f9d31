/*
 * aead.h — AES-256-GCM, the one authenticated cipher of the store format:
 * block payloads (codec.c) and the wrapped data key (keywrap.c) are sealed
 * with it. A 96-bit nonce and a 128-bit tag, as docs/design.md specifies.
 */
#ifndef GLIDEFS_AEAD_H
#define GLIDEFS_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define GFS_KEY_LEN 32
#define GFS_GCM_NONCE_LEN 12
#define GFS_GCM_TAG_LEN 16

/* out may equal in; len and aadlen at most INT_MAX (else -EINVAL).
 * seal: 0, -EINVAL, -ENOMEM, -EIO. open: 0, -EBADMSG (tag mismatch; out is
 * zeroed, no unauthenticated plaintext is left), -EINVAL, -ENOMEM, -EIO. */
int gfs_aes256gcm_seal(const uint8_t key[GFS_KEY_LEN], const uint8_t nonce[GFS_GCM_NONCE_LEN],
                       const void *aad, size_t aadlen, const void *in, size_t len, void *out,
                       uint8_t tag[GFS_GCM_TAG_LEN]);
int gfs_aes256gcm_open(const uint8_t key[GFS_KEY_LEN], const uint8_t nonce[GFS_GCM_NONCE_LEN],
                       const void *aad, size_t aadlen, const void *in, size_t len, void *out,
                       const uint8_t tag[GFS_GCM_TAG_LEN]);

#endif
