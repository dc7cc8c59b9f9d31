/*
 * test_config.c — lib/config.c: defaults, a YAML file with every key, ${ENV}
 * expansion, a table of hostile and malformed inputs with their exact error
 * messages, file loading errors, glidefs_config_set/get round trips, secret
 * masking, the URL/host:port helpers, and a mutation fuzz of a valid file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "glidefs/glidefs.h"

#define GiB (UINT64_C(1) << 30)
#define MiB (UINT64_C(1) << 20)

static int parse(const char *yaml, glidefs_config **out, char *err, size_t errlen)
{
    return glidefs_config_parse(yaml, strlen(yaml), "t.yaml", out, err, errlen);
}

/* Parse text that must be valid; fail the test with the error if not. */
static glidefs_config *parse_ok(const char *yaml)
{
    glidefs_config *cfg = NULL;
    char err[512] = "";
    int rc = parse(yaml, &cfg, err, sizeof(err));
    if (rc != 0) {
        print_error("unexpected error %d: %s\n", rc, err);
        fail();
    }
    assert_non_null(cfg);
    assert_string_equal(err, "");
    return cfg;
}

static void assert_get(const glidefs_config *cfg, const char *key, const char *want)
{
    char buf[GFS_CONFIG_VALUE_MAX + 64];
    int rc = glidefs_config_get(cfg, key, buf, sizeof(buf));
    if (rc != 0 || strcmp(buf, want) != 0) {
        print_error("get %s: rc %d \"%s\", want \"%s\"\n", key, rc, rc == 0 ? buf : "", want);
        fail();
    }
}

/* ------------------------------------------------------------------------ */

static void test_defaults(void **state)
{
    (void)state;
    glidefs_config *cfg = glidefs_config_new();
    assert_non_null(cfg);
    assert_string_equal(cfg->cache_dir, "/var/cache/glidefs");
    assert_int_equal(cfg->cache_disk_size, 100 * GiB);
    assert_string_equal(cfg->storage_url, "file:///var/lib/glidefs/store");
    assert_null(cfg->storage_endpoint);
    assert_string_equal(cfg->storage_region, "us-east-1");
    assert_null(cfg->storage_access_key_id);
    assert_null(cfg->storage_secret_access_key);
    assert_null(cfg->storage_session_token);
    assert_null(cfg->storage_ca_bundle);
    assert_int_equal(cfg->storage_tls_verify, 1);
    assert_int_equal(cfg->storage_max_connections, 8);
    assert_int_equal(cfg->storage_timeout_ms, 30000);
    assert_int_equal(cfg->storage_max_retries, 8);
    assert_string_equal(cfg->storage_addressing, "auto");
    assert_string_equal(cfg->storage_checksum, "auto");
    assert_int_equal(cfg->storage_credential_refresh_s, 300);
    assert_null(cfg->encryption_password);
    assert_string_equal(cfg->compression, "none");
    assert_int_equal(cfg->compression_level, 3);
    assert_int_equal(cfg->shutdown_timeout_s, 300);
    assert_string_equal(cfg->nbd_unix_socket, "/var/run/glidefs.sock");
    assert_null(cfg->nbd_tcp);
    assert_int_equal(cfg->nbd_auto_create_size, 500 * GiB);
    assert_int_equal(cfg->blocks_per_batch, 25);
    assert_int_equal(cfg->sync_delay_ms, 8000);
    assert_int_equal(cfg->max_dirty_age_ms, 60000);
    assert_int_equal(cfg->upload_parallel, 4);
    assert_int_equal(cfg->block_size, 131072);
    assert_null(cfg->nbd_default_export);
    assert_int_equal(cfg->nbd_workers, 16);
    assert_int_equal(cfg->nbd_busy_poll_us, 50);
    assert_string_equal(cfg->api_listen, "127.0.0.1:8080");
    assert_null(cfg->api_unix_socket);
    assert_null(cfg->api_token);
    assert_int_equal(cfg->lease_timeout_ms, 30000);
    assert_null(cfg->log.fn);
    assert_int_equal(cfg->log.max_level, GLIDEFS_LOG_INFO);

    /* node_id: the host name, else /etc/machine-id (trimmed); node_id_legacy
     * (what older builds defaulted to, for their leases): the other way round */
    assert_non_null(cfg->node_id);
    assert_true(strlen(cfg->node_id) >= 1 && strlen(cfg->node_id) <= 128);
    char mid[256] = "";
    FILE *f = fopen("/etc/machine-id", "r");
    if (f) {
        if (fgets(mid, sizeof(mid), f))
            mid[strcspn(mid, " \t\r\n")] = '\0';
        fclose(f);
    }
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    if (host[0])
        assert_string_equal(cfg->node_id, host);
    else if (mid[0])
        assert_string_equal(cfg->node_id, mid);
    assert_non_null(cfg->node_id_legacy);
    if (mid[0])
        assert_string_equal(cfg->node_id_legacy, mid);
    else if (host[0])
        assert_string_equal(cfg->node_id_legacy, host);
    glidefs_config_free(cfg);
    glidefs_config_free(NULL);

    /* The internal init/clear pair, as other modules use it. */
    struct glidefs_config c2;
    assert_int_equal(gfs_config_init_defaults(&c2), 0);
    assert_string_equal(c2.cache_dir, "/var/cache/glidefs");
    gfs_config_clear(&c2);
    assert_null(c2.cache_dir);
    gfs_config_clear(&c2); /* twice is harmless */
}

static void test_empty_inputs_are_defaults(void **state)
{
    (void)state;
    const char *empties[] = {"", "\n", "# just a comment\n", "---\n", "---\n...\n", "~\n",
                             "null\n", "\xef\xbb\xbf# BOM\n", "cache:\nstorage: ~\n",
                             "servers:\n  nbd:\n  api: {}\n", "{}\n"};
    glidefs_config *def = glidefs_config_new();
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        glidefs_config *cfg = parse_ok(empties[i]);
        assert_string_equal(cfg->cache_dir, def->cache_dir);
        assert_string_equal(cfg->storage_url, def->storage_url);
        assert_string_equal(cfg->node_id, def->node_id);
        assert_int_equal(cfg->sync_delay_ms, def->sync_delay_ms);
        assert_int_equal(cfg->cache_disk_size, def->cache_disk_size);
        glidefs_config_free(cfg);
    }
    /* NULL with length 0 is an empty document too. */
    glidefs_config *cfg = NULL;
    assert_int_equal(glidefs_config_parse(NULL, 0, NULL, &cfg, NULL, 0), 0);
    assert_non_null(cfg);
    glidefs_config_free(cfg);
    glidefs_config_free(def);
}

static const char full_yaml[] =
    "# every key, none at its default\n"
    "cache:\n"
    "  dir: /srv/cache\n"
    "  disk_size_gb: 42\n"
    "  profile_s: 30\n"
    "  profile_mb: 64\n"
    "storage:\n"
    "  url: s3://my-bucket.example/vms/prod/\n"
    "  endpoint: https://minio.local:9000/\n"
    "  region: eu-west-3\n"
    "  access_key_id: AKIAEXAMPLE\n"
    "  secret_access_key: wJalrXUtnFEMI/K7MDENG\n"
    "  session_token: FwoGZXIvYXdzE\n"
    "  ca_bundle: /etc/ssl/private-ca.pem\n"
    "  tls_verify: off\n"
    "  max_connections: 32\n"
    "  timeout_ms: 5000\n"
    "  max_retries: 0\n"
    "  encryption_password: 'correct horse battery staple'\n"
    "  compression: zstd\n"
    "  compression_level: 19\n"
    "node_id: node-7.rack2\n"
    "servers:\n"
    "  shutdown_timeout_s: 0\n"
    "  lease_timeout_ms: 2500\n"
    "  nbd:\n"
    "    unix_socket: /run/g.sock\n"
    "    tcp: \"10809\"\n"
    "    auto_create_size_gb: 1\n"
    "    blocks_per_batch: 4096\n"
    "    sync_delay_ms: 0\n"
    "    max_dirty_age_ms: 86400000\n"
    "    upload_parallel: 64\n"
    "    block_size: 4M\n"
    "    default_export: vm-01\n"
    "    workers: 1\n"
    "    insecure_tcp: yes\n"
    "    max_connections: 77\n"
    "    handshake_timeout_ms: 2500\n"
    "    reply_timeout_ms: 4000\n"
    "    buffer_memory: 32M\n"
    "    connection_buffer_memory: 2M\n"
    "  api:\n"
    "    allowed_hosts: \"Node1.Example, ,glidefs.example  [::1]\"\n"
    "    max_connections: 8\n"
    "    max_connections_per_client: 3\n"
    "    request_timeout_ms: 1500\n"
    "    listen: \"[::1]:9090\"\n"
    "    unix_socket: /run/g-api.sock\n"
    "    token: s3cr3t-t0ken\n";

