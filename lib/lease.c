/*
 * lease.c — the lease object: JSON encode/decode with full validation (it is
 * read back from the store: trust nothing) and conditional read/write.
 * Reads formats 1 and 2; writes format 2 (lease.h).
 */
#include "lease.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cleanup.h"
#include "log.h"

#define LEASE_MAX (256u << 10)

static void lease_key(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "nbd/%s/lease", name);
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || strlen(s) > 20)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Epochs share 64 bits with a clone's origin depth (volume_internal.h,
 * GFS_ORIGIN_SHIFT): an epoch must fit below it. */
#define EPOCH_MAX ((UINT64_C(1) << 56) - 1)

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

int gfs_lease_id_valid(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == GFS_LEASE_ID_HEX;
}

int gfs_lease_new_id(char out[GFS_LEASE_ID_HEX + 1])
{
    uint8_t raw[GFS_LEASE_ID_HEX / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* An id field of a format 2 lease: a string of GFS_LEASE_ID_HEX hex digits. */
static int get_id(json_t *root, const char *key, char out[GFS_LEASE_ID_HEX + 1])
{
    json_t *j = json_object_get(root, key);
    if (!json_is_string(j) || json_string_length(j) != GFS_LEASE_ID_HEX ||
        !gfs_lease_id_valid(json_string_value(j)))
        return -1;
    memcpy(out, json_string_value(j), GFS_LEASE_ID_HEX + 1);
    return 0;
}

int gfs_lease_decode(const char *buf, size_t len, struct gfs_lease *l)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return -EIO;
    int r = -EIO;
    json_t *fmt = json_object_get(root, "format");
    json_t *node = json_object_get(root, "node_id");
    json_t *epoch = json_object_get(root, "epoch");
    json_t *hb = json_object_get(root, "heartbeat_ms");
    json_t *state = json_object_get(root, "state");
    json_t *fences = json_object_get(root, "fences");
    if (!json_is_integer(fmt) || (json_integer_value(fmt) != 1 && json_integer_value(fmt) != 2) ||
        !json_is_string(node) ||
        json_string_length(node) == 0 || json_string_length(node) > 128 ||
        !printable(json_string_value(node)) || !json_is_integer(epoch) ||
        json_integer_value(epoch) < 1 || (uint64_t)json_integer_value(epoch) > EPOCH_MAX ||
        !json_is_integer(hb) || json_integer_value(hb) < 0 || !json_is_string(state) ||
        (fences && !json_is_object(fences)))
        goto out;
    l->format = (int)json_integer_value(fmt);
    if (l->format == 2) {
        /* who wrote it, exactly: instance, session, generation */
        json_t *gen = json_object_get(root, "gen");
        if (get_id(root, "instance", l->instance) < 0 || get_id(root, "session", l->session) < 0 ||
            !json_is_integer(gen) || json_integer_value(gen) < 0)
            goto out;
        l->gen = (uint64_t)json_integer_value(gen);
        json_t *floor = json_object_get(root, "floor");
        if (floor && (!json_is_integer(floor) || json_integer_value(floor) < 0 ||
                      (uint64_t)json_integer_value(floor) > (uint64_t)json_integer_value(epoch)))
            goto out;
        l->floor = floor ? (uint64_t)json_integer_value(floor) : 0;
    }
    const char *st = json_string_value(state);
    if (strcmp(st, "held") && strcmp(st, "released"))
        goto out;
    snprintf(l->node_id, sizeof l->node_id, "%s", json_string_value(node));
    l->epoch = (uint64_t)json_integer_value(epoch);
    l->heartbeat_ms = json_integer_value(hb);
    l->released = strcmp(st, "released") == 0;
    l->nfences = 0;
    if (fences) {
        const char *k;
        json_t *val;
        if (json_object_size(fences) > GFS_LEASE_MAX_FENCES)
            goto out;
        json_object_foreach(fences, k, val)
        {
            uint64_t e;
            /* canonical decimal: "01" and "1" would be two fences of one epoch */
            if (parse_u64(k, &e) < 0 || k[0] == '0' || e >= l->epoch || !json_is_integer(val) ||
                json_integer_value(val) < 0)
                goto out;
            l->fences[l->nfences].epoch = e;
            l->fences[l->nfences].last_seq = (uint64_t)json_integer_value(val);
            l->nfences++;
        }
    }
    r = 0;
out:
    json_decref(root);
    return r;
}

int gfs_lease_read(struct gfs_objstore *st, const char *name, struct gfs_lease *l)
{
    char key[512];
    lease_key(key, sizeof key, name);
    memset(l, 0, sizeof *l);
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    struct gfs_obj_info info = {0};
    int r = st->ops->get(st, key, LEASE_MAX, &buf, &len, &info);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r == -EFBIG ? -EIO : r;
    r = gfs_lease_decode(buf, len, l);
    if (r < 0) {
        gfs_err(st->log, "%s: the lease object %s is malformed (never trusted)", name, key);
        return r;
    }
    snprintf(l->etag, sizeof l->etag, "%s", info.etag);
    l->exists = 1;
    return 0;
}

int gfs_lease_write(struct gfs_objstore *st, const char *name, struct gfs_lease *l)
{
    json_t *fences = json_object();
    if (!fences)
        return -ENOMEM;
    for (uint32_t i = 0; i < l->nfences; i++) {
        char k[32];
        snprintf(k, sizeof k, "%" PRIu64, l->fences[i].epoch);
        json_object_set_new(fences, k, json_integer((json_int_t)l->fences[i].last_seq));
    }
    if (!gfs_lease_id_valid(l->instance) || !gfs_lease_id_valid(l->session) ||
        l->gen > (uint64_t)INT64_MAX) {
        json_decref(fences);
        return -EINVAL; /* only a writer with an identity writes a lease */
    }
    json_t *root = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:o}", "format", 2,
                             "node_id", l->node_id, "instance", l->instance, "session",
                             l->session, "gen", (json_int_t)l->gen, "epoch",
                             (json_int_t)l->epoch, "heartbeat_ms", (json_int_t)l->heartbeat_ms,
                             "state", l->released ? "released" : "held", "floor",
                             (json_int_t)l->floor, "fences", fences);
    if (!root)
        return -ENOMEM;
    CLEANUP_FREE char *txt = json_dumps(root, JSON_SORT_KEYS);
    json_decref(root);
    if (!txt)
        return -ENOMEM;
    char key[512];
    lease_key(key, sizeof key, name);
    char etag[72] = "";
    int r;
    if (st->ops->put_etag) {
        r = l->exists ? st->ops->put_etag(st, key, txt, strlen(txt), 0, l->etag, etag)
                      : st->ops->put_etag(st, key, txt, strlen(txt), GFS_PUT_IF_NONE_MATCH, NULL,
                                          etag);
        if (r == 0 && etag[0]) {
            snprintf(l->etag, sizeof l->etag, "%s", etag);
            l->exists = 1;
            return 0;
        }
    } else {
        r = l->exists ? st->ops->put(st, key, txt, strlen(txt), 0, l->etag)
                      : st->ops->put(st, key, txt, strlen(txt), GFS_PUT_IF_NONE_MATCH, NULL);
    }
    if (r < 0)
        return r;
    /* The ETag for the next conditional write: read the object back and
     * take its ETag only if it is still exactly what we wrote (our heartbeat
     * time makes it unique), so a writer slipping in between is never
     * mistaken for us. */
    CLEANUP_FREE void *back = NULL;
    size_t blen = 0;
    struct gfs_obj_info info = {0};
    r = st->ops->get(st, key, LEASE_MAX, &back, &blen, &info);
    if (r < 0)
        return r == -ENOENT ? -ECANCELED : r;
    if (blen != strlen(txt) || memcmp(back, txt, blen) != 0)
        return -ECANCELED;
    snprintf(l->etag, sizeof l->etag, "%s", info.etag);
    l->exists = 1;
    return 0;
}

