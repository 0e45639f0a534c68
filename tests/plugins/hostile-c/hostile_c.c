/*
 * `hostile-c`: a pilot-host test plugin in C that misbehaves on purpose.
 *
 * Ready strategies:
 * - `c-null-write`: the classic bug: a buffer that was never allocated (a NULL pointer) is filled.
 *   WebAssembly has no guard page at address 0, so the first writes land in the plugin's own memory
 *   (corrupting it, never the host's); the loop goes on until it leaves the linear memory, and the
 *   host sees an out-of-bounds trap.
 * - `c-spin`: an endless loop (fuel or the deadline must stop it).
 * - `c-ok`: ready at once (the control).
 * Stat handler `c-noop`: no actions (the benchmarks' smallest call).
 */
#include <stdint.h>
#include <string.h>

#include "pilot_plugin_sdk.h"

/* Meant to be allocated by an init that never ran. */
static volatile uint32_t *buffer = NULL;

static pilot_result_t null_write(void) {
    for (uint32_t i = 0;; i++) buffer[i] = i;
    return PILOT_READY;
}

static pilot_result_t spin(void) {
    volatile uint64_t n = 0;
    for (;;) n++;
    return PILOT_READY;
}

static pilot_result_t check(const char *strategy, const pilot_process_t *process,
                            const pilot_params_t *params) {
    if (strcmp(strategy, "c-null-write") == 0) return null_write();
    if (strcmp(strategy, "c-spin") == 0) return spin();
    return PILOT_READY;
}

static pilot_result_t noop(const char *handler, const pilot_stats_t *stats, size_t len,
                           pilot_actions_t *actions) {
    return PILOT_OK;
}

static const char *const STRATEGIES[] = {"c-null-write", "c-spin", "c-ok", NULL};
static const char *const HANDLERS[] = {"c-noop", NULL};

PILOT_PLUGIN(.name = "hostile-c", .version = "0.1.0", .ready_strategies = STRATEGIES,
             .stat_handlers = HANDLERS, .ready_check = check, .stats = noop);
