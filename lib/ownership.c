/*
 * ownership.c — taking, keeping, handing over and losing the write lease of
 * an open volume (lease.h has the object). A read-write volume heartbeats the
 * lease; if the conditional heartbeat finds that another node took it over,
 * the volume is fenced: writes fail with -EROFS, nothing more is uploaded and
 * its unsynced data stays in the journal (kept aside at the next open). A
 * read-only volume follows the store instead: new fences and new segments.
 *
 * Whose lease it is: the lease names a writer by instance (the cache dir),
 * session (one take) and generation (one write of the session); the writer
 * record on local disk (identity.h) says which of those this cache dir
 * wrote. Taking the lease from another writer on a store that ignores
 * conditional writes is refused (store_probe.h) unless configured.
 */
#include "volume_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "store_probe.h"

#define ACQUIRE_TRIES 8
/* fences in the lease above which a take stores a manifest at once, so
 * the next take can raise the floor over them (GFS_LEASE_MAX_FENCES is far) */
#define FENCES_SOFT 32
#define RACE_PAUSE_MS 10      /* after a lost race on the lease, doubling ... */
#define FOLLOW_PAUSE_MAX_MS 30000 /* a read-only volume whose store fails: at most */

/* Lost a race for the lease (or the store said so under contention): a
 * short pause, growing, with jitter, before looking again. */
static void race_pause(int attempt)
{
    int64_t d = (int64_t)RACE_PAUSE_MS << (attempt < 6 ? attempt : 6);
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)gfs_now_ms();
    d = d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
    struct timespec ts = {.tv_sec = d / 1000, .tv_nsec = (d % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* <dir>/epoch: the epoch our journal's records belong to. */
int gfs_own_state_read(struct glidefs_volume *v, uint64_t *epoch)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/epoch", v->dir);
    FILE *f = fopen(path, "re");
    *epoch = 0;
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    unsigned long long e = 0;
    int n = fscanf(f, "%llu", &e);
    fclose(f);
    if (n != 1)
        return -EIO;
    *epoch = e;
    return 0;
}

int gfs_own_state_write(struct glidefs_volume *v)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/epoch", v->dir);
    snprintf(tmp, sizeof tmp, "%s/epoch.tmp", v->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", v->epoch);
    int r = 0;
    if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0)
        r = -errno ? -errno : -EIO;
    close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r == 0) {
        int dfd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return r;
}

/* ------------------------------------------------------------------------ */
/* whose lease is it                                                          */

/* The slot of our writer record that lease l was written from: our
 * instance, a session the record holds, its epoch, and a generation no
 * higher than the record says we wrote (or were about to). NULL: l was not
 * written by this cache dir as it is now. A copy of this cache dir shares
 * the instance but goes on from the same record on its own: its first
 * heartbeat (or its own take) puts a generation or session into the lease
 * that our record does not hold. */
static const struct gfs_wslot *rec_match(const struct glidefs_volume *v, const struct gfs_lease *l)
{
    if (!l->exists || l->format < 2 || !v->wrec_valid || strcmp(l->instance, v->instance) != 0 ||
        strcmp(v->wrec.instance, v->instance) != 0)
        return NULL;
    const struct gfs_wslot *slots[2] = {&v->wrec.cur, &v->wrec.prev};
    for (int i = 0; i < 2; i++)
        if (slots[i]->session[0] && strcmp(slots[i]->session, l->session) == 0 &&
            slots[i]->epoch == l->epoch && l->gen <= slots[i]->gen)
            return slots[i];
    return NULL;
}

/* Upgrade from a build without instance ids (lease format 1, node id only):
 * such a lease held under our node id (or under the default node id older
 * builds took, /etc/machine-id) is ours to resume if this cache dir holds a
 * journal of exactly its epoch and has never written a lease itself (no
 * writer record): the rule older builds applied, once. The resume rewrites
 * the lease as format 2 with our instance under If-Match, so of two cache
 * dirs that both qualify (two daemons of an older build on one machine)
 * only the first to resume wins; the other then sees another writer. */