static void test_full_file(void **state)
{
    (void)state;
    glidefs_config *cfg = parse_ok(full_yaml);
    assert_string_equal(cfg->cache_dir, "/srv/cache");
    assert_int_equal(cfg->cache_disk_size, 42 * GiB);
    assert_int_equal(cfg->cache_profile_s, 30);
    assert_int_equal(cfg->cache_profile_mb, 64);
    assert_string_equal(cfg->storage_url, "s3://my-bucket.example/vms/prod"); /* normalised */
    assert_string_equal(cfg->storage_endpoint, "https://minio.local:9000");
    assert_string_equal(cfg->storage_region, "eu-west-3");
    assert_string_equal(cfg->storage_access_key_id, "AKIAEXAMPLE");
    assert_string_equal(cfg->storage_secret_access_key, "wJalrXUtnFEMI/K7MDENG");
    assert_string_equal(cfg->storage_session_token, "FwoGZXIvYXdzE");
    assert_string_equal(cfg->storage_ca_bundle, "/etc/ssl/private-ca.pem");
    assert_int_equal(cfg->storage_tls_verify, 0);
    assert_int_equal(cfg->storage_max_connections, 32);
    assert_int_equal(cfg->storage_timeout_ms, 5000);
    assert_int_equal(cfg->storage_max_retries, 0);
    assert_string_equal(cfg->encryption_password, "correct horse battery staple");
    assert_string_equal(cfg->compression, "zstd");
    assert_int_equal(cfg->compression_level, 19);
    assert_string_equal(cfg->node_id, "node-7.rack2");
    assert_null(cfg->node_id_legacy); /* set: older builds wrote the same name */
    assert_int_equal(cfg->shutdown_timeout_s, 0);
    assert_int_equal(cfg->lease_timeout_ms, 2500);
    assert_string_equal(cfg->nbd_unix_socket, "/run/g.sock");
    assert_string_equal(cfg->nbd_tcp, "127.0.0.1:10809");
    assert_int_equal(cfg->nbd_auto_create_size, 1 * GiB);
    assert_int_equal(cfg->blocks_per_batch, 4096);
    assert_int_equal(cfg->sync_delay_ms, 0);
    assert_int_equal(cfg->max_dirty_age_ms, 86400000);
    assert_int_equal(cfg->upload_parallel, 64);
    assert_int_equal(cfg->block_size, 4 * MiB);
    assert_string_equal(cfg->nbd_default_export, "vm-01");
    assert_int_equal(cfg->nbd_workers, 1);
    assert_string_equal(cfg->api_listen, "[::1]:9090");
    assert_string_equal(cfg->api_unix_socket, "/run/g-api.sock");
    assert_string_equal(cfg->api_token, "s3cr3t-t0ken");
    assert_int_equal(cfg->nbd_insecure_tcp, 1);
    assert_int_equal(cfg->nbd_max_connections, 77);
    assert_int_equal(cfg->nbd_handshake_timeout_ms, 2500);
    assert_int_equal(cfg->nbd_reply_timeout_ms, 4000);
    assert_int_equal(cfg->nbd_buffer_memory, 32 * MiB);
    assert_int_equal(cfg->nbd_conn_buffer_memory, 2 * MiB);
    /* lower case, one comma between names, empty items dropped */
    assert_string_equal(cfg->api_allowed_hosts, "node1.example,glidefs.example,[::1]");
    assert_int_equal(cfg->api_max_connections, 8);
    assert_int_equal(cfg->api_max_connections_per_client, 3);
    assert_int_equal(cfg->api_request_timeout_ms, 1500);

    /* get gives the text form; secrets are masked. */
    assert_get(cfg, "cache.disk_size_gb", "42");
    assert_get(cfg, "cache.disk_size", "45097156608");
    assert_get(cfg, "storage.tls_verify", "false");
    assert_get(cfg, "storage.access_key_id", "AKIAEXAMPLE");
    assert_get(cfg, "storage.secret_access_key", "***");
    assert_get(cfg, "storage.session_token", "***");
    assert_get(cfg, "storage.encryption_password", "***");
    assert_get(cfg, "servers.api.token", "***");
    assert_get(cfg, "servers.nbd.block_size", "4194304");
    assert_get(cfg, "servers.nbd.auto_create_size", "1073741824");
    glidefs_config_free(cfg);
}

static void test_value_forms(void **state)
{
    (void)state;
    glidefs_config *cfg = parse_ok("cache:\n"
                                   "  disk_size: 1.5G\n"
                                   "storage:\n"
                                   "  url: file:///var/lib/store//\n"
                                   "  tls_verify: YES\n"
                                   "  endpoint: ~\n"
                                   "  max_retries: \"007\"\n"
                                   "servers:\n"
                                   "  nbd:\n"
                                   "    tcp: \":10809\"\n"
                                   "    auto_create_size: 10GiB\n"
                                   "    block_size: 65536\n"
                                   "    unix_socket: ''\n"
                                   "    default_export:\n"
                                   "  api: {listen: \"\", token: null}\n");
    assert_int_equal(cfg->cache_disk_size, GiB + GiB / 2);
    assert_string_equal(cfg->storage_url, "file:///var/lib/store");
    assert_int_equal(cfg->storage_tls_verify, 1);
    assert_null(cfg->storage_endpoint);
    assert_int_equal(cfg->storage_max_retries, 7);
    assert_string_equal(cfg->nbd_tcp, "127.0.0.1:10809");
    assert_int_equal(cfg->nbd_auto_create_size, 10 * GiB);
    assert_int_equal(cfg->block_size, 65536);
    assert_string_equal(cfg->nbd_unix_socket, ""); /* "" = disabled */
    assert_null(cfg->nbd_default_export);
    assert_string_equal(cfg->api_listen, ""); /* "" = disabled */
    assert_null(cfg->api_token);
    assert_get(cfg, "cache.disk_size_gb", "1"); /* whole GiB, rounded down */
    assert_get(cfg, "servers.api.token", "");  /* unset secret: empty, not *** */
    glidefs_config_free(cfg);

    /* Every bool spelling. */
    const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON"};
    const char *no[] = {"false", "False", "no", "NO", "off", "Off"};
    char y[128];
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(y, sizeof(y), "storage:\n  tls_verify: %s\n", yes[i]);
        cfg = parse_ok(y);
        assert_int_equal(cfg->storage_tls_verify, 1);
        glidefs_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        snprintf(y, sizeof(y), "storage:\n  tls_verify: %s\n", no[i]);
        cfg = parse_ok(y);
        assert_int_equal(cfg->storage_tls_verify, 0);
        glidefs_config_free(cfg);
    }

    /* Range edges are inclusive. */
    cfg = parse_ok("servers:\n  nbd:\n    blocks_per_batch: 1\n    sync_delay_ms: 3600000\n"
                   "    block_size: 4K\n");
    assert_int_equal(cfg->blocks_per_batch, 1);
    assert_int_equal(cfg->sync_delay_ms, 3600000);
    assert_int_equal(cfg->block_size, 4096);
    glidefs_config_free(cfg);

    /* CRLF line ends. */
    cfg = parse_ok("cache:\r\n  dir: /crlf\r\n  disk_size_gb: 3\r\n");
    assert_string_equal(cfg->cache_dir, "/crlf");
    assert_int_equal(cfg->cache_disk_size, 3 * GiB);
    glidefs_config_free(cfg);
}

