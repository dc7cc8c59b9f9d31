/*
 * glidefs-ctl — command-line client of glidefsd's REST API (libcurl +
 * jansson): list, status, create, drain, promote, release, resize, delete,
 * compact, scrub, data-key rotation (rekey --data-key) and metrics of exports, and their snapshots and clones (snapshot,
 * snapshots, snapshot-delete, clone); what a fenced node kept aside
 * (fenced-export, fenced-discard). Human-readable output by default; --json
 * prints the API's JSON answer unchanged. `drain` shows progress (bytes
 * left, rate, ETA) while it waits: a second thread polls the export's
 * dirty_bytes while the POST runs.
 *
 * The token: --token-file FILE or $GLIDEFS_TOKEN_FILE (the file's first
 * line), $GLIDEFS_TOKEN, or --token TOKEN - which any local user sees in
 * ps until glidefs-ctl has started and blanked it in its argv.
 *
 * Exit status (glidefs-ctl(1)): 0 done, 1 the API refused or failed,
 * 2 bad usage, 3 the API could not be reached (or did not answer like
 * glidefsd), 4 missing or wrong token, 5 timed out, 6 no such export (or
 * snapshot), 7 a scrub found damage.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "glidefs/glidefs.h"

#ifndef GLIDEFS_CTL_VERSION
#define GLIDEFS_CTL_VERSION "0.0.0"
#endif

enum {
    EXIT_OK = 0,
    EXIT_API = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
    EXIT_AUTH = 4,
    EXIT_TIMEOUT = 5,
    EXIT_NOTFOUND = 6,
    EXIT_DAMAGED = 7, /* scrub ran and found something wrong */
};

#define DEFAULT_API "http://127.0.0.1:8080"
#define MAX_ANSWER (64u * 1024 * 1024)

struct opts {
    const char *api;
    const char *token;
    const char *cacert; /* --cacert / $GLIDEFS_CACERT: the CA of an https:// API */
    bool json;
    bool force, purge;
    long timeout_s; /* 0: none */
    const char *snapshot; /* clone --snapshot SNAP */
    bool force_set, purge_set, timeout_set;
    bool data_key; /* rekey --data-key */
    bool deep;     /* scrub --deep */
    bool repair;   /* scrub --repair */
    bool delete_orphans; /* scrub --delete-orphans */
    /* set --durability, --max-unsynced-s, --max-unsynced-bytes (NULL: unchanged) */
    const char *durability, *max_unsynced_s, *max_unsynced_bytes;
};

static struct opts opt;
static const char *prog = "glidefs-ctl";

__attribute__((format(printf, 1, 2)))
static void errorf(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: glidefs-ctl [--api URL] [--token-file FILE] [--json] COMMAND [ARGS]\n"
            "\n"
            "Manage the exports of a running glidefsd through its REST API.\n"
            "\n"
            "Commands:\n"
            "  list                         exports open on the node\n"
            "  status NAME                  one export in detail\n"
            "  create NAME [SIZE]           create a volume ahead of the first connect\n"
            "  drain NAME [--timeout S]     upload everything dirty; progress on a terminal\n"
            "  promote NAME [--force]       read-only -> read-write (take the write lease)\n"
            "  release NAME [--timeout S]   drain and hand the write lease back\n"
            "  resize NAME SIZE             grow the volume (never shrinks)\n"
            "  set NAME [--durability local|store] [--max-unsynced-s S]\n"
            "      [--max-unsynced-bytes SIZE]\n"
            "                               what a flush waits for, and the bounds on what is\n"
            "                               not yet in the store (0: unbounded), on this node\n"
            "  delete NAME [--purge] [--force]\n"
            "                               remove it from the node (--purge: from the store too)\n"
            "  compact NAME                 rewrite sparse segments now, reclaim space\n"
            "  scrub NAME [--deep|--repair] check the store still holds the export's segments\n"
            "                               whole (--deep: and every block; --repair: deep, and\n"
            "                               write damaged blocks back from the node's cache);\n"
            "      [--delete-orphans]       also delete the orphan objects it reports (segment\n"
            "                               objects nothing keeps); exit 7 if something is\n"
            "                               wrong and not repaired\n"
            "  vhost-user NAME              serve it on a vhost-user-blk socket too (created\n"
            "                               if needed); prints the socket's path\n"
            "  rekey NAME --data-key        rotate an encrypted export's data key: new writes\n"
            "                               at once, old segments re-sealed by compaction\n"
            "  metrics NAME                 I/O, cache, store and latency figures\n"
            "  snapshot NAME SNAP [--timeout S]\n"
            "                               take snapshot SNAP of the export (drains first)\n"
            "  snapshots NAME               the export's snapshots\n"
            "  snapshot-delete NAME SNAP    delete a snapshot (refused while a clone uses it)\n"
            "  clone PARENT CHILD [--snapshot SNAP]\n"
            "                               new export CHILD: a clone of snapshot SNAP of\n"
            "                               PARENT, or of PARENT's current state\n"
            "  fenced-export NAME PATH      write what this node had before it lost the\n"
            "                               write lease to PATH (a new file in glidefsd's\n"
            "                               servers.api.export_dir) as a sparse raw image\n"
            "  fenced-discard NAME          drop that data (it is never uploaded)\n"
            "\n"
            "Options:\n"
            "  --api URL      API base URL (default $GLIDEFS_API, else " DEFAULT_API ");\n"
            "                 unix:/PATH talks to servers.api.unix_socket\n"
            "  --token-file FILE\n"
            "                 read the bearer token from FILE's first line (default\n"
            "                 $GLIDEFS_TOKEN_FILE, else $GLIDEFS_TOKEN)\n"
            "  --token TOKEN  the token itself; visible to every local user in ps: prefer\n"
            "                 --token-file or $GLIDEFS_TOKEN\n"
            "  --cacert FILE  CA certificate(s) that an https:// API's certificate must\n"
            "                 chain to (default $GLIDEFS_CACERT, else the system's)\n"
            "  --json         print the API's JSON answer instead of a summary\n"
            "  -h, --help     this help;  -V, --version  the version\n"
            "\n"
            "SIZE: bytes, or a number with K M G T / KiB MiB GiB TiB (powers of 1024).\n"
            "Exit status: 0 ok, 1 API error, 2 usage, 3 API unreachable, 4 token refused,\n"
            "5 timed out, 6 no such export or snapshot, 7 scrub found damage.\n"
            "See glidefs-ctl(1).\n");
}

/* ------------------------------------------------------------------------ */
/* Formatting                                                                */
/* ------------------------------------------------------------------------ */

static void human(uint64_t v, char *buf, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", v);
    else
        snprintf(buf, len, "%.1f %s", d, units[u]);
}

