"""The grader's protocol with a submission (issue 20, items 5-7): a hidden test's functions stay in the grader
(the sandbox calls back for their values, autograd included), nothing a submission does to its arguments comes
back, its exception text arrives short and plain, and the fmlearn functions that answer a task are forbidden
while the task's function runs.

One sandbox serves the tests that call into it directly; one submission is graded end to end (the forbidden
call's incident). The test's own functions are defined as the grader defines a test cell's: in a namespace of
its own, not importable by the sandbox (so before this protocol they travelled by value, code and all).
"""

import re
import sys
import time

import pytest
import torch

from fmlearn.exercises import check_cfg_forward
from fmlearn.exercises._base import ExerciseCheckError
from fmlearn.exercises._forbid import ForbiddenCall
from fmlearn.grading import grade_submission
from fmlearn.grading import sandbox as sandbox_module
from fmlearn.grading.sandbox import Limits, Sandbox, StudentFunction

from test_exercises import _fill
from test_grading import EX01, _blank, _save

SUBMISSION = r'''
import contextlib
import dis
import inspect
import io
import pickle

import fmlearn as fm
import torch


def look_inside(u):
    """Everything a curious submission tries on a function it is handed."""
    seen = {}
    for name, attempt in {
        "code": lambda: u.__code__,
        "constants": lambda: u.__code__.co_consts,
        "closure": lambda: [c.cell_contents for c in u.__closure__],
        "globals": lambda: sorted(u.__globals__),
        "defaults": lambda: u.__defaults__,
        "attributes": lambda: vars(u),
        "source": lambda: inspect.getsource(u),
        "disassembly": lambda: (lambda out: (dis.dis(u, file=out), out.getvalue())[1])(io.StringIO()),
        "pickle": lambda: pickle.dumps(u),
        "reduce": lambda: u.__reduce_ex__(2),
        "wrapped": lambda: inspect.unwrap(u).__code__,
    }.items():
        try:
            seen[name] = repr(attempt())
        except Exception as err:
            seen[name] = "raised " + type(err).__name__
    seen["value"] = u(torch.ones(1, 2, dtype=torch.float64))
    return seen


def divergence(u, x, t):
    x = x.detach().requires_grad_(True)
    v = u(x, t)
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        total = total + torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i]
    return total.detach()


def probe_product(u, x, t, e):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(u(x, t), x, grad_outputs=e)[0]


def write_into(x, y):
    x.copy_(x + y)  # the result written into the caller's tensor
    return x


def cfg(model, x, t, y, w):
    t2 = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim > 0 else t
    y2 = torch.cat([y, torch.full_like(y, model.num_classes)])
    u_cond, u_uncond = model(torch.cat([x, x]), t2, y2).chunk(2)
    return (1 + w) * u_cond - w * u_uncond


def cfg_twice(model, x, t, y, w):
    out = cfg(model, x, t, y, w)
    model(x, t, y)  # a second forward pass...
    model.calls = 1  # ...hidden from the check's counter
    return out


class AnExceptionWithAVeryLongNameThatGoesOnAndOnAndOnAndOnAndOnAndOnForever(ValueError):
    pass


def loud():
    raise ValueError("\x1b[2J\x1b]0;owned\x07" + "A" * 4000 + "\nthe second line")


def louder():
    raise AnExceptionWithAVeryLongNameThatGoesOnAndOnAndOnAndOnAndOnAndOnForever("B" * 4000)


def plus_one(x):
    return x + 1


def apply_twice(u, x):
    return u(u(x))


kept = []


def keep(u):
    kept.append(u)
    return len(kept)


def call_kept(x):
    return kept[-1](x)


def seeded_anyway():
    with contextlib.suppress(Exception):  # the forbidden call, its error swallowed
        fm.seed_everything(0)
    return 1.0
'''

HIDDEN = '''
import torch

secret = torch.tensor([[1234.5], [-77.25]], dtype=torch.float64)


def hidden(x):
    marker = "HIDDEN-CONSTANT-42"
    return x @ secret + len(marker)


A = torch.tensor([[1.5, 2.0, -0.5], [3.0, -5.25, 0.75], [0.125, 0.25, 0.3]], dtype=torch.float64)
calls = []
linear = lambda x, t: (calls.append(t), x @ A.T)[1]  # noqa: E731
'''


