"""The quiet terminal: Ray's lines (anything written to fd 1/2) go to the log file, raypipe's
own lines to the terminal; stage records render as progress lines with rows/s."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

from raypipe.console import Console

SCRIPT = textwrap.dedent("""
    import os, sys
    from raypipe.console import Console
    c = Console("demo", verbose={verbose})
    c.start()
    with c.ray_output():
        os.write(1, b"ray stdout line\\n")
    os.write(2, b"ray stderr line\\n")
    c.say("raypipe line")
    c.close()
    print("summary on stdout")
""")


def _run(tmp_path, verbose: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAYPIPE_LOG_DIR": str(tmp_path / "logs")}
    return subprocess.run([sys.executable, "-c", SCRIPT.format(verbose=verbose)], capture_output=True, text=True,
                          env=env, timeout=60)


def test_ray_lines_go_to_the_log_file_and_its_path_is_printed(tmp_path):
    proc = _run(tmp_path, verbose=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "summary on stdout\n"
    lines = proc.stderr.splitlines()
    assert lines[0] == "raypipe line"
    (log_file,) = os.listdir(tmp_path / "logs")
    assert log_file.startswith("demo-") and log_file.endswith(".log")
    path = str(tmp_path / "logs" / log_file)
    assert lines[1] == f"Ray's logs: {path}  (--log-level debug shows them here)"
    assert len(lines) == 2
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == "ray stdout line\nray stderr line\n"


def test_verbose_keeps_everything_on_the_terminal_and_writes_no_file(tmp_path):
    proc = _run(tmp_path, verbose=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "ray stdout line\nray stderr line\nraypipe line\n"
    assert proc.stdout == "summary on stdout\n"
    assert not (tmp_path / "logs").exists()


def test_stage_records_render_as_progress_lines(capsys):
    console = Console("unit", verbose=True, level="WARNING")
    console.start()
    try:
        log = logging.getLogger("raypipe.pipeline.run")
        log.info("stage ingest: start", extra={"raypipe_stage": "ingest", "event": "start", "stages": 2})
        log.info("x", extra={"raypipe_stage": "ingest", "event": "done", "stages": 2, "seconds": 4.0, "rows": 48842})
        log.info("x", extra={"raypipe_stage": "register", "event": "done", "stages": 2, "seconds": 0.04, "rows": None})
        log.info("an info line of raypipe is below the WARNING level")
    finally:
        console.close()
    err = capsys.readouterr().err
    assert err.splitlines() == ["  ingest         4.0 s      48,842 rows  (12,210 rows/s)", "  register       0.0 s"]
