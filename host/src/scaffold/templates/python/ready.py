"""`{{name}}`: a pilot-host plugin whose ready strategy `{{name}}` says a process is ready once a
file exists (`ready_params.path`, default `ready`, relative to the process's working directory)."""

import os

import pilot_sdk as pilot


class {{camel}}(pilot.Plugin):
    def describe(self):
        return pilot.Description("{{name}}", "0.1.0", ready_strategies=["{{name}}"])

    def ready_check(self, strategy, process, params):
        path = os.path.join(process.working_directory, params.str_or("path", "ready"))
        if os.path.exists(path):
            return pilot.READY
        return pilot.not_yet(
            f"`{path}` does not exist yet (or its folder is not in `plugins.{{name}}.allow_read`)")


Plugin = pilot.export({{camel}})
