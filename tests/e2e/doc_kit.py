"""The shell commands of a doc's ```bash blocks, for the e2e tests that run a doc as written
(tests/e2e/test_tutorial_e2e.py, tests/e2e/test_quickstart_e2e.py)."""

from __future__ import annotations

from typing import Callable


def bash_commands(text: str, in_section: Callable[[str], bool] = lambda heading: True) -> list[str]:
    """The commands of the ```bash blocks under the `## ` headings ``in_section`` accepts, in order: a
    line continued with a backslash is one command, and a heredoc (`<<'EOF'`) is kept with its body."""
    commands: list[str] = []
    wanted, in_block = in_section(""), False
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("## "):
            wanted = in_section(line)
        elif line.strip() == "```bash":
            in_block = True
        elif line.strip() == "```":
            in_block = False
        elif in_block and wanted and line.strip():
            command = line
            while command.endswith("\\"):
                command = command[:-1] + next(lines).strip()
            if "<<'EOF'" in command:
                body = []
                for more in lines:
                    body.append(more)
                    if more == "EOF":
                        break
                command = command + "\n" + "\n".join(body)
            commands.append(command)
    return commands
