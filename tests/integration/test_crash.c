/*
 * test_crash.c — kill -9 at random moments. A child process writes, trims and
 * flushes a volume while the syncer uploads in the background; the parent
 * SIGKILLs it at a random point, reopens the volume and checks every sector:
 * each must hold either what it held at the child's last completed flush or
 * what a write started after that flush put there (promise 3), with every
 * byte intact. What it reads becomes the reference for the next round, so a
 * sector that changes later without a write is caught. At the end: drain,
 * wake on an empty cache, and the same bytes come back.
 *
 * Every written sector carries its own identity (round, op, sector) in its
 * first 16 bytes and a pattern derived from it in the rest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "testutil.h"

#define VOL_SIZE (16ull << 20)
#define NSECT (VOL_SIZE / 512)
#define MAX_OPS 200000

struct shared {
    volatile uint32_t started; /* ops begun */
    volatile uint32_t flushed; /* ops [0, flushed) are durable */
};

struct op {
    int kind; /* 0 write, 1 trim, 2 flush */
    uint64_t sect, n;
};

static struct op gen_op(uint64_t *s)
{
    struct op o;
    uint64_t r = tu_rand(s) % 100;
    o.kind = r < 75 ? 0 : r < 85 ? 1 : 2;
    o.sect = tu_rand(s) % NSECT;
    uint64_t maxn = (tu_rand(s) % 8 == 0) ? 2048 : 64;
    o.n = 1 + tu_rand(s) % maxn;
    if (o.sect + o.n > NSECT)
        o.n = NSECT - o.sect;
    return o;
}

static void sector_data(uint64_t tag, uint64_t sect, uint8_t *out)
{
    memcpy(out, &tag, 8);
    memcpy(out + 8, &sect, 8);
    uint64_t s = tag * 0x9E3779B97F4A7C15ULL ^ (sect + 1) * 0xC2B2AE3D27D4EB4FULL;
    if (!s)
        s = 1;
    for (int i = 16; i < 512; i += 8) {
        uint64_t x = tu_rand(&s);
        memcpy(out + i, &x, 8);
    }
}

static uint64_t mktag(uint32_t round, uint32_t op)
{
    return ((uint64_t)(round + 1) << 32) | (op + 1);
}

static void child(const struct tu_env *env, const char *name, uint32_t round,
                  struct shared *sh, int wfd)
{
    glidefs_config *cfg = tu_config(env, "8M", "1");
    glidefs_volume *v;
    if (glidefs_volume_open(cfg, name, VOL_SIZE, GLIDEFS_OPEN_CREATE, &v) < 0)
        _exit(2);
    uint64_t s = 0x1234567ULL + round * 7919;
    uint8_t *buf = malloc(2048 * 512);
    for (uint32_t i = 0; i < MAX_OPS; i++) {
        struct op o = gen_op(&s);
        sh->started = i + 1;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        int r = 0;
        if (o.kind == 0) {
            for (uint64_t k = 0; k < o.n; k++)
                sector_data(mktag(round, i), o.sect + k, buf + k * 512);
            r = glidefs_pwrite(v, buf, o.n * 512, o.sect * 512, 0);
        } else if (o.kind == 1) {
            r = glidefs_trim(v, o.sect * 512, o.n * 512, 0);
        } else {
            r = glidefs_flush(v);
            if (r == 0) {
                sh->flushed = i + 1;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                char c = 1;
                if (write(wfd, &c, 1) != 1)
                    _exit(3);
            }
        }
        if (r < 0)
            _exit(4);
    }
    _exit(0);
}

