"""What the terminal shows: raypipe's own lines; Ray's own lines go to a log file.

A local Ray writes a lot to the driver's stderr and stdout: its startup lines, Ray Data's
operator progress, Ray Train's "Reporting training result …" forwarded from the workers
(``log_to_driver``), C++ log lines of the core worker. By default the command line moves
file descriptors 1 and 2 into a log file for the whole command (so every one of those
writers lands there, whatever Python or C++ object holds the descriptor), and keeps a
duplicate of the terminal for raypipe's own lines: stage progress, warnings, errors and the
summary. ``--log-level debug`` keeps everything on the terminal as before. Nothing is lost
on a cluster: the workers' own logs stay in Ray's session folder on each node.

The log file is ``$RAYPIPE_LOG_DIR/<command>-<time>-<pid>.log`` (default
``<tempdir>/raypipe-logs``); its path is printed at the end when anything was written to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["LOG_DIR_ENV", "Console", "log_dir", "stdout_to_stderr"]

#: Environment variable naming the folder of the command log files.
LOG_DIR_ENV = "RAYPIPE_LOG_DIR"

#: Rows of a stage per second are shown only for stages that took at least this long:
#: a rate over a fraction of a second says nothing.
_RATE_AFTER_S = 2.0


def log_dir() -> str:
    """The folder the command log files go to (``$RAYPIPE_LOG_DIR``, else ``<tempdir>/raypipe-logs``)."""
    return os.environ.get(LOG_DIR_ENV) or os.path.join(tempfile.gettempdir(), "raypipe-logs")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 where fd 2 goes, for the duration.

    Ray forwards worker output to the driver's stdout; with ``--json`` stdout must hold the
    JSON object alone, so the descriptor itself is redirected.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class _StageLines(logging.Handler):
    """Renders the pipeline's stage records (``extra={"raypipe_stage": ...}``) as progress lines:
    one line per finished stage with its seconds and rows/s; on a terminal, a tqdm bar over
    the stages while they run."""

    def __init__(self, console: Console):
        super().__init__(logging.INFO)
        self.console = console
        self.bar: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "raypipe_stage", None)
        if stage is None:
            return
        event, total = getattr(record, "event", "done"), getattr(record, "stages", None)
        if event == "start":
            if self.bar is None and self.console.is_tty and total:
                from tqdm import tqdm

                self.bar = tqdm(total=total, file=self.console.out, unit="stage", leave=False,
                                bar_format="{desc} {bar} {n_fmt}/{total_fmt} stages [{elapsed}]")
            if self.bar is not None:
                self.bar.set_description_str(f"running {stage}")
            return
        seconds, rows = float(getattr(record, "seconds", 0.0)), getattr(record, "rows", None)
        line = f"  {stage:<10} {seconds:>7.1f} s"
        if rows is not None:
            line += f"  {rows:>10,} rows"
            if seconds >= _RATE_AFTER_S:
                line += f"  ({rows / seconds:,.0f} rows/s)"
        if self.bar is not None:
            self.bar.write(line, file=self.console.out)
            self.bar.update(1)
            if total and self.bar.n >= total:
                self.close_bar()
        else:
            self.console.say(line)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Console:
    """The terminal of one command: where raypipe's lines go, and where Ray's went.

    Args:
        command: the command's name (names the log file).
        verbose: keep Ray's lines on the terminal (``--log-level debug``).
        level: raypipe's own log level on the terminal.
    """

    def __init__(self, command: str, *, verbose: bool = False, level: str = "WARNING"):
        self.command = command
        self.verbose = verbose
        self.level = level.upper()
        self.out: IO[str] = sys.stderr
        self.log_path: str | None = None
        self._saved: list[tuple[int, int]] = []
        self._stages: _StageLines | None = None

    @property
    def is_tty(self) -> bool:
        """Whether raypipe's lines reach a terminal (bars and colours only then)."""
        try:
            return self.out.isatty()
        except (AttributeError, ValueError):
            return False

    def say(self, line: str) -> None:
        """Write one of raypipe's own lines to the terminal (stderr)."""
        self.out.write(line + "\n")
        self.out.flush()

    def start(self) -> None:
        """Set up logging and, unless verbose, move descriptors 1 and 2 into the log file."""
        if not self.verbose:
            os.makedirs(log_dir(), exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.log_path = os.path.join(log_dir(), f"{self.command}-{stamp}-{os.getpid()}.log")
            sys.stdout.flush()
            sys.stderr.flush()
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            term = os.dup(2)
            # stdout moves too only while Ray works (see :meth:`ray_output`); stderr for good.
            self._saved.append((2, os.dup(2)))
            os.dup2(fd, 2)
            os.close(fd)
            self.out = os.fdopen(term, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                                 errors="replace")
            # Ray Data's bars would write escape codes into the file; its operator
            # progress is still logged to ray-data.log in the session folder.
            os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # no escape codes in the file
        handler = logging.StreamHandler(self.out)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(getattr(logging, self.level))
        if self.level != "DEBUG":
            # The stage records render as progress lines (below); a debug log keeps them as
            # records too, so "stage train: start" says what was running when a run stops.
            handler.addFilter(lambda r: getattr(r, "raypipe_stage", None) is None)
        raypipe_log = logging.getLogger("raypipe")
        raypipe_log.handlers = [handler]
        raypipe_log.propagate = False
        self._stages = _StageLines(self)
        raypipe_log.addHandler(self._stages)
        raypipe_log.setLevel(min(logging.INFO, getattr(logging, self.level)))
        if self.verbose:
            logging.basicConfig(level=getattr(logging, self.level), stream=sys.stderr,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ray_output(self) -> contextlib.AbstractContextManager[None]:
        """While Ray works: fd 1 goes where fd 2 goes (the log file, or the terminal's stderr
        when verbose), so Ray's forwarded worker output never mixes into stdout."""
        return stdout_to_stderr()

    def close(self) -> None:
        """Restore the descriptors; name the log file if anything went there (else remove it)."""
        if self._stages is not None:
            self._stages.close_bar()
        if self._saved:
            # Ray flushes its last forwarded lines when it shuts down: into the file too.
            ray = sys.modules.get("ray")
            if ray is not None and getattr(ray, "is_initialized", lambda: False)():
                with contextlib.suppress(Exception):
                    ray.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in reversed(self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved.clear()
        if self.log_path:
            try:
                size = os.path.getsize(self.log_path)
            except OSError:
                size = 0
            if size:
                self.say(f"Ray's logs: {self.log_path}  (--log-level debug shows them here)")
            else:
                with contextlib.suppress(OSError):
                    os.remove(self.log_path)
            self.log_path = None
        if self.out is not sys.stderr:
            with contextlib.suppress(OSError, ValueError):
                self.out.close()
            self.out = sys.stderr
