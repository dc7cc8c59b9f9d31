/*
 * metrics.c — Prometheus text and JSON views of the exports' statistics (see
 * metrics.h). The Prometheus families come from one table (name, type, help,
 * where the value comes from), so every family has exactly one HELP and one
 * TYPE line and all its samples together, as the exposition format requires;
 * `promtool check metrics` runs over the output in the test suite.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exports.h"
#include "latency.h"

#ifndef GLIDEFSD_VERSION
#define GLIDEFSD_VERSION "0.0.0"
#endif

/* ------------------------------------------------------------------------ */
/* Snapshot                                                                  */
/* ------------------------------------------------------------------------ */

struct collect_ctx {
    struct gd_export_snap *v;
    size_t n, cap;
    int err;
};

/* Runs under the registry lock: only copies. */
static void collect_one(void *arg, const char *name, glidefs_volume *vol, int conns)
{
    struct collect_ctx *c = arg;
    if (c->err)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct gd_export_snap *v = realloc(c->v, cap * sizeof *v);
        if (!v) {
            c->err = -ENOMEM;
            return;
        }
        c->v = v;
        c->cap = cap;
    }
    struct gd_export_snap *s = &c->v[c->n];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    if (glidefs_stats(vol, &s->st, sizeof s->st) < 0)
        return; /* leave it out rather than show zeroes */
    s->conns = conns;
    c->n++;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct gd_export_snap *)a)->name,
                  ((const struct gd_export_snap *)b)->name);
}

int gd_metrics_collect(struct gd_registry *r, struct gd_export_snap **out, size_t *n)
{
    struct collect_ctx c = { 0 };
    gd_registry_foreach(r, collect_one, &c);
    if (c.err) {
        free(c.v);
        return c.err;
    }
    if (c.n > 1)
        qsort(c.v, c.n, sizeof *c.v, by_name);
    *out = c.v;
    *n = c.n;
    return 0;
}

double gd_metrics_hit_ratio(const struct glidefs_stats *st)
{
    uint64_t all = st->cache_hits + st->cache_misses;
    return all ? (double)st->cache_hits / (double)all : 0.0;
}

double gd_metrics_overhead_ratio(const struct glidefs_stats *st)
{
    return st->live_bytes ? (double)st->stored_bytes / (double)st->live_bytes : 0.0;
}

void gd_metrics_iso_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

/* ------------------------------------------------------------------------ */
/* Prometheus                                                                */
/* ------------------------------------------------------------------------ */

enum src {
    S_U64,          /* a uint64_t field of glidefs_stats at off */
    S_BOOL,         /* an int field, as 0/1 */
    S_DOUBLE,       /* a double field */
    S_CONNS,
    S_HIT_RATIO,
    S_OVERHEAD,
    S_OLDEST_DIRTY, /* ms -> s */
    S_LAST_SYNC,    /* ms since epoch -> s */
    S_SYNC_ERROR,   /* last_error != 0 */
    S_RELIEFS,      /* NBD reader reliefs, kept with the latencies (latency.h) */
    S_LAX,          /* store_conditional: 1 when ignored or broken */
};

struct family {
    const char *name;
    const char *type;
    const char *help;
    enum src src;
    size_t off;
    const char *label; /* extra label pair, e.g. op="put", or NULL */
};

#define F(field) offsetof(struct glidefs_stats, field)
#define C "counter"
#define G "gauge"

