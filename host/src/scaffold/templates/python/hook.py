"""`{{name}}`: a pilot-host plugin whose lifecycle hook `{{name}}` logs every event of the processes
that name it."""

import pilot_sdk as pilot

EVENTS = {
    pilot.LifecycleEvent.PRE_START: "pre-start",
    pilot.LifecycleEvent.POST_START: "post-start",
    pilot.LifecycleEvent.ON_SHUTDOWN: "on-shutdown",
    pilot.LifecycleEvent.ON_RESTART: "on-restart",
}


class {{camel}}(pilot.Plugin):
    def describe(self):
        return pilot.Description("{{name}}", "0.1.0", lifecycle_hooks=["{{name}}"])

    def lifecycle(self, hook, event, process, exit):
        how = ""
        if exit is not None and exit.code is not None:
            how = f", exit code {exit.code}"
        elif exit is not None and exit.signal is not None:
            how = f", signal {exit.signal}"
        pilot.log.info(f"{EVENTS[event]} of `{process.name}` (pid {process.pid}{how})")


Plugin = pilot.export({{camel}})
