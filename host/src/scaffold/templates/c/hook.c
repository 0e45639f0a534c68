/*
 * `{{name}}`: a pilot-host plugin whose lifecycle hook `{{name}}` logs every event of the processes
 * that name it.
 */
#include "pilot_plugin_sdk.h"

static const char *const EVENTS[] = {"pre-start", "post-start", "on-shutdown", "on-restart"};

static pilot_result_t hook(const char *name, pilot_event_t event, const pilot_process_t *process,
                           const pilot_exit_t *exit) {
    if (exit != NULL && exit->has_code) {
        pilot_log(PILOT_LOG_INFO, "%s of `%s` (pid %u, exit code %d)", EVENTS[event],
                  process->name, process->pid, exit->code);
    } else if (exit != NULL && exit->has_signal) {
        pilot_log(PILOT_LOG_INFO, "%s of `%s` (pid %u, signal %d)", EVENTS[event], process->name,
                  process->pid, exit->signal);
    } else {
        pilot_log(PILOT_LOG_INFO, "%s of `%s` (pid %u)", EVENTS[event], process->name,
                  process->pid);
    }
    return PILOT_OK;
}

static const char *const HOOKS[] = {"{{name}}", NULL};

PILOT_PLUGIN(.name = "{{name}}", .version = "0.1.0", .lifecycle_hooks = HOOKS, .lifecycle = hook);
