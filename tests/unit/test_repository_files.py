"""Files a user or a packager looks for at the top of the repository, and the links that lead to the guides."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_given_the_license_file_then_it_is_the_apache_2_text_pyproject_declares():
    text = (REPO / "LICENSE").read_text()
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    assert re.search(r"Apache License\s+Version 2\.0, January 2004", text)
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text) > 10_000  # the whole license, not a pointer to it


def test_given_the_readme_then_it_links_the_tutorial_the_troubleshooting_guide_and_the_api_reference():
    readme = (REPO / "README.md").read_text()
    for doc in ("docs/tutorial.md", "docs/troubleshooting.md", "docs/api-reference.md"):
        assert f"]({doc})" in readme, doc
        assert (REPO / doc).is_file(), doc


def test_given_the_readme_and_the_docs_then_every_relative_link_reaches_a_file():
    broken = []
    for page in [REPO / "README.md", REPO / "charts" / "mlops-operator" / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        prose = re.sub(r"`[^`\n]*`", "", page.read_text())  # code spans (regexes, shell) are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