/* Entries of one family are adjacent; HELP and TYPE go out once per name. */
static const struct family families[] = {
    { "glidefs_reads_total", C, "Read requests served.", S_U64, F(reads), NULL },
    { "glidefs_read_bytes_total", C, "Bytes read.", S_U64, F(read_bytes), NULL },
    { "glidefs_writes_total", C, "Write requests served.", S_U64, F(writes), NULL },
    { "glidefs_write_bytes_total", C, "Bytes written.", S_U64, F(write_bytes), NULL },
    { "glidefs_flushes_total", C, "Flush requests served.", S_U64, F(flushes), NULL },
    { "glidefs_journal_syncs_total", C, "Journal sync rounds (fdatasync); concurrent flushes "
      "share one.", S_U64, F(journal_syncs), NULL },
    { "glidefs_trims_total", C, "Trim and write-zeroes requests served.", S_U64, F(trims), NULL },
    { "glidefs_trim_bytes_total", C, "Bytes trimmed or zeroed.", S_U64, F(trim_bytes), NULL },
    { "glidefs_cache_hits_total", C, "Block reads served from the local cache.", S_U64,
      F(cache_hits), NULL },
    { "glidefs_cache_misses_total", C, "Block reads fetched from the store.", S_U64,
      F(cache_misses), NULL },
    { "glidefs_cache_hit_ratio", G, "Cache hits / (hits + misses) since the export opened.",
      S_HIT_RATIO, 0, NULL },
    { "glidefs_size_bytes", G, "Size of the volume.", S_U64, F(size_bytes), NULL },
    { "glidefs_block_size_bytes", G, "Block size of the volume.", S_U64, F(block_size), NULL },
    { "glidefs_cached_bytes", G, "Clean blocks in the local cache.", S_U64, F(cached_bytes),
      NULL },
    { "glidefs_dirty_bytes", G, "Bytes written locally and not yet in the store.", S_U64,
      F(dirty_bytes), NULL },
    { "glidefs_journal_bytes", G, "Bytes of journal files on local disk.", S_U64,
      F(journal_bytes), NULL },
    { "glidefs_fenced_bytes", G, "Journal data kept aside after losing the write lease.", S_U64,
      F(fenced_bytes), NULL },
    { "glidefs_oldest_dirty_age_seconds", G, "Age of the oldest write not yet in the store.",
      S_OLDEST_DIRTY, 0, NULL },
    { "glidefs_last_sync_timestamp_seconds", G,
      "Wall-clock time of the last successful upload (0 if none).", S_LAST_SYNC, 0, NULL },
    { "glidefs_sync_error", G, "1 while the syncer's last attempt failed (see last_error).",
      S_SYNC_ERROR, 0, NULL },
    { "glidefs_writes_waited_total", C, "Writes that waited for the syncer (dirty budget full).",
      S_U64, F(writes_waited), NULL },
    { "glidefs_store_requests_total", C, "Requests to the object store by operation.", S_U64,
      F(store_puts), "op=\"put\"" },
    { "glidefs_store_requests_total", C, NULL, S_U64, F(store_gets), "op=\"get\"" },
    { "glidefs_store_requests_total", C, NULL, S_U64, F(store_deletes), "op=\"delete\"" },
    { "glidefs_store_requests_total", C, NULL, S_U64, F(store_lists), "op=\"list\"" },
    { "glidefs_store_transfer_bytes_total", C, "Bytes sent (put) to and received (get) from "
      "the object store.", S_U64, F(store_put_bytes), "op=\"put\"" },
    { "glidefs_store_transfer_bytes_total", C, NULL, S_U64, F(store_get_bytes), "op=\"get\"" },
    { "glidefs_store_errors_total", C, "Object store requests that failed.", S_U64,
      F(store_errors), NULL },
    { "glidefs_store_retries_total", C, "Object store requests retried.", S_U64,
      F(store_retries), NULL },
    { "glidefs_segments_uploaded_total", C, "Segment objects uploaded.", S_U64,
      F(segments_uploaded), NULL },
    { "glidefs_manifests_uploaded_total", C, "Manifest objects uploaded.", S_U64,
      F(manifests_uploaded), NULL },
    { "glidefs_manifest_deltas_total", C, "Delta manifests stored (only what changed).", S_U64,
      F(manifest_deltas), NULL },
    { "glidefs_manifest_bases_total", C, "Full (base) manifests stored.", S_U64,
      F(manifest_bases), NULL },
    { "glidefs_manifest_bytes_total", C, "Bytes of manifest objects stored.", S_U64,
      F(manifest_bytes), NULL },
    { "glidefs_blocks_uploaded_total", C, "Blocks uploaded in segments.", S_U64,
      F(blocks_uploaded), NULL },
    { "glidefs_checksum_errors_total", C, "Blocks that failed their checksum (never served).",
      S_U64, F(checksum_errors), NULL },
    { "glidefs_blocks_fetched_total", C, "Blocks read from the object store (reads, "
      "read-ahead, prefetch, partial-block uploads).", S_U64, F(blocks_fetched), NULL },
    { "glidefs_readahead_blocks_total", C, "Blocks fetched ahead of sequential readers.", S_U64,
      F(readahead_blocks), NULL },
    { "glidefs_profile_blocks_recorded", G, "Blocks in the access profile recorded since the "
      "export opened (README \"Cold start\").", S_U64, F(profile_blocks_recorded), NULL },
    { "glidefs_prefetched_blocks_total", C, "Blocks prefetched from the access profile loaded "
      "at open.", S_U64, F(prefetched_blocks), NULL },
    { "glidefs_prefetch_hits_total", C, "Client block reads served by a prefetched block.",
      S_U64, F(prefetch_hits), NULL },
    { "glidefs_prefetch_wasted_bytes", G, "Prefetched bytes not read (yet).", S_U64,
      F(prefetch_wasted_bytes), NULL },
    { "glidefs_layout_blocks_total", C, "Blocks of the access profile copied together in "
      "first-read order since the export opened (README \"Cold start\").", S_U64,
      F(layout_blocks), NULL },
    { "glidefs_cache_restored_blocks", G, "Clean blocks the export's open restored from the "
      "cache its last close on this node kept (cache.keep_on_close).", S_U64,
      F(cache_restored_blocks), NULL },
    { "glidefs_key_generation", G, "Data key generation new segments are sealed under (0: not "
      "encrypted).", S_U64, F(key_generation), NULL },
    { "glidefs_key_generations", G, "Data key generations the volume holds (older ones until "
      "nothing needs them).", S_U64, F(key_generations), NULL },
    { "glidefs_segments_old_key", G, "Segments still referenced that are sealed under an older "
      "data key generation (compaction re-seals them).", S_U64, F(segments_old_key), NULL },
    { "glidefs_durability_store", G, "1 if a flush waits for the store (storage.durability: "
      "store), 0 if it is durable on this node (local).", S_BOOL, F(durability), NULL },
    { "glidefs_unsynced_bytes", G, "Exposure: bytes written and not yet in the store (what "
      "losing this node with its disk would lose).", S_U64, F(dirty_bytes), NULL },
    { "glidefs_unsynced_age_seconds", G, "Exposure: age of the oldest write not yet in the "
      "store.", S_OLDEST_DIRTY, 0, NULL },
    { "glidefs_max_unsynced_bytes", G, "Bound on unsynced bytes (0: none).", S_U64,
      F(max_unsynced_bytes), NULL },
    { "glidefs_store_flushes_total", C, "Flushes that waited for the store (durability store).",
      S_U64, F(store_flushes), NULL },
    { "glidefs_store_flush_errors_total", C, "Of those, failed (a store error, the lease lost).",
      S_U64, F(store_flush_errors), NULL },
    { "glidefs_unsynced_waits_total", C, "Writes that waited for the max_unsynced bounds.",
      S_U64, F(unsynced_waits), NULL },
    { "glidefs_connections", G, "NBD client connections.", S_CONNS, 0, NULL },
    { "glidefs_nbd_reliefs_total", C, "Slow inline NBD requests (e.g. cache misses) after "
      "which the connection's reader role went to another thread.", S_RELIEFS, 0, NULL },
    { "glidefs_read_only", G, "1 if the export is read-only on this node.", S_BOOL,
      F(read_only), NULL },
    { "glidefs_fenced", G, "1 if another node took the write lease from this one.", S_BOOL,
      F(fenced), NULL },
    { "glidefs_lease_owner", G, "1 if this node holds the write lease.", S_BOOL,
      F(lease_owner), NULL },
    { "glidefs_lease_epoch", G, "The write lease's epoch as this node knows it.", S_U64,
      F(lease_epoch), NULL },
    { "glidefs_store_lax", G, "1 if the last probe found that the object store ignores (or "
      "breaks) conditional writes: takeovers of the write lease are then refused, or unsafe.",
      S_LAX, 0, NULL },
    { "glidefs_stored_bytes", G, "Bytes of segment objects in the store.", S_U64,
      F(stored_bytes), NULL },
    { "glidefs_live_bytes", G, "Stored bytes still referenced by the volume.", S_U64,
      F(live_bytes), NULL },
    { "glidefs_store_overhead_ratio", G, "Stored bytes / live bytes (0 when nothing is live).",
      S_OVERHEAD, 0, NULL },
    { "glidefs_segments", G, "Segment objects in the store.", S_U64, F(segments), NULL },
    { "glidefs_compactions_total", C, "Compaction cycles that did work.", S_U64,
      F(compactions), NULL },
    { "glidefs_compaction_rewritten_bytes_total", C, "Live bytes copied by compaction.", S_U64,
      F(compaction_bytes_rewritten), NULL },
    { "glidefs_compaction_reclaimed_bytes_total", C, "Stored bytes deleted by compaction.",
      S_U64, F(bytes_reclaimed), NULL },
    { "glidefs_segments_deleted_total", C, "Segment objects deleted by compaction.", S_U64,
      F(segments_deleted), NULL },
    { "glidefs_manifests_deleted_total", C, "Manifest objects deleted (pruned).", S_U64,
      F(manifests_deleted), NULL },
    { "glidefs_estimated_monthly_cost_usd", G,
      "Estimated monthly store cost: storage plus requests at the configured prices.", S_DOUBLE,
      F(est_monthly_cost_usd), NULL },
};

