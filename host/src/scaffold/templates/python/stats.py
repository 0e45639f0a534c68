"""`{{name}}`: a pilot-host plugin whose stat handler `{{name}}` restarts a process whose resident
memory is above `config.max_rss_mib` (default 512)."""

import pilot_sdk as pilot


class {{camel}}(pilot.Plugin):
    def __init__(self):
        self.max_rss_mib = 512

    def describe(self):
        return pilot.Description("{{name}}", "0.1.0", stat_handlers=["{{name}}"])

    def init(self, config):
        self.max_rss_mib = config.int_or("max_rss_mib", 512)

    def stats(self, handler, stats):
        return [
            pilot.restart(s.name, f"RSS {s.rss_bytes >> 20} MiB is above {self.max_rss_mib} MiB")
            for s in stats
            if s.rss_bytes >> 20 > self.max_rss_mib
        ]


Plugin = pilot.export({{camel}})