static int legacy_match(const struct glidefs_volume *v, const struct gfs_lease *l)
{
    return l->exists && l->format == 1 && !l->released && !v->wrec_valid && v->local_epoch &&
           v->local_epoch == l->epoch &&
           (strcmp(l->node_id, v->node_id) == 0 ||
            (v->node_id_legacy[0] && strcmp(l->node_id, v->node_id_legacy) == 0));
}

int gfs_own_journal_ours(struct glidefs_volume *v, const struct gfs_lease *l, uint64_t local_epoch)
{
    if (!local_epoch || l->released)
        return 0;
    if (legacy_match(v, l))
        return l->epoch == local_epoch;
    const struct gfs_wslot *m = rec_match(v, l);
    return m && (m->epoch == local_epoch || m->from_epoch == local_epoch);
}

/* The lease is one we wrote in the session we hold now, in epoch: our
 * instance and session, and a generation we sent. Each write steps the
 * generation by a random amount, so a twin that holds the same session (a
 * VM snapshot of the running process restored twice) sends other ones and
 * is told apart at its first lease write that fails. Call with v->lock. */
static int lease_is_current(const struct glidefs_volume *v, const struct gfs_lease *l,
                            uint64_t epoch)
{
    if (!l->exists || l->released || l->format < 2 || strcmp(l->instance, v->instance) != 0 ||
        strcmp(l->session, v->own_session) != 0 || l->epoch != epoch || l->gen == 0)
        return 0;
    for (size_t i = 0; i < sizeof v->gens_sent / sizeof v->gens_sent[0]; i++)
        if (v->gens_sent[i] == l->gen)
            return 1;
    return 0;
}

/* Record locally what the next lease write will carry, before it is sent. */
static int rec_intent(struct glidefs_volume *v)
{
    if (v->ro_forced)
        return -EROFS;
    int r = v->wrec_fd < 0 ? gfs_wrec_open(v->dir, 1, &v->wrec_fd) : 0;
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot create %s/writer: %s", v->name, v->dir, glidefs_strerror(r));
        return r;
    }
    memcpy(v->wrec.instance, v->instance, sizeof v->instance);
    r = gfs_wrec_write(v->wrec_fd, &v->wrec);
    if (r == 0)
        v->wrec_valid = 1;
    else
        gfs_err(&v->log, "%s: cannot record the writer state in %s/writer: %s; the lease is "
                "not written without it", v->name, v->dir, glidefs_strerror(r));
    return r;
}

/* ------------------------------------------------------------------------ */
/* stores that ignore conditional writes                                      */

#define PROBE_TTL_MS (10 * 60 * 1000) /* a probe this recent decides a takeover */

/* Before taking the lease from another writer: does the store honour the
 * conditional writes that make the take exclusive? Asks the store again
 * unless a probe is recent. 0: go on; -ENOLCK: refused. */
static int lax_gate(struct glidefs_volume *v, const char *whose)
{
    pthread_mutex_lock(&v->lock);
    int state = v->probe_state;
    int64_t at = v->probe_wall_ms;
    pthread_mutex_unlock(&v->lock);
    if (state == GLIDEFS_STORE_COND_UNKNOWN || gfs_wall_ms() - at > PROBE_TTL_MS) {
        if (!v->probe_store)
            return -EROFS;
        char detail[256];
        int r = gfs_store_probe(v->probe_store, &v->log, &state, detail, sizeof detail);
        if (r < 0)
            return r;
        pthread_mutex_lock(&v->lock);
        v->probe_state = state;
        v->probe_wall_ms = gfs_wall_ms();
        pthread_mutex_unlock(&v->lock);
        if (state != GLIDEFS_STORE_COND_OK)
            gfs_err(&v->log, "%s: the object store does not honour conditional writes (%s)",
                    v->name, detail);
    }
    if (state == GLIDEFS_STORE_COND_OK)
        return 0;
    if (v->unsafe_lax) {
        gfs_warn(&v->log, "%s: taking the write lease from %s on a store that %s conditional "
                 "writes, as storage.unsafe_accept_split_brain_on_lax_store allows: a node "
                 "taking it at the same moment would write too", v->name, whose,
                 state == GLIDEFS_STORE_COND_IGNORED ? "ignores" : "breaks");
        return 0;
    }
    gfs_err(&v->log, "%s: refusing to take the write lease from %s: the object store %s "
            "conditional writes, so two nodes taking it at once could both write (split "
            "brain). Use a store that honours If-None-Match/If-Match, or set "
            "storage.unsafe_accept_split_brain_on_lax_store: true to accept that risk", v->name,
            whose, state == GLIDEFS_STORE_COND_IGNORED ? "ignores" : "breaks");
    return -ENOLCK;
}

