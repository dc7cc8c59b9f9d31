/*
 * azure_xml.c — parse the Azure Blob service XML documents (see azure_xml.h)
 * with libxml2, with the hostile-input rules of s3_xml.c: size bound, no
 * network, no entity substitution, no DOCTYPE at all (the parser is stopped
 * as soon as one starts), libxml2's own depth limit (no XML_PARSE_HUGE), and
 * validation of every field used. libxml2 never prints: the parser context
 * is silenced, and what libxml2 reports outside the context (encoding
 * conversion and I/O errors) goes to a structured error handler installed
 * for the one parse and removed after it (xmlSetStructuredErrorFunc is
 * thread-local state in libxml2, and whatever this thread had before is put
 * back). The first message about a document goes to the caller's log.
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

/* ---- parsing ------------------------------------------------------------- */

/* SAX hooks called when a DOCTYPE begins: stop at once and remember why.
 * Nothing Azure sends has a DOCTYPE; one is an attack (XXE, entity expansion). */
static void refuse_subset(void *vctxt, const xmlChar *name, const xmlChar *ext_id,
                          const xmlChar *sys_id)
{
    (void)name;
    (void)ext_id;
    (void)sys_id;
    xmlParserCtxtPtr ctxt = vctxt;
    ctxt->_private = (void *)1;
    xmlStopParser(ctxt);
}

static void refuse_entity(void *vctxt, const xmlChar *name, int type, const xmlChar *public_id,
                          const xmlChar *system_id, xmlChar *content)
{
    (void)name;
    (void)type;
    (void)public_id;
    (void)system_id;
    (void)content;
    xmlParserCtxtPtr ctxt = vctxt;
    ctxt->_private = (void *)1;
    xmlStopParser(ctxt);
}

static void copy_safe(char *dst, size_t cap, const char *src);

struct xml_diag {
    const struct gfs_log *log;
    int level;
    int n;
};

static void xml_error(void *arg, xmlErrorPtr e)
{
    struct xml_diag *d = arg;
    if (d->n++ || !e)
        return;
    char msg[200];
    copy_safe(msg, sizeof msg, e->message ? e->message : "(no message)");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '?' || msg[n - 1] == ' '))
        msg[--n] = '\0'; /* the trailing newline, made '?' */
    gfs_logf(d->log, d->level, "azure: the store sent XML that does not parse: %s (line %d)",
             msg, e->line);
}

static xmlDocPtr parse(const char *buf, size_t len, const struct gfs_log *log, int level)
{
    if (!buf || len == 0 || len > GFS_AZ_XML_MAX || len > INT_MAX)
        return NULL;
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return NULL;
    struct xml_diag diag = {log, level, 0};
    xmlStructuredErrorFunc saved_fn = xmlStructuredError;
    void *saved_ctx = xmlStructuredErrorContext;
    xmlSetStructuredErrorFunc(&diag, xml_error);
    ctxt->sax->internalSubset = refuse_subset;
    ctxt->sax->externalSubset = refuse_subset;
    ctxt->sax->entityDecl = refuse_entity;
    /* No XML_PARSE_NOENT (no substitution), no DTDLOAD, no HUGE (keeps the
     * depth and text-size limits), NONET, and silence. */
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, buf, (int)len, "azure-response.xml", NULL, opts);
    int refused = ctxt->_private != NULL || !ctxt->wellFormed;
    xmlFreeParserCtxt(ctxt);
    xmlSetStructuredErrorFunc(saved_ctx, saved_fn);
    if (doc && (refused || doc->intSubset || doc->extSubset)) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

static int is_elem(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

/* The text of a simple element: only text children allowed (no child
 * elements, no entity references), at most max bytes. malloc'd. */
static int text_of(const xmlNode *n, size_t max, char **out)
{
    *out = NULL;
    size_t len = 0;
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (c->type == XML_COMMENT_NODE || c->type == XML_PI_NODE)
            continue;
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            return -EBADMSG;
        size_t l = c->content ? strlen((const char *)c->content) : 0;
        if (l > max || len + l > max)
            return -EBADMSG;
        len += l;
    }
    char *s = malloc(len + 1);
    if (!s)
        return -ENOMEM;
    size_t off = 0;
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            continue;
        size_t l = c->content ? strlen((const char *)c->content) : 0;
        memcpy(s + off, c->content, l);
        off += l;
    }
    s[off] = '\0';
    *out = s;
    return 0;
}

