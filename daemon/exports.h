/*
 * exports.h — the export registry: export name -> open glidefs_volume, shared
 * by every connection (and, later, the REST API). Volumes are opened (created
 * with servers.nbd.auto_create_size_gb) on first use, reference-counted, and
 * drained and closed in the background once idle, which releases the write
 * lease (docs/design.md, "Lease hand-off" in section 3). All state is
 * behind one mutex.
 */
#ifndef GLIDEFSD_EXPORTS_H
#define GLIDEFSD_EXPORTS_H

#include <stddef.h>
#include <stdint.h>

#include "glidefs/glidefs.h"

struct gd_registry;
struct gd_export;

/* cfg must outlive the registry. 0 or negative errno. */
int gd_registry_create(const glidefs_config *cfg, struct gd_registry **out);

/* Map a client-supplied name to the export name: "" becomes
 * servers.nbd.default_export; names outside the name rule (docs/design.md
 * section 3) are refused.
 * 0 and the name in canon, or -ENOENT (empty, no default) / -EINVAL (bad). */
int gd_registry_resolve(struct gd_registry *r, const char *name, char *canon, size_t canon_len);

/* Take a reference to an export, opening or creating its volume if needed.
 * `name` must already be resolved. conn: count it as a client connection. */
int gd_export_acquire(struct gd_registry *r, const char *name, int conn, struct gd_export **out);
/* Like gd_export_acquire, for the REST API: when the export is not open,
 * open it with these glidefs_volume_open flags and create_size (flags 0: the
 * volume must exist, -ENOENT otherwise; GLIDEFS_OPEN_EXCLUSIVE also fails
 * with -EEXIST when it is open here). GD_ACQUIRE_OPEN_ONLY: never open,
 * -ENOENT unless the export is open now. */
#define GD_ACQUIRE_OPEN_ONLY 0x100u
/* An NBD client is attaching: if the lease was handed back when the last
 * client left, take it again (unless another node has it). */
#define GD_ACQUIRE_CLIENT 0x200u
int gd_export_acquire_ex(struct gd_registry *r, const char *name, int conn, uint64_t create_size,
                         unsigned flags, struct gd_export **out);
/* An export's durability set through the API (REST create/PATCH): applied
 * to its volume now when open, and kept for later opens of the name on this
 * node, until glidefsd restarts (the config's storage.durability,
 * max_unsynced_s and max_unsynced_bytes are the defaults). 0 or -ENOMEM. */
int gd_registry_set_durability(struct gd_registry *r, const char *name,
                               const struct glidefs_durability *d);
/* Every durability set through the API so far (a takeover hands them to
 * the successor), under the registry lock: fn must not call back into r. */
void gd_registry_foreach_durability(struct gd_registry *r,
                                    void (*fn)(void *arg, const char *name,
                                               const struct glidefs_durability *d),
                                    void *arg);

/* Client connections of e now. */
int gd_export_conns(struct gd_export *e);
/* Remove an export from this node, consuming the caller's reference (taken
 * with conn 0): refuse with -EBUSY while clients are connected unless force,
 * which calls kick(kick_arg, e) to disconnect them; wait for other users
 * (-EAGAIN after 10 s); drain within drain_timeout_ms (on failure the export
 * stays, except that force discards data this node may not upload: -EROFS,
 * fenced); close; delete the
 * local cache and journal, and with purge the volume's objects in the store.
 * New acquirers of the name wait meanwhile. -ESHUTDOWN when stopping. */
int gd_export_remove(struct gd_export *e, int force, int purge, int64_t drain_timeout_ms,
                     void (*kick)(void *arg, struct gd_export *e), void *kick_arg);
/* Drop a reference taken by acquire (same conn value). An export with no
 * references closes IDLE_LINGER_MS after the last such release. */
void gd_export_release(struct gd_export *e, int conn);
/* Drop a reference (conn 0) that only looked at the export (status,
 * metrics): the linger goes on counting from the last real user, so a
 * monitor polling an idle export does not keep it open. */
void gd_export_release_peek(struct gd_export *e);

/* A reference taken with conn = 0 becomes (delta 1) or stops being (-1) a
 * client connection, e.g. when a handshake enters transmission. */
void gd_export_count_conn(struct gd_export *e, int delta);

glidefs_volume *gd_export_volume(struct gd_export *e);
const char *gd_export_name(const struct gd_export *e);

/* Call fn for each open export (name, volume, connection count), under the
 * registry lock: fn must not call back into the registry. */
void gd_registry_foreach(struct gd_registry *r,
                         void (*fn)(void *arg, const char *name, glidefs_volume *vol, int conns),
                         void *arg);
/* The scrub record (scrubber.h) the REST API and metrics use; NULL until
 * set. Set once at start-up, before any request. */
struct gd_scrubber;
void gd_registry_set_scrubber(struct gd_registry *r, struct gd_scrubber *s);
struct gd_scrubber *gd_registry_scrubber(struct gd_registry *r);
/* The configured default export, or NULL. */
const char *gd_registry_default_export(struct gd_registry *r);

/* The server stops: from now on nobody waits in gd_export_acquire (for an
 * export opening, closing or handing its lease back): -ESHUTDOWN; the
 * housekeeper stops after what it is doing. */
void gd_registry_stop_clients(struct gd_registry *r);
/* Stop background work, drain every open export (in parallel, progress
 * logged) and close them all, within timeout_ms (at least 2 s; the drains
 * get it less a margin for the closes). 0 if every drain finished, else the
 * first error (-ETIMEDOUT when the time ran out). A drain or close still
 * running at the deadline (a store that does not answer) is logged and left
 * running: gd_registry_abandoned() then counts them, gd_registry_free() frees
 * nothing, and the caller should exit at once. Call with no connections
 * left. */
int gd_registry_shutdown(struct gd_registry *r, int64_t timeout_ms);
int gd_registry_abandoned(struct gd_registry *r);
/* Takeover (takeover.c). Suspend: with every NBD connection parked, wait
 * (up to timeout_ms) until only they hold exports, flush every journal,
 * close every volume; idle exports leave the registry, the rest stay
 * without a volume and nobody may acquire (-EAGAIN) until resume. 0, or a
 * negative errno with err (then nothing was closed and the registry serves
 * on). Resume: open them again (a failure is logged: that export's
 * gd_export_volume is NULL and its connections must be dropped). */
int gd_registry_suspend(struct gd_registry *r, int64_t timeout_ms, char *err, size_t errlen);
void gd_registry_resume(struct gd_registry *r);
/* The suspended exports, for the successor. */
void gd_registry_foreach_suspended(struct gd_registry *r,
                                   void (*fn)(void *arg, const char *name, unsigned open_flags),
                                   void *arg);
void gd_registry_free(struct gd_registry *r);

#endif
