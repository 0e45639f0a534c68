/*
 * pilot-control-sdk for C: write pilot-host control plugins (the `pilot-control` world) in C. A
 * control plugin serves HTTP under `/plugins/<name>/` on the control plane, receives the supervisor's
 * events and ticks, and drives the supervisor through control calls as far as the manifest grants
 * (`plugins.<name>.grants.control`).
 *
 * A plugin fills one `pilot_control_plugin_t` with PILOT_CONTROL_PLUGIN(...); every callback is
 * optional. The generated bindings (wit-bindgen c) and wasi:http's resources stay inside the SDK:
 * a handler reads a `pilot_request_t` and answers with pilot_respond().
 *
 *     #include "pilot_control_sdk.h"
 *
 *     static void handle(const pilot_request_t *request, pilot_response_t *response) {
 *         pilot_process_list_t list;
 *         if (pilot_control_processes(&list) != PILOT_OK) {       // needs the grant `read`
 *             pilot_respond(response, 403, "text/plain", pilot_last_message());
 *             return;
 *         }
 *         pilot_respondf(response, 200, "text/plain", "%zu processes\n", list.len);
 *         pilot_process_list_free(&list);
 *     }
 *
 *     PILOT_CONTROL_PLUGIN(.name = "ops", .version = "0.1.0", .handle = handle);
 *
 * Each HTTP request runs on a fresh instance; events and ticks go, in order, to one long-lived
 * instance, so statics last there (until a trap discards it). Calls are single-threaded and never
 * re-entered. Strings handed to callbacks are NUL-terminated and live for the call.
 */
#ifndef PILOT_CONTROL_SDK_H
#define PILOT_CONTROL_SDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pilot_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- control calls: each returns PILOT_OK or PILOT_ERR_DENIED / _UNKNOWN_PROCESS / _REFUSED,
 * with the host's message in pilot_last_message(); PILOT_TRY() passes them on. ---- */

/* Where a process is in its life. */
typedef enum {
    PILOT_PHASE_PENDING = 0,     /* waiting for its dependencies */
    PILOT_PHASE_STARTING = 1,    /* being started, not yet confirmed ready */
    PILOT_PHASE_READY = 2,       /* confirmed ready by its ready strategy */
    PILOT_PHASE_RUNNING = 3,     /* spawned, without a ready strategy */
    PILOT_PHASE_STOPPING = 4,
    PILOT_PHASE_STOPPED = 5,
    PILOT_PHASE_BACKING_OFF = 6, /* exited; waiting out the restart delay */
    PILOT_PHASE_FAILED = 7,      /* given up on */
    PILOT_PHASE_SKIPPED = 8,     /* never started because a dependency failed */
} pilot_phase_t;

/* Returns the phase's name as the control API spells it (`backing-off`). */
const char *pilot_phase_name(pilot_phase_t phase);

/* One process as the control plane shows it. Absent strings are NULL. */
typedef struct {
    const char *name;
    pilot_phase_t phase;
    bool has_pid;
    uint32_t pid;
    bool up;              /* ready, or running without a ready strategy */
    uint32_t restarts;
    bool has_uptime;
    double uptime_sec;    /* since its current run started */
    const char *last_exit; /* e.g. `status 3` or `signal 9 (SIGKILL)` */
    const char *reason;    /* why it is in its phase (failed, skipped, stopped) */
} pilot_process_state_t;

/* Processes in manifest order; free with pilot_process_list_free(). */
typedef struct {
    pilot_process_state_t *items;
    size_t len;
} pilot_process_list_t;

/* Samples; free with pilot_stats_list_free(). */
typedef struct {
    pilot_stats_t *items;
    size_t len;
} pilot_stats_list_t;

/* Lines; free with pilot_lines_free(). */
typedef struct {
    char **items;
    size_t len;
} pilot_lines_t;

/* Every process, in manifest order. Grant: `read`. */
pilot_result_t pilot_control_processes(pilot_process_list_t *out);
/* The latest resource sample of every process. Grant: `read`. */
pilot_result_t pilot_control_stats(pilot_stats_list_t *out);
/* The manifest in effect as JSON text (malloc'd: free() it). Grant: `read`. */
pilot_result_t pilot_control_manifest(char **json);
/* The last `tail` lines `process` printed (at most 1000). Grant: `read`. */
pilot_result_t pilot_control_logs(const char *process, uint32_t tail, pilot_lines_t *out);
/* Start, stop or restart the named processes (a NULL-terminated list), all or none. Grants:
 * `start`, `stop`, `restart`. They return once the supervisor accepted the request. */
