"""A quiet, honest terminal: `simulate --requests 100000` in a real terminal (a pseudo-terminal) shows a progress
bar and no INFO line; piped, no bar; --verbose brings the INFO lines back."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "rollout-pipeline"
BAR = re.compile(r"simulate m 2026-06-01: +\d+%\|")


def _env(tmp_path):
    env = {**os.environ, "ROLLOUT_STATE_DIR": str(tmp_path), "COLUMNS": "120"}
    for name in ("ROLLOUT_DATABASE_URL", "ROLLOUT_LOG_LEVEL", "PYTHONWARNINGS"):
        env.pop(name, None)
    return env


def _in_a_terminal(args, env, timeout=300) -> str:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; everything it printed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal 120 columns wide
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=timeout) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture
def env(tmp_path):
    env = _env(tmp_path)
    subprocess.run([str(BIN), "init-db"], env=env, check=True, capture_output=True)
    return env


def _simulate(requests: int, *before: str):
    return [str(BIN), *before, "simulate", "--model", "m", "--date", "2026-06-01", "--requests", str(requests),
            "--start-shadow", "--kind", "diabetes", "--seed", "3"]


def test_simulate_in_a_terminal_shows_a_progress_bar_and_no_info_lines(env):
    out = _in_a_terminal(_simulate(100_000), env)
    assert BAR.search(out), out[-2000:]
    assert "100%|" in out or "99%|" in out  # it reached the end
    assert " INFO " not in out and "Warning" not in out, out[-2000:]
    assert "requests 100000: served by v1" in out  # the command's own summary


def test_piped_there_is_no_bar_and_verbose_shows_the_info_lines(env):
    piped = subprocess.run(_simulate(3000), env=env, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert not BAR.search(piped.stdout + piped.stderr) and " INFO " not in piped.stderr
    verbose = subprocess.run(_simulate(3000, "--verbose"), env=env, capture_output=True, text=True, timeout=300)
    assert " INFO rollout_pipeline.store.logs: wrote " in verbose.stderr
