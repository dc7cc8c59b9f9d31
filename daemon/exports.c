/*
 * exports.c — the export registry (see exports.h). Each entry moves
 * OPENING -> OPEN -> CLOSING -> gone. Opening happens outside the lock (it
 * may talk to the store) while later arrivals for the same name wait on the
 * condition variable, so every connection to one name shares one volume. A
 * housekeeping thread drains and closes exports that stayed unused for
 * IDLE_LINGER_MS; a failed drain is retried later and the volume stays open,
 * so its syncer keeps trying and nothing dirty is stranded.
 *
 * Nothing here retries the store in a tight loop: a failed lease hand-over
 * or background drain is tried again after a growing pause with jitter, a
 * bounded number of times (hand-over) or at a bounded rate (drain). A client
 * waits for a hand-over in flight at most HANDING_WAIT_MS; once the server
 * stops (gd_registry_stop_clients) nobody waits any more; and shutdown gives
 * up, reporting what it leaves, at servers.shutdown_timeout_s.
 */
#include "exports.h"
#include "fanout.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cleanup.h"
#include "clock.h"
#include "config.h"
#include "log.h"

#define IDLE_LINGER_MS 5000      /* quick reconnects reuse the open volume */
#define IDLE_DRAIN_TIMEOUT_MS 10000
#define IDLE_RETRY_MS 30000      /* after a failed background drain, doubling ... */
#define IDLE_RETRY_CAP_MS 300000 /* ... up to this */
#define HANDOVER_DRAIN_MS 2000   /* what the last client left is uploaded first */
#define HANDOVER_TRIES 8         /* failed hand-overs before the idle close does it */
#define HANDOVER_BACKOFF_MS 250  /* pause after the first failed one, doubling ... */
#define HANDOVER_BACKOFF_CAP_MS 8000 /* ... up to this */
#define HANDING_WAIT_MS 5000     /* a client waits this long for a hand-over in flight */
#define CLOSE_MARGIN_MIN_MS 1000 /* shutdown: time kept for closing after the drains */
#define CLOSE_MARGIN_MAX_MS 5000

/* EX_SUSPENDED: closed for a takeover (gd_registry_suspend), its
 * connections parked; reopened by gd_registry_resume when it fails. */
enum ex_state { EX_OPENING, EX_OPEN, EX_FAILED, EX_CLOSING, EX_SUSPENDED };

struct gd_export {
    struct gd_registry *reg;
    struct gd_export *next;
    char name[GLIDEFS_NAME_MAX + 1];
    glidefs_volume *vol;
    enum ex_state state;
    int open_err;
    int refs;
    int conns;
    int64_t idle_since_ms;
    bool handed_over;   /* the lease was released when the last user left */
    bool handing;       /* that release is in progress: clients wait for it */
    bool hk_busy;       /* the housekeeper works on it with the lock dropped */
    int handover_fails; /* failed hand-overs since the last client left */
    int64_t handover_at_ms; /* no hand-over attempt before this */
    int retire_fails;   /* failed background drains in a row */
    unsigned open_flags; /* GLIDEFS_OPEN_READONLY as opened: a reopen does the same */
};

/* A durability set through the API for a name (gd_registry_set_durability). */
struct dur_override {
    struct dur_override *next;
    char name[GLIDEFS_NAME_MAX + 1];
    struct glidefs_durability d;
};

struct gd_registry {
    const glidefs_config *cfg;
    struct dur_override *durs; /* under lock */
    pthread_mutex_t lock;
    /* Condvars, both with lock and on CLOCK_MONOTONIC (gfs_cond_init): */
    pthread_cond_t cond;        /* entry state changes */
    pthread_cond_t hk_cond;     /* wakes the housekeeper */
    struct gd_export *head;
    bool stopping;
    bool suspended;             /* a takeover closed the volumes: nobody acquires */
    bool hk_running;
    pthread_t hk;
    int abandoned;              /* exports shutdown left behind, still in use */
    struct gd_scrubber *scrubber; /* set at start-up (gd_registry_set_scrubber) */
};

/* A pause before trying again: base * 2^(n-1), at most cap, with equal
 * jitter (uniform in [d/2, d]) so exports and nodes failing together do not
 * retry in step. */
static int64_t backoff_ms(int64_t base, int64_t cap, int n)
{
    int64_t d = base;
    for (int i = 1; i < n && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)gfs_now_ms();
    return d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
}

