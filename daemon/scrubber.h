/*
 * scrubber.h — glidefsd's scrub record and background scrubber. Every scrub
 * of an export on this node (the background one, POST .../scrub) is
 * recorded here: when it ended, how long it took, what it found and read;
 * status, /metrics (glidefs_scrub_*) and the cost estimate read it back.
 * With scrub.interval_h (or scrub.interval_s) > 0 a thread scrubs every
 * export open on this node once per interval, one after another, paced by
 * scrub.max_mb_per_s and scrub.max_gets_per_s (glidefs_scrub_ex). When each
 * export's last full pass ended is kept in <cache.dir>/scrub.state, so a
 * restart does not scrub again what was scrubbed within the interval.
 */
#ifndef GLIDEFSD_SCRUBBER_H
#define GLIDEFSD_SCRUBBER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "glidefs/glidefs.h"

struct gd_registry;
struct gd_scrubber;

/* cfg and reg must outlive it. Loads the state file (a broken one is
 * logged and ignored: everything is scrubbed again) and, with an interval,
 * starts the thread, which stops when stop_fd (may be -1) becomes readable
 * or at gd_scrubber_stop. 0 or negative errno. */
int gd_scrubber_start(const glidefs_config *cfg, struct gd_registry *reg, int stop_fd,
                      struct gd_scrubber **out);
/* Stop the thread (a pass in progress is cancelled at its next GET) and
 * wait for it. Call before the registry shuts down. NULL is fine. */
void gd_scrubber_stop(struct gd_scrubber *s);
void gd_scrubber_free(struct gd_scrubber *s);

/* Record a finished scrub of export name (POST .../scrub calls it too).
 * A pass at least as deep as the background one counts as its pass:
 * it is written to the state file and the next is due an interval later. */
void gd_scrubber_record(struct gd_scrubber *s, const char *name, int deep,
                        const struct glidefs_scrub_result *res, int64_t duration_ms);

/* {"last_time", "last_time_ms", "duration_ms", "deep", "problems", "bytes_read",
 * "passes", "next_due_ms", "est_monthly_gets", "est_monthly_get_bytes",
 * "est_monthly_cost_usd", ...} for export name; new reference, NULL when
 * out of memory. Before a first pass the estimate is the limits' bound. */
json_t *gd_scrubber_json(struct gd_scrubber *s, const char *name);

/* The glidefs_scrub_* Prometheus families for these exports, appended to
 * *text (malloc'd, *len bytes). 0 or -ENOMEM (text untouched). */
int gd_scrubber_prometheus(struct gd_scrubber *s, const char *const *names, size_t n,
                           char **text, size_t *len);

#endif