pilot_result_t pilot_control_start(const char *const *processes);
pilot_result_t pilot_control_stop(const char *const *processes);
pilot_result_t pilot_control_restart(const char *const *processes);
/* Re-reads the manifest and applies it; the report as JSON text (malloc'd). Grant: `reload`. */
pilot_result_t pilot_control_reload(char **report);

void pilot_process_list_free(pilot_process_list_t *list);
void pilot_stats_list_free(pilot_stats_list_t *list);
void pilot_lines_free(pilot_lines_t *lines);

/* ---- HTTP ---- */

/* One header. */
typedef struct {
    const char *name; /* lowercase */
    const char *value;
} pilot_header_t;

/* An HTTP request to `/plugins/<name>/...`. */
typedef struct {
    const char *method;            /* `GET`, `POST`, ... */
    const char *path;              /* after the mount point, from `/`; without the query */
    const char *query;             /* after `?`, or NULL */
    const pilot_header_t *headers;
    size_t headers_len;
    const char *body;              /* NUL-terminated (the body may hold NULs: use body_len) */
    size_t body_len;
} pilot_request_t;

/* Returns the first value of header `name` (case-insensitive), or NULL. */
const char *pilot_request_header(const pilot_request_t *request, const char *name);

/* The answer being built; a handler that sets none answers 500. */
typedef struct pilot_response pilot_response_t;

/* Answers `status` with a body (NUL-terminated) of type `content_type`. */
void pilot_respond(pilot_response_t *response, uint16_t status, const char *content_type,
                   const char *body);
/* The same with `len` bytes. */
void pilot_respond_bytes(pilot_response_t *response, uint16_t status, const char *content_type,
                         const void *body, size_t len);
/* The same with a printf-style body. */
void pilot_respondf(pilot_response_t *response, uint16_t status, const char *content_type,
                    const char *format, ...) __attribute__((format(printf, 4, 5)));
/* Adds a header to the answer (before or after pilot_respond). */
void pilot_response_header(pilot_response_t *response, const char *name, const char *value);

/* A growing text buffer, to build a body (JSON, say): zero-initialise it, free with pilot_buf_free. */
typedef struct {
    char *data; /* NUL-terminated; NULL while empty */
    size_t len;
    size_t cap;
} pilot_buf_t;

