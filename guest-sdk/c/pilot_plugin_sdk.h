/*
 * pilot-plugin-sdk for C: write pilot-host plugins (ready strategies, lifecycle hooks, stat handlers)
 * as WebAssembly components in C.
 *
 * A plugin fills one `pilot_plugin_t` with PILOT_PLUGIN(...): its name, version, the names it
 * provides and the callbacks it implements. Every callback is optional; names `describe` does not list
 * never reach a callback (the SDK answers them with `unknown-name`, as do missing callbacks). The
 * generated bindings of the WIT contract (`pilot:plugin@0.1.1`) stay inside the SDK.
 *
 *     #include "pilot_plugin_sdk.h"
 *
 *     static pilot_result_t check(const char *strategy, const pilot_process_t *process,
 *                                 const pilot_params_t *params) {
 *         uint64_t min = 0;
 *         PILOT_TRY(pilot_params_u64_or(params, "min_restarts", 1, &min));
 *         if (process->restart_count >= min) return PILOT_READY;
 *         return pilot_not_yet("%u of %llu restarts", process->restart_count, (unsigned long long)min);
 *     }
 *
 *     static const char *const STRATEGIES[] = {"patience", NULL};
 *     PILOT_PLUGIN(.name = "patience", .version = "0.1.0",
 *                  .ready_strategies = STRATEGIES, .ready_check = check);
 *
 * Calls are single-threaded and never re-entered. A trap (an abort, running out of fuel or memory, a
 * missed deadline) discards the instance; the next call gets a fresh one, so static state must tolerate
 * starting over.
 */
#ifndef PILOT_PLUGIN_SDK_H
#define PILOT_PLUGIN_SDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pilot_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A ready check's "ready" answer. */
#define PILOT_READY PILOT_OK

/* A supervised process, as a plugin sees it. Strings are NUL-terminated and live for the call. */
typedef struct {
    const char *name;              /* its name in the manifest */
    bool has_pid;                  /* whether it runs */
    uint32_t pid;                  /* its pid (also its process group id) while it runs */
    const char *path;              /* the resolved executable */
    const char *const *args;       /* its arguments */
    size_t args_len;
    const char *working_directory; /* its working directory */
    uint32_t restart_count;        /* how often it was restarted */
} pilot_process_t;

/* The moment a lifecycle hook is called at. */
typedef enum {
    PILOT_PRE_START = 0,
    PILOT_POST_START = 1,
    PILOT_ON_SHUTDOWN = 2,
    PILOT_ON_RESTART = 3,
} pilot_event_t;

/* How a process ended (given to `on-shutdown` hooks). */
typedef struct {
    bool has_code;
    int32_t code;   /* its exit code, if it exited */
    bool has_signal;
    int32_t signal; /* the signal that ended it, if one did */
} pilot_exit_t;

/* The actions a stat handler answers; add to them with pilot_restart() and pilot_stop(). */
typedef struct pilot_actions pilot_actions_t;

/* What a plugin provides: fill it with PILOT_PLUGIN(...). Name lists end with NULL. */
typedef struct {
    const char *name;    /* the key of its `plugins.<name>` section in the manifest */
    const char *version; /* its own version (semver) */
    const char *const *ready_strategies;
    const char *const *lifecycle_hooks;
    const char *const *stat_handlers;
    /* Configures a fresh instance with `plugins.<name>.config` (read it like params). */
    pilot_result_t (*init)(const pilot_params_t *config);
    /* Answers PILOT_READY, pilot_not_yet(...) or an error. Never wait: the host polls. */
    pilot_result_t (*ready_check)(const char *strategy, const pilot_process_t *process,
                                  const pilot_params_t *params);
    /* Runs a hook; `exit` is set for PILOT_ON_SHUTDOWN and NULL otherwise. */
    pilot_result_t (*lifecycle)(const char *hook, pilot_event_t event,
                                const pilot_process_t *process, const pilot_exit_t *exit);
    /* Sees the latest stats of the processes that name `handler`; may add actions. */
    pilot_result_t (*stats)(const char *handler, const pilot_stats_t *stats, size_t len,
                            pilot_actions_t *actions);
} pilot_plugin_t;

/* Defines the plugin: PILOT_PLUGIN(.name = "x", .version = "0.1.0", .ready_check = f, ...). */
#define PILOT_PLUGIN(...) const pilot_plugin_t pilot_plugin = {__VA_ARGS__}

/* The plugin, defined once with PILOT_PLUGIN. */
extern const pilot_plugin_t pilot_plugin;

/* Sets the "not yet" reason (printf-style) and returns PILOT_NOT_YET. */
pilot_result_t pilot_not_yet(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Asks the host to restart / stop `process` (it must name the handler), saying why. */
pilot_result_t pilot_restart(pilot_actions_t *actions, const char *process, const char *reason);
pilot_result_t pilot_stop(pilot_actions_t *actions, const char *process, const char *reason);

#ifdef __cplusplus
}
#endif

#endif
