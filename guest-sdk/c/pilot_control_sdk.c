/*
 * The bridge from the generated bindings (`wit-bindgen c`, world `pilot-control`) to a control
 * plugin's pilot_control_plugin_t: the control calls with C types, wasi:http's request and response
 * resources behind pilot_request_t and pilot_respond(), events with parsed JSON, setup from a mask.
 *
 * Ownership follows the canonical ABI: an export owns its arguments (freed here after the call) and
 * hands the host malloc'd results; an import's results are ours (freed by the *_free functions) and
 * its arguments stay ours. Resources are dropped here as soon as they are used up.
 */
#include "pilot_control_sdk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pilot_control.h"
#include "pilot_json.h"

typedef pilot_control_string_t str_t;
typedef exports_pilot_plugin_control_plugin_plugin_error_t wit_error_t;

/* The largest request body read (the host caps bodies lower). */
#define MAX_BODY (4u << 20)

void pilot_log(pilot_log_level_t level, const char *format, ...) {
    char line[4096];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    str_t text = {(uint8_t *)line, strlen(line)};
    pilot_plugin_host_log((pilot_plugin_host_log_level_t)level, &text);
}

/* Returns a NUL-terminated, malloc'd copy of `s`. */
static char *cstr(const str_t *s) {
    char *out = malloc(s->len + 1);
    if (s->len) memcpy(out, s->ptr, s->len);
    out[s->len] = '\0';
    return out;
}

static char *cstr_opt(const pilot_control_option_string_t *s) {
    return s->is_some ? cstr(&s->val) : NULL;
}

/* ---- control calls ---- */

/* Turns a control error into a result with its message, and frees it. */
static pilot_result_t control_error(pilot_plugin_control_control_error_t *err) {
    pilot_result_t kind = PILOT_ERR_REFUSED;
    if (err->tag == PILOT_PLUGIN_CONTROL_CONTROL_ERROR_DENIED) kind = PILOT_ERR_DENIED;
    if (err->tag == PILOT_PLUGIN_CONTROL_CONTROL_ERROR_UNKNOWN_PROCESS) kind = PILOT_ERR_UNKNOWN_PROCESS;
    /* All variants hold one string at the same place. */
    pilot_error(kind, "%.*s", (int)err->val.denied.len, (const char *)err->val.denied.ptr);
    pilot_plugin_control_control_error_free(err);
    return kind;
}

const char *pilot_phase_name(pilot_phase_t phase) {
    static const char *const NAMES[] = {"pending", "starting", "ready", "running", "stopping",
                                        "stopped", "backing-off", "failed", "skipped"};
    return (unsigned)phase < sizeof NAMES / sizeof *NAMES ? NAMES[phase] : "unknown";
}

pilot_result_t pilot_control_processes(pilot_process_list_t *out) {
    pilot_plugin_control_list_process_state_t got;
    pilot_plugin_control_control_error_t err;
    *out = (pilot_process_list_t){NULL, 0};
    if (!pilot_plugin_control_processes(&got, &err)) return control_error(&err);
    out->items = calloc(got.len + 1, sizeof *out->items);
    out->len = got.len;
    for (size_t i = 0; i < got.len; i++) {
        const pilot_plugin_control_process_state_t *p = &got.ptr[i];
        out->items[i] = (pilot_process_state_t){
            .name = cstr(&p->name),
            .phase = (pilot_phase_t)p->phase,
            .has_pid = p->pid.is_some,
            .pid = p->pid.val,
            .up = p->up,
            .restarts = p->restarts,
            .has_uptime = p->uptime_sec.is_some,
            .uptime_sec = p->uptime_sec.val,
            .last_exit = cstr_opt(&p->last_exit),
            .reason = cstr_opt(&p->reason),
        };
    }
    pilot_plugin_control_list_process_state_free(&got);
    return PILOT_OK;
}

void pilot_process_list_free(pilot_process_list_t *list) {
    for (size_t i = 0; i < list->len; i++) {
        free((char *)list->items[i].name);
        free((char *)list->items[i].last_exit);
        free((char *)list->items[i].reason);
    }
    free(list->items);
    *list = (pilot_process_list_t){NULL, 0};
}