/* Appends printf-style text. */
void pilot_buf_printf(pilot_buf_t *buf, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Appends `text` as a JSON string, quoted and escaped; NULL appends `null`. */
void pilot_buf_json_string(pilot_buf_t *buf, const char *text);
/* Returns the text so far ("" while empty). */
const char *pilot_buf_str(const pilot_buf_t *buf);
void pilot_buf_free(pilot_buf_t *buf);

/* ---- outgoing HTTP (pilot_control_http.c) ---- */

/* The answer to an outgoing request; free it with pilot_http_response_free(). */
typedef struct {
    uint16_t status;
    pilot_header_t *headers; /* lowercase names, as received */
    size_t headers_len;
    char *body;              /* NUL-terminated, never NULL (it may hold NULs: use body_len) */
    size_t body_len;
} pilot_http_response_t;

/* Sends `method` `url` (http:// or https://) with `headers` (an array ended by {NULL, NULL}, or
 * NULL) and `body` (text, or NULL for none; `content-length` is set for it), and waits for the
 * whole answer (at most 4 MiB). The host sends only to hosts in `plugins.<name>.grants.http` and
 * caps each wait at 5 s; the plugin's call deadline bounds the rest.
 *
 *     pilot_http_response_t answer;
 *     pilot_header_t json[] = {{"content-type", "application/json"}, {NULL, NULL}};
 *     PILOT_TRY(pilot_http_send("POST", "http://127.0.0.1:9000/hook", json, "{\"text\": \"hi\"}",
 *                               &answer));
 *     pilot_log(PILOT_LOG_INFO, "the hook answered %u", answer.status);
 *     pilot_http_response_free(&answer);
 *
 * Returns PILOT_OK for any status; PILOT_ERR_DENIED when the host is not granted (the message
 * starts with `HTTP-request-denied` and names the grant to add); PILOT_ERR_INVALID_CONFIG for a bad
 * URL or header; PILOT_ERR_UNAVAILABLE when the request fails, the message starting with the
 * wasi:http error code (`connection-refused`, `HTTP-response-timeout`, ...). On an error `response`
 * is left empty. */
pilot_result_t pilot_http_send(const char *method, const char *url, const pilot_header_t *headers,
                               const char *body, pilot_http_response_t *response);
/* Returns the first value of the answer's header `name` (case-insensitive), or NULL. */
const char *pilot_http_response_header(const pilot_http_response_t *response, const char *name);
void pilot_http_response_free(pilot_http_response_t *response);

/* ---- events ---- */

/* The kinds of supervisor events. */
typedef enum {
    PILOT_EVENT_STATE_CHANGED = 0,
    PILOT_EVENT_SPAWNED = 1,
    PILOT_EVENT_READY = 2,
    PILOT_EVENT_EXITED = 3,
    PILOT_EVENT_RESTART_SCHEDULED = 4,
    PILOT_EVENT_GAVE_UP = 5,
    PILOT_EVENT_ADOPTED = 6,
    PILOT_EVENT_RELOADED = 7,
    PILOT_EVENT_PLUGIN = 8,
    PILOT_EVENT_SHUTTING_DOWN = 9,
} pilot_event_kind_t;

/* A set of event kinds, a constant: PILOT_EVENTS(PILOT_EVENT_EXITED, PILOT_EVENT_GAVE_UP). */
#define PILOT_EVENTS(...) PILOT_EVENTS_(__VA_ARGS__, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
#define PILOT_EVENTS_(a, b, c, d, e, f, g, h, i, j, ...)                                          \
    (PILOT_EVENT_BIT_(a) | PILOT_EVENT_BIT_(b) | PILOT_EVENT_BIT_(c) | PILOT_EVENT_BIT_(d) |       \
     PILOT_EVENT_BIT_(e) | PILOT_EVENT_BIT_(f) | PILOT_EVENT_BIT_(g) | PILOT_EVENT_BIT_(h) |       \
     PILOT_EVENT_BIT_(i) | PILOT_EVENT_BIT_(j))
#define PILOT_EVENT_BIT_(kind) ((int)(kind) < 0 ? 0u : 1u << ((int)(kind) < 0 ? 0 : (int)(kind)))

/* Returns the kind's name as the WIT spells it (`restart-scheduled`). */
const char *pilot_event_kind_name(pilot_event_kind_t kind);

/* One supervisor event. `data` is its JSON (as `GET /v1/events` sends it), read with the params
 * getters: pilot_params_f64_or(event->data, "code", -1, &code). */
typedef struct {
    uint64_t seq;           /* from 1, one per event */
    uint64_t at_ms;         /* milliseconds since the Unix epoch */
    pilot_event_kind_t kind;
    const char *process;    /* the process it is about, or NULL */
    const char *json;
    const pilot_params_t *data;
} pilot_control_event_t;

/* What an instance asks for; init may change the plugin's defaults. */
typedef struct {
    uint32_t events;  /* PILOT_EVENTS(...) */
    uint32_t tick_ms; /* between two on_tick calls (at least 100); 0: no ticks */
} pilot_setup_t;

/* ---- the plugin ---- */

/* What a control plugin is and does: fill it with PILOT_CONTROL_PLUGIN(...). */
typedef struct {
    const char *name;    /* the key of `plugins.<name>` and the mount point `/plugins/<name>/` */
    const char *version; /* its own version (semver) */
    uint32_t events;     /* the event kinds to receive by default: PILOT_EVENTS(...) */
    uint32_t tick_ms;    /* the default tick interval; 0: none */
    /* Configures a fresh instance with `plugins.<name>.config`; may change `setup`. */
    pilot_result_t (*init)(const pilot_params_t *config, pilot_setup_t *setup);
    /* Answers one HTTP request; without it every request gets 404. */
    void (*handle)(const pilot_request_t *request, pilot_response_t *response);
    /* Receives one event of a subscribed kind, in order. */
    pilot_result_t (*on_event)(const pilot_control_event_t *event);
    /* Called every `tick_ms`, on the instance that receives events. */
    pilot_result_t (*on_tick)(void);
} pilot_control_plugin_t;

/* Defines the plugin: PILOT_CONTROL_PLUGIN(.name = "x", .version = "0.1.0", .handle = f, ...). */
#define PILOT_CONTROL_PLUGIN(...) const pilot_control_plugin_t pilot_control_plugin = {__VA_ARGS__}

/* The plugin, defined once with PILOT_CONTROL_PLUGIN. */
extern const pilot_control_plugin_t pilot_control_plugin;

#ifdef __cplusplus
}
#endif

#endif
