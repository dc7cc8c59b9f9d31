/*
 * config.h — the configuration as the library and the daemon see it inside
 * (the public API keeps it opaque). Filled from YAML by config.c, or from
 * defaults plus glidefs_config_set(). Sizes are bytes, times milliseconds.
 */
#ifndef GLIDEFS_CONFIG_H
#define GLIDEFS_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "glidefs/glidefs.h"
#include "log.h"

struct gfs_budget;

struct glidefs_config {
    /* cache: */
    char *cache_dir;                /* default /var/cache/glidefs */
    uint64_t cache_disk_size;       /* cache.disk_size_gb, bytes; default 100 GiB */
    int cache_readahead_kb;         /* sequential read-ahead window; 0 = off; default 16384 */
    int cache_profile_s;            /* access profile: record the first this many s; 0 = off; 60 */
    int cache_keep_on_close;        /* park the clean cache at close for the next open here; 1 */
    int cache_profile_mb;           /* ... or the first this many MiB read; 0 = off; 256 */
    /* tests only (no key): read-ahead's test hook (readahead.h), set at open */
    void (*ra_test_hook)(void *arg, uint64_t first_block, uint32_t nblocks);
    void *ra_test_hook_arg;

    /* storage: */
    char *storage_url;              /* s3://bucket/prefix, azure://account/container/prefix or
                                       file:///dir; default file:///var/lib/glidefs/store */
    char *storage_endpoint;         /* optional, e.g. http://127.0.0.1:9000 */
    char *storage_region;           /* default us-east-1 */
    char *storage_access_key_id;    /* optional; else AWS_ACCESS_KEY_ID */
    char *storage_secret_access_key;/* optional; else AWS_SECRET_ACCESS_KEY (secret) */
    char *storage_session_token;    /* optional; else AWS_SESSION_TOKEN (secret) */
    char *storage_azure_account_key;/* azure://: Shared Key (base64); else AZURE_STORAGE_KEY (secret) */
    char *storage_azure_sas_token;  /* azure://: SAS token; else AZURE_STORAGE_SAS_TOKEN (secret) */
    char *storage_ca_bundle;        /* optional CA file for https */
    int storage_tls_verify;         /* default 1 */
    int storage_max_connections;    /* parallel requests, default 8 */
    int storage_timeout_ms;         /* per-request timeout, default 30000 */
    int storage_max_retries;        /* default 8 */
    int storage_startup_wait_s;     /* glidefsd waits this long for a store that does not answer at start-up; 60 */
    char *storage_addressing;       /* auto (default), path or virtual (objstore_s3.h) */
    char *storage_checksum;         /* x-amz-checksum-crc32c on PUT: auto (default), on, off */
    int storage_credential_refresh_s; /* refresh expiring credentials this long before; 300 */
    char *encryption_password;      /* optional (secret) */
    char *compression;              /* "none" (default) or "zstd" */
    int compression_level;          /* default 3 */
    int storage_unsafe_lax_takeover; /* storage.unsafe_accept_split_brain_on_lax_store: take
                                       the lease from another node on a store that ignores
                                       conditional writes anyway; default 0 */
    char *storage_durability;       /* "local" (default): a flush is durable on this node's
                                       disk; "store": a flush returns once the store holds
                                       every write before it (syncer.h) */
    int storage_max_unsynced_s;     /* writes not in the store are uploaded by this age, and
                                       writes wait past it; 0 = unbounded (default) */
    uint64_t storage_max_unsynced_bytes; /* writes wait while this much is not in the store;
                                       0 = unbounded (default) */

    /* top level */
    char *node_id;                  /* for humans (the lease's writer identity is the cache
                                       dir's instance id); default: host name, else
                                       /etc/machine-id */
    char *node_id_legacy;           /* what older builds took by default (/etc/machine-id,
                                       else host name): their leases name it; NULL when
                                       node_id is set explicitly (ownership.c) */

    /* servers: */
    int shutdown_timeout_s;         /* default 300 */
    char *nbd_unix_socket;          /* default /var/run/glidefs.sock; "" disables */
    char *nbd_tcp;                  /* host:port, NULL = off */
    uint64_t nbd_auto_create_size;  /* auto_create_size_gb, bytes; default 500 GiB */
    int blocks_per_batch;           /* default 25 */
    int sync_delay_ms;              /* default 8000 */
    int max_dirty_age_ms;           /* default 60000: upper bound on how long a write stays dirty */
    int upload_parallel;            /* segments in flight, default 4 */
    uint32_t block_size;            /* default 131072; power of two, 4 KiB..4 MiB */
    char *nbd_default_export;       /* optional */
    int nbd_workers;                /* worker threads per daemon, default 16 */
    int nbd_busy_poll_us;           /* reader busy-polls for the next request, 0 = off */
    int nbd_insecure_tcp;           /* serve NBD on a non-loopback tcp address without tls: require */
    char *nbd_tls;                  /* "off" (default), "on" or "require" (NBD_OPT_STARTTLS) */
    char *nbd_tls_certificates;     /* dir: server-cert.pem, server-key.pem, optional ca-cert.pem */
    char *nbd_tls_psk_file;         /* psktool file: username:hexkey lines */
    int nbd_max_connections;        /* default 1024; lowered to fit the open-file limit */
    int nbd_handshake_timeout_ms;   /* whole handshake, default 10000 */
    int nbd_reply_timeout_ms;       /* a reply not taken by the client for this long: drop it; 30000 */
    uint64_t nbd_buffer_memory;     /* request/reply buffers, all connections; default 512 MiB */
    uint64_t nbd_conn_buffer_memory;/* ... per connection; default 64 MiB */
    char *api_listen;               /* default 127.0.0.1:8080; "" disables */
    char *api_unix_socket;          /* optional */
    char *vhost_user_dir;           /* vhost-user-blk sockets (DIR/NAME.sock); NULL = off */
    char *api_token;                /* optional bearer token (secret) */
    char *api_tls_certificates;     /* dir: server-cert.pem, server-key.pem: HTTPS on api.listen */
    char *api_export_dir;           /* where the API may write images; NULL: nowhere */
    char *api_allowed_hosts;        /* Host names the API answers besides its address and localhost */
    int api_max_connections;        /* per listener, default 64 */
    int api_max_connections_per_client; /* per client address, default 32 */
    int api_request_timeout_ms;     /* to receive a request (and to send its answer); 10000 */
    int lease_timeout_ms;           /* default 30000 */
    int allow_core_dumps;           /* servers.allow_core_dumps, default false: glidefsd is
                                       not dumpable (a core holds secrets and data keys) */

