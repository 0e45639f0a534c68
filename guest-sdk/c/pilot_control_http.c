/*
 * Outgoing HTTP requests of a control plugin (`wasi:http/outgoing-handler`) behind
 * pilot_http_send(): the URL split into scheme, host and path, the request and its body written,
 * the answer awaited and read whole. The host sends only to the hosts in `plugins.<name>.grants.http`
 * and caps each wait (5 s to connect, for the first byte, between bytes) and the answer (4 MiB).
 *
 * Every resource made here is dropped here, on every path; the answer's strings are malloc'd and
 * freed by pilot_http_response_free().
 */
#include "pilot_control_sdk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pilot_control.h"

typedef pilot_control_string_t str_t;

/* The most bytes read from an answer's body (the host caps it at the same). */
#define MAX_ANSWER (4u << 20)

/* The cases of wasi:http's `error-code`, as the WIT spells them, by tag. */
static const char *const ERROR_CODES[] = {
    "DNS-timeout", "DNS-error", "destination-not-found", "destination-unavailable",
    "destination-IP-prohibited", "destination-IP-unroutable", "connection-refused",
    "connection-terminated", "connection-timeout", "connection-read-timeout",
    "connection-write-timeout", "connection-limit-reached", "TLS-protocol-error",
    "TLS-certificate-error", "TLS-alert-received", "HTTP-request-denied",
    "HTTP-request-length-required", "HTTP-request-body-size", "HTTP-request-method-invalid",
    "HTTP-request-URI-invalid", "HTTP-request-URI-too-long", "HTTP-request-header-section-size",
    "HTTP-request-header-size", "HTTP-request-trailer-section-size", "HTTP-request-trailer-size",
    "HTTP-response-incomplete", "HTTP-response-header-section-size", "HTTP-response-header-size",
    "HTTP-response-body-size", "HTTP-response-trailer-section-size", "HTTP-response-trailer-size",
    "HTTP-response-transfer-coding", "HTTP-response-content-coding", "HTTP-response-timeout",
    "HTTP-upgrade-failed", "HTTP-protocol-error", "loop-detected", "configuration-error",
    "internal-error",
};

/* The request being sent, for messages: `POST http://host/path`. */
typedef struct {
    const char *method;
    const char *url;
    const char *authority; /* NUL-terminated copy */
} sending_t;

/* Sets the message for a wasi:http error of `req`, frees `err` and returns the result. */
static pilot_result_t http_error(const sending_t *req, wasi_http_types_error_code_t *err) {
    const char *code = err->tag < sizeof ERROR_CODES / sizeof *ERROR_CODES ? ERROR_CODES[err->tag]
                                                                           : "unknown-error";
    pilot_result_t r;
    if (err->tag == WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED) {
        r = pilot_error(PILOT_ERR_DENIED,
                        "HTTP-request-denied: %s %s: the host `%s` is not in "
                        "`plugins.%s.grants.http`; add it there to send to it",
                        req->method, req->url, req->authority, pilot_control_plugin.name);
    } else if (err->tag == WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR &&
               err->val.internal_error.is_some) {
        const str_t *why = &err->val.internal_error.val;
        r = pilot_error(PILOT_ERR_UNAVAILABLE, "%s: %s %s: %.*s", code, req->method, req->url,
                        (int)why->len, (const char *)why->ptr);
    } else {
        r = pilot_error(PILOT_ERR_UNAVAILABLE, "%s: %s %s failed", code, req->method, req->url);
    }
    wasi_http_types_error_code_free(err);
    return r;
}

/* Splits `url` into its scheme, authority (malloc'd) and path with query (inside `url`). */
static pilot_result_t split_url(const char *url, wasi_http_types_scheme_t *scheme,
                                char **authority, const char **path) {
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0) {
        scheme->tag = WASI_HTTP_TYPES_SCHEME_HTTP;
        rest = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        scheme->tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
        rest = url + 8;
    } else {
        return pilot_error(PILOT_ERR_INVALID_CONFIG,
                           "`%s` is not an http:// or https:// URL (e.g. `http://127.0.0.1:9000/hook`)",
                           url);
    }
    size_t n = strcspn(rest, "/?");
    if (n == 0) return pilot_error(PILOT_ERR_INVALID_CONFIG, "`%s` has no host", url);
    *authority = strndup(rest, n);
    *path = rest[n] ? rest + n : "/";
    return PILOT_OK;
}

