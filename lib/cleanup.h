/*
 * cleanup.h — scope-exit helpers (__attribute__((cleanup))) so error paths
 * free what they own without goto ladders.
 */
#ifndef GLIDEFS_CLEANUP_H
#define GLIDEFS_CLEANUP_H

#include <stdlib.h>
#include <unistd.h>
#include <pthread.h>

static inline void gfs_freep(void *p) { free(*(void **)p); }
static inline void gfs_closep(int *fd) { if (*fd >= 0) close(*fd); }
static inline void gfs_unlockp(pthread_mutex_t **m) { if (*m) pthread_mutex_unlock(*m); }

#define CLEANUP_FREE __attribute__((cleanup(gfs_freep)))
#define CLEANUP_CLOSE __attribute__((cleanup(gfs_closep)))

/* Lock m until the end of the enclosing scope. */
#define GFS_CONCAT_(a, b) a##b
#define GFS_CONCAT(a, b) GFS_CONCAT_(a, b)
#define SCOPED_LOCK(m)                                                                  \
    pthread_mutex_t *GFS_CONCAT(gfs_scoped_lock_, __LINE__) __attribute__((unused))     \
        __attribute__((cleanup(gfs_unlockp))) = (pthread_mutex_lock(m), (m))

/* Hand ownership out of a CLEANUP_FREE variable. */
#define TAKE_PTR(p) ({ __typeof__(p) gfs_tmp_ = (p); (p) = NULL; gfs_tmp_; })

#endif