pilot_result_t pilot_control_stats(pilot_stats_list_t *out) {
    pilot_plugin_control_list_process_stats_t got;
    pilot_plugin_control_control_error_t err;
    *out = (pilot_stats_list_t){NULL, 0};
    if (!pilot_plugin_control_stats(&got, &err)) return control_error(&err);
    out->items = calloc(got.len + 1, sizeof *out->items);
    out->len = got.len;
    for (size_t i = 0; i < got.len; i++) {
        const pilot_plugin_control_process_stats_t *s = &got.ptr[i];
        out->items[i] = (pilot_stats_t){cstr(&s->name), s->pid.is_some, s->pid.val,
                                        s->cpu_percent, s->max_cpu_percent, s->rss_bytes,
                                        s->max_rss_bytes, s->restarts, s->uptime_sec};
    }
    pilot_plugin_control_list_process_stats_free(&got);
    return PILOT_OK;
}

void pilot_stats_list_free(pilot_stats_list_t *list) {
    for (size_t i = 0; i < list->len; i++) free((char *)list->items[i].name);
    free(list->items);
    *list = (pilot_stats_list_t){NULL, 0};
}

pilot_result_t pilot_control_manifest(char **json) {
    str_t got;
    pilot_plugin_control_control_error_t err;
    *json = NULL;
    if (!pilot_plugin_control_manifest(&got, &err)) return control_error(&err);
    *json = cstr(&got);
    pilot_control_string_free(&got);
    return PILOT_OK;
}

pilot_result_t pilot_control_logs(const char *process, uint32_t tail, pilot_lines_t *out) {
    str_t name = {(uint8_t *)process, strlen(process)};
    pilot_control_list_string_t got;
    pilot_plugin_control_control_error_t err;
    *out = (pilot_lines_t){NULL, 0};
    if (!pilot_plugin_control_logs(&name, tail, &got, &err)) return control_error(&err);
    out->items = calloc(got.len + 1, sizeof *out->items);
    out->len = got.len;
    for (size_t i = 0; i < got.len; i++) out->items[i] = cstr(&got.ptr[i]);
    pilot_control_list_string_free(&got);
    return PILOT_OK;
}

void pilot_lines_free(pilot_lines_t *lines) {
    for (size_t i = 0; i < lines->len; i++) free(lines->items[i]);
    free(lines->items);
    *lines = (pilot_lines_t){NULL, 0};
}

/* Calls start, stop or restart with a NULL-terminated list of names (borrowed, not copied). */
static pilot_result_t names_call(bool (*call)(pilot_control_list_string_t *,
                                              pilot_plugin_control_control_error_t *),
                                 const char *const *processes) {
    size_t n = 0;
    while (processes != NULL && processes[n] != NULL) n++;
    str_t *names = calloc(n + 1, sizeof *names);
    for (size_t i = 0; i < n; i++) names[i] = (str_t){(uint8_t *)processes[i], strlen(processes[i])};
    pilot_control_list_string_t list = {names, n};
    pilot_plugin_control_control_error_t err;
    bool ok = call(&list, &err);
    free(names);
    return ok ? PILOT_OK : control_error(&err);
}

pilot_result_t pilot_control_start(const char *const *processes) {
    return names_call(pilot_plugin_control_start, processes);
}

pilot_result_t pilot_control_stop(const char *const *processes) {
    return names_call(pilot_plugin_control_stop, processes);
}

pilot_result_t pilot_control_restart(const char *const *processes) {
    return names_call(pilot_plugin_control_restart, processes);
}

pilot_result_t pilot_control_reload(char **report) {
    str_t got;
    pilot_plugin_control_control_error_t err;
    *report = NULL;
    if (!pilot_plugin_control_reload(&got, &err)) return control_error(&err);
    *report = cstr(&got);
    pilot_control_string_free(&got);
    return PILOT_OK;
}

/* ---- text buffers ---- */

static void buf_reserve(pilot_buf_t *buf, size_t more) {
    if (buf->len + more + 1 <= buf->cap) return;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < buf->len + more + 1) cap *= 2;
    char *grown = realloc(buf->data, cap);
    if (grown == NULL) abort(); /* a trap: the host discards the instance */
    buf->data = grown;
    buf->cap = cap;
}

static void buf_vprintf(pilot_buf_t *buf, const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    int n = vsnprintf(NULL, 0, format, args);
    if (n > 0) {
        buf_reserve(buf, (size_t)n);
        vsnprintf(buf->data + buf->len, (size_t)n + 1, format, again);
        buf->len += (size_t)n;
    }
    va_end(again);
}

void pilot_buf_printf(pilot_buf_t *buf, const char *format, ...) {
    va_list args;
    va_start(args, format);
    buf_vprintf(buf, format, args);
    va_end(args);
}

