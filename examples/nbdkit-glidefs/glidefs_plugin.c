/*
 * glidefs_plugin.c — an nbdkit plugin serving one libglidefs volume.
 *
 *   nbdkit ./nbdkit-glidefs-plugin.so config=/etc/glidefs/glidefs.yaml name=vm1 [size=10G]
 *
 * Parameters:
 *   config=FILE   the glidefs YAML configuration (glidefs.yaml(5)); required
 *   name=VOLUME   the volume to serve; required
 *   size=SIZE     create the volume with this size if it does not exist
 *                 (default: servers.nbd.auto_create_size of the config)
 *   drain=BOOL    drain (upload everything) when nbdkit exits, waiting at
 *                 most servers.shutdown_timeout_s; default true
 *
 * The volume is opened once, after nbdkit has forked into the background
 * (.after_fork: the library's threads must live in the serving process) and
 * shared by every connection, so all clients see one consistent disk and
 * FLUSH on one connection covers writes made on another (can_multi_conn).
 * libglidefs is thread-safe per volume: thread model PARALLEL.
 *
 * Mapping: pread/pwrite/flush/trim/zero/cache/extents go to glidefs_pread,
 * glidefs_pwrite, glidefs_flush, glidefs_trim, glidefs_write_zeroes,
 * glidefs_prefetch and glidefs_block_status; NBD FUA is GLIDEFS_WRITE_FUA
 * (native). The minimum block size is 512 (GLIDEFS_SECTOR_SIZE): clients
 * that honour NBD block size constraints (qemu, libnbd) never send smaller
 * or unaligned requests; others get EINVAL. If another node holds the write
 * lease the export is read-only.
 *
 * Build: see Makefile (pkg-config glidefs nbdkit), or the source tree's meson
 * build, which builds it when nbdkit-plugin.h is found.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nbdkit-plugin.h>

#include <glidefs/glidefs.h>

static char *config_file;
static char *volume_name;
static int64_t create_size = -1;
static int drain_on_exit = 1;
static int64_t drain_timeout_ms = -1; /* servers.shutdown_timeout_s */

static glidefs_config *cfg;
static glidefs_volume *vol;

/* ------------------------------------------------------------------------ */

static void log_cb(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level <= GLIDEFS_LOG_ERROR)
        nbdkit_error("glidefs: %s", msg);
    else
        nbdkit_debug("glidefs: %s", msg);
}

/* libglidefs returns -errno: report it the nbdkit way. */
static int fail(const char *what, int r)
{
    nbdkit_error("%s: %s", what, glidefs_strerror(r));
    nbdkit_set_error(-r);
    return -1;
}

static int glidefs_plugin_config(const char *key, const char *value)
{
    if (strcmp(key, "config") == 0) {
        free(config_file);
        config_file = nbdkit_realpath(value);
        return config_file ? 0 : -1;
    }
    if (strcmp(key, "name") == 0) {
        if (!glidefs_name_valid(value)) {
            nbdkit_error("name=%s: not a valid volume name ([A-Za-z0-9._-]{1,128}, "
                         "not starting with '.')", value);
            return -1;
        }
        free(volume_name);
        volume_name = strdup(value);
        return volume_name ? 0 : -1;
    }
    if (strcmp(key, "size") == 0) {
        create_size = nbdkit_parse_size(value);
        if (create_size <= 0 || create_size % GLIDEFS_SECTOR_SIZE) {
            nbdkit_error("size=%s: must be a positive multiple of 512", value);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "drain") == 0) {
        drain_on_exit = nbdkit_parse_bool(value);
        return drain_on_exit < 0 ? -1 : 0;
    }
    nbdkit_error("unknown parameter '%s' (config=, name=, size=, drain=)", key);
    return -1;
}

static int glidefs_plugin_config_complete(void)
{
    if (!config_file || !volume_name) {
        nbdkit_error("config=FILE and name=VOLUME are required");
        return -1;
    }
    char err[512] = "";
    int r = glidefs_config_load(config_file, &cfg, err, sizeof err);
    if (r < 0) {
        nbdkit_error("%s", err[0] ? err : glidefs_strerror(r));
        return -1;
    }
    glidefs_config_set_log(cfg, log_cb, NULL, GLIDEFS_LOG_DEBUG);
    if (create_size < 0) {
        char buf[64];
        uint64_t sz;
        if (glidefs_config_get(cfg, "servers.nbd.auto_create_size", buf, sizeof buf) < 0 ||
            glidefs_parse_size(buf, &sz) < 0) {
            nbdkit_error("cannot read servers.nbd.auto_create_size from %s", config_file);
            return -1;
        }
        create_size = (int64_t)sz;
    }
    char buf[32];
    if (glidefs_config_get(cfg, "servers.shutdown_timeout_s", buf, sizeof buf) == 0)
        drain_timeout_ms = strtoll(buf, NULL, 10) * 1000;
    return 0;
}

