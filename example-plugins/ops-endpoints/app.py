"""`ops-endpoints`: a pilot-host control plugin, in Python, with two endpoints for operators and load
balancers (under `/plugins/ops-endpoints/`):

- `GET /health`: 200 when every process is up (ready, or running without a ready strategy), else 503;
  the body lists each process's phase. Processes named in `config.ignore` do not count.
- `POST /restart-group` with `{"prefix": "web-"}` (or `?prefix=web-`): restarts every process whose
  name starts with the prefix, all or none; 404 when none matches.

Grants: `control: [read, restart]`.
"""

import pilot_control as pilot


class OpsEndpoints(pilot.ControlPlugin):
    def __init__(self):
        self.ignore = set()

    def describe(self):
        return pilot.Description("ops-endpoints", "0.1.0")

    def init(self, config):
        config = config or {}
        ignore = config.get("ignore", [])
        if not isinstance(ignore, list) or not all(isinstance(n, str) for n in ignore):
            raise pilot.InvalidConfig(f"`ignore` must be a list of process names, got {ignore!r}")
        self.ignore = set(ignore)
        return pilot.Setup()

    def handle(self, request):
        try:
            if request.method == "GET" and request.path == "/health":
                return self.health()
            if request.method == "POST" and request.path == "/restart-group":
                return self.restart_group(request)
        except pilot.Denied as e:
            return pilot.Response.json(403, {"error": str(e)})
        except pilot.ControlError as e:
            return pilot.Response.json(409, {"error": str(e)})
        return pilot.Response.json(404, {"error": "routes: GET /health, POST /restart-group"})

    def health(self):
        shown = {}
        up = True
        for p in pilot.processes():
            phase = p.phase.name.lower().replace("_", "-")
            shown[p.name] = phase
            if p.name not in self.ignore and not p.up:
                up = False
        status = "ok" if up else "degraded"
        return pilot.Response.json(200 if up else 503, {"status": status, "processes": shown})

    def restart_group(self, request):
        prefix = None
        if request.query:
            for pair in request.query.split("&"):
                key, _, value = pair.partition("=")
                if key == "prefix":
                    prefix = value
        if prefix is None:
            try:
                prefix = (request.json() or {}).get("prefix")
            except (ValueError, AttributeError):
                return pilot.Response.json(400, {"error": "send {\"prefix\": \"web-\"} or ?prefix=web-"})
        if not prefix:
            return pilot.Response.json(400, {"error": "the prefix is empty; send {\"prefix\": \"web-\"}"})
        names = [p.name for p in pilot.processes() if p.name.startswith(prefix)]
        if not names:
            return pilot.Response.json(404, {"error": f"no process name starts with `{prefix}`"})
        pilot.restart(names)
        return pilot.Response.json(200, {"restarted": names})


ControlPlugin, IncomingHandler = pilot.export(OpsEndpoints)
