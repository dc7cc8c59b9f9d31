/*
 * errors.c — the small stateless public helpers: glidefs_version,
 * glidefs_strerror, glidefs_name_valid and glidefs_parse_size.
 *
 * glidefs_strerror uses its own table of constant strings (strerror() is not
 * thread-safe, and GlideFS can say more than the C library about what an
 * errno means here).
 *
 * glidefs_parse_size grammar (documented choice):
 *   size   = digits [ "." digits ] [ suffix ]
 *   suffix = "B" | ("K" | "M" | "G" | "T") [ "B" | "iB" ]      (case-insensitive)
 * Every suffix is a power of 1024 (KB = KiB = K). A fraction is accepted only
 * when the result is a whole number of bytes ("1.5K" = 1536, "0.5" is
 * refused), with at most 19 significant fractional digits. No sign, no
 * whitespace anywhere, no hex/octal. Overflow of 2^64-1 is -ERANGE; anything
 * malformed is -EINVAL.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "glidefs/glidefs.h"

#define GFS_STR_(x) #x
#define GFS_STR(x) GFS_STR_(x)

const char *glidefs_version(void)
{
    return GFS_STR(GLIDEFS_VERSION_MAJOR) "." GFS_STR(GLIDEFS_VERSION_MINOR) "." GFS_STR(
        GLIDEFS_VERSION_PATCH);
}

const char *glidefs_strerror(int err)
{
    if (err == INT_MIN)
        return "unknown error";
    if (err < 0)
        err = -err;

    switch (err) {
    case 0: return "success";
    case EINVAL: return "invalid argument";
    case EIO: return "I/O error (object store or local disk failed, or data failed its checksum)";
    case EROFS: return "volume is read-only (another node holds the write lease, or opened read-only)";
    case ENOSPC: return "no space left (local cache disk or dirty budget full)";
    case ENOENT: return "no such volume, object or file";
    case EEXIST: return "volume already exists";
    case EBUSY: return "busy (the volume or its cache directory is in use, or another node holds the write lease)";
    case ETIMEDOUT: return "timed out (the object store did not answer in time)";
    case EACCES: return "permission denied (check file permissions or object store credentials)";
    case EPERM: return "operation not permitted";
    case ENOMEM: return "out of memory";
    case ERANGE: return "value out of range";
    case EBADMSG: return "malformed or corrupt data (bad object, manifest or journal record)";
    case ECANCELED: return "operation cancelled (the volume is closing)";
    case EFBIG: return "too large (beyond the volume size or a format limit)";
    case ENOTSUP: return "operation not supported";
    case EAGAIN: return "resource temporarily unavailable, try again";
    case ESTALE: return "stale: a newer writer took over this volume (fenced)";
    case ENOLCK: return "refused: the object store ignores conditional writes, so taking the write lease from another node could leave two writers (see storage.unsafe_accept_split_brain_on_lax_store)";
    case ENOTCONN: return "not connected";
    case ECONNREFUSED: return "connection refused (is the object store endpoint right?)";
    case ECONNRESET: return "connection reset by peer";
    case EHOSTUNREACH: return "host unreachable";
    case ENETUNREACH: return "network unreachable";
    case EPROTO: return "protocol error (unexpected answer from the object store)";
    case EKEYREJECTED: return "wrong encryption password or key";
    case EINTR: return "interrupted";
    case EISDIR: return "is a directory";
    case ENOTDIR: return "not a directory";
    case ENAMETOOLONG: return "name too long";
    case EOVERFLOW: return "value too large for the data type";
    case EMFILE: return "too many open files in this process";
    case ENFILE: return "too many open files in the system";
    case EDQUOT: return "disk quota exceeded";
    case ENOSYS: return "function not implemented";
    case EBADF: return "bad file descriptor";
    case EPIPE: return "broken pipe (the peer went away)";
    case EMSGSIZE: return "message too long";
    case ENODATA: return "no data available";
    case ESHUTDOWN: return "shutting down";
    case EALREADY: return "operation already in progress";
    case EINPROGRESS: return "operation in progress";
    case EDEADLK: return "resource deadlock avoided";
    case EXDEV: return "cross-device link";
    case ENXIO: return "no such device or address";
    case ENODEV: return "no such device";
    case ENOTEMPTY: return "directory not empty";
    case E2BIG: return "argument list too long";
    case EADDRINUSE: return "address already in use";
    case EADDRNOTAVAIL: return "cannot assign requested address";
    default: return "unknown error";
    }
}

int glidefs_name_valid(const char *name)
{
    if (!name || name[0] == '\0' || name[0] == '.')
        return 0;
    size_t i = 0;
    for (; name[i]; i++) {
        if (i >= GLIDEFS_NAME_MAX)
            return 0;
        unsigned char c = (unsigned char)name[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Power-of-1024 shift for a suffix, or -1 if not a suffix. */
