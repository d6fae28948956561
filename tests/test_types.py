"""Types (issue 11, item 5): time is always a float tensor; integer tokens are accepted where tokens are meant
and refused with a clear error where floats are meant, never cast silently."""

import pytest
import torch

import fmlearn as fm
from fmlearn._checks import check_time

TOKENS = torch.tensor([[0, 3], [2, 1]])


def test_time_of_integer_tokens_is_float():
    """check_time(0.7, tokens) used to return zeros (t cast to the tokens' int64); now 0.7 in the default float."""
    t = check_time(0.7, TOKENS)
    assert t.dtype == torch.get_default_dtype() and torch.allclose(t, torch.full((2,), 0.7))
    t = check_time(torch.tensor([0.25, 0.5]), TOKENS, check_values=False)
    assert t.dtype == torch.get_default_dtype() and t.tolist() == [0.25, 0.5]


def test_time_keeps_the_state_dtype():
    assert check_time(0.5, torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("check_values", [True, False])
def test_integer_time_tensor_is_refused(check_values):
    with pytest.raises(TypeError, match=r"t must be a f.* got .*int64"):
        check_time(torch.tensor([0, 1]), torch.zeros(2, 2), check_values=check_values)


def test_tokens_where_floats_are_meant_are_refused():
    """A path, a sampler and the metrics refuse integer tensors, naming the argument and pointing at
    fmlearn.discrete, instead of treating token ids as coordinates."""
    path = fm.AffineGaussianPath("condot")
    with pytest.raises(TypeError, match="x0 must be a floating tensor, got integers .*fmlearn.discrete"):
        path.sample(TOKENS, torch.zeros(2, 2), 0.5)
    with pytest.raises(TypeError, match="x0 must be a floating tensor"):
        fm.sde_sample(lambda x, t: x, path, TOKENS, steps=2)
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        fm.energy_distance(TOKENS, torch.zeros(2, 2))


def test_tokens_where_tokens_are_meant():
    """The token space steps integer states and keeps them integers."""
    space = fm.discrete.Categorical(4, generator=torch.Generator().manual_seed(0))
    rates = torch.zeros(2, 2, 4)
    x = fm.odeint(lambda x, t: rates, TOKENS, steps=3, space=space).x
    assert x.dtype == torch.long and torch.equal(x, TOKENS)


def test_python_integers_are_numbers():
    """Lists and literals of Python ints stay welcome where floats are meant (they are numbers, not tokens)."""
    assert fm.Gaussian([0, 0], 1).mean.dtype == torch.float32
    assert fm.time_grid(2).dtype == torch.float64 and fm.check_grid([0, 1]).tolist() == [0.0, 1.0]