void pilot_buf_json_string(pilot_buf_t *buf, const char *text) {
    if (text == NULL) {
        pilot_buf_printf(buf, "null");
        return;
    }
    buf_reserve(buf, strlen(text) + 2);
    buf->data[buf->len++] = '"';
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\') pilot_buf_printf(buf, "\\%c", *c);
        else if (*c == '\n') pilot_buf_printf(buf, "\\n");
        else if (*c < 0x20) pilot_buf_printf(buf, "\\u%04x", *c);
        else {
            buf_reserve(buf, 1);
            buf->data[buf->len++] = (char)*c;
        }
    }
    buf_reserve(buf, 1);
    buf->data[buf->len++] = '"';
    buf->data[buf->len] = '\0';
}

const char *pilot_buf_str(const pilot_buf_t *buf) { return buf->data ? buf->data : ""; }

void pilot_buf_free(pilot_buf_t *buf) {
    free(buf->data);
    *buf = (pilot_buf_t){NULL, 0, 0};
}

/* ---- HTTP ---- */

struct pilot_response {
    bool answered;
    uint16_t status;
    pilot_buf_t body;
    pilot_header_t *headers; /* malloc'd names and values */
    size_t headers_len;
};

const char *pilot_request_header(const pilot_request_t *request, const char *name) {
    for (size_t i = 0; i < request->headers_len; i++) {
        if (strcasecmp(request->headers[i].name, name) == 0) return request->headers[i].value;
    }
    return NULL;
}

void pilot_response_header(pilot_response_t *response, const char *name, const char *value) {
    pilot_header_t *grown =
        realloc(response->headers, (response->headers_len + 1) * sizeof *response->headers);
    if (grown == NULL) abort();
    response->headers = grown;
    size_t n = strlen(name);
    char *lower = malloc(n + 1);
    for (size_t i = 0; i <= n; i++) lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    response->headers[response->headers_len++] = (pilot_header_t){lower, strdup(value)};
}

void pilot_respond_bytes(pilot_response_t *response, uint16_t status, const char *content_type,
                         const void *body, size_t len) {
    response->answered = true;
    response->status = status;
    response->body.len = 0;
    buf_reserve(&response->body, len);
    if (len) memcpy(response->body.data, body, len);
    response->body.len = len;
    response->body.data[len] = '\0';
    if (content_type != NULL) pilot_response_header(response, "content-type", content_type);
}

void pilot_respond(pilot_response_t *response, uint16_t status, const char *content_type,
                   const char *body) {
    pilot_respond_bytes(response, status, content_type, body, body ? strlen(body) : 0);
}

void pilot_respondf(pilot_response_t *response, uint16_t status, const char *content_type,
                    const char *format, ...) {
    pilot_buf_t text = {0};
    va_list args;
    va_start(args, format);
    buf_vprintf(&text, format, args);
    va_end(args);
    pilot_respond_bytes(response, status, content_type, text.data, text.len);
    pilot_buf_free(&text);
}

static const char *method_name(const wasi_http_types_method_t *m, char **other) {
    static const char *const NAMES[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (m->tag == WASI_HTTP_TYPES_METHOD_OTHER) return *other = cstr(&m->val.other);
    return m->tag < sizeof NAMES / sizeof *NAMES ? NAMES[m->tag] : "?";
}

/* Reads the whole body of `request` (at most MAX_BODY bytes) into `out`; false if it fails. */
static bool read_body(wasi_http_types_borrow_incoming_request_t request, pilot_buf_t *out) {
    wasi_http_types_own_incoming_body_t body;
    if (!wasi_http_types_method_incoming_request_consume(request, &body)) return false;
    wasi_http_types_own_input_stream_t stream;
    if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body),
                                                     &stream)) {
        wasi_http_types_incoming_body_drop_own(body);
        return false;
    }
    bool ok = true;
    for (;;) {
        pilot_control_list_u8_t chunk;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_input_stream_blocking_read(
                wasi_io_streams_borrow_input_stream(stream), 65536, &chunk, &err)) {
            ok = err.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED;
            wasi_io_streams_stream_error_free(&err);
            break;
        }
        bool fits = out->len + chunk.len <= MAX_BODY;
        if (fits && chunk.len) {
            buf_reserve(out, chunk.len);
            memcpy(out->data + out->len, chunk.ptr, chunk.len);
            out->len += chunk.len;
            out->data[out->len] = '\0';
        }
        pilot_control_list_u8_free(&chunk);
        if (!fits) {
            ok = false;
            break;
        }
    }
    wasi_io_streams_input_stream_drop_own(stream);
    wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(body));
    return ok;
}

