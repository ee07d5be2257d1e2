"""The documentation's promises that a reader follows first: every relative link of
README.md and docs/*.md reaches a file (and, with #anchor, a heading of it, slugged
as GitHub does), and the README's quick start prints what the README shows under it."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def anchors(path: Path) -> set:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1, -2
    for repeats."""
    seen, ids = {}, set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        ids.add(slug if n == 0 else f"{slug}-{n}")
    return ids


def links():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        # Inline code is dropped, so a link written around code (`[x](y)` with code inside
        # the brackets) is read from the raw line instead.
        for target in set(LINK.findall(prose(text))) | set(LINK.findall(text.replace("`", ""))):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            yield pytest.param(page, target, id=f"{page.relative_to(ROOT)}->{target}")


@pytest.mark.parametrize("page,target", list(links()))
def test_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)}: {target}: no such file"
    if anchor:
        assert dest.suffix == ".md", f"{page.relative_to(ROOT)}: {target}: an anchor into a non-Markdown file"
        assert anchor in anchors(dest), f"{page.relative_to(ROOT)}: {target}: no heading with that id"


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached or not page.exists() or page.suffix != ".md":
            continue
        reached.add(page)
        text = page.read_text(encoding="utf-8")
        for target in LINK.findall(text.replace("`", "")):
            path = target.partition("#")[0]
            if path and not re.match(r"[a-z]+:", path):
                todo.append((page.parent / path).resolve())
    missing = [p.name for p in PAGES if p not in reached]
    assert not missing, f"docs pages no link from the README leads to: {missing}"


def test_quickstart_prints_what_the_readme_shows():
    """The block after <!-- ci:quickstart --> is run; the next fenced block is its output."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- ci:quickstart -->\n```python\n(.*?)```\s*\n```\n(.*?)```", text, re.S)
    assert m, "README.md lacks the ci:quickstart block and its output"
    code, shown = m.groups()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md:quickstart", "exec"), {"__name__": "__quickstart__"})
    assert printed.getvalue().strip() == shown.strip()