def _hidden() -> dict:
    """The test's objects, defined as the grader defines a test cell's (a module the sandbox cannot import)."""
    ns = {"__name__": "__fmlearn_grading__"}
    exec(compile(HIDDEN, "<test hidden>", "exec"), ns)  # noqa: S102
    return ns


class _Runner:
    """What a :class:`StudentFunction` calls through (the grader's ``_Run`` in a real grading)."""

    def __init__(self, box: Sandbox, deadline: float):
        self.box, self.deadline = box, deadline

    def call(self, name, args, kwargs):
        return self.box.call(name, args, kwargs, self.deadline)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    path = tmp_path_factory.mktemp("protocol") / "submission.py"
    path.write_text(SUBMISSION)
    deadline = time.monotonic() + 120
    with Sandbox(path, Limits(), deadline) as sandbox:
        assert sandbox.exec(0, SUBMISSION, deadline) is None
        yield sandbox, deadline


def test_a_submission_learns_nothing_of_a_hidden_function_it_inspects(box):
    sandbox, deadline = box
    seen = sandbox.call("look_inside", (_hidden()["hidden"],), {}, deadline)
    value = seen.pop("value")
    assert torch.equal(value, torch.tensor([[1234.5 - 77.25 + 18]], dtype=torch.float64))  # it still runs
    for what in ("code", "constants", "closure", "globals", "defaults", "source", "wrapped", "pickle", "reduce"):
        assert seen[what].startswith("raised "), (what, seen[what])
    assert seen["disassembly"] in ("''", "raised TypeError"), seen["disassembly"]  # no bytecode to show
    for what, text in seen.items():
        assert not re.search(r"1234|77\.25|HIDDEN|marker|secret|hidden|co_consts", text), (what, text)