static void human_secs(double s, char *buf, size_t len)
{
    if (s < 0 || s != s)
        snprintf(buf, len, "?");
    else if (s < 60)
        snprintf(buf, len, "%.0f s", s);
    else if (s < 3600)
        snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, len, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static uint64_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static double jreal(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

static const char *jstr(json_t *o, const char *key, const char *dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static bool jbool(json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

/* ------------------------------------------------------------------------ */
/* HTTP                                                                      */
/* ------------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len;
    bool overflow;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > MAX_ANSWER) {
        b->overflow = true;
        return 0;
    }
    char *p = realloc(b->p, b->len + n + 1);
    if (!p)
        return 0;
    memcpy(p + b->len, ptr, n);
    b->p = p;
    b->len += n;
    p[b->len] = '\0';
    return n;
}

struct answer {
    long status;        /* HTTP status, 0 if none */
    char *body;         /* malloc'd, NUL-terminated */
    json_t *json;       /* parsed body, or NULL */
    char curl_err[CURL_ERROR_SIZE];
    bool overflow;
};

static void answer_free(struct answer *a)
{
    free(a->body);
    json_decref(a->json);
    memset(a, 0, sizeof *a);
}

/* One request: method on path (with query), optional JSON body. timeout_s 0:
 * no overall limit. 0, or -1 when no HTTP answer came (a->curl_err). */
static int http(const char *method, const char *path, const char *body, long timeout_s,
                struct answer *a)
{
    memset(a, 0, sizeof *a);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(a->curl_err, sizeof a->curl_err, "cannot initialise libcurl");
        return -1;
    }
    char url[2048];
    const char *api = opt.api;
    if (strncmp(api, "unix:", 5) == 0) {
        const char *sock = api + 5;
        while (sock[0] == '/' && sock[1] == '/')
            sock++;
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
        snprintf(url, sizeof url, "http://localhost%s", path);
    } else {
        size_t n = strlen(api);
        while (n > 0 && api[n - 1] == '/')
            n--;
        snprintf(url, sizeof url, "%.*s%s", (int)n, api, path);
    }
    struct curl_slist *hdrs = NULL;
    char auth[1024];
    if (opt.token && *opt.token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", opt.token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    struct buf b = { 0 };
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->curl_err);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "glidefs-ctl/" GLIDEFS_CTL_VERSION);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (opt.cacert && *opt.cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, opt.cacert); /* verified, host name too */
    CURLcode rc = curl_easy_perform(h);
    int ret = 0;
    if (rc != CURLE_OK) {
        if (!a->curl_err[0])
            snprintf(a->curl_err, sizeof a->curl_err, "%s", curl_easy_strerror(rc));
        a->overflow = b.overflow;
        ret = -1;
        free(b.p);
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
        a->body = b.p ? b.p : strdup("");
        json_error_t je;
        a->json = a->body ? json_loads(a->body, 0, &je) : NULL;
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return ret;
}

static const char *api_shown(void)
{
    return opt.api;
}

/* Explain a failed request on stderr; returns the exit status. what: e.g.
 * "drain vm1". */
static int report_failure(const char *what, const struct answer *a)
{
    if (a->status == 0) {
        errorf("%s: cannot reach the glidefsd API at %s: %s", what, api_shown(),
               a->overflow ? "the answer is too large" : a->curl_err);
        fprintf(stderr, "  Is glidefsd running, with servers.api.listen (or "
                        "servers.api.unix_socket) at that address? Point --api or GLIDEFS_API "
                        "at it.\n");
        return strstr(a->curl_err, "imed out") ? EXIT_TIMEOUT : EXIT_UNREACHABLE;
    }
    const char *msg = a->json ? jstr(a->json, "error", NULL) : NULL;
    if (!msg) {
        errorf("%s: %s answered HTTP %ld without a glidefsd error message; is --api pointing "
               "at glidefsd's REST API?", what, api_shown(), a->status);
        return a->status == 401 ? EXIT_AUTH : EXIT_UNREACHABLE;
    }
    errorf("%s: %s", what, msg);
    /* The API's advice names query parameters; say them the glidefs-ctl way. */
    if (strstr(msg, "?force=true"))
        fprintf(stderr, "  (with glidefs-ctl, ?force=true is --force)\n");
    if (strstr(msg, "?timeout_s="))
        fprintf(stderr, "  (with glidefs-ctl, ?timeout_s= is --timeout SECONDS)\n");
    switch (a->status) {
    case 401:
        fprintf(stderr, "  Pass the token of servers.api.token with --token-file FILE (or "
                        "GLIDEFS_TOKEN_FILE), GLIDEFS_TOKEN, or --token TOKEN.\n");
        return EXIT_AUTH;
    case 404:
        return EXIT_NOTFOUND;
    case 504:
        return EXIT_TIMEOUT;
    default:
        if (a->status >= 500)
            fprintf(stderr, "  (HTTP %ld; the glidefsd log has the details)\n", a->status);
        return EXIT_API;
    }
}

/* Run one request and handle the generic outcomes: in --json mode print
 * the body; on failure explain and return the exit status (> 0). 0 with
 * a->json set on success. */
static int call(const char *what, const char *method, const char *path, const char *body,
                long timeout_s, struct answer *a)
{
    http(method, path, body, timeout_s, a);
    if (a->status >= 200 && a->status < 300 && a->json) {
        if (opt.json)
            printf("%s", a->body);
        return 0;
    }
    if (a->status >= 200 && a->status < 300) {
        errorf("%s: %s answered HTTP %ld but not with JSON; is --api pointing at glidefsd's "
               "REST API?", what, api_shown(), a->status);
        return EXIT_UNREACHABLE;
    }
    if (opt.json && a->body && a->json)
        printf("%s", a->body);
    return report_failure(what, a);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                  */
/* ------------------------------------------------------------------------ */

static int check_name_of(const char *cmd, const char *name, const char *what, const char *arg)
{
    if (!name) {
        errorf("%s: missing the %s %s", cmd, what, arg);
        return EXIT_USAGE;
    }
    if (!glidefs_name_valid(name)) {
        errorf("%s: \"%s\" is not a valid %s name: use 1 to %d characters of A-Z a-z 0-9 . "
               "_ -, not starting with '.'", cmd, name, what, GLIDEFS_NAME_MAX);
        return EXIT_USAGE;
    }
    return 0;
}

static int check_name(const char *cmd, const char *name)
{
    return check_name_of(cmd, name, "export", "NAME");
}

static int parse_size_arg(const char *cmd, const char *s, uint64_t *out)
{
    int rc = glidefs_parse_size(s, out);
    if (rc < 0 || *out == 0) {
        errorf("%s: cannot parse size \"%s\": give bytes, or a number with K, M, G, T or KiB, "
               "MiB, GiB, TiB (powers of 1024), e.g. 10G", cmd, s);
        return EXIT_USAGE;
    }
    if (*out % 512) {
        errorf("%s: size %s is not a multiple of 512 bytes", cmd, s);
        return EXIT_USAGE;
    }
    return 0;
}

static void print_status(json_t *e)
{
    char a[32], b[32], c[32];
    human(jint(e, "size_bytes"), a, sizeof a);
    printf("name:         %s\n", jstr(e, "name", "?"));
    printf("state:        %s\n", jstr(e, "state", "?"));
    printf("size:         %s (%" PRIu64 " bytes)\n", a, jint(e, "size_bytes"));
    if (jbool(e, "lease_owner"))
        printf("write lease:  held by this node (epoch %" PRIu64 ")\n", jint(e, "lease_epoch"));
    else
        printf("write lease:  not held here (epoch %" PRIu64 ")%s\n", jint(e, "lease_epoch"),
               jbool(e, "fenced") ? "; fenced by a newer writer" : "");
    printf("connections:  %" PRIu64 "\n", jint(e, "connections"));
    human(jint(e, "dirty_bytes"), a, sizeof a);
    uint64_t age = jint(e, "oldest_dirty_age_ms");
    if (age)
        printf("dirty:        %s (oldest write %.1f s ago)\n", a, (double)age / 1000.0);
    else
        printf("dirty:        %s\n", a);
    printf("last sync:    %s\n", jstr(e, "last_sync_time", "never"));
    {
        /* exposure: what losing this node with its disk would lose */
        char bb[32];
        human(jint(e, "max_unsynced_bytes"), bb, sizeof bb);
        printf("durability:   %s (a flush is durable %s); max unsynced %" PRIu64 " s / %s\n",
               jstr(e, "durability", "local"),
               strcmp(jstr(e, "durability", "local"), "store") == 0 ? "in the store"
                                                                    : "on this node",
               jint(e, "max_unsynced_s"), jint(e, "max_unsynced_bytes") ? bb : "0");
    }
    human(jint(e, "cached_bytes"), a, sizeof a);
    printf("cache:        %s cached, hit ratio %.1f%% (%" PRIu64 " hits, %" PRIu64
           " misses)\n", a, 100.0 * jreal(e, "cache_hit_ratio"), jint(e, "cache_hits"),
           jint(e, "cache_misses"));
    human(jint(e, "stored_bytes"), a, sizeof a);
    human(jint(e, "live_bytes"), b, sizeof b);
    printf("store:        %s stored, %s live (overhead %.2f), %" PRIu64 " segments\n", a, b,
           jreal(e, "overhead_ratio"), jint(e, "segments"));
    printf("requests:     %" PRIu64 " PUT, %" PRIu64 " GET, %" PRIu64 " errors, %" PRIu64
           " retries\n", jint(e, "store_puts"), jint(e, "store_gets"), jint(e, "store_errors"),
           jint(e, "store_retries"));
    printf("est. cost:    $%.2f / month\n", jreal(e, "est_monthly_cost_usd"));
    if (json_object_get(e, "prefetched_blocks")) {
        human(jint(e, "prefetch_wasted_bytes"), a, sizeof a);
        printf("cold start:   profile %" PRIu64 " blocks recorded; %" PRIu64 " prefetched, %"
               PRIu64 " read by the client, %s not read", jint(e, "profile_blocks_recorded"),
               jint(e, "prefetched_blocks"), jint(e, "prefetch_hits"), a);
        if (jint(e, "first_read_ms"))
            printf("; first read %" PRIu64 " ms after open", jint(e, "first_read_ms"));
        if (jint(e, "cache_restored_blocks"))
            printf("; %" PRIu64 " blocks kept in the cache from the last close here",
                   jint(e, "cache_restored_blocks"));
        printf("\n");
    }
    if (jint(e, "key_generation"))
        printf("data key:     generation %" PRIu64 " (%" PRIu64 " held; %" PRIu64
               " segments under older ones)\n", jint(e, "key_generation"),
               jint(e, "key_generations"), jint(e, "segments_old_key"));
    if (jint(e, "fenced_bytes")) {
        human(jint(e, "fenced_bytes"), c, sizeof c);
        printf("fenced data:  %s kept aside (never uploaded; see glidefs-ctl fenced-export "
               "and fenced-discard)\n", c);
    }
    printf("last error:   %s\n", jstr(e, "last_error", "none"));
    /* Scrub: shown by daemons that keep its record */
    json_t *sc = json_object_get(e, "scrub");
    if (json_is_object(sc)) {
        if (jstr(sc, "last_time", NULL)) {
            human(jint(sc, "bytes_read"), c, sizeof c);
            printf("last scrub:   %s (%s, %.1f s, %s read): %" PRIu64 " problems\n",
                   jstr(sc, "last_time", "?"), jbool(sc, "deep") ? "deep" : "quick",
                   (double)jint(sc, "duration_ms") / 1000.0, c, jint(sc, "problems"));
        } else {
            printf("last scrub:   never\n");
        }
        if (jint(sc, "interval_s"))
            printf("next scrub:   %s (every %" PRIu64 " s; est. $%.2f / month)\n",
                   jstr(sc, "next_time", "?"), jint(sc, "interval_s"),
                   jreal(sc, "est_monthly_cost_usd"));
    }
    /* Lineage: shown by daemons that know it (GET /api/exports/NAME). */
    json_t *lin = json_object_get(e, "lineage");
    json_t *par = json_object_get(e, "parent");
    if (json_is_array(lin) && json_array_size(lin) > 0 && json_is_object(par)) {
        const char *ps = jstr(par, "snapshot", NULL);
        printf("clone of:     %s, %s%s\n", jstr(par, "name", "?"),
               ps ? "snapshot " : "its state when cloned", ps ? ps : "");
        printf("lineage:      ");
        size_t i;
        json_t *n;
        json_array_foreach(lin, i, n) printf("%s -> ", json_is_string(n) ? json_string_value(n)
                                                                          : "?");
        printf("%s\n", jstr(e, "name", "?"));
    } else if (json_is_array(lin)) {
        printf("clone of:     - (not a clone)\n");
    }
}

static int cmd_list(void)
{
    struct answer a;
    int rc = call("list", "GET", "/api/exports", NULL, 60, &a);
    if (rc || opt.json) {
        answer_free(&a);
        return rc;
    }
    json_t *arr = json_object_get(a.json, "exports");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        printf("no exports open on this node\n");
        answer_free(&a);
        return 0;
    }
    size_t w = 4;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        size_t n = strlen(jstr(e, "name", "?"));
        if (n > w)
            w = n;
    }
    printf("%-*s  %10s  %-4s  %5s  %10s  %-10s  %s\n", (int)w, "NAME", "SIZE", "MODE", "CONNS",
           "DIRTY", "STATE", "LAST SYNC");
    json_array_foreach(arr, i, e) {
        char sz[32], d[32];
        human(jint(e, "size_bytes"), sz, sizeof sz);
        human(jint(e, "dirty_bytes"), d, sizeof d);
        printf("%-*s  %10s  %-4s  %5" PRIu64 "  %10s  %-10s  %s\n", (int)w,
               jstr(e, "name", "?"), sz, jbool(e, "read_only") ? "ro" : "rw",
               jint(e, "connections"), d, jstr(e, "state", "?"),
               jstr(e, "last_sync_time", "never"));
    }
    answer_free(&a);
    return 0;
}

static int cmd_status(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s", name);
    snprintf(what, sizeof what, "status %s", name);
    struct answer a;
    int rc = call(what, "GET", path, NULL, 60, &a);
    if (rc == EXIT_NOTFOUND)
        fprintf(stderr, "  'glidefs-ctl list' shows the exports open on this node.\n");
    if (!rc && !opt.json)
        print_status(a.json);
    answer_free(&a);
    return rc;
}

static int cmd_create(const char *name, const char *size)
{
    char body[128], what[200];
    snprintf(what, sizeof what, "create %s", name);
    uint64_t bytes = 0;
    if (size) {
        int rc = parse_size_arg(what, size, &bytes);
        if (rc)
            return rc;
        snprintf(body, sizeof body, "{\"name\": \"%s\", \"size_bytes\": %" PRIu64 "}", name,
                 bytes);
    } else {
        snprintf(body, sizeof body, "{\"name\": \"%s\"}", name);
    }
    struct answer a;
    int rc = call(what, "POST", "/api/exports", body, 120, &a);
    if (!rc && !opt.json) {
        char h[32];
        human(jint(a.json, "size_bytes"), h, sizeof h);
        printf("created %s (%s)\n", name, h);
    }
    answer_free(&a);
    return rc;
}

/* drain: the POST in a thread, progress polled here. */
struct drain_job {
    char path[256];
    char what[200];
    long timeout_s;
    struct answer a;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void *drain_main(void *arg)
{
    struct drain_job *j = arg;
    http("POST", j->path, NULL, j->timeout_s ? j->timeout_s + 30 : 0, &j->a);
    pthread_mutex_lock(&j->lock);
    j->done = true;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait up to `secs` for the drain; true when it is done. */
static bool drain_wait(struct drain_job *j, double secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(secs * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&j->lock);
    while (!j->done && pthread_cond_timedwait(&j->cond, &j->lock, &ts) == 0) {
    }
    bool done = j->done;
    pthread_mutex_unlock(&j->lock);
    return done;
}

static void show_progress(const char *name, bool tty, uint64_t total, uint64_t left, double t0,
                          bool *drew)
{
    double el = mono_s() - t0;
    uint64_t done = total > left ? total - left : 0;
    double rate = el > 0.2 ? (double)done / el : 0;
    char l[32], r[32], eta[32];
    human(left, l, sizeof l);
    human((uint64_t)rate, r, sizeof r);
    if (rate > 0)
        human_secs((double)left / rate, eta, sizeof eta);
    else
        snprintf(eta, sizeof eta, "?");
    if (tty) {
        int width = 24;
        int fill = total ? (int)((double)done / (double)total * width) : 0;
        if (fill > width)
            fill = width;
        fprintf(stderr, "\r\033[Kdraining %s [%.*s%*s] %3d%%  %s left  %s/s  ETA %s", name, fill,
                "########################", width - fill, "",
                total ? (int)(100.0 * (double)done / (double)total) : 0, l, r, eta);
        *drew = true;
    } else {
        fprintf(stderr, "draining %s: %s left, %s/s, ETA %s\n", name, l, r, eta);
    }
    fflush(stderr);
}

static int cmd_drain(const char *name)
{
    struct drain_job *j = calloc(1, sizeof *j);
    if (!j) {
        errorf("out of memory");
        return EXIT_API;
    }
    snprintf(j->what, sizeof j->what, "drain %s", name);
    if (opt.timeout_s)
        snprintf(j->path, sizeof j->path, "/api/exports/%s/drain?timeout_s=%ld", name,
                 opt.timeout_s);
    else
        snprintf(j->path, sizeof j->path, "/api/exports/%s/drain", name);
    j->timeout_s = opt.timeout_s;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    double t0 = mono_s();
    pthread_t th;
    if (pthread_create(&th, NULL, drain_main, j) != 0) {
        errorf("cannot start a thread");
        free(j);
        return EXIT_API;
    }
    bool tty = isatty(STDERR_FILENO) != 0;
    bool drew = false;
    uint64_t total = 0;
    bool have_total = false;
    char spath[256];
    snprintf(spath, sizeof spath, "/api/exports/%s", name);
    double interval = tty ? 0.5 : 2.0;
    /* Quick drains finish before the first look. */
    while (!opt.json && !drain_wait(j, interval)) {
        struct answer s;
        if (http("GET", spath, NULL, 10, &s) == 0 && s.status == 200 && s.json) {
            uint64_t left = jint(s.json, "dirty_bytes");
            json_t *sync = json_object_get(s.json, "sync");
            if (!have_total) {
                total = jint(sync, "drain_dirty_at_start");
                have_total = true;
            }
            if (left > total)
                total = left;
            show_progress(name, tty, total, left, t0, &drew);
        }
        answer_free(&s);
    }
    pthread_join(th, NULL);
    if (drew)
        fprintf(stderr, "\r\033[K");
    struct answer *a = &j->a;
    int rc;
    if (a->status >= 200 && a->status < 300 && a->json) {
        rc = 0;
        if (opt.json) {
            printf("%s", a->body);
        } else {
            char h[32];
            human(jint(a->json, "bytes_synced"), h, sizeof h);
            printf("drained %s: %s synced in %.1f s; the store holds everything\n", name, h,
                   (double)jint(a->json, "duration_ms") / 1000.0);
        }
    } else {
        if (opt.json && a->json)
            printf("%s", a->body);
        rc = report_failure(j->what, a);
    }
    answer_free(a);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    free(j);
    return rc;
}

static int cmd_promote(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s/promote%s", name, opt.force ? "?force=true" : "");
    snprintf(what, sizeof what, "promote %s", name);
    struct answer a;
    int rc = call(what, "POST", path, NULL, 120, &a);
    if (!rc && !opt.json) {
        if (jbool(a.json, "promoted"))
            printf("%s is read-write on this node (write lease epoch %" PRIu64 ")\n", name,
                   jint(a.json, "lease_epoch"));
        else
            printf("%s was already read-write on this node; nothing changed\n", name);
    }
    answer_free(&a);
    return rc;
}

static int cmd_release(const char *name)
{
    char path[256], what[200];
    if (opt.timeout_s)
        snprintf(path, sizeof path, "/api/exports/%s/release?timeout_s=%ld", name, opt.timeout_s);
    else
        snprintf(path, sizeof path, "/api/exports/%s/release", name);
    snprintf(what, sizeof what, "release %s", name);
    struct answer a;
    int rc = call(what, "POST", path, NULL, opt.timeout_s ? opt.timeout_s + 30 : 0, &a);
    if (!rc && !opt.json) {
        if (jbool(a.json, "released"))
            printf("%s drained and released its write lease; it is read-only on this node\n",
                   name);
        else
            printf("%s did not hold the write lease here; nothing changed\n", name);
    }
    answer_free(&a);
    return rc;
}

static int cmd_resize(const char *name, const char *size)
{
    char path[256], what[200], body[96];
    snprintf(what, sizeof what, "resize %s", name);
    if (!size) {
        errorf("%s: missing the new SIZE (e.g. 20G)", what);
        return EXIT_USAGE;
    }
    uint64_t bytes;
    int rc = parse_size_arg(what, size, &bytes);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "/api/exports/%s", name);
    snprintf(body, sizeof body, "{\"size_bytes\": %" PRIu64 "}", bytes);
    struct answer a;
    rc = call(what, "PUT", path, body, 120, &a);
    if (!rc && !opt.json) {
        char from[32], to[32];
        uint64_t prev = jint(a.json, "previous_size_bytes"), now = jint(a.json, "size_bytes");
        human(prev, from, sizeof from);
        human(now, to, sizeof to);
        if (prev == now)
            printf("%s already has %s; nothing changed\n", name, to);
        else
            printf("%s grown from %s to %s; clients see the new size when they reconnect\n",
                   name, from, to);
    }
    answer_free(&a);
    return rc;
}

static int cmd_set(const char *name)
{
    char path[256], what[200], body[256];
    snprintf(what, sizeof what, "set %s", name);
    if (!opt.durability && !opt.max_unsynced_s && !opt.max_unsynced_bytes) {
        errorf("%s: nothing to set: give --durability, --max-unsynced-s or --max-unsynced-bytes",
               what);
        return EXIT_USAGE;
    }
    size_t n = 0;
    n += (size_t)snprintf(body + n, sizeof body - n, "{");
    if (opt.durability) {
        if (strcmp(opt.durability, "local") != 0 && strcmp(opt.durability, "store") != 0) {
            errorf("%s: --durability is local or store", what);
            return EXIT_USAGE;
        }
        n += (size_t)snprintf(body + n, sizeof body - n, "\"durability\": \"%s\"",
                              opt.durability);
    }
    if (opt.max_unsynced_s) {
        char *end = NULL;
        long t = strtol(opt.max_unsynced_s, &end, 10);
        if (!*opt.max_unsynced_s || *end || t < 0 || t > 86400) {
            errorf("%s: --max-unsynced-s takes whole seconds from 0 (unbounded) to 86400", what);
            return EXIT_USAGE;
        }
        n += (size_t)snprintf(body + n, sizeof body - n, "%s\"max_unsynced_s\": %ld",
                              n > 1 ? ", " : "", t);
    }
    if (opt.max_unsynced_bytes) {
        uint64_t bytes = 0;
        int rc = strcmp(opt.max_unsynced_bytes, "0") == 0
                     ? 0 : parse_size_arg(what, opt.max_unsynced_bytes, &bytes);
        if (rc)
            return rc;
        n += (size_t)snprintf(body + n, sizeof body - n, "%s\"max_unsynced_bytes\": %" PRIu64,
                              n > 1 ? ", " : "", bytes);
    }
    snprintf(body + n, sizeof body - n, "}");
    snprintf(path, sizeof path, "/api/exports/%s", name);
    struct answer a;
    int rc = call(what, "PATCH", path, body, 60, &a);
    if (!rc && !opt.json) {
        char b[32];
        human(jint(a.json, "max_unsynced_bytes"), b, sizeof b);
        printf("%s: durability %s, max unsynced %" PRIu64 " s / %s (0: unbounded)\n", name,
               jstr(a.json, "durability", "?"), jint(a.json, "max_unsynced_s"),
               jint(a.json, "max_unsynced_bytes") ? b : "0");
    }
    answer_free(&a);
    return rc;
}

static int cmd_delete(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s%s%s%s", name,
             opt.purge || opt.force ? "?" : "", opt.purge ? "purge=true" : "",
             opt.force ? (opt.purge ? "&force=true" : "force=true") : "");
    snprintf(what, sizeof what, "delete %s", name);
    struct answer a;
    int rc = call(what, "DELETE", path, NULL, 0, &a);
    if (!rc && !opt.json)
        printf("deleted %s from this node%s\n", name,
               jbool(a.json, "purged") ? ", and its objects from the store"
                                       : " (the store keeps the volume)");
    answer_free(&a);
    return rc;
}

static int cmd_compact(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s/compact", name);
    snprintf(what, sizeof what, "compact %s", name);
    struct answer a;
    int rc = call(what, "POST", path, NULL, 0, &a);
    if (!rc && !opt.json) {
        char rw[32], rec[32], st[32], lv[32];
        human(jint(a.json, "bytes_rewritten"), rw, sizeof rw);
        human(jint(a.json, "bytes_reclaimed"), rec, sizeof rec);
        human(jint(a.json, "stored_bytes"), st, sizeof st);
        human(jint(a.json, "live_bytes"), lv, sizeof lv);
        printf("compacted %s: %" PRIu64 " segments rewritten (%s), %" PRIu64
               " deleted, %s reclaimed; now %s stored, %s live\n",
               name, jint(a.json, "segments_rewritten"), rw, jint(a.json, "segments_deleted"),
               rec, st, lv);
    }
    answer_free(&a);
    return rc;
}

static int cmd_vhost_user(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s/vhost-user", name);
    snprintf(what, sizeof what, "vhost-user %s", name);
    struct answer a;
    int rc = call(what, "POST", path, NULL, 0, &a);
    if (!rc && !opt.json)
        printf("%s is served on the vhost-user-blk socket %s\n", name,
               jstr(a.json, "socket", "?"));
    answer_free(&a);
    return rc;
}

static int cmd_scrub(const char *name)
{
    char path[256], what[200];
    const char *mode = opt.repair ? "repair=true" : opt.deep ? "deep=true" : "";
    snprintf(path, sizeof path, "/api/exports/%s/scrub%s%s%s%s", name,
             mode[0] || opt.delete_orphans ? "?" : "", mode,
             mode[0] && opt.delete_orphans ? "&" : "",
             opt.delete_orphans ? "delete_orphans=true" : "");
    snprintf(what, sizeof what, "scrub %s", name);
    struct answer a;
    int rc = call(what, "POST", path, NULL, 0, &a);
    if (rc) {
        answer_free(&a);
        return rc;
    }
    if (!opt.json) {
        json_t *list = json_object_get(a.json, "findings");
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *f = json_array_get(list, i);
            const char *mended = jbool(f, "repaired") ? " (repaired)" : "";
            if (strcmp(jstr(f, "kind", ""), "damaged") == 0)
                printf("damaged %s offset %" PRIu64 " length %" PRIu64 "%s\n",
                       jstr(f, "key", "?"), jint(f, "offset"), jint(f, "length"), mended);
            else if (strcmp(jstr(f, "kind", ""), "orphan") == 0)
                printf("orphan %s size %" PRIu64 "%s\n", jstr(f, "key", "?"), jint(f, "size"),
                       jbool(f, "deleted") ? " (deleted)" : "");
            else
                printf("%s %s%s\n", jstr(f, "kind", "?"), jstr(f, "key", "?"), mended);
        }
        char rd[32];
        human(jint(a.json, "bytes_read"), rd, sizeof rd);
        printf("scrub of %s (%s): %" PRIu64 " segments, %" PRIu64 " blocks, %s read: ", name,
               opt.repair ? "repair" : opt.deep ? "deep" : "quick",
               jint(a.json, "segments_checked"),
               jint(a.json, "blocks_checked"), rd);
        if (jbool(a.json, "clean"))
            printf("clean\n");
        else
            printf("%" PRIu64 " missing, %" PRIu64 " truncated, %" PRIu64 " bad headers, %" PRIu64
                   " damaged blocks, %" PRIu64 " lost snapshots, %" PRIu64 " orphans\n",
                   jint(a.json, "missing_segments"), jint(a.json, "size_mismatches"),
                   jint(a.json, "bad_headers"), jint(a.json, "damaged_blocks"),
                   jint(a.json, "bad_snapshots"), jint(a.json, "orphan_objects"));
        if (opt.repair)
            printf("repair: %" PRIu64 " blocks written back from this node's cache, %" PRIu64
                   " left damaged%s\n", jint(a.json, "repaired_blocks"),
                   jint(a.json, "unrepaired_blocks"),
                   jbool(a.json, "repaired") ? ": everything found is repaired" : "");
        if (opt.delete_orphans) {
            char ob[32];
            human(jint(a.json, "orphan_bytes"), ob, sizeof ob);
            printf("orphans: %" PRIu64 " of %" PRIu64 " deleted (%s)\n",
                   jint(a.json, "orphans_deleted"), jint(a.json, "orphan_objects"), ob);
        }
    }
    rc = jbool(a.json, "clean") || jbool(a.json, "repaired") ? EXIT_OK : EXIT_DAMAGED;
    answer_free(&a);
    return rc;
}

