/*
 * exports.c — the export registry (see exports.h). Each entry moves
 * OPENING -> OPEN -> CLOSING -> gone. Opening happens outside the lock (it
 * may talk to the store) while later arrivals for the same name wait on the
 * condition variable, so every connection to one name shares one volume. A
 * housekeeping thread drains and closes exports that stayed unused for
 * IDLE_LINGER_MS; a failed drain is retried later and the volume stays open,
 * so its syncer keeps trying and nothing dirty is stranded.
 */
#include "exports.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "config.h"
#include "log.h"

#define IDLE_LINGER_MS 5000      /* quick reconnects reuse the open volume */
#define IDLE_DRAIN_TIMEOUT_MS 10000
#define IDLE_RETRY_MS 30000      /* after a failed background drain */

enum ex_state { EX_OPENING, EX_OPEN, EX_FAILED, EX_CLOSING };

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
};

struct gd_registry {
    const glidefs_config *cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* entry state changes */
    pthread_cond_t hk_cond;     /* wakes the housekeeper */
    struct gd_export *head;
    bool stopping;
    bool hk_running;
    pthread_t hk;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    pthread_cond_init(&r->cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->hk_cond, &ca);
    pthread_condattr_destroy(&ca);
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
    pthread_mutex_lock(&r->lock);
    for (;;) {
        if (r->stopping) {
            pthread_mutex_unlock(&r->lock);
            return -ESHUTDOWN;
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
            /* a client must not see the lease half given back */
            pthread_cond_wait(&r->cond, &r->lock);
            continue;
        }
        if (e->state == EX_OPEN) {
            e->refs++;
            if (conn)
                e->conns++;
            int retake = (flags & GD_ACQUIRE_CLIENT) && e->handed_over;
            if (flags & GD_ACQUIRE_CLIENT)
                e->handed_over = false;
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
                        e->idle_since_ms = now_ms();
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
            while (e->state == EX_OPENING)
                pthread_cond_wait(&r->cond, &r->lock);
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
    int64_t t0 = now_ms();
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
    if (conn)
        e->conns++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    gd_info("export %s: opened (%" PRIu64 " bytes%s) in %" PRId64 " ms", name,
            glidefs_volume_size(vol), glidefs_volume_read_only(vol) ? ", read-only" : "",
            now_ms() - t0);
    *out = e;
    return 0;
}

void gd_export_release(struct gd_export *e, int conn)
{
    struct gd_registry *r = e->reg;
    SCOPED_LOCK(&r->lock);
    if (conn)
        e->conns--;
    if (--e->refs == 0) {
        e->idle_since_ms = now_ms();
        pthread_cond_signal(&r->hk_cond);
    }
    pthread_cond_broadcast(&r->cond); /* gd_export_remove() waits for references to go */
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
        e->idle_since_ms = now_ms();
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
            e->idle_since_ms = now_ms();
            pthread_cond_signal(&r->hk_cond);
        }
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    /* CLOSING: new acquirers wait until the entry is gone; the housekeeper
     * and NBD LIST skip it. */
    e->state = EX_CLOSING;
    int64_t deadline = now_ms() + REMOVE_WAIT_MS;
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
        if (now_ms() >= deadline) {
            remove_abort_locked(r, e);
            pthread_mutex_unlock(&r->lock);
            return -EAGAIN;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
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
    rc = glidefs_volume_delete(r->cfg, e->name, purge);
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
    pthread_mutex_unlock(&r->lock);
    int rc = glidefs_drain(e->vol, IDLE_DRAIN_TIMEOUT_MS);
    pthread_mutex_lock(&r->lock);
    e->refs--;
    if (rc < 0) {
        gd_warn("export %s: background drain failed (%s); keeping it open, retrying later",
                e->name, glidefs_strerror(rc));
        e->idle_since_ms = now_ms() + IDLE_RETRY_MS - IDLE_LINGER_MS;
        return;
    }
    if (e->refs > 0 || r->stopping)
        return; /* back in use (or shutdown will handle it) */
    e->state = EX_CLOSING;
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

/* The last user of a read-write export left: if nothing is dirty, give the
 * lease back at once (docs/design.md section 3, "Lease hand-off"), so a waiting node can
 * promote without force and without waiting for the idle linger; the volume
 * stays open read-only and keeps its cache. Lock held; dropped meanwhile. */
static bool hand_over_locked(struct gd_registry *r)
{
    for (struct gd_export *e = r->head; e; e = e->next) {
        if (e->state != EX_OPEN || e->refs > 0 || e->handed_over)
            continue;
        e->handed_over = true;
        if (glidefs_volume_read_only(e->vol))
            continue;
        e->refs++;
        e->handing = true;
        pthread_mutex_unlock(&r->lock);
        int rc = glidefs_release(e->vol, 0);
        pthread_mutex_lock(&r->lock);
        e->handing = false;
        pthread_cond_broadcast(&r->cond);
        e->refs--;
        if (rc == 0)
            gd_info("export %s: last client gone, nothing dirty: write lease released", e->name);
        else if (e->refs == 0)
            e->handed_over = false; /* dirty: the idle drain and close release it later */
        return true;
    }
    return false;
}

static void *housekeeper(void *arg)
{
    struct gd_registry *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        if (hand_over_locked(r))
            continue;
        int64_t now = now_ms(), next = now + 60000;
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

struct drain_job {
    struct gd_export *e;
    int64_t timeout_ms;
    int rc;
    bool done;
    pthread_t th;
    bool started;
    uint64_t dirty_at_start;
};

static void *drain_thread(void *arg)
{
    struct drain_job *j = arg;
    j->rc = glidefs_drain(j->e->vol, j->timeout_ms);
    __atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
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

int gd_registry_shutdown(struct gd_registry *r, int64_t timeout_ms)
{
    size_t n = 0;
    {
        SCOPED_LOCK(&r->lock);
        r->stopping = true;
        pthread_cond_broadcast(&r->hk_cond);
        pthread_cond_broadcast(&r->cond);
    }
    /* The housekeeper finishes at most one bounded background drain. */
    if (r->hk_running) {
        pthread_join(r->hk, NULL);
        r->hk_running = false;
    }
    {
        SCOPED_LOCK(&r->lock);
        for (struct gd_export *e = r->head; e; e = e->next)
            if (e->state == EX_OPEN)
                n++;
    }
    if (n == 0) {
        gd_info("no open exports to drain");
        return 0;
    }
    struct drain_job *jobs = calloc(n, sizeof *jobs);
    if (!jobs)
        return -ENOMEM;
    size_t k = 0;
    {
        SCOPED_LOCK(&r->lock);
        for (struct gd_export *e = r->head; e && k < n; e = e->next)
            if (e->state == EX_OPEN) {
                e->refs++;
                jobs[k].e = e;
                jobs[k].timeout_ms = timeout_ms;
                k++;
            }
    }
    n = k;
    int64_t t0 = now_ms();
    gd_info("draining %zu export(s) (timeout %" PRId64 " s)", n, timeout_ms / 1000);
    for (size_t i = 0; i < n; i++) {
        jobs[i].dirty_at_start = dirty_bytes(jobs[i].e->vol);
        gd_info("export %s: draining %" PRIu64 " dirty bytes", jobs[i].e->name,
                jobs[i].dirty_at_start);
        int e = pthread_create(&jobs[i].th, NULL, drain_thread, &jobs[i]);
        if (e) {
            jobs[i].rc = glidefs_drain(jobs[i].e->vol, timeout_ms); /* do it here, then */
            jobs[i].done = true;
        } else {
            jobs[i].started = true;
        }
    }
    /* Progress every two seconds until every drain has returned. */
    int64_t last_report = now_ms();
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            if (!__atomic_load_n(&jobs[i].done, __ATOMIC_ACQUIRE))
                left++;
        if (left == 0)
            break;
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
        if (now_ms() - last_report >= 2000) {
            last_report = now_ms();
            for (size_t i = 0; i < n; i++)
                if (!__atomic_load_n(&jobs[i].done, __ATOMIC_ACQUIRE))
                    gd_info("export %s: draining, %" PRIu64 " dirty bytes left (%" PRId64 " s)",
                            jobs[i].e->name, dirty_bytes(jobs[i].e->vol),
                            (now_ms() - t0) / 1000);
        }
    }
    int first_err = 0;
    for (size_t i = 0; i < n; i++) {
        if (jobs[i].started)
            pthread_join(jobs[i].th, NULL);
        struct gd_export *e = jobs[i].e;
        if (jobs[i].rc < 0) {
            gd_err("export %s: drain did not finish: %s; %" PRIu64
                   " dirty bytes stay in the journal for the next start",
                   e->name, glidefs_strerror(jobs[i].rc), dirty_bytes(e->vol));
            if (!first_err)
                first_err = jobs[i].rc;
        } else {
            gd_info("export %s: drained (%" PRIu64 " bytes uploaded) in %" PRId64 " ms", e->name,
                    jobs[i].dirty_at_start, now_ms() - t0);
        }
        int rc = glidefs_volume_close(e->vol);
        if (rc < 0) {
            gd_err("export %s: close: %s", e->name, glidefs_strerror(rc));
            if (!first_err)
                first_err = rc;
        }
        SCOPED_LOCK(&r->lock);
        e->vol = NULL;
        e->state = EX_CLOSING;
        unlink_locked(r, e);
        free(e);
    }
    free(jobs);
    return first_err;
}

void gd_registry_free(struct gd_registry *r)
{
    if (!r)
        return;
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
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    pthread_cond_destroy(&r->hk_cond);
    free(r);
}
