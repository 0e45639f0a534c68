/*
 * `control-c`: a pilot-host test plugin for the C SDK's outgoing HTTP. `POST /send?to=URL` posts
 * `{"from": "control-c"}` to URL with pilot_http_send() and answers 200 with the status and body it
 * got, or the SDK's error: 403 when the host is not granted, 502 when the request failed, 400 for a
 * bad URL.
 */
#include <string.h>

#include "pilot_control_sdk.h"

static void handle(const pilot_request_t *request, pilot_response_t *response) {
    if (strcmp(request->path, "/send") != 0 || request->query == NULL ||
        strncmp(request->query, "to=", 3) != 0) {
        pilot_respond(response, 404, "text/plain", "try POST /send?to=URL\n");
        return;
    }
    const char *url = request->query + 3;
    pilot_header_t headers[] = {{"content-type", "application/json"}, {"x-sdk", "c"}, {NULL, NULL}};
    pilot_http_response_t answer;
    pilot_result_t r = pilot_http_send("POST", url, headers, "{\"from\": \"control-c\"}", &answer);
    if (r != PILOT_OK) {
        uint16_t status = r == PILOT_ERR_DENIED ? 403 : r == PILOT_ERR_INVALID_CONFIG ? 400 : 502;
        pilot_respondf(response, status, "text/plain", "%s\n", pilot_last_message());
        return;
    }
    pilot_buf_t json = {0};
    pilot_buf_printf(&json, "{\"status\": %u, \"body\": ", answer.status);
    pilot_buf_json_string(&json, answer.body);
    pilot_buf_printf(&json, ", \"content_length\": ");
    pilot_buf_json_string(&json, pilot_http_response_header(&answer, "Content-Length"));
    pilot_buf_printf(&json, "}");
    pilot_respond(response, 200, "application/json", pilot_buf_str(&json));
    pilot_buf_free(&json);
    pilot_http_response_free(&answer);
}

PILOT_CONTROL_PLUGIN(.name = "control-c", .version = "0.1.0", .handle = handle);
