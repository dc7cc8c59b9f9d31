/*
 * test_errors.c — the small public helpers of lib/errors.c and lib/log.c:
 * glidefs_parse_size, glidefs_name_valid, glidefs_strerror, glidefs_version,
 * gfs_logf.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "glidefs/glidefs.h"
#include "log.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

struct size_case {
    const char *in;
    int rc;
    uint64_t out;
};

static const struct size_case size_cases[] = {
    /* plain bytes */
    {"0", 0, 0},
    {"1", 0, 1},
    {"512", 0, 512},
    {"007", 0, 7},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18446744073709551615.0", 0, UINT64_MAX},
    {"18446744073709551615B", 0, UINT64_MAX},
    {"512B", 0, 512},
    {"512b", 0, 512},
    /* every suffix spelling, all powers of 1024 */
    {"1K", 0, KiB},
    {"1k", 0, KiB},
    {"1KB", 0, KiB},
    {"1kb", 0, KiB},
    {"1KiB", 0, KiB},
    {"1kib", 0, KiB},
    {"1KIB", 0, KiB},
    {"4M", 0, 4 * MiB},
    {"4MB", 0, 4 * MiB},
    {"4MiB", 0, 4 * MiB},
    {"100G", 0, 100 * GiB},
    {"100GB", 0, 100 * GiB},
    {"100GiB", 0, 100 * GiB},
    {"2T", 0, 2 * TiB},
    {"2TB", 0, 2 * TiB},
    {"2TiB", 0, 2 * TiB},
    {"16777215T", 0, 16777215 * TiB},
    /* fractions: only when exact to the byte */
    {"1.5K", 0, 1536},
    {"0.5K", 0, 512},
    {"1.5G", 0, GiB + GiB / 2},
    {"0.25M", 0, MiB / 4},
    {"1.0", 0, 1},
    {"2.000K", 0, 2 * KiB},
    {"0.0009765625K", 0, 1},
    {"1.1K", -EINVAL, 0},
    {"0.5", -EINVAL, 0},
    {"1.5B", -EINVAL, 0},
    {"0.00048828125K", -EINVAL, 0}, /* half a byte */
    {"0.00000000000000000001K", -EINVAL, 0},
    {"1.", -EINVAL, 0},
    {".5K", -EINVAL, 0},
    {"1..5K", -EINVAL, 0},
    /* overflow */
    {"18446744073709551616", -ERANGE, 0},
    {"99999999999999999999999999", -ERANGE, 0},
    {"16777216T", -ERANGE, 0},
    {"17179869184G", -ERANGE, 0},
    {"18014398509481984K", -ERANGE, 0},
    /* malformed */
    {"", -EINVAL, 0},
    {"K", -EINVAL, 0},
    {"G", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"+1", -EINVAL, 0},
    {" 1", -EINVAL, 0},
    {"1 ", -EINVAL, 0},
    {"1 G", -EINVAL, 0},
    {"1G ", -EINVAL, 0},
    {"1\tG", -EINVAL, 0},
    {"1\nG", -EINVAL, 0},
    {"0x10", -EINVAL, 0},
    {"1e3", -EINVAL, 0},
    {"1,5G", -EINVAL, 0},
    {"1_000", -EINVAL, 0},
    {"1P", -EINVAL, 0},
    {"1Gi", -EINVAL, 0},
    {"1GiBB", -EINVAL, 0},
    {"1BB", -EINVAL, 0},
    {"1iB", -EINVAL, 0},
    {"1GG", -EINVAL, 0},
    {"G1", -EINVAL, 0},
    {"1G1", -EINVAL, 0},
    {"abc", -EINVAL, 0},
    {"1\xc2\xa0G", -EINVAL, 0},
    {"99999999999999999999999X", -EINVAL, 0}, /* garbage wins over overflow */
};

static void test_parse_size_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
        const struct size_case *c = &size_cases[i];
        uint64_t out = 0xdeadbeef;
        int rc = glidefs_parse_size(c->in, &out);
        if (rc != c->rc || (rc == 0 && out != c->out)) {
            print_error("case %zu \"%s\": rc %d (want %d) out %llu (want %llu)\n", i, c->in, rc,
                        c->rc, (unsigned long long)out, (unsigned long long)c->out);
            fail();
        }
        if (rc != 0 && out != 0xdeadbeef) {
            print_error("case %zu \"%s\": *out written on failure\n", i, c->in);
            fail();
        }
    }
}

static void test_parse_size_null(void **state)
{
    (void)state;
    uint64_t out;
    assert_int_equal(glidefs_parse_size(NULL, &out), -EINVAL);
    assert_int_equal(glidefs_parse_size("1", NULL), -EINVAL);
}

