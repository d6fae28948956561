"""The package's rough edges (issue 9, item 12): star import, dtypes, velocity shapes, unreadable checkpoints,
Ctrl-C during training, resuming with other settings, what train's seed does, the SDE sampler's hint at the
noise end, empty sample sets, and bools passed as numbers. Each test failed before its fix."""

import copy
import os
import re
import signal
import types

import numpy as np
import pytest
import torch
from torch import nn

import fmlearn as fm

TARGET = fm.Gaussian(mean=[3.0, -2.0], std=0.5)
NEVER = 10**9


def small_model(seed=0, hidden=32):
    torch.manual_seed(seed)
    return fm.MLP(2, hidden=hidden, depth=2)


def quick_train(model, steps, **kw):
    """train on CFMObjective(condot, TARGET, label_dropout=... if given) with the loop's arguments in kw."""
    objective = {"label_dropout": kw.pop("label_dropout")} if "label_dropout" in kw else {}
    kw.setdefault("batch_size", 64)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return fm.train(model, fm.CFMObjective(fm.AffineGaussianPath("condot"), TARGET, **objective), steps=steps, **kw)


def same_weights(a: nn.Module, b: nn.Module):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)


# 1. from fmlearn import *

def test_star_import_gives_the_public_objects_and_no_modules():
    """A star import into a fresh namespace brings every public object of ``fm.X`` (the new metrics included)
    and no submodule, so a notebook's own ``paths``, ``models`` or ``training`` survive it."""
    ns = {}
    exec("from fmlearn import *", ns)
    ns.pop("__builtins__")
    assert [k for k, v in ns.items() if isinstance(v, types.ModuleType)] == []
    public = {k for k, v in vars(fm).items() if not k.startswith("_") and not isinstance(v, types.ModuleType)}
    assert set(ns) == public
    assert {"paths", "config", "models", "metrics", "training"}.isdisjoint(ns)
    assert {"energy_distance_mode_matched", "energy_distance_mode_matched_floor", "fraction_near_modes_exact",
            "train", "sample", "MLP"} <= set(ns)
    assert len(fm.__all__) == len(set(fm.__all__))


# 2. dtypes: the model runs in its parameters' dtype, results keep the input's

def test_sample_float32_model_float64_input_vs_hand_midpoint():
    """A float32 model and a float64 x0: the solution is float64 and equals midpoint steps done by hand with the
    state in float64 and each velocity from the float32 network, bit for bit."""
    model = small_model()
    x0 = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sol = fm.sample(model, x0, steps=8, method="midpoint")
    assert sol.x.dtype == torch.float64

    def u(y, s):
        return model(y.float(), s).double()

    x, grid = x0.clone(), fm.time_grid(8).tolist()
    with torch.no_grad():
        for t, t_next in zip(grid[:-1], grid[1:]):
            h = t_next - t
            x = x + h * u(x + 0.5 * h * u(x, t), t + 0.5 * h)
    torch.testing.assert_close(sol.x, x, rtol=0, atol=0)
    assert fm.sample(model, x0, method="dopri5").x.dtype == torch.float64


def test_sample_float64_model_float32_input():
    """The reverse: a float64 model and a float32 x0 give a float32 solution, equal to the all-float64 one
    to float32 rounding."""
    model = small_model().double()
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    got = fm.sample(model, x0, steps=8).x
    want = fm.sample(model, x0.double(), steps=8).x
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_log_likelihood_mixed_dtypes(divergence):
    """log_likelihood of float64 points under a float32 model is float64 and agrees with a float64 copy of the
    model to float32 precision; float32 points under a float64 model give float32."""
    model = small_model()
    x = TARGET.sample(32, generator=torch.Generator().manual_seed(2)).double()
    kw = dict(steps=6, divergence=divergence, generator=None)
    model64 = copy.deepcopy(model).double()
    ll = fm.log_likelihood(model, x, **kw, probes=3) if divergence == "hutchinson" else \
        fm.log_likelihood(model, x, **kw)
    assert ll.dtype == torch.float64
    if divergence == "exact":
        torch.testing.assert_close(ll, fm.log_likelihood(model64, x, **kw), rtol=1e-4, atol=1e-4)
    ll32 = fm.log_likelihood(model64, x.float(), steps=6, divergence=divergence)
    assert ll32.dtype == torch.float32 and torch.isfinite(ll32).all()