int gfs_lease_fenced(const struct gfs_lease *l, uint64_t epoch, uint64_t seq)
{
    if (l->ceiling && epoch > l->ceiling)
        return 1;
    for (uint32_t i = 0; i < l->nfences; i++)
        if (l->fences[i].epoch == epoch)
            return seq > l->fences[i].last_seq;
    return 0;
}

void gfs_lease_raise_floor(struct gfs_lease *l, uint64_t floor, const uint64_t (*keep)[2],
                           size_t nkeep)
{
    if (floor > l->epoch)
        floor = l->epoch;
    if (floor > l->floor)
        l->floor = floor;
    uint32_t k = 0;
    for (uint32_t i = 0; i < l->nfences; i++) {
        int kept = l->fences[i].epoch >= l->floor;
        for (size_t j = 0; j < nkeep && !kept; j++)
            kept = l->fences[i].epoch >= keep[j][0] && l->fences[i].epoch <= keep[j][1];
        if (kept)
            l->fences[k++] = l->fences[i];
    }
    l->nfences = k;
}

int gfs_lease_add_fence(struct gfs_lease *l, uint64_t epoch, uint64_t last_seq)
{
    for (uint32_t i = 0; i < l->nfences; i++) {
        if (l->fences[i].epoch == epoch) {
            l->fences[i].last_seq = last_seq;
            return 0;
        }
    }
    if (l->nfences >= GFS_LEASE_MAX_FENCES)
        return -ENOSPC;
    l->fences[l->nfences].epoch = epoch;
    l->fences[l->nfences].last_seq = last_seq;
    l->nfences++;
    return 0;
}

int gfs_lease_expired(const struct gfs_lease *l, int64_t now_wall_ms, int64_t timeout_ms)
{
    return now_wall_ms - l->heartbeat_ms > timeout_ms;
}

void gfs_lease_who(const struct gfs_lease *l, char *buf, size_t len)
{
    if (!l->exists)
        snprintf(buf, len, "nobody");
    else if (l->instance[0])
        snprintf(buf, len, "node %s (instance %.8s)", l->node_id, l->instance);
    else
        snprintf(buf, len, "node %s (an older build)", l->node_id);
}
