"""Write pilot-host plugins in Python: ready strategies, lifecycle hooks and stat handlers that run as
sandboxed WebAssembly components (built with componentize-py).

Subclass `Plugin`, implement `describe` and what it lists, and bind the result of `export` to the
name `Plugin` in your app module::

    import pilot_sdk as pilot

    class Patience(pilot.Plugin):
        def describe(self):
            return pilot.Description("patience", "0.1.0", ready_strategies=["patience"])

        def ready_check(self, strategy, process, params):
            wanted = params.int_or("min_restarts", 1)
            if process.restart_count >= wanted:
                return pilot.READY
            return pilot.not_yet(f"{process.restart_count} of {wanted} restarts")

    Plugin = pilot.export(Patience)

The generated bindings of the WIT contract (`pilot:plugin@0.1.1`) stay inside this module. Errors are
exceptions: raise `InvalidConfig`, `UnknownName`, `Unavailable` or `Failed` and the host gets that
error as data; any other exception is a trap that discards the instance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

from componentize_py_types import Err
from wit_world.exports import Plugin as _Exports
from wit_world.imports import host as _host
from wit_world.imports import types as _t

__all__ = [
    "Plugin", "Description", "Params", "READY", "not_yet", "restart", "stop", "log", "export",
    "PluginError", "InvalidConfig", "UnknownName", "Unavailable", "Failed",
    "ProcessInfo", "ProcessStats", "ExitStatus", "LifecycleEvent", "StatAction",
]

# The data of the contract, as the host hands it over.
ProcessInfo = _t.ProcessInfo
ProcessStats = _t.ProcessStats
ExitStatus = _t.ExitStatus
LifecycleEvent = _t.LifecycleEvent
StatAction = _t.StatAction

#: A ready check's "ready" answer.
READY = _t.ReadyStatus_Ready()


def not_yet(reason: str) -> "_t.ReadyStatus":
    """Returns a ready check's "not yet" answer with the reason the host shows if the deadline passes."""
    return _t.ReadyStatus_NotYet(str(reason))


def restart(process: str, reason: str) -> StatAction:
    """Returns a stat handler's request to restart `process`, saying why."""
    return _t.StatAction(_t.StatActionKind.RESTART, process, reason)


def stop(process: str, reason: str) -> StatAction:
    """Returns a stat handler's request to stop `process`, saying why."""
    return _t.StatAction(_t.StatActionKind.STOP, process, reason)


class PluginError(Exception):
    """A plugin's own error: reported by the host as data, fatal to nothing but the call."""

    _variant: Callable[[str], Any] = _t.PluginError_Failed

    def to_wit(self) -> Any:
        return self._variant(str(self))


class InvalidConfig(PluginError):
    """The configuration or `ready_params` are wrong; retrying will not help."""

    _variant = _t.PluginError_InvalidConfig


class UnknownName(PluginError):
    """The strategy, hook or handler name is not one this plugin provides."""

    _variant = _t.PluginError_UnknownName


class Unavailable(PluginError):
    """Something the plugin needs cannot be reached (a file, a socket, a variable)."""

    _variant = _t.PluginError_Unavailable


class Failed(PluginError):
    """Any other failure."""

    _variant = _t.PluginError_Failed


@dataclass
class Description:
    """What a plugin provides; the manifest refers to these names."""

    name: str
    version: str
    ready_strategies: Sequence[str] = field(default_factory=list)
    lifecycle_hooks: Sequence[str] = field(default_factory=list)
    stat_handlers: Sequence[str] = field(default_factory=list)

    def to_wit(self) -> Any:
        return _t.Description(self.name, self.version, list(self.ready_strategies),
                              list(self.lifecycle_hooks), list(self.stat_handlers))


def _show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Params:
    """A JSON mapping read with typed getters whose errors are `InvalidConfig` naming the key: a
    process's `ready_params`, or the plugin's `config`. A missing key and `null` are the same."""

    def __init__(self, value: Any, scope: str = "ready_params"):
        self.value = value
        self.scope = scope

    @classmethod
    def parse(cls, text: str, scope: str = "ready_params") -> "Params":
        """Parses JSON text; bad JSON is an `InvalidConfig` error."""
        try:
            return cls(json.loads(text), scope)
        except ValueError as e:
            raise InvalidConfig(f"`{scope}` is not valid JSON: {e}") from None

    def _map(self) -> dict:
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            raise InvalidConfig(
                f"`{self.scope}` must be a mapping of keys to values, got `{_show(self.value)}`")
        return self.value

    def get(self, key: str) -> Any:
        """Returns the value at `key`, or None when it is missing or null."""
        return self._map().get(key)

    def _typed(self, key: str, what: str, ok: Callable[[Any], bool], default: Any, required: bool):
        value = self.get(key)
        if value is None:
            if required:
                raise InvalidConfig(f"`{self.scope}.{key}` is required ({what}) and missing")
            return default
        if not ok(value):
            raise InvalidConfig(f"`{self.scope}.{key}` must be {what}, got `{_show(value)}`")
        return value

    def str(self, key: str) -> str:
        """Returns the string at `key`, which must be present."""
        return self._typed(key, "a string", lambda v: isinstance(v, str), None, True)

    def str_or(self, key: str, default: Optional[str]) -> Optional[str]:
        """Returns the string at `key`, or `default` when it is missing."""
        return self._typed(key, "a string", lambda v: isinstance(v, str), default, False)

    def int(self, key: str) -> int:
        """Returns the whole number (0 or more) at `key`, which must be present."""
        return self._typed(key, "a whole number", _is_whole, None, True)

    def int_or(self, key: str, default: int) -> int:
        """Returns the whole number (0 or more) at `key`, or `default` when it is missing."""
        return self._typed(key, "a whole number", _is_whole, default, False)

    def float_or(self, key: str, default: float) -> float:
        """Returns the number at `key`, or `default` when it is missing."""
        is_number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        return float(self._typed(key, "a number", is_number, default, False))

    def bool_or(self, key: str, default: bool) -> bool:
        """Returns the boolean at `key`, or `default` when it is missing."""
        return self._typed(key, "true or false", lambda v: isinstance(v, bool), default, False)


