/*
 * `{{name}}`: a pilot-host plugin whose stat handler `{{name}}` restarts a process whose resident
 * memory is above `config.max_rss_mib` (default 512).
 */
#include <stdio.h>

#include "pilot_plugin_sdk.h"

static uint64_t max_rss_mib = 512;

static pilot_result_t init(const pilot_params_t *config) {
    return pilot_params_u64_or(config, "max_rss_mib", 512, &max_rss_mib);
}

static pilot_result_t handle(const char *handler, const pilot_stats_t *stats, size_t len,
                             pilot_actions_t *actions) {
    for (size_t i = 0; i < len; i++) {
        uint64_t rss_mib = stats[i].rss_bytes >> 20;
        if (rss_mib <= max_rss_mib) continue;
        char reason[128];
        snprintf(reason, sizeof reason, "RSS %llu MiB is above %llu MiB",
                 (unsigned long long)rss_mib, (unsigned long long)max_rss_mib);
        PILOT_TRY(pilot_restart(actions, stats[i].name, reason));
    }
    return PILOT_OK;
}

static const char *const HANDLERS[] = {"{{name}}", NULL};

PILOT_PLUGIN(.name = "{{name}}", .version = "0.1.0", .stat_handlers = HANDLERS, .init = init,
             .stats = handle);