static struct gd_export *find_locked(struct gd_registry *r, const char *name)
{
    for (struct gd_export *e = r->head; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void unlink_locked(struct gd_registry *r, struct gd_export *x)
{
    for (struct gd_export **pp = &r->head; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            return;
        }
}

static void *housekeeper(void *arg);

int gd_registry_create(const glidefs_config *cfg, struct gd_registry **out)
{
    struct gd_registry *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->cfg = cfg;
    pthread_mutex_init(&r->lock, NULL);
    gfs_cond_init(&r->cond);
    gfs_cond_init(&r->hk_cond);
    int e = pthread_create(&r->hk, NULL, housekeeper, r);
    if (e) {
        gd_registry_free(r);
        return -e;
    }
    r->hk_running = true;
    *out = r;
    return 0;
}

const char *gd_registry_default_export(struct gd_registry *r)
{
    const char *d = r->cfg->nbd_default_export;
    return d && *d ? d : NULL;
}

int gd_registry_resolve(struct gd_registry *r, const char *name, char *canon, size_t canon_len)
{
    if (!name[0]) {
        name = gd_registry_default_export(r);
        if (!name)
            return -ENOENT;
    }
    if (!glidefs_name_valid(name) || strlen(name) >= canon_len)
        return -EINVAL;
    strcpy(canon, name);
    return 0;
}

static bool volume_fenced(glidefs_volume *vol)
{
    struct glidefs_stats st;
    return glidefs_stats(vol, &st, sizeof st) == 0 && st.fenced;
}

int gd_export_acquire(struct gd_registry *r, const char *name, int conn, struct gd_export **out)
{
    return gd_export_acquire_ex(r, name, conn, r->cfg->nbd_auto_create_size,
                                GLIDEFS_OPEN_CREATE | GD_ACQUIRE_CLIENT, out);
}

int gd_export_acquire_ex(struct gd_registry *r, const char *name, int conn, uint64_t create_size,
                         unsigned flags, struct gd_export **out)
{
    if (!glidefs_name_valid(name))
        return -EINVAL;
    int64_t handing_deadline = 0;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        if (r->stopping) {
            pthread_mutex_unlock(&r->lock);
            return -ESHUTDOWN;
        }
        if (r->suspended) {
            /* a takeover is under way: its successor will serve this */
            pthread_mutex_unlock(&r->lock);
            return -EAGAIN;
        }
        struct gd_export *e = find_locked(r, name);
        if (!e && (flags & GD_ACQUIRE_OPEN_ONLY)) {
            pthread_mutex_unlock(&r->lock);
            return -ENOENT;
        }
        if (!e)
            break;
        if (e->state == EX_OPEN && (flags & GLIDEFS_OPEN_EXCLUSIVE)) {
            pthread_mutex_unlock(&r->lock);
            return -EEXIST;
        }
        if (e->state == EX_OPEN && (flags & GD_ACQUIRE_CLIENT) && e->refs == 0 &&
            volume_fenced(e->vol)) {
            /* Another node took the lease from this idle export: a new client
             * must not see what this node wrote after that. Close it (the
             * journal stays for the next open, which keeps it aside) and
             * open it again below, following the store. */
            e->state = EX_CLOSING;
            pthread_mutex_unlock(&r->lock);
            glidefs_volume_close(e->vol);
            gd_info("export %s: fenced and idle: reopened for a new client", e->name);
            pthread_mutex_lock(&r->lock);
            unlink_locked(r, e);
            free(e);
            pthread_cond_broadcast(&r->cond);
            continue;
        }
        if (e->state == EX_OPEN && (flags & GD_ACQUIRE_CLIENT) && e->handing) {
            /* a client must not see the lease half given back; but a
             * hand-over stuck on a slow store must not hold it for long */
            int64_t now = gfs_now_ms();
            if (!handing_deadline)
                handing_deadline = now + HANDING_WAIT_MS;
            if (now >= handing_deadline) {
                pthread_mutex_unlock(&r->lock);
                gd_warn("export %s: client refused: the write lease hand-over in progress "
                        "took over %d ms (the store is slow); it may reconnect", name,
                        HANDING_WAIT_MS);
                return -EAGAIN;
            }
            struct timespec ts;
            gfs_timespec_in(&ts, handing_deadline - now);
            pthread_cond_timedwait(&r->cond, &r->lock, &ts);
            continue;
        }
        if (e->state == EX_OPEN) {
            e->refs++;
            if (conn)
                e->conns++;
            int retake = (flags & GD_ACQUIRE_CLIENT) && e->handed_over;
            if (flags & GD_ACQUIRE_CLIENT) {
                e->handed_over = false;
                e->handover_fails = 0; /* a new session: hand-overs start afresh */
                e->handover_at_ms = 0;
                e->retire_fails = 0;
            }
            if (retake)
                e->handing = true; /* other clients wait: none may see it half taken */
            pthread_mutex_unlock(&r->lock);
            /* Lease hand-off: we gave the lease back when the last client
             * left; take it again unless another node took it meanwhile
             * (then the export stays read-only). */
            if (retake) {
                int rc = 0;
                if (glidefs_volume_read_only(e->vol)) {
                    rc = glidefs_promote(e->vol, 0);
                    if (rc == 0)
                        gd_info("export %s: client back: took the write lease again", e->name);
                    else if (rc == -EBUSY)
                        gd_info("export %s: client back: read-only (another node holds the "
                                "write lease)", e->name);
                    else if (rc == -ENOLCK)
                        gd_warn("export %s: client back: read-only (another node had the "
                                "write lease, and the store ignores conditional writes: taking "
                                "it back is refused, see /healthz)", e->name);
                    else if (rc == -EROFS)
                        rc = 0; /* opened read-only on purpose: stays so */
                    else
                        gd_warn("export %s: client refused: the write lease given back "
                                "cannot be taken again (%s); it may reconnect when the "
                                "store answers", e->name, glidefs_strerror(rc));
                }
                pthread_mutex_lock(&r->lock);
                e->handing = false;
                int refuse = rc < 0 && rc != -EBUSY && rc != -ENOLCK;
                if (refuse) {
                    /* A silently read-only disk is worse than a refused
                     * connection: without the lease no write may be taken,
                     * and whether another node holds it is unknown. The next
                     * client tries the retake again. */
                    e->handed_over = true;
                    if (conn)
                        e->conns--;
                    if (--e->refs == 0) {
                        e->idle_since_ms = gfs_now_ms();
                        pthread_cond_signal(&r->hk_cond);
                    }
                }
                pthread_cond_broadcast(&r->cond);
                pthread_mutex_unlock(&r->lock);
                if (refuse)
                    return rc;
            }
            *out = e;
            return 0;
        }
        if (e->state == EX_OPENING) {
            /* Hold a reference so the entry (and its open_err) outlives the wait. */
            e->refs++;
            while (e->state == EX_OPENING && !r->stopping)
                pthread_cond_wait(&r->cond, &r->lock);
            if (e->state == EX_OPENING) { /* stopping: the opener finishes alone */
                e->refs--;
                pthread_mutex_unlock(&r->lock);
                return -ESHUTDOWN;
            }
            if (e->state == EX_FAILED) {
                int err = e->open_err;
                if (--e->refs == 0) {
                    unlink_locked(r, e);
                    free(e);
                    pthread_cond_broadcast(&r->cond); /* for those waiting on it to go */
                }
                pthread_mutex_unlock(&r->lock);
                return err;
            }
            e->refs--;
            continue; /* OPEN now: take it the normal way */
        }
        /* CLOSING or a FAILED entry still referenced: wait for it to go. */
        pthread_cond_wait(&r->cond, &r->lock);
    }

    struct gd_export *e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&r->lock);
        return -ENOMEM;
    }
    e->reg = r;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->state = EX_OPENING;
    e->refs = 1;
    e->next = r->head;
    r->head = e;
    pthread_mutex_unlock(&r->lock);

    glidefs_volume *vol = NULL;
    int64_t t0 = gfs_now_ms();
    int rc = glidefs_volume_open(r->cfg, name, create_size,
                                 flags & ~(GD_ACQUIRE_OPEN_ONLY | GD_ACQUIRE_CLIENT), &vol);

    pthread_mutex_lock(&r->lock);
    if (rc < 0) {
        gd_log(rc == -ENOENT || rc == -EEXIST ? GLIDEFS_LOG_INFO : GLIDEFS_LOG_ERROR,
               "export %s: cannot open volume: %s", name, glidefs_strerror(rc));
        e->state = EX_FAILED;
        e->open_err = rc;
        if (--e->refs == 0) {
            unlink_locked(r, e);
            free(e);
        }
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    e->vol = vol;
    e->state = EX_OPEN;
    e->open_flags = flags & GLIDEFS_OPEN_READONLY;
    if (conn)
        e->conns++;
    for (struct dur_override *o = r->durs; o; o = o->next)
        if (strcmp(o->name, name) == 0)
            glidefs_volume_set_durability(vol, &o->d, sizeof o->d);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    gd_info("export %s: opened (%" PRIu64 " bytes%s) in %" PRId64 " ms", name,
            glidefs_volume_size(vol), glidefs_volume_read_only(vol) ? ", read-only" : "",
            gfs_now_ms() - t0);
    *out = e;
    return 0;
}

