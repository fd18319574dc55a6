"""The package's layout: every module imports on its own (no import cycle held together by import order or
by imports inside functions), no module uses another module's private (``_name``) names, and no module imports
a higher layer: domain <- store <- services <- defs/cli (and definitions.py)."""

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


# The layers, lowest first. ``domain/`` is pure; ``store/`` is the only SQL; the services are everything else
# (the package's root modules such as decisions, actions, steps, planning, and serving/, validation/, review/,
# simulate/, quality/); on top, the Dagster wiring and the command line.
LAYERS = ("domain", "store", "services", "top")
TOP = ("rollout_pipeline.defs", "rollout_pipeline.cli", "rollout_pipeline.definitions")
# Entry points a CLI command starts, which run Dagster themselves: they sit beside the CLI, on top.
ENTRY_POINTS = {
    "rollout_pipeline.demo": "`rollout-pipeline demo`: runs each demo night through the daily job in-process",
    "rollout_pipeline.webui": "`rollout-pipeline ui`: serves Dagster's webserver and daemon on DAGSTER_HOME",
}
CODE_LOCATION = "rollout_pipeline.definitions"  # loaded by Dagster by name; the runner builds its own (defs.location)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str) -> str:
    """The layer ``module`` (a dotted name in the package) belongs to."""
    if _within(module, "rollout_pipeline.domain"):
        return "domain"
    if _within(module, "rollout_pipeline.store"):
        return "store"
    if any(_within(module, top) for top in (*TOP, *ENTRY_POINTS)):
        return "top"
    return "services"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module of ours a module imports, at its top or inside a function."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _within(node.module, "rollout_pipeline"):
            if node.module == "rollout_pipeline":  # from rollout_pipeline import cli
                found.extend((node.lineno, f"rollout_pipeline.{a.name}") for a in node.names)
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if _within(a.name, "rollout_pipeline"))
    return found


def _upward_imports(path: Path, root: Path = PACKAGE) -> list[str]:
    module = _module_name(path, root)
    mine = LAYERS.index(layer_of(module))
    found = []
    for line, target in _imported(ast.parse(path.read_text(encoding="utf-8"))):
        if _within(target, CODE_LOCATION) and module != CODE_LOCATION:
            found.append(f"{module}:{line} imports the code location {target}")
        elif LAYERS.index(layer_of(target)) > mine:
            found.append(f"{module}:{line} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    return found


def test_no_module_imports_a_higher_layer():
    assert {layer_of(m) for m in _modules()} == set(LAYERS)
    found = [use for path in sorted(PACKAGE.rglob("*.py")) if "migrations" not in path.parts
             for use in _upward_imports(path)]
    assert found == []


def test_the_scan_sees_an_upward_import(tmp_path):
    root = tmp_path / "rollout_pipeline"
    (root / "store").mkdir(parents=True)
    (root / "defs").mkdir()
    (root / "store" / "bad.py").write_text("import rollout_pipeline.domain.decide\n"
                                           "def f():\n    from rollout_pipeline.decisions import decide_in\n")
    (root / "defs" / "worse.py").write_text("from rollout_pipeline.definitions import defs\n"
                                            "from rollout_pipeline import cli\n")
    assert _upward_imports(root / "store" / "bad.py", root) == [
        "rollout_pipeline.store.bad:3 (store) imports rollout_pipeline.decisions (services)"]
    assert _upward_imports(root / "defs" / "worse.py", root) == [
        "rollout_pipeline.defs.worse:1 imports the code location rollout_pipeline.definitions"]
