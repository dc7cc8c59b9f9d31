/*
 * objstore_azure.h — what the azure:// backend (Azure Blob Storage, block
 * blobs) offers beyond the objstore interface (objstore.h): the start-up
 * check with a one-line diagnosis, batched deletes (Blob Batch), and knobs
 * for the tests.
 *
 * storage.url is azure://ACCOUNT/CONTAINER[/PREFIX]. Without
 * storage.endpoint the service is https://ACCOUNT.blob.core.windows.net;
 * storage.endpoint names another one: http(s)://host[:port] (host-style,
 * the account is not in the path: a custom domain or private endpoint) or
 * http(s)://host[:port]/ACCOUNT (path-style, as Azurite and Azure Stack
 * serve: http://127.0.0.1:10000/devstoreaccount1); an endpoint whose host is
 * an IP address or localhost is always path-style.
 *
 * Credentials, first found wins: storage.azure_account_key (Shared Key) or
 * storage.azure_sas_token (not both); else the environment as the Azure CLI
 * reads it: AZURE_STORAGE_SAS_TOKEN, else AZURE_STORAGE_KEY, used only when
 * AZURE_STORAGE_ACCOUNT is unset or names the URL's account.
 * AZURE_STORAGE_CONNECTION_STRING is not read. Neither a key nor a token is
 * ever logged; the key is zeroed on close.
 */
#ifndef GLIDEFS_OBJSTORE_AZURE_H
#define GLIDEFS_OBJSTORE_AZURE_H

#include <stddef.h>
#include <stdint.h>

#include "objstore.h"

struct glidefs_config;
struct gfs_log;

int gfs_objstore_azure_open(const struct glidefs_config *cfg, struct gfs_log *log,
                            struct gfs_objstore **out, char *err, size_t errlen);

/* 1 if st was opened by gfs_objstore_azure_open. */
int gfs_objstore_is_azure(const struct gfs_objstore *st);

/* Check that the store answers: lists one name under the store's prefix (a
 * few retries only). gfs_objstore_azure_open does no network I/O. On failure
 * writes one line into err naming the problem, never a secret:
 *   -EACCES  credentials refused (403: AuthenticationFailed, a SAS without
 *            the permission, an expired SAS ...)
 *   -ENOENT  the container does not exist (ContainerNotFound), or the
 *            endpoint does not know the account
 *   -EIO     endpoint unreachable, TLS failure, any other answer
 *   -EINVAL  st is not an Azure store */
int gfs_azure_check(struct gfs_objstore *st, char *err, size_t errlen);

/* Delete n keys with Blob Batch requests of up to 256 Delete Blob
 * subrequests each. Missing keys count as deleted. Returns 0 when every key
 * is gone; -EIO when some were not (*failed, if non-NULL, says how many; the
 * first refusal is logged with its key and error code); -EACCES, -ENOENT
 * (no container), -EINVAL (bad key) as for single deletes. This is the
 * backend's ops->del_many. A store that refuses Blob Batch itself (an
 * account kind or an emulator without it: 400/404/405/501 to the batch
 * request) gets single deletes instead, from then on (logged once). */
int gfs_azure_delete_batch(struct gfs_objstore *st, const char *const *keys, size_t n,
                           size_t *failed);

/* Tests: objects larger than single_max bytes are uploaded as blocks of
 * block_size bytes (Put Block, Put Block List) instead of one Put Blob
 * (defaults: 256 MiB and 64 MiB); max_results caps List Blobs pages
 * (default 5000). 0 keeps a value. */
void gfs_azure_set_limits(struct gfs_objstore *st, size_t single_max, size_t block_size,
                          unsigned max_results);
/* Tests: Blob Batch requests sent so far. */
uint64_t gfs_azure_batch_requests(const struct gfs_objstore *st);

#endif