static int cmd_rotate_key(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s/rotate-key", name);
    snprintf(what, sizeof what, "rekey %s --data-key", name);
    struct answer a;
    int rc = call(what, "POST", path, NULL, 0, &a);
    if (!rc && !opt.json)
        printf("rotated the data key of %s: new writes use generation %" PRIu64 "; %" PRIu64
               " segments under older keys, re-sealed by compaction (status NAME shows the "
               "count)\n", name, jint(a.json, "key_generation"), jint(a.json, "segments_old_key"));
    answer_free(&a);
    return rc;
}

static int cmd_fenced_discard(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s/fenced/discard", name);
    snprintf(what, sizeof what, "fenced-discard %s", name);
    struct answer a;
    int rc = call(what, "POST", path, NULL, 120, &a);
    if (!rc && !opt.json) {
        char d[32];
        human(jint(a.json, "discarded_bytes"), d, sizeof d);
        printf("discarded the fenced data of %s (%s, never uploaded)\n", name, d);
    }
    answer_free(&a);
    return rc;
}

/* PATH names a new file in glidefsd's servers.api.export_dir: a bare file
 * name goes there as it is; a path with a directory is made absolute from
 * here (the API on this host) and must be in that directory. */
static int cmd_fenced_export(const char *name, const char *file)
{
    char path[256], what[200], abs[4096];
    snprintf(what, sizeof what, "fenced-export %s", name);
    if (!file || !*file) {
        errorf("%s: missing PATH, the new image file", what);
        return EXIT_USAGE;
    }
    if (!strchr(file, '/')) {
        if ((size_t)snprintf(abs, sizeof abs, "%s", file) >= sizeof abs) {
            errorf("%s: PATH is too long", what);
            return EXIT_USAGE;
        }
    } else if (file[0] != '/') {
        char cwd[3072];
        if (!getcwd(cwd, sizeof cwd)) {
            errorf("%s: cannot tell the current directory: %s", what, strerror(errno));
            return EXIT_USAGE;
        }
        if ((size_t)snprintf(abs, sizeof abs, "%s/%s", cwd, file) >= sizeof abs) {
            errorf("%s: PATH is too long", what);
            return EXIT_USAGE;
        }
    } else if ((size_t)snprintf(abs, sizeof abs, "%s", file) >= sizeof abs) {
        errorf("%s: PATH is too long", what);
        return EXIT_USAGE;
    }
    json_t *b = json_pack("{s:s}", "path", abs);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body) {
        errorf("%s: out of memory", what);
        return EXIT_API;
    }
    snprintf(path, sizeof path, "/api/exports/%s/fenced/export", name);
    struct answer a;
    int rc = call(what, "POST", path, body, 0, &a);
    free(body);
    if (!rc && !opt.json) {
        json_t *fe = json_object_get(a.json, "fenced_export");
        char sz[32];
        human(jint(fe, "size_bytes"), sz, sizeof sz);
        printf("wrote %s: the view of %s as of its epoch %" PRIu64 " on this node (%s, sparse); "
               "the fenced data stays kept aside until fenced-discard\n",
               jstr(fe, "path", abs), name, jint(fe, "epoch"), sz);
    }
    answer_free(&a);
    return rc;
}

