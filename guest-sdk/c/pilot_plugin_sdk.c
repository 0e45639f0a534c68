/*
 * The bridge from the generated bindings (`wit-bindgen c`, world `pilot-plugin`) to a plugin's
 * pilot_plugin_t: NUL-terminated strings, parsed JSON, checked names, defaults, messages.
 *
 * Ownership follows the canonical ABI: the export owns its arguments (freed here after the call) and
 * hands the host malloc'd results, which the generated post-return functions free.
 */
#include "pilot_plugin_sdk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pilot_json.h"
#include "pilot_plugin.h"

typedef pilot_plugin_string_t str_t;
typedef exports_pilot_plugin_plugin_plugin_error_t wit_error_t;

struct pilot_actions {
    exports_pilot_plugin_plugin_stat_action_t *items;
    size_t len;
};

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
    memcpy(out, s->ptr, s->len);
    out[s->len] = '\0';
    return out;
}

/* Fills the WIT error from a pilot_result_t error and the message. */
static void to_wit_error(pilot_result_t result, wit_error_t *err) {
    switch (result) {
    case PILOT_ERR_INVALID_CONFIG: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_INVALID_CONFIG; break;
    case PILOT_ERR_UNKNOWN_NAME: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_UNKNOWN_NAME; break;
    case PILOT_ERR_UNAVAILABLE: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_UNAVAILABLE; break;
    default: err->tag = PILOT_PLUGIN_TYPES_PLUGIN_ERROR_FAILED; break;
    }
    /* All variants hold one string at the same place. */
    pilot_plugin_string_dup(&err->val.failed, pilot_last_message());
}

/* ---- actions ---- */

static pilot_result_t add_action(pilot_actions_t *actions, uint8_t kind, const char *process,
                                 const char *reason) {
    void *grown = realloc(actions->items, (actions->len + 1) * sizeof *actions->items);
    if (grown == NULL) return pilot_error(PILOT_ERR_FAILED, "out of memory");
    actions->items = grown;
    exports_pilot_plugin_plugin_stat_action_t *a = &actions->items[actions->len++];
    a->kind = kind;
    pilot_plugin_string_dup(&a->process, process);
    pilot_plugin_string_dup(&a->reason, reason);
    return PILOT_OK;
}

pilot_result_t pilot_restart(pilot_actions_t *actions, const char *process, const char *reason) {
    return add_action(actions, PILOT_PLUGIN_TYPES_STAT_ACTION_KIND_RESTART, process, reason);
}

pilot_result_t pilot_stop(pilot_actions_t *actions, const char *process, const char *reason) {
    return add_action(actions, PILOT_PLUGIN_TYPES_STAT_ACTION_KIND_STOP, process, reason);
}

/* ---- names ---- */

static void dup_list(pilot_plugin_list_string_t *out, const char *const *names) {
    size_t n = 0;
    while (names != NULL && names[n] != NULL) n++;
    out->len = n;
    out->ptr = n == 0 ? NULL : malloc(n * sizeof *out->ptr);
    for (size_t i = 0; i < n; i++) pilot_plugin_string_dup(&out->ptr[i], names[i]);
}

/* Answers `unknown-name` unless `name` is among `provided`, listing what is. */
static pilot_result_t check_name(const char *const *provided, const char *what, const char *name) {
    char known[1024] = "";
    size_t used = 0;
    for (size_t i = 0; provided != NULL && provided[i] != NULL; i++) {
        if (strcmp(provided[i], name) == 0) return PILOT_OK;
        int n = snprintf(known + used, sizeof known - used, "%s`%s`", i ? ", " : "", provided[i]);
        if (n > 0 && used + (size_t)n < sizeof known) used += (size_t)n;
    }
    return pilot_error(PILOT_ERR_UNKNOWN_NAME, "plugin `%s` has no %s `%s` (it provides: %s)",
                       pilot_plugin.name, what, name, used ? known : "none");
}

/* ---- exports ---- */

void exports_pilot_plugin_plugin_describe(exports_pilot_plugin_plugin_description_t *ret) {
    pilot_plugin_string_dup(&ret->name, pilot_plugin.name);
    pilot_plugin_string_dup(&ret->version, pilot_plugin.version);
    dup_list(&ret->ready_strategies, pilot_plugin.ready_strategies);
    dup_list(&ret->lifecycle_hooks, pilot_plugin.lifecycle_hooks);
    dup_list(&ret->stat_handlers, pilot_plugin.stat_handlers);
}

bool exports_pilot_plugin_plugin_init(str_t *config, wit_error_t *err) {
    pilot_params_t params;
    pilot_result_t r = pilot_params_parse((const char *)config->ptr, config->len, "config", &params);
    pilot_plugin_string_free(config);
    if (r == PILOT_OK) {
        r = pilot_plugin.init != NULL ? pilot_plugin.init(&params) : PILOT_OK;
        pilot_json_free(&params.json);
    }
    if (r == PILOT_OK) return true;
    to_wit_error(r, err);
    return false;
}

/* A process as the plugin sees it, with its NUL-terminated strings. */
typedef struct {
    pilot_process_t view;
    char **args;
} process_t;