int gd_registry_set_durability(struct gd_registry *r, const char *name,
                               const struct glidefs_durability *d)
{
    SCOPED_LOCK(&r->lock);
    struct dur_override *o = r->durs;
    while (o && strcmp(o->name, name) != 0)
        o = o->next;
    if (!o) {
        o = calloc(1, sizeof *o);
        if (!o)
            return -ENOMEM;
        snprintf(o->name, sizeof o->name, "%s", name);
        o->next = r->durs;
        r->durs = o;
    }
    o->d = *d;
    struct gd_export *e = find_locked(r, name);
    if (e && e->state == EX_OPEN && e->vol)
        return glidefs_volume_set_durability(e->vol, d, sizeof *d);
    return 0;
}

void gd_registry_foreach_durability(struct gd_registry *r,
                                    void (*fn)(void *arg, const char *name,
                                               const struct glidefs_durability *d),
                                    void *arg)
{
    SCOPED_LOCK(&r->lock);
    for (struct dur_override *o = r->durs; o; o = o->next)
        fn(arg, o->name, &o->d);
}

static void release(struct gd_export *e, int conn, bool used)
{
    struct gd_registry *r = e->reg;
    SCOPED_LOCK(&r->lock);
    if (conn)
        e->conns--;
    if (used)
        e->idle_since_ms = gfs_now_ms(); /* the linger counts from the last real user */
    if (--e->refs == 0 && e->state == EX_FAILED) {
        /* a takeover that failed could not reopen it: its last user goes */
        unlink_locked(r, e);
        free(e);
    } else if (e->refs == 0) {
        pthread_cond_signal(&r->hk_cond);
    }
    pthread_cond_broadcast(&r->cond); /* gd_export_remove() waits for references to go */
}

void gd_export_release(struct gd_export *e, int conn)
{
    release(e, conn, true);
}

void gd_export_release_peek(struct gd_export *e)
{
    release(e, 0, false);
}

