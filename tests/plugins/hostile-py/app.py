"""`hostile-py`: a pilot-host test plugin in Python that misbehaves on purpose.

Ready strategies: `py-spin` (`while True: pass`: fuel or the deadline must stop it), `py-ok` (ready at
once, the control). Stat handler `py-noop` (no actions; the benchmarks' smallest call).
"""

import pilot_sdk as pilot


class HostilePy(pilot.Plugin):
    def describe(self):
        return pilot.Description("hostile-py", "0.1.0", ready_strategies=["py-spin", "py-ok"],
                                 stat_handlers=["py-noop"])

    def ready_check(self, strategy, process, params):
        if strategy == "py-ok":
            return pilot.READY
        while True:
            pass

    def stats(self, handler, stats):
        return []


Plugin = pilot.export(HostilePy)