/* Sends `response` through `out`: status, headers, then the body in blocking chunks. */
static void send_response(wasi_http_types_own_response_outparam_t out, pilot_response_t *response) {
    size_t n = response->headers_len;
    wasi_http_types_tuple2_field_name_field_value_t *pairs = calloc(n + 1, sizeof *pairs);
    for (size_t i = 0; i < n; i++) {
        const pilot_header_t *h = &response->headers[i];
        pairs[i].f0 = (str_t){(uint8_t *)h->name, strlen(h->name)};
        pairs[i].f1 = (wasi_http_types_field_value_t){(uint8_t *)h->value, strlen(h->value)};
    }
    wasi_http_types_list_tuple2_field_name_field_value_t list = {pairs, n};
    wasi_http_types_own_fields_t fields;
    wasi_http_types_header_error_t header_err;
    if (!wasi_http_types_static_fields_from_list(&list, &fields, &header_err)) {
        fields = wasi_http_types_constructor_fields(); /* a forbidden or malformed header: drop all */
    }
    free(pairs);
    wasi_http_types_own_outgoing_response_t answer = wasi_http_types_constructor_outgoing_response(fields);
    wasi_http_types_borrow_outgoing_response_t borrowed = wasi_http_types_borrow_outgoing_response(answer);
    wasi_http_types_method_outgoing_response_set_status_code(borrowed, response->status);
    wasi_http_types_own_outgoing_body_t body;
    bool has_body = wasi_http_types_method_outgoing_response_body(borrowed, &body);
    wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false};
    result.val.ok = answer;
    wasi_http_types_static_response_outparam_set(out, &result);
    if (!has_body) return;
    wasi_http_types_own_output_stream_t stream;
    if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
        wasi_io_streams_borrow_output_stream_t s = wasi_io_streams_borrow_output_stream(stream);
        for (size_t at = 0; at < response->body.len; at += 4096) {
            size_t len = response->body.len - at < 4096 ? response->body.len - at : 4096;
            pilot_control_list_u8_t chunk = {(uint8_t *)response->body.data + at, len};
            wasi_io_streams_stream_error_t err;
            if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(s, &chunk, &err)) {
                wasi_io_streams_stream_error_free(&err);
                break;
            }
        }
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t finish_err;
    if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &finish_err)) {
        wasi_http_types_error_code_free(&finish_err);
    }
}

void exports_wasi_http_incoming_handler_handle(wasi_http_types_own_incoming_request_t request,
                                               wasi_http_types_own_response_outparam_t out) {
    wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(req, &method);
    char *other = NULL;
    const char *method_text = method_name(&method, &other);
    str_t target = {0};
    char *full = wasi_http_types_method_incoming_request_path_with_query(req, &target)
                     ? cstr(&target)
                     : strdup("/");
    pilot_control_string_free(&target);
    char *query = strchr(full, '?');
    if (query != NULL) *query++ = '\0';

    wasi_http_types_list_tuple2_field_name_field_value_t entries;
    wasi_http_types_own_fields_t fields = wasi_http_types_method_incoming_request_headers(req);
    wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(fields), &entries);
    wasi_http_types_fields_drop_own(fields);
    pilot_header_t *headers = calloc(entries.len + 1, sizeof *headers);
    for (size_t i = 0; i < entries.len; i++) {
        str_t value = {entries.ptr[i].f1.ptr, entries.ptr[i].f1.len};
        headers[i] = (pilot_header_t){cstr(&entries.ptr[i].f0), cstr(&value)};
    }

    pilot_buf_t body = {0};
    pilot_response_t response = {0};
    if (!read_body(req, &body)) {
        pilot_respondf(&response, 413, "text/plain; charset=utf-8",
                       "the request body could not be read (at most %u MiB)\n", MAX_BODY >> 20);
    } else {
        pilot_request_t view = {
            .method = method_text,
            .path = full[0] ? full : "/",
            .query = query,
            .headers = headers,
            .headers_len = entries.len,
            .body = pilot_buf_str(&body),
            .body_len = body.len,
        };
        if (pilot_control_plugin.handle == NULL) {
            pilot_respondf(&response, 404, "text/plain; charset=utf-8", "no route for %s %s\n",
                           view.method, view.path);
        } else {
            pilot_control_plugin.handle(&view, &response);
            if (!response.answered) {
                pilot_respondf(&response, 500, "text/plain; charset=utf-8",
                               "the plugin's handler gave no answer to %s %s\n", view.method,
                               view.path);
            }
        }
    }
    wasi_http_types_incoming_request_drop_own(request);
    send_response(out, &response);

    for (size_t i = 0; i < entries.len; i++) {
        free((char *)headers[i].name);
        free((char *)headers[i].value);
    }
    free(headers);
    wasi_http_types_list_tuple2_field_name_field_value_free(&entries);
    for (size_t i = 0; i < response.headers_len; i++) {
        free((char *)response.headers[i].name);
        free((char *)response.headers[i].value);
    }
    free(response.headers);
    pilot_buf_free(&response.body);
    pilot_buf_free(&body);
    free(full);
    free(other);
    wasi_http_types_method_free(&method);
}