void gd_export_count_conn(struct gd_export *e, int delta)
{
    SCOPED_LOCK(&e->reg->lock);
    e->conns += delta;
}

glidefs_volume *gd_export_volume(struct gd_export *e) { return e->vol; }
const char *gd_export_name(const struct gd_export *e) { return e->name; }

void gd_registry_foreach(struct gd_registry *r,
                         void (*fn)(void *arg, const char *name, glidefs_volume *vol, int conns),
                         void *arg)
{
    SCOPED_LOCK(&r->lock);
    for (struct gd_export *e = r->head; e; e = e->next)
        if (e->state == EX_OPEN)
            fn(arg, e->name, e->vol, e->conns);
}

void gd_registry_set_scrubber(struct gd_registry *r, struct gd_scrubber *s)
{
    r->scrubber = s;
}

struct gd_scrubber *gd_registry_scrubber(struct gd_registry *r)
{
    return r->scrubber;
}

int gd_export_conns(struct gd_export *e)
{
    SCOPED_LOCK(&e->reg->lock);
    return e->conns;
}

#define REMOVE_WAIT_MS 10000 /* for kicked clients and other users to let go */

/* Give up a removal: the export is OPEN again and the caller's reference goes. */
static void remove_abort_locked(struct gd_registry *r, struct gd_export *e)
{
    e->state = EX_OPEN;
    if (--e->refs == 0) {
        e->idle_since_ms = gfs_now_ms();
        pthread_cond_signal(&r->hk_cond);
    }
    pthread_cond_broadcast(&r->cond);
}