#undef F
#undef C
#undef G

/* Label values: export names are [A-Za-z0-9._-], but escape anyway. */
static void put_label_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void put_double(FILE *f, double d)
{
    if (d != d)
        fputs("NaN", f);
    else
        fprintf(f, "%.10g", d);
}

static void put_sample(FILE *f, const struct family *fam, const struct gd_export_snap *s)
{
    const struct glidefs_stats *st = &s->st;
    const char *base = (const char *)st;
    fprintf(f, "%s{export=\"", fam->name);
    put_label_value(f, s->name);
    fputc('"', f);
    if (fam->label)
        fprintf(f, ",%s", fam->label);
    fputs("} ", f);
    switch (fam->src) {
    case S_U64: {
        uint64_t v;
        memcpy(&v, base + fam->off, sizeof v);
        fprintf(f, "%" PRIu64, v);
        break;
    }
    case S_BOOL: {
        int v;
        memcpy(&v, base + fam->off, sizeof v);
        fputs(v ? "1" : "0", f);
        break;
    }
    case S_DOUBLE: {
        double v;
        memcpy(&v, base + fam->off, sizeof v);
        put_double(f, v);
        break;
    }
    case S_CONNS:
        fprintf(f, "%d", s->conns);
        break;
    case S_HIT_RATIO:
        put_double(f, gd_metrics_hit_ratio(st));
        break;
    case S_OVERHEAD:
        put_double(f, gd_metrics_overhead_ratio(st));
        break;
    case S_OLDEST_DIRTY:
        put_double(f, (double)st->oldest_dirty_age_ms / 1000.0);
        break;
    case S_LAST_SYNC:
        put_double(f, (double)st->last_sync_time_ms / 1000.0);
        break;
    case S_SYNC_ERROR:
        fputs(st->last_error ? "1" : "0", f);
        break;
    case S_RELIEFS:
        fprintf(f, "%" PRIu64, gd_latency_reliefs(s->name));
        break;
    case S_LAX:
        fputs(st->store_conditional == GLIDEFS_STORE_COND_IGNORED ||
                      st->store_conditional == GLIDEFS_STORE_COND_BROKEN
                  ? "1"
                  : "0",
              f);
        break;
    }
    fputc('\n', f);
}