def _is_whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class _Log:
    """Lines in the host's log, tagged by the host with the plugin's name and rate-limited."""

    def _write(self, level: Any, message: Any) -> None:
        _host.log(level, str(message))

    def trace(self, message: Any) -> None:
        self._write(_host.LogLevel.TRACE, message)

    def debug(self, message: Any) -> None:
        self._write(_host.LogLevel.DEBUG, message)

    def info(self, message: Any) -> None:
        self._write(_host.LogLevel.INFO, message)

    def warn(self, message: Any) -> None:
        self._write(_host.LogLevel.WARN, message)

    def error(self, message: Any) -> None:
        self._write(_host.LogLevel.ERROR, message)


#: Writes to the host's log: `log.info("...")`, also `trace`, `debug`, `warn`, `error`.
log = _Log()


class Plugin:
    """A pilot-host plugin. Override `describe` and the methods for what it lists; the defaults
    answer `UnknownName`. One object lives per instance: the host discards an instance after a trap,
    so state kept in `self` must tolerate starting over."""

    def describe(self) -> Description:
        """Says what the plugin provides; must not depend on configuration."""
        raise NotImplementedError("a plugin must implement `describe`")

    def init(self, config: Params) -> None:
        """Configures the instance with `plugins.<name>.config` (scope `config`). Default: ignore it."""

    def ready_check(self, strategy: str, process: ProcessInfo, params: Params) -> Any:
        """Answers `READY`, `not_yet(reason)`, or raises. Never wait: the host polls."""
        raise UnknownName(f"this plugin has no ready strategy `{strategy}`")

    def lifecycle(self, hook: str, event: LifecycleEvent, process: ProcessInfo,
                  exit: Optional[ExitStatus]) -> None:
        """Runs lifecycle hook `hook` at `event`; `exit` is set for `ON_SHUTDOWN`."""
        raise UnknownName(f"this plugin has no lifecycle hook `{hook}`")

    def stats(self, handler: str, stats: List[ProcessStats]) -> List[StatAction]:
        """Sees the latest stats of the processes that name `handler`; answers actions."""
        raise UnknownName(f"this plugin has no stat handler `{handler}`")


def _check_name(description: Description, provided: Sequence[str], what: str, name: str) -> None:
    if name in provided:
        return
    known = ", ".join(f"`{p}`" for p in provided) or "none"
    raise UnknownName(
        f"plugin `{description.name}` has no {what} `{name}` (it provides: {known})")


def export(plugin_class: type) -> type:
    """Returns the class componentize-py exports as `pilot:plugin/plugin`, dispatching to one
    `plugin_class()` per instance. Bind it in the app module: `Plugin = export(MyPlugin)`."""
    state: dict = {}

    def loaded():
        if "plugin" not in state:
            plugin = plugin_class()
            state["plugin"] = plugin
            state["description"] = plugin.describe()
        return state["plugin"], state["description"]

    def guarded(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except PluginError as e:
            raise Err(e.to_wit()) from None

    class Exports(_Exports):
        def describe(self) -> Any:
            return loaded()[1].to_wit()

        def init(self, config: str) -> None:
            def run():
                parsed = Params.parse(config, "config")
                loaded()[0].init(parsed)
            guarded(run)

        def ready_check(self, strategy: str, process: Any, params: str) -> Any:
            def run():
                plugin, d = loaded()
                _check_name(d, d.ready_strategies, "ready strategy", strategy)
                return plugin.ready_check(strategy, process, Params.parse(params))
            return guarded(run)

        def lifecycle(self, hook: str, event: Any, process: Any, exit: Any) -> None:
            def run():
                plugin, d = loaded()
                _check_name(d, d.lifecycle_hooks, "lifecycle hook", hook)
                plugin.lifecycle(hook, event, process, exit)
            guarded(run)

        def stats(self, handler: str, stats: Any) -> Any:
            def run():
                plugin, d = loaded()
                _check_name(d, d.stat_handlers, "stat handler", handler)
                return list(plugin.stats(handler, stats) or [])
            return guarded(run)

    Exports.__name__ = "Plugin"
    return Exports