static int cmd_metrics(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s/metrics", name);
    snprintf(what, sizeof what, "metrics %s", name);
    struct answer a;
    int rc = call(what, "GET", path, NULL, 60, &a);
    if (rc == EXIT_NOTFOUND)
        fprintf(stderr, "  'glidefs-ctl list' shows the exports open on this node.\n");
    if (rc || opt.json) {
        answer_free(&a);
        return rc;
    }
    json_t *m = a.json;
    char x[32], y[32];
    human(jint(m, "read_bytes"), x, sizeof x);
    human(jint(m, "write_bytes"), y, sizeof y);
    printf("export:          %s\n", jstr(m, "name", name));
    printf("reads:           %" PRIu64 " (%s)\n", jint(m, "reads"), x);
    printf("writes:          %" PRIu64 " (%s)\n", jint(m, "writes"), y);
    human(jint(m, "trim_bytes"), x, sizeof x);
    printf("flushes, trims:  %" PRIu64 ", %" PRIu64 " (%s)\n", jint(m, "flushes"),
           jint(m, "trims"), x);
    human(jint(m, "cached_bytes"), x, sizeof x);
    printf("cache:           %" PRIu64 " hits, %" PRIu64 " misses, hit ratio %.1f%%, %s cached\n",
           jint(m, "cache_hits"), jint(m, "cache_misses"), 100.0 * jreal(m, "cache_hit_ratio"),
           x);
    human(jint(m, "dirty_bytes"), x, sizeof x);
    printf("dirty:           %s, oldest write %.1f s old\n", x,
           (double)jint(m, "oldest_dirty_age_ms") / 1000.0);
    human(jint(m, "store_put_bytes"), x, sizeof x);
    human(jint(m, "store_get_bytes"), y, sizeof y);
    printf("store PUT/GET:   %" PRIu64 " (%s) / %" PRIu64 " (%s)\n", jint(m, "store_puts"), x,
           jint(m, "store_gets"), y);
    printf("store other:     %" PRIu64 " DELETE, %" PRIu64 " LIST, %" PRIu64 " errors, %" PRIu64
           " retries\n", jint(m, "store_deletes"), jint(m, "store_lists"),
           jint(m, "store_errors"), jint(m, "store_retries"));
    printf("uploads:         %" PRIu64 " segments, %" PRIu64 " manifests, last %s\n",
           jint(m, "segments_uploaded"), jint(m, "manifests_uploaded"),
           jstr(m, "last_sync_time", "never"));
    human(jint(m, "stored_bytes"), x, sizeof x);
    human(jint(m, "live_bytes"), y, sizeof y);
    printf("storage:         %s stored, %s live (overhead %.2f), est. $%.2f / month\n", x, y,
           jreal(m, "overhead_ratio"), jreal(m, "est_monthly_cost_usd"));
    printf("last error:      %s\n", jstr(m, "last_error", "none"));
    json_t *lat = json_object_get(m, "latency");
    if (json_is_object(lat)) {
        const char *op;
        json_t *v;
        bool header = false;
        json_object_foreach(lat, op, v) {
            if (!jint(v, "count"))
                continue;
            if (!header)
                printf("latency (us)     %10s %8s %8s %8s %8s\n", "count", "mean", "p50", "p90",
                       "p99");
            header = true;
            printf("  %-14s %10" PRIu64 " %8.0f %8" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n", op,
                   jint(v, "count"), jreal(v, "mean_us"), jint(v, "p50_us"), jint(v, "p90_us"),
                   jint(v, "p99_us"));
        }
    }
    answer_free(&a);
    return 0;
}

