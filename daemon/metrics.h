/*
 * metrics.h — glidefsd's metrics: a snapshot of every open export's
 * glidefs_stats (taken under the registry lock), rendered as Prometheus text
 * (GET /metrics: glidefs_* families with units in the name, an `export`
 * label, HELP and TYPE lines; request latency histograms from latency.h) or
 * as JSON (GET /api/exports/NAME/metrics).
 */
#ifndef GLIDEFSD_METRICS_H
#define GLIDEFSD_METRICS_H

#include <jansson.h>
#include <stddef.h>

#include "glidefs/glidefs.h"

struct gd_registry;

struct gd_export_snap {
    char name[GLIDEFS_NAME_MAX + 1];
    struct glidefs_stats st;
    int conns;
};

/* Snapshot every open export, sorted by name, into a malloc'd array (NULL
 * when there are none). 0 or -ENOMEM. */
int gd_metrics_collect(struct gd_registry *r, struct gd_export_snap **out, size_t *n);

/* Derived figures shared by the JSON and Prometheus views. */
double gd_metrics_hit_ratio(const struct glidefs_stats *st);      /* 0..1; 0 without reads */
double gd_metrics_overhead_ratio(const struct glidefs_stats *st); /* stored / live; 0 if none live */

/* "2026-11-26T01:02:03.123Z" for a wall-clock time in ms since the epoch. */
void gd_metrics_iso_time(int64_t ms, char *buf, size_t len);

/* The Prometheus text exposition of snaps (and the daemon-wide families),
 * malloc'd and NUL-terminated; NULL when out of memory. */
char *gd_metrics_prometheus(const struct gd_export_snap *snaps, size_t n, int store_cond,
                            size_t *len);

/* GLIDEFS_STORE_COND_* as text: "ok", "ignored", "broken", "unknown". */
const char *gd_metrics_cond_name(int cond);
/* GLIDEFS_DURABILITY_* as text: "local", "store". */
const char *gd_metrics_durability_name(int mode);

/* An export's I/O stats as JSON (every glidefs_stats field, derived ratios,
 * latency summaries per operation, NBD reader reliefs). New reference, NULL
 * when out of memory. */
json_t *gd_metrics_json(const struct gd_export_snap *s);

#endif
