/*
 * fuzz_azure.c — libFuzzer target for what the azure:// backend reads from
 * the network: List Blobs results and error bodies (lib/azure_xml.c) and
 * Blob Batch answers (lib/azure_batch.c). The first byte picks the parser:
 *   'L' ...           an EnumerationResults document
 *   'E' ...           an error body
 *   'B' n ct '\n' ... a batch answer to n (1..256) subrequests, ct being its
 *                     Content-Type header
 * anything else: all three on the rest. Accepted results must keep the
 * parsers' promises: names 1..1024 bytes without control characters, at
 * most 5000 of them, markers bounded, error codes identifiers; a batch
 * reply per subrequest with an HTTP status, or one whole-batch refusal.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "azure_batch.h"
#include "azure_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static void list(const char *p, size_t n)
{
    struct gfs_az_list_page pg;
    if (gfs_az_xml_parse_list(p, n, &pg, NULL) == 0) {
        if (pg.n > GFS_AZ_LIST_MAX)
            abort();
        for (size_t i = 0; i < pg.n; i++) {
            size_t l = strlen(pg.entries[i].name);
            if (l == 0 || l > GFS_AZ_NAME_MAX || !printable(pg.entries[i].name))
                abort();
        }
        if (pg.next_marker && (!*pg.next_marker || strlen(pg.next_marker) > GFS_AZ_MARKER_MAX ||
                               !printable(pg.next_marker)))
            abort();
        gfs_az_list_page_clear(&pg);
    } else if (pg.n || pg.entries || pg.next_marker) {
        abort(); /* a refused document leaves nothing behind */
    }
}

static void error(const char *p, size_t n)
{
    struct gfs_az_error e;
    if (gfs_az_xml_parse_error(p, n, &e, NULL) == 0) {
        if (!e.code[0] || !printable(e.code) || !printable(e.message))
            abort();
        for (const char *c = e.code; *c; c++)
            if (strchr(" \"'<>&", *c))
                abort();
    } else if (e.code[0] || e.message[0]) {
        abort();
    }
}

static void batch(const char *p, size_t n, size_t nreq)
{
    const char *nl = memchr(p, '\n', n);
    if (!nl || nl - p > 600)
        return;
    char ct[601];
    memcpy(ct, p, (size_t)(nl - p));
    ct[nl - p] = '\0';
    struct gfs_az_batch_reply r[GFS_AZ_BATCH_MAX];
    const struct gfs_az_batch_reply *whole = NULL;
    int rc = gfs_az_batch_parse(ct, nl + 1, n - (size_t)(nl + 1 - p), nreq, r, &whole);
    if (rc == 0) {
        for (size_t i = 0; i < nreq; i++) {
            int want = !whole || i == 0;
            if (want && (r[i].status < 100 || r[i].status > 599))
                abort();
            if (!want && r[i].status != 0)
                abort();
            if (!printable(r[i].code))
                abort();
        }
        if (whole && whole != &r[0])
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        xmlInitParser();
        init = 1;
    }
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0]) {
    case 'L':
        list(p, n);
        break;
    case 'E':
        error(p, n);
        break;
    case 'B':
        if (n >= 1)
            batch(p + 1, n - 1, (size_t)(unsigned char)p[0] % GFS_AZ_BATCH_MAX + 1);
        break;
    default:
        list(p, n);
        error(p, n);
        batch(p, n, 2);
    }
    return 0;
}