static wasi_http_types_method_t method_of(const char *name) {
    static const char *const NAMES[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    for (uint8_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++) {
        if (strcasecmp(name, NAMES[i]) == 0) return (wasi_http_types_method_t){.tag = i};
    }
    wasi_http_types_method_t other = {.tag = WASI_HTTP_TYPES_METHOD_OTHER};
    other.val.other = (str_t){(uint8_t *)name, strlen(name)};
    return other;
}

/* Returns the request's headers: `headers` (ended by a NULL name) and `content-length`. */
static pilot_result_t make_fields(const pilot_header_t *headers, size_t body_len,
                                  bool with_length, wasi_http_types_own_fields_t *out) {
    size_t n = 0;
    while (headers != NULL && headers[n].name != NULL) n++;
    wasi_http_types_tuple2_field_name_field_value_t *pairs = calloc(n + 1, sizeof *pairs);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        /* The length is the SDK's to set: simple receivers read `content-length` only. */
        if (strcasecmp(headers[i].name, "content-length") == 0) continue;
        const char *v = headers[i].value ? headers[i].value : "";
        pairs[used].f0 = (str_t){(uint8_t *)headers[i].name, strlen(headers[i].name)};
        pairs[used++].f1 = (wasi_http_types_field_value_t){(uint8_t *)v, strlen(v)};
    }
    char length[24];
    if (with_length) {
        snprintf(length, sizeof length, "%zu", body_len);
        pairs[used].f0 = (str_t){(uint8_t *)"content-length", 14};
        pairs[used++].f1 = (wasi_http_types_field_value_t){(uint8_t *)length, strlen(length)};
    }
    wasi_http_types_list_tuple2_field_name_field_value_t list = {pairs, used};
    wasi_http_types_header_error_t err;
    bool ok = wasi_http_types_static_fields_from_list(&list, out, &err);
    free(pairs);
    if (ok) return PILOT_OK;
    return pilot_error(PILOT_ERR_INVALID_CONFIG, "a request header is %s; use lowercase names of "
                       "letters, digits and `-`, and leave out `host`, `connection` and the like",
                       err.tag == WASI_HTTP_TYPES_HEADER_ERROR_FORBIDDEN ? "forbidden" : "malformed");
}

/* Writes `len` bytes of `data` to `body` and finishes it; false if the stream closed early. */
static bool write_body(wasi_http_types_own_outgoing_body_t body, const char *data, size_t len) {
    bool ok = true;
    wasi_http_types_own_output_stream_t stream;
    if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
        wasi_io_streams_borrow_output_stream_t s = wasi_io_streams_borrow_output_stream(stream);
        for (size_t at = 0; ok && at < len; at += 4096) {
            pilot_control_list_u8_t chunk = {(uint8_t *)data + at, len - at < 4096 ? len - at : 4096};
            wasi_io_streams_stream_error_t err;
            ok = wasi_io_streams_method_output_stream_blocking_write_and_flush(s, &chunk, &err);
            if (!ok) wasi_io_streams_stream_error_free(&err);
        }
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t err;
    if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &err)) {
        wasi_http_types_error_code_free(&err);
        ok = false;
    }
    return ok;
}

/* Reads the answer's whole body into `response`; false if it is too large or breaks off. */
static bool read_answer(wasi_http_types_own_incoming_body_t body, pilot_http_response_t *response) {
    wasi_http_types_own_input_stream_t stream;
    if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &stream)) {
        wasi_http_types_incoming_body_drop_own(body);
        return false;
    }
    bool ok = true;
    size_t cap = 0;
    for (;;) {
        pilot_control_list_u8_t chunk;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_input_stream_blocking_read(
                wasi_io_streams_borrow_input_stream(stream), 65536, &chunk, &err)) {
            ok = err.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED;
            wasi_io_streams_stream_error_free(&err);
            break;
        }
        size_t len = response->body_len + chunk.len;
        ok = len <= MAX_ANSWER;
        if (ok && len + 1 > cap) {
            cap = cap ? cap : 4096;
            while (cap < len + 1) cap *= 2;
            char *grown = realloc(response->body, cap);
            if (grown == NULL) abort(); /* a trap: the host discards the instance */
            response->body = grown;
        }
        if (ok && chunk.len) {
            memcpy(response->body + response->body_len, chunk.ptr, chunk.len);
            response->body_len = len;
            response->body[len] = '\0';
        }
        pilot_control_list_u8_free(&chunk);
        if (!ok) break;
    }
    wasi_io_streams_input_stream_drop_own(stream);
    wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(body));
    return ok;
}

/* Fills `response` from the answer, which it consumes. */
static pilot_result_t take_answer(const sending_t *req, wasi_http_types_own_incoming_response_t answer,
                                  pilot_http_response_t *response) {
    wasi_http_types_borrow_incoming_response_t a = wasi_http_types_borrow_incoming_response(answer);
    response->status = wasi_http_types_method_incoming_response_status(a);
    wasi_http_types_own_fields_t fields = wasi_http_types_method_incoming_response_headers(a);
    wasi_http_types_list_tuple2_field_name_field_value_t entries;
    wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(fields), &entries);
    wasi_http_types_fields_drop_own(fields);
    response->headers = calloc(entries.len + 1, sizeof *response->headers);
    response->headers_len = entries.len;
    for (size_t i = 0; i < entries.len; i++) {
        response->headers[i].name = strndup((const char *)entries.ptr[i].f0.ptr, entries.ptr[i].f0.len);
        response->headers[i].value = strndup((const char *)entries.ptr[i].f1.ptr, entries.ptr[i].f1.len);
    }
    wasi_http_types_list_tuple2_field_name_field_value_free(&entries);
    wasi_http_types_own_incoming_body_t body;
    bool read = wasi_http_types_method_incoming_response_consume(a, &body) && read_answer(body, response);
    wasi_http_types_incoming_response_drop_own(answer);
    if (read) return PILOT_OK;
    return pilot_error(PILOT_ERR_UNAVAILABLE, "%s %s: answered %u, but its body could not be read "
                       "whole (at most %u MiB)", req->method, req->url, response->status, MAX_ANSWER >> 20);
}

