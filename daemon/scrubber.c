/*
 * scrubber.c — the scrub record of this node's exports and the background
 * scrubber (see scrubber.h): which export is due, its paced pass, the
 * state file that carries the schedule across restarts, and the status,
 * metrics and cost views of the record.
 *
 * The schedule runs on wall-clock time (a pass recorded before a restart
 * must count after it); a state file entry more than a day in the future
 * (a clock set back) is ignored rather than trusted to postpone scrubs.
 */
#include "scrubber.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "config.h"
#include "exports.h"
#include "fsutil.h"
#include "log.h"
#include "metrics.h"

#define STATE_NAME "scrub.state"
#define STATE_MAX_BYTES (16u << 20) /* a line per export: far more than any node has */
#define TICK_MS 1000                /* how often new exports are looked for */
#define RETRY_MS 60000              /* after a failed pass (at most the interval) */
#define FUTURE_SLACK_MS (86400LL * 1000)
#define MONTH_S (30.0 * 86400.0)

struct rec {
    char name[GLIDEFS_NAME_MAX + 1];
    int64_t last_ms;       /* wall: end of the last pass (any kind); 0: none */
    int64_t full_ms;       /* wall: end of the last pass that counts for the schedule */
    int64_t duration_ms;   /* of the last pass */
    int deep;
    int have_pass;         /* the last_* figures are a pass's (run here or loaded) */
    uint64_t problems, bytes_read, gets; /* of the last pass */
    uint64_t passes, bytes_total;        /* this process's, for the counters */
    int64_t retry_ms;      /* monotonic: after a failure, not before this */
};

struct gd_scrubber {
    const glidefs_config *cfg;
    struct gd_registry *reg;
    int stop_fd, wake_fd;
    atomic_int stop;
    int64_t interval_ms;   /* 0: no background scrub */
    char *state_path;
    pthread_mutex_t mu;    /* recs */
    struct rec *recs;
    size_t n, cap;
    pthread_t th;
    int running;
};

static struct rec *find_locked(struct gd_scrubber *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->recs[i].name, name) == 0)
            return &s->recs[i];
    return NULL;
}

static struct rec *get_locked(struct gd_scrubber *s, const char *name)
{
    struct rec *r = find_locked(s, name);
    if (r)
        return r;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        struct rec *n = realloc(s->recs, cap * sizeof *n);
        if (!n)
            return NULL;
        s->recs = n;
        s->cap = cap;
    }
    r = &s->recs[s->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    return r;
}

/* ------------------------------------------------------------------------ */
/* State file                                                                */
/* ------------------------------------------------------------------------ */

