"""The documentation holds together: README.md is a short front door that links every page of
docs/, each page links back, and every relative link (and ``<img src>``) in README.md and
docs/*.md names a file of the repository and, with ``#anchor``, a heading that exists (GitHub's
heading slugs). Links inside code (fenced blocks, code spans) are not links and are skipped."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 260

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
# [text](target) and ![alt](src); the text may hold one level of brackets and line breaks.
INLINE_LINK = re.compile(
    r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?", re.M)
IMG_SRC = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def strip_code(text: str) -> str:
    """``text`` with fenced code blocks blanked and code spans replaced by ``code``; line count
    kept, so reported line numbers stay right."""
    lines, fence = [], ""
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = ""
            lines.append("")
        elif m:
            fence = m.group(1)
            lines.append("")
        else:
            lines.append(line)
    return "\n\n".join(_strip_spans(block) for block in "\n".join(lines).split("\n\n"))


def _strip_spans(block: str) -> str:
    """CommonMark code spans: a run of n backticks up to the next run of exactly n; an
    unmatched run is literal."""
    out, i = [], 0
    while i < len(block):
        if block[i] != "`":
            out.append(block[i])
            i += 1
            continue
        n = len(block[i:]) - len(block[i:].lstrip("`"))
        close = re.compile(rf"(?<!`)`{{{n}}}(?!`)").search(block, i + n)
        if close is None:
            out.append(block[i : i + n])
            i += n
            continue
        out.append("code" + "\n" * block.count("\n", i, close.end()))
        i = close.end()
    return "".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (code marks, emphasis and link targets dropped),
    lowercased, punctuation other than '-' and '_' removed, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "").lower().strip()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file: heading slugs (repeats get -1, -2, ... as on GitHub)
    and explicit ``<a name=...>`` / ``id=...`` anchors."""
    text = strip_code(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(path.read_text(encoding="utf-8")))
    for line in text.split("\n"):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image source in a Markdown file."""
    text = strip_code(path.read_text(encoding="utf-8"))
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEF, IMG_SRC):
        for m in pattern.finditer(text):
            target = m.group(1).strip("<>")
            found.append((m.start(1), text.count("\n", 0, m.start(1)) + 1, target))
    return [(line, target) for _, line, target in sorted(found)]


def broken_links(files: list[Path], root: Path) -> list[str]:
    """One line per link in ``files`` that does not resolve inside ``root``."""
    problems, cache = [], {}
    for path in files:
        for line, target in links(path):
            where = f"{path.relative_to(root)}:{line}: {target!r}"
            if SCHEME.match(target) or target.startswith("//"):
                continue  # http(s)://, mailto: and other URLs are not checked here
            name, _, anchor = target.partition("#")
            name = unquote(name)
            if not name and not anchor:
                problems.append(f"{where}: empty link")
                continue
            dest = (root / name.lstrip("/")) if name.startswith("/") else (path.parent / name)
            dest = dest.resolve() if name else path.resolve()
            if not dest.is_relative_to(root.resolve()):
                problems.append(f"{where}: points outside the repository")
            elif not dest.exists():
                problems.append(f"{where}: {dest.relative_to(root.resolve())} does not exist")
            elif anchor and dest.suffix == ".md":
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if unquote(anchor) not in cache[dest]:
                    problems.append(f"{where}: no heading #{anchor} in {dest.name}")
    return problems


def test_every_relative_link_in_the_docs_resolves() -> None:
    files = doc_files()
    assert len(files) > 1, "docs/*.md is missing"
    count = sum(len(links(p)) for p in files)
    assert count >= len(files), f"only {count} links found: is the link parser broken?"
    problems = broken_links(files, ROOT)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_a_short_front_door_that_links_every_docs_page() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"
    linked = {
        (README.parent / unquote(t.partition("#")[0])).resolve()
        for _, t in links(README)
        if not SCHEME.match(t) and t.partition("#")[0]
    }
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    missing = [p.name for p in pages if p.resolve() not in linked]
    assert not missing, f"README.md does not link docs pages: {missing}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_each_docs_page_has_a_title_and_links_back_to_the_readme(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert re.match(r"# \S", text), f"{page.name} does not start with a '# Title' line"
    back = [t for _, t in links(page) if (page.parent / t.partition("#")[0]).resolve() == README]
    assert back, f"{page.name} has no link back to README.md"


def figures_markers() -> tuple[str, str]:
    """bench/readme.py's START and END, read from its source (no import: the docs test needs
    none of the bench's dependencies)."""
    tree = ast.parse((ROOT / "bench" / "readme.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "(START, END)":
            start, end = ast.literal_eval(node.value)
            return start, end
    raise AssertionError("bench/readme.py no longer sets START, END = ...")


def test_make_figures_splices_into_the_benchmarks_page() -> None:
    START, END = figures_markers()
    page = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    assert page.count(START) == 1 and page.count(END) == 1
    assert page.index(START) < page.index(END)
    assert START not in README.read_text(encoding="utf-8")
    assert "docs/benchmarks.md" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_the_checker_reports_a_broken_file_link_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "real.py").write_text("")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# A page\n\n## Measured on this project's CPU machine\n\n"
        "[ok](../real.py) [ok](#measured-on-this-projects-cpu-machine) [ok](#a-page)\n"
        "[web](https://example.com/x) [mail](mailto:a@b.c) `[code](nothing.md)`\n"
        "```\n[fenced](nothing.md)\n```\n"
        "[gone](../missing.py) [bad anchor](#no-such-heading) [up](../../outside.md)\n"
        '<img src="missing.png">\n'
    )
    problems = broken_links([page], tmp_path)
    assert len(problems) == 4, problems
    assert "missing.py" in problems[0] and "does not exist" in problems[0]
    assert "no heading #no-such-heading" in problems[1]
    assert "outside the repository" in problems[2]
    assert "missing.png" in problems[3]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("The published models (nyu.h5, kitti.h5)", "the-published-models-nyuh5-kittih5"),
        ("Measured on this project's CPU machine", "measured-on-this-projects-cpu-machine"),
        ("Camera, video and streams", "camera-video-and-streams"),
        ("`--target auto` and the_rest", "--target-auto-and-the_rest"),
    ],
)
def test_heading_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