struct name_case {
    const char *name;
    int valid;
};

static void test_name_valid_table(void **state)
{
    (void)state;
    char n128[129], n129[130];
    memset(n128, 'a', 128);
    n128[128] = '\0';
    memset(n129, 'a', 129);
    n129[129] = '\0';
    const struct name_case cases[] = {
        {"vm1", 1},
        {"a", 1},
        {"A-Z_a.z-0.9", 1},
        {"disk.img", 1},
        {"a..b", 1},
        {"a.", 1},
        {"-x", 1},
        {"_", 1},
        {n128, 1},
        {n129, 0},
        {"", 0},
        {".", 0},
        {"..", 0},
        {".hidden", 0},
        {"../x", 0},
        {"a/b", 0},
        {"/abs", 0},
        {"a\\b", 0},
        {"%2F", 0},
        {"a b", 0},
        {"a\tb", 0},
        {"a\nb", 0},
        {"a:b", 0},
        {"a*", 0},
        {"a?", 0},
        {"caf\xc3\xa9", 0},
        {"\xff", 0},
        {"a\x7f", 0},
        {NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int v = glidefs_name_valid(cases[i].name);
        if (v != cases[i].valid) {
            print_error("case %zu \"%s\": %d, want %d\n", i,
                        cases[i].name ? cases[i].name : "(null)", v, cases[i].valid);
            fail();
        }
    }
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(glidefs_strerror(-EROFS),
                        "volume is read-only (another node holds the write lease, or opened "
                        "read-only)");
    assert_string_equal(glidefs_strerror(EROFS), glidefs_strerror(-EROFS));
    assert_string_equal(glidefs_strerror(-EINVAL), "invalid argument");
    assert_string_equal(glidefs_strerror(-ENOMEM), "out of memory");
    assert_string_equal(glidefs_strerror(-ESTALE),
                        "stale: a newer writer took over this volume (fenced)");
    assert_string_equal(glidefs_strerror(0), "success");
    assert_string_equal(glidefs_strerror(-99999), "unknown error");
    assert_string_equal(glidefs_strerror(99999), "unknown error");
    assert_string_equal(glidefs_strerror(INT_MIN), "unknown error");
    assert_string_equal(glidefs_strerror(INT_MAX), "unknown error");

    /* Every errno the library documents has its own text. */
    const int used[] = {EINVAL, EIO,    EROFS,     ENOSPC, ENOENT,  EEXIST,  EBUSY,
                        ETIMEDOUT, EACCES, EPERM, ENOMEM, ERANGE, EBADMSG, ECANCELED,
                        EFBIG,  ENOTSUP, EAGAIN, ESTALE, ENOTCONN, EKEYREJECTED, EPROTO};
    for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++) {
        const char *s = glidefs_strerror(-used[i]);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, glidefs_strerror(-used[j]));
    }
}

static void test_version(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", GLIDEFS_VERSION_MAJOR, GLIDEFS_VERSION_MINOR,
             GLIDEFS_VERSION_PATCH);
    assert_string_equal(glidefs_version(), want);
}

struct log_capture {
    int calls;
    int level;
    char msg[2048];
};

static void capture(void *arg, int level, const char *msg)
{
    struct log_capture *c = arg;
    c->calls++;
    c->level = level;
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

static void test_logf(void **state)
{
    (void)state;
    struct log_capture cap = {0};
    struct gfs_log log = {capture, &cap, GLIDEFS_LOG_INFO};

    gfs_info(&log, "hello %s %d", "world", 42);
    assert_int_equal(cap.calls, 1);
    assert_int_equal(cap.level, GLIDEFS_LOG_INFO);
    assert_string_equal(cap.msg, "hello world 42");

    gfs_debug(&log, "not shown");
    assert_int_equal(cap.calls, 1);

    gfs_err(&log, "bad %d", -5);
    assert_int_equal(cap.calls, 2);
    assert_int_equal(cap.level, GLIDEFS_LOG_ERROR);
    assert_string_equal(cap.msg, "bad -5");

    /* Over-long messages are cut and marked. */
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    gfs_warn(&log, "%s", big);
    assert_int_equal(cap.calls, 3);
    assert_int_equal(strlen(cap.msg), 1023);
    assert_string_equal(cap.msg + 1020, "...");

    /* No log, or no callback: nothing happens. */
    gfs_err(NULL, "x");
    struct gfs_log none = {NULL, NULL, GLIDEFS_LOG_DEBUG};
    gfs_err(&none, "x");
    assert_int_equal(cap.calls, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size_table),
        cmocka_unit_test(test_parse_size_null),
        cmocka_unit_test(test_name_valid_table),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_logf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