/* ------------------------------------------------------------------------ */
/* taking the lease                                                           */

/* Become the writer under lease l (already written). Called with v->lock. */
static void become_owner(struct glidefs_volume *v, const struct gfs_lease *l)
{
    v->lease = *l;
    v->owner = 1;
    v->fenced = 0;
    v->read_only = 0;
    v->epoch = l->epoch;
    v->next_seg_seq = 1; /* every take is a new epoch */
}

enum take_kind {
    TAKE_NEW,          /* no lease yet */
    TAKE_RESUME,       /* ours (a restart on this cache dir) */
    TAKE_OWN_RELEASED, /* this cache dir handed it back */
    TAKE_OTHER,        /* another writer's, released, expired or forced */
};

/* Try to take the lease. *got = 1 when we hold it afterwards. Called with
 * own_lock (or before any thread runs).
 *
 * Every take is a new epoch, a resume too: the epoch we resume from is
 * fenced at its last segment we see, exactly as when taking over from
 * another node. A restart cannot tell itself apart from a copy of its
 * cache dir that was made since the lease's last write (both hold the same
 * record); going on in the same epoch would let the two upload segments
 * under the same keys. In a new epoch the copy left behind is fenced like
 * any deposed writer: its later segments are ignored by every reader, and
 * its next heartbeat finds the new session and stops it. The journal goes
 * on unchanged into the new epoch (journal_ours), and the epoch we came
 * from is recorded (from_epoch) so a crash before <dir>/epoch is rewritten
 * still finds the journal ours.
 *
 * At open this runs before any write can be taken, so when
 * glidefs_volume_open returns read-write the store has just confirmed,
 * through the conditional PUT, that the lease is ours: this epoch, our
 * instance, our new session. */