/* Copy src into dst (cap bytes), cut at a UTF-8 character boundary, control
 * characters replaced by '?' so the result can go into a log line. */
static void copy_safe(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[n] = '\0';
}

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* A non-negative decimal integer, digits only, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || strlen(s) > 20)
        return -EBADMSG;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EBADMSG;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EBADMSG;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static void free_doc(xmlDocPtr *d)
{
    if (*d)
        xmlFreeDoc(*d);
}
#define CLEANUP_XMLDOC __attribute__((cleanup(free_doc)))

/* ---- <Error> ------------------------------------------------------------- */

int gfs_az_xml_parse_error(const char *buf, size_t len, struct gfs_az_error *out,
                           const struct gfs_log *log)
{
    memset(out, 0, sizeof(*out));
    CLEANUP_XMLDOC xmlDocPtr doc = parse(buf, len, log, GLIDEFS_LOG_DEBUG);
    if (!doc)
        return -EBADMSG;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !is_elem(root, "Error"))
        return -EBADMSG;
    int have_code = 0, rc = 0;
    for (const xmlNode *c = root->children; c && rc == 0; c = c->next) {
        char *t = NULL;
        if (is_elem(c, "Code")) {
            if (have_code || (rc = text_of(c, 256, &t)) != 0) {
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
        } else if (is_elem(c, "Message")) {
            if ((rc = text_of(c, 64 * 1024, &t)) == 0) {
                /* Azure's message ends with "\nRequestId:...\nTime:...": keep the first line */
                t[strcspn(t, "\r\n")] = '\0';
                copy_safe(out->message, sizeof(out->message), t);
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
        if (is_elem(c, "Name")) {
            /* Encoded="true": a name holding characters XML cannot carry,
             * percent-encoded; ours never do, so such a name is not ours */
            xmlChar *enc = xmlGetProp(c, (const xmlChar *)"Encoded");
            int encoded = enc && xmlStrcmp(enc, (const xmlChar *)"false") != 0;
            xmlFree(enc);
            if (name || encoded)
                rc = -EBADMSG;
            else
                rc = text_of(c, GFS_AZ_NAME_MAX, &name);
        } else if (is_elem(c, "Properties")) {
            if (props++) {
                rc = -EBADMSG;
                break;
            }
            for (const xmlNode *p = c->children; p && rc == 0; p = p->next) {
                if (!is_elem(p, "Content-Length"))
                    continue;
                if (size)
                    rc = -EBADMSG;
                else
                    rc = text_of(p, 32, &size);
            }
        }
    }
    if (rc == 0 && (!name || !size || !*name || has_control(name) ||
                    !xmlCheckUTF8((const xmlChar *)name)))
        rc = -EBADMSG;
    if (rc == 0)
        rc = parse_u64(size, &e->size);
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
    if (!root || !is_elem(root, "EnumerationResults"))
        return -EBADMSG;

    const xmlNode *blobs = NULL;
    int have_next = 0, rc = 0;
    char *next = NULL;
    for (const xmlNode *c = root->children; c && rc == 0; c = c->next) {
        if (is_elem(c, "Blobs")) {
            if (blobs)
                rc = -EBADMSG;
            blobs = c;
        } else if (is_elem(c, "NextMarker")) {
            if (have_next++)
                rc = -EBADMSG;
            else if ((rc = text_of(c, GFS_AZ_MARKER_MAX, &next)) == 0 && has_control(next))
                rc = -EBADMSG;
        }
    }
    if (rc == 0 && !have_next)
        rc = -EBADMSG; /* Azure always says whether there is more */
    size_t nblobs = 0, nitems = 0;
    for (const xmlNode *c = blobs ? blobs->children : NULL; c && rc == 0; c = c->next) {
        if (is_elem(c, "Blob"))
            nblobs++;
        if (is_elem(c, "Blob") || is_elem(c, "BlobPrefix"))
            nitems++;
    }
    if (rc == 0 && nitems > GFS_AZ_LIST_MAX)
        rc = -EBADMSG;
    struct gfs_az_list_page p = {0};
    if (rc == 0 && nblobs && !(p.entries = calloc(nblobs, sizeof(*p.entries))))
        rc = -ENOMEM;
    for (const xmlNode *c = blobs ? blobs->children : NULL; c && rc == 0; c = c->next) {
        if (!is_elem(c, "Blob"))
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