static void put_histograms(FILE *f, const struct gd_export_snap *snaps, size_t n)
{
    const char *h = "glidefs_request_duration_seconds";
    fprintf(f, "# HELP %s Time the library took to serve NBD requests, by operation.\n", h);
    fprintf(f, "# TYPE %s histogram\n", h);
    for (size_t k = 0; k < n; k++) {
        struct gd_lat_snapshot ls[GD_LAT_NOPS];
        if (gd_latency_snapshot(snaps[k].name, ls) < 0)
            memset(ls, 0, sizeof ls);
        for (unsigned op = 0; op < GD_LAT_NOPS; op++) {
            const char *opn = gd_latency_op_name(op);
            if (!opn)
                continue;
            uint64_t cum = 0;
            for (unsigned i = 0; i <= GD_LAT_BUCKETS; i++) {
                cum += ls[op].buckets[i];
                fprintf(f, "%s_bucket{export=\"", h);
                put_label_value(f, snaps[k].name);
                if (i < GD_LAT_BUCKETS)
                    fprintf(f, "\",op=\"%s\",le=\"%.9g\"} %" PRIu64 "\n", opn,
                            (double)gd_latency_bucket_le_us(i) / 1e6, cum);
                else
                    fprintf(f, "\",op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", opn, cum);
            }
            fprintf(f, "%s_sum{export=\"", h);
            put_label_value(f, snaps[k].name);
            fprintf(f, "\",op=\"%s\"} ", opn);
            put_double(f, (double)ls[op].sum_ns / 1e9);
            fprintf(f, "\n%s_count{export=\"", h);
            put_label_value(f, snaps[k].name);
            fprintf(f, "\",op=\"%s\"} %" PRIu64 "\n", opn, cum);
        }
    }
}

