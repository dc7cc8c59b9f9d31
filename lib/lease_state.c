/*
 * lease_state.c — taking, keeping, handing back and losing the write lease
 * of an open volume (lease_state.h; lease.h has the object). A read-write
 * volume heartbeats the lease; if the conditional heartbeat finds that
 * another node took it over, the volume is fenced: writes fail with
 * -EROFS, nothing more is uploaded and its unsynced data stays in the
 * journal (kept aside at the next open).
 *
 * Whose lease it is: the lease names a writer by instance (the cache dir),
 * session (one take) and generation (one write of the session); the writer
 * record on local disk (identity.h) says which of those this cache dir
 * wrote. Taking the lease from another writer on a store that ignores
 * conditional writes is refused (store_probe.h) unless configured.
 */
#include "lease_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "checkpoint.h"
#include "cleanup.h"
#include "store_probe.h"
#include "volume_internal.h"

#define ACQUIRE_TRIES 8
/* fences in the lease above which a take stores a manifest at once, so
 * the next take can raise the floor over them (GFS_LEASE_MAX_FENCES is far) */
#define FENCES_SOFT 32
#define RACE_PAUSE_MS 10      /* after a lost race on the lease, doubling ... */

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
    if (!l->exists || l->format < 2 || !v->own.wrec_valid ||
        strcmp(l->instance, v->own.instance) != 0 ||
        strcmp(v->own.wrec.instance, v->own.instance) != 0)
        return NULL;
    const struct gfs_wslot *slots[2] = {&v->own.wrec.cur, &v->own.wrec.prev};
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
    return l->exists && l->format == 1 && !l->released && !v->own.wrec_valid &&
           v->own.local_epoch &&
           v->own.local_epoch == l->epoch &&
           (strcmp(l->node_id, v->own.node_id) == 0 ||
            (v->own.node_id_legacy[0] && strcmp(l->node_id, v->own.node_id_legacy) == 0));
}

int gfs_own_lease_ours(const struct glidefs_volume *v, const struct gfs_lease *l)
{
    return rec_match(v, l) || legacy_match(v, l);
}

int gfs_own_journal_ours(const struct glidefs_volume *v, const struct gfs_lease *l,
                         uint64_t local_epoch)
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
    if (!l->exists || l->released || l->format < 2 || strcmp(l->instance, v->own.instance) != 0 ||
        strcmp(l->session, v->own.session) != 0 || l->epoch != epoch || l->gen == 0)
        return 0;
    for (size_t i = 0; i < sizeof v->own.gens_sent / sizeof v->own.gens_sent[0]; i++)
        if (v->own.gens_sent[i] == l->gen)
            return 1;
    return 0;
}