static void test_env_expansion(void **state)
{
    (void)state;
    setenv("GFS_T_DIR", "/data/cache", 1);
    setenv("GFS_T_PW", "pa$$ word", 1);
    setenv("GFS_T_EMPTY", "", 1);
    setenv("GFS_T_DELAY", "250", 1);
    setenv("GFS_T_BUCKET", "env-bucket", 1);
    unsetenv("GFS_T_UNSET");
    glidefs_config *cfg = parse_ok("cache:\n"
                                   "  dir: ${GFS_T_DIR}/sub\n"
                                   "storage:\n"
                                   "  url: s3://${GFS_T_BUCKET}/${GFS_T_UNSET:-default-prefix}\n"
                                   "  encryption_password: \"${GFS_T_PW}\"\n"
                                   "  region: ${GFS_T_EMPTY:-eu-north-1}\n"
                                   "  endpoint: ${GFS_T_EMPTY}\n"
                                   "  access_key_id: 'x$$y$z'\n"
                                   "node_id: ${GFS_T_UNSET:-n1}\n"
                                   "servers:\n"
                                   "  nbd:\n"
                                   "    sync_delay_ms: ${GFS_T_DELAY}\n"
                                   "    unix_socket: /run/${GFS_T_UNSET:-}g.sock\n"
                                   "  api:\n"
                                   "    token: $\n");
    assert_string_equal(cfg->cache_dir, "/data/cache/sub");
    assert_string_equal(cfg->storage_url, "s3://env-bucket/default-prefix");
    /* The variable's value is used as is: no second round of expansion. */
    assert_string_equal(cfg->encryption_password, "pa$$ word");
    assert_string_equal(cfg->storage_region, "eu-north-1");
    assert_null(cfg->storage_endpoint); /* expanded to empty: not set */
    assert_string_equal(cfg->storage_access_key_id, "x$y$z");
    assert_string_equal(cfg->node_id, "n1");
    assert_int_equal(cfg->sync_delay_ms, 250);
    assert_string_equal(cfg->nbd_unix_socket, "/run/g.sock");
    assert_string_equal(cfg->api_token, "$");
    glidefs_config_free(cfg);

    /* Keys are not expanded. */
    glidefs_config *bad = NULL;
    char err[512];
    setenv("GFS_T_KEY", "dir", 1);
    assert_int_equal(parse("cache:\n  ${GFS_T_KEY}: /x\n", &bad, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.yaml:2:3: cache: unknown key \"${GFS_T_KEY}\"");
    assert_null(bad);

    /* An expanded value is validated like any other, and named in errors. */
    setenv("GFS_T_DELAY", "soon", 1);
    assert_int_equal(parse("servers:\n  nbd:\n    sync_delay_ms: ${GFS_T_DELAY}\n", &bad, err,
                           sizeof(err)),
                     -EINVAL);
    assert_string_equal(
        err, "t.yaml:3:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"soon\"");

    /* An empty node_id means the default. */
    glidefs_config *def = glidefs_config_new();
    cfg = parse_ok("node_id: ${GFS_T_EMPTY}\n");
    assert_string_equal(cfg->node_id, def->node_id);
    assert_string_equal(cfg->node_id_legacy, def->node_id_legacy);
    glidefs_config_free(cfg);
    glidefs_config_free(def);

    unsetenv("GFS_T_DIR");
    unsetenv("GFS_T_PW");
    unsetenv("GFS_T_EMPTY");
    unsetenv("GFS_T_DELAY");
    unsetenv("GFS_T_BUCKET");
    unsetenv("GFS_T_KEY");
}

/* ------------------------------------------------------------------------ */
/* Hostile and malformed input                                                */
/* ------------------------------------------------------------------------ */

struct bad_case {
    const char *what;
    const char *yaml;
    size_t len; /* 0: strlen(yaml) */
    int rc;
    const char *msg; /* exact; NULL: built by the test (see below) */
};

#define BUCKET_RULES                                                                          \
    "(3-63 characters: lowercase letters, digits, dots and hyphens, starting and ending with " \
    "a letter or digit)"
#define NAME_RULES "(1-128 letters, digits, '.', '_' or '-', not starting with '.')"
#define HOSTPORT "expected host:port, :port or port (port 1..65535), got "
#define SIZE_EXPECT "expected a size (bytes, or a number with K, M, G, T, KiB, MiB, GiB or TiB)"

static const struct bad_case bad_cases[] = {
    /* YAML syntax */
    {"tab indentation", "cache:\n\tdir: /x\n", 0, -EINVAL,
     "t.yaml:2:1: syntax error: tab character (YAML indentation must use spaces)"},
    {"unclosed flow mapping", "cache: {dir: /x\n", 0, -EINVAL,
     "t.yaml:2:1: syntax error: did not find expected ',' or '}' (while parsing a flow mapping "
     "at line 1, column 8)"},
    {"unclosed quote", "cache:\n  dir: \"/x\n", 0, -EINVAL,
     "t.yaml:3:1: syntax error: found unexpected end of stream (while scanning a quoted scalar "
     "at line 2, column 8)"},
    {"bad indentation", "cache:\n  dir: /x\n   disk_size_gb: 5\n", 0, -EINVAL,
     "t.yaml:3:16: syntax error: mapping values are not allowed in this context"},
    {"stray colon", "cache:\n  dir: a: b\n", 0, -EINVAL,
     "t.yaml:2:9: syntax error: mapping values are not allowed in this context"},
    {"unknown directive", "%FOO bar\n---\ncache: {}\n", 0, -EINVAL,
     "t.yaml:1:5: syntax error: found unknown directive name (while scanning a directive at "
     "line 1, column 1)"},
    {"syntax error after valid keys",
     "cache:\n  dir: /x\nstorage:\n  url: s3://bucket\n  region: a: b\n", 0, -EINVAL,
     "t.yaml:5:12: syntax error: mapping values are not allowed in this context"},

    /* unknown keys */
    {"unknown top key typo", "cahce:\n  dir: /x\n", 0, -EINVAL,
     "t.yaml:1:1: cahce: unknown key (did you mean cache?)"},
    {"unknown nested key typo", "servers:\n  nbd:\n    sync_dely_ms: 5\n", 0, -EINVAL,
     "t.yaml:3:5: servers.nbd.sync_dely_ms: unknown key (did you mean "
     "servers.nbd.sync_delay_ms?)"},
    {"key in the wrong section", "sync_delay_ms: 5\n", 0, -EINVAL,
     "t.yaml:1:1: sync_delay_ms: unknown key (did you mean servers.nbd.sync_delay_ms?)"},
    {"unknown key, no hint", "storage:\n  colour: blue\n", 0, -EINVAL,
     "t.yaml:2:3: storage.colour: unknown key"},
    {"keys are case-sensitive", "Cache:\n  dir: /x\n", 0, -EINVAL,
     "t.yaml:1:1: Cache: unknown key (did you mean cache?)"},
    {"dotted key", "cache.dir: /x\n", 0, -EINVAL,
     "t.yaml:1:1: unknown key \"cache.dir\" (dotted names must be written as nested mappings)"},
    {"key with a space", "\"a b\": 1\n", 0, -EINVAL, "t.yaml:1:1: unknown key \"a b\""},
    {"empty key", "\"\": 1\n", 0, -EINVAL, "t.yaml:1:1: unknown key \"\""},
    {"key with escapes", "cache:\n  \"di\\e[31mr\": /x\n", 0, -EINVAL,
     "t.yaml:2:3: cache: unknown key \"di\\x1b[31mr\""},
    {"complex key", "? [a]\n: 1\n", 0, -EINVAL, "t.yaml:1:3: expected a key name, got a sequence"},

    /* wrong types; nesting deeper than the schema */
    {"section is a scalar", "cache: 5\n", 0, -EINVAL,
     "t.yaml:1:8: cache: expected a mapping, got a scalar"},
    {"section is a sequence", "servers: [1, 2]\n", 0, -EINVAL,
     "t.yaml:1:10: servers: expected a mapping, got a sequence"},
    {"value is a sequence", "cache:\n  dir: [a, b]\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: expected a single value, got a sequence"},
    {"value is a mapping", "cache:\n  dir:\n    a:\n      b: 1\n", 0, -EINVAL,
     "t.yaml:3:5: cache.dir: expected a single value, got a mapping"},
    {"deep block nesting", "servers:\n  nbd:\n    a:\n      b:\n        c: 1\n", 0, -EINVAL,
     "t.yaml:3:5: servers.nbd.a: unknown key"},
    {"top-level sequence", "- a\n- b\n", 0, -EINVAL,
     "t.yaml:1:1: expected a mapping (cache:, storage:, servers:, node_id:) at the top level, "
     "got a sequence"},
    {"top-level scalar", "hello\n", 0, -EINVAL,
     "t.yaml:1:1: expected a mapping (cache:, storage:, servers:, node_id:) at the top level, "
     "got a scalar"},

    /* integers */
    {"int: word", "servers:\n  nbd:\n    sync_delay_ms: fast\n", 0, -EINVAL,
     "t.yaml:3:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"fast\""},
    {"int: huge", "servers:\n  nbd:\n    sync_delay_ms: 99999999999999999999999\n", 0, -EINVAL,
     "t.yaml:3:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got "
     "\"99999999999999999999999\""},
    {"int: above INT_MAX", "servers:\n  shutdown_timeout_s: 2147483648\n", 0, -EINVAL,
     "t.yaml:2:23: servers.shutdown_timeout_s: expected an integer 0..86400, got "
     "\"2147483648\""},
    {"int: 2^64", "storage:\n  max_retries: 18446744073709551616\n", 0, -EINVAL,
     "t.yaml:2:16: storage.max_retries: expected an integer 0..100, got "
     "\"18446744073709551616\""},
    {"int: negative", "servers:\n  nbd:\n    sync_delay_ms: -1\n", 0, -EINVAL,
     "t.yaml:3:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"-1\""},
    {"int: trailing junk", "servers:\n  nbd:\n    sync_delay_ms: 8000ms\n", 0, -EINVAL,
     "t.yaml:3:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"8000ms\""},
    {"int: inner space", "servers:\n  nbd:\n    sync_delay_ms: 80 00\n", 0, -EINVAL,
     "t.yaml:3:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"80 00\""},
    {"int: plus sign", "servers:\n  nbd:\n    blocks_per_batch: +5\n", 0, -EINVAL,
     "t.yaml:3:23: servers.nbd.blocks_per_batch: expected an integer 1..4096, got \"+5\""},
    {"int: hex", "servers:\n  nbd:\n    blocks_per_batch: 0x10\n", 0, -EINVAL,
     "t.yaml:3:23: servers.nbd.blocks_per_batch: expected an integer 1..4096, got \"0x10\""},
    {"int: exponent", "servers:\n  nbd:\n    sync_delay_ms: 8e3\n", 0, -EINVAL,
     "t.yaml:3:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"8e3\""},
    {"int: float", "servers:\n  nbd:\n    upload_parallel: 2.0\n", 0, -EINVAL,
     "t.yaml:3:22: servers.nbd.upload_parallel: expected an integer 1..64, got \"2.0\""},
    {"int: empty", "servers:\n  nbd:\n    upload_parallel:\n", 0, -EINVAL,
     "t.yaml:3:21: servers.nbd.upload_parallel: expected an integer 1..64, got an empty value"},
    {"int: below range", "servers:\n  nbd:\n    blocks_per_batch: 0\n", 0, -EINVAL,
     "t.yaml:3:23: servers.nbd.blocks_per_batch: expected an integer 1..4096, got \"0\""},
    {"int: above range", "servers:\n  nbd:\n    blocks_per_batch: 4097\n", 0, -EINVAL,
     "t.yaml:3:23: servers.nbd.blocks_per_batch: expected an integer 1..4096, got \"4097\""},
    {"compression_level range", "storage:\n  compression_level: 20\n", 0, -EINVAL,
     "t.yaml:2:22: storage.compression_level: expected an integer 1..19, got \"20\""},
    {"upload_parallel range", "servers:\n  nbd:\n    upload_parallel: 65\n", 0, -EINVAL,
     "t.yaml:3:22: servers.nbd.upload_parallel: expected an integer 1..64, got \"65\""},
    {"long value is cut in the message", "storage:\n  max_retries: 1234567890123456789012345678901234567890123456789012345678901234567890\n", 0, -EINVAL,
     "t.yaml:2:16: storage.max_retries: expected an integer 0..100, got "
     "\"123456789012345678901234567890123456789012345678901234567890...\""},

    /* words */
    {"addressing: word", "storage:\n  addressing: vhost\n", 0, -EINVAL,
     "t.yaml:2:15: storage.addressing: expected auto, path or virtual, got \"vhost\""},
    {"checksum: word", "storage:\n  checksum: crc32c\n", 0, -EINVAL,
     "t.yaml:2:13: storage.checksum: expected auto, on or off, got \"crc32c\""},
    {"credential_refresh_s range", "storage:\n  credential_refresh_s: 0\n", 0, -EINVAL,
     "t.yaml:2:25: storage.credential_refresh_s: expected an integer 1..43200, got \"0\""},

    /* booleans */
    {"bool: word", "storage:\n  tls_verify: maybe\n", 0, -EINVAL,
     "t.yaml:2:15: storage.tls_verify: expected true/false/yes/no/on/off, got \"maybe\""},
    {"bool: number", "storage:\n  tls_verify: 1\n", 0, -EINVAL,
     "t.yaml:2:15: storage.tls_verify: expected true/false/yes/no/on/off, got \"1\""},

    /* sizes */
    {"gib: zero", "cache:\n  disk_size_gb: 0\n", 0, -EINVAL,
     "t.yaml:2:17: cache.disk_size_gb: expected a whole number of GiB 1..1048576, got \"0\""},
    {"gib: with suffix", "cache:\n  disk_size_gb: 100G\n", 0, -EINVAL,
     "t.yaml:2:17: cache.disk_size_gb: expected a whole number of GiB 1..1048576, got "
     "\"100G\""},
    {"gib: too big", "servers:\n  nbd:\n    auto_create_size_gb: 1048577\n", 0, -EINVAL,
     "t.yaml:3:26: servers.nbd.auto_create_size_gb: expected a whole number of GiB "
     "1..1048576, got \"1048577\""},
    {"size: garbage", "cache:\n  disk_size: 100X\n", 0, -EINVAL,
     "t.yaml:2:14: cache.disk_size: " SIZE_EXPECT ", got \"100X\""},
    {"size: below minimum", "cache:\n  disk_size: 1K\n", 0, -EINVAL,
     "t.yaml:2:14: cache.disk_size: must be at least 1048576 bytes, got \"1K\""},
    {"size: overflow", "cache:\n  disk_size: 99999999999T\n", 0, -EINVAL,
     "t.yaml:2:14: cache.disk_size: size \"99999999999T\" is too large"},
    {"size: above maximum", "cache:\n  disk_size: 2000T\n", 0, -EINVAL,
     "t.yaml:2:14: cache.disk_size: must be at most 1125899906842624 bytes, got \"2000T\""},
    {"size: not a multiple of 512", "servers:\n  nbd:\n    auto_create_size: 1000\n", 0,
     -EINVAL,
     "t.yaml:3:23: servers.nbd.auto_create_size: must be a multiple of 512 bytes, got "
     "\"1000\""},
    {"size and GiB forms together", "cache:\n  disk_size_gb: 10\n  disk_size: 10G\n", 0,
     -EINVAL, "t.yaml:3:3: cache.disk_size: conflicts with cache.disk_size_gb (line 2); set only one"},
    {"block size: not a power of two", "servers:\n  nbd:\n    block_size: 6K\n", 0, -EINVAL,
     "t.yaml:3:17: servers.nbd.block_size: expected a power of two from 4K to 4M, got \"6K\""},
    {"block size: too big", "servers:\n  nbd:\n    block_size: 8M\n", 0, -EINVAL,
     "t.yaml:3:17: servers.nbd.block_size: expected a power of two from 4K to 4M, got \"8M\""},
    {"block size: too small", "servers:\n  nbd:\n    block_size: 2048\n", 0, -EINVAL,
     "t.yaml:3:17: servers.nbd.block_size: expected a power of two from 4K to 4M, got "
     "\"2048\""},

    /* storage URL and friends */
    {"url: http", "storage:\n  url: http://example.com/x\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: expected s3://bucket[/prefix], azure://account/container[/prefix] "
     "or file:///absolute/dir, got "
     "\"http://example.com/x\""},
    {"url: bare path", "storage:\n  url: /var/lib/store\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: expected s3://bucket[/prefix], azure://account/container[/prefix] "
     "or file:///absolute/dir, got "
     "\"/var/lib/store\""},
    {"url: uppercase bucket", "storage:\n  url: s3://My_Bucket/vms\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid S3 bucket name \"My_Bucket\" " BUCKET_RULES},
    {"url: short bucket", "storage:\n  url: s3://ab\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid S3 bucket name \"ab\" " BUCKET_RULES},
    {"url: long bucket",
     "storage:\n  url: s3://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 0,
     -EINVAL,
     "t.yaml:2:8: storage.url: invalid S3 bucket name "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" " BUCKET_RULES},
    {"url: empty bucket", "storage:\n  url: s3:///vms\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid S3 bucket name \"\" " BUCKET_RULES},
    {"url: IP bucket", "storage:\n  url: s3://192.168.1.1/x\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid S3 bucket name \"192.168.1.1\" " BUCKET_RULES},
    {"url: bucket with ..", "storage:\n  url: s3://my..bucket\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid S3 bucket name \"my..bucket\" " BUCKET_RULES},
    {"url: bucket starts with -", "storage:\n  url: s3://-bucket\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid S3 bucket name \"-bucket\" " BUCKET_RULES},
    {"url: .. in prefix", "storage:\n  url: s3://bucket/a/../b\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: S3 key prefix of \"s3://bucket/a/../b\" has an empty, \".\" or "
     "\"..\" segment"},
    {"url: // in prefix", "storage:\n  url: s3://bucket/a//b\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: S3 key prefix of \"s3://bucket/a//b\" has an empty, \".\" or "
     "\"..\" segment"},
    {"url: space in prefix", "storage:\n  url: \"s3://bucket/a b\"\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid character in the S3 key prefix of \"s3://bucket/a b\" "
     "(allowed: letters, digits, / ! - _ . * ' ( ))"},
    {"url: %-escape in prefix", "storage:\n  url: s3://bucket/%2e%2e\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid character in the S3 key prefix of \"s3://bucket/%2e%2e\" "
     "(allowed: letters, digits, / ! - _ . * ' ( ))"},
    {"url: file with host", "storage:\n  url: file://relative/dir\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: file URL must be file:///absolute/dir (no host), got "
     "\"file://relative/dir\""},
    {"url: file root", "storage:\n  url: file:///\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: file URL must name a directory below /, got \"file:///\""},
    {"url: azure without container", "storage:\n  url: azure://myaccount\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid or missing Azure container name in \"azure://myaccount\" "
     "(azure://account/container: 3-63 lowercase letters, digits and single hyphens, a letter "
     "or digit at both ends)"},
    {"url: azure uppercase account", "storage:\n  url: azure://MyAccount/c1\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid Azure storage account name in \"azure://MyAccount/c1\" "
     "(3-24 lowercase letters and digits)"},
    {"url: azure account too long",
     "storage:\n  url: azure://abcdefghijklmnopqrstuvwxy/c1\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid Azure storage account name in "
     "\"azure://abcdefghijklmnopqrstuvwxy/c1\" (3-24 lowercase letters and digits)"},
    {"url: azure container with --", "storage:\n  url: azure://acct/a--b\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: invalid or missing Azure container name in \"azure://acct/a--b\" "
     "(azure://account/container: 3-63 lowercase letters, digits and single hyphens, a letter "
     "or digit at both ends)"},
    {"url: azure .. in prefix", "storage:\n  url: azure://acct/cont/a/../b\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: blob name prefix of \"azure://acct/cont/a/../b\" has an empty, "
     "\".\" or \"..\" segment"},
    {"url: azure account:key pasted", "storage:\n  url: azure://acct:c2VjcmV0/cont\n", 0,
     -EINVAL, "t.yaml:2:8: storage.url: what follows s3:// or azure:// is a bucket or account "
     "name, without ':' (not echoed: it may be a credential); an endpoint's port goes in "
     "storage.endpoint, credentials in their own keys"},
    {"url: file with ..", "storage:\n  url: file:///var/../etc\n", 0, -EINVAL,
     "t.yaml:2:8: storage.url: file URL \"file:///var/../etc\" has an empty, \".\" or \"..\" "
     "path segment"},
    {"url: empty", "storage:\n  url: \"\"\n", 0, -EINVAL, "t.yaml:2:8: storage.url: must not be empty"},
    {"url: null", "storage:\n  url:\n", 0, -EINVAL, "t.yaml:2:7: storage.url: must not be empty"},
    {"endpoint: ftp", "storage:\n  endpoint: ftp://x\n", 0, -EINVAL,
     "t.yaml:2:13: storage.endpoint: expected http://host[:port] or https://host[:port], got "
     "\"ftp://x\""},
    {"endpoint: no host", "storage:\n  endpoint: http://\n", 0, -EINVAL,
     "t.yaml:2:13: storage.endpoint: expected http://host[:port] or https://host[:port], got "
     "\"http://\""},
    {"region: space", "storage:\n  region: us east\n", 0, -EINVAL,
     "t.yaml:2:11: storage.region: invalid region \"us east\" (1-64 letters, digits, '-', '_' "
     "or '.')"},
    {"compression: lz4", "storage:\n  compression: lz4\n", 0, -EINVAL,
     "t.yaml:2:16: storage.compression: expected none or zstd, got \"lz4\""},

    /* names */
    {"default_export: ../x", "servers:\n  nbd:\n    default_export: ../x\n", 0, -EINVAL,
     "t.yaml:3:21: servers.nbd.default_export: invalid export name \"../x\" " NAME_RULES},
    {"default_export: .hidden", "servers:\n  nbd:\n    default_export: .hidden\n", 0, -EINVAL,
     "t.yaml:3:21: servers.nbd.default_export: invalid export name \".hidden\" " NAME_RULES},
    {"default_export: a/b", "servers:\n  nbd:\n    default_export: a/b\n", 0, -EINVAL,
     "t.yaml:3:21: servers.nbd.default_export: invalid export name \"a/b\" " NAME_RULES},
    {"default_export: %2F", "servers:\n  nbd:\n    default_export: \"%2F\"\n", 0, -EINVAL,
     "t.yaml:3:21: servers.nbd.default_export: invalid export name \"%2F\" " NAME_RULES},
    {"node_id: space", "node_id: a b\n", 0, -EINVAL,
     "t.yaml:1:10: node_id: invalid node id \"a b\" (1-128 letters, digits, '.', '_', ':', '@' "
     "or '-')"},

    /* host:port */
    {"tcp: no port", "servers:\n  nbd:\n    tcp: localhost\n", 0, -EINVAL,
     "t.yaml:3:10: servers.nbd.tcp: " HOSTPORT "\"localhost\""},
    {"tcp: port 0", "servers:\n  nbd:\n    tcp: localhost:0\n", 0, -EINVAL,
     "t.yaml:3:10: servers.nbd.tcp: " HOSTPORT "\"localhost:0\""},
    {"tcp: port 65536", "servers:\n  nbd:\n    tcp: localhost:65536\n", 0, -EINVAL,
     "t.yaml:3:10: servers.nbd.tcp: " HOSTPORT "\"localhost:65536\""},
    {"tcp: IPv6 without brackets", "servers:\n  nbd:\n    tcp: ::1:80\n", 0, -EINVAL,
     "t.yaml:3:10: servers.nbd.tcp: " HOSTPORT "\"::1:80\""},
    {"listen: space", "servers:\n  api:\n    listen: \"127.0.0.1: 80\"\n", 0, -EINVAL,
     "t.yaml:3:13: servers.api.listen: " HOSTPORT "\"127.0.0.1: 80\""},
    {"allowed_hosts: a slash", "servers:\n  api:\n    allowed_hosts: a.example,b/c\n", 0,
     -EINVAL, "t.yaml:3:20: servers.api.allowed_hosts: expected host names separated by "
     "commas, got \"a.example,b/c\""},

    /* strings */
    {"required string empty", "cache:\n  dir:\n", 0, -EINVAL,
     "t.yaml:2:7: cache.dir: must not be empty"},
    {"newline in a path", "cache:\n  dir: \"/a\\nb\"\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: must not contain control characters"},
    {"NUL escape in a value", "cache:\n  dir: \"/a\\0b\"\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: value contains a NUL character"},
    {"unix socket path too long",
     "servers:\n  nbd:\n    unix_socket: "
     "/sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
     "ssssssssssssssssssss\n",
     0, -EINVAL,
     "t.yaml:3:18: servers.nbd.unix_socket: is longer than 107 bytes (the limit for a unix "
     "socket path)"},

    /* ${ENV} */
    {"unset env var", "storage:\n  encryption_password: ${GFS_TEST_UNSET_VAR}\n", 0, -EINVAL,
     "t.yaml:2:24: storage.encryption_password: environment variable GFS_TEST_UNSET_VAR is not "
     "set"},
    {"unset env var mid-value", "cache:\n  dir: /base/${GFS_TEST_UNSET_VAR}/x\n", 0, -EINVAL,
     "t.yaml:2:14: cache.dir: environment variable GFS_TEST_UNSET_VAR is not set"},
    {"unset env var, quoted", "cache:\n  dir: \"/base/${GFS_TEST_UNSET_VAR}\"\n", 0, -EINVAL,
     "t.yaml:2:15: cache.dir: environment variable GFS_TEST_UNSET_VAR is not set"},
    {"unset env var, block scalar", "cache:\n  dir: |\n    ${GFS_TEST_UNSET_VAR}\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: environment variable GFS_TEST_UNSET_VAR is not set"},
    {"env: bad name", "cache:\n  dir: /x/${1BAD}\n", 0, -EINVAL,
     "t.yaml:2:11: cache.dir: bad ${...}: expected ${NAME} or ${NAME:-default}"},
    {"env: empty name", "cache:\n  dir: /x/${}\n", 0, -EINVAL,
     "t.yaml:2:11: cache.dir: bad ${...}: expected ${NAME} or ${NAME:-default}"},
    {"env: unterminated", "cache:\n  dir: /x/${HOME\n", 0, -EINVAL,
     "t.yaml:2:11: cache.dir: unterminated ${ (missing '}')"},
    {"env: unterminated default", "cache:\n  dir: \"/x/${HOME:-abc\"\n", 0, -EINVAL,
     "t.yaml:2:12: cache.dir: unterminated ${ (missing '}')"},
    {"env: other operator", "cache:\n  dir: /x/${HOME:=a}\n", 0, -EINVAL,
     "t.yaml:2:11: cache.dir: bad ${...}: expected ${NAME} or ${NAME:-default}"},

    /* anchors, aliases, tags (billion laughs) */
    {"anchor on a value", "cache:\n  dir: &d /x\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: YAML anchors and aliases are not allowed"},
    {"alias", "cache:\n  dir: *d\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: YAML anchors and aliases are not allowed"},
    {"anchor on a section", "cache: &c\n  dir: /x\nstorage: *c\n", 0, -EINVAL,
     "t.yaml:1:8: cache: YAML anchors and aliases are not allowed"},
    {"alias as a key", "cache:\n  *k : /x\n", 0, -EINVAL,
     "t.yaml:2:3: cache: YAML anchors and aliases are not allowed"},
    {"merge key", "cache:\n  <<: *base\n", 0, -EINVAL, "t.yaml:2:3: cache: unknown key \"<<\""},
    {"anchor on the root", "&root\ncache:\n  dir: /x\n", 0, -EINVAL,
     "t.yaml:1:1: YAML anchors and aliases are not allowed"},
    {"billion laughs",
     "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
     "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
     0, -EINVAL, "t.yaml:1:1: a: unknown key"},
    {"billion laughs inside a known key",
     "cache:\n  dir: &a [\"lol\",\"lol\"]\n  disk_size: [*a,*a]\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: YAML anchors and aliases are not allowed"},
    {"tag on a value", "cache:\n  dir: !!str /x\n", 0, -EINVAL,
     "t.yaml:2:8: cache.dir: YAML tags are not allowed"},
    {"custom tag on a section", "cache: !custom\n  dir: /x\n", 0, -EINVAL,
     "t.yaml:1:8: cache: YAML tags are not allowed"},

    /* duplicates */
    {"duplicate key", "cache:\n  dir: /x\n  dir: /y\n", 0, -EINVAL,
     "t.yaml:3:3: cache.dir: duplicate key (first set at line 2)"},
    {"duplicate section", "cache:\n  dir: /x\nstorage: {}\ncache:\n  disk_size_gb: 1\n", 0,
     -EINVAL, "t.yaml:4:1: cache: duplicate key (first set at line 1)"},
    {"duplicate top-level key", "node_id: a\nnode_id: b\n", 0, -EINVAL,
     "t.yaml:2:1: node_id: duplicate key (first set at line 1)"},
    {"duplicate in flow style", "servers: {nbd: {workers: 1, workers: 2}}\n", 0, -EINVAL,
     "t.yaml:1:29: servers.nbd.workers: duplicate key (first set at line 1)"},

    /* documents and encoding */
    {"two documents", "cache:\n  dir: /a\n---\ncache:\n  dir: /b\n", 0, -EINVAL,
     "t.yaml:3:1: only one YAML document is allowed"},
    {"non-UTF-8 byte", "cache:\n  dir: /caf\xe9\n", 0, -EINVAL,
     "t.yaml:2:12: bad input: incomplete UTF-8 octet sequence"},
    {"invalid UTF-8 lead byte", "cache:\n  dir: /\xff\n", 0, -EINVAL,
     "t.yaml:2:9: bad input: invalid leading UTF-8 octet (byte 0xff)"},
    {"NUL byte in the middle", "cache:\n  dir: /a\0b\n", 19, -EINVAL,
     "t.yaml:2:10: bad input: NUL byte"},
    {"control character", "cache:\n  dir: /a\x01z\n", 0, -EINVAL,
     "t.yaml:2:10: bad input: control characters are not allowed (byte 0x01)"},
    {"UTF-16 text", "\xff\xfe" "c\0a\0", 6, -EINVAL, "t.yaml:1:4: bad input: NUL byte"},
};

static void test_bad_inputs(void **state)
{
    (void)state;
    unsetenv("GFS_TEST_UNSET_VAR");
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        size_t len = c->len ? c->len : strlen(c->yaml);
        glidefs_config *cfg = (glidefs_config *)(uintptr_t)1; /* must be reset to NULL */
        char err[1024];
        memset(err, 'Z', sizeof(err));
        int rc = glidefs_config_parse(c->yaml, len, "t.yaml", &cfg, err, sizeof(err));
        if (rc != c->rc || strcmp(err, c->msg) != 0 || cfg != NULL) {
            print_error("case %zu (%s):\n  rc  %d (want %d)\n  got  [%s]\n  want [%s]\n", i,
                        c->what, rc, c->rc, err, c->msg);
            fail();
        }
        /* Also fine without an error buffer. */
        assert_int_equal(glidefs_config_parse(c->yaml, len, "t.yaml", &cfg, NULL, 0), c->rc);
        /* A short buffer is truncated, NUL-terminated. */
        char small[12];
        assert_int_equal(glidefs_config_parse(c->yaml, len, "t.yaml", &cfg, small, sizeof(small)),
                         c->rc);
        assert_int_equal(strlen(small), sizeof(small) - 1);
    }
}

