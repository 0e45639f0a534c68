/*
 * What the C SDKs of both plugin worlds share: results and error messages, the JSON params reader,
 * resource samples and the host's log. Include `pilot_plugin_sdk.h` (ready strategies, hooks, stat
 * handlers) or `pilot_control_sdk.h` (control plugins), which include this header.
 *
 * Messages are kept in one buffer per instance: a callback's error message lives until the next
 * call that sets one. Calls are single-threaded and never re-entered.
 */
#ifndef PILOT_COMMON_H
#define PILOT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a callback or an SDK call answers. Errors carry a message (pilot_last_message()). */
typedef enum {
    /* Done; for a ready check: the process is ready. */
    PILOT_OK = 0,
    /* A ready check's "not yet", with the reason set by pilot_not_yet(). */
    PILOT_NOT_YET = 1,
    /* The configuration or `ready_params` are wrong; retrying will not help. */
    PILOT_ERR_INVALID_CONFIG = 2,
    /* The strategy, hook or handler name is not one this plugin provides. */
    PILOT_ERR_UNKNOWN_NAME = 3,
    /* Something the plugin needs cannot be reached (a file, a socket, a variable). */
    PILOT_ERR_UNAVAILABLE = 4,
    /* Any other failure. */
    PILOT_ERR_FAILED = 5,
    /* A control call is not granted; the message names the grant to add (control plugins). */
    PILOT_ERR_DENIED = 6,
    /* A control call named a process that is not in the manifest (control plugins). */
    PILOT_ERR_UNKNOWN_PROCESS = 7,
    /* The supervisor refused a control call; the message says why (control plugins). */
    PILOT_ERR_REFUSED = 8,
} pilot_result_t;

/* Returns from the enclosing callback when `expr` (a pilot_result_t) is not PILOT_OK. */
#define PILOT_TRY(expr)                                                                            \
    do {                                                                                           \
        pilot_result_t pilot_try_result_ = (expr);                                                 \
        if (pilot_try_result_ != PILOT_OK) return pilot_try_result_;                               \
    } while (0)

/* Sets an error message (printf-style) and returns `kind`. */
pilot_result_t pilot_error(pilot_result_t kind, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns the message of the last error (or "not yet" reason) set in this instance. */
const char *pilot_last_message(void);

/* One resource sample of a process. */
typedef struct {
    const char *name;
    bool has_pid;
    uint32_t pid;
    double cpu_percent;     /* since the previous sample, in percent of one core */
    double max_cpu_percent;
    uint64_t rss_bytes;
    uint64_t max_rss_bytes;
    uint32_t restarts;
    double uptime_sec;      /* seconds since its current run started */
} pilot_stats_t;

/* A JSON mapping read with typed getters: `ready_params`, the plugin's config, an event's data. */
typedef struct pilot_params pilot_params_t;

/* Typed getters. A missing key and `null` are the same; a wrong type is PILOT_ERR_INVALID_CONFIG
 * with a message naming the key and the value. Strings stay valid for the call. */
pilot_result_t pilot_params_str(const pilot_params_t *params, const char *key, const char **out);
pilot_result_t pilot_params_str_or(const pilot_params_t *params, const char *key,
                                   const char *fallback, const char **out);
pilot_result_t pilot_params_u64(const pilot_params_t *params, const char *key, uint64_t *out);
pilot_result_t pilot_params_u64_or(const pilot_params_t *params, const char *key,
                                   uint64_t fallback, uint64_t *out);
pilot_result_t pilot_params_f64_or(const pilot_params_t *params, const char *key, double fallback,
                                   double *out);
pilot_result_t pilot_params_bool_or(const pilot_params_t *params, const char *key, bool fallback,
                                    bool *out);
/* Returns whether `key` is present and not null. */
bool pilot_params_has(const pilot_params_t *params, const char *key);

/* How important a log line is. */
typedef enum {
    PILOT_LOG_TRACE = 0,
    PILOT_LOG_DEBUG = 1,
    PILOT_LOG_INFO = 2,
    PILOT_LOG_WARN = 3,
    PILOT_LOG_ERROR = 4,
} pilot_log_level_t;

/* Writes a line (printf-style) to the host's log, tagged with the plugin's name; rate-limited. */
void pilot_log(pilot_log_level_t level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