static int get_u64(json_t *o, const char *k, uint64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* {"version": 1, "exports": {NAME: {"last_ms", "duration_ms", "deep",
 * "problems", "bytes_read", "gets"}}}: each entry checked on its own (a bad
 * one is skipped and scrubbed again); the file as a whole must parse. */
static void load_state(struct gd_scrubber *s)
{
    struct stat st;
    if (stat(s->state_path, &st) < 0) {
        if (errno != ENOENT)
            gd_warn("scrub: cannot read %s: %s; every export is scrubbed again", s->state_path,
                    strerror(errno));
        return;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > STATE_MAX_BYTES) {
        gd_warn("scrub: %s is not a regular file of at most %u bytes; ignored", s->state_path,
                STATE_MAX_BYTES);
        return;
    }
    json_error_t jerr;
    json_t *j = json_load_file(s->state_path, JSON_REJECT_DUPLICATES, &jerr);
    json_t *ex = j ? json_object_get(j, "exports") : NULL;
    json_t *ver = j ? json_object_get(j, "version") : NULL;
    if (!json_is_object(j) || !json_is_integer(ver) || json_integer_value(ver) != 1 ||
        !json_is_object(ex)) {
        gd_warn("scrub: %s is not a scrub state file (%s); every export is scrubbed again",
                s->state_path, j ? "no version 1 or \"exports\" object" : jerr.text);
        json_decref(j);
        return;
    }
    int64_t now = gfs_wall_ms();
    const char *name;
    json_t *o;
    SCOPED_LOCK(&s->mu);
    json_object_foreach(ex, name, o) {
        uint64_t last, dur, deep, problems, bytes, gets;
        if (!glidefs_name_valid(name) || !json_is_object(o) || get_u64(o, "last_ms", &last) ||
            get_u64(o, "duration_ms", &dur) || get_u64(o, "problems", &problems) ||
            get_u64(o, "bytes_read", &bytes) || get_u64(o, "gets", &gets) ||
            !json_is_boolean(json_object_get(o, "deep")) || last == 0 ||
            last > (uint64_t)(now + FUTURE_SLACK_MS) || dur > last) {
            gd_warn("scrub: %s: skipping a malformed entry (export \"%.*s\")", s->state_path,
                    GLIDEFS_NAME_MAX, name);
            continue;
        }
        deep = json_is_true(json_object_get(o, "deep"));
        struct rec *r = get_locked(s, name);
        if (!r)
            break;
        r->last_ms = r->full_ms = (int64_t)last;
        r->duration_ms = (int64_t)dur;
        r->deep = (int)deep;
        r->problems = problems;
        r->bytes_read = bytes;
        r->gets = gets;
        r->have_pass = 1;
    }
    json_decref(j);
}

/* Write the schedule (lock held): a new file, synced, renamed over the old
 * one, the directory synced: a crash leaves the old state or the new. */
static void save_state_locked(struct gd_scrubber *s)
{
    json_t *ex = json_object();
    for (size_t i = 0; ex && i < s->n; i++) {
        const struct rec *r = &s->recs[i];
        if (!r->full_ms)
            continue;
        json_t *o = json_pack("{s:I, s:I, s:b, s:I, s:I, s:I}", "last_ms", (json_int_t)r->full_ms,
                              "duration_ms", (json_int_t)r->duration_ms, "deep", r->deep,
                              "problems", (json_int_t)r->problems, "bytes_read",
                              (json_int_t)r->bytes_read, "gets", (json_int_t)r->gets);
        if (!o || json_object_set_new(ex, r->name, o) < 0) {
            json_decref(ex);
            ex = NULL;
        }
    }
    json_t *j = ex ? json_pack("{s:i, s:o}", "version", 1, "exports", ex) : NULL;
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!text) {
        gd_err("scrub: cannot save %s: out of memory", s->state_path);
        return;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", s->state_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(text), done = 0;
    int ok = fd >= 0;
    while (ok && done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        done += ok ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0 && close(fd) < 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && rename(tmp, s->state_path) < 0) {
        ok = 0;
        e = errno;
    }
    free(text);
    if (!ok) {
        gd_err("scrub: cannot save %s: %s (after a restart, exports are scrubbed again)",
               s->state_path, strerror(e));
        unlink(tmp);
        return;
    }
    gfs_fsync_parent(s->state_path);
}

/* ------------------------------------------------------------------------ */
/* The record                                                                */
/* ------------------------------------------------------------------------ */

static uint64_t problems_of(const struct glidefs_scrub_result *res)
{
    /* orphans are a leak, not damage, but still something to look at */
    return res->missing_segments + res->size_mismatches + res->bad_headers +
           res->damaged_blocks + res->bad_snapshots + res->orphan_objects - res->orphans_deleted;
}

void gd_scrubber_record(struct gd_scrubber *s, const char *name, int deep,
                        const struct glidefs_scrub_result *res, int64_t duration_ms)
{
    if (!s)
        return;
    SCOPED_LOCK(&s->mu);
    struct rec *r = get_locked(s, name);
    if (!r)
        return;
    r->last_ms = gfs_wall_ms();
    r->duration_ms = duration_ms;
    r->deep = deep;
    r->problems = problems_of(res);
    r->bytes_read = res->bytes_read;
    r->gets = res->gets;
    r->have_pass = 1;
    r->passes++;
    r->bytes_total += res->bytes_read;
    r->retry_ms = 0;
    /* a quick pass does not stand in for a configured deep one */
    if (deep || !s->cfg->scrub_deep) {
        r->full_ms = r->last_ms;
        save_state_locked(s);
    }
}

/* The background scrub's GETs and bytes a month for r (NULL: no pass yet):
 * a pass per interval at the last pass's figures, never more than the
 * limits allow in a month; before any pass, the limits' bound. */
static void estimate(const struct gd_scrubber *s, const struct rec *r, double *gets,
                     double *bytes, double *usd)
{
    *gets = *bytes = *usd = 0;
    if (!s->interval_ms)
        return;
    double passes = MONTH_S / ((double)s->interval_ms / 1000.0);
    double cap_g = (double)s->cfg->scrub_max_gets_per_s * MONTH_S;
    double cap_b = (double)s->cfg->scrub_max_mb_per_s * 1048576.0 * MONTH_S;
    *gets = r && r->have_pass ? passes * (double)r->gets : cap_g;
    *bytes = r && r->have_pass ? passes * (double)r->bytes_read : cap_b;
    if (*gets > cap_g)
        *gets = cap_g;
    if (*bytes > cap_b)
        *bytes = cap_b;
    *usd = *gets / 1000.0 * s->cfg->cost_get_per_1000;
}

json_t *gd_scrubber_json(struct gd_scrubber *s, const char *name)
{
    if (!s)
        return json_null();
    SCOPED_LOCK(&s->mu);
    const struct rec *r = find_locked(s, name);
    int have = r && r->have_pass;
    char last[40] = "", next[40] = "";
    if (have)
        gd_metrics_iso_time(r->last_ms, last, sizeof last);
    int64_t due = 0;
    if (s->interval_ms) {
        due = r && r->full_ms ? r->full_ms + s->interval_ms : gfs_wall_ms();
        gd_metrics_iso_time(due, next, sizeof next);
    }
    double g, b, usd;
    estimate(s, r, &g, &b, &usd);
    return json_pack("{s:s?, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:s?, s:I, s:f, s:f, s:f}",
                     "last_time", have ? last : NULL, "last_time_ms",
                     (json_int_t)(have ? r->last_ms : 0), "duration_ms",
                     (json_int_t)(have ? r->duration_ms : 0), "deep", have && r->deep,
                     "problems", (json_int_t)(have ? r->problems : 0), "bytes_read",
                     (json_int_t)(have ? r->bytes_read : 0), "passes",
                     (json_int_t)(r ? r->passes : 0), "bytes_read_total",
                     (json_int_t)(r ? r->bytes_total : 0), "interval_s",
                     (json_int_t)(s->interval_ms / 1000), "next_time", next[0] ? next : NULL,
                     "next_time_ms", (json_int_t)due, "est_monthly_gets", g,
                     "est_monthly_get_bytes", b, "est_monthly_cost_usd", usd);
}

int gd_scrubber_prometheus(struct gd_scrubber *s, const char *const *names, size_t n,
                           char **text, size_t *len)
{
    if (!s)
        return 0;
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"glidefs_scrub_last_success_timestamp_seconds", "gauge",
         "When the last scrub of the export on this node ended (0: none yet)."},
        {"glidefs_scrub_last_duration_seconds", "gauge", "How long the last scrub took."},
        {"glidefs_scrub_problems", "gauge",
         "Problems the last scrub found: missing, truncated, bad headers, damaged blocks, "
         "lost snapshots."},
        {"glidefs_scrub_bytes_read_total", "counter", "Bytes scrubs fetched from the store."},
        {"glidefs_scrub_passes_total", "counter", "Scrubs completed since glidefsd started."},
        {"glidefs_scrub_estimated_monthly_gets", "gauge",
         "GETs a month the background scrub makes (scrub.* interval and limits)."},
        {"glidefs_scrub_estimated_monthly_cost_usd", "gauge",
         "The background scrub's GETs a month at cost.get_per_1000."},
    };
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return -ENOMEM;
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < sizeof fams / sizeof fams[0]; k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fams[k].name, fams[k].help, fams[k].name,
                fams[k].type);
        for (size_t i = 0; i < n; i++) {
            const struct rec *r = find_locked(s, names[i]);
            int have = r && r->have_pass;
            double g, b, usd, v = 0;
            estimate(s, r, &g, &b, &usd);
            switch (k) {
            case 0: v = have ? (double)r->last_ms / 1000.0 : 0; break;
            case 1: v = have ? (double)r->duration_ms / 1000.0 : 0; break;
            case 2: v = have ? (double)r->problems : 0; break;
            case 3: v = r ? (double)r->bytes_total : 0; break;
            case 4: v = r ? (double)r->passes : 0; break;
            case 5: v = g; break;
            default: v = usd; break;
            }
            /* names keep to A-Z a-z 0-9 . _ -: nothing to escape in a label */
            fprintf(f, "%s{export=\"%s\"} %.10g\n", fams[k].name, names[i], v);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (fclose(f) != 0) {
        free(buf);
        return -ENOMEM;
    }
    char *joined = realloc(*text, *len + size + 1);
    if (!joined) {
        free(buf);
        return -ENOMEM;
    }
    memcpy(joined + *len, buf, size + 1);
    free(buf);
    *text = joined;
    *len += size;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The background scrubber                                                   */
/* ------------------------------------------------------------------------ */

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return fd >= 0 && poll(&p, 1, 0) > 0;
}

