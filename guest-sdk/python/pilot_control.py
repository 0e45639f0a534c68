"""Write pilot-host control plugins in Python (the `pilot-control` world, built with componentize-py):
HTTP endpoints under `/plugins/<name>/`, the supervisor's events and ticks, control calls, and HTTP
requests to granted hosts.

Subclass `ControlPlugin`, implement `describe` and what you need, and bind what `export` returns to
the names `ControlPlugin` and `IncomingHandler` in your app module::

    import pilot_control as pilot

    class Ops(pilot.ControlPlugin):
        def describe(self):
            return pilot.Description("ops", "0.1.0")

        def handle(self, request):
            up = all(p.up for p in pilot.processes())      # needs grants: { control: [read] }
            return pilot.Response.text(200 if up else 503, "up\\n" if up else "down\\n")

    ControlPlugin, IncomingHandler = pilot.export(Ops)

Build: `componentize-py -d wit -w pilot-control componentize -p . -p SDK app -o ops.wasm`.

Each HTTP request runs on a fresh instance; events and ticks go, in order, to one long-lived instance,
so state kept on `self` lasts there. Control calls raise `Denied`, `UnknownProcess` or `Refused`; a
plugin's own error is raised as `InvalidConfig`, `Unavailable` or `Failed` (from `pilot_errors`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from componentize_py_types import Err, Ok
from wit_world.exports import control_plugin as _cp
from wit_world.imports import control as _control
from wit_world.imports import host as _host
from wit_world.imports import outgoing_handler as _outgoing
from wit_world.imports import pilot_plugin_types as _t
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _h

__all__ = [
    "ControlPlugin", "Description", "Setup", "Event", "Request", "Response", "export", "log",
    "processes", "stats", "manifest", "logs", "start", "stop", "restart", "reload", "http_send",
    "ControlError", "Denied", "UnknownProcess", "Refused",
    "PluginError", "InvalidConfig", "Unavailable", "Failed",
]

_MAX_READ = 4 << 20


class PluginError(Exception):
    """A plugin's own error: reported by the host as data, fatal to nothing but the call."""

    _variant: Any = _t.PluginError_Failed

    def to_wit(self) -> Any:
        return self._variant(str(self))


class InvalidConfig(PluginError):
    """The configuration is wrong; retrying will not help."""

    _variant = _t.PluginError_InvalidConfig


class Unavailable(PluginError):
    """Something the plugin needs cannot be reached."""

    _variant = _t.PluginError_Unavailable


class Failed(PluginError):
    """Any other failure."""

    _variant = _t.PluginError_Failed


class ControlError(Exception):
    """A control call did nothing."""


class Denied(ControlError):
    """The call is not granted; the message names the grant to add."""


class UnknownProcess(ControlError):
    """A named process is not in the manifest."""


class Refused(ControlError):
    """The supervisor refused (a dependency is down, shutting down, too many changes)."""


@dataclass
class Description:
    """What a control plugin is: its name (its mount point is `/plugins/<name>/`) and version."""

    name: str
    version: str


@dataclass
class Setup:
    """What an instance asks for: event kinds (`"exited"`, `"gave-up"`, ...) and a tick interval."""

    events: Sequence[str] = field(default_factory=list)
    tick_ms: Optional[int] = None


_KINDS = {
    "state-changed": _cp.EventKind.STATE_CHANGED,
    "spawned": _cp.EventKind.SPAWNED,
    "ready": _cp.EventKind.READY,
    "exited": _cp.EventKind.EXITED,
    "restart-scheduled": _cp.EventKind.RESTART_SCHEDULED,
    "gave-up": _cp.EventKind.GAVE_UP,
    "adopted": _cp.EventKind.ADOPTED,
    "reloaded": _cp.EventKind.RELOADED,
    "plugin": _cp.EventKind.PLUGIN,
    "shutting-down": _cp.EventKind.SHUTTING_DOWN,
}
_NAMES = {v: k for k, v in _KINDS.items()}


@dataclass
class Event:
    """One supervisor event: its kind's name, the process it is about, and its JSON as a dict."""

    seq: int
    at_ms: int
    kind: str
    process: Optional[str]
    data: Dict[str, Any]


