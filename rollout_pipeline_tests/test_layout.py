"""The package's layout: every module imports on its own (no import cycle held together by import order or
by imports inside functions), and no module uses another module's private (``_name``) names."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import rollout_pipeline

PACKAGE = Path(rollout_pipeline.__file__).parent
SKIP = ("rollout_pipeline.store.migrations",)  # Alembic scripts: loaded by Alembic with its context, not imported


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="rollout_pipeline.")]
    return sorted(n for n in names if not n.startswith(SKIP))


# One interpreter (Dagster and GX are imported once), the package cleared from sys.modules before each module.
_IMPORT_EACH = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "rollout_pipeline" or m.startswith("rollout_pipeline.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own():
    modules = _modules()
    assert "rollout_pipeline.decisions" in modules and "rollout_pipeline.defs.checks" in modules
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _IMPORT_EACH, *modules], capture_output=True,
                          text=True, timeout=300, cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    ours: dict[str, str] = {}  # local name -> our module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rollout_pipeline"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                ours[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rollout_pipeline"):
                    ours[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {ours[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in _private_uses(path)]
    assert found == []


def test_the_scan_sees_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from rollout_pipeline.defs.assets import _x\nfrom rollout_pipeline.store import rollouts as r\n"
                   "r._LOCK\n")
    assert _private_uses(bad) == ["bad.py:1 imports rollout_pipeline.defs.assets._x",
                                  "bad.py:3 uses rollout_pipeline.store.rollouts._LOCK"]