static int size_suffix_shift(const char *s)
{
    if (s[0] == '\0')
        return 0;
    if (lower(s[0]) == 'b' && s[1] == '\0')
        return 0;
    int shift;
    switch (lower(s[0])) {
    case 'k': shift = 10; break;
    case 'm': shift = 20; break;
    case 'g': shift = 30; break;
    case 't': shift = 40; break;
    default: return -1;
    }
    const char *r = s + 1;
    if (r[0] == '\0')
        return shift;
    if (lower(r[0]) == 'b' && r[1] == '\0')
        return shift;
    if (lower(r[0]) == 'i' && lower(r[1]) == 'b' && r[2] == '\0')
        return shift;
    return -1;
}

int glidefs_parse_size(const char *s, uint64_t *out)
{
    if (!s || !out)
        return -EINVAL;

    const char *p = s;
    uint64_t whole = 0;
    int overflow = 0;
    if (!(*p >= '0' && *p <= '9'))
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10)
            overflow = 1;
        else
            whole = whole * 10 + d;
    }

    /* Fraction: keep its digits as an integer F over 10^n. */
    uint64_t frac = 0;
    unsigned nfrac = 0;
    int frac_too_long = 0;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return -EINVAL;
        const char *fs = p;
        while (*p >= '0' && *p <= '9')
            p++;
        const char *fe = p;
        while (fe > fs && fe[-1] == '0') /* trailing zeros change nothing */
            fe--;
        if (fe - fs > 19) {
            frac_too_long = 1;
        } else {
            for (const char *q = fs; q < fe; q++)
                frac = frac * 10 + (uint64_t)(*q - '0');
            nfrac = (unsigned)(fe - fs);
        }
    }

    int shift = size_suffix_shift(p);
    if (shift < 0 || frac_too_long)
        return -EINVAL;

    /* frac * 2^shift / 10^nfrac must be a whole number: 10^n = 2^n * 5^n. */
    uint64_t frac_bytes = 0;
    if (nfrac > 0) {
        uint64_t pow5 = 1;
        for (unsigned i = 0; i < nfrac; i++)
            pow5 *= 5;
        if (frac % pow5 != 0)
            return -EINVAL;
        uint64_t q = frac / pow5; /* q < 2^nfrac */
        if ((unsigned)shift >= nfrac) {
            frac_bytes = q << (shift - (int)nfrac);
        } else {
            uint64_t mask = (UINT64_C(1) << (nfrac - (unsigned)shift)) - 1;
            if (q & mask)
                return -EINVAL;
            frac_bytes = q >> (nfrac - (unsigned)shift);
        }
    }

    if (overflow)
        return -ERANGE;
    if (shift > 0 && whole > (UINT64_MAX >> shift))
        return -ERANGE;
    uint64_t v = whole << shift;
    if (v > UINT64_MAX - frac_bytes)
        return -ERANGE;
    *out = v + frac_bytes;
    return 0;
}
