/*
 * main.c — glidefsd: command line, configuration, the store check, the
 * open-file limit, signals and the process lifecycle. Runs in the foreground (systemd style) and logs
 * to stderr. SIGTERM/SIGINT: stop accepting, finish in-flight requests, drain
 * every export within servers.shutdown_timeout_s and exit 0 (non-zero if a
 * drain could not finish: the dirty data stays in the journal). A second
 * signal exits at once; flushed data is already durable in the journal.
 * The process is not dumpable and has no core size from its first
 * instruction (servers.allow_core_dumps undoes it): its memory holds the
 * store's credentials, the encryption password and the data keys.
 *
 * One glidefsd per cache dir: it holds an flock on <cache.dir>/.lock for
 * its whole life (the cache dir is the writer identity of every volume in
 * it, see lib/identity.h); a second one on the same dir refuses to start.
 * `--takeover` is the exception: it gets the lock, the listeners and every
 * live connection from the running one (takeover.h), which then exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "exports.h"
#include "fsutil.h"
#include "log.h"
#include "nbd_server.h"
#include "rest_api.h"
#include "scrubber.h"
#include "sdnotify.h"
#include "takeover.h"
#include "vhost_server.h"

#ifndef GLIDEFSD_VERSION
#define GLIDEFSD_VERSION "0.0.0"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: glidefsd -c FILE [--takeover] [--log-level error|warn|info|debug]\n"
            "       glidefsd --version | --help\n"
            "\n"
            "Serve GlideFS volumes (block devices stored in S3) over NBD.\n"
            "\n"
            "  -c, --config FILE      configuration file (YAML, see glidefs.yaml(5))\n"
            "  -l, --log-level LEVEL  error, warn, info (default) or debug\n"
            "  -T, --takeover         take the sockets and live connections of the glidefsd\n"
            "                         running on the same cache.dir, which then exits\n"
            "  -f, --foreground       accepted for compatibility; always in the foreground\n"
            "  -V, --version          print the version and exit\n"
            "  -h, --help             print this help and exit\n"
            "\n"
            "Clients connect with e.g.: nbd-client -unix /var/run/glidefs.sock /dev/nbd0 -N NAME\n"
            "An export NAME is created on first connect (servers.nbd.auto_create_size_gb).\n"
            "SIGTERM or SIGINT drains every export and exits; a second signal exits at once.\n");
}

/* The store must answer before we accept clients (docs/design.md section 3,
 * "Start-up"); whether it honours conditional writes is logged (and kept in
 * cfg for /healthz, the exports' stats and /metrics) but is no reason to
 * stop. */
static int check_store(const glidefs_config *cfg, char *err, size_t errlen)
{
    struct glidefs_store_info info;
    return glidefs_store_check_info(cfg, &info, sizeof info, err, errlen);
}

/* Answers no retry will change: the store said no, or we asked wrongly
 * (glidefs_store_check's errors). */
static int store_error_is_final(int rc)
{
    return rc == -EACCES || rc == -EPERM || rc == -ENOENT || rc == -EPROTO || rc == -EINVAL ||
           rc == -ENOMEM || rc == -ENOTDIR || rc == -EROFS;
}

/* The store check, repeated with backoff for up to storage.startup_wait_s
 * while the store does not answer: a node booting with its network, or a
 * store restarting, is no reason for a crash loop (each check already
 * retried a request twice; three faults in a row end it). SIGTERM/SIGINT
 * (blocked, see main) end the wait at once: -EINTR. */
static int wait_for_store(const glidefs_config *cfg, const sigset_t *stop, char *err,
                          size_t errlen)
{
    /* a local directory does not come up later: its error is the answer */
    int local = cfg->storage_url && strncmp(cfg->storage_url, "file://", 7) == 0;
    int64_t deadline = gfs_now_ms() + (local ? 0 : cfg->storage_startup_wait_s * 1000LL);
    double pause = 0.5;
    for (;;) {
        err[0] = '\0';
        int rc = check_store(cfg, err, errlen);
        if (rc == 0 || store_error_is_final(rc))
            return rc;
        double left = (double)(deadline - gfs_now_ms()) / 1000.0;
        if (left <= 0)
            return rc;
        if (pause > left)
            pause = left;
        gd_warn("store %s does not answer yet (%s): checking again in %.1f s, for up to %.1f s "
                "more (storage.startup_wait_s)",
                cfg->storage_url ? cfg->storage_url : "?", err[0] ? err : glidefs_strerror(rc),
                pause, left);
        struct timespec ts = {(time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9)};
        int sig;
        while ((sig = sigtimedwait(stop, NULL, &ts)) == SIGHUP)
            ; /* nothing to reload yet; the wait restarts from its full length */
        if (sig == SIGTERM || sig == SIGINT) {
            snprintf(err, errlen, "%s received while waiting for the store", strsignal(sig));
            return -EINTR;
        }
        pause = pause * 2 > 8 ? 8 : pause * 2;
    }
}

