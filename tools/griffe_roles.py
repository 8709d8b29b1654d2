"""A griffe extension (mkdocs.yml, mkdocstrings' ``extensions``): the docstrings' reST roles as Markdown.

torchcontract's docstrings write ``:class:`Report``` and ``:func:`check```, as the Python docs do; the
API reference renders Markdown. A role naming a public name of torchcontract (a name of a public
module's ``__all__``) becomes a link to its entry in the reference; any other role becomes code. A
paragraph ending in ``::`` (a reST literal block follows) ends in ``:``; the indented block after it is
already code in Markdown. A doctest becomes a Python console block.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

# The public modules and the names they export: a role naming one of these links to its entry.
PUBLIC_MODULES = ("torchcontract.conformance", "torchcontract.protocols", "torchcontract.reference_impl")
DOCTEST = re.compile(r"^>>> .*(?:\n(?![ \t]*$).*)*", re.MULTILINE)
ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`~?(?P<target>[^`]+)`")


class SphinxRolesToMarkdown(Extension):
    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        public = _public_names(pkg)
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(obj.docstring.value, public)


def _objects(obj: Any) -> list[Any]:
    """``obj`` and every object defined under it (not the aliases: their targets are listed where
    they are defined)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_objects(member))
    return found


def _public_names(package: Any) -> dict[str, str]:
    """``name`` and ``module.name`` -> the public path of each name of a public module's ``__all__``."""
    found: dict[str, str] = {}
    for module_path in PUBLIC_MODULES:
        module = package.get_member(module_path.split(".", 1)[1])
        for name in module.exports or ():
            path = f"{module_path}.{name}"
            found.setdefault(str(name), path)
            found[path] = path
    return found


def to_markdown(text: str, public: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("target").removesuffix("()")
        shown = name.rsplit(".", 1)[-1] if "~" in match.group(0) else name
        path = public.get(name)  # a member (Report.passed) is code: its entry may not be rendered
        if path is not None and match.group("role") != "mod":
            return f"[`{shown}`][{path}]"
        return f"`{shown}`"

    text = re.sub(r"::\n\n", ":\n\n", ROLE.sub(replace, text))
    # A doctest (a paragraph of >>> lines and their output) is a Python console block.
    return DOCTEST.sub(lambda match: f"```pycon\n{match.group(0)}\n```", text)
