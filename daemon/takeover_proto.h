/*
 * takeover_proto.h — the bytes of `glidefsd --takeover` (issue 27): what an
 * old glidefsd and its successor say to each other on the control socket,
 * encoded and decoded here without any I/O (takeover.c does the socket and
 * the descriptors; fuzz/fuzz_takeover.c feeds the decoder garbage).
 *
 * The conversation, all on one unix stream socket:
 *   new -> old  HELLO  (GD_TKO_HELLO_SIZE bytes)
 *   old -> new  STATE  header (GD_TKO_HDR_SIZE) + body: listeners, exports,
 *               connections with their negotiated state and the bytes read
 *               from the client but not parsed yet; then, only when there
 *               are any, the durability modes set through the REST API
 *               ("DUR1", u32 count, entries: a stage-1 sender has none)
 *   old -> new  the descriptors in batches (u32 count + SCM_RIGHTS), in the
 *               order: cache-dir lock, listeners, connections
 *   new -> old  ACK    (GD_TKO_ACK_SIZE bytes, status 0: adopted)
 *   old -> new  COMMIT (GD_TKO_ACK_SIZE bytes): the old process's decision,
 *               the one point of no return. It has stopped for good; only
 *               now may the new one serve. An old process that gave up
 *               first (no ACK in time) closes instead, and the new one, seeing
 *               no COMMIT, exits without having served a byte.
 * Integers are big-endian. The successor trusts nothing it reads: every
 * count, length, name and cross-reference is checked (gd_tko_decode).
 */
#ifndef GLIDEFSD_TAKEOVER_PROTO_H
#define GLIDEFSD_TAKEOVER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "glidefs/glidefs.h"

#define GD_TKO_VERSION 1u
#define GD_TKO_HELLO_SIZE 16       /* "GFSTKHI1", version, pid */
#define GD_TKO_ACK_SIZE 16         /* "GFSTKOK1", version, status */
#define GD_TKO_HDR_SIZE 40         /* "GFSTKST1", version, body_len, nfds, nlisten, nconns,
                                      nexports (u32 each), next_id (u64) */
#define GD_TKO_MAX_BODY (128u << 20)  /* 1024 connections with full read-ahead fit */
#define GD_TKO_MAX_LISTEN 8
#define GD_TKO_MAX_CONNS 65536u
#define GD_TKO_MAX_EXPORTS 65536u
#define GD_TKO_MAX_PENDING (64u * 1024) /* = the read-ahead buffer */
#define GD_TKO_MAX_DURS 65536u
#define GD_TKO_MAX_PATH 107        /* sun_path less its NUL */
#define GD_TKO_FD_BATCH 200        /* descriptors per message (the kernel allows 253) */

enum gd_tko_listen_kind { GD_TKO_LISTEN_UNIX = 0, GD_TKO_LISTEN_TCP = 1, GD_TKO_LISTEN_CTL = 2 };

#define GD_TKO_CONN_STRUCTURED 0x1u
#define GD_TKO_CONN_META_ALLOC 0x2u
#define GD_TKO_CONN_FLAGS (GD_TKO_CONN_STRUCTURED | GD_TKO_CONN_META_ALLOC)

struct gd_tko_listener {
    uint8_t kind;                     /* gd_tko_listen_kind */
    char path[GD_TKO_MAX_PATH + 1];   /* unix: its path; control: "@abstract name" */
};

struct gd_tko_export {
    char name[GLIDEFS_NAME_MAX + 1];
    uint32_t open_flags;              /* GLIDEFS_OPEN_READONLY or 0 */
};

struct gd_tko_conn {
    uint64_t id;
    uint64_t size;                    /* what the client was told */
    uint16_t eflags;                  /* transmission flags the client was told */
    uint8_t flags;                    /* GD_TKO_CONN_* */
    uint32_t export_idx;              /* into gd_tko_state.exports */
    char peer[96];
    uint32_t pending_len;
    const uint8_t *pending;           /* into the decoded buffer (encode: the caller's) */
};

/* An export's durability set through the REST API (create or PATCH:
 * exports.h gd_registry_set_durability), kept by the successor. */
struct gd_tko_durability {
    char name[GLIDEFS_NAME_MAX + 1];
    struct glidefs_durability d;      /* mode GLIDEFS_DURABILITY_LOCAL or _STORE */
};

struct gd_tko_state {
    uint64_t next_id;                 /* above every connection id */
    uint32_t nlisten, nexports, nconns, ndurs;
    struct gd_tko_listener listen[GD_TKO_MAX_LISTEN];
    struct gd_tko_export *exports;
    struct gd_tko_conn *conns;
    struct gd_tko_durability *durs;   /* ndurs of them, names unique */
};

void gd_tko_encode_hello(uint8_t out[GD_TKO_HELLO_SIZE], uint32_t pid);
/* 0, or -EPROTO (not a HELLO) / -EPROTONOSUPPORT (another version). */
int gd_tko_decode_hello(const uint8_t in[GD_TKO_HELLO_SIZE], uint32_t *pid);
void gd_tko_encode_ack(uint8_t out[GD_TKO_ACK_SIZE], uint32_t status);
int gd_tko_decode_ack(const uint8_t in[GD_TKO_ACK_SIZE], uint32_t *status);
void gd_tko_encode_commit(uint8_t out[GD_TKO_ACK_SIZE]);
int gd_tko_decode_commit(const uint8_t in[GD_TKO_ACK_SIZE]);

/* The descriptors STATE announces: the lock, the listeners, the connections. */
static inline uint32_t gd_tko_nfds(const struct gd_tko_state *st)
{
    return 1 + st->nlisten + st->nconns;
}

/* The whole STATE message (header and body) in a malloc'd buffer. 0 or
 * -EINVAL (a count or length over its limit) / -ENOMEM. */
int gd_tko_encode_state(const struct gd_tko_state *st, uint8_t **out, size_t *outlen);

/* The header alone: the body's length and the descriptor count it
 * announces, checked against the limits. 0 or -EPROTO with err. */
int gd_tko_decode_header(const uint8_t hdr[GD_TKO_HDR_SIZE], uint32_t *body_len, uint32_t *nfds,
                         char *err, size_t errlen);

/* A whole STATE message (header + body, len bytes). Everything is checked:
 * magic, version, counts, lengths (no byte left over), names (the export
 * name rule), kinds, flags, unique ids below next_id, connection -> export
 * references, durability modes. st's pending pointers point into buf. 0, or -EPROTO with one
 * line in err, or -ENOMEM. Free with gd_tko_state_free (also after an error). */
int gd_tko_decode_state(const uint8_t *buf, size_t len, struct gd_tko_state *st, char *err,
                        size_t errlen);
void gd_tko_state_free(struct gd_tko_state *st);

#endif