/* Take <cache.dir>/.lock for the life of the process (the fd is never
 * closed; exit lets it go). Two daemons on one cache dir would be one
 * writer identity twice. The holder's pid is written into the file for the
 * message the next one prints. */
static int lock_cache_dir(const char *dir)
{
    int r = gfs_mkdir_p(dir, 0700, 0);
    if (r < 0) {
        gd_err("cannot create cache dir %s: %s", dir, strerror(-r));
        return -1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        gd_err("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            gd_err("cache dir %s is in use by another glidefsd%s%s%s: one cache dir serves one "
                   "daemon (give this one its own cache.dir)", dir, pid[0] ? " (pid " : "", pid,
                   pid[0] ? ")" : "");
        else
            gd_err("cannot lock %s: %s", path, strerror(e));
        close(fd);
        return -1;
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)len, 0) != len)
        gd_warn("cannot write the pid into %s: %s", path, strerror(errno));
    return fd;
}

/* Every NBD connection, API connection, open volume and store connection is
 * a descriptor, and the usual soft limit (1024) is far below what one node
 * serves: raise it to the hard limit. The NBD server sizes its connection
 * cap from the result (nbd_conn.c), so hitting the limit stays unlikely. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            gd_debug("open-file limit raised from %llu to %llu", (unsigned long long)was,
                     (unsigned long long)rl.rlim_max);
        else
            gd_warn("cannot raise the open-file limit from %llu to %llu: %s",
                    (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
    }
}

struct sig_ctx {
    sigset_t set;
    int stop_fd;
    pthread_mutex_t srv_lock;
    struct gd_server *srv; /* SIGHUP reloads its TLS credentials; NULL once freed */
    struct gd_rest *rest;  /* and the REST API's certificate (srv_lock too); NULL once stopped */
    const char *config_path;
    const glidefs_config *cfg; /* the running configuration */
};

/* What a reloaded file changes: the keys SIGHUP applies, and the rest. */
struct reload {
    const glidefs_config *next;
    struct gd_rest *rest;
    bool token_differs; /* from the running configuration's */
    char applied[512], restart[2048];
};

static void add_key(char *list, size_t len, const char *key)
{
    size_t n = strlen(list);
    if (n + strlen(key) + 3 < len)
        snprintf(list + n, len - n, "%s%s", n ? ", " : "", key);
    else if (n + 5 < len && strcmp(list + n - 3, "...") != 0)
        snprintf(list + n, len - n, ", ...");
}

static void reload_key(void *arg, const char *key)
{
    struct reload *rl = arg;
    if (strcmp(key, "servers.api.token") == 0)
        rl->token_differs = true; /* compared with the one in force, in reload_config */
    else
        add_key(rl->restart, sizeof rl->restart, key);
}

/* SIGHUP: read the file again. TLS credentials are reloaded from their
 * files whatever changed; servers.api.token takes effect at once; every
 * other changed key is named as needing a restart (the running
 * configuration stays: exports, the store and the listeners were built from
 * it). A file that no longer loads changes nothing. */
static void reload_config(struct sig_ctx *sc)
{
    char err[1024] = "";
    glidefs_config *next = NULL;
    int rc = glidefs_config_load(sc->config_path, &next, err, sizeof err);
    if (rc < 0) {
        gd_err("SIGHUP: %s: %s; the running configuration stays", sc->config_path,
               err[0] ? err : glidefs_strerror(rc));
    } else {
        struct reload rl = {.next = next, .rest = sc->rest};
        /* against the running configuration: a key put back is no change */
        gfs_config_diff(sc->cfg, next, reload_key, &rl);
        /* the token against the one in force, which an earlier SIGHUP may have set */
        rc = sc->rest ? gd_rest_set_token(sc->rest, next->api_token)
             : rl.token_differs ? -ENOENT : 0;
        if (rc == 1)
            add_key(rl.applied, sizeof rl.applied, "servers.api.token");
        else if (rc < 0)
            gd_warn("SIGHUP: servers.api.token not changed: %s",
                    rc == -EPERM ? "removing the token needs a restart"
                    : rc == -ENOENT ? "the REST API is off" : strerror(-rc));
        if (!rl.applied[0] && !rl.restart[0] && rc == 0)
            gd_info("SIGHUP: %s: no setting changed", sc->config_path);
        if (rl.applied[0])
            gd_info("SIGHUP: applied: %s", rl.applied);
        if (rl.restart[0])
            gd_warn("SIGHUP: changed in %s but needs a restart or a takeover (glidefsd "
                    "--takeover; the running value stays): %s",
                    sc->config_path, rl.restart);
        glidefs_config_free(next);
    }
    if (sc->srv)
        gd_server_reload_tls(sc->srv);
    gd_rest_reload_tls(sc->rest);
}

