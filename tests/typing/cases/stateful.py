"""Stateful: ``state_dict() -> Mapping[str, Any]`` and ``load_state_dict(state, /) -> object``."""

from collections.abc import Mapping
from typing import Any

from torchcontract.protocols import Stateful
from torchcontract.reference_impl import DataLoader, RandomSampler, SequentialSampler


class Resumable:
    def __init__(self) -> None:
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.position = int(state_dict["position"])


class ReturnsKeys:
    """load_state_dict may return something (nn.Module's _IncompatibleKeys): the result is ignored."""

    def state_dict(self) -> Mapping[str, Any]:
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any], /) -> tuple[list[str], list[str]]:
        return [], []


class StateOnly:
    def state_dict(self) -> dict[str, int]:
        return {}


class StateIsAList:
    def state_dict(self) -> list[int]:
        return [0]

    def load_state_dict(self, state_dict: list[int]) -> None: ...


class LoadTakesTwo:
    def state_dict(self) -> dict[str, int]:
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool) -> None: ...


# --- accepted --------------------------------------------------------------------------------------------
ok_user_class: Stateful = Resumable()
ok_returns_keys: Stateful = ReturnsKeys()
ok_reference_loader: Stateful = DataLoader(list(range(8)), batch_size=2)
ok_reference_random_sampler: Stateful = RandomSampler(8, seed=0)
ok_reference_sequential_sampler: Stateful = SequentialSampler(8)

# --- rejected --------------------------------------------------------------------------------------------
bad_without_load: Stateful = StateOnly()  # type: ignore[assignment]
bad_state_is_a_list: Stateful = StateIsAList()  # type: ignore[assignment]
bad_load_needs_two_arguments: Stateful = LoadTakesTwo()  # type: ignore[assignment]


# --- using the protocol in annotations -------------------------------------------------------------------
def checkpoint(obj: Stateful) -> dict[str, Any]:
    return dict(obj.state_dict())


def resume(obj: Stateful, saved: Mapping[str, Any]) -> None:
    obj.load_state_dict(saved)
    obj.load_state_dict(state_dict=saved)  # type: ignore[call-arg]  # positional-only