/* ---- snapshots and clones ---- */

static int cmd_snapshot(const char *name, const char *snap)
{
    char path[256], what[400];
    snprintf(what, sizeof what, "snapshot %s %s", name, snap);
    if (opt.timeout_s)
        snprintf(path, sizeof path, "/api/exports/%s/snapshots?timeout_s=%ld", name,
                 opt.timeout_s);
    else
        snprintf(path, sizeof path, "/api/exports/%s/snapshots", name);
    json_t *b = json_pack("{s:s}", "name", snap);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body) {
        errorf("out of memory");
        return EXIT_API;
    }
    struct answer a;
    int rc = call(what, "POST", path, body, opt.timeout_s ? opt.timeout_s + 30 : 0, &a);
    free(body);
    if (rc == EXIT_NOTFOUND)
        fprintf(stderr, "  The export must exist in the store ('glidefs-ctl list' shows the "
                        "open ones).\n");
    if (!rc && !opt.json) {
        char h[32];
        human(jint(a.json, "size_bytes"), h, sizeof h);
        printf("snapshot %s of %s taken (%s, %s) in %" PRIu64 " ms\n", snap, name, h,
               jstr(a.json, "created", "now"), jint(a.json, "duration_ms"));
    }
    answer_free(&a);
    return rc;
}

