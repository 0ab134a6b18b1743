"""A composite action's steps run the way a GitHub runner runs them, on this machine.

:class:`Job` reads an ``action.yml`` and walks its steps in order, as the runner would
for one job that uses the action: each step's ``if:`` is evaluated, ``${{ … }}`` in its
``env:`` and ``working-directory`` are filled in from the inputs, the runner's contexts and
earlier steps' outputs, and a ``run:`` step runs with ``bash --noprofile --norc -eo
pipefail`` (what ``shell: bash`` means) in an environment with its own ``GITHUB_OUTPUT``,
``GITHUB_ENV``, ``GITHUB_PATH`` and ``GITHUB_STEP_SUMMARY`` files, read back afterwards.
Steps that only ``uses:`` another action cannot run here: they are recorded in
:attr:`Job.not_run`, with their ``with:`` filled in, and count as having succeeded with no
outputs, as do the steps a test names in ``skip`` (those that need sudo, say).

Expressions are the small part of GitHub's language an action.yml needs: context paths,
string literals, ``==``, ``!=``, ``!``, ``&&``, ``||``, parentheses and the status
functions. Anything else raises, so an action that outgrows this simulation says so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<call>\w+)\(\)|(?P<op>==|!=|&&|\|\||!|\(|\))"
                    r"|(?P<path>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*))")
_STATUS_CALL = re.compile(r"\b(success|failure|cancelled|always)\(\)")


@dataclass(frozen=True)
class Uses:
    """A ``uses:`` step the runner would have run: the action and its inputs, expressions filled in."""

    action: str
    inputs: dict[str, str]


@dataclass
class StepRun:
    """What one step did: ``outcome`` is ``success``, ``failure`` or ``skipped`` (its ``if:`` was false)."""

    key: str
    outcome: str
    log: str = ""
    seconds: float = 0.0


def load(action: Path) -> dict:
    """The parsed action.yml."""
    return yaml.safe_load(action.read_text())


def step_key(step: dict, index: int) -> str:
    """How tests name a step: its ``id``, else its position."""
    return step.get("id") or f"#{index}"


def parse_file_commands(text: str) -> dict[str, str]:
    """``NAME=value`` and ``NAME<<DELIMITER`` … ``DELIMITER`` lines, as in GITHUB_OUTPUT and GITHUB_ENV."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for more in lines:
                if more == delimiter:
                    break
                body.append(more)
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