/* glidefs_scrub_ex's cancel: SIGTERM or gd_scrubber_stop. */
static int stopping(void *arg)
{
    struct gd_scrubber *s = arg;
    if (atomic_load(&s->stop))
        return 1;
    if (readable(s->stop_fd) || readable(s->wake_fd)) {
        atomic_store(&s->stop, 1);
        return 1;
    }
    return 0;
}

struct names {
    char (*v)[GLIDEFS_NAME_MAX + 1];
    size_t n, cap;
};

/* Under the registry lock: only copies. */
static void collect(void *arg, const char *name, glidefs_volume *vol, int conns)
{
    struct names *nm = arg;
    (void)vol;
    (void)conns;
    if (nm->n == nm->cap) {
        size_t cap = nm->cap ? 2 * nm->cap : 16;
        char (*v)[GLIDEFS_NAME_MAX + 1] = realloc(nm->v, cap * sizeof *v);
        if (!v)
            return;
        nm->v = v;
        nm->cap = cap;
    }
    snprintf(nm->v[nm->n++], GLIDEFS_NAME_MAX + 1, "%s", name);
}

/* One paced pass over export name, recorded and logged. */
static void scrub_one(struct gd_scrubber *s, const char *name)
{
    struct gd_export *e = NULL;
    if (gd_export_acquire_ex(s->reg, name, 0, 0, GD_ACQUIRE_OPEN_ONLY, &e) < 0) {
        /* closing or closed meanwhile: scrubbed when it is open again (not
         * picked again at once while it closes) */
        SCOPED_LOCK(&s->mu);
        struct rec *r = get_locked(s, name);
        if (r)
            r->retry_ms = gfs_now_ms() + TICK_MS;
        return;
    }
    int deep = s->cfg->scrub_deep;
    struct glidefs_scrub_opts opts = {
        .opts_size = sizeof opts,
        .max_bytes_per_s = (uint64_t)s->cfg->scrub_max_mb_per_s << 20,
        .max_gets_per_s = (uint32_t)s->cfg->scrub_max_gets_per_s,
        .cancel = stopping,
        .cancel_arg = s,
    };
    gd_info("scrub: export %s: background %s pass starts", name, deep ? "deep" : "quick");
    struct glidefs_scrub_result res;
    memset(&res, 0, sizeof res);
    int64_t t0 = gfs_now_ms();
    int rc = glidefs_scrub_ex(gd_export_volume(e), deep ? GLIDEFS_SCRUB_DEEP : 0, &opts, &res,
                              sizeof res);
    int64_t dur = gfs_now_ms() - t0;
    gd_export_release(e, 0);
    if (rc == -ECANCELED) {
        gd_info("scrub: export %s: background pass stopped (glidefsd stops); it runs again "
                "after the restart", name);
        return;
    }
    if (rc < 0) {
        int64_t retry = s->interval_ms < RETRY_MS ? s->interval_ms : RETRY_MS;
        gd_err("scrub: export %s: background pass failed: %s; trying again in %" PRId64 " s",
               name, glidefs_strerror(rc), retry / 1000);
        SCOPED_LOCK(&s->mu);
        struct rec *r = get_locked(s, name);
        if (r)
            r->retry_ms = gfs_now_ms() + retry;
        return;
    }
    gd_scrubber_record(s, name, deep, &res, dur);
    uint64_t bad = problems_of(&res);
    gd_log(bad ? GLIDEFS_LOG_WARN : GLIDEFS_LOG_INFO,
           "scrub: export %s: background %s pass in %.1f s: %" PRIu64 " segments, %" PRIu64
           " blocks, %" PRIu64 " bytes in %" PRIu64 " GETs, %" PRIu64 " problems%s",
           name, deep ? "deep" : "quick", (double)dur / 1000.0, res.segments_checked,
           res.blocks_checked, res.bytes_read, res.gets, bad,
           bad ? " (POST /api/exports/NAME/scrub?deep=true lists them)" : "");
}

