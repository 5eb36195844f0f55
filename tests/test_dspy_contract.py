"""Contracts with DSPy internals route-switch relies on: they fail loudly when a DSPy upgrade changes them.

1. ``RoutingModule`` records engine-scored calls in ``dspy.settings.trace`` exactly as ``dspy.Predict``
   records its own (``(predictor, inputs, prediction)``), so MIPROv2's bootstrapping sees them.
2. The optimiser subclasses ``MIPROv2._propose_instructions`` and ``MIPROv2._bootstrap_fewshot_examples``
   (route_switch/optimization/mipro.py): both must exist, take the program first, and be called by
   ``compile``.
"""
from __future__ import annotations

import inspect

import pytest

dspy = pytest.importorskip("dspy")

from route_switch.llm.artifacts import load_program  # noqa: E402
from route_switch.llm.dspy_modules import RoutingModule, record_in_trace, route_signature  # noqa: E402


def test_predict_records_its_calls_as_record_in_trace_does():
    from dspy.utils.dummies import DummyLM

    prog = load_program("programs/default.yaml")
    predict = dspy.Predict(route_signature(prog))
    with dspy.context(lm=DummyLM([{"tier": "2"}]), trace=[]):
        pred = predict(query="What is 2 + 2?")
        theirs = list(dspy.settings.trace)
    with dspy.context(trace=[]):
        record_in_trace(predict, {"query": "What is 2 + 2?"}, pred)
        ours = list(dspy.settings.trace)
    assert len(theirs) == len(ours) == 1
    (p1, in1, out1), (p2, in2, out2) = theirs[0], ours[0]
    assert p1 is p2 is predict and in1 == in2 and out1 is out2 is pred


def test_engine_scored_calls_reach_the_trace():
    class Engine:  # a FAKE engine that scores every label in one call
        def tier_probs(self, messages):
            return [0.1, 0.7, 0.2]

    class LM:
        engine = Engine()

    prog = load_program("programs/default.yaml")
    module = RoutingModule(prog, LM())
    with dspy.context(trace=[]):
        pred = module(query="Summarise this paragraph.")
        trace = list(dspy.settings.trace)
    assert pred.tier == "2" and len(trace) == 1 and trace[0][0] is module.predict


@pytest.mark.parametrize("hook", ["_propose_instructions", "_bootstrap_fewshot_examples"])
def test_the_mipro_hooks_the_optimiser_overrides_exist(hook):
    fn = getattr(dspy.MIPROv2, hook, None)
    assert callable(fn), f"dspy.MIPROv2.{hook} is gone: update route_switch/optimization/mipro.py"
    params = list(inspect.signature(fn).parameters)
    assert params[:2] == ["self", "program"], f"dspy.MIPROv2.{hook} changed its signature: {params}"
    assert hook in inspect.getsource(dspy.MIPROv2), f"MIPROv2 no longer calls {hook}"
