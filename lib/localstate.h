/*
 * localstate.h — what a volume keeps in its cache dir besides the journal
 * and the clean cache (docs/design.md 6): the dir itself and its lock,
 * <dir>/epoch (the epoch the journal's records belong to), and journals
 * kept aside after the lease was lost (<dir>/fenced-<epoch>-<ms>/). The
 * cache dir's instance id and the writer record are identity.h's.
 */
#ifndef GLIDEFS_LOCALSTATE_H
#define GLIDEFS_LOCALSTATE_H

#include <stddef.h>
#include <stdint.h>

/* Make <cache_dir>/<name> (*dir, malloc'd; *created: this call made it) and
 * take its lock file for this process (*lockfd, -1 until opened). -EBUSY:
 * another process has it. */
int gfs_local_open(const char *cache_dir, const char *name, char **dir, int *created,
                   int *lockfd);
/* Remove what a failed open of a volume that does not exist left in dir. */
void gfs_local_unmake(const char *dir);

/* <dir>/epoch: 0 when missing. */
int gfs_local_epoch_read(const char *dir, uint64_t *epoch);
/* Write it atomically and durably. */
int gfs_local_epoch_write(const char *dir, uint64_t epoch);

/* Where the journal of epoch goes aside: <dir>/fenced-<epoch:016x>-<wall ms>. */
void gfs_local_aside_path(const char *dir, uint64_t epoch, char *to, size_t tolen);
/* Move <dir>/journal there (durably). */
int gfs_local_set_aside(const char *dir, const char *to);
/* Bytes of the journals kept aside. */
uint64_t gfs_local_fenced_bytes(const char *dir);
/* The newest kept-aside journal (largest epoch, then time): its path and
 * epoch. -ENOENT: none. */
int gfs_local_fenced_newest(const char *dir, char *out, size_t outlen, uint64_t *epoch);
/* Remove every kept-aside journal: -errno when dir cannot be read, else 0
 * and *rm_err the first removal's error (0: all gone). */
int gfs_local_fenced_discard(const char *dir, int *rm_err);

#endif
