"""The docs keep their promises about themselves: every fenced code block in README.md,
CONTRIBUTING.md and docs/*.md says, on the line before it, which test runs it
(`<!-- runs: tests/FILE.py::test_name -->`, and that test exists) or why it cannot run offline
(`<!-- not run: REASON -->`); the README stays a front door of at most 200 lines that links
every docs page and keeps the install line and test command .ci/run reads; every relative link
points to a file (and heading) that exists. Standard library only: the block reader here is
also what tests/test_docs.py runs the blocks with."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_README_LINES = 200
RUNS = re.compile(r"<!-- runs: (tests/[\w/]+\.py)::(\w+) -->")
NOT_RUN = re.compile(r"<!-- not run: (\S.*\S) -->")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    end: int  # 1-based line of the closing fence
    language: str
    marker: str  # the line right before the opening fence, stripped
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> str | None:
        """'tests/FILE.py::test_name' when the marker names a test, else None."""
        match = RUNS.fullmatch(self.marker)
        return f"{match.group(1)}::{match.group(2)}" if match else None


def documents() -> list[Path]:
    return [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _fence(line: str) -> str | None:
    """The fence (``` or longer) a line opens or closes, or None."""
    match = re.match(r" {0,3}(`{3,}|~{3,})", line)
    return match.group(1) if match else None


def code_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = _fence(lines[i])
        if fence is None:
            i += 1
            continue
        start, language = i, lines[i].strip()[len(fence):].strip()
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and lines[i].strip().strip(fence[0]) == ""):
            i += 1
        assert i < len(lines), f"{path.relative_to(ROOT)}:{start + 1}: a fence never closed"
        marker = lines[start - 1].strip() if start else ""
        blocks.append(Block(path, start + 1, i + 1, language, marker,
                            "".join(line + "\n" for line in lines[start + 1:i])))
        i += 1
    return blocks


def blocks_run_by(test: str) -> list[Block]:
    """Every block whose marker names `test` ('tests/FILE.py::test_name'), in document order."""
    return [block for path in documents() for block in code_blocks(path) if block.runs == test]


def _outside_blocks(path: Path) -> str:
    """The text outside fenced blocks (a `# comment` in a shell block is not a heading)."""
    lines = path.read_text().splitlines()
    for block in code_blocks(path):
        lines[block.line - 1:block.end] = [""] * (block.end - block.line + 1)
    return "\n".join(lines)


def _links(path: Path) -> list[str]:
    """Link targets outside fenced blocks and inline code (whose brackets are not links)."""
    return re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", _outside_blocks(path)))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _outside_blocks(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def _tests_in(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef)}


def test_the_documents_exist():
    assert all(path.is_file() for path in documents())
    assert len(documents()) > 10  # README, CONTRIBUTING and the docs pages


def test_every_code_block_says_which_test_runs_it_or_why_none_does():
    blocks = [block for path in documents() for block in code_blocks(path)]
    assert len(blocks) > 20
    unmarked = [block.where for block in blocks
                if not (RUNS.fullmatch(block.marker) or NOT_RUN.fullmatch(block.marker))]
    assert unmarked == [], ("each block needs `<!-- runs: tests/FILE.py::test_name -->` or "
                            "`<!-- not run: REASON -->` on the line right before it: "
                            + ", ".join(unmarked))


def test_a_block_has_exactly_one_marker_and_every_marker_has_its_block():
    misplaced = []
    for path in documents():
        lines = path.read_text().splitlines()
        fences = {block.line - 1 for block in code_blocks(path)}  # 0-based fence lines
        for i, line in enumerate(lines):
            if RUNS.fullmatch(line.strip()) or NOT_RUN.fullmatch(line.strip()):
                if i + 1 not in fences:
                    misplaced.append(f"{path.relative_to(ROOT)}:{i + 1}: not before a block")
                if i - 1 >= 0 and (RUNS.fullmatch(lines[i - 1].strip())
                                   or NOT_RUN.fullmatch(lines[i - 1].strip())):
                    misplaced.append(f"{path.relative_to(ROOT)}:{i + 1}: a second marker")
            elif line.strip().startswith(("<!-- runs", "<!-- not run")):
                misplaced.append(f"{path.relative_to(ROOT)}:{i + 1}: malformed: {line.strip()}")
    assert misplaced == []


def test_every_runs_marker_names_a_test_that_exists():
    named = {block.runs for path in documents() for block in code_blocks(path) if block.runs}
    assert named, "no block is run by a test"
    missing = []
    for test in sorted(named):
        file, name = test.split("::")
        if not (ROOT / file).is_file() or name not in _tests_in(ROOT / file):
            missing.append(test)
    assert missing == []


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, (f"README.md has {lines} lines; move detail into a page "
                                       "of docs/ and link it")


def test_the_readme_keeps_the_install_line_and_test_command_ci_reads():
    text = README.read_text()
    install = text.split("## Install and export (one block)", 1)[1].split("\n## ", 1)[0]
    tests = text.split("## Tests (one command)", 1)[1].split("\n## ", 1)[0]
    assert 'pip install -e ".[cpu,export,hub,dev,ray,openvino]"\n' in install
    assert "```bash\npython -m pytest -q\n```" in tests


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / link.split("#")[0]).resolve() for link in _links(README)}
    pages = set((ROOT / "docs").glob("*.md"))
    unlinked = sorted(str(page.relative_to(ROOT)) for page in pages
                      if page.resolve() not in linked)
    assert unlinked == []


def test_every_relative_link_points_to_a_file_and_heading_that_exist():
    broken = []
    for path in documents():
        for link in _links(path):
            if re.match(r"[a-z][\w+.-]*:", link):  # https:, mailto: ...
                continue
            target, _, anchor = link.partition("#")
            file = (path.parent / target).resolve() if target else path
            if not file.exists():
                broken.append(f"{path.relative_to(ROOT)}: {link}")
                continue
            if anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{path.relative_to(ROOT)}: {link} (no such heading)")
    assert broken == []


def test_the_reader_sees_markers_fences_headings_and_links_as_github_does(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page: `with` code\n\n<!-- not run: output, not a command -->\n"
                    "````text\n# not a heading\n```\n[not](a-link.md)\n````\n\n"
                    "`[inline](code.md)` and [a link](other.md#a-page-with-code)\n\n"
                    "```bash\necho unmarked\n```\n")
    first, second = code_blocks(page)
    assert (first.line, first.end, first.language) == (4, 8, "text")
    assert NOT_RUN.fullmatch(first.marker) and first.text.startswith("# not a heading\n")
    assert second.marker == "" and second.text == "echo unmarked\n" and second.runs is None
    assert _anchors(page) == {"a-page-with-code"}
    assert _links(page) == ["other.md#a-page-with-code"]