/* Check the whole volume against the allowed states; returns observed tags. */
static void verify(glidefs_volume *v, const uint64_t *base, uint32_t round, uint32_t flushed,
                   uint32_t started, uint64_t *observed)
{
    /* allowed[sect]: bitmap of "any later op may have set it": we recompute per sector
     * by replaying ops in [flushed, started) into a list per sector (small). */
    uint8_t *buf = malloc(1 << 20);
    uint8_t exp[512];
    /* later[sect] = up to 64 candidate tags from ops after the flush, plus "zero" */
    uint64_t (*later)[8] = calloc(NSECT, sizeof *later);
    uint8_t *nlater = calloc(NSECT, 1);
    uint8_t *overflow = calloc(NSECT, 1);
    assert_non_null(later);
    uint64_t s = 0x1234567ULL + round * 7919;
    for (uint32_t i = 0; i < started; i++) {
        struct op o = gen_op(&s);
        if (i < flushed || o.kind == 2)
            continue;
        uint64_t tag = o.kind == 0 ? mktag(round, i) : 0;
        for (uint64_t k = o.sect; k < o.sect + o.n; k++) {
            if (nlater[k] < 8)
                later[k][nlater[k]++] = tag;
            else
                overflow[k] = 1;
        }
    }
    for (uint64_t off = 0; off < VOL_SIZE; off += 1 << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1 << 20, off), 0);
        for (uint64_t j = 0; j < (1 << 20) / 512; j++) {
            uint64_t sect = off / 512 + j;
            uint8_t *p = buf + j * 512;
            uint64_t tag;
            memcpy(&tag, p, 8);
            int zero = 1;
            for (int b = 0; b < 512; b++)
                if (p[b]) {
                    zero = 0;
                    break;
                }
            if (zero)
                tag = 0;
            else {
                sector_data(tag, sect, exp);
                if (memcmp(exp, p, 512) != 0)
                    fail_msg("round %u: sector %llu is corrupt (tag %llx)", round,
                             (unsigned long long)sect, (unsigned long long)tag);
            }
            int ok = tag == base[sect];
            for (int c = 0; c < nlater[sect] && !ok; c++)
                ok = later[sect][c] == tag;
            if (!ok && overflow[sect])
                ok = (tag >> 32) == round + 1 || tag == 0; /* many later writes: any of this round */
            if (!ok)
                fail_msg("round %u: sector %llu holds %llx, expected %llx or a write after the "
                         "flush at op %u",
                         round, (unsigned long long)sect, (unsigned long long)tag,
                         (unsigned long long)base[sect], flushed);
            observed[sect] = tag;
        }
    }
    free(buf);
    free(later);
    free(nlater);
    free(overflow);
}

static void test_kill_loop(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "crash");
    char name[64];
    snprintf(name, sizeof name, "crash-%d", (int)getpid());
    int rounds = getenv("GLIDEFS_TEST_KILLS") ? atoi(getenv("GLIDEFS_TEST_KILLS")) : 24;
    uint64_t *cur = calloc(NSECT, sizeof *cur);    /* verified state */
    uint64_t *base = calloc(NSECT, sizeof *base);  /* state at the last flush */
    uint64_t *obs = calloc(NSECT, sizeof *obs);
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    uint64_t rs = 777;
    glidefs_config *cfg = tu_config(&env, "8M", "1");
    uint64_t verified = 0;

    for (int round = 0; round < rounds; round++) {
        sh->started = sh->flushed = 0;
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child(&env, name, (uint32_t)round, sh, p[1]);
        }
        close(p[1]);
        /* let it complete a random number of flushes, then kill it at a random moment */
        int want = 1 + (int)(tu_rand(&rs) % 12);
        int got = 0;
        while (got < want) {
            struct pollfd pfd = {p[0], POLLIN, 0};
            int pr = poll(&pfd, 1, 20000);
            assert_true(pr > 0); /* the child must make progress */
            char c;
            ssize_t n = read(p[0], &c, 1);
            assert_true(n == 1);
            got++;
        }
        struct pollfd pfd = {p[0], POLLIN, 0};
        poll(&pfd, 1, (int)(tu_rand(&rs) % 6)); /* 0-5 ms more: a random kill point */
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        close(p[0]);
        assert_true(WIFSIGNALED(status));
        uint32_t flushed = sh->flushed, started = sh->started;

        /* the state at the last completed flush */
        memcpy(base, cur, NSECT * sizeof *cur);
        uint64_t s = 0x1234567ULL + (uint64_t)round * 7919;
        for (uint32_t i = 0; i < flushed; i++) {
            struct op o = gen_op(&s);
            if (o.kind == 2)
                continue;
            for (uint64_t k = o.sect; k < o.sect + o.n; k++)
                base[k] = o.kind == 0 ? mktag((uint32_t)round, i) : 0;
        }
        glidefs_volume *v;
        assert_int_equal(glidefs_volume_open(cfg, name, VOL_SIZE, GLIDEFS_OPEN_CREATE, &v), 0);
        verify(v, base, (uint32_t)round, flushed, started, obs);
        memcpy(cur, obs, NSECT * sizeof *cur);
        verified += VOL_SIZE;
        assert_int_equal(glidefs_volume_close(v), 0);
    }
    /* drain, then wake on an empty cache: the same bytes */
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(cfg, name, 0, 0, &v), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(cfg, name, 0, 0, &v), 0);
    verify(v, cur, UINT32_MAX - 1, 0, 0, obs);
    assert_memory_equal(cur, obs, NSECT * sizeof *cur);
    assert_int_equal(glidefs_volume_close(v), 0);
    fprintf(stderr, "kills survived: %d, bytes verified: %llu\n", rounds,
            (unsigned long long)(verified + VOL_SIZE));
    free(cur);
    free(base);
    free(obs);
    munmap(sh, sizeof *sh);
    glidefs_config_free(cfg);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