static int take(struct glidefs_volume *v, int force, int *got, int *busy)
{
    *got = *busy = 0;
    for (int attempt = 0; attempt < ACQUIRE_TRIES; attempt++) {
        struct gfs_lease l;
        int r = gfs_lease_read(v->store, v->name, &l);
        if (r < 0)
            return r;
        struct gfs_lease n = l;
        int64_t now = gfs_wall_ms();
        uint64_t took = 0;
        char who[200];
        gfs_lease_who(&l, who, sizeof who);
        const struct gfs_wslot *m = rec_match(v, &l);
        int legacy = !m && legacy_match(v, &l);
        enum take_kind kind;
        if (!l.exists)
            kind = TAKE_NEW;
        else if (!l.released && (m || legacy))
            kind = TAKE_RESUME;
        else if (l.released && l.format >= 2 && strcmp(l.instance, v->instance) == 0)
            kind = TAKE_OWN_RELEASED;
        else if (l.released || force || gfs_lease_expired(&l, now, v->lease_timeout_ms))
            kind = TAKE_OTHER;
        else {
            v->lease = l;
            *busy = 1;
            return 0;
        }
        if (kind == TAKE_OTHER && (r = lax_gate(v, who)) < 0)
            return r;
        if (kind == TAKE_NEW) {
            /* a volume without a lease (new): epoch 1, or past what the store has */
            memset(&n, 0, sizeof n);
            pthread_mutex_lock(&v->lock);
            n.epoch = v->last_seg_epoch + 1;
            if (v->last_seg_epoch)
                r = gfs_lease_add_fence(&n, v->last_seg_epoch,
                                        gfs_volume_last_seq_of(v, v->last_seg_epoch));
            pthread_mutex_unlock(&v->lock);
            if (r < 0)
                return r;
        } else {
            /* Fence the previous epoch at the last segment we know. The
             * caller refreshed the map, so it holds all that epoch wrote
             * before the hand-over (or, resuming, all we uploaded). */
            pthread_mutex_lock(&v->lock);
            uint64_t last = gfs_volume_last_seq_of(v, l.epoch);
            pthread_mutex_unlock(&v->lock);
            r = gfs_lease_add_fence(&n, l.epoch, last);
            if (r < 0)
                return r;
            n.epoch = l.epoch + 1;
            if (kind == TAKE_OTHER && !l.released) {
                gfs_warn(&v->log, "%s: taking the lease from %s (%s)", v->name, who,
                         force ? "forced" : "its heartbeat expired");
                took = l.epoch;
            }
        }
        /* Every reader starts after the newest manifest: fences of epochs
         * below the one we know of guard nothing any more (lease.h) - but
         * a fenced epoch's held view (snapshot.c) is rebuilt with the
         * fences of the epochs before it, so those stay. */
        CLEANUP_FREE struct gfs_epoch_ranges *held = calloc(1, sizeof *held);
        if (!held)
            return -ENOMEM;
        r = gfs_fence_hold_ranges(v->store, v->name, held);
        if (r < 0)
            return r;
        uint64_t keep[GFS_MAX_RANGES][2];
        for (size_t i = 0; i < held->n; i++) {
            keep[i][0] = held->r[i].lo;
            keep[i][1] = held->r[i].hi;
        }
        pthread_mutex_lock(&v->lock);
        gfs_lease_raise_floor(&n, v->manifest_epoch, keep, held->n);
        pthread_mutex_unlock(&v->lock);
        /* the journal goes on only from a lease of ours, in its epoch */
        uint64_t carried = 0;
        if (kind == TAKE_RESUME && gfs_own_journal_ours(v, &l, v->local_epoch))
            carried = v->local_epoch;
        /* the record first: a lease naming a session of ours must never
         * exist without the record saying so */
        struct gfs_wslot slot = {.epoch = n.epoch, .from_epoch = carried, .gen = 1};
        r = gfs_lease_new_id(slot.session);
        if (r < 0)
            return r;
        if (v->wrec_cur_landed || m == &v->wrec.cur)
            v->wrec.prev = v->wrec.cur; /* else prev is the last one that landed */
        v->wrec.cur = slot;
        v->wrec_cur_landed = 0;
        r = rec_intent(v);
        if (r < 0)
            return r;
        n.format = 2;
        snprintf(n.node_id, sizeof n.node_id, "%s", v->node_id);
        memcpy(n.instance, v->instance, sizeof n.instance);
        memcpy(n.session, slot.session, sizeof n.session);
        n.gen = slot.gen;
        n.heartbeat_ms = now;
        n.released = 0;
        r = gfs_lease_write(v->store, v->name, &n);
        if (r == -ECANCELED || r == -EEXIST) {
            race_pause(attempt); /* it changed under us: look again */
            continue;
        }
        if (r < 0)
            return r;
        v->wrec_cur_landed = 1;
        pthread_mutex_lock(&v->lock);
        become_owner(v, &n);
        memcpy(v->own_session, n.session, sizeof v->own_session);
        memset(v->gens_sent, 0, sizeof v->gens_sent);
        v->gens_sent[0] = n.gen;
        v->gens_next = 1;
        v->took_from_epoch = took;
        v->journal_ours = carried != 0;
        pthread_mutex_unlock(&v->lock);
        if (kind == TAKE_RESUME)
            gfs_info(&v->log, "%s: resumed the write lease of this cache dir in a new epoch %"
                     PRIu64 " (was %" PRIu64 "%s)", v->name, n.epoch, l.epoch,
                     legacy ? ", written by an older build" : "");
        else
            gfs_info(&v->log, "%s: holding the write lease, epoch %" PRIu64, v->name, n.epoch);
        *got = 1;
        if (n.nfences > FENCES_SOFT) {
            /* Takes that stored no manifest (reconnects, crash restarts)
             * add a fence each: a manifest at our epoch lets the next take
             * drop them. Best effort: the table still has room. */
            r = gfs_volume_write_manifest_mark(v);
            if (r < 0)
                gfs_warn(&v->log, "%s: %u fences in the lease; storing a manifest to let the "
                         "next take drop them failed: %s", v->name, n.nfences,
                         glidefs_strerror(r));
        }
        return 0;
    }
    return -EBUSY;
}

