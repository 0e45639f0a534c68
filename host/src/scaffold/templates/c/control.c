/*
 * `{{name}}`: a pilot-host control plugin. `GET /plugins/{{name}}/` answers the processes and their
 * states as JSON; every exit is logged. Reading the processes needs `grants: { control: [read] }` in
 * the manifest; without it the answer is 403 naming the grant.
 */
#include <string.h>

#include "pilot_control_sdk.h"

static void handle(const pilot_request_t *request, pilot_response_t *response) {
    if (strcmp(request->path, "/") != 0 || strcmp(request->method, "GET") != 0) {
        pilot_respondf(response, 404, "text/plain", "no route for %s %s; try GET /\n",
                       request->method, request->path);
        return;
    }
    pilot_process_list_t list;
    pilot_result_t r = pilot_control_processes(&list);
    if (r != PILOT_OK) {
        pilot_respondf(response, r == PILOT_ERR_DENIED ? 403 : 503, "text/plain", "%s\n",
                       pilot_last_message());
        return;
    }
    pilot_buf_t json = {0};
    pilot_buf_printf(&json, "{\"processes\": [");
    for (size_t i = 0; i < list.len; i++) {
        const pilot_process_state_t *p = &list.items[i];
        pilot_buf_printf(&json, "%s{\"name\": ", i ? ", " : "");
        pilot_buf_json_string(&json, p->name);
        pilot_buf_printf(&json, ", \"phase\": \"%s\", \"up\": %s, \"restarts\": %u, \"pid\": ",
                         pilot_phase_name(p->phase), p->up ? "true" : "false", p->restarts);
        if (p->has_pid) pilot_buf_printf(&json, "%u", p->pid);
        else pilot_buf_printf(&json, "null");
        pilot_buf_printf(&json, ", \"last_exit\": ");
        pilot_buf_json_string(&json, p->last_exit);
        pilot_buf_printf(&json, "}");
    }
    pilot_buf_printf(&json, "]}\n");
    pilot_respond(response, 200, "application/json", pilot_buf_str(&json));
    pilot_buf_free(&json);
    pilot_process_list_free(&list);
}

static pilot_result_t on_event(const pilot_control_event_t *event) {
    const char *process = event->process ? event->process : "?";
    uint64_t code = 0;
    if (!pilot_params_has(event->data, "code")) {
        pilot_log(PILOT_LOG_WARN, "`%s` was ended by a signal", process);
        return PILOT_OK;
    }
    PILOT_TRY(pilot_params_u64(event->data, "code", &code));
    pilot_log(code == 0 ? PILOT_LOG_INFO : PILOT_LOG_WARN, "`%s` exited with status %llu", process,
              (unsigned long long)code);
    return PILOT_OK;
}

PILOT_CONTROL_PLUGIN(.name = "{{name}}", .version = "0.1.0",
                     .events = PILOT_EVENTS(PILOT_EVENT_EXITED), .handle = handle,
                     .on_event = on_event);
