"""The Dagster webserver is reachable from this machine only, unless a deployment says otherwise:
`make ui` binds 127.0.0.1, and the compose file publishes no port on all interfaces."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_make_ui_binds_localhost():
    makefile = (ROOT / "Makefile").read_text()
    ui = makefile.split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"rollout-pipeline .*\bui --host 127\.0\.0\.1", ui), ui
    assert "0.0.0.0" not in ui


def test_compose_publishes_ports_on_localhost_only():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            published.append((name, spec))
            assert spec.startswith("127.0.0.1:"), f"{name} publishes {spec} beyond localhost"
    assert ("webserver", "127.0.0.1:3000:3000") in published
    assert "ports" not in compose["services"]["postgres"], "PostgreSQL must not be published"


def test_reliability_doc_explains_authentication_and_names_existing_tests():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert "oauth2-proxy" in doc and "127.0.0.1" in doc
    for node in re.findall(r"`(rollout_pipeline_tests/[\w/]+\.py::\w+)", doc):
        path, func = node.split("::")
        assert f"def {func}(" in (ROOT / path).read_text(), node
