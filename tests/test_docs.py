"""The documentation runs and its links resolve.

Every ```python block of README.md and docs/*.md is executed, the blocks of one file in order
in one namespace, in a temporary directory (files the examples write land there, never in the
source tree). A block preceded by the line ``<!-- docs-test: skip -->`` is a sketch and is not
run. Every relative link of those files must point to an existing file (and, for a link into a
Markdown file with ``#anchor``, to one of its headings).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = "<!-- docs-test: skip -->"

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, without those marked as sketches."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[:match.start()].rstrip().rsplit("\n", 1)[-1]
        if before.strip() != SKIP:
            blocks.append(match.group(2))
    return blocks


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code removed (links there are not links)."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


WITH_CODE = [path for path in DOCS if python_blocks(path.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("path", WITH_CODE, ids=_name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    source = "\n".join(blocks)
    if re.search(r"^\s*import torch|adamkern\.torch", source, re.MULTILINE):
        pytest.importorskip("torch")
    if re.search(r"\.plot\(|plot_history", source):
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{_name(path)}, python block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples


@pytest.mark.parametrize("path", DOCS, ids=_name)
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(without_code(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target} (no such file)")
            continue
        if anchor and destination.suffix == ".md":
            anchors = {slug(h) for h in HEADING.findall(
                FENCE.sub("", destination.read_text(encoding="utf-8")))}
            if anchor not in anchors:
                broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{_name(path)}: broken links: {broken}"


def test_readme_keeps_the_two_commands_verbatim():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pip install ".[bench]" "torch==2.13.0" && python -m adamkern bench' in readme
    assert 'pip install ".[test]" && python -m pytest' in readme


def test_link_and_block_parsing():
    text = ("See [a](x.md#part), ![img](pic.png) and `[not](a link)`.\n\n"
            "<!-- docs-test: skip -->\n```python\nsketch()\n```\n\n```python\nrun()\n```\n"
            "```bash\n[no](link)\n```\n")
    assert LINK.findall(without_code(text)) == ["x.md#part", "pic.png"]
    assert python_blocks(text) == ["run()\n"]
    assert slug("Optimizer objects: `adamkern.optim`") == "optimizer-objects-adamkernoptim"
