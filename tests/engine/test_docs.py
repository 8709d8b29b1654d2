"""Each option is declared once, with its validator and its help (its metadata in ``Options``), so that
the table of target options (generated from it: tools/generated_docs.py), ``help(Options)`` and the
validation cannot drift apart."""

from __future__ import annotations

import dataclasses

import pytest

from torchcontract.conformance import Options
from torchcontract.conformance._core.options import option_infos


def test_every_option_is_declared_with_its_help() -> None:
    for option, info in option_infos():
        assert info.help.strip(), option.name
        assert info.help in (Options.__doc__ or ""), option.name
    assert len(list(option_infos())) == len(dataclasses.fields(Options))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_items": 0}, "max_items must be at least 1"),
        ({"num_workers": 1}, "num_workers must be at least 2"),
        ({"deterministic": "yes"}, "option deterministic='yes' is not valid"),
        ({"shards": 3}, "option shards must be a callable"),
        ({"uneven_shards": True, "max_padding": 2}, "max_padding must be None or 0"),
    ],
)
def test_options_built_directly_are_validated_like_keyword_options(
    options: dict[str, object], error: str
) -> None:
    # Options(...) itself validates: options=Options(max_items=0) was accepted as given.
    with pytest.raises(TypeError, match=error):
        Options(**options)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=error):
        Options.from_kwargs(options)
