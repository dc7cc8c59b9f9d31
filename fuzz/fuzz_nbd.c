/*
 * fuzz_nbd.c — libFuzzer target for glidefsd's handshake and request parser:
 * the input is a client's byte stream (client flags, options, requests and
 * write payloads), run through nbd_stream_run() with a fake export policy
 * that follows the name rule of docs/design.md section 3. Built with clang
 * -fsanitize=fuzzer;
 * with any compiler, replay_main.c replays the seed corpus in the test suite.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glidefs/glidefs.h"
#include "nbd_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
    int opens, closes;
    bool with_default;
};

static uint32_t fz_resolve(void *ctx, const char *name)
{
    struct fz *f = ctx;
    if (!name[0])
        return f->with_default ? 0 : NBD_REP_ERR_UNKNOWN;
    return glidefs_name_valid(name) ? 0 : NBD_REP_ERR_UNKNOWN;
}

static uint32_t fz_open(void *ctx, const char *name, struct nbd_export_info *info, void **handle)
{
    struct fz *f = ctx;
    uint32_t e = fz_resolve(ctx, name);
    if (e)
        return e;
    /* Sizes and modes vary with the name so every validator branch is reachable. */
    size_t n = strlen(name);
    info->size = n ? (uint64_t)(n * 7919) << 9 : 1u << 20;
    info->read_only = n && (name[0] & 1);
    snprintf(info->canonical, sizeof info->canonical, "%s", n ? name : "default");
    snprintf(info->description, sizeof info->description, "fuzz");
    f->opens++;
    *handle = f;
    return 0;
}

static void fz_close(void *ctx, void *handle)
{
    struct fz *f = ctx;
    if (handle != f)
        abort();
    f->closes++;
}

static void fz_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
                    void *arg)
{
    (void)ctx;
    emit(arg, "vm", "fuzz volume");
    emit(arg, "default", NULL);
}

static bool fz_shutting_down(void *ctx)
{
    (void)ctx;
    return false;
}

static const struct nbd_hs_ops fz_ops = {
    .resolve = fz_resolve,
    .open = fz_open,
    .close = fz_close,
    .list = fz_list,
    .shutting_down = fz_shutting_down,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = { 0, 0, size > 0 && (data[size - 1] & 1) };
    struct nbd_stream_result res;
    nbd_stream_run(data, size, &fz_ops, &f, &res);
    /* Every export handle the handshake took is given back. */
    if (f.opens != f.closes)
        abort();
    if (res.ok + res.errors > res.requests)
        abort();

    /* The reply encoders on values from the input. */
    if (size >= 16) {
        uint8_t buf[NBD_STRUCTURED_REPLY_SIZE + 6 + NBD_MAX_ERRMSG];
        char msg[64];
        size_t mlen = data[0] % sizeof msg;
        memcpy(msg, data + 1, mlen < size - 1 ? mlen : size - 1);
        msg[mlen < size - 1 ? mlen : size - 1] = '\0';
        size_t n = nbd_encode_error_chunk(buf, nbd_get64(data), nbd_get32(data + 8), msg);
        if (n > sizeof buf || nbd_get32(buf + 20) == 0)
            abort();
        struct nbd_extent ex[8];
        size_t ne = 0;
        uint64_t total = 0;
        for (size_t i = 0; i + 5 <= size && i < 64; i += 5) {
            uint64_t len = (uint64_t)nbd_get32(data + i) << (data[i + 4] & 7);
            if (len == 0)
                continue;
            total += len; /* a partial add still counts toward the bound */
            if (!nbd_extent_add(ex, &ne, 8, len, data[i + 4] & 3))
                break;
        }
        uint64_t sum = 0;
        for (size_t i = 0; i < ne; i++) {
            if (ex[i].len == 0)
                abort();
            sum += ex[i].len;
        }
        if (sum > total)
            abort();
    }
    return 0;
}
