"""The shared input checks of fmlearn._checks."""

import pytest
import torch

from fmlearn._checks import as_tensor, check_time, model_context


def test_as_tensor_keeps_float64_precision_of_python_floats():
    """A list of Python floats converted to float64 equals float64 arithmetic exactly (no float32 round trip)."""
    out = as_tensor("times", [0.3, 0.1 + 0.2], dtype=torch.float64)
    assert out.tolist() == [0.3, 0.1 + 0.2]


@pytest.mark.parametrize("value, exc", [("abc", TypeError), ([True, False], TypeError), (object(), TypeError)])
def test_as_tensor_refuses_non_numbers(value, exc):
    """Strings, booleans and arbitrary objects are refused with the argument's name."""
    with pytest.raises(exc, match="x must"):
        as_tensor("x", value)


def test_check_time_expands_scalar_and_skips_values_when_asked():
    """A 0-d tensor expands to (batch,); check_values=False lets an out-of-range tensor through unchecked."""
    x = torch.zeros(3, 2)
    assert check_time(torch.tensor(0.5), x).tolist() == [0.5] * 3
    assert check_time(torch.tensor([2.0, 0.0, 0.0]), x, check_values=False).tolist() == [2.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        check_time(torch.tensor([2.0, 0.0, 0.0]), x)


@pytest.mark.parametrize("value, positive, exc, match", [
    ("1", False, TypeError, "x must be a real number"), (True, False, TypeError, "x must be a real number"),
    (float("nan"), False, ValueError, "x must be a finite number"), (0.0, True, ValueError, "x must be a positive"),
])
def test_check_real_refuses(value, positive, exc, match):
    """check_real names the argument and says what was expected."""
    from fmlearn._checks import check_real
    with pytest.raises(exc, match=match):
        check_real("x", value, positive=positive)


class _Recorder(torch.nn.Module):
    """Records the dtype of what it is called on; returns float64 logits for tokens, its input for floats."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.seen = []

    def forward(self, x, t):
        self.seen.append((x.dtype, self.training, torch.is_grad_enabled()))
        return x + self.w if x.is_floating_point() else torch.zeros(*x.shape, 3, dtype=torch.float64) + self.w


def test_model_context_casts_only_floating_inputs():
    """Integer tokens used to be cast to the model's float dtype (so token code bypassed the wrapper); now they
    pass as they are and the logits come back in the model's dtype, while a float32 state still drives a float64
    model and gets float32 back."""
    model = _Recorder().train()
    tokens = torch.tensor([[0, 2], [1, 1]])
    with model_context(model, tokens) as (net, x):
        logits = net(x, 0.5)
        state = net(torch.ones(2, 2), 0.5)
    assert model.seen == [(torch.long, False, False), (torch.float64, False, False)] and model.training
    assert logits.dtype == torch.float64 and logits.shape == (2, 2, 3)
    assert state.dtype == torch.float32
