"""CallableModule and Module: plain classes with every member, and with one member missing or wrong."""

from typing import Any

from typing_extensions import assert_type

from torchcontract.protocols import CallableModule, Module

from ._classes import (
    CallableWithoutCall,
    CallableWithoutForward,
    MixinModule,
    ModuleLoadStateDictWithoutStrict,
    ModuleStateDictReturnsList,
    ModuleTrainingIsInt,
    ModuleTrainReturnsNone,
    ModuleTrainTakesStr,
    ModuleTrainWithoutMode,
    ModuleWithoutCall,
    ModuleWithoutEval,
    ModuleWithoutForward,
    ModuleWithoutLoadStateDict,
    ModuleWithoutNamedParameters,
    ModuleWithoutParameters,
    ModuleWithoutStateDict,
    ModuleWithoutTrain,
    ModuleWithoutTraining,
    ModuleWithoutZeroGrad,
    ModuleZeroGradNeedsArgument,
    NotCallable,
    PlainCallable,
    PlainModule,
)

# --- CallableModule: accepted -----------------------------------------------------------------------
ok_plain_callable: CallableModule = PlainCallable()
ok_plain_module_as_callable: CallableModule = PlainModule()
ok_mixin_module_as_callable: CallableModule = MixinModule()

# --- CallableModule: rejected -----------------------------------------------------------------------
bad_forward_without_call: CallableModule = CallableWithoutCall()  # type: ignore[assignment]
bad_call_without_forward: CallableModule = CallableWithoutForward()  # type: ignore[assignment]
bad_not_callable: CallableModule = NotCallable()  # type: ignore[assignment]
bad_module_without_forward_as_callable: CallableModule = ModuleWithoutForward()  # type: ignore[assignment]

# --- Module: accepted --------------------------------------------------------------------------------
ok_plain_module: Module = PlainModule()
ok_mixin_module: Module = MixinModule()

# --- Module: one member missing (each member once) ----------------------------------------------------
bad_module_without_forward: Module = ModuleWithoutForward()  # type: ignore[assignment]
bad_module_without_call: Module = ModuleWithoutCall()  # type: ignore[assignment]
bad_module_without_training: Module = ModuleWithoutTraining()  # type: ignore[assignment]
bad_module_without_train: Module = ModuleWithoutTrain()  # type: ignore[assignment]
bad_module_without_eval: Module = ModuleWithoutEval()  # type: ignore[assignment]
bad_module_without_parameters: Module = ModuleWithoutParameters()  # type: ignore[assignment]
bad_module_without_named_parameters: Module = ModuleWithoutNamedParameters()  # type: ignore[assignment]
bad_module_without_state_dict: Module = ModuleWithoutStateDict()  # type: ignore[assignment]
bad_module_without_load_state_dict: Module = ModuleWithoutLoadStateDict()  # type: ignore[assignment]
bad_module_without_zero_grad: Module = ModuleWithoutZeroGrad()  # type: ignore[assignment]
bad_callable_as_module: Module = PlainCallable()  # type: ignore[assignment]

# --- Module: every member present, one with the wrong signature or type ------------------------------
bad_train_takes_str: Module = ModuleTrainTakesStr()  # type: ignore[assignment]
bad_train_without_mode: Module = ModuleTrainWithoutMode()  # type: ignore[assignment]
bad_train_returns_none: Module = ModuleTrainReturnsNone()  # type: ignore[assignment]
bad_training_is_int: Module = ModuleTrainingIsInt()  # type: ignore[assignment]
bad_load_state_dict_without_strict: Module = ModuleLoadStateDictWithoutStrict()  # type: ignore[assignment]
bad_state_dict_returns_list: Module = ModuleStateDictReturnsList()  # type: ignore[assignment]
bad_zero_grad_needs_argument: Module = ModuleZeroGradNeedsArgument()  # type: ignore[assignment]


# --- Using the protocols in annotations ----------------------------------------------------------------
def fit(model: Module) -> None:
    assert_type(model.train(), Module)
    assert_type(model.eval(), Module)
    assert_type(model.train(False).training, bool)
    model.train(mode=True)
    model.load_state_dict(model.state_dict(), strict=False)
    model.zero_grad()
    for name, _ in model.named_parameters():
        assert_type(name, str)
    model.train("yes")  # type: ignore[arg-type]
    model.training = False  # type: ignore[misc]  # read-only in the protocol
    model.load_state_dict(state_dict={})  # type: ignore[call-arg]  # the state is positional-only
    model.backward()  # type: ignore[attr-defined]


def predict(model: CallableModule, x: float) -> float:
    # Both members are (*args: Any, **kwargs: Any) -> Any: any call goes through, the result is Any.
    assert_type(model(x), Any)
    assert_type(model.forward(x, "anything", key=None), Any)
    result: float = model(x)
    return result


def _callers() -> None:
    fit(PlainModule())
    fit(MixinModule())
    fit(PlainCallable())  # type: ignore[arg-type]
    fit(ModuleTrainTakesStr())  # type: ignore[arg-type]
    predict(PlainCallable(), 1.0)
    predict(PlainModule(), 1.0)
    predict(CallableWithoutCall(), 1.0)  # type: ignore[arg-type]
    predict(len, 1.0)  # type: ignore[arg-type]
