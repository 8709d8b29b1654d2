"""SPEC.md as pages of the docs site: its introduction with "Conventions" and "Protocols at a glance" on
one page, then one page per protocol and one for the limits of the static protocols.

SPEC.md stays the one source: ``tools/mkdocs_hooks.py`` builds the pages from it at every build, and
``tools/generated_docs.py`` links to a clause through :func:`page_of_section` and the clause's id, which
is the anchor of its heading on its page.
"""

from __future__ import annotations

import dataclasses
import re

# The sections that stay on the first page with the introduction.
FIRST_PAGE_SECTIONS = ("Conventions", "Protocols at a glance")
CLAUSE_HEADING = re.compile(r"^(?P<hashes>#{3,4}) `(?P<id>[a-z_]+\.[a-z_]+)`(?P<rest>.*)$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class SpecPage:
    path: str  # relative to docs/
    title: str
    markdown: str
    sections: tuple[str, ...]  # the `## ` titles it holds


def slug(title: str) -> str:
    """The anchor GitHub and mkdocs give a heading: ``Honest limits of ...`` -> ``honest-limits-of-...``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def page_of_section(title: str) -> str:
    """The page (relative to docs/) that holds SPEC.md's ``## title`` section: ``MapDataset`` ->
    ``spec/map-dataset.md``."""
    if title in FIRST_PAGE_SECTIONS:
        return "spec/index.md"
    return f"spec/{slug(re.sub(r'(?<=[a-z])(?=[A-Z])', ' ', title))}.md"


def split(spec: str) -> list[SpecPage]:
    """SPEC.md's text as pages. A protocol's page is its ``##`` section with every heading one level up;
    each clause heading gets its check id as anchor."""
    parts = re.split(r"^## (.+)$", spec, flags=re.MULTILINE)
    introduction, sections = parts[0], list(zip(parts[1::2], parts[2::2], strict=True))
    first = [introduction.rstrip("\n")]
    first_titles: list[str] = []
    pages: list[SpecPage] = []
    for title, body in sections:
        if title in FIRST_PAGE_SECTIONS:
            first.append(f"## {title}\n{_anchored(body)}".rstrip("\n"))
            first_titles.append(title)
            continue
        text = f"# {title}\n" + re.sub(r"^#(#+) ", r"\1 ", _anchored(body), flags=re.MULTILINE)
        pages.append(SpecPage(page_of_section(title), title, text.rstrip("\n") + "\n", (title,)))
    index_title = introduction.lstrip().splitlines()[0].lstrip("# ").strip()
    index = SpecPage("spec/index.md", index_title, "\n\n".join(first) + "\n", tuple(first_titles))
    return [index, *pages]


def _anchored(body: str) -> str:
    return CLAUSE_HEADING.sub(
        lambda m: f"{m.group('hashes')} `{m.group('id')}`{m.group('rest')} {{#{m.group('id')}}}", body
    )