def test_divergence_mixed_dtypes():
    """divergence_exact and divergence_hutchinson of a float32 model at float64 points: float64 results, v equal
    to the network's float32 output, and div equal to the float64 copy's divergence to float32 precision."""
    model = small_model()
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    v, div = fm.divergence_exact(model, x, 0.3)
    assert v.dtype == div.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(v, model(x.float(), 0.3).double(), rtol=0, atol=0)
    _, want = fm.divergence_exact(copy.deepcopy(model).double(), x, 0.3)
    torch.testing.assert_close(div, want, rtol=1e-4, atol=1e-4)
    vh, dh = fm.divergence_hutchinson(model, x, 0.3, probes=2, generator=torch.Generator().manual_seed(4))
    assert vh.dtype == dh.dtype == torch.float64


def test_sde_sample_float32_model_float64_input():
    model = small_model()
    x0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sol = fm.sde_sample(model, fm.AffineGaussianPath("condot"), x0, steps=5, g=0.5,
                        generator=torch.Generator().manual_seed(6))
    assert sol.x.dtype == torch.float64 and torch.isfinite(sol.x).all()


# 3. a velocity of the wrong shape

@pytest.mark.parametrize("velocity, shape", [
    (lambda x, t: x[:, :1], (8, 1)),       # broadcasts over the columns
    (lambda x, t: x.sum(0), (2,)),         # broadcasts over the batch
    (lambda x, t: x[None], (1, 8, 2)),     # grows the state by a dimension
])
@pytest.mark.parametrize("method", ["euler", "dopri5"])
def test_ode_solvers_refuse_a_velocity_of_another_shape(velocity, shape, method):
    x0 = torch.randn(8, 2)
    want = re.escape(f"velocity(x, t) returned shape {shape}, but it must return x's shape (8, 2)")
    with pytest.raises(ValueError, match=want):
        fm.odeint(velocity, x0, method=method, steps=4 if method == "euler" else None)


def test_ode_solver_refuses_a_velocity_that_is_no_tensor():
    with pytest.raises(TypeError, match=r"velocity\(x, t\) must return a tensor of x's shape \(8, 2\), got float"):
        fm.odeint(lambda x, t: 1.0, torch.zeros(8, 2), steps=2)


# 4. unreadable or foreign checkpoints

def _ck_error(path, cause):
    return "(?s)" + re.escape(f"checkpoint {path}") + ".*" + cause


@pytest.fixture
def saved_run(tmp_path):
    ck = tmp_path / "run.pt"
    quick_train(small_model(), 5, checkpoint=ck)
    return ck


def _refused_both_ways(path, cause, model=None):
    """load_checkpoint and a resuming train both raise one ValueError naming the file and the cause."""
    with pytest.raises(ValueError, match=_ck_error(path, cause)):
        fm.load_checkpoint(path, model or small_model())
    with pytest.raises(ValueError, match=_ck_error(path, cause)):
        quick_train(model or small_model(), 5, checkpoint=path)