static void *signal_thread(void *arg)
{
    struct sig_ctx *sc = arg;
    int count = 0;
    for (;;) {
        int sig = 0;
        if (sigwait(&sc->set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            gd_info("SIGHUP: reloading %s and the TLS credentials", sc->config_path);
            pthread_mutex_lock(&sc->srv_lock);
            reload_config(sc);
            pthread_mutex_unlock(&sc->srv_lock);
            continue;
        }
        if (++count == 1) {
            gd_info("%s received: stopping (send it again to exit at once)", strsignal(sig));
            uint64_t one = 1;
            ssize_t w = write(sc->stop_fd, &one, sizeof one);
            (void)w;
        } else {
            gd_warn("%s received again: exiting now; flushed data is safe in the journal, "
                    "undrained data is uploaded on the next start", strsignal(sig));
            _exit(1);
        }
    }
    return NULL;
}

/* The REST API around a takeover (stage 1 cannot hand its listener over):
 * stopped before the connections park, started again when it fails. */
struct api_ctl {
    const glidefs_config *cfg;
    struct gd_registry *reg;
    struct gd_server *srv;
    struct sig_ctx *sc;
    struct gd_rest **rest;
    struct gd_vhost *vhost;
};

static void api_pause(void *arg)
{
    struct api_ctl *a = arg;
    pthread_mutex_lock(&a->sc->srv_lock);
    a->sc->rest = NULL;
    pthread_mutex_unlock(&a->sc->srv_lock);
    gd_rest_stop(*a->rest); /* no API request holds an export past this */
    *a->rest = NULL;
}

/* Stage 1 hands over NBD connections only: while vhost-user sockets are
 * served (their frontends hold guest memory maps and rings here), a
 * takeover is refused and this process serves on. */
static int takeover_busy(void *arg, char *why, size_t len)
{
    struct api_ctl *a = arg;
    int n = gd_vhost_sockets(a->vhost);
    if (n <= 0)
        return 0;
    snprintf(why, len, "%d vhost-user socket(s) served here, and vhost-user devices are not "
             "handed over yet (stop their VMs, or restart instead)", n);
    return 1;
}

static void api_resume(void *arg)
{
    struct api_ctl *a = arg;
    char err[1024] = "";
    int rc = gd_rest_start(a->cfg, a->reg, a->srv, a->vhost, a->sc->stop_fd, a->rest, err,
                           sizeof err);
    if (rc < 0) {
        gd_err("REST API not restarted after the failed takeover: %s",
               err[0] ? err : glidefs_strerror(rc));
        *a->rest = NULL;
        return;
    }
    pthread_mutex_lock(&a->sc->srv_lock);
    a->sc->rest = *a->rest;
    pthread_mutex_unlock(&a->sc->srv_lock);
}

/* A core of glidefsd holds the S3 secret, the encryption password and
 * every open volume's data key: not dumpable (which also keeps other local
 * users, same uid included, from ptrace and /proc/PID/mem), no core, from
 * the first instruction on - before the config is read. */
static void no_core_dumps(struct rlimit *saved)
{
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (getrlimit(RLIMIT_CORE, saved) == 0) {
        struct rlimit rl = {0, saved->rlim_max};
        setrlimit(RLIMIT_CORE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct rlimit core_limit = {0, 0};
    no_core_dumps(&core_limit);
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "log-level", required_argument, NULL, 'l' },
        { "takeover", no_argument, NULL, 'T' },
        { "foreground", no_argument, NULL, 'f' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = NULL;
    int level = GLIDEFS_LOG_INFO;
    bool takeover = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:l:TfVh", opts, NULL)) != -1) {
        switch (ch) {
        case 'T':
            takeover = true;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'l':
            level = gd_log_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr, "glidefsd: unknown log level \"%s\" (error, warn, info, debug)\n",
                        optarg);
                return 2;
            }
            break;
        case 'f':
            break;
        case 'V':
            printf("glidefsd %s (libglidefs %s)\n", GLIDEFSD_VERSION, glidefs_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "glidefsd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!config_path) {
        fprintf(stderr, "glidefsd: missing -c FILE (the configuration file)\n");
        usage(stderr);
        return 2;
    }
    gd_log_set_level(level);

    /* Signals go to one thread only: block them before any thread starts. */
    struct sig_ctx sc;
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[1024] = "";
    glidefs_config *cfg = NULL;
    int rc = glidefs_config_load(config_path, &cfg, err, sizeof err);
    if (rc < 0) {
        gd_err("config: %s", err[0] ? err : glidefs_strerror(rc));
        return 1;
    }
    glidefs_config_set_log(cfg, gd_log_lib, NULL, level);
    if (cfg->allow_core_dumps) {
        /* as it was started: LimitCORE= in the unit, ulimit -c in a shell */
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        setrlimit(RLIMIT_CORE, &core_limit);
        gd_warn("servers.allow_core_dumps: a core dump of glidefsd holds the store's "
                "credentials, the encryption password and the volumes' data keys");
    }
    raise_nofile();

    /* (a takeover gets the lock from the running daemon, below) */
    int lock_fd = takeover ? -1 : lock_cache_dir(cfg->cache_dir);
    if (!takeover && lock_fd < 0) {
        glidefs_config_free(cfg);
        return 1;
    }
    char instance[64] = "";
    rc = glidefs_instance_id(cfg, instance, sizeof instance);
    if (rc < 0) {
        gd_err("cache dir %s: cannot read or make its instance id: %s", cfg->cache_dir,
               glidefs_strerror(rc));
        glidefs_config_free(cfg);
        return 1;
    }

    rc = wait_for_store(cfg, &sc.set, err, sizeof err);
    if (rc < 0) {
        gd_err("store %s: %s", cfg->storage_url ? cfg->storage_url : "?",
               err[0] ? err : glidefs_strerror(rc));
        glidefs_config_free(cfg);
        return 1;
    }

    struct gd_registry *reg = NULL;
    struct gd_server *srv = NULL;
    rc = gd_registry_create(cfg, &reg);
    if (rc == 0)
        rc = gd_server_create(cfg, reg, &srv);
    if (rc < 0) {
        gd_err("cannot start: %s", glidefs_strerror(rc));
        gd_server_free(srv);
        gd_registry_free(reg);
        glidefs_config_free(cfg);
        return 1;
    }
    err[0] = '\0';
    if (takeover) {
        /* Nothing received may be shut down or unlinked on failure (the
         * running daemon serves on with it): leave at once. */
        rc = gd_takeover_take(cfg, reg, srv, &lock_fd, err, sizeof err);
        if (rc < 0) {
            gd_err("takeover failed: %s; the running glidefsd keeps serving",
                   err[0] ? err : glidefs_strerror(rc));
            _exit(1);
        }
    } else {
        rc = gd_server_listen(srv, err, sizeof err);
        if (rc < 0) {
            gd_err("%s", err[0] ? err : glidefs_strerror(rc));
            gd_server_free(srv);
            gd_registry_free(reg);
            glidefs_config_free(cfg);
            return 1;
        }
        err[0] = '\0';
        rc = gd_takeover_listen(cfg, srv, err, sizeof err);
        if (rc < 0)
            gd_warn("no takeover control socket (glidefsd --takeover cannot replace this "
                    "process): %s", err[0] ? err : glidefs_strerror(rc));
    }

    sc.stop_fd = eventfd(0, EFD_CLOEXEC);
    pthread_mutex_init(&sc.srv_lock, NULL);
    sc.srv = srv;
    sc.config_path = config_path;
    sc.cfg = cfg;
    pthread_t sig_th;
    if (sc.stop_fd < 0 || pthread_create(&sig_th, NULL, signal_thread, &sc) != 0) {
        gd_err("cannot set up signal handling: %s", strerror(errno));
        return 1;
    }
    pthread_detach(sig_th);
    struct gd_scrubber *scrubber = NULL;
    rc = gd_scrubber_start(cfg, reg, sc.stop_fd, &scrubber);
    if (rc < 0) {
        gd_err("cannot start the scrubber: %s", glidefs_strerror(rc));
        return 1;
    }
    gd_registry_set_scrubber(reg, scrubber);
    struct gd_vhost *vhost = NULL;
    err[0] = '\0';
    rc = gd_vhost_create(cfg, reg, &vhost, err, sizeof err);
    if (rc < 0) {
        gd_err("%s", err[0] ? err : glidefs_strerror(rc));
        return 1;
    }
    struct gd_rest *rest = NULL;
    err[0] = '\0';
    rc = gd_rest_start(cfg, reg, srv, vhost, sc.stop_fd, &rest, err, sizeof err);
    if (rc < 0 && takeover) {
        /* the clients are ours now: serve them without the API */
        gd_err("%s; the REST API is off until the next restart or takeover",
               err[0] ? err : glidefs_strerror(rc));
        rest = NULL;
    } else if (rc < 0) {
        gd_err("%s", err[0] ? err : glidefs_strerror(rc));
        gd_vhost_free(vhost);
        pthread_mutex_lock(&sc.srv_lock);
        sc.srv = NULL;
        pthread_mutex_unlock(&sc.srv_lock);
        gd_scrubber_free(scrubber);
        gd_server_free(srv);
        gd_registry_free(reg);
        glidefs_config_free(cfg);
        return 1;
    }
    pthread_mutex_lock(&sc.srv_lock);
    sc.rest = rest;
    pthread_mutex_unlock(&sc.srv_lock);
    gd_vhost_resume(vhost);
    gd_info("glidefsd %s ready: store %s, cache %s (node %s, instance %s), %d workers",
            GLIDEFSD_VERSION, cfg->storage_url ? cfg->storage_url : "?",
            cfg->cache_dir ? cfg->cache_dir : "?", cfg->node_id ? cfg->node_id : "?", instance,
            cfg->nbd_workers);
    if (!takeover)
        gd_sd_notify("READY=1"); /* (a takeover said so with its MAINPID) */

    struct api_ctl api = { .cfg = cfg, .reg = reg, .srv = srv, .sc = &sc, .rest = &rest,
                           .vhost = vhost };
    const struct gd_takeover_ops ops = { api_pause, api_resume, &api, takeover_busy };
    bool handed_over = false;
    while (gd_server_serve(srv, sc.stop_fd) == GD_SERVE_TAKEOVER)
        if (gd_takeover_give(cfg, reg, srv, lock_fd, &ops) == 1) {
            handed_over = true;
            break;
        }
    if (handed_over) {
        /* The volumes are closed (journals durable), the successor serves
         * every connection: nothing to drain. */
        gd_scrubber_stop(scrubber);
        pthread_mutex_lock(&sc.srv_lock);
        sc.srv = NULL;
        pthread_mutex_unlock(&sc.srv_lock);
        gd_server_free(srv);
        gd_vhost_free(vhost); /* none served: the takeover was refused otherwise */
        gd_registry_free(reg);
        gd_scrubber_free(scrubber);
        glidefs_config_free(cfg);
        gd_info("takeover complete: exiting");
        return 0;
    }
    gd_server_stop(srv);
    gd_scrubber_stop(scrubber); /* cancelled at its next GET: holds up no drain */
    pthread_mutex_lock(&sc.srv_lock);
    sc.rest = NULL;
    pthread_mutex_unlock(&sc.srv_lock);
    gd_rest_stop(rest); /* no API request may hold an export past this point */
    gd_vhost_free(vhost); /* frontends disconnected, their exports released */
    pthread_mutex_lock(&sc.srv_lock);
    sc.srv = NULL;
    pthread_mutex_unlock(&sc.srv_lock);
    gd_server_free(srv);

    int64_t timeout_ms = (int64_t)(cfg->shutdown_timeout_s > 0 ? cfg->shutdown_timeout_s : 0) * 1000;
    rc = gd_registry_shutdown(reg, timeout_ms);
    int left = gd_registry_abandoned(reg);
    if (left) {
        /* threads still wait for the store with those exports: exit without
         * them (what they hold is as safe as after a crash: in the journal) */
        gd_err("shutdown: giving up after servers.shutdown_timeout_s (%d s) with %d "
               "export(s) or task(s) unfinished (see above); exiting", cfg->shutdown_timeout_s,
               left);
        _exit(1);
    }
    gd_registry_free(reg);
    gd_scrubber_free(scrubber);
    int status = 0;
    if (rc < 0) {
        gd_err("shutdown: drain did not finish within %d s (%s); dirty data stays in the "
               "journal and is uploaded on the next start",
               cfg->shutdown_timeout_s, glidefs_strerror(rc));
        status = 1;
    } else {
        gd_info("shutdown complete");
    }
    glidefs_config_free(cfg);
    return status;
}