static void process_in(const exports_pilot_plugin_plugin_process_info_t *in, process_t *out) {
    out->args = calloc(in->args.len + 1, sizeof *out->args);
    for (size_t i = 0; i < in->args.len; i++) out->args[i] = cstr(&in->args.ptr[i]);
    out->view = (pilot_process_t){
        .name = cstr(&in->name),
        .has_pid = in->pid.is_some,
        .pid = in->pid.val,
        .path = cstr(&in->path),
        .args = (const char *const *)out->args,
        .args_len = in->args.len,
        .working_directory = cstr(&in->working_directory),
        .restart_count = in->restart_count,
    };
}

static void process_free(process_t *p) {
    for (size_t i = 0; i < p->view.args_len; i++) free(p->args[i]);
    free(p->args);
    free((char *)p->view.name);
    free((char *)p->view.path);
    free((char *)p->view.working_directory);
}

bool exports_pilot_plugin_plugin_ready_check(str_t *strategy,
                                             exports_pilot_plugin_plugin_process_info_t *process,
                                             str_t *params,
                                             exports_pilot_plugin_plugin_ready_status_t *ret,
                                             wit_error_t *err) {
    char *name = cstr(strategy);
    pilot_result_t r = check_name(pilot_plugin.ready_strategies, "ready strategy", name);
    pilot_params_t parsed = {0};
    if (r == PILOT_OK) r = pilot_params_parse((const char *)params->ptr, params->len, "ready_params", &parsed);
    if (r == PILOT_OK) {
        process_t p;
        process_in(process, &p);
        r = pilot_plugin.ready_check != NULL
                ? pilot_plugin.ready_check(name, &p.view, &parsed)
                : pilot_error(PILOT_ERR_UNKNOWN_NAME, "this plugin has no ready strategy `%s`", name);
        process_free(&p);
        pilot_json_free(&parsed.json);
    }
    free(name);
    pilot_plugin_string_free(strategy);
    pilot_plugin_string_free(params);
    exports_pilot_plugin_plugin_process_info_free(process);
    if (r == PILOT_OK || r == PILOT_NOT_YET) {
        ret->tag = r == PILOT_OK ? PILOT_PLUGIN_TYPES_READY_STATUS_READY
                                 : PILOT_PLUGIN_TYPES_READY_STATUS_NOT_YET;
        if (r == PILOT_NOT_YET) pilot_plugin_string_dup(&ret->val.not_yet, pilot_last_message());
        return true;
    }
    to_wit_error(r, err);
    return false;
}

bool exports_pilot_plugin_plugin_lifecycle(str_t *hook,
                                           exports_pilot_plugin_plugin_lifecycle_event_t event,
                                           exports_pilot_plugin_plugin_process_info_t *process,
                                           exports_pilot_plugin_plugin_exit_status_t *maybe_exit,
                                           wit_error_t *err) {
    char *name = cstr(hook);
    pilot_result_t r = check_name(pilot_plugin.lifecycle_hooks, "lifecycle hook", name);
    if (r == PILOT_OK) {
        process_t p;
        process_in(process, &p);
        pilot_exit_t exit_status;
        if (maybe_exit != NULL) {
            exit_status = (pilot_exit_t){maybe_exit->code.is_some, maybe_exit->code.val,
                                         maybe_exit->signal.is_some, maybe_exit->signal.val};
        }
        r = pilot_plugin.lifecycle != NULL
                ? pilot_plugin.lifecycle(name, (pilot_event_t)event, &p.view,
                                         maybe_exit != NULL ? &exit_status : NULL)
                : pilot_error(PILOT_ERR_UNKNOWN_NAME, "this plugin has no lifecycle hook `%s`", name);
        process_free(&p);
    }
    free(name);
    pilot_plugin_string_free(hook);
    exports_pilot_plugin_plugin_process_info_free(process);
    if (r == PILOT_OK) return true;
    to_wit_error(r, err);
    return false;
}

bool exports_pilot_plugin_plugin_stats(str_t *handler,
                                       exports_pilot_plugin_plugin_list_process_stats_t *stats,
                                       exports_pilot_plugin_plugin_list_stat_action_t *ret,
                                       wit_error_t *err) {
    char *name = cstr(handler);
    pilot_actions_t actions = {NULL, 0};
    pilot_result_t r = check_name(pilot_plugin.stat_handlers, "stat handler", name);
    if (r == PILOT_OK && pilot_plugin.stats == NULL) {
        r = pilot_error(PILOT_ERR_UNKNOWN_NAME, "this plugin has no stat handler `%s`", name);
    }
    if (r == PILOT_OK) {
        size_t n = stats->len;
        pilot_stats_t *view = calloc(n + 1, sizeof *view);
        for (size_t i = 0; i < n; i++) {
            const exports_pilot_plugin_plugin_process_stats_t *s = &stats->ptr[i];
            view[i] = (pilot_stats_t){cstr(&s->name), s->pid.is_some, s->pid.val, s->cpu_percent,
                                      s->max_cpu_percent, s->rss_bytes, s->max_rss_bytes,
                                      s->restarts, s->uptime_sec};
        }
        r = pilot_plugin.stats(name, view, n, &actions);
        for (size_t i = 0; i < n; i++) free((char *)view[i].name);
        free(view);
    }
    free(name);
    pilot_plugin_string_free(handler);
    exports_pilot_plugin_plugin_list_process_stats_free(stats);
    if (r == PILOT_OK) {
        ret->ptr = actions.items;
        ret->len = actions.len;
        return true;
    }
    exports_pilot_plugin_plugin_list_stat_action_t dropped = {actions.items, actions.len};
    exports_pilot_plugin_plugin_list_stat_action_free(&dropped);
    to_wit_error(r, err);
    return false;
}
