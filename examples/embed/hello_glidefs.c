/*
 * hello_glidefs.c — the smallest useful program on libglidefs.
 *
 * It creates a volume in a file:// store, writes to it, makes the writes
 * durable locally (flush) and then in the store (drain), closes it, opens it
 * again as a second node would (same store, empty cache directory), reads the
 * data back from the store and compares.
 *
 *   make                      # builds with `pkg-config --cflags --libs glidefs`
 *   ./hello_glidefs [DIR]     # DIR: an empty directory to work in; default: a
 *                             # new temporary directory, removed at the end
 *
 * Exit status 0 when the data read back is what was written.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glidefs/glidefs.h>

#define VOLUME_SIZE (64u << 20)  /* 64 MiB */
#define DATA_LEN (1u << 20)      /* 1 MiB written at DATA_OFF */
#define DATA_OFF (3u << 20)

static void log_to_stderr(void *arg, int level, const char *msg)
{
    (void)arg;
    fprintf(stderr, "libglidefs[%d]: %s\n", level, msg);
}

/* A config in code (a program could use glidefs_config_load("x.yaml") instead). */
static glidefs_config *make_config(const char *dir, const char *cache)
{
    char store_url[4200], cache_dir[4200], err[256];
    snprintf(store_url, sizeof store_url, "file://%s/store", dir);
    snprintf(cache_dir, sizeof cache_dir, "%s/%s", dir, cache);
    glidefs_config *cfg = glidefs_config_new();
    if (!cfg)
        return NULL;
    const char *kv[][2] = {
        {"storage.url", store_url},
        {"cache.dir", cache_dir},
        {"cache.disk_size", "64M"},      /* local budget: cache + journal */
        {"servers.nbd.sync_delay_ms", "0"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        int r = glidefs_config_set(cfg, kv[i][0], kv[i][1], err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "config %s: %s\n", kv[i][0], err);
            glidefs_config_free(cfg);
            return NULL;
        }
    }
    glidefs_config_set_log(cfg, log_to_stderr, NULL, GLIDEFS_LOG_WARN);
    return cfg;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "hello_glidefs: %s: %s\n", what, glidefs_strerror(err));
    return 1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static int run(const char *dir)
{
    unsigned char *data = malloc(DATA_LEN), *back = malloc(DATA_LEN);
    if (!data || !back)
        return fail("malloc", -ENOMEM);
    for (size_t i = 0; i < DATA_LEN; i++)
        data[i] = (unsigned char)(i * 7 + i / 4096);

    /* 1. create, write, flush (durable locally), drain (durable in the store) */
    glidefs_config *cfg = make_config(dir, "cache-a");
    if (!cfg)
        return 1;
    glidefs_volume *vol;
    int r = glidefs_volume_open(cfg, "hello", VOLUME_SIZE, GLIDEFS_OPEN_CREATE, &vol);
    if (r < 0)
        return fail("open", r);
    if ((r = glidefs_pwrite(vol, data, DATA_LEN, DATA_OFF, 0)) < 0)
        return fail("pwrite", r);
    if ((r = glidefs_flush(vol)) < 0)
        return fail("flush", r);
    if ((r = glidefs_drain(vol, 60000)) < 0)
        return fail("drain", r);
    struct glidefs_stats st;
    glidefs_stats(vol, &st, sizeof st);
    printf("wrote %u bytes, drained: %llu segment(s) in the store, %llu dirty bytes left\n",
           DATA_LEN, (unsigned long long)st.segments_uploaded,
           (unsigned long long)st.dirty_bytes);
    if ((r = glidefs_volume_close(vol)) < 0)
        return fail("close", r);
    glidefs_config_free(cfg);

    /* 2. reopen with an empty cache: every byte comes from the store */
    cfg = make_config(dir, "cache-b");
    if (!cfg)
        return 1;
    if ((r = glidefs_volume_open(cfg, "hello", 0, 0, &vol)) < 0)
        return fail("reopen", r);
    if ((r = glidefs_pread(vol, back, DATA_LEN, DATA_OFF)) < 0)
        return fail("pread", r);
    int same = memcmp(data, back, DATA_LEN) == 0;
    /* never-written ranges read as zeroes */
    if ((r = glidefs_pread(vol, back, 4096, 0)) < 0)
        return fail("pread", r);
    for (size_t i = 0; i < 4096; i++)
        same &= back[i] == 0;
    glidefs_stats(vol, &st, sizeof st);
    printf("reopened on an empty cache: %llu bytes fetched from the store\n",
           (unsigned long long)st.store_get_bytes);
    if ((r = glidefs_volume_close(vol)) < 0)
        return fail("close", r);
    glidefs_config_free(cfg);
    free(data);
    free(back);
    printf("hello_glidefs: libglidefs %s: read back %s\n", glidefs_version(),
           same ? "OK" : "DIFFERENT");
    return same ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "usage: hello_glidefs [DIR]\n");
        return 2;
    }
    if (argc == 2)
        return run(argv[1]);
    char tmpl[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/hello_glidefs-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("hello_glidefs: mkdtemp");
        return 1;
    }
    int rc = run(tmpl);
    nftw(tmpl, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
