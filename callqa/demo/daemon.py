"""The Dagster daemon `callqa demo` runs: `dagster-daemon run` on the local instance, as
production runs it, in its own process group and logging to a file.

Its code server and run workers are its children in that group, so stopping the group stops
everything the demo started. The code location is named `callqa`, as in the repository's
workspace.yaml, so that the demo's sensor ticks, cursors and runs are the ones `./dev ui`
shows (`dagster-daemon run -m callqa.definitions` would name it `callqa.definitions`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

from callqa.errors import CallqaError

# Loaded by module name, so it works from any directory wherever callqa is installed.
WORKSPACE_YAML = """\
# Written by `callqa demo` (callqa/demo/daemon.py): the callqa code location, named as in
# the repository's workspace.yaml.
load_from:
  - python_module:
      module_name: callqa.definitions
      location_name: callqa
"""


def _daemon_command() -> list[str]:
    """`dagster-daemon` of the environment callqa runs in (the venv's bin/ may not be on PATH)."""
    beside = Path(sys.executable).parent / "dagster-daemon"
    found = str(beside) if beside.exists() else shutil.which("dagster-daemon")
    if not found:
        raise CallqaError("dagster-daemon not found next to this Python or on PATH")
    return [found]


def _die_with_parent():
    """A preexec_fn (Linux) that makes the kernel SIGTERM the daemon when the demo process
    dies, even by SIGKILL, so that it is never left running on its own; None elsewhere.
    libc is loaded here, in the parent: the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the demo died before that took effect
            os._exit(1)

    return preexec


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # no /proc (macOS): existence only
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After "pid (comm)": state, ppid, pgrp (stat(5) fields 3-5).
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class DemoDaemon:
    """`dagster-daemon run` with DAGSTER_HOME = `home` and `env` added to this process's
    environment; stdout and stderr (the daemon's, its code server's and the run workers')
    go to `log`."""

    def __init__(self, home: Path, log: Path, env: Mapping[str, str]) -> None:
        self.home = home
        self.log = log
        self.workspace = log.with_name("demo-workspace.yaml")
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    def start(self, append: bool = False) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.workspace.write_text(WORKSPACE_YAML)
        self._log_file = self.log.open("ab" if append else "wb")
        self.proc = subprocess.Popen(
            [*_daemon_command(), "run", "-w", str(self.workspace)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Its own process group (and session): Ctrl-C in the terminal reaches the demo
            # only, which then stops the daemon, its code server and run workers together.
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exit_code(self) -> int | None:
        """None while the daemon runs."""
        return self.proc.poll() if self.proc else None

    def leftovers(self) -> list[int]:
        """Processes of the daemon's group still alive (none once `stop` returned)."""
        return _group_members(self.proc.pid) if self.proc else []

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to the group (the daemon and code server shut down cleanly); SIGKILL to
        whatever is left of it after `grace_s`. Safe to call twice."""
        if self.proc is None:
            return
        deadline = time.monotonic() + grace_s
        self._signal_group(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._signal_group(signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        # SIGKILL is delivered asynchronously: wait until the kernel has ended every member
        # (the daemon's children are not ours to wait for).
        killed_by = time.monotonic() + 5
        while self.leftovers() and time.monotonic() < killed_by:
            time.sleep(0.05)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def _signal_group(self, sig: int) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
