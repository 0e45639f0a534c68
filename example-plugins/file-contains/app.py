"""`file-contains`: a pilot-host plugin whose ready strategy `file-contains` says a process is ready
once a file (a log, a status file) matches a regular expression, with Python's own `re`.

    processes:
      - name: db
        path: ./db
        ready_strategy: file-contains
        ready_params: { path: /var/log/db.log, pattern: "ready to accept connections" }
    plugins:
      file-contains: { allow_read: [/var/log] }

`ready_params`: `path` (relative paths start at the process's working directory), `pattern` (a Python
regular expression, searched anywhere in the file), `max_bytes` (how much of the file's end to read,
default 1 MiB), `ignore_case` (default false).
"""

import os
import re

import pilot_sdk as pilot


class FileContains(pilot.Plugin):
    """Stateless but for compiled patterns, kept per instance."""

    def __init__(self):
        self.patterns = {}

    def describe(self):
        return pilot.Description("file-contains", "0.1.0", ready_strategies=["file-contains"])

    def ready_check(self, strategy, process, params):
        path = os.path.join(process.working_directory, params.str("path"))
        pattern = self.compiled(params.str("pattern"), params.bool_or("ignore_case", False))
        max_bytes = params.int_or("max_bytes", 1 << 20)
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - max_bytes))
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            folder = os.path.dirname(path) or "/"
            if os.path.isdir(folder):
                return pilot.not_yet(f"`{path}` does not exist yet")
            return pilot.not_yet(
                f"`{path}` is not visible: its folder `{folder}` does not exist or is not granted "
                "(add it to `plugins.file-contains.allow_read`)")
        except OSError as e:
            raise pilot.Unavailable(f"cannot read `{path}`: {e.strerror or e}")
        if pattern.search(text):
            return pilot.READY
        return pilot.not_yet(f"`{path}` ({len(text)} bytes) does not match `{pattern.pattern}` yet")

    def compiled(self, pattern, ignore_case):
        key = (pattern, ignore_case)
        if key not in self.patterns:
            try:
                self.patterns[key] = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
            except re.error as e:
                raise pilot.InvalidConfig(
                    f"`ready_params.pattern` is not a valid regular expression: {e} (got `{pattern}`)")
        return self.patterns[key]


Plugin = pilot.export(FileContains)