static void *run(void *arg)
{
    struct gd_scrubber *s = arg;
    struct names nm = {0};
    while (!stopping(s)) {
        nm.n = 0;
        gd_registry_foreach(s->reg, collect, &nm);
        /* the open export whose pass is most overdue (never scrubbed: first) */
        int64_t now = gfs_wall_ms(), mono = gfs_now_ms(), best_due = INT64_MAX;
        size_t best = SIZE_MAX;
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < nm.n; i++) {
            const struct rec *r = find_locked(s, nm.v[i]);
            if (r && r->retry_ms > mono)
                continue;
            int64_t due = r && r->full_ms ? r->full_ms + s->interval_ms : 0;
            if (due < best_due) {
                best_due = due;
                best = i;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (best != SIZE_MAX && best_due <= now) {
            scrub_one(s, nm.v[best]);
            continue;
        }
        /* the next due pass, or new exports opening: look again soon */
        int64_t wait = best != SIZE_MAX && best_due - now < TICK_MS ? best_due - now : TICK_MS;
        struct pollfd p[2] = {{.fd = s->wake_fd, .events = POLLIN},
                              {.fd = s->stop_fd, .events = POLLIN}};
        poll(p, s->stop_fd >= 0 ? 2 : 1, (int)(wait > 0 ? wait : 1));
    }
    free(nm.v);
    return NULL;
}

int gd_scrubber_start(const glidefs_config *cfg, struct gd_registry *reg, int stop_fd,
                      struct gd_scrubber **out)
{
    *out = NULL;
    struct gd_scrubber *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->cfg = cfg;
    s->reg = reg;
    s->stop_fd = stop_fd;
    s->wake_fd = eventfd(0, EFD_CLOEXEC);
    atomic_init(&s->stop, 0);
    pthread_mutex_init(&s->mu, NULL);
    s->interval_ms = cfg->scrub_interval_s > 0 ? (int64_t)cfg->scrub_interval_s * 1000
                                               : (int64_t)cfg->scrub_interval_h * 3600000;
    size_t plen = strlen(cfg->cache_dir) + sizeof "/" STATE_NAME;
    s->state_path = malloc(plen);
    if (s->wake_fd < 0 || !s->state_path) {
        gd_scrubber_free(s);
        return -ENOMEM;
    }
    snprintf(s->state_path, plen, "%s/%s", cfg->cache_dir, STATE_NAME);
    load_state(s);
    if (s->interval_ms) {
        int rc = pthread_create(&s->th, NULL, run, s);
        if (rc) {
            gd_scrubber_free(s);
            return -rc;
        }
        s->running = 1;
        gd_info("scrub: a %s pass of every open export every %" PRId64 " s, at most %d MiB/s "
                "and %d GETs/s (state in %s)", cfg->scrub_deep ? "deep" : "quick",
                s->interval_ms / 1000, cfg->scrub_max_mb_per_s, cfg->scrub_max_gets_per_s,
                s->state_path);
    }
    *out = s;
    return 0;
}

void gd_scrubber_stop(struct gd_scrubber *s)
{
    if (!s || !s->running)
        return;
    atomic_store(&s->stop, 1);
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof one);
    (void)w;
    pthread_join(s->th, NULL);
    s->running = 0;
}

void gd_scrubber_free(struct gd_scrubber *s)
{
    if (!s)
        return;
    gd_scrubber_stop(s);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_mutex_destroy(&s->mu);
    free(s->recs);
    free(s->state_path);
    free(s);
}
