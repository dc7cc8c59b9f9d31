/*
 * manchain.h — reading a manifest as a reader must (docs/design.md 5.7,
 * 5.10): a base alone, or a delta together with every link of its chain
 * down to its base. Each link must exist, decode, sit at its key, agree
 * with the head in block size and volume size, and be the one its child
 * names; a chain that breaks anywhere is an error (-EIO), never an older
 * map. The links come back base first, to be applied in that order (a
 * delta's entry replaces the block's).
 */
#ifndef GLIDEFS_MANCHAIN_H
#define GLIDEFS_MANCHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

struct gfs_objstore;
struct gfs_codec;
struct gfs_log;
struct gfs_lease;

struct gfs_manchain {
    struct gfs_manifest *links; /* base first; links[n-1] is the head */
    size_t n;
    uint64_t bytes;             /* object bytes read, all links */
};

/* Load the manifest at `key` ("<prefix>/manifest/<E>-<S>") and, if it is a
 * delta, its chain, from the same prefix. A link fenced under `lease` (may
 * be NULL) breaks the chain. Errors are logged prefixed with `who` (the
 * volume's name). Returns 0, -EIO (missing, corrupt, failing
 * authentication or not a chain), -ENOMEM, or the store's error. */
int gfs_manchain_load(struct gfs_objstore *store, const struct gfs_log *log, const char *who,
                      const char *key, const struct gfs_codec *codec,
                      const struct gfs_lease *lease, struct gfs_manchain *c);
void gfs_manchain_free(struct gfs_manchain *c);

/* The map the chain describes, as one base would list it at the head's key:
 * every block's entry from the newest link naming it, and only the
 * segments those entries reference. Free with gfs_manifest_free. Returns
 * 0, -EIO (two links disagree on a segment's key generation) or -ENOMEM. */
int gfs_manchain_flatten(const struct gfs_manchain *c, struct gfs_manifest *out);

/* The key of the link (epoch, seq) next to `key` (same prefix). */
int gfs_manchain_sibling(char *buf, size_t buflen, const char *key, uint64_t epoch,
                         uint64_t seq);

#endif
