/*
 * xml_util.c — XML from outside under the hostile-input rules (see
 * xml_util.h). libxml2 never prints: the parser context is silenced
 * (XML_PARSE_NOERROR | XML_PARSE_NOWARNING), and what libxml2 reports
 * outside the context (encoding conversion and I/O errors, e.g. for a
 * document declaring encoding="ISO-8859-1" or "SHIFT_JIS" and carrying
 * bytes that are not) goes to a structured error handler installed for the
 * one parse and removed after it. That handler is thread-local state in
 * libxml2 (xmlSetStructuredErrorFunc), so other threads and other libxml2
 * users in the process never see it, and whatever this thread had before is
 * put back. The first message of a document goes to the caller's log.
 */
#include "xml_util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlstring.h>

#include "log.h"

/* SAX hooks called when a DOCTYPE begins: stop at once and remember why.
 * Nothing a store sends has a DOCTYPE; one is an attack (XXE, entity expansion). */
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

/* libxml2's messages about one document: the first goes to the log. */
struct xml_diag {
    const struct gfs_log *log;
    int level;
    int n;
    const char *who; /* "s3: the store", "sts: STS", "azure: the store" */
};

static void xml_error(void *arg, xmlErrorPtr e)
{
    struct xml_diag *d = arg;
    if (d->n++ || !e)
        return;
    char msg[200];
    gfs_xml_copy_safe(msg, sizeof msg, e->message ? e->message : "(no message)");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '?' || msg[n - 1] == ' '))
        msg[--n] = '\0'; /* the trailing newline, made '?' */
    gfs_logf(d->log, d->level, "%s sent XML that does not parse: %s (line %d)", d->who, msg,
             e->line);
}

xmlDocPtr gfs_xml_parse(const char *buf, size_t len, size_t max, const char *docname,
                        const struct gfs_log *log, int level, const char *who)
{
    if (!buf || len == 0 || len > max || len > INT_MAX)
        return NULL;
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return NULL;
    /* this thread's handler, for this parse only (see the top of the file) */
    struct xml_diag diag = {log, level, 0, who};
    xmlStructuredErrorFunc saved_fn = xmlStructuredError;
    void *saved_ctx = xmlStructuredErrorContext;
    xmlSetStructuredErrorFunc(&diag, xml_error);
    ctxt->sax->internalSubset = refuse_subset;
    ctxt->sax->externalSubset = refuse_subset;
    ctxt->sax->entityDecl = refuse_entity;
    /* No XML_PARSE_NOENT (no substitution), no DTDLOAD, no HUGE (keeps the
     * depth and text-size limits), NONET, and silence. */
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, buf, (int)len, docname, NULL, opts);
    int refused = ctxt->_private != NULL || !ctxt->wellFormed;
    xmlFreeParserCtxt(ctxt);
    xmlSetStructuredErrorFunc(saved_ctx, saved_fn);
    if (doc && (refused || doc->intSubset || doc->extSubset)) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

int gfs_xml_is_elem(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

/* The text of a simple element: only text children allowed (no child
 * elements, no entity references), at most max bytes. malloc'd. */
int gfs_xml_text_of(const xmlNode *n, size_t max, char **out)
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

int gfs_xml_text_once(const xmlNode *n, size_t max, char **out)
{
    if (*out)
        return -EBADMSG;
    return gfs_xml_text_of(n, max, out);
}

/* Copy src into dst (cap bytes), cut at a UTF-8 character boundary, control
 * characters replaced by '?' so the result can go into a log line. */
void gfs_xml_copy_safe(char *dst, size_t cap, const char *src)
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

int gfs_xml_has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* A non-negative decimal integer, digits only, no overflow. */
int gfs_xml_parse_u64(const char *s, uint64_t *out)
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
