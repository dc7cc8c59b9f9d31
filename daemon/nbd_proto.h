/*
 * nbd_proto.h — the NBD wire protocol as pure functions over byte buffers:
 * constants, request decoding, the ONE request validator, the ONE errno to
 * NBD error mapping, reply encoders, and the option-haggling state machine.
 * Nothing here does I/O or touches a volume, so the unit tests and the fuzz
 * target drive it with plain bytes. Follows NetworkBlockDevice/nbd
 * doc/proto.md (fixed newstyle, structured replies, base:allocation,
 * NBD_OPT_STARTTLS haggling (the TLS session itself is tls.c's); no
 * extended headers).
 */
#ifndef GLIDEFSD_NBD_PROTO_H
#define GLIDEFSD_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Handshake magics */
#define NBD_MAGIC_INIT 0x4e42444d41474943ULL     /* "NBDMAGIC" */
#define NBD_MAGIC_IHAVEOPT 0x49484156454F5054ULL /* "IHAVEOPT" */
#define NBD_MAGIC_OPT_REPLY 0x3e889045565a9ULL

/* Handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* Transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_RESIZE (1u << 9)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* Options */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10
#define NBD_OPT_EXTENDED_HEADERS 11

/* Option replies */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_ERR_UNSUP 0x80000001u
#define NBD_REP_ERR_POLICY 0x80000002u
#define NBD_REP_ERR_INVALID 0x80000003u
#define NBD_REP_ERR_PLATFORM 0x80000004u
#define NBD_REP_ERR_TLS_REQD 0x80000005u
#define NBD_REP_ERR_UNKNOWN 0x80000006u
#define NBD_REP_ERR_SHUTDOWN 0x80000007u
#define NBD_REP_ERR_BLOCK_SIZE_REQD 0x80000008u
#define NBD_REP_ERR_TOO_BIG 0x80000009u

/* NBD_REP_INFO types */
#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

/* Transmission */
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR 0x8001
#define NBD_REPLY_TYPE_ERROR_OFFSET 0x8002

#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* Wire error values (the only ones a reply may carry). */
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

/* Our size constraints: the library does I/O in 512-byte sectors; 4 KiB
 * writes are already efficient (log-structured journal, no read-modify-write);
 * 32 MiB is the spec's interoperable maximum payload. */
#define NBD_MIN_BLOCK 512u
#define NBD_PREF_BLOCK 4096u
#define NBD_MAX_PAYLOAD (32u * 1024 * 1024)

/* Longest option payload we read into memory; longer ones are skipped. */
#define NBD_MAX_OPTION_LEN (64u * 1024)
/* Strings (export names, queries) are at most 4096 bytes per the spec. */
#define NBD_MAX_STRING 4096u
/* Options per session before we call it a denial of service. */
#define NBD_MAX_OPTIONS 256u
/* The metadata context id we hand out for base:allocation. */
#define NBD_META_ID_BASE_ALLOCATION 1u

#define NBD_REQUEST_SIZE 28
#define NBD_SIMPLE_REPLY_SIZE 16
#define NBD_STRUCTURED_REPLY_SIZE 20
#define NBD_OPTION_HEADER_SIZE 16

/* Big-endian helpers */
static inline void nbd_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void nbd_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void nbd_put64(uint8_t *p, uint64_t v) { nbd_put32(p, (uint32_t)(v >> 32)); nbd_put32(p + 4, (uint32_t)v); }
static inline uint16_t nbd_get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t nbd_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t nbd_get64(const uint8_t *p) { return ((uint64_t)nbd_get32(p) << 32) | nbd_get32(p + 4); }

/* Growable output buffer for handshake replies. */
struct nbd_buf {
    uint8_t *data;
    size_t len, cap;
    bool oom;          /* an append failed: the caller drops the session */
};
void nbd_buf_free(struct nbd_buf *b);
void nbd_buf_append(struct nbd_buf *b, const void *p, size_t n);

/* ------------------------------------------------------------------------ */
/* Transmission phase                                                        */
/* ------------------------------------------------------------------------ */

struct nbd_request {
    uint16_t flags;
    uint16_t type;
    uint64_t cookie;
    uint64_t offset;
    uint32_t len;
};