int gfs_own_acquire(struct glidefs_volume *v, int want_rw)
{
    int got = 0, busy = 0;
    if (want_rw) {
        int r = take(v, 0, &got, &busy);
        if (r == -ENOLCK) {
            /* refused on a lax store (logged): read-only, as when busy */
            busy = 1;
            r = gfs_lease_read(v->store, v->name, &v->lease);
        }
        if (r < 0)
            return r;
        if (busy) {
            char who[200];
            gfs_lease_who(&v->lease, who, sizeof who);
            gfs_info(&v->log, "%s: %s holds the write lease; attaching read-only", v->name,
                     who);
        }
    } else {
        int r = gfs_lease_read(v->store, v->name, &v->lease);
        if (r < 0)
            return r;
        v->journal_ours = gfs_own_journal_ours(v, &v->lease, v->local_epoch);
    }
    if (!got) {
        v->owner = 0;
        v->read_only = 1;
        v->want_refresh = 1;
        v->epoch = v->lease.exists ? v->lease.epoch : 0;
    }
    return 0;
}

/* Another node holds the lease now: stop writing, wake whoever waits
 * (lock held). */
static void become_fenced(struct glidefs_volume *v)
{
    v->fenced = 1;
    v->owner = 0;
    v->read_only = 1;
    pthread_cond_broadcast(&v->cond);
    pthread_cond_broadcast(&v->syncer_cond);
}

/* Write v->lease with the next generation (and the changes in n). 0, or
 * the lease write's error: -ECANCELED when it changed under us. */
static int lease_bump(struct glidefs_volume *v, struct gfs_lease *n)
{
    uint16_t step = 0;
    if (getrandom(&step, sizeof step, GRND_NONBLOCK) != (ssize_t)sizeof step)
        step = (uint16_t)gfs_now_ms();
    n->gen = v->wrec.cur.gen + 1 + step;
    v->wrec.cur.gen = n->gen;
    int r = rec_intent(v);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    v->gens_sent[v->gens_next++ % (sizeof v->gens_sent / sizeof v->gens_sent[0])] = n->gen;
    pthread_mutex_unlock(&v->lock);
    return gfs_lease_write(v->store, v->name, n);
}

static void heartbeat(struct glidefs_volume *v)
{
    struct gfs_lease n = v->lease;
    n.heartbeat_ms = gfs_wall_ms();
    pthread_mutex_lock(&v->lock);
    int lax = v->probe_state == GLIDEFS_STORE_COND_IGNORED;
    pthread_mutex_unlock(&v->lock);
    int r = 0;
    if (lax) {
        /* The store would accept our If-Match PUT over another writer's
         * lease: look first, so that a takeover is noticed here rather
         * than overwritten (a race of the two remains: README). */
        struct gfs_lease cur;
        r = gfs_lease_read(v->store, v->name, &cur);
        pthread_mutex_lock(&v->lock);
        if (r == 0 && !lease_is_current(v, &cur, v->lease.epoch))
            r = -ECANCELED;
        pthread_mutex_unlock(&v->lock);
    }
    if (r == 0)
        r = lease_bump(v, &n);
    if (r == 0) {
        v->lease = n;
        return;
    }
    if (r != -ECANCELED && r != -EEXIST) {
        gfs_warn(&v->log, "%s: lease heartbeat failed: %s (will retry)", v->name,
                 glidefs_strerror(r));
        return;
    }
    struct gfs_lease cur;
    r = gfs_lease_read(v->store, v->name, &cur);
    if (r < 0)
        return;
    pthread_mutex_lock(&v->lock);
    int ours = lease_is_current(v, &cur, v->lease.epoch);
    pthread_mutex_unlock(&v->lock);
    if (ours) {
        v->lease = cur; /* still ours (our own earlier write landed late) */
        return;
    }
    pthread_mutex_lock(&v->lock);
    become_fenced(v);
    pthread_mutex_unlock(&v->lock);
    char who[200];
    gfs_lease_who(&cur, who, sizeof who);
    gfs_err(&v->log, "%s: fenced: %s took the write lease (epoch %" PRIu64 "%s); writes now "
            "fail and unsynced data stays in the journal", v->name, who, cur.epoch,
            cur.exists && !strcmp(cur.instance, v->instance)
                ? "; it has this cache dir's identity: a copy of this cache dir runs elsewhere"
                : "");
    if (cur.exists)
        v->lease = cur;
}