    /* compaction: (background rewriting of sparse segments, lib/compactor.c) */
    int compaction_min_live_pct;    /* rewrite segments less live than this; default 75 */
    int compaction_interval_s;      /* background cycle; 0 = on demand only; default 300 */
    int compaction_rate_mb_s;       /* upload budget of compaction; default 32 */
    int compaction_grace_ms;        /* dead segments outlive their last manifest this long; default 2000 */
    int compaction_keep_manifests;  /* manifests kept; default 2 */
    int compaction_max_stored_pct;  /* compact as soon as stored > this % of live; 0 = off; default 110 */
    int compaction_fenced_hold_s;   /* keep a fenced epoch's view this long; 0 = not at all; default 604800 */

    /* scrub: glidefsd's background scrub (daemon/scrubber.c) */
    int scrub_interval_h;           /* a full pass of every open export per this; 0 = off (default) */
    int scrub_interval_s;           /* the same in seconds, overrides interval_h when > 0; default 0 */
    int scrub_deep;                 /* fetch and check every live block; default true */
    int scrub_max_mb_per_s;         /* MiB/s the scrub may fetch; default 16 */
    int scrub_max_gets_per_s;       /* GETs/s the scrub may make; default 50 */

    /* cost: prices for the estimate in metrics (USD; defaults: S3 Standard us-east-1) */
    double cost_storage_gb_month;   /* 0.023 */
    double cost_put_per_1000;       /* 0.005 */
    double cost_get_per_1000;       /* 0.0004 */

    struct gfs_log log;

    /* Not a setting: the node's disk budget (cache.disk_size), shared by
     * every volume opened with this config (budget.h). Made with the config,
     * dropped with it (volumes hold their own reference). */
    struct gfs_budget *budget;

    /* The last probe of the store's conditional writes (store_probe.h):
     * glidefs_store_check_info records it here, through its const pointer
     * (the object is never const itself), so volumes opened from this config
     * afterwards report it without probing again. */
    _Atomic int probe_state;        /* GLIDEFS_STORE_COND_* */
    _Atomic int64_t probe_wall_ms;  /* when; 0: never */
    char probe_detail[256];         /* what it saw when not OK (written before probe_state) */
};

/* Fill a config with defaults (no allocation failure handling needed by callers: returns -ENOMEM). */
int gfs_config_init_defaults(struct glidefs_config *cfg);
void gfs_config_clear(struct glidefs_config *cfg);

/* The keys whose values differ between a and b, each named once (of two
 * keys for one setting, the first in the table), secrets compared too but
 * never shown: changed(arg, key) for each. Returns how many. glidefsd's
 * SIGHUP says with it what a reloaded file changes. */
int gfs_config_diff(const struct glidefs_config *a, const struct glidefs_config *b,
                    void (*changed)(void *arg, const char *key), void *arg);

/* Limits of the loader: bigger files are refused, longer scalar values too. */
#define GFS_CONFIG_FILE_MAX (1024u * 1024u)
#define GFS_CONFIG_VALUE_MAX 4096u

/* storage_url, split. The loader stores the URL normalised (no trailing '/',
 * no empty, "." or ".." segments), so splitting cfg->storage_url never fails
 * after a successful load or glidefs_config_set(). */
enum gfs_store_kind { GFS_STORE_FILE = 1, GFS_STORE_S3 = 2, GFS_STORE_AZURE = 3 };
struct gfs_store_url {
    enum gfs_store_kind kind;
    char bucket[64];   /* S3: the bucket; Azure: the container; file: "" */
    char account[32];  /* Azure: the storage account; else "" */
    const char *path;  /* points into the url: S3, Azure: key prefix without leading or
                          trailing '/', "" for none; file: the absolute directory */
};
/* 0, or -EINVAL with a reason (no value echoed) in why. */
int gfs_store_url_parse(const char *url, struct gfs_store_url *out, char *why, size_t whylen);

/* Split a normalised "host:port" / "[v6addr]:port" (nbd_tcp, api_listen) into
 * host (brackets removed) and port. -EINVAL if malformed, -ERANGE if host does
 * not fit. */
int gfs_hostport_split(const char *hp, char *host, size_t hostlen, uint16_t *port);

#endif