static int cmd_snapshots(const char *name)
{
    char path[256], what[200];
    snprintf(path, sizeof path, "/api/exports/%s/snapshots", name);
    snprintf(what, sizeof what, "snapshots %s", name);
    struct answer a;
    int rc = call(what, "GET", path, NULL, 60, &a);
    if (rc || opt.json) {
        answer_free(&a);
        return rc;
    }
    json_t *arr = json_object_get(a.json, "snapshots");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        printf("no snapshots of %s\n", name);
        answer_free(&a);
        return 0;
    }
    size_t w = 4, i;
    json_t *s;
    json_array_foreach(arr, i, s) {
        size_t n = strlen(jstr(s, "name", "?"));
        if (n > w)
            w = n;
    }
    printf("%-*s  %-24s  %10s\n", (int)w, "NAME", "CREATED", "SIZE");
    json_array_foreach(arr, i, s) {
        char sz[32];
        human(jint(s, "size_bytes"), sz, sizeof sz);
        printf("%-*s  %-24s  %10s\n", (int)w, jstr(s, "name", "?"), jstr(s, "created", "?"), sz);
    }
    answer_free(&a);
    return 0;
}

static int cmd_snapshot_delete(const char *cmd, const char *name, const char *snap)
{
    char path[512], what[400];
    snprintf(path, sizeof path, "/api/exports/%s/snapshots/%s", name, snap);
    snprintf(what, sizeof what, "%s %s %s", cmd, name, snap);
    struct answer a;
    int rc = call(what, "DELETE", path, NULL, 120, &a);
    if (rc == EXIT_NOTFOUND)
        fprintf(stderr, "  'glidefs-ctl snapshots %s' lists the snapshots.\n", name);
    if (!rc && !opt.json)
        printf("deleted snapshot %s of %s\n", snap, name);
    answer_free(&a);
    return rc;
}