/* ---- the plugin's exports ---- */

/* Fills the WIT error from a pilot_result_t error and the message. */
static void to_wit_error(pilot_result_t result, wit_error_t *err) {
    switch (result) {
    case PILOT_ERR_INVALID_CONFIG: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_INVALID_CONFIG; break;
    case PILOT_ERR_UNKNOWN_NAME: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_UNKNOWN_NAME; break;
    case PILOT_ERR_UNAVAILABLE: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_UNAVAILABLE; break;
    default: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_FAILED; break;
    }
    pilot_control_string_dup(&err->val.failed, pilot_last_message());
}

const char *pilot_event_kind_name(pilot_event_kind_t kind) {
    static const char *const NAMES[] = {"state-changed", "spawned",  "ready",    "exited",
                                        "restart-scheduled", "gave-up", "adopted", "reloaded",
                                        "plugin",        "shutting-down"};
    return (unsigned)kind < sizeof NAMES / sizeof *NAMES ? NAMES[kind] : "unknown";
}

void exports_pilot_plugin_control_plugin_describe(
    exports_pilot_plugin_control_plugin_control_description_t *ret) {
    pilot_control_string_dup(&ret->name, pilot_control_plugin.name);
    pilot_control_string_dup(&ret->version, pilot_control_plugin.version);
}

bool exports_pilot_plugin_control_plugin_init(str_t *config,
                                              exports_pilot_plugin_control_plugin_setup_t *ret,
                                              wit_error_t *err) {
    pilot_params_t params;
    pilot_setup_t setup = {pilot_control_plugin.events, pilot_control_plugin.tick_ms};
    pilot_result_t r = pilot_params_parse((const char *)config->ptr, config->len, "config", &params);
    pilot_control_string_free(config);
    if (r == PILOT_OK) {
        if (pilot_control_plugin.init != NULL) r = pilot_control_plugin.init(&params, &setup);
        pilot_params_free(&params);
    }
    if (r != PILOT_OK) {
        to_wit_error(r, err);
        return false;
    }
    size_t n = 0;
    exports_pilot_plugin_control_plugin_event_kind_t *kinds = malloc(32);
    for (unsigned k = 0; k <= PILOT_EVENT_SHUTTING_DOWN; k++) {
        if (setup.events & (1u << k)) kinds[n++] = (exports_pilot_plugin_control_plugin_event_kind_t)k;
    }
    ret->events.ptr = kinds;
    ret->events.len = n;
    ret->tick_ms.is_some = setup.tick_ms != 0;
    ret->tick_ms.val = setup.tick_ms;
    return true;
}

bool exports_pilot_plugin_control_plugin_on_event(exports_pilot_plugin_control_plugin_event_t *event,
                                                  wit_error_t *err) {
    pilot_result_t r = PILOT_OK;
    if (pilot_control_plugin.on_event != NULL) {
        pilot_params_t data;
        r = pilot_params_parse((const char *)event->json.ptr, event->json.len, "event", &data);
        if (r == PILOT_OK) {
            char *process = cstr_opt(&event->process);
            char *json = cstr(&event->json);
            pilot_control_event_t view = {event->seq, event->at_ms, (pilot_event_kind_t)event->kind,
                                          process, json, &data};
            r = pilot_control_plugin.on_event(&view);
            free(process);
            free(json);
            pilot_params_free(&data);
        }
    }
    exports_pilot_plugin_control_plugin_event_free(event);
    if (r == PILOT_OK) return true;
    to_wit_error(r, err);
    return false;
}

bool exports_pilot_plugin_control_plugin_on_tick(wit_error_t *err) {
    pilot_result_t r = pilot_control_plugin.on_tick != NULL ? pilot_control_plugin.on_tick() : PILOT_OK;
    if (r == PILOT_OK) return true;
    to_wit_error(r, err);
    return false;
}