/* Decode a 28-byte request header. -EPROTO on bad magic. */
int nbd_decode_request(const uint8_t hdr[NBD_REQUEST_SIZE], struct nbd_request *r);

/* What the connection negotiated, as the validator needs it. */
struct nbd_txn_params {
    uint64_t size;        /* current export size */
    uint16_t eflags;      /* transmission flags advertised */
    bool structured;      /* structured replies negotiated */
    bool meta_allocation; /* base:allocation selected for this export */
};

enum nbd_verdict {
    NBD_V_OK,      /* dispatch it */
    NBD_V_ERROR,   /* reply with *err (a WRITE's payload must still be read and dropped) */
    NBD_V_DISC,    /* NBD_CMD_DISC: finish in-flight requests, close */
    NBD_V_DROP,    /* hard disconnect: the stream cannot be resynchronised */
};

/* The one place a request is judged. On NBD_V_ERROR sets *err to a wire
 * error value (NBD_E*). */
enum nbd_verdict nbd_validate_request(const struct nbd_request *r, const struct nbd_txn_params *p,
                                      uint32_t *err);

/* True if the request carries a payload after the header (NBD_CMD_WRITE). */
static inline bool nbd_request_has_payload(const struct nbd_request *r)
{
    return r->type == NBD_CMD_WRITE;
}

/* The one mapping from a (negative or positive) errno to an NBD wire error. */
uint32_t nbd_errno_to_wire(int err);

/* Transmission flags for an export. */
uint16_t nbd_export_flags(bool read_only, bool structured);

const char *nbd_cmd_name(uint16_t type);

/* Reply header encoders: return the bytes written into out. */
size_t nbd_encode_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_SIZE], uint64_t cookie, uint32_t err);
size_t nbd_encode_chunk_header(uint8_t out[NBD_STRUCTURED_REPLY_SIZE], uint64_t cookie,
                               uint16_t flags, uint16_t type, uint32_t payload_len);
/* A whole NBD_REPLY_TYPE_ERROR chunk (header + error + message), flagged DONE.
 * out must hold NBD_STRUCTURED_REPLY_SIZE + 6 + strlen(msg) (msg capped at
 * NBD_MAX_ERRMSG). */
#define NBD_MAX_ERRMSG 200u
size_t nbd_encode_error_chunk(uint8_t *out, uint64_t cookie, uint32_t err, const char *msg);

/* Block-status extents for one context. */
struct nbd_extent {
    uint32_t len;
    uint32_t flags;
};
/* Append a status (len, flags) to an extent list of at most max entries,
 * merging with the previous one when the flags match. Returns false when it
 * did not fit in full (the list is full: the caller stops querying). */
bool nbd_extent_add(struct nbd_extent *ex, size_t *n, size_t max, uint64_t len, uint32_t flags);

/* ------------------------------------------------------------------------ */
/* Handshake phase                                                           */
/* ------------------------------------------------------------------------ */

/* The server greeting (18 bytes). */
#define NBD_GREETING_SIZE 18
void nbd_encode_greeting(uint8_t out[NBD_GREETING_SIZE]);

/* Judge the client's 32-bit flags. 0 or -EPROTO (unknown bits: drop). */
int nbd_check_client_flags(uint32_t cflags);

/* Decode an option header (16 bytes). -EPROTO on bad magic. */
int nbd_decode_option_header(const uint8_t hdr[NBD_OPTION_HEADER_SIZE], uint32_t *opt,
                             uint32_t *len);

/* What an export looks like to the handshake. */
struct nbd_export_info {
    uint64_t size;
    bool read_only;
    char canonical[NBD_MAX_STRING + 1]; /* resolved name (default export mapped) */
    char description[256];
    char error[160]; /* set by a failing open: the option error's message */
};

/* Policy hooks the server (or a test) provides. Names handed to them are
 * NUL-terminated, contain no NUL, and are at most NBD_MAX_STRING bytes.
 * open returns 0 and a handle, or an NBD_REP_ERR_* code; close releases a
 * handle from open. resolve judges a name the way open would, touching
 * nothing (0 or NBD_REP_ERR_*). query answers NBD_OPT_INFO: it describes the
 * export GO would give, creating nothing (NULL: open, then close). list
 * calls emit once per export (desc may be NULL). */