def test_autograd_through_a_hidden_function_gives_the_exact_divergence(box):
    sandbox, deadline = box
    hidden = _hidden()
    x = torch.randn(5, 3, dtype=torch.float64)
    got = sandbox.call("divergence", (hidden["linear"], x, 0.25), {}, deadline)
    trace = hidden["A"].diagonal()
    want = torch.full((5,), float(0 + trace[0] + trace[1] + trace[2]), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert hidden["calls"] == [0.25]  # the grader's function ran, in the grader, once
    e = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(sandbox.call("probe_product", (hidden["linear"], x, 0.5, e), {}, deadline),
                               e @ hidden["A"], rtol=0, atol=1e-12)  # a vector-Jacobian product e^T A


def test_a_function_that_writes_into_its_input_fails_and_the_graders_tensor_is_unchanged(box):
    sandbox, deadline = box
    x, y = torch.zeros(3), torch.ones(3)
    with pytest.raises(ExerciseCheckError, match=r"(?s)write_into changed its input in place \(argument 1, shape "
                       r"\(3,\)\).*argument 1 changed by up to 1 after the call.*hint: `x \+= \.\.\.`"):
        sandbox.call("write_into", (x, y), {}, deadline)
    assert torch.equal(x, torch.zeros(3)) and torch.equal(y, torch.ones(3))


def test_an_argument_the_task_declares_in_place_is_copied_back(box, monkeypatch):
    sandbox, deadline = box
    monkeypatch.setattr(sandbox_module, "IN_PLACE", frozenset({("write_into", 0)}))
    x = torch.zeros(3)
    assert torch.equal(sandbox.call("write_into", (x, torch.ones(3)), {}, deadline), torch.ones(3))
    assert torch.equal(x, torch.ones(3))


def test_a_model_called_twice_cannot_forge_the_call_counter(box):
    sandbox, deadline = box
    runner = _Runner(sandbox, deadline)
    assert check_cfg_forward(StudentFunction(runner, "cfg"))  # one pass, model.num_classes read on the stand-in
    with pytest.raises(ExerciseCheckError, match=r"use one forward pass(?s:.*)got: +2 calls"):
        check_cfg_forward(StudentFunction(runner, "cfg_twice"))


def test_a_test_function_may_call_the_submission_while_the_submission_calls_it(box):
    sandbox, deadline = box
    runner = _Runner(sandbox, deadline)
    plus_one = StudentFunction(runner, "plus_one")
    got = sandbox.call("apply_twice", (lambda x: 10 * plus_one(x),), {"x": torch.zeros(2)}, deadline)
    assert torch.equal(got, torch.full((2,), 110.0))


def test_a_function_kept_from_an_earlier_call_no_longer_answers(box):
    sandbox, deadline = box
    assert sandbox.call("keep", (lambda x: x + 1,), {}, deadline) >= 1
    with pytest.raises(LookupError, match="no longer available"):
        sandbox.call("call_kept", (torch.zeros(1),), {}, deadline)


def test_a_long_exception_arrives_short_and_plain(box):
    sandbox, deadline = box
    with pytest.raises(ValueError) as loud:
        sandbox.call("loud", (), {}, deadline)
    message = str(loud.value)
    assert len(message) <= 200 and "second line" not in message
    assert message.startswith("[2J]0;owned" + "AAA") and not re.search(r"[\x00-\x1f\x7f-\x9f]", message)
    with pytest.raises(ValueError) as louder:
        sandbox.call("louder", (), {}, deadline)
    kind, _, message = str(louder.value).partition(": ")
    assert kind == "AnExceptionWithAVeryLongNameThatGoesOnAndOnAndOnAndOnAndOnAndOnForever"[:60]
    assert message == "B" * 200
    error = sandbox.exec(1, "raise ValueError('C' * 4000)", deadline)
    assert error == "ValueError: " + "C" * 200


def test_a_forbidden_call_fails_even_when_caught(box):
    sandbox, deadline = box
    with pytest.raises(ForbiddenCall, match="this task asks you to write a seed yourself"):
        sandbox.call("seeded_anyway", (), {}, deadline, ("fmlearn.seed_everything",), "a seed")
    assert sandbox.call("seeded_anyway", (), {}, deadline) == 1.0  # allowed again once the call is over


def test_a_forbidden_call_costs_the_task_and_is_reported(tmp_path, monkeypatch):
    """With a stub table that forbids fmlearn.seed_everything in ex01's Gaussian-marginal task, a right answer
    that calls it (and swallows the error) earns nothing there, and the report names the call."""
    table = {(EX01, "gaussian_marginal_check"): ("fmlearn.seed_everything",)}
    grading = sys.modules["fmlearn.grading.grade"]  # the module (fmlearn.grading.grade is also its function)
    monkeypatch.setattr(grading, "forbidden_for", lambda exercise, grade_id: table.get((exercise, grade_id), ()))
    monkeypatch.setattr(grading, "task_for", lambda exercise, grade_id: "the marginal")
    answer = "import contextlib\nwith contextlib.suppress(Exception):\n    fm.seed_everything(0)\n" \
             "return (1 - t) * m0 + t * m1, (1 - t) ** 2 * S0 + t ** 2 * S1"
    text = _fill(_blank(EX01), "gaussian_marginal", [answer])
    text = _fill(text, "conditional_path", ["t = t[:, None]\nreturn t * x1 + (1 - t) * x0", "return x1 - x0"])
    result = grade_submission(_save(text, tmp_path / f"{EX01}_mia.ipynb"))
    scores = {s.grade_id: s for s in result.tasks}
    assert scores["conditional_path_check"].points == 2  # the same process, the other tasks graded as usual
    assert scores["gaussian_marginal_check"].points == 0
    assert "this task asks you to write the marginal yourself" in scores["gaussian_marginal_check"].error
    assert "gaussian_marginal_check: called fmlearn's seed_everything, which the task asks you to write " \
           "yourself" in result.incidents, result.incidents


def test_the_grader_keeps_its_functions_and_sends_its_data():
    """What travels by value (data, models, distributions) and what stays behind as a reference."""
    import functools
    import pickle

    import fmlearn as fm
    from fmlearn.exercises.checks_guidance import _ToyConditional
    from fmlearn.grading._channel import Registry, dumps

    hidden = _hidden()
    oracle = fm.MixtureOracle(fm.GaussianMixture.symmetric_2d(), fm.AffineGaussianPath("condot"))
    data = [torch.ones(2), 1.5, "text", fm.MLP(2, hidden=4, depth=1), oracle, torch.Generator(), torch.float64]
    registry = Registry()
    pickle.loads(dumps(data, registry))  # no reference: plain pickle reads it
    assert not registry.objects
    kept = [hidden["hidden"], hidden["linear"], oracle.velocity, functools.partial(torch.add, other=1),
            _ToyConditional()]
    payload = dumps(kept, registry)
    assert list(registry.objects.values()) == kept
    assert b"HIDDEN" not in payload and b"co_consts" not in payload
