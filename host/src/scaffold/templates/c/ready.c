/*
 * `{{name}}`: a pilot-host plugin whose ready strategy `{{name}}` says a process is ready once a file
 * exists (`ready_params.path`, default `ready`, relative to the process's working directory).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pilot_plugin_sdk.h"

static pilot_result_t check(const char *strategy, const pilot_process_t *process,
                            const pilot_params_t *params) {
    const char *file = NULL;
    PILOT_TRY(pilot_params_str_or(params, "path", "ready", &file));
    char path[4096];
    if (file[0] == '/') snprintf(path, sizeof path, "%s", file);
    else snprintf(path, sizeof path, "%s/%s", process->working_directory, file);
    struct stat st;
    if (stat(path, &st) == 0) return PILOT_READY;
    pilot_log(PILOT_LOG_DEBUG, "`%s`: %s", path, strerror(errno));
    return pilot_not_yet("`%s` does not exist yet (or its folder is not in "
                         "`plugins.{{name}}.allow_read`)", path);
}

static const char *const STRATEGIES[] = {"{{name}}", NULL};

PILOT_PLUGIN(.name = "{{name}}", .version = "0.1.0", .ready_strategies = STRATEGIES,
             .ready_check = check);