def test_truncated_checkpoint(saved_run, tmp_path):
    data = saved_run.read_bytes()
    for n, cause in ((len(data) // 2, "truncated or corrupted"), (0, "empty")):
        bad = tmp_path / f"cut{n}.pt"
        bad.write_bytes(data[:n])
        _refused_both_ways(bad, cause)


def test_random_bytes_and_text_are_not_a_checkpoint(tmp_path):
    for name, data in (("noise.pt", np.random.default_rng(0).bytes(1000)), ("notes.pt", b"hello world\n")):
        bad = tmp_path / name
        bad.write_bytes(data)
        _refused_both_ways(bad, "not a torch checkpoint")


def test_a_plain_dict_or_state_dict_is_not_an_fmlearn_checkpoint(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, plain)
    _refused_both_ways(plain, re.escape("not written by fmlearn.train or save_checkpoint: it lacks the keys "
                                        "['model', 'step', 'losses']; it holds the keys ['epoch', 'weights']"))
    bare = tmp_path / "bare.pt"
    torch.save(small_model().state_dict(), bare)
    _refused_both_ways(bare, "bare model state_dict")
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    _refused_both_ways(listed, "holds a list, not the dict")


def test_another_models_checkpoint(saved_run):
    """A checkpoint of a 32-wide, 2-deep MLP loaded into a 16-wide or a 3-deep one: ValueError naming the file, the
    model's class and the tensors that differ; the model's weights are left alone (even those that would fit)."""
    narrow, deep = small_model(hidden=16), fm.MLP(2, hidden=32, depth=3)
    before = copy.deepcopy(narrow)
    _refused_both_ways(saved_run, re.escape("holds the weights of another model than the MLP given: other shapes: "
                                            "net.0.weight (32, 35) saved vs (16, 35), net.0.bias (32,) saved vs (16,)"),
                       narrow)
    same_weights(narrow, before)
    _refused_both_ways(saved_run, re.escape("holds the weights of another model than the MLP given: missing keys "
                                            "['net.6.weight', 'net.6.bias']"), deep)


def test_save_checkpoint_without_training_state_cannot_be_resumed(tmp_path):
    ck = tmp_path / "weights.pt"
    fm.save_checkpoint(ck, small_model(), step=3, losses=[1.0, 0.5, 0.2])
    assert fm.load_checkpoint(ck, small_model())["step"] == 3
    with pytest.raises(ValueError, match=_ck_error(ck, re.escape("cannot be resumed by train: it lacks the keys "
                                                                 "['optimizer', 'generator']"))):
        quick_train(small_model(), 10, checkpoint=ck)


# 5. Ctrl-C during train

class InterruptAt(nn.Module):
    """small_model() whose k-th call raises KeyboardInterrupt (as a Ctrl-C in the forward pass would)."""

    def __init__(self, k):
        super().__init__()
        self.inner, self.k, self.calls = small_model(), k, 0

    def forward(self, x, t):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return self.inner(x, t)


class SigintAt(InterruptAt):
    """small_model() that sends its own process SIGINT (a real Ctrl-C) during its k-th call."""

    def forward(self, x, t):
        self.calls += 1
        if self.calls == self.k:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner(x, t)


def _resumes_exactly(ck, steps, **kw):
    resumed, full = InterruptAt(NEVER), InterruptAt(NEVER)
    r = quick_train(resumed, steps, checkpoint=ck, **kw)
    f = quick_train(full, steps, **kw)
    np.testing.assert_array_equal(r.losses, f.losses)
    same_weights(resumed, full)


def test_interrupt_saves_a_checkpoint_says_where_and_reraises(tmp_path, capsys):
    """Interrupted inside step 37 (36 done), no periodic saves: the checkpoint holds 36 steps and their 36 losses,
    the message names the file, the step and how to resume, and resuming gives the uninterrupted run exactly
    (the interrupted step's batch draws are undone)."""
    ck = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        quick_train(InterruptAt(37), 100, checkpoint=ck, log_every=10, ema=0.9)
    err = capsys.readouterr().err
    assert f"interrupted after 36 of 100 steps: saved them to the checkpoint {ck}" in err and "resume" in err
    state = fm.load_checkpoint(ck, InterruptAt(NEVER))
    assert state["step"] == 36 and state["losses"].shape == (36,)
    _resumes_exactly(ck, 100, log_every=10, ema=0.9)


@pytest.mark.skipif(os.name == "nt", reason="os.kill(pid, SIGINT) is POSIX")
def test_a_real_ctrl_c_finishes_the_step_then_saves(tmp_path, capsys):
    """SIGINT during step 37's forward pass: the step finishes, then the run stops with 37 steps saved and
    KeyboardInterrupt re-raised; the SIGINT handler is the default again; resuming is exact."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner replaced the default SIGINT handler")
    ck = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        quick_train(SigintAt(37), 100, checkpoint=ck, log_every=10)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert "interrupted after 37 of 100 steps" in capsys.readouterr().err
    assert fm.load_checkpoint(ck, InterruptAt(NEVER))["step"] == 37
    _resumes_exactly(ck, 100, log_every=10)


def test_interrupt_without_a_checkpoint_says_nothing_was_saved(capsys):
    with pytest.raises(KeyboardInterrupt):
        quick_train(InterruptAt(5), 20)
    err = capsys.readouterr().err
    assert "interrupted after 4 of 20 steps; nothing was saved" in err and "checkpoint=" in err


# 6. resuming with other settings

@pytest.mark.parametrize("change, named", [
    (dict(batch_size=32), ["batch_size: saved 64, given 32"]),
    (dict(lr=1e-2), ["lr: saved 0.001, given 0.01"]),
    (dict(seed=1), ["seed: saved 0, given 1"]),
    (dict(ema=None), ["ema: saved 0.9, given None"]),
    (dict(ema=0.99), ["ema: saved 0.9, given 0.99"]),
    (dict(batch_size=32, lr=1e-2, seed=1, ema=None), ["batch_size: saved 64, given 32", "lr: saved 0.001, given 0.01",
                                                     "seed: saved 0, given 1", "ema: saved 0.9, given None"]),
])
def test_resume_with_other_settings_is_refused(tmp_path, change, named):
    """A ValueError names the file and each setting that differs, saved vs given, and the model is left alone;
    the same settings resume."""
    ck = tmp_path / "run.pt"
    settings = dict(ema=0.9, cosine_decay=False)
    quick_train(small_model(), 20, checkpoint=ck, **settings)
    model = small_model(seed=5)
    before = copy.deepcopy(model)
    with pytest.raises(ValueError, match=re.escape(f"checkpoint {ck} holds a run with other settings")) as info:
        quick_train(model, 40, checkpoint=ck, **{**settings, **change})
    for text in named:
        assert text in str(info.value)
    same_weights(model, before)
    assert quick_train(small_model(), 40, checkpoint=ck, **settings).steps_run == 20


def test_resume_of_a_checkpoint_without_settings_checks_the_ema(tmp_path):
    """A checkpoint saved before settings were stored still refuses ema=None after an EMA run (and the reverse)."""
    for ema, resume_ema in ((0.9, None), (None, 0.9)):
        ck = tmp_path / f"old{ema}.pt"
        quick_train(small_model(), 10, checkpoint=ck, ema=ema, cosine_decay=False)
        state = torch.load(ck, weights_only=True)
        state.pop("settings", None)  # (a checkpoint from before settings were saved has none)
        torch.save(state, ck)
        with pytest.raises(ValueError, match=r"ema: saved (an EMA|None), given (None|0.9)"):
            quick_train(small_model(), 20, checkpoint=ck, ema=resume_ema, cosine_decay=False)
        assert quick_train(small_model(), 20, checkpoint=ck, ema=ema, cosine_decay=False).steps_run == 10


# 7. train's seed and the model's initial weights

def test_train_seed_does_not_set_the_initial_weights_and_says_so():
    """Two models built from different torch seeds and trained with the same seed= (same batches) end apart:
    the seed does not re-initialise the model, and the docstring says so and how to seed the weights."""
    a, b = small_model(seed=1), small_model(seed=2)
    quick_train(a, 5, seed=0)
    quick_train(b, 5, seed=0)
    assert not torch.equal(a.state_dict()["net.0.weight"], b.state_dict()["net.0.weight"])
    doc = " ".join(fm.train.__doc__.split())
    assert "does not set the model's initial weights" in doc and "seed_everything" in doc


# 8. sde_sample's hint at the noise end of a polynomial path

def test_sde_sample_with_a_polynomial_path_names_the_noise_end():
    """Polynomial(2) stands still at t = 0, so with g > 0 the first drift has no score: the message names t = 0
    and the two ways out (start later, or a g that vanishes at t = 0), not t < 1; both ways out work."""
    mix = fm.GaussianMixture([[2.0, 0.0], [-2.0, 0.0]], 0.5)
    path = fm.AffineGaussianPath(fm.Polynomial(2.0))
    oracle = fm.MixtureOracle(mix, path)
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(64, 2, generator=gen)
    with pytest.raises(ValueError) as info:
        fm.sde_sample(oracle, path, x0, steps=10, g=0.5, generator=gen)
    msg = str(info.value)
    assert msg.startswith("g: with g_t = 0.5 > 0 at t = 0.0") and "stands still at t = 0" in msg
    assert "t0 > 0" in msg and "g=lambda t: c * t" in msg and "t < 1" not in msg
    later = fm.sde_sample(oracle, path, oracle.marginal(0.1).sample(64, generator=gen),
                          times=fm.time_grid(10, 0.1, 1.0), g=0.5, generator=gen)
    vanishing = fm.sde_sample(oracle, path, x0, steps=10, g=lambda t: 0.5 * t, generator=gen)
    assert torch.isfinite(later.x).all() and torch.isfinite(vanishing.x).all()
    with pytest.raises(ValueError, match=r"at t = 0\.0 .*vanishes at t = 0 .*use t > 0\)$"):
        path.score_from_velocity(x0, x0, 0.0)


# 9. empty sample sets

MIX = fm.GaussianMixture.symmetric_2d()
EMPTY, SOME = torch.zeros(0, 2), torch.ones(3, 2)


@pytest.mark.parametrize("call, name", [
    (lambda: fm.energy_distance(EMPTY, SOME), "x"),
    (lambda: fm.energy_distance(SOME, EMPTY), "y"),
    (lambda: fm.mode_fractions(MIX, EMPTY), "x"),
    (lambda: fm.fraction_near_modes(MIX, EMPTY), "x"),
])
def test_empty_samples_are_refused(call, name):
    """Empty input used to give NaN; now a ValueError names the argument and says it is empty."""
    with pytest.raises(ValueError, match=rf"^{name} is empty: it must hold at least one point, .*got \(0, 2\)$"):
        call()


# 10. bools are not numbers

@pytest.mark.parametrize("name", ["lr", "seed", "ema", "label_dropout", "steps", "batch_size", "log_every",
                                  "checkpoint_every"])
def test_train_refuses_bools_for_numbers(name):
    """lr=True used to train at lr = 1 (and seed=True with seed 1): every numeric setting refuses a bool with a
    TypeError naming it."""
    kw = {"steps": 2, name: True}
    with pytest.raises(TypeError, match=rf"^{name} must be .*bool True"):
        quick_train(small_model(), kw.pop("steps"), **kw)