int gd_export_remove(struct gd_export *e, int force, int purge, int64_t drain_timeout_ms,
                     void (*kick)(void *arg, struct gd_export *e), void *kick_arg)
{
    struct gd_registry *r = e->reg;
    pthread_mutex_lock(&r->lock);
    if (r->stopping || e->state != EX_OPEN || (e->conns > 0 && !force)) {
        int rc = r->stopping ? -ESHUTDOWN : e->state != EX_OPEN ? -EAGAIN : -EBUSY;
        e->refs--;
        if (e->refs == 0) {
            e->idle_since_ms = gfs_now_ms();
            pthread_cond_signal(&r->hk_cond);
        }
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    /* CLOSING: new acquirers wait until the entry is gone; the housekeeper
     * and NBD LIST skip it. */
    e->state = EX_CLOSING;
    int64_t deadline = gfs_now_ms() + REMOVE_WAIT_MS;
    while (e->refs > 1) {
        if (e->conns > 0) {
            if (!force) { /* a client finished its handshake meanwhile */
                remove_abort_locked(r, e);
                pthread_mutex_unlock(&r->lock);
                return -EBUSY;
            }
            if (kick) {
                pthread_mutex_unlock(&r->lock);
                kick(kick_arg, e);
                pthread_mutex_lock(&r->lock);
            }
        }
        if (gfs_now_ms() >= deadline) {
            remove_abort_locked(r, e);
            pthread_mutex_unlock(&r->lock);
            return -EAGAIN;
        }
        struct timespec ts;
        gfs_timespec_in(&ts, 100);
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);

    /* Ours alone now: nobody else can reach the volume. */
    int rc = glidefs_drain(e->vol, drain_timeout_ms);
    /* Only data this node may never upload (it is not the writer: -EROFS)
     * is given up, and only with force; a store that is down never costs
     * data. */
    if (rc < 0 && !(force && rc == -EROFS)) {
        pthread_mutex_lock(&r->lock);
        remove_abort_locked(r, e);
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    if (rc < 0)
        gd_warn("export %s: removing with local data this node may not upload (%s); it is "
                "discarded", e->name, glidefs_strerror(rc));
    int crc = glidefs_volume_close(e->vol);
    if (crc < 0)
        gd_warn("export %s: close: %s", e->name, glidefs_strerror(crc));
    e->vol = NULL;
    rc = glidefs_volume_delete(r->cfg, e->name, purge ? GLIDEFS_DELETE_PURGE : 0);
    if (rc < 0)
        gd_err("export %s: delete%s: %s", e->name, purge ? " (purge)" : "", glidefs_strerror(rc));
    else
        gd_info("export %s: removed from this node%s", e->name,
                purge ? ", its objects deleted from the store" : "");
    pthread_mutex_lock(&r->lock);
    unlink_locked(r, e);
    free(e);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* Drain and close one idle export. Called and returns with the lock held. */
static void retire_locked(struct gd_registry *r, struct gd_export *e)
{
    e->refs++; /* ours, while the lock is dropped */
    e->hk_busy = true;
    pthread_mutex_unlock(&r->lock);
    int rc = glidefs_drain(e->vol, IDLE_DRAIN_TIMEOUT_MS);
    pthread_mutex_lock(&r->lock);
    e->refs--;
    e->hk_busy = false;
    pthread_cond_broadcast(&r->cond); /* gd_export_remove() waits for references to go */
    if (rc < 0) {
        int64_t ms = backoff_ms(IDLE_RETRY_MS, IDLE_RETRY_CAP_MS, ++e->retire_fails);
        gd_warn("export %s: background drain failed (%s); keeping it open, retrying in %" PRId64
                " s", e->name, glidefs_strerror(rc), ms / 1000);
        e->idle_since_ms = gfs_now_ms() + ms - IDLE_LINGER_MS;
        return;
    }
    e->retire_fails = 0;
    if (e->refs > 0 || r->stopping)
        return; /* back in use (or shutdown will handle it) */
    e->state = EX_CLOSING;
    e->hk_busy = true;
    pthread_mutex_unlock(&r->lock);
    rc = glidefs_volume_close(e->vol);
    if (rc < 0)
        gd_warn("export %s: close: %s", e->name, glidefs_strerror(rc));
    else
        gd_info("export %s: idle, drained and closed", e->name);
    pthread_mutex_lock(&r->lock);
    unlink_locked(r, e);
    free(e);
    pthread_cond_broadcast(&r->cond);
}

/* The last user of a read-write export left: give the lease back at once
 * (docs/design.md section 3, "Lease hand-off"), so a waiting node can promote without force
 * and without waiting for the idle linger; the volume stays open read-only
 * and keeps its cache. What the client left dirty is uploaded first (a
 * client arriving meanwhile just takes the export). A failed hand-over is
 * tried again after a growing pause, HANDOVER_TRIES times at most; then the
 * idle close releases the lease (or it expires). Lock held; dropped
 * meanwhile. *next: when a pending retry is due. */
static bool hand_over_locked(struct gd_registry *r, int64_t *next)
{
    int64_t now = gfs_now_ms();
    for (struct gd_export *e = r->head; e; e = e->next) {
        if (e->state != EX_OPEN || e->refs > 0 || e->handed_over ||
            e->handover_fails >= HANDOVER_TRIES)
            continue;
        if (e->handover_at_ms > now) {
            if (e->handover_at_ms < *next)
                *next = e->handover_at_ms;
            continue;
        }
        if (glidefs_volume_read_only(e->vol)) {
            e->handed_over = true;
            continue;
        }
        e->refs++;
        e->hk_busy = true;
        pthread_mutex_unlock(&r->lock);
        int rc = glidefs_drain(e->vol, HANDOVER_DRAIN_MS);
        pthread_mutex_lock(&r->lock);
        bool tried = false;
        if (rc == 0 && e->refs == 1 && !r->stopping) {
            tried = true;
            e->handed_over = true;
            e->handing = true;
            pthread_mutex_unlock(&r->lock);
            rc = glidefs_release(e->vol, 0);
            pthread_mutex_lock(&r->lock);
            e->handing = false;
        }
        e->refs--;
        e->hk_busy = false;
        pthread_cond_broadcast(&r->cond);
        if (tried && rc == 0) {
            e->handover_fails = 0;
            gd_info("export %s: last client gone, nothing dirty: write lease released", e->name);
        } else if (rc < 0) {
            e->handed_over = false;
            if (e->refs == 0) { /* still idle: later, or leave it to the idle close */
                int n = ++e->handover_fails;
                if (n >= HANDOVER_TRIES) {
                    gd_warn("export %s: handing the write lease back failed %d times (%s); "
                            "giving up: it is released when the idle export closes, or "
                            "expires after servers.lease_timeout_ms", e->name, n,
                            glidefs_strerror(rc));
                } else {
                    int64_t ms = backoff_ms(HANDOVER_BACKOFF_MS, HANDOVER_BACKOFF_CAP_MS, n);
                    e->handover_at_ms = gfs_now_ms() + ms;
                    gd_log(n == 1 ? GLIDEFS_LOG_WARN : GLIDEFS_LOG_INFO,
                           "export %s: handing the write lease back failed (%s); try %d of %d "
                           "in %" PRId64 " ms", e->name, glidefs_strerror(rc), n + 1,
                           HANDOVER_TRIES, ms);
                }
            }
        }
        return true;
    }
    return false;
}

static void *housekeeper(void *arg)
{
    struct gd_registry *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        if (r->suspended) {
            /* a takeover closed the volumes: nothing to hand over or retire */
            pthread_cond_wait(&r->hk_cond, &r->lock);
            continue;
        }
        int64_t now = gfs_now_ms(), next = now + 60000;
        if (hand_over_locked(r, &next))
            continue;
        struct gd_export *due = NULL;
        for (struct gd_export *e = r->head; e; e = e->next) {
            if (e->state != EX_OPEN || e->refs > 0)
                continue;
            int64_t at = e->idle_since_ms + IDLE_LINGER_MS;
            if (at <= now) {
                due = e;
                break;
            }
            if (at < next)
                next = at;
        }
        if (due) {
            retire_locked(r, due);
            continue;
        }
        struct timespec ts = { .tv_sec = (time_t)(next / 1000), .tv_nsec = (long)(next % 1000) * 1000000 };
        pthread_cond_timedwait(&r->hk_cond, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

void gd_registry_stop_clients(struct gd_registry *r)
{
    SCOPED_LOCK(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->hk_cond);
    pthread_cond_broadcast(&r->cond);
}

int gd_registry_abandoned(struct gd_registry *r)
{
    SCOPED_LOCK(&r->lock);
    return r->abandoned;
}

struct drain_job {
    struct gd_export *e;
    int64_t timeout_ms;
    int rc, close_rc;
    atomic_bool done;    /* drained (or gave up) and closed (release/acquire) */
    atomic_bool drained; /* the drain has returned; closing now (release/acquire) */
    pthread_t th;
    bool started;
    uint64_t dirty_at_start;
};

/* Drain, then close: both in the job's thread, so that shutdown can stop
 * waiting for a close stuck on the store. */
static void *drain_thread(void *arg)
{
    struct drain_job *j = arg;
    j->rc = glidefs_drain(j->e->vol, j->timeout_ms);
    atomic_store_explicit(&j->drained, true, memory_order_release);
    j->close_rc = glidefs_volume_close(j->e->vol);
    atomic_store_explicit(&j->done, true, memory_order_release);
    return NULL;
}

static uint64_t dirty_bytes(glidefs_volume *vol)
{
    struct glidefs_stats st;
    memset(&st, 0, sizeof st);
    if (glidefs_stats(vol, &st, sizeof st) < 0)
        return 0;
    return st.dirty_bytes;
}

/* Start a drain-and-close job for each open export the housekeeper does not
 * hold, from jobs[n] on. Returns the new number of jobs. */
static size_t start_jobs(struct gd_registry *r, struct drain_job *jobs, size_t n, size_t cap,
                         int64_t drain_ms)
{
    size_t first = n;
    {
        SCOPED_LOCK(&r->lock);
        for (struct gd_export *e = r->head; e && n < cap; e = e->next)
            if (e->state == EX_OPEN && !e->hk_busy) {
                e->refs++;
                e->state = EX_CLOSING;
                jobs[n].e = e;
                jobs[n].timeout_ms = drain_ms;
                n++;
            }
    }
    if (n > first)
        gd_info("draining %zu export(s) (timeout %" PRId64 " s)", n - first, drain_ms / 1000);
    for (size_t i = first; i < n; i++) {
        jobs[i].dirty_at_start = dirty_bytes(jobs[i].e->vol);
        gd_info("export %s: draining %" PRIu64 " dirty bytes", jobs[i].e->name,
                jobs[i].dirty_at_start);
        int e = pthread_create(&jobs[i].th, NULL, drain_thread, &jobs[i]);
        if (e)
            drain_thread(&jobs[i]); /* do it here, then */
        else
            jobs[i].started = true;
    }
    return n;
}

int gd_registry_shutdown(struct gd_registry *r, int64_t timeout_ms)
{
    /* Everything within timeout_ms (at least 2 s, for the closes): the
     * drains get it less a margin for closing (uploading the manifest,
     * releasing the lease). What is not done by then is left as it is. */
    int64_t t0 = gfs_now_ms();
    int64_t total = timeout_ms > 2000 ? timeout_ms : 2000;
    int64_t margin = total / 4;
    if (margin < CLOSE_MARGIN_MIN_MS)
        margin = CLOSE_MARGIN_MIN_MS;
    if (margin > CLOSE_MARGIN_MAX_MS)
        margin = CLOSE_MARGIN_MAX_MS;
    int64_t drain_ms = timeout_ms > margin ? timeout_ms - margin : 0;
    int64_t deadline = t0 + total;
    size_t cap = 0;
    {
        SCOPED_LOCK(&r->lock);
        r->stopping = true;
        pthread_cond_broadcast(&r->hk_cond);
        pthread_cond_broadcast(&r->cond);
        for (struct gd_export *e = r->head; e; e = e->next)
            cap++;
    }
    struct drain_job *jobs = calloc(cap ? cap : 1, sizeof *jobs);
    if (!jobs)
        return -ENOMEM;
    /* Every open export the housekeeper does not hold now; then, once it
     * has finished what it was doing (one bounded drain, close or
     * hand-over), the one it held. */
    size_t n = start_jobs(r, jobs, 0, cap, drain_ms);
    if (r->hk_running) {
        struct timespec ts;
        gfs_timespec_in(&ts, deadline - gfs_now_ms());
        if (pthread_clockjoin_np(r->hk, NULL, CLOCK_MONOTONIC, &ts) == 0) {
            r->hk_running = false;
            n = start_jobs(r, jobs, n, cap, drain_ms);
        } else {
            SCOPED_LOCK(&r->lock);
            r->abandoned++; /* the thread itself: nothing it uses may be freed */
            for (struct gd_export *e = r->head; e; e = e->next)
                if (e->hk_busy) {
                    gd_err("export %s: background drain, close or lease hand-over still "
                           "running at the shutdown deadline: left as it is", e->name);
                    r->abandoned++;
                }
        }
    }
    if (n == 0) {
        free(jobs);
        gd_info("no open exports to drain");
        return r->abandoned ? -ETIMEDOUT : 0;
    }
    /* Progress every two seconds until every job is done, or the deadline. */
    int64_t last_report = gfs_now_ms();
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            if (!atomic_load_explicit(&jobs[i].done, memory_order_acquire))
                left++;
        if (left == 0 || gfs_now_ms() >= deadline)
            break;
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
        if (gfs_now_ms() - last_report >= 2000) {
            last_report = gfs_now_ms();
            for (size_t i = 0; i < n; i++)
                if (!atomic_load_explicit(&jobs[i].drained, memory_order_acquire))
                    gd_info("export %s: draining, %" PRIu64 " dirty bytes left (%" PRId64 " s)",
                            jobs[i].e->name, dirty_bytes(jobs[i].e->vol),
                            (gfs_now_ms() - t0) / 1000);
                else if (!atomic_load_explicit(&jobs[i].done, memory_order_acquire))
                    gd_info("export %s: closing (%" PRId64 " s)", jobs[i].e->name,
                            (gfs_now_ms() - t0) / 1000);
        }
    }
    int first_err = 0;
    bool left_any = false;
    for (size_t i = 0; i < n; i++) {
        struct gd_export *e = jobs[i].e;
        if (!atomic_load_explicit(&jobs[i].done, memory_order_acquire)) {
            /* The thread still uses the volume: it, the entry and the job
             * stay (the process exits without them). */
            bool drained = atomic_load_explicit(&jobs[i].drained, memory_order_acquire);
            gd_err("export %s: %s did not finish within %" PRId64 " s: left as it is; "
                   "unsynced data stays in the journal for the next start, and a write "
                   "lease not handed back expires after servers.lease_timeout_ms",
                   e->name, drained ? "closing (manifest, lease release)" : "the drain",
                   total / 1000);
            if (jobs[i].started)
                pthread_detach(jobs[i].th);
            SCOPED_LOCK(&r->lock);
            r->abandoned++;
            left_any = true;
            if (!first_err)
                first_err = -ETIMEDOUT;
            continue;
        }
        if (jobs[i].started)
            pthread_join(jobs[i].th, NULL);
        if (jobs[i].rc < 0) {
            gd_err("export %s: drain did not finish: %s; unsynced data stays in the journal "
                   "for the next start", e->name, glidefs_strerror(jobs[i].rc));
            if (!first_err)
                first_err = jobs[i].rc;
        } else {
            gd_info("export %s: drained (%" PRIu64 " bytes uploaded) in %" PRId64 " ms", e->name,
                    jobs[i].dirty_at_start, gfs_now_ms() - t0);
        }
        if (jobs[i].close_rc < 0) {
            gd_err("export %s: close: %s", e->name, glidefs_strerror(jobs[i].close_rc));
            if (!first_err)
                first_err = jobs[i].close_rc;
        }
        SCOPED_LOCK(&r->lock);
        e->vol = NULL;
        unlink_locked(r, e);
        free(e);
    }
    if (!left_any)
        free(jobs); /* else a detached thread still writes into its job */
    return first_err ? first_err : r->abandoned ? -ETIMEDOUT : 0;
}

void gd_registry_free(struct gd_registry *r)
{
    if (!r)
        return;
    if (r->abandoned)
        return; /* threads still use it: the process is about to exit */
    if (r->hk_running) {
        {
            SCOPED_LOCK(&r->lock);
            r->stopping = true;
            pthread_cond_broadcast(&r->hk_cond);
        }
        pthread_join(r->hk, NULL);
    }
    /* Anything still open (shutdown not called): close without draining;
     * dirty data stays in the journal. */
    while (r->head) {
        struct gd_export *e = r->head;
        r->head = e->next;
        if (e->vol)
            glidefs_volume_close(e->vol);
        free(e);
    }
    while (r->durs) {
        struct dur_override *o = r->durs;
        r->durs = o->next;
        free(o);
    }
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    pthread_cond_destroy(&r->hk_cond);
    free(r);
}

/* ------------------------------------------------------------------------ */
/* Takeover (takeover.c): close every volume for a successor, or reopen     */
/* ------------------------------------------------------------------------ */

#define SUSPEND_BUSY_POLL_MS 10
#define RESUME_BUSY_WAIT_MS 3000 /* a killed successor's volume locks go with its exit */

/* A takeover's flushes and closes, one volume per job (fanout.h). */
#define FANOUT_THREADS 8
struct fan {
    struct gd_export **e;
    int *rc;
    uint32_t n;
};

static void fan_flush(void *arg, uint32_t i)
{
    struct fan *f = arg;
    f->rc[i] = glidefs_flush(f->e[i]->vol);
}

static void fan_close(void *arg, uint32_t i)
{
    struct gd_export *e = ((struct fan *)arg)->e[i];
    bool idle = e->refs == 0;
    int rc = glidefs_volume_close(e->vol);
    e->vol = NULL;
    gd_log(rc < 0 ? GLIDEFS_LOG_WARN : GLIDEFS_LOG_DEBUG, "export %s: %sclosed for the "
           "takeover%s%s", e->name, idle ? "idle, " : "", rc < 0 ? ": " : "",
           rc < 0 ? glidefs_strerror(rc) : "");
}

int gd_registry_suspend(struct gd_registry *r, int64_t timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = gfs_now_ms() + timeout_ms;
    pthread_mutex_lock(&r->lock);
    r->suspended = true; /* acquirers get -EAGAIN, the housekeeper waits */
    pthread_cond_broadcast(&r->hk_cond);
    /* Only parked connections may hold references: an API request, the
     * scrubber, a hand-over or an open in flight must finish first. */
    for (;;) {
        struct gd_export *busy = NULL;
        for (struct gd_export *e = r->head; e && !busy; e = e->next)
            if (e->state != EX_OPEN || e->hk_busy || e->handing || e->refs != e->conns)
                busy = e;
        if (!busy)
            break;
        if (gfs_now_ms() >= deadline) {
            snprintf(err, errlen, "export %s is busy (%s) after %" PRId64 " ms", busy->name,
                     busy->state != EX_OPEN ? "opening or closing"
                     : busy->hk_busy || busy->handing ? "a lease hand-over or drain"
                                                       : "an API request or the scrubber",
                     timeout_ms);
            r->suspended = false;
            pthread_cond_broadcast(&r->hk_cond);
            pthread_cond_broadcast(&r->cond);
            pthread_mutex_unlock(&r->lock);
            return -EBUSY;
        }
        struct timespec ts;
        gfs_timespec_in(&ts, SUSPEND_BUSY_POLL_MS);
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    /* Durable first (nothing closed yet, so a failure changes nothing);
     * the volumes' flushes, and then their closes, side by side. */
    struct fan fan = { 0 };
    for (struct gd_export *e = r->head; e; e = e->next)
        fan.n++;
    fan.e = calloc(fan.n ? fan.n : 1, sizeof *fan.e);
    fan.rc = calloc(fan.n ? fan.n : 1, sizeof *fan.rc);
    if (!fan.e || !fan.rc) {
        free(fan.e);
        free(fan.rc);
        snprintf(err, errlen, "out of memory");
        r->suspended = false;
        pthread_cond_broadcast(&r->hk_cond);
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return -ENOMEM;
    }
    fan.n = 0;
    for (struct gd_export *e = r->head; e; e = e->next)
        fan.e[fan.n++] = e;
    pthread_mutex_unlock(&r->lock);
    gd_fanout(fan.n, FANOUT_THREADS, fan_flush, &fan);
    for (uint32_t i = 0; i < fan.n; i++) {
        if (fan.rc[i] < 0) {
            int rc = fan.rc[i];
            snprintf(err, errlen, "export %s: journal flush failed: %s", fan.e[i]->name,
                     glidefs_strerror(rc));
            free(fan.e);
            free(fan.rc);
            SCOPED_LOCK(&r->lock);
            r->suspended = false;
            pthread_cond_broadcast(&r->hk_cond);
            pthread_cond_broadcast(&r->cond);
            return rc;
        }
    }
    /* Close. Idle exports leave the registry (their next user opens them
     * again; a journal they keep is uploaded then); the others wait for
     * the successor, or for gd_registry_resume. */
    pthread_mutex_lock(&r->lock);
    struct gd_export *idle = NULL;
    for (struct gd_export **pp = &r->head; *pp;) {
        struct gd_export *e = *pp;
        if (e->refs == 0) {
            *pp = e->next;
            e->next = idle;
            idle = e;
            continue;
        }
        e->state = EX_SUSPENDED;
        pp = &e->next;
    }
    /* every entry, kept or idle, is closed: the same list, in parallel */
    fan.n = 0;
    for (struct gd_export *e = r->head; e; e = e->next)
        fan.e[fan.n++] = e;
    for (struct gd_export *e = idle; e; e = e->next)
        fan.e[fan.n++] = e;
    pthread_mutex_unlock(&r->lock);
    gd_fanout(fan.n, FANOUT_THREADS, fan_close, &fan);
    while (idle) {
        struct gd_export *e = idle;
        idle = e->next;
        free(e);
    }
    free(fan.e);
    free(fan.rc);
    return 0;
}

void gd_registry_resume(struct gd_registry *r)
{
    pthread_mutex_lock(&r->lock);
    struct gd_export *list = r->head;
    pthread_mutex_unlock(&r->lock);
    /* The entries are ours alone until suspended is cleared. */
    for (struct gd_export *e = list; e; e = e->next) {
        if (e->state != EX_SUSPENDED)
            continue;
        glidefs_volume *vol = NULL;
        int64_t until = gfs_now_ms() + RESUME_BUSY_WAIT_MS;
        int rc;
        while ((rc = glidefs_volume_open(r->cfg, e->name, 0, e->open_flags, &vol)) == -EBUSY &&
               gfs_now_ms() < until) {
            struct timespec ts = { 0, 20 * 1000000L };
            nanosleep(&ts, NULL);
        }
        SCOPED_LOCK(&r->lock);
        if (rc < 0) {
            gd_err("export %s: cannot be opened again after the failed takeover: %s; its "
                   "clients are disconnected", e->name, glidefs_strerror(rc));
            e->state = EX_FAILED;
            e->open_err = rc;
        } else {
            e->vol = vol;
            e->state = EX_OPEN;
            for (struct dur_override *o = r->durs; o; o = o->next)
                if (strcmp(o->name, e->name) == 0)
                    glidefs_volume_set_durability(vol, &o->d, sizeof o->d);
            gd_info("export %s: opened again (the takeover failed)", e->name);
        }
    }
    SCOPED_LOCK(&r->lock);
    r->suspended = false;
    pthread_cond_broadcast(&r->hk_cond);
    pthread_cond_broadcast(&r->cond);
}

void gd_registry_foreach_suspended(struct gd_registry *r,
                                   void (*fn)(void *arg, const char *name, unsigned open_flags),
                                   void *arg)
{
    SCOPED_LOCK(&r->lock);
    for (struct gd_export *e = r->head; e; e = e->next)
        if (e->state == EX_SUSPENDED)
            fn(arg, e->name, e->open_flags);
}
