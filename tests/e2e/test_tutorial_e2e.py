"""docs/tutorial.md, run as written: every kubectl command of its steps 1-5, in order, in a namespace of its own
(the tutorial's `-n tutorial` becomes that namespace; step 0's namespace and Secret are what the
`user_namespace` fixture sets up). Watch commands (`-w`) and the port-forward are not run; the prediction
request the tutorial shows is sent as written to the Service's address instead."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import httpx
import pytest

import tests.e2e.rollout_kit as kit
from tests.e2e import doc_kit
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import wait_until

TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"

pytestmark = pytest.mark.e2e


def tutorial_commands(text: str) -> list[str]:
    """The shell commands of the ```bash blocks in the numbered steps 1-5, heredocs and continuations kept."""
    def in_steps(heading: str) -> bool:
        step = re.match(r"## (\d+)\. ", heading)
        return step is not None and 1 <= int(step.group(1)) <= 5

    return doc_kit.bash_commands(text, in_steps)


def run(command: str, namespace: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command.replace("-n tutorial", f"-n {namespace}")], capture_output=True,
                          text=True, timeout=660, env=env)


def test_given_the_tutorial_when_its_commands_run_in_order_then_each_succeeds_and_the_story_holds(user_namespace):
    ns = user_namespace
    commands = tutorial_commands(TUTORIAL.read_text())
    assert len(commands) >= 20 and all("-n tutorial" in c for c in commands if c.startswith("kubectl")), commands
    outputs: dict[str, str] = {}
    for command in commands:
        first = command.splitlines()[0]
        if " -w" in first or "port-forward" in first:
            continue
        if first.startswith("curl"):
            body = json.loads(re.search(r"-d '([^']*)'", first).group(1))
            answer = httpx.post(f"{kit.service_url(ns, 'bc')}/v1/models/breast-cancer:predict", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["predictions"]) == len(body["instances"])
            continue
        result = run(command, ns)
        assert result.returncode == 0, f"{first}\n{result.stdout}\n{result.stderr}"
        outputs[first] = result.stdout

    # What the tutorial says happened, happened.
    why = next(out for cmd, out in outputs.items() if "why mv/bc-v3" in cmd)
    assert "n_estimator" in why and "Next:" in why, why
    history = [out for cmd, out in outputs.items() if cmd.endswith("history bc")][-1]
    assert "bc-v2" in history and "bc-v1" in history, history
    status = kit.status(ns)
    assert status["stableVersion"] == "bc-v1" and status["phase"] == "Succeeded", status
    # Stages are written by the deployment's passes, right after the promotion.
    wait_until("bc-v1 in Production and bc-v2 Archived",
               lambda: (kit.stage(ns, "bc-v1"), kit.stage(ns, "bc-v2")) == ("Production", "Archived"), 60, every=2)
    assert kit.get(ns, "mv", "bc-v3")["status"]["phase"] == "Failed"