@dataclass
class Request:
    """An HTTP request: the path after the mount point, the query, lowercase headers, the body."""

    method: str
    path: str
    query: Optional[str]
    headers: List[Tuple[str, str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        """Returns the first value of header `name` (case-insensitive)."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        """Parses the body as JSON (`ValueError` if it is not)."""
        return json.loads(self.body or b"null")


@dataclass
class Response:
    """An HTTP answer."""

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def text(cls, status: int, text: str) -> "Response":
        """A `text/plain` answer."""
        return cls(status, [("content-type", "text/plain; charset=utf-8")], text.encode())

    @classmethod
    def json(cls, status: int, value: Any) -> "Response":
        """An `application/json` answer."""
        return cls(status, [("content-type", "application/json")], json.dumps(value).encode())


class ControlPlugin:
    """A control plugin; subclass it. Every method but `describe` has a default."""

    def describe(self) -> Description:
        raise NotImplementedError("a control plugin must describe itself")

    def init(self, config: Any) -> Setup:
        """Configures the instance with `plugins.<name>.config`; returns what it wants to receive."""
        return Setup()

    def on_event(self, event: Event) -> None:
        """Receives one event of a kind `init` asked for."""

    def on_tick(self) -> None:
        """Called every `tick_ms` that `init` asked for."""

    def handle(self, request: Request) -> Response:
        """Answers one HTTP request; the default answers 404."""
        return Response.text(404, f"no route for {request.method} {request.path}\n")


def log(level: str, message: str) -> None:
    """Writes `message` to the host's log at `level` (`trace`, `debug`, `info`, `warn`, `error`)."""
    _host.log(getattr(_host.LogLevel, level.upper(), _host.LogLevel.INFO), str(message))


def _call(f, *args):
    try:
        return f(*args)
    except Err as e:
        v = e.value
        kind = {
            _control.ControlError_Denied: Denied,
            _control.ControlError_UnknownProcess: UnknownProcess,
        }.get(type(v), Refused)
        raise kind(v.value) from None


def processes() -> List[Any]:
    """Returns every process (`name`, `phase`, `pid`, `up`, `restarts`, ...). Grant: `read`."""
    return _call(_control.processes)


def stats() -> List[Any]:
    """Returns the latest resource sample of every process. Grant: `read`."""
    return _call(_control.stats)


def manifest() -> Any:
    """Returns the manifest in effect, as a dict. Grant: `read`."""
    return json.loads(_call(_control.manifest))


def logs(process: str, tail: int) -> List[str]:
    """Returns the last `tail` lines `process` printed. Grant: `read`."""
    return _call(_control.logs, process, tail)


def start(names: Sequence[str]) -> None:
    """Starts the named processes (all or none). Grant: `start`."""
    _call(_control.start, list(names))


def stop(names: Sequence[str]) -> None:
    """Stops the named processes (all or none). Grant: `stop`."""
    _call(_control.stop, list(names))


def restart(names: Sequence[str]) -> None:
    """Restarts the named processes (all or none). Grant: `restart`. Rate-limited by the host."""
    _call(_control.restart, list(names))


def reload() -> Any:
    """Re-reads the manifest file and applies it; returns the report. Grant: `reload`."""
    return json.loads(_call(_control.reload))


def _read_all(body: Any) -> bytes:
    out = bytearray()
    with body.stream() as stream:
        while True:
            try:
                chunk = stream.blocking_read(65536)
            except Err as e:
                if isinstance(e.value, _streams.StreamError_Closed):
                    break
                raise Failed(f"reading a body failed: {e.value}") from None
            out += chunk
            if len(out) > _MAX_READ:
                raise Failed(f"a body is larger than {_MAX_READ >> 20} MiB")
    return bytes(out)


def _write_all(body: Any, data: bytes) -> None:
    with body.write() as stream:
        for i in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[i:i + 4096])
    _h.OutgoingBody.finish(body, None)


_METHODS = {
    "GET": _h.Method_Get, "HEAD": _h.Method_Head, "POST": _h.Method_Post, "PUT": _h.Method_Put,
    "DELETE": _h.Method_Delete, "PATCH": _h.Method_Patch, "OPTIONS": _h.Method_Options,
}


def http_send(method: str, url: str, headers: Sequence[Tuple[str, str]] = (),
              body: bytes = b"") -> Response:
    """Sends a request to a granted host and returns the whole answer; raises `Unavailable`."""
    if url.startswith("http://"):
        scheme, rest = _h.Scheme_Http(), url[7:]
    elif url.startswith("https://"):
        scheme, rest = _h.Scheme_Https(), url[8:]
    else:
        raise InvalidConfig(f"`{url}` is not an http:// or https:// URL")
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0] or [len(rest)])
    authority, path = rest[:cut], rest[cut:] or "/"
    pairs = [(k.lower(), v.encode()) for k, v in headers if k.lower() != "content-length"]
    pairs.append(("content-length", str(len(body)).encode()))
    request = _h.OutgoingRequest(_h.Fields.from_list(pairs))
    request.set_method(_METHODS.get(method.upper(), lambda: _h.Method_Other(method.upper()))())
    request.set_scheme(scheme)
    request.set_authority(authority)
    request.set_path_with_query(path)
    out = request.body()
    try:
        pending = _outgoing.handle(request, None)
    except Err as e:
        raise Unavailable(_error_text(e.value)) from None
    wrote = None
    try:
        _write_all(out, body)
    except Err as e:
        wrote = e
    with pending:
        while (done := pending.get()) is None:
            with pending.subscribe() as ready:
                ready.block()
    answer = done.value
    if isinstance(answer, Err):
        raise Unavailable(_error_text(answer.value))
    if wrote is not None:
        raise Unavailable(f"sending the body failed: {wrote.value}")
    with answer.value as response:
        status = response.status()
        with response.headers() as fields:
            got = [(k, v.decode("utf-8", "replace")) for k, v in fields.entries()]
        incoming = response.consume()
        data = _read_all(incoming)
        _h.IncomingBody.finish(incoming).__exit__(None, None, None)
    return Response(status, got, data)


