"""The options of a target (``Options``): each declared once, with its validator and its documentation.

An option is a field of :class:`Options` whose metadata (:func:`_about`, an :class:`OptionInfo`) holds
what is decided about it: how a value is validated, how a report shows it, and the
documentation that README's table of target options (generated: :mod:`.docs`) and ``help(Options)``
both show. :meth:`Options.from_kwargs` and the constructor validate every field from it, by no
special case of a field's name; the one rule that spans two fields (``uneven_shards`` with
``max_padding``) is :meth:`Options._validate_together`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from torchcontract.conformance._core import dtypes as _dtypes
from torchcontract.conformance._core.arguments import MAX_WORLD_SIZE, world_size_problem
from torchcontract.conformance._values import describe

__all__ = ["OptionInfo", "Options", "option_infos"]

_KEY = "torchcontract"

Validator = Callable[[str, object], None]


@dataclass(frozen=True)
class OptionInfo:
    """What is decided about one option: ``validate(name, value)`` raises TypeError or ValueError naming
    the option; ``help`` documents it (Markdown, one paragraph: README's table cell); ``shown`` is how
    the table names it (``deterministic=False``: the value that changes something); ``declaration``
    marks a declaration of a documented design (SPEC.md, "Declarations"); ``in_report`` turns a value
    that differs from the default into what a report shows (a callable, described in words)."""

    validate: Validator
    help: str
    shown: str
    declaration: bool = False
    in_report: Callable[[Any], object] | None = None


def _about(
    validate: Validator,
    *,
    help: str,
    shown: str | None = None,
    declaration: bool = False,
    in_report: Callable[[Any], object] | None = None,
) -> dict[str, OptionInfo]:
    """The metadata of a field of :class:`Options`: its :class:`OptionInfo` (``shown`` defaults to the
    field's name)."""
    return {_KEY: OptionInfo(validate, " ".join(help.split()), shown or "", declaration, in_report)}


# -- validators: each raises naming the option, and says what a valid value is -----------------------


def _invalid(name: str, value: object, expected: str) -> TypeError:
    return TypeError(f"option {name}={value!r} is not valid: expected {expected}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _invalid(name, value, "bool")


def _optional_flag(name: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise _invalid(name, value, "bool | None")


def _count(minimum: int = 0, why: str = "", *, optional: bool = False) -> Validator:
    """A non-negative int (or None, when ``optional``), at least ``minimum``."""
    expected = "int | None" if optional else "int"

    def validate(name: str, value: object) -> None:
        if value is None and optional:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _invalid(name, value, expected)
        if value < minimum:
            raise TypeError(f"option {name} must be at least {minimum}{why}")

    return validate


def _world_size(name: str, value: object) -> None:
    _count(2, optional=True)(name, value)
    if isinstance(value, int) and value > MAX_WORLD_SIZE:
        raise ValueError(f"option {name} {world_size_problem(value)}")


def _callable(shape: str) -> Validator:
    """None, or a callable of ``shape`` (what it is called with, and returns)."""

    def validate(name: str, value: object) -> None:
        if value is not None and not callable(value):
            raise TypeError(f"option {name} must be {shape}, not {value!r}")

    return validate


def _tolerance(name: str, value: object) -> None:
    if value is None:
        return
    pair = isinstance(value, tuple) and len(value) == 2
    if not pair or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
        for x in cast(tuple[object, ...], value)
    ):
        raise TypeError(f"option {name} must be (rtol, atol), two non-negative finite numbers, not {value!r}")


def _dtype_matrix(name: str, value: object) -> None:
    _dtypes.validate_dtypes(value)


# -- the options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What a target says about itself, and how thoroughly to check it (the fields below; unknown or
    invalid values are a TypeError or ValueError naming the option, however the options are given)."""

    deterministic: bool = field(
        default=True,
        metadata=_about(
            _flag,
            shown="deterministic=False",
            help="""samples/outputs are random: equality clauses are skipped or compare only what stays
            deterministic (structure, counts, outputs of a module and its copy with the global RNGs seeded
            alike), the worker-randomness clauses apply""",
        ),
    )
    infinite: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="infinite=True",
            help="an endless stream or loader: a prefix of `max_items` items is checked",
        ),
    )
    thorough: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="thorough=True",
            help="""visit every index and every item instead of the first, the last and `sample_size` seeded
            picks (slow on big objects)""",
        ),
    )
    max_items: int = field(
        default=1000,
        metadata=_about(
            _count(1),
            help="how many items of a stream (or of a long iteration) are checked (default 1000)",
        ),
    )
    sample_size: int = field(
        default=16,
        metadata=_about(
            _count(),
            help="""how many indices between the first and the last a map-style dataset is checked at (default
            16)""",
        ),
    )
    seed: int = field(
        default=0,
        metadata=_about(
            _count(),
            help="""seeds the choice of sampled indices (default 0); the checks never draw from the global
            random state""",
        ),
    )
    data_source_len: int | None = field(
        default=None,
        metadata=_about(
            _count(optional=True),
            help="a sampler's data source length, when the sampler does not expose it",
        ),
    )
    replacement: bool | None = field(
        default=None,
        metadata=_about(
            _optional_flag,
            declaration=True,
            help="""whether a sampler draws with replacement (default: its `replacement` attribute);
            `replacement=True` declares a sampler that draws with replacement or oversamples by design,
            without such an attribute: `check(ClassBalancedSampler(labels), Sampler,
            data_source_len=len(labels), replacement=True)`""",
        ),
    )
    ordered: bool | None = field(
        default=None,
        metadata=_about(
            _optional_flag,
            help="""whether a loader's batches follow its dataset's order (default: inferred from its
            `sampler`/`shuffle` attributes where it has them); `ordered=False` on an iterable dataset: two
            passes are compared in any order""",
        ),
    )
    num_workers: int = field(
        default=2,
        metadata=_about(
            _count(2, " (the checks compare workers)"),
            help="""worker processes of the DataLoader that `iterable_dataset.workers_yield_each_item_once`
            and `stateful.resume_with_workers` load through (default 2, at least 2); the other worker clauses
            start the one or two workers their rule is about""",
        ),
    )
    world_size: int | None = field(
        default=None,
        metadata=_about(
            _world_size,
            help=f"""turns the distributed clauses on, with this many ranks (2 to {MAX_WORLD_SIZE:,}; pytest:
            `--conformance-world-size N`, CLI: `-o world_size=N`)""",
        ),
    )
    shards: Callable[[int, int], Any] | None = field(
        default=None,
        metadata=_about(
            _callable("a callable (rank, world_size) -> object"),
            in_report=describe,
            help="""`shards(rank, world_size)` builds the sampler or loader of one rank, for the distributed
            clauses; inferred only for torch's own `DistributedSampler` (not a subclass, nor any other class):
            `check(sampler, Sampler, world_size=2, shards=make_rank_sampler)`""",
        ),
    )
    isolate: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="isolate=True",
            help="""run the target's checks in a child process: a segmentation fault, `os._exit` or a
            GIL-holding hang fails a check instead of ending the run (pytest: `--conformance-isolate`, CLI:
            `--isolate`; see "Crashes: isolation mode")""",
        ),
    )
    # Declarations of documented designs (SPEC.md, "Declarations").
    uneven_shards: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="uneven_shards=True",
            declaration=True,
            help="""evaluation sharding, ranks of unequal length without padding: the equal-length clauses are
            skipped, every index must be on exactly one rank: `check(range(0, n, 4), Sampler, world_size=4,
            shards=lambda r, w: range(r, n, w), data_source_len=n, uneven_shards=True)`""",
        ),
    )
    max_padding: int | None = field(
        default=None,
        metadata=_about(
            _count(optional=True),
            shown="max_padding=k",
            declaration=True,
            help="""documented padding (to a multiple of the batch size or of the world size): at most `k`
            indices repeated across all ranks, or in one pass of a sampler (default: world_size - 1 across
            ranks, none in one pass): `check(sampler, Sampler, world_size=2, shards=make_rank_sampler,
            max_padding=6)`""",
        ),
    )
    reshuffles_each_pass: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="reshuffles_each_pass=True",
            declaration=True,
            help="""a seeded order that changes on every pass (its seed advances per epoch): the "each pass in
            the same order" clauses compare the indices drawn, not their order; those on samples and counts
            still apply: `check(EpochSeededSampler(n), Sampler, reshuffles_each_pass=True)`""",
        ),
    )
    transforms_samples: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="transforms_samples=True",
            declaration=True,
            help="""a collate function (or a loader's) that renames keys or packs samples into rows: only the
            clauses that hold for any collate function apply: `check(pack_sequences, CollateFn,
            example_inputs=samples, transforms_samples=True)`""",
        ),
    )
    error_index: int | None = field(
        default=None,
        metadata=_about(
            _count(optional=True),
            help="""an index at which a map-style dataset raises (a corrupt sample):
            `map_dataset.worker_errors_keep_their_type` loads it through a worker (default `len(ds)`), the
            other clauses leave it out of their sampled indices""",
        ),
    )
    factory: Callable[[], Any] | None = field(
        default=None,
        metadata=_about(
            _callable("a zero-argument callable"),
            in_report=describe,
            help="""a Module: a zero-argument callable that builds a fresh, differently initialised instance;
            `module.state_dict_round_trip` loads `m.state_dict()` into it instead of into a perturbed deep
            copy, so that state rebuilt at construction (a non-persistent buffer such as rotary frequencies)
            is not mistaken for lost state, and state that only a fitted object holds is caught;
            `module.builds_on_meta_device` builds one under `torch.device("meta")`, allocates it with
            `to_empty` and loads `m.state_dict()` (FSDP's and torchtitan's initialisation), and
            `module.loads_on_meta_device_with_assign` loads it into one built on meta with `assign=True`
            (accelerate's and transformers' loading): `check(model,
            Module, example_inputs=(x,), factory=lambda: MyNet(hidden=16))`""",
        ),
    )
    unused_parameters: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="unused_parameters=True",
            declaration=True,
            help="""a Module with parameters that `forward` leaves unused by design (a branch switched off, a
            head used in some steps only; what DistributedDataParallel needs `find_unused_parameters=True`
            for): `module.backward_reaches_parameters` notes the parameters left without a gradient instead of
            failing: `check(model, Module, example_inputs=(x,), unused_parameters=True)`""",
        ),
    )
    eval_only: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="eval_only=True",
            declaration=True,
            help="""a Module whose example inputs cannot drive train mode (a batch of one sample into
            BatchNorm: "Expected more than 1 value per channel when training"), or that is never trained: the
            train-mode clauses (`module.train_forward_runs`, `module.backward_reaches_parameters`,
            `module.gradients_are_finite`) are skipped, naming it; better, give inputs a training step could
            take: `check(model, Module, example_inputs=(x,), eval_only=True)`""",
        ),
    )
    parity_tolerance: tuple[float, float] | None = field(
        default=None,
        metadata=_about(
            _tolerance,
            help="""a Module on CUDA: `(rtol, atol)` for `module.device_parity`, for every floating-point
            dtype (default: `torch.testing.assert_close`'s per-dtype defaults), e.g. `parity_tolerance=(1e-4,
            1e-4)` for a deep model""",
        ),
    )
    collate_fn: Callable[[list[Any]], Any] | None = field(
        default=None,
        metadata=_about(
            _callable("a callable (samples) -> batch"),
            in_report=describe,
            help="""a map-style dataset: the collate function it is loaded with (default: torch's
            `default_collate`), for `map_dataset.samples_collate`: a dataset of variable-length samples
            declares its padding collate, `check(ds, MapDataset, collate_fn=pad_batch)`""",
        ),
    )
    compile: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="compile=True",
            help="""a Module that is compiled: `module.compile_matches_eager` applies (`torch.compile` with
            the `"aot_eager"` backend; `"eager"` too on a difference, to say which stage makes it); off by
            default, as it takes seconds per module (raise `time_budget_s` for a large one): `check(model,
            Module, example_inputs=(x,), compile=True)`""",
        ),
    )
    export: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="export=True",
            help="""a Module that is exported: `module.export_matches_eager` applies (`torch.export.export`
            with the example inputs); off by default, for the same reason as `compile`: `check(model, Module,
            example_inputs=(x,), export=True)`""",
        ),
    )
    gradcheck: bool = field(
        default=False,
        metadata=_about(
            _flag,
            shown="gradcheck=True",
            help="""a Module whose gradients are to be compared with finite differences:
            `module.gradients_match_finite_differences` applies (`torch.autograd.gradcheck` and
            `gradgradcheck` in float64, fast mode, on a deep copy, over the floating-point inputs and the
            trainable parameters; a wrong custom `autograd.Function.backward` fails it); off by default, as
            it takes float64 forward and double-backward passes (seconds on a large model): give small example
            inputs, `check(model, Module, example_inputs=(x[:1],), gradcheck=True)`""",
        ),
    )
    dtypes: tuple[Any, ...] | None = field(
        default=None,
        metadata=_about(
            _dtype_matrix,
            in_report=lambda dtypes: list(_dtypes.dtype_names(dtypes)),
            help="""a (Callable)Module that is a `torch.nn.Module`: a tuple of floating-point torch dtypes
            (`torch.float16`, `torch.bfloat16`, `torch.float32`, `torch.float64`; default `None`): the
            per-dtype clauses (those whose verdict depends on the numerics of a call; SPEC.md lists them under
            "Conventions") run once per dtype, on `copy.deepcopy(m).to(dtype)` with the floating-point tensors
            of the example arguments converted alike (integer ones kept), compared with `assert_close`'s
            defaults for that dtype: `check(model, Module, example_inputs=(x,), dtypes=(torch.float32,
            torch.float64))`. Each result names its dtype (`"dtype": "float64"`, shown as
            `callable_module.call_returns[float64]`); under pytest one test each, ids ending in the dtype
            (`model-callable_module.call_returns-float64`, `model-module.device_parity-cuda-float64`). The
            per-dtype clauses that a clause run once depends on are also checked and reported on the module as
            it is, without a dtype (`model-callable_module.call_returns`), so that a module that fails as it
            is fails whatever the matrix. An expected failure `"callable_module.call_returns"` applies in
            every dtype (and as it is), `"callable_module.call_returns[float64]"` in that one only. A module
            that `.to(dtype)` cannot convert skips them, naming the call (`module.to_dtype` reports it). Any
            other target: a `TypeError`""",
        ),
    )

    def __post_init__(self) -> None:
        for option, info in option_infos():
            info.validate(option.name, getattr(self, option.name))
        self._validate_together()

    def _validate_together(self) -> None:
        if self.uneven_shards and self.max_padding:
            raise TypeError(
                "option uneven_shards=True declares shards without padding: max_padding must be None or 0"
            )

    @classmethod
    def from_kwargs(cls, options: Mapping[str, object]) -> Options:
        """Options from keyword arguments (``check(..., world_size=2)``): TypeError for an unknown name,
        TypeError or ValueError for an invalid value, naming it."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(names)}")
        return cls(**options)  # type: ignore[arg-type]

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults, as reports show them."""
        changed: dict[str, Any] = {}
        for option, info in option_infos():
            value = getattr(self, option.name)
            if value != option.default:
                changed[option.name] = info.in_report(value) if info.in_report is not None else value
        return changed

    @property
    def dtype_names(self) -> tuple[str, ...]:
        """The names of ``dtypes`` (``("float32", "float64")``); () without a dtype matrix."""
        return _dtypes.dtype_names(self.dtypes)


def option_infos() -> Iterator[tuple[dataclasses.Field[Any], OptionInfo]]:
    """Every option, in the order of :class:`Options`' fields, with its :class:`OptionInfo`."""
    for option in dataclasses.fields(Options):
        info: OptionInfo = option.metadata[_KEY]
        yield option, info if info.shown else dataclasses.replace(info, shown=option.name)


def _docstring() -> str:
    """``help(Options)``: the class's summary, then each option as README's table documents it."""
    lines = [(Options.__doc__ or "").strip(), ""]
    for option, info in option_infos():
        tag = " (declaration)" if info.declaration else ""
        lines.append(f"{option.name}{tag}: {info.help}")
    return "\n".join(lines)


Options.__doc__ = _docstring()
