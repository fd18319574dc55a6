"""`rollout-pipeline ui`: the Dagster UI for the morning review, with the reports served beside it.

Dagster's own webserver app (``dagster_webserver``) with one route added in front: ``/reports`` serves
``<state>/reports`` (the HTML reports, the digest and the plots' PNGs), so the decision's metadata can link
the report and show its plots inline with relative links that work on any host and port (the UI shows
markdown images and ``http``/relative links; a ``file://`` link becomes ``javascript:void(0)``). The daemon
(schedules, sensors, the run queue) runs beside it as a subprocess, as ``dagster dev`` does. It speaks only
when something is wrong: Dagster's Preview/Beta warnings and its INFO lines are hidden unless ``--verbose``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from rollout_pipeline.config import state_dir
from rollout_pipeline.review.links import REPORTS_ROUTE

# Set for the code server and the daemon (subprocesses): Dagster's warnings are for developers.
QUIET_ENV = {"PYTHONWARNINGS": "ignore"}
WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: rollout_pipeline.definitions
      location_name: rollout_pipeline
"""


def workspace_file(home: str) -> Path:
    """The workspace file both processes load: ./workspace.yaml when there is one, else one in DAGSTER_HOME."""
    local = Path("workspace.yaml")
    if local.exists():
        return local.resolve()
    path = Path(home) / "workspace.yaml"
    path.write_text(WORKSPACE_YAML)
    return path


def reports_folder() -> Path:
    folder = state_dir() / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_app(context):
    """Dagster's webserver app for ``context`` (a ``WorkspaceProcessContext``) with ``/reports`` mounted first."""
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from dagster_webserver.app import create_app_from_workspace_process_context

    app = create_app_from_workspace_process_context(context, "")
    # Before Dagster's catch-all route (which answers every other path with the UI's index page).
    app.router.routes.insert(0, Mount(REPORTS_ROUTE, app=StaticFiles(directory=reports_folder()), name="reports"))
    return app


def _quiet(verbose: bool) -> None:
    if verbose:
        return
    os.environ.update(QUIET_ENV)
    warnings.filterwarnings("ignore")
    for name in ("dagster", "dagster-webserver", "dagster.code_server", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def daemon(workspace: Path, verbose: bool):
    """`dagster-daemon run` on the same instance and workspace, in its own process group, stopped at the end."""
    command = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace),
               "--log-level", "info" if verbose else "error"]
    out = None if verbose else subprocess.DEVNULL
    proc = subprocess.Popen(command, env=os.environ.copy(), stdout=out, stderr=out, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serve(host: str, port: int, *, with_daemon: bool = True, verbose: bool = False) -> None:
    """Serve the UI (and ``/reports``) on ``host:port`` until interrupted; the daemon beside it unless asked not."""
    url = f"http://{host}:{port}"
    os.environ.setdefault("ROLLOUT_UI_BASE_URL", url)  # links in the notifications of runs launched from here
    _quiet(verbose)
    import uvicorn
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_webserver.version import __version__

    from rollout_pipeline.defs.runner import ensure_dagster_home

    home = ensure_dagster_home()
    workspace = workspace_file(home)
    # uvicorn stops on SIGTERM, then raises it again: exit through the stack below so that the daemon stops too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with contextlib.ExitStack() as stack:
        if with_daemon:
            stack.enter_context(daemon(workspace, verbose))
        instance = stack.enter_context(DagsterInstance.get())
        context = stack.enter_context(WorkspaceProcessContext(
            instance, version=__version__, read_only=False,
            workspace_load_target=WorkspaceFileTarget(paths=[str(workspace)]),
            code_server_log_level="info" if verbose else "error"))
        uvicorn.run(build_app(context), host=host, port=port, log_level="info" if verbose else "warning")
