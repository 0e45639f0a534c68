"""`{{name}}`: a pilot-host control plugin. `GET /plugins/{{name}}/health` answers 200 when every
process is up and 503 otherwise; every exit with an error is logged. It needs
`grants: { control: [read] }` in the manifest."""

import pilot_control as pilot


class {{camel}}(pilot.ControlPlugin):
    def describe(self):
        return pilot.Description("{{name}}", "0.1.0")

    def init(self, config):
        return pilot.Setup(events=["exited"])

    def on_event(self, event):
        code = event.data.get("code")
        if code not in (None, 0):
            pilot.log("warn", f"`{event.process}` exited with status {code}")

    def handle(self, request):
        if request.path != "/health":
            return pilot.Response.text(404, "try GET /health\n")
        down = [p.name for p in pilot.processes() if not p.up]
        if down:
            return pilot.Response.text(503, "down: " + ", ".join(down) + "\n")
        return pilot.Response.text(200, "all up\n")


ControlPlugin, IncomingHandler = pilot.export({{camel}})