@dataclass
class Job:
    """One job using the action: inputs in, step outcomes, outputs and logs out."""

    action: Path
    #: A fresh directory: the job's workspace and runner temp directory live in it.
    root: Path
    inputs: dict[str, str]
    #: Extra environment for every step (the runner's own, say, or a test's tag).
    env: dict[str, str] = field(default_factory=dict)
    #: Step keys that count as succeeded without running (sudo, or done by an earlier job).
    skip: Iterable[str] = ()
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    runs: dict[str, StepRun] = field(default_factory=dict)
    #: ``uses:`` steps whose ``if:`` held: what the runner would have run here.
    not_run: list[Uses] = field(default_factory=list)
    #: GITHUB_PATH lines so far, the latest first (the runner prepends them to PATH).
    path: list[str] = field(default_factory=list)
    #: GITHUB_ENV settings so far.
    exported: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        self.metadata = load(self.action)
        declared = self.metadata.get("inputs", {})
        unknown = set(self.inputs) - set(declared)
        assert not unknown, f"inputs {sorted(unknown)} are not declared in {self.action}"
        self.inputs = {name: str(spec.get("default", "")) for name, spec in declared.items()} | self.inputs
        self.workspace = self.root / "workspace"
        self.temp = self.root / "runner-temp"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.temp.mkdir(parents=True, exist_ok=True)
        self.skip = set(self.skip)

    def carry_over(self, earlier: Job, key: str) -> None:
        """Take step *key*'s outputs and what it put on PATH and in the environment from *earlier*
        (an install done once for several jobs), and skip that step here."""
        self.outputs[key] = dict(earlier.outputs.get(key, {}))
        self.path = [*earlier.path, *self.path]
        self.exported = {**earlier.exported, **self.exported}
        self.skip.add(key)

    # -- expressions ------------------------------------------------------------------

    def lookup(self, path: str) -> str:
        parts = path.split(".")
        contexts = {("github", "action_path"): str(self.action.parent), ("github", "workspace"): str(self.workspace),
                    ("runner", "temp"): str(self.temp), ("runner", "os"): "Linux", ("runner", "arch"): "X64"}
        if parts[0] == "inputs" and len(parts) == 2:
            if parts[1] not in self.inputs:
                raise KeyError(f"input {parts[1]!r} is not declared")
            return self.inputs[parts[1]]
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return self.outputs.get(parts[1], {}).get(parts[3], "")
        if parts[0] == "steps" and len(parts) == 3 and parts[2] in ("outcome", "conclusion"):
            run = self.runs.get(parts[1])
            return run.outcome if run else ""
        if tuple(parts) in contexts:
            return contexts[tuple(parts)]
        raise KeyError(f"this simulation knows no context {path!r}")

    def evaluate(self, expression: str) -> object:
        """The value of one expression (what sits inside ``${{ }}``, or an ``if:``)."""
        failed = any(r.outcome == "failure" for r in self.runs.values())
        calls = {"success": not failed, "failure": failed, "cancelled": False, "always": True}
        source, values = [], {}
        position = 0
        text = expression.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise ValueError(f"cannot read {text[position:]!r} in {expression!r}")
            position = match.end()
            if match["string"]:
                values[f"v{len(values)}"] = match["string"][1:-1].replace("''", "'")
                source.append(f"v{len(values) - 1}")
            elif match["call"]:
                if match["call"] not in calls:
                    raise ValueError(f"this simulation knows no function {match['call']}()")
                source.append(repr(calls[match["call"]]))
            elif match["op"]:
                source.append({"&&": " and ", "||": " or ", "!": " not "}.get(match["op"], match["op"]))
            else:
                values[f"v{len(values)}"] = self.lookup(match["path"])
                source.append(f"v{len(values) - 1}")
        return eval("".join(source), {"__builtins__": {}}, values)  # noqa: S307  (tokens checked above)

    def expand(self, text: object) -> str:
        """*text* with every ``${{ expression }}`` replaced by its value."""
        def value(match: re.Match[str]) -> str:
            result = self.evaluate(match[1])
            return ("true" if result else "false") if isinstance(result, bool) else str(result)

        if isinstance(text, bool):  # YAML's true, as the runner passes it on
            return "true" if text else "false"
        return _EXPRESSION.sub(value, str(text))

    def condition(self, step: dict) -> bool:
        """A step's ``if:``; without a status function in it, GitHub adds ``success() &&``."""
        raw = str(step.get("if", "success()"))
        raw = raw.strip().removeprefix("${{").removesuffix("}}")
        if not _STATUS_CALL.search(raw):
            raw = f"success() && ({raw})"
        return bool(self.evaluate(raw))

    # -- running ----------------------------------------------------------------------

    def run(self, *, until: str | None = None, timeout: float = 600.0) -> Job:
        """Walk the steps in order (up to and including step *until*); each ``run:`` step may take *timeout* s."""
        for index, step in enumerate(self.metadata["runs"]["steps"]):
            key = step_key(step, index)
            if not self.condition(step):
                self.runs[key] = StepRun(key, "skipped")
            elif key in self.skip or "run" not in step:
                if "run" not in step:
                    inputs = {name: self.expand(value) for name, value in (step.get("with") or {}).items()}
                    self.not_run.append(Uses(step["uses"], inputs))
                self.runs[key] = StepRun(key, "success")
            else:
                self.runs[key] = self._run_script(key, step, timeout=timeout)
            if key == until:
                break
        return self

    def _run_script(self, key: str, step: dict, *, timeout: float) -> StepRun:
        assert step.get("shell") == "bash", f"step {key}: a run step needs shell: bash"
        files = self.temp / "_runner_file_commands" / key.strip("#")
        files.mkdir(parents=True, exist_ok=True)
        commands = {name: files / name.lower() for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
        for file in commands.values():
            file.write_text("")
        script = files / "script.sh"
        script.write_text(step["run"])
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("PYTEST_", "GITHUB_", "RUNNER_")) and name not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env |= {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_ACTION_PATH": str(self.action.parent),
                "GITHUB_WORKSPACE": str(self.workspace), "RUNNER_TEMP": str(self.temp), "RUNNER_OS": "Linux",
                "RUNNER_ARCH": "X64", **{name: str(file) for name, file in commands.items()}}
        env |= self.env | self.exported
        env |= {name: self.expand(value) for name, value in (step.get("env") or {}).items()}
        env["PATH"] = os.pathsep.join([*self.path, env.get("PATH", os.defpath)])
        cwd = self.workspace / self.expand(step.get("working-directory", "."))
        log = files / "log"
        started = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except BaseException:
                # The step's process group (pytest, its guests) never outlives the test.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        self.outputs[key] = parse_file_commands(commands["GITHUB_OUTPUT"].read_text())
        self.exported |= parse_file_commands(commands["GITHUB_ENV"].read_text())
        self.path = [*reversed(commands["GITHUB_PATH"].read_text().split()), *self.path]
        self.summary += commands["GITHUB_STEP_SUMMARY"].read_text()
        return StepRun(key, "success" if code == 0 else "failure", log.read_text(errors="replace"),
                       time.monotonic() - started)

    @property
    def actions_not_run(self) -> list[str]:
        """The actions of :attr:`not_run`, in order."""
        return [uses.action for uses in self.not_run]

    def succeeded(self, key: str) -> StepRun:
        """Step *key*'s run, asserting that it ran and succeeded (its log in the message if not)."""
        run = self.runs.get(key)
        assert run is not None, f"step {key} was not reached"
        assert run.outcome == "success", f"step {key}: {run.outcome}\n{run.log[-4000:]}"
        return run
