"""The README stays the short first page, and every link in it leads somewhere.

The manual itself (docs/) is checked by `mkdocs build --strict` in `make lint`;
the README is outside the MkDocs site, so its links are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MAX_LINES = 300
MAX_IMAGE_BYTES = 250_000


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug, as MkDocs makes anchors: lower case, words joined by '-'."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.MULTILINE)}


def _local_links() -> list[str]:
    return [t for t in LINK.findall(README.read_text()) if not re.match(r"[a-z]+:", t)]


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines; keep it <= {MAX_LINES} and move the rest to docs/"


def test_readme_links_point_at_files_and_headings_that_exist() -> None:
    links = _local_links()
    assert any(t.startswith("docs/") for t in links), "the README links into docs/"
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        file = ROOT / path
        if not file.is_file():
            broken.append(f"{target}: no file {path}")
        elif anchor and anchor not in _anchors(file):
            broken.append(f"{target}: {path} has no heading for #{anchor}")
    assert not broken, "README.md links nowhere: " + "; ".join(broken)


def test_readme_screenshots_are_small_and_in_the_docs() -> None:
    images = [t for t in _local_links() if t.endswith(".png")]
    assert images, "the README's tour shows screenshots"
    for image in images:
        assert image.startswith("docs/img/"), f"{image}: keep screenshots under docs/img/ so the manual can use them"
        size = (ROOT / image).stat().st_size
        assert size <= MAX_IMAGE_BYTES, f"{image} is {size:,} bytes; keep a screenshot under {MAX_IMAGE_BYTES:,}"


def test_every_page_of_the_manual_is_in_its_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(node: object) -> set[str]:
        if isinstance(node, str):
            return {node}
        if isinstance(node, dict):
            return set().union(*(pages(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(pages(v) for v in node))
        return set()

    in_nav = pages(config["nav"])
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk == in_nav, (
        f"pages missing from the nav: {on_disk - in_nav}; nav entries with no page: {in_nav - on_disk}"
    )
