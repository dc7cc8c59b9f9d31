/*
 * crc32c.c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) with the
 * usual pre/post inversion, so gfs_crc32c(0, "123456789", 9) == 0xE3069283
 * and calls chain.
 *
 * Two implementations: the SSE4.2 crc32 instruction (8 bytes per step) on
 * x86-64 CPUs that have it, and a portable slicing-by-8 table fallback. The
 * choice and the tables are made once, under pthread_once, and read-only
 * afterwards: no mutable global state.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "bytes.h"
#include "crc32c.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GFS_CRC32C_X86 1
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

/* Written once inside pthread_once, read-only after: pthread_once gives the
 * needed happens-before for every later reader. */
static uint32_t crc_table[8][256];
static int crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] =
                (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFFu];
#ifdef GFS_CRC32C_X86
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

/* Slicing-by-8 on the inverted register value c. */
static uint32_t crc_sw_raw(uint32_t c, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        uint32_t lo = gfs_le32_get(p) ^ c;
        uint32_t hi = gfs_le32_get(p + 4);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
            crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return c;
}

uint32_t gfs_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    return ~crc_sw_raw(~crc, buf, len);
}

#ifdef GFS_CRC32C_X86
__attribute__((target("sse4.2"))) static uint32_t crc_hw_raw(uint32_t c, const uint8_t *p,
                                                              size_t len)
{
    /* Byte steps up to 8-byte alignment, then 8 bytes per instruction. */
    while (len && ((uintptr_t)p & 7u)) {
        c = _mm_crc32_u8(c, *p++);
        len--;
    }
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}
#endif

int gfs_crc32c_hw_available(void)
{
    pthread_once(&crc_once, crc_init);
    return crc_hw;
}

uint32_t gfs_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
#ifdef GFS_CRC32C_X86
    if (gfs_crc32c_hw_available())
        return ~crc_hw_raw(~crc, buf, len);
#endif
    /* Never reached when callers respect gfs_crc32c_hw_available(); stay
     * correct anyway. */
    return gfs_crc32c_sw(crc, buf, len);
}

uint32_t gfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
#ifdef GFS_CRC32C_X86
    if (crc_hw)
        return ~crc_hw_raw(~crc, buf, len);
#endif
    return ~crc_sw_raw(~crc, buf, len);
}