/* Record locally what the next lease write will carry, before it is sent. */
static int rec_intent(struct glidefs_volume *v)
{
    if (v->ro_forced)
        return -EROFS;
    int r = v->own.wrec_fd < 0 ? gfs_wrec_open(v->dir, 1, &v->own.wrec_fd) : 0;
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot create %s/writer: %s", v->name, v->dir, glidefs_strerror(r));
        return r;
    }
    memcpy(v->own.wrec.instance, v->own.instance, sizeof v->own.instance);
    r = gfs_wrec_write(v->own.wrec_fd, &v->own.wrec);
    if (r == 0)
        v->own.wrec_valid = 1;
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
    int state;
    int64_t at;
    {
        SCOPED_LOCK(&v->lock);
        state = v->own.probe_state;
        at = v->own.probe_wall_ms;
    }
    if (state == GLIDEFS_STORE_COND_UNKNOWN || gfs_wall_ms() - at > PROBE_TTL_MS) {
        if (!v->own.probe_store)
            return -EROFS;
        char detail[256];
        int r = gfs_store_probe(v->own.probe_store, &v->log, &state, detail, sizeof detail);
        if (r < 0)
            return r;
        {
            SCOPED_LOCK(&v->lock);
            v->own.probe_state = state;
            v->own.probe_wall_ms = gfs_wall_ms();
        }
        if (state != GLIDEFS_STORE_COND_OK)
            gfs_err(&v->log, "%s: the object store does not honour conditional writes (%s)",
                    v->name, detail);
    }
    if (state == GLIDEFS_STORE_COND_OK)
        return 0;
    if (v->own.unsafe_lax) {
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

/* The lease the map stands under, replaced. Read under either lock (the
 * ownership paths hold own_lock; stats, scrub and the load's fence checks
 * take v->lock), so written under both: the caller holds own_lock (or runs
 * before any other thread), and v->lock is taken here. */
static void set_lease(struct glidefs_volume *v, const struct gfs_lease *l)
{
    SCOPED_LOCK(&v->lock);
    v->sv.lease = *l;
}

/* Become the writer under lease l (already written). Called with v->lock. */
static void become_owner(struct glidefs_volume *v, const struct gfs_lease *l)
{
    v->sv.lease = *l;
    v->owner = 1;
    v->fenced = 0;
    v->read_only = 0;
    v->epoch = l->epoch;
    v->sync.next_seg_seq = 1; /* every take is a new epoch */
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
int gfs_own_take(struct glidefs_volume *v, int force, int *got, int *busy)
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
        else if (l.released && l.format >= 2 && strcmp(l.instance, v->own.instance) == 0)
            kind = TAKE_OWN_RELEASED;
        else if (l.released || force || gfs_lease_expired(&l, now, v->own.lease_timeout_ms))
            kind = TAKE_OTHER;
        else {
            set_lease(v, &l);
            *busy = 1;
            return 0;
        }
        if (kind == TAKE_OTHER && (r = lax_gate(v, who)) < 0)
            return r;
        if (kind == TAKE_NEW) {
            /* a volume without a lease (new): epoch 1, or past what the store has */
            memset(&n, 0, sizeof n);
            {
                SCOPED_LOCK(&v->lock);
                n.epoch = v->sv.last_seg_epoch + 1;
                if (v->sv.last_seg_epoch)
                    r = gfs_lease_add_fence(&n, v->sv.last_seg_epoch,
                                            gfs_view_last_seq_of(&v->sv, v->sv.last_seg_epoch));
            }
            if (r < 0)
                return r;
        } else {
            /* Fence the previous epoch at the last segment we know. The
             * caller refreshed the map, so it holds all that epoch wrote
             * before the hand-over (or, resuming, all we uploaded). */
            uint64_t last;
            {
                SCOPED_LOCK(&v->lock);
                last = gfs_view_last_seq_of(&v->sv, l.epoch);
            }
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
        {
            SCOPED_LOCK(&v->lock);
            gfs_lease_raise_floor(&n, v->sv.manifest_epoch, keep, held->n);
        }
        /* the journal goes on only from a lease of ours, in its epoch */
        uint64_t carried = 0;
        if (kind == TAKE_RESUME && gfs_own_journal_ours(v, &l, v->own.local_epoch))
            carried = v->own.local_epoch;
        /* the record first: a lease naming a session of ours must never
         * exist without the record saying so */
        struct gfs_wslot slot = {.epoch = n.epoch, .from_epoch = carried, .gen = 1};
        r = gfs_lease_new_id(slot.session);
        if (r < 0)
            return r;
        if (v->own.wrec_cur_landed || m == &v->own.wrec.cur)
            v->own.wrec.prev = v->own.wrec.cur; /* else prev is the last one that landed */
        v->own.wrec.cur = slot;
        v->own.wrec_cur_landed = 0;
        r = rec_intent(v);
        if (r < 0)
            return r;
        n.format = 2;
        snprintf(n.node_id, sizeof n.node_id, "%s", v->own.node_id);
        memcpy(n.instance, v->own.instance, sizeof n.instance);
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
        v->own.wrec_cur_landed = 1;
        {
            SCOPED_LOCK(&v->lock);
            become_owner(v, &n);
            memcpy(v->own.session, n.session, sizeof v->own.session);
            memset(v->own.gens_sent, 0, sizeof v->own.gens_sent);
            v->own.gens_sent[0] = n.gen;
            v->own.gens_next = 1;
            v->own.took_from_epoch = took;
            v->own.journal_ours = carried != 0;
        }
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
        int r = gfs_own_take(v, 0, &got, &busy);
        if (r == -ENOLCK) {
            /* refused on a lax store (logged): read-only, as when busy */
            busy = 1;
            r = gfs_lease_read(v->store, v->name, &v->sv.lease);
        }
        if (r < 0)
            return r;
        if (busy) {
            char who[200];
            gfs_lease_who(&v->sv.lease, who, sizeof who);
            gfs_info(&v->log, "%s: %s holds the write lease; attaching read-only", v->name,
                     who);
        }
    } else {
        int r = gfs_lease_read(v->store, v->name, &v->sv.lease);
        if (r < 0)
            return r;
        v->own.journal_ours = gfs_own_journal_ours(v, &v->sv.lease, v->own.local_epoch);
    }
    if (!got) {
        v->owner = 0;
        v->read_only = 1;
        v->own.want_refresh = 1;
        v->epoch = v->sv.lease.exists ? v->sv.lease.epoch : 0;
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
    pthread_cond_broadcast(&v->sync.cond);
}

/* Write v->sv.lease with the next generation (and the changes in n). 0, or
 * the lease write's error: -ECANCELED when it changed under us. */
static int lease_bump(struct glidefs_volume *v, struct gfs_lease *n)
{
    uint16_t step = 0;
    if (getrandom(&step, sizeof step, GRND_NONBLOCK) != (ssize_t)sizeof step)
        step = (uint16_t)gfs_now_ms();
    n->gen = v->own.wrec.cur.gen + 1 + step;
    v->own.wrec.cur.gen = n->gen;
    int r = rec_intent(v);
    if (r < 0)
        return r;
    {
        SCOPED_LOCK(&v->lock);
        size_t slots = sizeof v->own.gens_sent / sizeof v->own.gens_sent[0];
        v->own.gens_sent[v->own.gens_next++ % slots] = n->gen;
    }
    return gfs_lease_write(v->store, v->name, n);
}

void gfs_own_heartbeat(struct glidefs_volume *v)
{
    struct gfs_lease n = v->sv.lease;
    n.heartbeat_ms = gfs_wall_ms();
    int lax;
    {
        SCOPED_LOCK(&v->lock);
        lax = v->own.probe_state == GLIDEFS_STORE_COND_IGNORED;
    }
    int r = 0;
    if (lax) {
        /* The store would accept our If-Match PUT over another writer's
         * lease: look first, so that a takeover is noticed here rather
         * than overwritten (a race of the two remains: README). */
        struct gfs_lease cur;
        r = gfs_lease_read(v->store, v->name, &cur);
        {
            SCOPED_LOCK(&v->lock);
            if (r == 0 && !lease_is_current(v, &cur, v->sv.lease.epoch))
                r = -ECANCELED;
        }
    }
    if (r == 0)
        r = lease_bump(v, &n);
    if (r == 0) {
        set_lease(v, &n);
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
    int ours;
    {
        SCOPED_LOCK(&v->lock);
        ours = lease_is_current(v, &cur, v->sv.lease.epoch);
    }
    if (ours) {
        set_lease(v, &cur); /* still ours (our own earlier write landed late) */
        return;
    }
    {
        SCOPED_LOCK(&v->lock);
        become_fenced(v);
    }
    char who[200];
    gfs_lease_who(&cur, who, sizeof who);
    gfs_err(&v->log, "%s: fenced: %s took the write lease (epoch %" PRIu64 "%s); writes now "
            "fail and unsynced data stays in the journal", v->name, who, cur.epoch,
            cur.exists && !strcmp(cur.instance, v->own.instance)
                ? "; it has this cache dir's identity: a copy of this cache dir runs elsewhere"
                : "");
    if (cur.exists)
        set_lease(v, &cur);
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
    int ours;
    {
        SCOPED_LOCK(&v->lock);
        ours = lease_is_current(v, &cur, v->epoch);
        if (!ours && v->owner)
            become_fenced(v);
    }
    if (ours)
        return 0;
    char who[200];
    gfs_lease_who(&cur, who, sizeof who);
    gfs_err(&v->log, "%s: fenced: %s holds the write lease (epoch %" PRIu64
            "); deleting nothing, writes now fail and unsynced data stays in the journal",
            v->name, who, cur.epoch);
    return -EROFS;
}

/* Mark the lease released (we hold own_lock; the syncer is stopped). */
int gfs_own_release(struct glidefs_volume *v)
{
    struct gfs_lease n = v->sv.lease;
    n.released = 1;
    n.heartbeat_ms = gfs_wall_ms();
    int r = lease_bump(v, &n);
    if (r < 0)
        return r;
    {
        SCOPED_LOCK(&v->lock);
        v->sv.lease = n;
        v->owner = 0;
        v->read_only = 1;
        v->own.want_refresh = 1;
        /* Everything is in the store: an empty journal means a later open of an
         * ended epoch here has nothing to keep aside. */
        if (v->dirty.nblocks == 0)
            gfs_journal_reset(&v->journal);
    }
    gfs_info(&v->log, "%s: released the write lease (epoch %" PRIu64 ")", v->name, n.epoch);
    return 0;
}