struct nbd_hs_ops {
    uint32_t (*resolve)(void *ctx, const char *name);
    uint32_t (*open)(void *ctx, const char *name, struct nbd_export_info *info, void **handle);
    uint32_t (*query)(void *ctx, const char *name, struct nbd_export_info *info);
    void (*close)(void *ctx, void *handle);
    void (*list)(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
                 void *arg);
    bool (*shutting_down)(void *ctx);
};

struct nbd_hs {
    const struct nbd_hs_ops *ops;
    void *ctx;
    uint32_t cflags;
    unsigned options_seen;
    bool structured;
    bool meta_allocation;             /* base:allocation selected ... */
    char *meta_export;                /* ... for this export name (malloc'd) */
    /* Result of a successful GO / EXPORT_NAME: */
    void *handle;
    struct nbd_export_info info;
    bool block_size_agreed;           /* client asked for NBD_INFO_BLOCK_SIZE in GO */
    /* TLS (the caller sets tls_mode after nbd_hs_init, tls_active once the
     * TLS handshake after NBD_HS_STARTTLS succeeded). */
    int tls_mode;                     /* NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE */
    bool tls_active;
};

#define NBD_TLS_OFF 0     /* STARTTLS unsupported */
#define NBD_TLS_ON 1      /* STARTTLS offered, plaintext allowed */
#define NBD_TLS_REQUIRE 2 /* every option but STARTTLS and ABORT: NBD_REP_ERR_TLS_REQD */

enum nbd_hs_result {
    NBD_HS_CONTINUE, /* send the output, read the next option */
    NBD_HS_GO,       /* send the output, enter transmission (hs->handle set) */
    NBD_HS_ABORT,    /* send the output, close (soft disconnect) */
    NBD_HS_DROP,     /* close without sending anything more */
    NBD_HS_STARTTLS, /* send the output (the ACK), then the TLS handshake */
};

void nbd_hs_init(struct nbd_hs *hs, const struct nbd_hs_ops *ops, void *ctx, uint32_t cflags);
/* Release what the state holds (including an unclaimed handle). */
void nbd_hs_free(struct nbd_hs *hs);

/* Handle one option whose data (len bytes) has been read in full. Appends the
 * replies to out. On NBD_HS_GO, hs->handle/hs->info describe the export and
 * the caller takes ownership of the handle (set hs->handle = NULL). */
enum nbd_hs_result nbd_hs_option(struct nbd_hs *hs, uint32_t opt, const uint8_t *data,
                                 uint32_t len, struct nbd_buf *out);

/* An option whose data was longer than NBD_MAX_OPTION_LEN (already skipped). */
enum nbd_hs_result nbd_hs_option_too_big(struct nbd_hs *hs, uint32_t opt, struct nbd_buf *out);

/* ------------------------------------------------------------------------ */
/* Whole-session driver over a byte buffer (unit tests, fuzzing)             */
/* ------------------------------------------------------------------------ */

enum nbd_stream_end {
    NBD_END_EOF,    /* input ended at a message boundary */
    NBD_END_DROP,   /* the server would hard-disconnect */
    NBD_END_ABORT,  /* NBD_OPT_ABORT */
    NBD_END_DISC,   /* NBD_CMD_DISC */
};

struct nbd_stream_result {
    enum nbd_stream_end end;
    bool transmission;     /* the handshake reached GO / EXPORT_NAME */
    unsigned options;      /* options handled */
    unsigned requests;     /* requests judged */
    unsigned ok;           /* requests that would be dispatched */
    unsigned errors;       /* requests answered with an error */
    uint32_t last_error;   /* wire error of the last refused request */
    uint32_t last_rep;     /* reply type of the last option reply */
    uint64_t reply_bytes;  /* option reply bytes produced */
};

/* Feed the client's side of a session (client flags, options, requests and
 * payloads) through the same functions the server uses, with ops deciding
 * about export names. The export handed out by ops->open is used for the
 * transmission phase. */
void nbd_stream_run(const uint8_t *data, size_t len, const struct nbd_hs_ops *ops, void *ctx,
                    struct nbd_stream_result *res);

#endif