static int cmd_clone(const char *parent, const char *child)
{
    char what[400];
    snprintf(what, sizeof what, "clone %s %s", parent, child);
    json_t *b = json_pack("{s:s, s:s}", "name", child, "clone_of", parent);
    if (b && opt.snapshot)
        json_object_set_new(b, "snapshot", json_string(opt.snapshot));
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body) {
        errorf("out of memory");
        return EXIT_API;
    }
    struct answer a;
    int rc = call(what, "POST", "/api/exports", body, 0, &a);
    free(body);
    if (rc == EXIT_NOTFOUND && opt.snapshot)
        fprintf(stderr, "  'glidefs-ctl snapshots %s' lists the snapshots.\n", parent);
    if (!rc && !opt.json) {
        char h[32];
        human(jint(a.json, "size_bytes"), h, sizeof h);
        if (opt.snapshot)
            printf("cloned %s (snapshot %s) into %s: %s, in %" PRIu64 " ms\n", parent,
                   opt.snapshot, child, h, jint(a.json, "clone_ms"));
        else
            printf("cloned %s (its current state) into %s: %s, in %" PRIu64 " ms\n", parent,
                   child, h, jint(a.json, "clone_ms"));
    }
    answer_free(&a);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

/* The token from FILE: its first line, without the line end (malloc'd), or
 * NULL after saying what is wrong. */
static char *read_token_file(const char *path, const char *from)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        errorf("%s %s: %s", from, path, strerror(errno));
        return NULL;
    }
    char buf[4097];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int bad = ferror(f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (bad || !buf[0] || n == sizeof buf - 1) {
        errorf("%s %s: %s", from, path,
               bad ? "cannot be read" : buf[0] ? "the token is longer than 4 KiB"
                                                 : "the first line is empty (no token)");
        return NULL;
    }
    char *t = strdup(buf);
    memset(buf, 0, sizeof buf);
    if (!t)
        errorf("out of memory");
    return t;
}

/* Blank a secret in argv, so ps and /proc/PID/cmdline stop showing it. */
static void scrub(char *arg)
{
    for (; *arg; arg++)
        *arg = '*';
}

/* Value of "--opt VALUE" or "--opt=VALUE" at argv[*i]. */
static const char *opt_value(int argc, char **argv, int *i, const char *flag)
{
    size_t n = strlen(flag);
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 >= argc) {
        errorf("%s needs a value", flag);
        return NULL;
    }
    return argv[++*i];
}

