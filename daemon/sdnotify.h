/*
 * sdnotify.h — systemd's readiness protocol without libsystemd: one
 * datagram to $NOTIFY_SOCKET ("READY=1" once serving; "MAINPID=<pid>" when
 * a takeover makes this process the service's main process). Nothing when
 * the variable is unset (not under a Type=notify unit).
 */
#ifndef GLIDEFSD_SDNOTIFY_H
#define GLIDEFSD_SDNOTIFY_H

/* 1 sent, 0 not under systemd, negative errno. */
int gd_sd_notify(const char *state);

#endif