/* Check the store before nbdkit starts serving (and before it forks), so a
 * bad bucket or credentials fail the start with a clear message. */
static int glidefs_plugin_get_ready(void)
{
    char err[512] = "";
    int r = glidefs_store_check(cfg, err, sizeof err);
    if (r < 0) {
        nbdkit_error("store: %s", err[0] ? err : glidefs_strerror(r));
        return -1;
    }
    return 0;
}

/* The volume's background threads must run in the process that serves. */
static int glidefs_plugin_after_fork(void)
{
    int r = glidefs_volume_open(cfg, volume_name, (uint64_t)create_size, GLIDEFS_OPEN_CREATE, &vol);
    if (r < 0)
        return fail(volume_name, r);
    if (glidefs_volume_read_only(vol))
        nbdkit_debug("volume %s is read-only (another node holds the write lease)", volume_name);
    return 0;
}

static void glidefs_plugin_cleanup(void)
{
    if (vol && drain_on_exit && !glidefs_volume_read_only(vol)) {
        int r = glidefs_flush(vol);
        if (r == 0)
            r = glidefs_drain(vol, drain_timeout_ms);
        if (r < 0)
            nbdkit_error("drain of %s failed: %s (the data stays in the journal and is "
                         "uploaded the next time the volume is opened)",
                         volume_name, glidefs_strerror(r));
    }
    if (vol) {
        int r = glidefs_volume_close(vol);
        if (r < 0)
            nbdkit_error("close of %s: %s", volume_name, glidefs_strerror(r));
        vol = NULL;
    }
}

static void glidefs_plugin_unload(void)
{
    glidefs_config_free(cfg);
    free(config_file);
    free(volume_name);
}

/* Every connection shares the one volume. */
static void *glidefs_plugin_open(int readonly)
{
    (void)readonly;
    if (!vol) {
        nbdkit_error("the volume is not open");
        return NULL;
    }
    return vol;
}

static int64_t glidefs_plugin_get_size(void *h)
{
    return (int64_t)glidefs_volume_size(h);
}

static int glidefs_plugin_block_size(void *h, uint32_t *minimum, uint32_t *preferred,
                                     uint32_t *maximum)
{
    struct glidefs_stats st;
    int r = glidefs_stats(h, &st, sizeof st);
    if (r < 0)
        return fail("stats", r);
    *minimum = GLIDEFS_SECTOR_SIZE;
    *preferred = st.block_size >= 512 && st.block_size <= (32u << 20) ? (uint32_t)st.block_size
                                                                       : 4096;
    *maximum = 0xffffffff;
    return 0;
}

static int glidefs_plugin_can_write(void *h) { return !glidefs_volume_read_only(h); }
static int glidefs_plugin_can_flush(void *h) { (void)h; return 1; }
static int glidefs_plugin_is_rotational(void *h) { (void)h; return 0; }
static int glidefs_plugin_can_trim(void *h) { (void)h; return 1; }
static int glidefs_plugin_can_zero(void *h) { (void)h; return 1; }
/* zeroing is a metadata change in libglidefs: always fast */
static int glidefs_plugin_can_fast_zero(void *h) { (void)h; return 1; }
static int glidefs_plugin_can_fua(void *h) { (void)h; return NBDKIT_FUA_NATIVE; }
static int glidefs_plugin_can_multi_conn(void *h) { (void)h; return 1; }
static int glidefs_plugin_can_extents(void *h) { (void)h; return 1; }
static int glidefs_plugin_can_cache(void *h) { (void)h; return NBDKIT_CACHE_NATIVE; }

static unsigned wflags(uint32_t flags)
{
    return (flags & NBDKIT_FLAG_FUA) ? GLIDEFS_WRITE_FUA : 0;
}