static bool is_opt(const char *arg, const char *flag)
{
    size_t n = strlen(flag);
    return strncmp(arg, flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

int main(int argc, char **argv)
{
    const char *pos[4] = { 0 };
    int npos = 0;
    bool opts_done = false;
    opt.api = getenv("GLIDEFS_API");
    opt.cacert = getenv("GLIDEFS_CACERT");
    /* the last of --token / --token-file, else $GLIDEFS_TOKEN_FILE, else $GLIDEFS_TOKEN */
    char *cli_token = NULL;
    const char *cli_token_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || !a[1]) {
            if (npos == 4) {
                errorf("too many arguments (\"%s\")", a);
                return EXIT_USAGE;
            }
            pos[npos++] = a;
        } else if (strcmp(a, "--") == 0) {
            opts_done = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("glidefs-ctl %s\n", GLIDEFS_CTL_VERSION);
            return EXIT_OK;
        } else if (is_opt(a, "--api")) {
            if (!(opt.api = opt_value(argc, argv, &i, "--api")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--token")) {
            const char *v = opt_value(argc, argv, &i, "--token");
            if (!v)
                return EXIT_USAGE;
            free(cli_token);
            if (!(cli_token = strdup(v))) {
                errorf("out of memory");
                return EXIT_USAGE;
            }
            scrub((char *)v); /* v points into argv */
            cli_token_file = NULL;
        } else if (is_opt(a, "--token-file")) {
            if (!(cli_token_file = opt_value(argc, argv, &i, "--token-file")))
                return EXIT_USAGE;
            free(cli_token);
            cli_token = NULL;
        } else if (is_opt(a, "--cacert")) {
            if (!(opt.cacert = opt_value(argc, argv, &i, "--cacert")))
                return EXIT_USAGE;
        } else if (strcmp(a, "--json") == 0) {
            opt.json = true;
        } else if (strcmp(a, "--force") == 0) {
            opt.force = opt.force_set = true;
        } else if (strcmp(a, "--purge") == 0) {
            opt.purge = opt.purge_set = true;
        } else if (strcmp(a, "--data-key") == 0) {
            opt.data_key = true;
        } else if (strcmp(a, "--deep") == 0) {
            opt.deep = true;
        } else if (strcmp(a, "--repair") == 0) {
            opt.repair = true;
        } else if (strcmp(a, "--delete-orphans") == 0) {
            opt.delete_orphans = true;
        } else if (is_opt(a, "--durability")) {
            if (!(opt.durability = opt_value(argc, argv, &i, "--durability")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--max-unsynced-s")) {
            if (!(opt.max_unsynced_s = opt_value(argc, argv, &i, "--max-unsynced-s")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--max-unsynced-bytes")) {
            if (!(opt.max_unsynced_bytes = opt_value(argc, argv, &i, "--max-unsynced-bytes")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--snapshot")) {
            if (!(opt.snapshot = opt_value(argc, argv, &i, "--snapshot")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--timeout")) {
            const char *v = opt_value(argc, argv, &i, "--timeout");
            char *end = NULL;
            long t = v ? strtol(v, &end, 10) : 0;
            if (!v || !*v || *end || t < 1 || t > 86400) {
                errorf("--timeout takes whole seconds from 1 to 86400");
                return EXIT_USAGE;
            }
            opt.timeout_s = t;
            opt.timeout_set = true;
        } else {
            errorf("unknown option \"%s\" (glidefs-ctl --help lists them)", a);
            return EXIT_USAGE;
        }
    }
    const char *env_file = getenv("GLIDEFS_TOKEN_FILE");
    if (cli_token)
        opt.token = cli_token;
    else if (cli_token_file && !(opt.token = read_token_file(cli_token_file, "--token-file")))
        return EXIT_USAGE;
    else if (!cli_token_file && env_file && *env_file &&
             !(opt.token = read_token_file(env_file, "GLIDEFS_TOKEN_FILE")))
        return EXIT_USAGE;
    else if (!cli_token_file && !(env_file && *env_file))
        opt.token = getenv("GLIDEFS_TOKEN");
    if (!opt.api || !*opt.api)
        opt.api = DEFAULT_API;
    if (npos == 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = pos[0];
    enum { C_LIST, C_STATUS, C_CREATE, C_DRAIN, C_PROMOTE, C_RELEASE, C_RESIZE, C_DELETE,
           C_COMPACT, C_METRICS, C_SNAPSHOT, C_SNAPSHOTS, C_SNAPSHOT_DELETE, C_CLONE,
           C_FENCED_EXPORT, C_FENCED_DISCARD, C_REKEY, C_SCRUB, C_SET, C_VHOST_USER };
    static const struct {
        const char *name;
        int id;
        int args_min, args_max; /* after NAME / the command */
        bool has_name;
        bool force, purge, timeout, snapshot;
    } cmds[] = {
        { "list", C_LIST, 0, 0, false, false, false, false, false },
        { "status", C_STATUS, 0, 0, true, false, false, false, false },
        { "create", C_CREATE, 0, 1, true, false, false, false, false },
        { "drain", C_DRAIN, 0, 0, true, false, false, true, false },
        { "promote", C_PROMOTE, 0, 0, true, true, false, false, false },
        { "release", C_RELEASE, 0, 0, true, false, false, true, false },
        { "resize", C_RESIZE, 1, 1, true, false, false, false, false },
        { "delete", C_DELETE, 0, 0, true, true, true, false, false },
        { "compact", C_COMPACT, 0, 0, true, false, false, false, false },
        { "metrics", C_METRICS, 0, 0, true, false, false, false, false },
        { "snapshot", C_SNAPSHOT, 1, 1, true, false, false, true, false },
        { "snapshots", C_SNAPSHOTS, 0, 0, true, false, false, false, false },
        { "snapshot-delete", C_SNAPSHOT_DELETE, 1, 1, true, false, false, false, false },
        { "delete-snapshot", C_SNAPSHOT_DELETE, 1, 1, true, false, false, false, false },
        { "clone", C_CLONE, 1, 1, true, false, false, false, true },
        { "fenced-export", C_FENCED_EXPORT, 1, 1, true, false, false, false, false },
        { "fenced-discard", C_FENCED_DISCARD, 0, 0, true, false, false, false, false },
        { "rekey", C_REKEY, 0, 0, true, false, false, false, false },
        { "scrub", C_SCRUB, 0, 0, true, false, false, false, false },
        { "set", C_SET, 0, 0, true, false, false, false, false },
        { "vhost-user", C_VHOST_USER, 0, 0, true, false, false, false, false },
    };
    int k = -1;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmds[i].name, cmd) == 0)
            k = (int)i;
    if (k < 0) {
        errorf("unknown command \"%s\" (glidefs-ctl --help lists them)", cmd);
        return EXIT_USAGE;
    }
    if ((opt.force_set && !cmds[k].force) || (opt.purge_set && !cmds[k].purge) ||
        (opt.timeout_set && !cmds[k].timeout) || (opt.snapshot && !cmds[k].snapshot)) {
        errorf("%s: %s does not apply here (glidefs-ctl --help)", cmd,
               opt.force_set && !cmds[k].force ? "--force"
               : opt.purge_set && !cmds[k].purge ? "--purge"
               : opt.timeout_set && !cmds[k].timeout ? "--timeout" : "--snapshot");
        return EXIT_USAGE;
    }
    const char *name = npos > 1 ? pos[1] : NULL;
    int extra = npos - 1 - (cmds[k].has_name ? 1 : 0);
    int id = cmds[k].id;
    if (opt.data_key != (id == C_REKEY)) {
        errorf("%s", opt.data_key ? "--data-key applies to rekey only (glidefs-ctl --help)"
                                  : "rekey: give --data-key (a password change is "
                                    "glidefs_volume_rekey() in the library: the API never "
                                    "carries passwords)");
        return EXIT_USAGE;
    }
    if ((opt.durability || opt.max_unsynced_s || opt.max_unsynced_bytes) && id != C_SET) {
        errorf("--durability, --max-unsynced-s and --max-unsynced-bytes apply to set only "
               "(glidefs-ctl --help)");
        return EXIT_USAGE;
    }
    if ((opt.deep || opt.repair || opt.delete_orphans) && id != C_SCRUB) {
        errorf("%s applies to scrub only (glidefs-ctl --help)",
               opt.deep ? "--deep" : opt.repair ? "--repair" : "--delete-orphans");
        return EXIT_USAGE;
    }
    const char *arg2 = npos > 2 ? pos[2] : NULL;
    if (cmds[k].has_name) {
        int rc = id == C_CLONE ? check_name_of(cmd, name, "export", "PARENT")
                               : check_name(cmd, name);
        if (rc)
            return rc;
    }
    if (extra < 0)
        extra = 0;
    /* the second name: SNAP, or the clone's CHILD */
    if (id == C_SNAPSHOT || id == C_SNAPSHOT_DELETE || id == C_CLONE) {
        int rc = id == C_CLONE ? check_name_of(cmd, arg2, "export", "CHILD")
                               : check_name_of(cmd, arg2, "snapshot", "SNAP");
        if (rc)
            return rc;
    }
    if (extra < cmds[k].args_min || extra > cmds[k].args_max) {
        errorf("%s: wrong number of arguments (glidefs-ctl --help)", cmd);
        return EXIT_USAGE;
    }
    if (id == C_CLONE && opt.snapshot) {
        int rc = check_name_of(cmd, opt.snapshot, "snapshot", "--snapshot SNAP");
        if (rc)
            return rc;
    }
    if (id == C_CLONE && strcmp(name, arg2) == 0) {
        errorf("%s: a volume cannot be a clone of itself: give CHILD a new name", cmd);
        return EXIT_USAGE;
    }
    if (strncmp(opt.api, "http://", 7) != 0 && strncmp(opt.api, "https://", 8) != 0 &&
        strncmp(opt.api, "unix:", 5) != 0) {
        errorf("--api \"%s\": give a URL like http://127.0.0.1:8080 or unix:/run/glidefs-api.sock",
               opt.api);
        return EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        errorf("cannot initialise libcurl");
        return EXIT_API;
    }
    int rc;
    switch (id) {
    case C_LIST: rc = cmd_list(); break;
    case C_STATUS: rc = cmd_status(name); break;
    case C_CREATE: rc = cmd_create(name, arg2); break;
    case C_DRAIN: rc = cmd_drain(name); break;
    case C_PROMOTE: rc = cmd_promote(name); break;
    case C_RELEASE: rc = cmd_release(name); break;
    case C_RESIZE: rc = cmd_resize(name, arg2); break;
    case C_DELETE: rc = cmd_delete(name); break;
    case C_COMPACT: rc = cmd_compact(name); break;
    case C_SCRUB: rc = cmd_scrub(name); break;
    case C_SET: rc = cmd_set(name); break;
    case C_VHOST_USER: rc = cmd_vhost_user(name); break;
    case C_METRICS: rc = cmd_metrics(name); break;
    case C_SNAPSHOT: rc = cmd_snapshot(name, arg2); break;
    case C_SNAPSHOTS: rc = cmd_snapshots(name); break;
    case C_SNAPSHOT_DELETE: rc = cmd_snapshot_delete(cmd, name, arg2); break;
    case C_FENCED_EXPORT: rc = cmd_fenced_export(name, arg2); break;
    case C_FENCED_DISCARD: rc = cmd_fenced_discard(name); break;
    case C_REKEY: rc = cmd_rotate_key(name); break;
    default: rc = cmd_clone(name, arg2); break;
    }
    curl_global_cleanup();
    fflush(stdout);
    if (ferror(stdout)) {
        errorf("cannot write the output");
        return rc ? rc : EXIT_API;
    }
    return rc;
}