/* Waits for the answer to `future` (which it drops) and fills `response`. */
static pilot_result_t await_answer(const sending_t *req,
                                   wasi_http_types_own_future_incoming_response_t future,
                                   bool wrote, pilot_http_response_t *response) {
    wasi_http_types_borrow_future_incoming_response_t f =
        wasi_http_types_borrow_future_incoming_response(future);
    wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
    while (!wasi_http_types_method_future_incoming_response_get(f, &got)) {
        wasi_io_poll_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(f);
        wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
        wasi_io_poll_pollable_drop_own(ready);
    }
    wasi_http_types_future_incoming_response_drop_own(future);
    if (got.is_err) return pilot_error(PILOT_ERR_FAILED, "%s %s: the answer was already taken", req->method, req->url);
    /* A refused request closes the body at once: its own error says more than the write's. */
    if (got.val.ok.is_err) return http_error(req, &got.val.ok.val.err);
    if (!wrote) {
        wasi_http_types_incoming_response_drop_own(got.val.ok.val.ok);
        return pilot_error(PILOT_ERR_UNAVAILABLE, "%s %s: the request body could not be sent whole",
                           req->method, req->url);
    }
    return take_answer(req, got.val.ok.val.ok, response);
}

pilot_result_t pilot_http_send(const char *method, const char *url, const pilot_header_t *headers,
                               const char *body, pilot_http_response_t *response) {
    *response = (pilot_http_response_t){0};
    method = method && *method ? method : "GET";
    url = url ? url : "";
    sending_t req = {method, url, NULL};
    wasi_http_types_scheme_t scheme = {0};
    const char *path;
    char *authority = NULL;
    PILOT_TRY(split_url(url, &scheme, &authority, &path));
    req.authority = authority;
    size_t len = body ? strlen(body) : 0;
    bool with_length = len > 0 || (strcasecmp(method, "GET") != 0 && strcasecmp(method, "HEAD") != 0);
    wasi_http_types_own_fields_t fields;
    pilot_result_t r = make_fields(headers, len, with_length, &fields);
    if (r != PILOT_OK) {
        free(authority);
        return r;
    }
    wasi_http_types_own_outgoing_request_t request = wasi_http_types_constructor_outgoing_request(fields);
    wasi_http_types_borrow_outgoing_request_t q = wasi_http_types_borrow_outgoing_request(request);
    wasi_http_types_method_t m = method_of(method);
    str_t host = {(uint8_t *)authority, strlen(authority)};
    str_t target = {(uint8_t *)path, strlen(path)};
    wasi_http_types_own_outgoing_body_t out;
    if (!wasi_http_types_method_outgoing_request_set_method(q, &m) ||
        !wasi_http_types_method_outgoing_request_set_scheme(q, &scheme) ||
        !wasi_http_types_method_outgoing_request_set_authority(q, &host) ||
        !wasi_http_types_method_outgoing_request_set_path_with_query(q, &target) ||
        !wasi_http_types_method_outgoing_request_body(q, &out)) {
        wasi_http_types_outgoing_request_drop_own(request);
        r = pilot_error(PILOT_ERR_INVALID_CONFIG, "`%s %s` is not a request wasi:http accepts; check "
                        "the method, the host and the path", method, url);
        free(authority);
        return r;
    }
    wasi_http_types_own_future_incoming_response_t future;
    wasi_http_types_error_code_t err;
    if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &err)) {
        wasi_http_types_outgoing_body_drop_own(out);
        r = http_error(&req, &err);
    } else {
        bool wrote = write_body(out, body ? body : "", len);
        r = await_answer(&req, future, wrote, response);
    }
    free(authority);
    if (r != PILOT_OK) pilot_http_response_free(response);
    else if (response->body == NULL) response->body = calloc(1, 1);
    return r;
}

const char *pilot_http_response_header(const pilot_http_response_t *response, const char *name) {
    for (size_t i = 0; i < response->headers_len; i++) {
        if (strcasecmp(response->headers[i].name, name) == 0) return response->headers[i].value;
    }
    return NULL;
}

void pilot_http_response_free(pilot_http_response_t *response) {
    for (size_t i = 0; i < response->headers_len; i++) {
        free((char *)response->headers[i].name);
        free((char *)response->headers[i].value);
    }
    free(response->headers);
    free(response->body);
    *response = (pilot_http_response_t){0};
}