static void test_value_too_long(void **state)
{
    (void)state;
    size_t n = GFS_CONFIG_VALUE_MAX + 10;
    char *y = malloc(n + 64);
    assert_non_null(y);
    strcpy(y, "cache:\n  dir: /");
    memset(y + strlen(y), 'd', n);
    strcpy(y + 15 + n, "\n");
    glidefs_config *cfg = NULL;
    char err[512];
    assert_int_equal(parse(y, &cfg, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.yaml:2:8: cache.dir: value is too long (more than 4096 bytes)");

    /* Expansion can make a value too long too. */
    char *big = malloc(3000);
    assert_non_null(big);
    memset(big, 'v', 2999);
    big[2999] = '\0';
    setenv("GFS_T_BIG", big, 1);
    assert_int_equal(parse("cache:\n  dir: /${GFS_T_BIG}/${GFS_T_BIG}\n", &cfg, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.yaml:2:8: cache.dir: value is too long after ${} expansion "
                             "(more than 4096 bytes)");
    unsetenv("GFS_T_BIG");
    free(big);
    free(y);
}

static void test_deep_flow_nesting(void **state)
{
    (void)state;
    /* 100k open brackets: refused at the first one, no deep recursion. */
    size_t n = 100000;
    char *y = malloc(n + 32);
    assert_non_null(y);
    strcpy(y, "cache:\n  dir: ");
    memset(y + 14, '[', n);
    strcpy(y + 14 + n, "\n");
    glidefs_config *cfg = NULL;
    char err[512];
    assert_int_equal(parse(y, &cfg, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.yaml:2:8: cache.dir: expected a single value, got a sequence");
    memset(y, '{', n);
    y[n] = '\0';
    assert_int_equal(parse(y, &cfg, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.yaml:1:2: expected a key name, got a mapping");
    free(y);
}

/* Secret values never show up in an error message. */
static void test_secrets_not_echoed(void **state)
{
    (void)state;
    const char *keys[] = {"secret_access_key", "session_token", "access_key_id",
                          "azure_account_key", "azure_sas_token"};
    char y[256], err[512];
    glidefs_config *cfg = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(y, sizeof(y), "storage:\n  %s: \"hunter2 with space\"\n", keys[i]);
        assert_int_equal(parse(y, &cfg, err, sizeof(err)), -EINVAL);
        assert_null(strstr(err, "hunter2"));
        char want[256];
        snprintf(want, sizeof(want), "storage.%s: must be printable ASCII without spaces", keys[i]);
        assert_non_null(strstr(err, want));
    }
    assert_int_equal(parse("storage:\n  encryption_password: \"hunter2\\x01\"\n", &cfg, err,
                           sizeof(err)),
                     -EINVAL);
    assert_string_equal(err,
                        "t.yaml:2:24: storage.encryption_password: must not contain control "
                        "characters");
    assert_int_equal(parse("servers:\n  api:\n    token: \"hunter2\\t\"\n", &cfg, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.yaml:3:12: servers.api.token: must be printable ASCII without "
                             "spaces");
    assert_int_equal(parse("storage:\n  secret_access_key: [hunter2]\n", &cfg, err, sizeof(err)),
                     -EINVAL);
    assert_null(strstr(err, "hunter2"));

    /* glidefs_config_set: same. */
    cfg = glidefs_config_new();
    assert_int_equal(glidefs_config_set(cfg, "servers.api.token", "hunter2 x", err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "servers.api.token: must be printable ASCII without spaces");
    glidefs_config_free(cfg);
}

/* A credential pasted into a URL (issue 21 item 12) is refused and never
 * echoed, whatever the URL's shape; other URL errors mask the userinfo and
 * the query string too. */
static void test_url_credentials_not_echoed(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value;
    } cases[] = {
        {"storage.url", "s3://AKIAKEYID0000:SeCrEtKeY000@my-bucket/vms"},
        {"storage.url", "s3://AKIAKEYID0000:SeCrEtKeY000@my-bucket"},
        {"storage.url", "s3://AKIAKEYID0000:SeCrEtKeY000@"},
        {"storage.url", "s3://AKIAKEYID0000:SeCrEtKeY000"},
        {"storage.url", "s3://AKIAKEYID0000@my-bucket/SeCrEtKeY000"},
        {"storage.url", "AKIAKEYID0000:SeCrEtKeY000@my-bucket/vms"},
        {"storage.url", "https://AKIAKEYID0000:SeCrEtKeY000@s3.amazonaws.com/my-bucket"},
        {"storage.url", "file://AKIAKEYID0000:SeCrEtKeY000@/var/lib/store"},
        {"storage.url", "s3://my-bucket/p?X-Amz-Credential=AKIAKEYID0000&X-Amz-Signature="
                        "SeCrEtKeY000"},
        {"storage.url", "s3://my-bucket/a b?AKIAKEYID0000=SeCrEtKeY000"},
        {"storage.endpoint", "http://AKIAKEYID0000:SeCrEtKeY000@minio.local:9000"},
        {"storage.endpoint", "https://AKIAKEYID0000:SeCrEtKeY000@"},
        {"storage.endpoint", "ftp://AKIAKEYID0000:SeCrEtKeY000@minio.local"},
    };
    char y[512], err[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        glidefs_config *cfg = NULL;
        const char *leaf = strchr(cases[i].key, '.') + 1;
        snprintf(y, sizeof y, "storage:\n  %s: \"%s\"\n", leaf, cases[i].value);
        err[0] = 0;
        assert_int_equal(parse(y, &cfg, err, sizeof err), -EINVAL);
        if (strstr(err, "AKIAKEYID0000") || strstr(err, "SeCrEtKeY000"))
            fail_msg("load of %s echoed a credential: %s", cases[i].value, err);
        assert_non_null(strstr(err, cases[i].key));
        cfg = glidefs_config_new();
        err[0] = 0;
        assert_int_equal(glidefs_config_set(cfg, cases[i].key, cases[i].value, err, sizeof err),
                         -EINVAL);
        if (strstr(err, "AKIAKEYID0000") || strstr(err, "SeCrEtKeY000"))
            fail_msg("set of %s echoed a credential: %s", cases[i].value, err);
        glidefs_config_free(cfg);
    }
    glidefs_config *cfg = NULL;
    assert_int_equal(parse("storage:\n  url: s3://K3Y:S3CR3T@my-bucket/vms\n", &cfg, err,
                           sizeof err), -EINVAL);
    assert_string_equal(err, "t.yaml:2:8: storage.url: credentials do not belong in a URL "
                             "(user:password@ is refused and not echoed): use "
                             "storage.access_key_id and storage.secret_access_key, or "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    /* a URL that is wrong for another reason is still shown, masked */
    assert_int_equal(parse("storage:\n  url: \"https://K3Y:S3CR3T@host/b?sig=S3CR3T\"\n", &cfg,
                           err, sizeof err), -EINVAL);
    assert_null(strstr(err, "S3CR3T"));
    assert_int_equal(parse("storage:\n  url: \"s3://my-bucket/a b?sig=S3CR3T\"\n", &cfg, err,
                           sizeof err), -EINVAL);
    assert_string_equal(err, "t.yaml:2:8: storage.url: invalid character in the S3 key prefix "
                             "of \"s3://my-bucket/a b?***\" (allowed: letters, digits, / ! - _ "
                             ". * ' ( ))");
}

/* ------------------------------------------------------------------------ */
/* Files                                                                      */
/* ------------------------------------------------------------------------ */

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/gfs-test-config-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_load_file(void **state)
{
    (void)state;
    char path[128], want[512], err[512];
    glidefs_config *cfg = NULL;

    snprintf(path, sizeof(path), "%s/good.yaml", tmpdir);
    write_file(path, full_yaml, strlen(full_yaml));
    assert_int_equal(glidefs_config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->cache_dir, "/srv/cache");
    assert_int_equal(cfg->block_size, 4 * MiB);
    glidefs_config_free(cfg);

    /* Errors name the file as given. */
    snprintf(path, sizeof(path), "%s/bad.yaml", tmpdir);
    const char *bad = "cache:\n  dir: /x\nservers:\n  nbd:\n    sync_delay_ms: fast\n";
    write_file(path, bad, strlen(bad));
    assert_int_equal(glidefs_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want),
             "%s:5:20: servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"fast\"",
             path);
    assert_string_equal(err, want);
    assert_null(cfg);

    /* Missing file. */
    snprintf(path, sizeof(path), "%s/missing.yaml", tmpdir);
    assert_int_equal(glidefs_config_load(path, &cfg, err, sizeof(err)), -ENOENT);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);

    /* A directory. */
    assert_int_equal(glidefs_config_load(tmpdir, &cfg, err, sizeof(err)), -EISDIR);
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", tmpdir);
    assert_string_equal(err, want);

    /* Unreadable (not meaningful as root, who reads anything). */
    if (geteuid() != 0) {
        snprintf(path, sizeof(path), "%s/secret.yaml", tmpdir);
        write_file(path, "{}\n", 3);
        assert_int_equal(chmod(path, 0), 0);
        assert_int_equal(glidefs_config_load(path, &cfg, err, sizeof(err)), -EACCES);
        snprintf(want, sizeof(want), "%s: cannot open: Permission denied", path);
        assert_string_equal(err, want);
    }

    /* Exactly 1 MiB of comments is fine; one byte more is refused. */
    size_t n = GFS_CONFIG_FILE_MAX;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n + 1; i++)
        big[i] = (i % 64 == 63) ? '\n' : (i % 64 == 0 ? '#' : 'x');
    snprintf(path, sizeof(path), "%s/big.yaml", tmpdir);
    write_file(path, big, n);
    assert_int_equal(glidefs_config_load(path, &cfg, err, sizeof(err)), 0);
    glidefs_config_free(cfg);
    write_file(path, big, n + 1);
    assert_int_equal(glidefs_config_load(path, &cfg, err, sizeof(err)), -EFBIG);
    snprintf(want, sizeof(want), "%s: larger than the 1048576-byte limit for a config file", path);
    assert_string_equal(err, want);
    assert_null(cfg);
    /* The in-memory parser has the same limit. */
    assert_int_equal(glidefs_config_parse(big, n + 1, "mem", &cfg, err, sizeof(err)), -EFBIG);
    assert_string_equal(err, "mem: larger than the 1048576-byte limit for a config file");
    free(big);

    /* Bad arguments. */
    assert_int_equal(glidefs_config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_int_equal(glidefs_config_load(path, NULL, err, sizeof(err)), -EINVAL);
    assert_int_equal(glidefs_config_parse(NULL, 5, "x", &cfg, err, sizeof(err)), -EINVAL);
}

/* servers.vhost_user.dir: off by default, an absolute path when set. */
static void test_vhost_user_dir(void **state)
{
    (void)state;
    glidefs_config *cfg = glidefs_config_new();
    assert_null(cfg->vhost_user_dir);
    glidefs_config_free(cfg);
    cfg = parse_ok("servers:\n  vhost_user:\n    dir: /run/glidefs/vu\n");
    assert_string_equal(cfg->vhost_user_dir, "/run/glidefs/vu");
    assert_get(cfg, "servers.vhost_user.dir", "/run/glidefs/vu");
    glidefs_config_free(cfg);
    char err[512] = "";
    cfg = NULL;
    assert_int_equal(parse("servers:\n  vhost_user:\n    dir: run/vu\n", &cfg, err, sizeof(err)),
                     -EINVAL);
    assert_null(cfg);
    assert_non_null(strstr(err, "absolute"));
    assert_int_equal(parse("servers:\n  vhost_user:\n    socket: /x\n", &cfg, err, sizeof(err)),
                     -EINVAL);
}

/* examples/glidefs.yaml must load with no environment set up. */
static void test_example_file(void **state)
{
    (void)state;
    /* __FILE__ is this source file as the compiler saw it (meson passes a
     * path relative to the build directory, where tests run). */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", __FILE__);
    char *slash = strrchr(path, '/');
    if (slash)
        snprintf(slash + 1, sizeof(path) - (size_t)(slash + 1 - path), "../../examples/glidefs.yaml");
    else
        snprintf(path, sizeof(path), "../../examples/glidefs.yaml");
    if (access(path, R_OK) != 0) {
        print_message("example config not found at %s, skipping\n", path);
        skip();
    }
    const char *vars[] = {"GLIDEFS_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                          "AWS_SESSION_TOKEN", "GLIDEFS_PASSWORD", "GLIDEFS_NODE_ID",
                          "GLIDEFS_API_TOKEN"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    glidefs_config *cfg = NULL;
    char err[512] = "";
    int rc = glidefs_config_load(path, &cfg, err, sizeof(err));
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->storage_url, "s3://my-bucket/vms");
    assert_null(cfg->storage_endpoint);
    assert_null(cfg->encryption_password);
    assert_string_equal(cfg->nbd_tcp, "127.0.0.1:10809");
    assert_int_equal(cfg->block_size, 131072);
    assert_int_equal(cfg->sync_delay_ms, 8000);
    glidefs_config_free(cfg);

    setenv("GLIDEFS_PASSWORD", "from env", 1);
    assert_int_equal(glidefs_config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->encryption_password, "from env");
    glidefs_config_free(cfg);
    unsetenv("GLIDEFS_PASSWORD");
}

/* ------------------------------------------------------------------------ */
/* set / get                                                                  */
/* ------------------------------------------------------------------------ */

static const char *const all_keys[] = {
    "cache.dir", "cache.disk_size_gb", "cache.disk_size", "storage.url", "storage.endpoint",
    "storage.region", "storage.access_key_id", "storage.secret_access_key",
    "storage.session_token", "storage.ca_bundle", "storage.tls_verify",
    "storage.max_connections", "storage.timeout_ms", "storage.max_retries",
    "storage.addressing", "storage.checksum", "storage.credential_refresh_s",
    "storage.encryption_password", "storage.compression", "storage.compression_level",
    "node_id", "servers.shutdown_timeout_s", "servers.lease_timeout_ms",
    "servers.nbd.unix_socket", "servers.nbd.tcp", "servers.nbd.auto_create_size_gb",
    "servers.nbd.auto_create_size", "servers.nbd.blocks_per_batch",
    "servers.nbd.sync_delay_ms", "servers.nbd.max_dirty_age_ms",
    "servers.nbd.upload_parallel", "servers.nbd.block_size", "servers.nbd.default_export",
    "servers.nbd.workers", "servers.api.listen", "servers.api.unix_socket",
    "servers.api.token", "servers.nbd.insecure_tcp", "servers.nbd.max_connections",
    "servers.nbd.handshake_timeout_ms", "servers.nbd.reply_timeout_ms",
    "servers.nbd.buffer_memory", "servers.nbd.connection_buffer_memory",
    "servers.api.allowed_hosts", "servers.api.max_connections",
    "servers.api.max_connections_per_client", "servers.api.request_timeout_ms",
};

static int is_secret(const char *k)
{
    return strcmp(k, "storage.secret_access_key") == 0 ||
           strcmp(k, "storage.session_token") == 0 ||
           strcmp(k, "storage.encryption_password") == 0 || strcmp(k, "servers.api.token") == 0;
}

static void test_set_get_round_trip(void **state)
{
    (void)state;
    /* Every key's text form, set into a fresh config, reads back the same. */
    glidefs_config *src = parse_ok(full_yaml);
    glidefs_config *dst = glidefs_config_new();
    char buf[GFS_CONFIG_VALUE_MAX + 64], again[GFS_CONFIG_VALUE_MAX + 64], err[512];
    for (size_t i = 0; i < sizeof(all_keys) / sizeof(all_keys[0]); i++) {
        const char *k = all_keys[i];
        assert_int_equal(glidefs_config_get(src, k, buf, sizeof(buf)), 0);
        if (is_secret(k)) {
            assert_string_equal(buf, "***");
            continue;
        }
        int rc = glidefs_config_set(dst, k, buf, err, sizeof(err));
        if (rc != 0) {
            print_error("set %s=%s: %s\n", k, buf, err);
            fail();
        }
        assert_int_equal(glidefs_config_get(dst, k, again, sizeof(again)), 0);
        assert_string_equal(buf, again);
    }
    glidefs_config_free(src);
    glidefs_config_free(dst);
}

static void test_set_get(void **state)
{
    (void)state;
    glidefs_config *cfg = glidefs_config_new();
    char buf[256], err[512];

    assert_int_equal(glidefs_config_set(cfg, "servers.nbd.sync_delay_ms", "100", err, sizeof(err)),
                     0);
    assert_int_equal(cfg->sync_delay_ms, 100);
    assert_get(cfg, "servers.nbd.sync_delay_ms", "100");

    /* Same validation as the loader, and a failed set changes nothing. */
    assert_int_equal(
        glidefs_config_set(cfg, "servers.nbd.sync_delay_ms", "fast", err, sizeof(err)), -EINVAL);
    assert_string_equal(err,
                        "servers.nbd.sync_delay_ms: expected an integer 0..3600000, got \"fast\"");
    assert_int_equal(cfg->sync_delay_ms, 100);
    assert_int_equal(glidefs_config_set(cfg, "storage.url", "s3://AB", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "storage.url: invalid S3 bucket name \"AB\" " BUCKET_RULES);
    assert_string_equal(cfg->storage_url, "file:///var/lib/glidefs/store");
    assert_int_equal(glidefs_config_set(cfg, "storage.url", NULL, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "storage.url: must not be empty");
    assert_int_equal(glidefs_config_set(cfg, "servers.nbd.workers", NULL, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "servers.nbd.workers: expected an integer 1..1024, got an empty value");

    /* Normalised forms. */
    assert_int_equal(glidefs_config_set(cfg, "storage.url", "file:///tmp/store/", err, sizeof(err)),
                     0);
    assert_get(cfg, "storage.url", "file:///tmp/store");
    assert_int_equal(glidefs_config_set(cfg, "servers.nbd.tcp", "10809", err, sizeof(err)), 0);
    assert_get(cfg, "servers.nbd.tcp", "127.0.0.1:10809");
    assert_int_equal(glidefs_config_set(cfg, "servers.nbd.tcp", "", err, sizeof(err)), 0);
    assert_null(cfg->nbd_tcp);
    assert_get(cfg, "servers.nbd.tcp", "");
    assert_int_equal(glidefs_config_set(cfg, "servers.api.listen", NULL, err, sizeof(err)), 0);
    assert_string_equal(cfg->api_listen, "");
    assert_int_equal(glidefs_config_set(cfg, "servers.nbd.block_size", "64KiB", err, sizeof(err)),
                     0);
    assert_int_equal(cfg->block_size, 65536);
    assert_int_equal(glidefs_config_set(cfg, "cache.disk_size", "512M", err, sizeof(err)), 0);
    assert_int_equal(cfg->cache_disk_size, 512 * MiB);
    assert_get(cfg, "cache.disk_size_gb", "0");
    assert_int_equal(glidefs_config_set(cfg, "cache.disk_size_gb", "7", err, sizeof(err)), 0);
    assert_int_equal(cfg->cache_disk_size, 7 * GiB);
    assert_int_equal(glidefs_config_set(cfg, "storage.tls_verify", "off", err, sizeof(err)), 0);
    assert_get(cfg, "storage.tls_verify", "false");

    /* Secrets: set, masked on get, cleared with NULL or "". */
    assert_get(cfg, "storage.encryption_password", "");
    assert_int_equal(
        glidefs_config_set(cfg, "storage.encryption_password", "p w", err, sizeof(err)), 0);
    assert_string_equal(cfg->encryption_password, "p w");
    assert_get(cfg, "storage.encryption_password", "***");
    assert_int_equal(glidefs_config_set(cfg, "storage.encryption_password", "", err, sizeof(err)),
                     0);
    assert_null(cfg->encryption_password);
    assert_int_equal(glidefs_config_set(cfg, "storage.secret_access_key", "abc", err, sizeof(err)),
                     0);
    assert_get(cfg, "storage.secret_access_key", "***");
    assert_int_equal(glidefs_config_set(cfg, "storage.secret_access_key", NULL, err, sizeof(err)),
                     0);
    assert_get(cfg, "storage.secret_access_key", "");

    /* Unknown keys; sections are not keys. */
    assert_int_equal(glidefs_config_set(cfg, "servers.nbd.nope", "1", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "unknown key \"servers.nbd.nope\"");
    assert_int_equal(glidefs_config_set(cfg, "cache", "x", err, sizeof(err)), -ENOENT);
    assert_int_equal(glidefs_config_get(cfg, "cache", buf, sizeof(buf)), -ENOENT);
    assert_int_equal(glidefs_config_get(cfg, "nope", buf, sizeof(buf)), -ENOENT);
    assert_int_equal(glidefs_config_set(cfg, "", "x", err, sizeof(err)), -ENOENT);
    assert_int_equal(glidefs_config_set(cfg, "a\nb", "x", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "unknown key \"a\\x0ab\"");

    /* Small buffers. */
    assert_int_equal(glidefs_config_get(cfg, "cache.dir", buf, 5), -ERANGE);
    assert_int_equal(glidefs_config_get(cfg, "cache.dir", buf, sizeof("/var/cache/glidefs")), 0);
    assert_string_equal(buf, "/var/cache/glidefs");
    assert_int_equal(glidefs_config_get(cfg, "cache.dir", buf, 0), -ERANGE);

    /* Bad arguments. */
    assert_int_equal(glidefs_config_set(NULL, "cache.dir", "/x", err, sizeof(err)), -EINVAL);
    assert_int_equal(glidefs_config_set(cfg, NULL, "/x", err, sizeof(err)), -EINVAL);
    assert_int_equal(glidefs_config_get(NULL, "cache.dir", buf, sizeof(buf)), -EINVAL);
    assert_int_equal(glidefs_config_get(cfg, "cache.dir", NULL, 10), -EINVAL);
    assert_int_equal(glidefs_config_set(cfg, "cache.dir", "/y", NULL, 0), 0);

    glidefs_config_free(cfg);
}

static void log_fn(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    (void)msg;
}

static void test_set_log(void **state)
{
    (void)state;
    glidefs_config *cfg = glidefs_config_new();
    int token;
    glidefs_config_set_log(cfg, log_fn, &token, GLIDEFS_LOG_DEBUG);
    assert_ptr_equal(cfg->log.fn, log_fn);
    assert_ptr_equal(cfg->log.arg, &token);
    assert_int_equal(cfg->log.max_level, GLIDEFS_LOG_DEBUG);
    glidefs_config_set_log(NULL, log_fn, NULL, 0); /* no-op */
    glidefs_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Helpers for other modules                                                  */
/* ------------------------------------------------------------------------ */

static void test_store_url_parse(void **state)
{
    (void)state;
    struct gfs_store_url u;
    char why[256];
    assert_int_equal(gfs_store_url_parse("s3://my-bucket/vms/prod", &u, why, sizeof(why)), 0);
    assert_int_equal(u.kind, GFS_STORE_S3);
    assert_string_equal(u.bucket, "my-bucket");
    assert_string_equal(u.path, "vms/prod");
    assert_int_equal(gfs_store_url_parse("s3://my-bucket", &u, why, sizeof(why)), 0);
    assert_string_equal(u.bucket, "my-bucket");
    assert_string_equal(u.path, "");
    assert_int_equal(gfs_store_url_parse("file:///var/lib/store", &u, why, sizeof(why)), 0);
    assert_int_equal(u.kind, GFS_STORE_FILE);
    assert_string_equal(u.bucket, "");
    assert_string_equal(u.path, "/var/lib/store");
    /* Only the normal form (what the loader stores) is accepted. */
    assert_int_equal(gfs_store_url_parse("s3://my-bucket/vms/", &u, why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "storage URL is not in normal form (expected s3://my-bucket/vms)");
    assert_int_equal(gfs_store_url_parse("azure://acct1/my-cont/vms/prod", &u, why,
                                         sizeof(why)), 0);
    assert_int_equal(u.kind, GFS_STORE_AZURE);
    assert_string_equal(u.account, "acct1");
    assert_string_equal(u.bucket, "my-cont");
    assert_string_equal(u.path, "vms/prod");
    assert_int_equal(gfs_store_url_parse("azure://acct1/my-cont", &u, why, sizeof(why)), 0);
    assert_string_equal(u.bucket, "my-cont");
    assert_string_equal(u.path, "");
    assert_int_equal(gfs_store_url_parse("azure://acct1/my-cont/vms/", &u, why, sizeof(why)),
                     -EINVAL);
    assert_string_equal(why, "storage URL is not in normal form (expected "
                             "azure://acct1/my-cont/vms)");
    assert_int_equal(gfs_store_url_parse("http://x", &u, why, sizeof(why)), -EINVAL);
    assert_int_equal(gfs_store_url_parse(NULL, &u, why, sizeof(why)), -EINVAL);
}

/* azure:// and its credentials: the URL normalised, the secrets masked. */
static void test_azure_storage(void **state)
{
    (void)state;
    glidefs_config *cfg = parse_ok("storage:\n"
                                   "  url: azure://acct1/my-cont/vms/prod/\n"
                                   "  endpoint: http://127.0.0.1:10000/acct1\n"
                                   "  azure_account_key: c2VjcmV0a2V5\n"
                                   "  azure_sas_token: \"?sv=2021-08-06&sig=abc%2F\"\n");
    assert_string_equal(cfg->storage_url, "azure://acct1/my-cont/vms/prod");
    assert_string_equal(cfg->storage_endpoint, "http://127.0.0.1:10000/acct1");
    assert_string_equal(cfg->storage_azure_account_key, "c2VjcmV0a2V5");
    assert_string_equal(cfg->storage_azure_sas_token, "?sv=2021-08-06&sig=abc%2F");
    assert_get(cfg, "storage.azure_account_key", "***");
    assert_get(cfg, "storage.azure_sas_token", "***");
    glidefs_config_free(cfg);
}

struct diffs {
    char keys[8][64];
    int n;
};

static void note_diff(void *arg, const char *key)
{
    struct diffs *d = arg;
    if (d->n < 8)
        snprintf(d->keys[d->n], sizeof d->keys[0], "%s", key);
    d->n++;
}

/* gfs_config_diff names exactly the keys that differ: secrets too (though
 * they read as "***"), one name for two keys of one setting. */
static void test_config_diff(void **state)
{
    (void)state;
    const char *base = "cache:\n  dir: /tmp/c\n  disk_size: 2G\nstorage:\n  url: file:///tmp/s\n"
                       "  secret_access_key: one\n";
    const char *other = "cache:\n  dir: /tmp/c\n  disk_size_gb: 3\nstorage:\n  url: file:///tmp/s\n"
                        "  secret_access_key: two\n  timeout_ms: 1234\n";
    glidefs_config *a = NULL, *b = NULL;
    char err[256];
    assert_int_equal(glidefs_config_parse(base, strlen(base), "a", &a, err, sizeof err), 0);
    assert_int_equal(glidefs_config_parse(other, strlen(other), "b", &b, err, sizeof err), 0);
    struct diffs d = {.n = 0};
    assert_int_equal(gfs_config_diff(a, a, note_diff, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(gfs_config_diff(a, b, note_diff, &d), 3);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.keys[0], "cache.disk_size_gb"); /* the first name of the setting */
    assert_string_equal(d.keys[1], "storage.secret_access_key");
    assert_string_equal(d.keys[2], "storage.timeout_ms");
    glidefs_config_free(a);
    glidefs_config_free(b);
}

static void test_hostport_split(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(gfs_hostport_split("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(gfs_hostport_split("[::1]:10809", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 10809);
    assert_int_equal(gfs_hostport_split("example.com:65535", host, sizeof(host), &port), 0);
    assert_string_equal(host, "example.com");
    assert_int_equal(port, 65535);
    assert_int_equal(gfs_hostport_split("example.com:65535", host, 4, &port), -ERANGE);
    assert_int_equal(gfs_hostport_split("example.com", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(gfs_hostport_split("[::1]", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(gfs_hostport_split("[x]:1", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(gfs_hostport_split("h:1:2", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(gfs_hostport_split("h:", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(gfs_hostport_split("h:012345", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(gfs_hostport_split(NULL, host, sizeof(host), &port), -EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Mutation fuzz: every outcome is 0, or an error with a one-line message     */
/* naming the input; never a crash or leak (run under ASan).                  */
/* ------------------------------------------------------------------------ */

/* The S3 keys of issue 20 (kept out of full_yaml: the mutation fuzz below
 * is seeded on its exact text). */
static void test_s3_aws_keys(void **state)
{
    (void)state;
    glidefs_config *cfg = parse_ok("storage:\n  addressing: virtual\n  checksum: off\n"
                                   "  credential_refresh_s: 30\n");
    assert_string_equal(cfg->storage_addressing, "virtual");
    assert_string_equal(cfg->storage_checksum, "off");
    assert_int_equal(cfg->storage_credential_refresh_s, 30);
    glidefs_config_free(cfg);
    cfg = parse_ok("storage:\n  addressing: path\n  checksum: on\n");
    assert_string_equal(cfg->storage_addressing, "path");
    assert_string_equal(cfg->storage_checksum, "on");
    glidefs_config_free(cfg);
}

static void test_mutation_fuzz(void **state)
{
    (void)state;
    size_t len = strlen(full_yaml);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    uint32_t seed = 12345;
    static const char alphabet[] = ":-[]{}&*!|>'\"#%@`\t\n\r ,?$0aZ.\\\x80\xff\0";
    for (int iter = 0; iter < 5000; iter++) {
        memcpy(buf, full_yaml, len + 1);
        int muts = 1 + iter % 4;
        for (int m = 0; m < muts; m++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            buf[pos] = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
        }
        glidefs_config *cfg = NULL;
        char err[512] = "";
        int rc = glidefs_config_parse(buf, len, "fuzz.yaml", &cfg, err, sizeof(err));
        if (rc == 0) {
            assert_non_null(cfg);
            glidefs_config_free(cfg);
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_null(cfg);
            assert_true(strncmp(err, "fuzz.yaml:", 10) == 0);
            assert_null(strchr(err, '\n'));
            assert_null(strstr(err, "wJalrXUtnFEMI")); /* the secret key */
            assert_null(strstr(err, "s3cr3t-t0ken"));
            assert_null(strstr(err, "correct horse"));
        }
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_inputs_are_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_value_forms),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_value_too_long),
        cmocka_unit_test(test_deep_flow_nesting),
        cmocka_unit_test(test_secrets_not_echoed),
        cmocka_unit_test(test_url_credentials_not_echoed),
        cmocka_unit_test_setup_teardown(test_load_file, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_vhost_user_dir),
        cmocka_unit_test(test_set_get_round_trip),
        cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_set_log),
        cmocka_unit_test(test_store_url_parse),
        cmocka_unit_test(test_azure_storage),
        cmocka_unit_test(test_hostport_split),
        cmocka_unit_test(test_config_diff),
        cmocka_unit_test(test_s3_aws_keys),
        cmocka_unit_test(test_mutation_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
