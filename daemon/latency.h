/*
 * latency.h — per-export request latency histograms, measured by the NBD
 * server around each library call (the library's glidefs_stats has no
 * latencies). One entry per export name, created at the handshake and kept
 * for the life of the process (so counters survive an idle close and
 * reopen, as Prometheus counters must); the hot path is one clock_gettime
 * pair and two relaxed atomic adds. Buckets are powers of two of
 * microseconds: <= 8 us, 16 us, ... 2^23 us (8.4 s), then +Inf. The same
 * entry counts the export's reader reliefs (nbd_reader.c: a slow inline
 * request, e.g. a cache miss, made the watchdog hand the connection's
 * reader role to a pool thread).
 */
#ifndef GLIDEFSD_LATENCY_H
#define GLIDEFSD_LATENCY_H

#include <stdint.h>

/* Ops are NBD command types (NBD_CMD_READ = 0 .. NBD_CMD_BLOCK_STATUS = 7). */
#define GD_LAT_NOPS 8
#define GD_LAT_BUCKETS 21 /* finite buckets; index GD_LAT_BUCKETS is +Inf */

struct gd_latency;

struct gd_lat_snapshot {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t buckets[GD_LAT_BUCKETS + 1]; /* per bucket, not cumulative */
};

/* The entry of export `name`, created on first use; NULL only when out of
 * memory (gd_latency_end ignores NULL). Never freed before exit. */
struct gd_latency *gd_latency_for(const char *name);

/* Monotonic nanoseconds: take before the call, hand to gd_latency_end. */
uint64_t gd_latency_start(void);
void gd_latency_end(struct gd_latency *l, unsigned op, uint64_t t0_ns);

/* One relief on a connection to l's export (NULL: ignored). */
void gd_latency_relief(struct gd_latency *l);
/* Reliefs of export `name` so far (0 if it never had a connection). */
uint64_t gd_latency_reliefs(const char *name);

/* Name of an op ("read", "write", ...), NULL for ops not measured (DISC). */
const char *gd_latency_op_name(unsigned op);
/* Upper bound of finite bucket i, in microseconds. */
uint64_t gd_latency_bucket_le_us(unsigned i);

/* Copy the counters of export `name`; 0, or -ENOENT if it never had I/O. */
int gd_latency_snapshot(const char *name, struct gd_lat_snapshot out[GD_LAT_NOPS]);

/* Estimated quantile q (0..1) in microseconds: the upper bound of the bucket
 * holding it (0 if no samples; for +Inf, twice the last finite bound). */
uint64_t gd_latency_quantile_us(const struct gd_lat_snapshot *s, double q);

/* Free every entry (at exit, after all I/O has stopped). */
void gd_latency_free_all(void);

#endif