const char *gd_metrics_cond_name(int cond)
{
    switch (cond) {
    case GLIDEFS_STORE_COND_OK: return "ok";
    case GLIDEFS_STORE_COND_IGNORED: return "ignored";
    case GLIDEFS_STORE_COND_BROKEN: return "broken";
    default: return "unknown";
    }
}

const char *gd_metrics_durability_name(int mode)
{
    return mode == GLIDEFS_DURABILITY_STORE ? "store" : "local";
}

char *gd_metrics_prometheus(const struct gd_export_snap *snaps, size_t n, int store_cond,
                            size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
    fputs("# HELP glidefs_build_info glidefsd and libglidefs versions.\n"
          "# TYPE glidefs_build_info gauge\n", f);
    fprintf(f, "glidefs_build_info{version=\"%s\",libglidefs=\"%s\"} 1\n", GLIDEFSD_VERSION,
            glidefs_version());
    fputs("# HELP glidefs_exports Exports open on this node.\n"
          "# TYPE glidefs_exports gauge\n", f);
    fprintf(f, "glidefs_exports %zu\n", n);
    fputs("# HELP glidefs_store_conditional_writes What the start-up probe found about the "
          "object store's conditional writes (result ok, ignored, broken or unknown).\n"
          "# TYPE glidefs_store_conditional_writes gauge\n", f);
    fprintf(f, "glidefs_store_conditional_writes{result=\"%s\"} 1\n",
            gd_metrics_cond_name(store_cond));
    const size_t nfam = sizeof families / sizeof families[0];
    for (size_t i = 0; i < nfam; i++) {
        const struct family *fam = &families[i];
        if (i == 0 || strcmp(families[i - 1].name, fam->name) != 0)
            fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name,
                    fam->type);
        for (size_t k = 0; k < n; k++)
            put_sample(f, fam, &snaps[k]);
    }
    put_histograms(f, snaps, n);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    if (len)
        *len = size;
    return buf;
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */
/* ------------------------------------------------------------------------ */

static json_t *latency_json(const char *name)
{
    struct gd_lat_snapshot ls[GD_LAT_NOPS];
    if (gd_latency_snapshot(name, ls) < 0)
        memset(ls, 0, sizeof ls);
    json_t *o = json_object();
    for (unsigned op = 0; o && op < GD_LAT_NOPS; op++) {
        const char *opn = gd_latency_op_name(op);
        if (!opn)
            continue;
        const struct gd_lat_snapshot *s = &ls[op];
        json_t *buckets = json_array();
        for (unsigned i = 0; buckets && i <= GD_LAT_BUCKETS; i++) {
            if (!s->buckets[i])
                continue;
            json_t *b = i < GD_LAT_BUCKETS
                            ? json_pack("{s:I,s:I}", "le_us", (json_int_t)gd_latency_bucket_le_us(i),
                                        "count", (json_int_t)s->buckets[i])
                            : json_pack("{s:s,s:I}", "le_us", "+Inf", "count",
                                        (json_int_t)s->buckets[i]);
            json_array_append_new(buckets, b);
        }
        json_t *one = json_pack("{s:I,s:f,s:I,s:I,s:I,s:o*}", "count", (json_int_t)s->count,
                                "mean_us",
                                s->count ? (double)s->sum_ns / 1000.0 / (double)s->count : 0.0,
                                "p50_us", (json_int_t)gd_latency_quantile_us(s, 0.50), "p90_us",
                                (json_int_t)gd_latency_quantile_us(s, 0.90), "p99_us",
                                (json_int_t)gd_latency_quantile_us(s, 0.99), "buckets", buckets);
        json_object_set_new(o, opn, one);
    }
    return o;
}

#define J(v) ((json_int_t)(v))

