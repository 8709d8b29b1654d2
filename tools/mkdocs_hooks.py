"""mkdocs hooks (mkdocs.yml's ``hooks:``): the repository's root documents become pages of the site at
build time, so that each stays the one source of its text.

- SPEC.md: one page per protocol (tools/spec_pages.py), under spec/.
- CHANGELOG.md and CONTRIBUTING.md: changelog.md and contributing.md.
- ``<!-- include: README.md § Section title -->`` in a page: that section of README.md (without its
  heading, its subheadings one level up).

Links in that text are written for GitHub, relative to the root: the hook points a link to a root
document at its page, and a link to any other file of the repository at the file on GitHub
(``repo_url``), so that ``mkdocs build --strict`` finds every link.
"""

from __future__ import annotations

import importlib.util
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page


def _load_spec_pages() -> Any:
    path = Path(__file__).with_name("spec_pages.py")
    spec = importlib.util.spec_from_file_location("torchcontract_docs_spec_pages", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


spec_pages = _load_spec_pages()

ROOT_PAGES = {"CHANGELOG.md": "changelog.md", "CONTRIBUTING.md": "contributing.md"}
INCLUDE = re.compile(r"^<!-- include: (?P<path>[^ ]+) § (?P<section>.+?) -->$", re.MULTILINE)
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _spec_anchor_pages(config: MkDocsConfig) -> dict[str, str]:
    """SPEC.md's `## ` anchors -> the page that holds the section."""
    text = (_root(config) / "SPEC.md").read_text(encoding="utf-8")
    return {
        spec_pages.slug(title): spec_pages.page_of_section(title)
        for title in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    }


def rewrite_links(markdown: str, source_dir: str, page: str, config: MkDocsConfig) -> str:
    """Links of ``markdown``, written relative to ``source_dir`` of the repository, made to work on the
    site's ``page`` (a path relative to docs/)."""
    repo_url = str(config.repo_url or "").rstrip("/")
    spec_anchors = _spec_anchor_pages(config)

    def replace(match: re.Match[str]) -> str:
        target = match.group("target")
        if re.match(r"^[a-z]+:|^#", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        path = posixpath.normpath(posixpath.join(source_dir, path))
        if path == "SPEC.md":
            docs_path = spec_anchors.get(anchor, "spec/index.md")
        elif path in ROOT_PAGES:
            docs_path = ROOT_PAGES[path]
        elif path.startswith("docs/"):
            docs_path = path.removeprefix("docs/")
        else:
            kind = "tree" if (_root(config) / path).is_dir() else "blob"
            return f"[{match.group('text')}]({repo_url}/{kind}/main/{path}{'#' + anchor if anchor else ''})"
        relative = posixpath.relpath(docs_path, posixpath.dirname(page) or ".")
        return f"[{match.group('text')}]({relative}{'#' + anchor if anchor else ''})"

    return LINK.sub(replace, markdown)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _root(config)
    for page in spec_pages.split((root / "SPEC.md").read_text(encoding="utf-8")):
        content = rewrite_links(page.markdown, "", page.path, config)
        files.append(File.generated(config, page.path, content=content))
    for source, page_path in ROOT_PAGES.items():
        content = rewrite_links((root / source).read_text(encoding="utf-8"), "", page_path, config)
        files.append(File.generated(config, page_path, content=content))
    return files


def readme_section(root: Path, path: str, title: str) -> str:
    """The body of ``## title`` in the root document ``path``, subheadings one level up."""
    text = (root / path).read_text(encoding="utf-8")
    match = re.search(
        rf"^## {re.escape(title)}\n(?P<body>.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL
    )
    if match is None:
        raise ValueError(f"{path} has no section '## {title}'")
    return re.sub(r"^#(#+) ", r"\1 ", match.group("body"), flags=re.MULTILINE).strip("\n")


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    def include(match: re.Match[str]) -> str:
        path = match.group("path")
        body = readme_section(_root(config), path, match.group("section"))
        return rewrite_links(body, posixpath.dirname(path), page.file.src_uri, config)

    return INCLUDE.sub(include, markdown)