def _error_text(code: Any) -> str:
    if isinstance(code, _h.ErrorCode_HttpRequestDenied):
        return "denied: the host is not in this plugin's `grants.http`"
    return type(code).__name__.replace("ErrorCode_", "")


def _method_name(m: Any) -> str:
    if isinstance(m, _h.Method_Other):
        return m.value
    return type(m).__name__.replace("Method_", "").upper()


def _read_request(request: Any) -> Request:
    full = request.path_with_query() or "/"
    path, _, query = full.partition("?")
    with request.headers() as fields:
        headers = [(k.lower(), v.decode("utf-8", "replace")) for k, v in fields.entries()]
    body = request.consume()
    data = _read_all(body)
    _h.IncomingBody.finish(body).__exit__(None, None, None)
    return Request(_method_name(request.method()), path, query or None, headers, data)


def _write_response(out: Any, response: Response) -> None:
    pairs = [(k.lower(), v.encode() if isinstance(v, str) else v) for k, v in response.headers]
    answer = _h.OutgoingResponse(_h.Fields.from_list(pairs))
    answer.set_status_code(response.status)
    body = answer.body()
    _h.ResponseOutparam.set(out, Ok(answer))
    _write_all(body, response.body)


def export(cls: type) -> Tuple[type, type]:
    """Returns the export classes for control plugin `cls`: bind them to `ControlPlugin` and
    `IncomingHandler` in the app module."""

    state: Dict[str, Any] = {}

    def plugin() -> Any:
        if "p" not in state:
            state["p"] = cls()
        return state["p"]

    def wrap(f, *args):
        try:
            return f(*args)
        except PluginError as e:
            raise Err(e.to_wit()) from None

    class ControlPluginExport:
        def describe(self):
            d = plugin().describe()
            return _cp.ControlDescription(d.name, d.version)

        def init(self, config: str):
            def go():
                try:
                    value = json.loads(config)
                except ValueError as e:
                    raise InvalidConfig(f"the plugin's `config` is not valid JSON: {e}") from None
                s = plugin().init(value) or Setup()
                unknown = [k for k in s.events if k not in _KINDS]
                if unknown:
                    raise InvalidConfig(f"unknown event kinds {unknown}; known: {list(_KINDS)}")
                return _cp.Setup([_KINDS[k] for k in s.events], s.tick_ms)
            return wrap(go)

        def on_event(self, event):
            e = Event(event.seq, event.at_ms, _NAMES[event.kind], event.process,
                      json.loads(event.json))
            wrap(plugin().on_event, e)

        def on_tick(self):
            wrap(plugin().on_tick)

    class IncomingHandlerExport:
        def handle(self, request, response_out):
            try:
                response = plugin().handle(_read_request(request))
            except PluginError as e:
                response = Response.text(500, f"{e}\n")
            _write_response(response_out, response)

    return ControlPluginExport, IncomingHandlerExport