json_t *gd_metrics_json(const struct gd_export_snap *s)
{
    const struct glidefs_stats *st = &s->st;
    char last_sync[40] = "";
    if (st->last_sync_time_ms > 0)
        gd_metrics_iso_time(st->last_sync_time_ms, last_sync, sizeof last_sync);
    json_t *o = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
        "name", s->name,
        "reads", J(st->reads), "read_bytes", J(st->read_bytes),
        "writes", J(st->writes), "write_bytes", J(st->write_bytes),
        "flushes", J(st->flushes), "trims", J(st->trims), "trim_bytes", J(st->trim_bytes),
        "cache_hits", J(st->cache_hits), "cache_misses", J(st->cache_misses),
        "cached_bytes", J(st->cached_bytes), "dirty_bytes", J(st->dirty_bytes),
        "cache_hit_ratio", gd_metrics_hit_ratio(st));
    if (!o)
        return NULL;
    json_t *more = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "journal_bytes", J(st->journal_bytes), "journal_syncs", J(st->journal_syncs),
        "store_puts", J(st->store_puts), "store_put_bytes", J(st->store_put_bytes),
        "store_gets", J(st->store_gets), "store_get_bytes", J(st->store_get_bytes),
        "store_deletes", J(st->store_deletes), "store_lists", J(st->store_lists),
        "store_errors", J(st->store_errors), "store_retries", J(st->store_retries),
        "segments_uploaded", J(st->segments_uploaded),
        "manifests_uploaded", J(st->manifests_uploaded),
        "blocks_uploaded", J(st->blocks_uploaded), "checksum_errors", J(st->checksum_errors),
        "writes_waited", J(st->writes_waited), "oldest_dirty_age_ms", J(st->oldest_dirty_age_ms));
    json_t *more2 = json_pack(
        "{s:I, s:s?, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:s?}",
        "last_sync_time_ms", J(st->last_sync_time_ms),
        "last_sync_time", last_sync[0] ? last_sync : NULL,
        "stored_bytes", J(st->stored_bytes), "live_bytes", J(st->live_bytes),
        "segments", J(st->segments), "overhead_ratio", gd_metrics_overhead_ratio(st),
        "compactions", J(st->compactions),
        "compaction_bytes_rewritten", J(st->compaction_bytes_rewritten),
        "bytes_reclaimed", J(st->bytes_reclaimed), "segments_deleted", J(st->segments_deleted),
        "manifests_deleted", J(st->manifests_deleted), "size_bytes", J(st->size_bytes),
        "est_monthly_cost_usd", st->est_monthly_cost_usd, "connections", J(s->conns),
        "last_error", st->last_error ? glidefs_strerror(st->last_error) : NULL);
    json_t *more3 = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "blocks_fetched",
                              J(st->blocks_fetched), "readahead_blocks", J(st->readahead_blocks),
                              "nbd_reliefs", J(gd_latency_reliefs(s->name)), "key_generation",
                              J(st->key_generation), "key_generations", J(st->key_generations),
                              "segments_old_key", J(st->segments_old_key));
    json_t *more4 = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "durability",
                              gd_metrics_durability_name(st->durability), "max_unsynced_s",
                              J(st->max_unsynced_ms / 1000), "max_unsynced_bytes",
                              J(st->max_unsynced_bytes), "unsynced_bytes", J(st->dirty_bytes),
                              "unsynced_age_ms", J(st->oldest_dirty_age_ms), "store_flushes",
                              J(st->store_flushes), "store_flush_errors",
                              J(st->store_flush_errors), "unsynced_waits",
                              J(st->unsynced_waits));
    json_t *more5 = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "profile_blocks_recorded",
                              J(st->profile_blocks_recorded), "prefetched_blocks",
                              J(st->prefetched_blocks), "prefetch_hits", J(st->prefetch_hits),
                              "prefetch_wasted_bytes", J(st->prefetch_wasted_bytes),
                              "first_read_ms", J(st->first_read_ms), "cache_restored_blocks",
                              J(st->cache_restored_blocks), "layout_blocks",
                              J(st->layout_blocks));
    json_t *lat = latency_json(s->name);
    int bad = !more || !more2 || !more3 || !more4 || !more5 || !lat ||
              json_object_update(o, more) < 0 || json_object_update(o, more2) < 0 ||
              json_object_update(o, more3) < 0 || json_object_update(o, more4) < 0 ||
              json_object_update(o, more5) < 0;
    json_decref(more4);
    json_decref(more5);
    json_decref(more);
    json_decref(more2);
    json_decref(more3);
    if (bad || json_object_set_new(o, "latency", lat) < 0) { /* set_new takes lat either way */
        if (bad)
            json_decref(lat);
        json_decref(o);
        return NULL;
    }
    return o;
}
