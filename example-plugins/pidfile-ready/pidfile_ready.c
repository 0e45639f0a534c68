/*
 * `pidfile-ready`: a pilot-host plugin whose ready strategy `pidfile-ready` says a process is ready
 * once its pid file exists and holds the process's pid, as daemons write it when they are up.
 *
 *     processes:
 *       - name: cache
 *         path: ./cached
 *         args: [--pidfile, /run/cache/cached.pid]
 *         ready_strategy: pidfile-ready
 *         ready_params: { path: /run/cache/cached.pid }
 *     plugins:
 *       pidfile-ready: { allow_read: [/run/cache] }
 *
 * `ready_params.path`: the pid file (relative paths start at the process's working directory). A
 * pid file left over from an earlier run holds another pid and does not count: the check waits until
 * the process has written its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pilot_plugin_sdk.h"

/* Joins `path` to `dir` unless it is absolute, into `out`. */
static void resolve(const char *dir, const char *path, char *out, size_t len) {
    if (path[0] == '/') snprintf(out, len, "%s", path);
    else snprintf(out, len, "%s/%s", dir, path);
}

/* Reads the pid in `text`: digits, optionally surrounded by whitespace. */
static int parse_pid(const char *text, unsigned long *pid) {
    char *end = NULL;
    errno = 0;
    *pid = strtoul(text, &end, 10);
    if (errno != 0 || end == text) return -1;
    while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t') end++;
    return *end == '\0' ? 0 : -1;
}

static pilot_result_t check(const char *strategy, const pilot_process_t *process,
                            const pilot_params_t *params) {
    const char *param = NULL;
    PILOT_TRY(pilot_params_str(params, "path", &param));
    char path[4096];
    resolve(process->working_directory, param, path, sizeof path);
    if (!process->has_pid) return pilot_not_yet("`%s` is not running", process->name);

    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT) return pilot_not_yet("pid file `%s` does not exist yet", path);
        if (errno == ENOTCAPABLE || errno == EACCES || errno == EPERM) {
            return pilot_error(PILOT_ERR_UNAVAILABLE,
                               "cannot read pid file `%s`: %s (is its folder in "
                               "`plugins.pidfile-ready.allow_read`?)",
                               path, strerror(errno));
        }
        return pilot_not_yet("pid file `%s` cannot be read: %s", path, strerror(errno));
    }
    char text[64] = {0};
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    unsigned long pid = 0;
    if (n == 0) return pilot_not_yet("pid file `%s` is empty", path);
    if (parse_pid(text, &pid) != 0) {
        return pilot_not_yet("pid file `%s` does not hold a pid yet", path);
    }
    if (pid != process->pid) {
        return pilot_not_yet("pid file `%s` holds pid %lu, not %u (left over from an earlier run?)",
                             path, pid, process->pid);
    }
    return PILOT_READY;
}

static const char *const STRATEGIES[] = {"pidfile-ready", NULL};

PILOT_PLUGIN(.name = "pidfile-ready", .version = "0.1.0", .ready_strategies = STRATEGIES,
             .ready_check = check);
