/*
 * azure_xml.c — parse the Azure Blob service XML documents (see azure_xml.h)
 * with libxml2, under the hostile-input rules of xml_util.c (size bound, no
 * network, no entity substitution, no DOCTYPE, libxml2's depth limit,
 * libxml2 never prints), and validation of every field used.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>

#include "azure_xml.h"
#include "cleanup.h"
#include "log.h"
#include "xml_util.h"

/* ---- parsing ------------------------------------------------------------- */

static xmlDocPtr parse(const char *buf, size_t len, const struct gfs_log *log, int level)
{
    return gfs_xml_parse(buf, len, GFS_AZ_XML_MAX, "azure-response.xml", log, level,
                         "azure: the store");
}

/* ---- <Error> ------------------------------------------------------------- */

int gfs_az_xml_parse_error(const char *buf, size_t len, struct gfs_az_error *out,
                           const struct gfs_log *log)
{
    memset(out, 0, sizeof(*out));
    CLEANUP_XMLDOC xmlDocPtr doc = parse(buf, len, log, GLIDEFS_LOG_DEBUG);
    if (!doc)
        return -EBADMSG;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !gfs_xml_is_elem(root, "Error"))
        return -EBADMSG;
    int have_code = 0, rc = 0;
    for (const xmlNode *c = root->children; c && rc == 0; c = c->next) {
        char *t = NULL;
        if (gfs_xml_is_elem(c, "Code")) {
            if (have_code || (rc = gfs_xml_text_of(c, 256, &t)) != 0) {
                rc = rc ? rc : -EBADMSG;
                break;
            }
            /* codes are identifiers: refuse anything else rather than log it */
            size_t n = strlen(t);
            int ok = n > 0 && n < sizeof(out->code);
            for (size_t i = 0; ok && i < n; i++) {
                char ch = t[i];
                ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
            }
            if (ok)
                memcpy(out->code, t, n + 1);
            else
                rc = -EBADMSG;
            have_code = 1;
        } else if (gfs_xml_is_elem(c, "Message")) {
            if ((rc = gfs_xml_text_of(c, 64 * 1024, &t)) == 0) {
                /* Azure's message ends with "\nRequestId:...\nTime:...": keep the first line */
                t[strcspn(t, "\r\n")] = '\0';
                gfs_xml_copy_safe(out->message, sizeof(out->message), t);
            }
        }
        free(t);
    }
    if (rc == 0 && !have_code)
        rc = -EBADMSG;
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- EnumerationResults ---------------------------------------------------- */

void gfs_az_list_page_clear(struct gfs_az_list_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->entries[i].name);
    free(p->entries);
    free(p->next_marker);
    memset(p, 0, sizeof(*p));
}

static int parse_blob(const xmlNode *n, struct gfs_az_list_entry *e)
{
    char *name = NULL, *size = NULL;
    int rc = 0, props = 0;
    for (const xmlNode *c = n->children; c && rc == 0; c = c->next) {
        if (gfs_xml_is_elem(c, "Name")) {
            /* Encoded="true": a name holding characters XML cannot carry,
             * percent-encoded; ours never do, so such a name is not ours */
            xmlChar *enc = xmlGetProp(c, (const xmlChar *)"Encoded");
            int encoded = enc && xmlStrcmp(enc, (const xmlChar *)"false") != 0;
            xmlFree(enc);
            if (name || encoded)
                rc = -EBADMSG;
            else
                rc = gfs_xml_text_of(c, GFS_AZ_NAME_MAX, &name);
        } else if (gfs_xml_is_elem(c, "Properties")) {
            if (props++) {
                rc = -EBADMSG;
                break;
            }
            for (const xmlNode *p = c->children; p && rc == 0; p = p->next) {
                if (!gfs_xml_is_elem(p, "Content-Length"))
                    continue;
                rc = gfs_xml_text_once(p, 32, &size);
            }
        }
    }
    if (rc == 0 && (!name || !size || !*name || gfs_xml_has_control(name) ||
                    !xmlCheckUTF8((const xmlChar *)name)))
        rc = -EBADMSG;
    if (rc == 0)
        rc = gfs_xml_parse_u64(size, &e->size);
    free(size);
    if (rc != 0) {
        free(name);
        return rc;
    }
    e->name = name;
    return 0;
}

