/*
 * azure_auth.h — Azure Storage authorization for the azure:// backend: the
 * Shared Key scheme of the Blob service (version 2009-09-19 and later: the
 * string to sign, its canonicalized headers and resource, HMAC-SHA256 with
 * the account key) and the checks on a SAS token. Pure functions of their
 * arguments on mbedTLS: no I/O, no clock (the caller passes the date), so
 * every step has known-answer tests (tests/unit/test_azure_auth.c, vectors
 * computed by an independent Python implementation).
 *
 * What is signed is what is sent: the caller passes every header it sends
 * (the standard ones are picked by name, case-insensitively; every x-ms-*
 * one is canonicalized) and the path exactly as it goes on the wire
 * (percent-encoded). Values that the two readings of the rules could
 * canonicalize differently (leading or trailing blanks, runs of blanks,
 * tabs) and CR/LF anywhere are refused with -EINVAL.
 *
 * Strings returned through char ** are malloc'd; the caller frees them.
 * Functions return 0 or a negative errno (-ENOMEM, -EINVAL).
 */
#ifndef GLIDEFS_AZURE_AUTH_H
#define GLIDEFS_AZURE_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define GFS_AZ_KEY_MAX 128      /* decoded account key bytes (Azure's are 64) */
#define GFS_AZ_SAS_MAX 4096     /* longest SAS token accepted */
#define GFS_AZ_ACCOUNT_MAX 24   /* storage account names: 3-24 of a-z 0-9 */

/* A name/value pair: a query parameter (decoded) or a header. */
struct gfs_az_kv {
    const char *name;
    const char *value; /* NULL is the same as "" */
};

struct gfs_az_request {
    const char *method;               /* "GET", "PUT", ... */
    const char *path;                 /* as sent, percent-encoded: "/container/blob" or,
                                         path-style, "/account/container/blob" */
    const struct gfs_az_kv *query;    /* decoded query parameters */
    size_t nquery;
    const struct gfs_az_kv *headers;  /* every header sent */
    size_t nheaders;
};

/* The account key from its base64 text (what the portal and `az storage
 * account keys list` show). -EINVAL unless it is canonical base64 of 1 to
 * GFS_AZ_KEY_MAX bytes. */
int gfs_az_key_decode(const char *b64, uint8_t key[GFS_AZ_KEY_MAX], size_t *keylen);

/* "x-ms-...:value\n" for every x-ms-* header, names lower-cased and sorted. */
int gfs_az_canonical_headers(const struct gfs_az_kv *h, size_t n, char **out);

/* "/account" + path, then "\nname:value" per query parameter: names
 * lower-cased and sorted, values decoded, several values of one name sorted
 * and joined with ','. */
int gfs_az_canonical_resource(const char *account, const char *path,
                              const struct gfs_az_kv *q, size_t n, char **out);

/* VERB, the eleven standard headers (Content-Length "0" as ""), then the
 * canonicalized headers and resource, joined as Azure defines. */
int gfs_az_string_to_sign(const char *account, const struct gfs_az_request *r, char **out);

/* The Authorization header value: "SharedKey account:base64(HMAC-SHA256(
 * key, string to sign))". */
int gfs_az_authorization(const char *account, const uint8_t *key, size_t keylen,
                         const struct gfs_az_request *r, char **out);

/* t as an RFC 1123 date in GMT, "Sun, 06 Nov 1994 08:49:37 GMT" (x-ms-date). */
int gfs_az_date(time_t t, char out[30]);

/* A SAS token as pasted (with or without its leading '?'): checked (query
 * characters only, name=value pairs, a sig and sv parameter, at most
 * GFS_AZ_SAS_MAX bytes) and returned without the '?'. Never logged. */
int gfs_az_sas_normalize(const char *sas, char **out);

/* A storage account name: 3-24 characters of a-z 0-9. */
int gfs_az_account_ok(const char *s, size_t n);

#endif
