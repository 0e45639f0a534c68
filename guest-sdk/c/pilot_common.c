/*
 * The world-independent part of the C SDKs: the message of the last error, and the params reader
 * over pilot_json.c. Both `pilot_plugin_sdk.c` and `pilot_control_sdk.c` link it.
 */
#include "pilot_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pilot_json.h"

/* The message of the last pilot_not_yet / pilot_error, for the call being answered. */
static char message[4096];

const char *pilot_last_message(void) { return message; }

static void set_message(const char *format, va_list args) {
    vsnprintf(message, sizeof message, format, args);
}

/* Declared by pilot_plugin_sdk.h (a ready check's answer); unused by control plugins. */
pilot_result_t pilot_not_yet(const char *format, ...) __attribute__((format(printf, 1, 2)));

pilot_result_t pilot_not_yet(const char *format, ...) {
    va_list args;
    va_start(args, format);
    set_message(format, args);
    va_end(args);
    return PILOT_NOT_YET;
}

pilot_result_t pilot_error(pilot_result_t kind, const char *format, ...) {
    va_list args;
    va_start(args, format);
    set_message(format, args);
    va_end(args);
    return kind < PILOT_ERR_INVALID_CONFIG ? PILOT_ERR_FAILED : kind;
}

/* ---- params ---- */

pilot_result_t pilot_params_parse(const char *text, size_t len, const char *scope,
                                  pilot_params_t *out) {
    char why[200];
    out->scope = scope;
    if (!pilot_json_parse(text, len, &out->json, why, sizeof why)) {
        return pilot_error(PILOT_ERR_INVALID_CONFIG, "`%s` is not valid JSON: %s", scope, why);
    }
    pilot_json_type_t type = out->json.whole.type;
    if (type != PILOT_JSON_OBJECT && type != PILOT_JSON_NULL) {
        pilot_result_t r = pilot_error(PILOT_ERR_INVALID_CONFIG,
                                       "`%s` must be a mapping of keys to values, got `%.*s`", scope,
                                       (int)out->json.whole.raw_len, out->json.whole.raw);
        pilot_json_free(&out->json);
        return r;
    }
    return PILOT_OK;
}

static pilot_result_t missing(const pilot_params_t *p, const char *key, const char *what) {
    return pilot_error(PILOT_ERR_INVALID_CONFIG, "`%s.%s` is required (%s) and missing", p->scope,
                       key, what);
}

static pilot_result_t wrong(const pilot_params_t *p, const char *key, const char *what,
                            const pilot_json_value_t *v) {
    return pilot_error(PILOT_ERR_INVALID_CONFIG, "`%s.%s` must be %s, got `%.*s`", p->scope, key,
                       what, (int)v->raw_len, v->raw);
}

bool pilot_params_has(const pilot_params_t *params, const char *key) {
    return pilot_json_get(&params->json, key) != NULL;
}

pilot_result_t pilot_params_str_or(const pilot_params_t *params, const char *key,
                                   const char *fallback, const char **out) {
    const pilot_json_value_t *v = pilot_json_get(&params->json, key);
    if (v == NULL) { *out = fallback; return PILOT_OK; }
    if (v->type != PILOT_JSON_STRING) return wrong(params, key, "a string", v);
    *out = v->string;
    return PILOT_OK;
}

pilot_result_t pilot_params_str(const pilot_params_t *params, const char *key, const char **out) {
    if (!pilot_params_has(params, key)) return missing(params, key, "a string");
    return pilot_params_str_or(params, key, NULL, out);
}

pilot_result_t pilot_params_u64_or(const pilot_params_t *params, const char *key,
                                   uint64_t fallback, uint64_t *out) {
    const pilot_json_value_t *v = pilot_json_get(&params->json, key);
    if (v == NULL) { *out = fallback; return PILOT_OK; }
    if (v->type != PILOT_JSON_NUMBER || !v->is_u64) return wrong(params, key, "a whole number", v);
    *out = v->u64;
    return PILOT_OK;
}

pilot_result_t pilot_params_u64(const pilot_params_t *params, const char *key, uint64_t *out) {
    if (!pilot_params_has(params, key)) return missing(params, key, "a whole number");
    return pilot_params_u64_or(params, key, 0, out);
}

pilot_result_t pilot_params_f64_or(const pilot_params_t *params, const char *key, double fallback,
                                   double *out) {
    const pilot_json_value_t *v = pilot_json_get(&params->json, key);
    if (v == NULL) { *out = fallback; return PILOT_OK; }
    if (v->type != PILOT_JSON_NUMBER) return wrong(params, key, "a number", v);
    *out = v->number;
    return PILOT_OK;
}

pilot_result_t pilot_params_bool_or(const pilot_params_t *params, const char *key, bool fallback,
                                    bool *out) {
    const pilot_json_value_t *v = pilot_json_get(&params->json, key);
    if (v == NULL) { *out = fallback; return PILOT_OK; }
    if (v->type != PILOT_JSON_BOOL) return wrong(params, key, "true or false", v);
    *out = v->boolean;
    return PILOT_OK;
}

void pilot_params_free(pilot_params_t *params) { pilot_json_free(&params->json); }