int gfs_az_xml_parse_list(const char *buf, size_t len, struct gfs_az_list_page *out,
                          const struct gfs_log *log)
{
    memset(out, 0, sizeof(*out));
    CLEANUP_XMLDOC xmlDocPtr doc = parse(buf, len, log, GLIDEFS_LOG_WARN);
    if (!doc)
        return -EBADMSG;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !gfs_xml_is_elem(root, "EnumerationResults"))
        return -EBADMSG;

    const xmlNode *blobs = NULL;
    int have_next = 0, rc = 0;
    char *next = NULL;
    for (const xmlNode *c = root->children; c && rc == 0; c = c->next) {
        if (gfs_xml_is_elem(c, "Blobs")) {
            if (blobs)
                rc = -EBADMSG;
            blobs = c;
        } else if (gfs_xml_is_elem(c, "NextMarker")) {
            if (have_next++)
                rc = -EBADMSG;
            else if ((rc = gfs_xml_text_of(c, GFS_AZ_MARKER_MAX, &next)) == 0 && gfs_xml_has_control(next))
                rc = -EBADMSG;
        }
    }
    if (rc == 0 && !have_next)
        rc = -EBADMSG; /* Azure always says whether there is more */
    size_t nblobs = 0, nitems = 0;
    for (const xmlNode *c = blobs ? blobs->children : NULL; c && rc == 0; c = c->next) {
        if (gfs_xml_is_elem(c, "Blob"))
            nblobs++;
        if (gfs_xml_is_elem(c, "Blob") || gfs_xml_is_elem(c, "BlobPrefix"))
            nitems++;
    }
    if (rc == 0 && nitems > GFS_AZ_LIST_MAX)
        rc = -EBADMSG;
    struct gfs_az_list_page p = {0};
    if (rc == 0 && nblobs && !(p.entries = calloc(nblobs, sizeof(*p.entries))))
        rc = -ENOMEM;
    for (const xmlNode *c = blobs ? blobs->children : NULL; c && rc == 0; c = c->next) {
        if (!gfs_xml_is_elem(c, "Blob"))
            continue; /* BlobPrefix (only with a delimiter, which we never send): not a key */
        rc = parse_blob(c, &p.entries[p.n]);
        if (rc == 0)
            p.n++;
    }
    if (rc != 0) {
        free(next);
        gfs_az_list_page_clear(&p);
        return rc;
    }
    if (next && *next)
        p.next_marker = next;
    else
        free(next);
    *out = p;
    return 0;
}

/* ---- Put Block List -------------------------------------------------------- */

int gfs_az_xml_build_block_list(const char *const *ids, size_t n, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!ids || n == 0 || n > GFS_AZ_BLOCKS_MAX)
        return -EINVAL;
    static const char head[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
    static const char tail[] = "</BlockList>";
    size_t total = sizeof(head) - 1 + sizeof(tail) - 1;
    for (size_t i = 0; i < n; i++) {
        size_t l = ids[i] ? strlen(ids[i]) : 0;
        if (l == 0 || l > 128)
            return -EINVAL;
        for (size_t k = 0; k < l; k++) {
            char c = ids[i][k];
            /* base64 only: nothing to escape */
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || c == '='))
                return -EINVAL;
        }
        total += l + sizeof("<Latest></Latest>") - 1;
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return -ENOMEM;
    size_t off = 0;
    off += (size_t)snprintf(buf + off, total + 1 - off, "%s", head);
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(buf + off, total + 1 - off, "<Latest>%s</Latest>", ids[i]);
    off += (size_t)snprintf(buf + off, total + 1 - off, "%s", tail);
    *out = buf;
    *outlen = off;
    return 0;
}
