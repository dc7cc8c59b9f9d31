/*
 * cfgcheck.c — load YAML configs with glidefs_config_load() and print, per
 * file, one line: "OK <file>" or "ERR <file> <errno>: <message>". Used by
 * tests/fault/test_hostile.py for the config fuzz (thousands of mutated
 * files per run, one process per batch; a crash names the file it died on
 * because every line is flushed before the next file is read).
 *
 * usage: cfgcheck FILE...   (exit 0 unless the loader broke its contract)
 */
#include <stdio.h>
#include <string.h>

#include "glidefs/glidefs.h"

int main(int argc, char **argv)
{
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        printf("FILE %s\n", argv[i]);
        fflush(stdout);
        glidefs_config *cfg = NULL;
        char err[512];
        memset(err, 'x', sizeof err);
        err[sizeof err - 1] = 0;
        int r = glidefs_config_load(argv[i], &cfg, err, sizeof err);
        if (r == 0) {
            if (!cfg) {
                printf("BROKEN %s: success without a config\n", argv[i]);
                bad = 1;
            } else {
                printf("OK %s\n", argv[i]);
            }
            glidefs_config_free(cfg);
        } else {
            size_t n = strnlen(err, sizeof err);
            if (r > 0 || n == 0 || n == sizeof err || strchr(err, '\n') ||
                strncmp(err, "xxxxxxxx", 8) == 0) {
                printf("BROKEN %s: r=%d, error text not one line: %.200s\n", argv[i], r, err);
                bad = 1;
            } else {
                printf("ERR %s %d: %s\n", argv[i], -r, err);
            }
        }
        fflush(stdout);
    }
    return bad;
}