/* Before deleting anything from the store: are we still the writer? A
 * writer deposed a moment ago learns it only at its next heartbeat, and
 * meanwhile the new writer reads segments we consider dead - dead only
 * because of our late segments, which it ignores. If the lease still names
 * us now, every segment we stored so far is visible to any later taker, so
 * what is dead for us is dead for it: deleting after this check is safe.
 * Not ours: we are fenced (as a heartbeat would find), -EROFS. */
int gfs_own_confirm(struct glidefs_volume *v)
{
    struct gfs_lease cur;
    int r = gfs_lease_read(v->store, v->name, &cur);
    if (r < 0)
        return r;
    /* not under own_lock: a release holds it while it stops the syncer we
     * may run in; what we compare with is kept under v->lock */
    pthread_mutex_lock(&v->lock);
    int ours = lease_is_current(v, &cur, v->epoch);
    if (!ours && v->owner)
        become_fenced(v);
    pthread_mutex_unlock(&v->lock);
    if (ours)
        return 0;
    char who[200];
    gfs_lease_who(&cur, who, sizeof who);
    gfs_err(&v->log, "%s: fenced: %s holds the write lease (epoch %" PRIu64
            "); deleting nothing, writes now fail and unsynced data stays in the journal",
            v->name, who, cur.epoch);
    return -EROFS;
}

static void *own_main(void *arg)
{
    struct glidefs_volume *v = arg;
    int64_t hb_every = v->lease_timeout_ms / 3;
    int64_t refresh_every = v->lease_timeout_ms / 10;
    if (refresh_every < 100)
        refresh_every = 100;
    if (refresh_every > 1000)
        refresh_every = 1000;
    int64_t size_checked_ms = gfs_now_ms();
    int follow_fails = 0; /* in a row: the next look waits longer */
    pthread_mutex_lock(&v->own_lock);
    while (!v->own_stop) {
        pthread_mutex_lock(&v->lock);
        int owner = v->owner, fenced = v->fenced, refresh = v->want_refresh;
        pthread_mutex_unlock(&v->lock);
        if (owner)
            heartbeat(v);
        else if (refresh && !fenced) {
            int r = gfs_volume_refresh(v);
            /* a resize by the writer shows only in volume.json: look now
             * and then (one GET), so a new client here sees the new size */
            int64_t now = gfs_now_ms();
            if (r == 0 && now - size_checked_ms >= 10 * refresh_every) {
                size_checked_ms = now;
                r = gfs_volmeta_follow_size(v);
            }
            if (r < 0 && !follow_fails++)
                gfs_warn(&v->log, "%s: following the store failed: %s (trying again, less "
                         "and less often)", v->name, glidefs_strerror(r));
            else if (r == 0 && follow_fails) {
                gfs_info(&v->log, "%s: following the store again after %d failure(s)", v->name,
                         follow_fails);
                follow_fails = 0;
            }
        }
        int64_t wait = owner ? hb_every : refresh_every;
        for (int i = 0; !owner && i < follow_fails && wait < FOLLOW_PAUSE_MAX_MS; i++)
            wait *= 2;
        if (wait > FOLLOW_PAUSE_MAX_MS && !owner)
            wait = FOLLOW_PAUSE_MAX_MS;
        struct timespec ts;
        gfs_timespec_in(&ts, wait);
        if (!v->own_stop)
            pthread_cond_timedwait(&v->own_cond, &v->own_lock, &ts);
    }
    pthread_mutex_unlock(&v->own_lock);
    return NULL;
}

int gfs_own_start(struct glidefs_volume *v)
{
    if (v->own_running)
        return 0;
    v->own_stop = 0;
    int r = pthread_create(&v->own_thr, NULL, own_main, v);
    if (r != 0)
        return -r;
    v->own_running = 1;
    return 0;
}

void gfs_own_stop(struct glidefs_volume *v)
{
    if (!v->own_running)
        return;
    pthread_mutex_lock(&v->own_lock);
    v->own_stop = 1;
    pthread_cond_broadcast(&v->own_cond);
    pthread_mutex_unlock(&v->own_lock);
    pthread_join(v->own_thr, NULL);
    v->own_running = 0;
}

