/*
 * store_probe.c — the conditional-write probe of store_probe.h. It judges a
 * step by what the store does, not only by what it answers: a conditional
 * PUT that must fail fails only if the object still holds the bytes it held
 * before (read back), and one that must succeed only if the new bytes are
 * there. Each step sends other bytes, so a PUT retried by the backend can
 * never mistake an earlier step's object for its own.
 */
#include "store_probe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "lease.h"
#include "log.h"
#include "objstore_s3.h"

#define PROBE_MAX 4096

const char *gfs_store_cond_name(int state)
{
    switch (state) {
    case GLIDEFS_STORE_COND_OK: return "ok";
    case GLIDEFS_STORE_COND_IGNORED: return "ignored";
    case GLIDEFS_STORE_COND_BROKEN: return "broken";
    default: return "unknown";
    }
}

static int put(struct gfs_objstore *st, const char *key, const char *body, unsigned flags,
               const char *if_match)
{
    char etag[72];
    if (st->ops->put_etag)
        return st->ops->put_etag(st, key, body, strlen(body), flags, if_match, etag);
    return st->ops->put(st, key, body, strlen(body), flags, if_match);
}

/* 1: the object holds exactly body; 0: something else; < 0: cannot tell. */
static int holds(struct gfs_objstore *st, const char *key, const char *body, char *etag)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    struct gfs_obj_info info = {0};
    int r = st->ops->get(st, key, PROBE_MAX, &buf, &len, &info);
    if (r < 0)
        return r == -EFBIG ? 0 : r;
    if (etag)
        snprintf(etag, 72, "%s", info.etag);
    return len == strlen(body) && memcmp(buf, body, len) == 0;
}

static void add(char *detail, size_t dl, const char *what)
{
    if (!detail || !dl)
        return;
    size_t n = strlen(detail);
    snprintf(detail + n, dl - n, "%s%s", n ? "; " : "", what);
}

int gfs_store_probe(struct gfs_objstore *st, struct gfs_log *log, int *state, char *detail,
                    size_t dl)
{
    *state = GLIDEFS_STORE_COND_UNKNOWN;
    if (detail && dl)
        detail[0] = '\0';
    char id[GFS_LEASE_ID_HEX + 1];
    int r = gfs_lease_new_id(id);
    if (r < 0)
        return r;
    char key[64], b[4][128];
    snprintf(key, sizeof key, "probe/%s", id);
    for (int i = 0; i < 4; i++)
        snprintf(b[i], sizeof b[i], "glidefs conditional-write probe %s, step %d\n", id, i + 1);
    int ignored = 0, broken = 0;

    /* 1: create */
    r = put(st, key, b[0], GFS_PUT_IF_NONE_MATCH, NULL);
    if (r == -EEXIST) {
        /* a random key: nobody else writes it. Refused, yet holding our
         * bytes, is our own send that landed twice (a resend the backend
         * could not see); anything else there and the probe cannot tell */
        int h0 = holds(st, key, b[0], NULL);
        r = h0 == 1 ? 0 : h0 < 0 ? h0 : -EEXIST;
    }
    if (r < 0) {
        add(detail, dl, "creating the probe object with If-None-Match failed");
        goto out;
    }
    /* 2: If-None-Match on an existing object must fail and change nothing */
    r = put(st, key, b[1], GFS_PUT_IF_NONE_MATCH, NULL);
    if (r < 0 && r != -EEXIST)
        goto out;
    int h = holds(st, key, b[0], NULL);
    if (h < 0) {
        r = h;
        goto out;
    }
    if (h == 0) {
        ignored = 1;
        add(detail, dl, "a PUT with If-None-Match: * over an existing object overwrote it");
    }
    /* known bytes for the If-Match steps (unconditionally: each step is
     * judged on its own) */
    if ((r = put(st, key, b[0], 0, NULL)) < 0)
        goto out;
    char etag[72] = "";
    h = holds(st, key, b[0], etag);
    if (h < 0) {
        r = h;
        goto out;
    }
    if (!etag[0]) {
        broken = 1;
        add(detail, dl, "the store gives objects no ETag, so If-Match cannot work");
        r = 0;
        goto out;
    }
    /* 3: If-Match with a wrong ETag must fail and change nothing */
    char wrong[72];
    snprintf(wrong, sizeof wrong, "%s", etag);
    size_t wl = strlen(wrong);
    wrong[wl - 1] = wrong[wl - 1] == '0' ? '1' : '0';
    r = put(st, key, b[2], 0, wrong);
    if (r < 0 && r != -ECANCELED)
        goto out;
    h = holds(st, key, b[0], NULL);
    if (h < 0) {
        r = h;
        goto out;
    }
    if (h == 0) {
        ignored = 1;
        add(detail, dl, "a PUT with If-Match and a wrong ETag overwrote the object");
        if ((r = put(st, key, b[0], 0, NULL)) < 0 || (r = holds(st, key, b[0], etag)) < 0)
            goto out;
    }
    /* 4: If-Match with the object's own ETag must succeed */
    r = put(st, key, b[3], 0, etag);
    if (r < 0 && r != -ECANCELED)
        goto out;
    h = holds(st, key, b[3], NULL);
    if (h < 0) {
        r = h;
        goto out;
    }
    if (h == 0) {
        broken = 1;
        add(detail, dl, "a PUT with If-Match and the object's own ETag was refused");
    } else if (gfs_s3_if_match_bare(st)) {
        add(detail, dl, "it compares If-Match with the ETag without its quotes (as Ceph RGW 16 "
            "does): If-Match goes out bare");
    }
    r = 0;
out:
    if (r == 0)
        *state = ignored  ? GLIDEFS_STORE_COND_IGNORED
                 : broken ? GLIDEFS_STORE_COND_BROKEN
                          : GLIDEFS_STORE_COND_OK;
    /* the scratch object goes whatever happened (a missing key is fine) */
    int d = st->ops->del(st, key);
    if (d < 0)
        gfs_warn(log, "store probe: deleting the scratch object %s failed: %s", key,
                 glidefs_strerror(d));
    if (r < 0)
        gfs_warn(log, "store probe: could not finish (%s): whether the store honours "
                 "conditional writes is unknown", glidefs_strerror(r));
    return r;
}