static int glidefs_plugin_pread(void *h, void *buf, uint32_t count, uint64_t offset,
                                uint32_t flags)
{
    (void)flags;
    int r = glidefs_pread(h, buf, count, offset);
    return r < 0 ? fail("pread", r) : 0;
}

static int glidefs_plugin_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset,
                                 uint32_t flags)
{
    int r = glidefs_pwrite(h, buf, count, offset, wflags(flags));
    return r < 0 ? fail("pwrite", r) : 0;
}

static int glidefs_plugin_flush(void *h, uint32_t flags)
{
    (void)flags;
    int r = glidefs_flush(h);
    return r < 0 ? fail("flush", r) : 0;
}

static int glidefs_plugin_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
    int r = glidefs_trim(h, offset, count, wflags(flags));
    return r < 0 ? fail("trim", r) : 0;
}

static int glidefs_plugin_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
    /* reads back as zeroes whether or not NBDKIT_FLAG_MAY_TRIM is set */
    int r = glidefs_write_zeroes(h, offset, count, wflags(flags));
    return r < 0 ? fail("zero", r) : 0;
}

static int glidefs_plugin_cache(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
    (void)flags;
    int r = glidefs_prefetch(h, offset, count);
    return r < 0 ? fail("cache", r) : 0;
}

static int glidefs_plugin_extents(void *h, uint32_t count, uint64_t offset, uint32_t flags,
                                  struct nbdkit_extents *extents)
{
    uint64_t end = offset + count;
    while (offset < end) {
        int hole = 0;
        int64_t run = glidefs_block_status(h, offset, end - offset, &hole);
        if (run < 0)
            return fail("block status", (int)run);
        if (run == 0)
            break;
        if (nbdkit_add_extent(extents, offset, (uint64_t)run,
                              hole ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0) < 0)
            return -1;
        offset += (uint64_t)run;
        if (flags & NBDKIT_FLAG_REQ_ONE)
            break;
    }
    return 0;
}

static void glidefs_plugin_dump_plugin(void)
{
    printf("glidefs_version=%s\n", glidefs_version());
}

#define STR_(x) #x
#define STR(x) STR_(x)

static struct nbdkit_plugin plugin = {
    .name = "glidefs",
    .longname = "GlideFS volume (libglidefs)",
    .version = STR(GLIDEFS_VERSION_MAJOR) "." STR(GLIDEFS_VERSION_MINOR) "." STR(GLIDEFS_VERSION_PATCH),
    .description = "Serve a GlideFS volume: block device data in S3 behind a local cache",
    .config = glidefs_plugin_config,
    .config_complete = glidefs_plugin_config_complete,
    .config_help = "config=<FILE>     (required) glidefs YAML configuration\n"
                   "name=<VOLUME>     (required) volume to serve\n"
                   "size=<SIZE>       size when creating (default servers.nbd.auto_create_size)\n"
                   "drain=<BOOL>      upload everything at exit (default true)",
    .magic_config_key = "name",
    .get_ready = glidefs_plugin_get_ready,
    .after_fork = glidefs_plugin_after_fork,
    .cleanup = glidefs_plugin_cleanup,
    .unload = glidefs_plugin_unload,
    .dump_plugin = glidefs_plugin_dump_plugin,
    .open = glidefs_plugin_open,
    .get_size = glidefs_plugin_get_size,
    .block_size = glidefs_plugin_block_size,
    .can_write = glidefs_plugin_can_write,
    .can_flush = glidefs_plugin_can_flush,
    .is_rotational = glidefs_plugin_is_rotational,
    .can_trim = glidefs_plugin_can_trim,
    .can_zero = glidefs_plugin_can_zero,
    .can_fast_zero = glidefs_plugin_can_fast_zero,
    .can_fua = glidefs_plugin_can_fua,
    .can_multi_conn = glidefs_plugin_can_multi_conn,
    .can_extents = glidefs_plugin_can_extents,
    .can_cache = glidefs_plugin_can_cache,
    .pread = glidefs_plugin_pread,
    .pwrite = glidefs_plugin_pwrite,
    .flush = glidefs_plugin_flush,
    .trim = glidefs_plugin_trim,
    .zero = glidefs_plugin_zero,
    .cache = glidefs_plugin_cache,
    .extents = glidefs_plugin_extents,
    .errno_is_preserved = 0,
};

struct nbdkit_plugin *plugin_init(void); /* defined by the macro below */
NBDKIT_REGISTER_PLUGIN(plugin)