/* Mark the lease released (we hold own_lock; the syncer is stopped). */
int gfs_own_release(struct glidefs_volume *v)
{
    struct gfs_lease n = v->lease;
    n.released = 1;
    n.heartbeat_ms = gfs_wall_ms();
    int r = lease_bump(v, &n);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    v->lease = n;
    v->owner = 0;
    v->read_only = 1;
    v->want_refresh = 1;
    /* Everything is in the store: an empty journal means a later open of an
     * ended epoch here has nothing to keep aside. */
    if (v->dirty.nblocks == 0)
        gfs_journal_reset(&v->journal);
    pthread_mutex_unlock(&v->lock);
    gfs_info(&v->log, "%s: released the write lease (epoch %" PRIu64 ")", v->name, n.epoch);
    return 0;
}

static int promote_locked(glidefs_volume *v, int force)
{
    SCOPED_LOCK(&v->own_lock);
    pthread_mutex_lock(&v->lock);
    int owner = v->owner, ro_open = v->ro_forced, stale = v->fenced && v->dirty.nblocks > 0;
    pthread_mutex_unlock(&v->lock);
    if (owner)
        return 0;
    if (ro_open)
        return -EROFS;
    if (stale) {
        /* writes of the epoch we lost are still in the dirty index: as the
         * writer of a new epoch we would upload them over the newer
         * writer's data. Reopening keeps them aside (fenced-*) first. */
        gfs_err(&v->log, "%s: not promoting: this node was fenced with unsynced writes of its "
                "lost epoch; close and reopen the volume (they are kept aside), then promote",
                v->name);
        return -ESTALE;
    }
    /* a live holder: say so with one read (orchestrators poll promote) */
    struct gfs_lease cur;
    int r = gfs_lease_read(v->store, v->name, &cur);
    if (r < 0)
        return r;
    if (!force && cur.exists && !cur.released && !rec_match(v, &cur) && !legacy_match(v, &cur) &&
        !gfs_lease_expired(&cur, gfs_wall_ms(), v->lease_timeout_ms))
        return -EBUSY;
    /* everything the previous writer stored before the hand-over */
    r = gfs_volume_refresh(v);
    if (r == 0)
        r = gfs_volmeta_follow_size(v);
    if (r < 0)
        return r;
    int got, busy;
    r = take(v, force, &got, &busy);
    if (r < 0)
        return r;
    if (busy)
        return -EBUSY;
    r = gfs_own_state_write(v);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    v->want_refresh = 0;
    v->st.read_only = 0;
    pthread_mutex_unlock(&v->lock);
    r = gfs_syncer_start(v);
    pthread_cond_broadcast(&v->own_cond); /* heartbeat on the new schedule */
    return r;
}

GLIDEFS_API int glidefs_promote(glidefs_volume *v, int force)
{
    int r = promote_locked(v, force);
    /* after own_lock is let go: the hold is a snapshot, which may drain */
    if (r == 0)
        gfs_fence_hold(v);
    return r;
}

GLIDEFS_API int glidefs_release(glidefs_volume *v, int64_t timeout_ms)
{
    pthread_mutex_lock(&v->lock);
    int owner = v->owner;
    pthread_mutex_unlock(&v->lock);
    if (!owner)
        return 0;
    int r = glidefs_drain(v, timeout_ms);
    if (r < 0)
        return r;
    SCOPED_LOCK(&v->own_lock);
    /* no write may slip in between the drain and the release */
    pthread_mutex_lock(&v->lock);
    v->read_only = 1;
    int dirty = v->dirty.nblocks > 0;
    pthread_mutex_unlock(&v->lock);
    if (dirty) {
        pthread_mutex_lock(&v->lock);
        v->read_only = 0;
        pthread_mutex_unlock(&v->lock);
        return -EAGAIN;
    }
    gfs_syncer_stop(v);
    r = gfs_volume_write_manifest(v);
    if (r == 0)
        r = gfs_own_release(v);
    if (r < 0) {
        pthread_mutex_lock(&v->lock);
        v->read_only = 0;
        pthread_mutex_unlock(&v->lock);
        gfs_syncer_start(v);
        return r;
    }
    pthread_cond_broadcast(&v->own_cond);
    return 0;
}
