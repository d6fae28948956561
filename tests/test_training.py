import math
import os

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logit
from torch import nn

import fmlearn
from fmlearn import (MLP, AffineGaussianPath, Gaussian, NonFiniteLossError, TrainResult, cfm_loss, load_checkpoint,
                     logit_normal_time, sample, save_checkpoint, train)
from fmlearn import training as training_mod

TARGET = Gaussian(mean=[3.0, -2.0], std=0.5)


def small_model(seed=0, hidden=32):
    torch.manual_seed(seed)
    return MLP(2, hidden=hidden, depth=2)


OBJECTIVE_ARGS = ("source", "coupling", "time_sampler", "conditional", "label_dropout")


def quick_train(model, steps, **kw):
    """train on CFMObjective(path, target, <its arguments in kw>) with the loop's arguments in kw."""
    objective = {k: kw.pop(k) for k in OBJECTIVE_ARGS if k in kw}
    kw.setdefault("batch_size", 64)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    path, target = kw.pop("path", AffineGaussianPath("condot")), kw.pop("target", TARGET)
    return train(model, fmlearn.CFMObjective(path, target, **objective), steps=steps, **kw)


def _vp(t):
    s = 1 - t
    big_t = 0.1 * s + 0.5 * (20.0 - 0.1) * s**2
    a = torch.exp(-big_t / 2)
    da = 0.5 * (0.1 + (20.0 - 0.1) * s) * a
    b = torch.sqrt(1 - a**2)
    return a, b, da, -a * da / b


# (alpha, beta, d_alpha, d_beta) written out by hand from each schedule's definition
HAND = {
    "condot": lambda t: (t, 1 - t, torch.ones_like(t), -torch.ones_like(t)),
    "sqrt": lambda t: (t, torch.sqrt(1 - t), torch.ones_like(t), -0.5 / torch.sqrt(1 - t)),
    "cosine": lambda t: (torch.sin(math.pi * t / 2), torch.cos(math.pi * t / 2),
                         math.pi / 2 * torch.cos(math.pi * t / 2), -math.pi / 2 * torch.sin(math.pi * t / 2)),
    "vp": _vp,
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_cfm_loss_vs_manual(name):
    """cfm_loss vs mean_i ||model(x_t, t) - (d_alpha x1 + d_beta x0)||^2 with the schedule written out by hand."""
    model = small_model()
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(50, 2, generator=g), 3 + torch.randn(50, 2, generator=g)
    t = 0.01 + 0.98 * torch.rand(50, generator=g)
    a, b, da, db = (v[:, None] for v in HAND[name](t))
    xt = a * x1 + b * x0
    want = ((model(xt, t) - (da * x1 + db * x0)) ** 2).sum(dim=1).mean()
    got = cfm_loss(model, AffineGaussianPath(name), x0, x1, t)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_cfm_loss_gradient_vs_manual():
    """The gradient of cfm_loss w.r.t. the parameters equals the gradient of the hand-written loss."""
    g = torch.Generator().manual_seed(1)
    x0, x1, t = torch.randn(20, 2, generator=g), torch.randn(20, 2, generator=g), torch.rand(20, generator=g)
    m1, m2 = small_model(), small_model()
    cfm_loss(m1, AffineGaussianPath("condot"), x0, x1, t).backward()
    xt = t[:, None] * x1 + (1 - t[:, None]) * x0
    ((m2(xt, t) - (x1 - x0)) ** 2).sum(1).mean().backward()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad)


def test_train_learns_gaussian():
    """Training on N([3, -2], 0.5^2) lowers the loss and brings the sampled mean much closer to [3, -2]
    than the untrained model's samples (same source points)."""
    model = small_model(hidden=64)
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    before = (sample(model, x0, steps=20, method="midpoint").x.mean(0) - TARGET.mean).norm()
    res = quick_train(model, 300, batch_size=256, lr=3e-3)
    after_x = sample(model, x0, steps=20, method="midpoint").x
    after = (after_x.mean(0) - TARGET.mean).norm()
    assert isinstance(res, TrainResult) and res.losses.shape == (300,) and res.steps_run == 300
    assert res.losses[-50:].mean() < 0.5 * res.losses[:50].mean()
    assert after < 0.2 < before, (before, after)
    assert after < 0.1 * before
    # and the spread approaches the target's std 0.5 (the untrained flow keeps roughly the source's 1)
    assert torch.all((after_x.std(0) - 0.5).abs() < 0.15)


def test_same_seed_same_history():
    """Two runs with the same seed and init give identical loss histories; another seed differs."""
    a = quick_train(small_model(), 60, seed=3).losses
    b = quick_train(small_model(), 60, seed=3).losses
    c = quick_train(small_model(), 60, seed=4).losses
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_history_independent_of_log_every():
    """log_every only changes when losses are read back: the history is the same for 7, 25 and 100."""
    runs = [quick_train(small_model(), 50, log_every=k).losses for k in (7, 25, 100)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])


class NaNAfter(nn.Module):
    """Wraps a model; from call number ``k`` on (1-based) its output is NaN."""

    def __init__(self, inner, k):
        super().__init__()
        self.inner, self.k, self.calls = inner, k, 0

    def forward(self, x, t, **cond):
        self.calls += 1
        out = self.inner(x, t, **cond)
        return out * float("nan") if self.calls >= self.k else out


@pytest.mark.parametrize("k, steps, log_every", [(1, 10, 100), (37, 80, 10), (150, 300, 100), (300, 300, 7)])
def test_nan_loss_names_the_step(k, steps, log_every):
    """A model whose k-th call returns NaN makes train raise NonFiniteLossError naming step k (the wrapper's count);
    the loop stops at the first loss read-back after it, i.e. after min(steps, ceil(k / log_every) * log_every) calls."""
    model = NaNAfter(small_model(), k)
    with pytest.raises(NonFiniteLossError, match=rf"at step {k} of {steps}\b"):
        quick_train(model, steps, log_every=log_every)
    assert model.calls == min(steps, math.ceil(k / log_every) * log_every)


def test_nan_loss_after_resume_names_global_step(tmp_path):
    """After resuming from a checkpoint at step 50, a NaN on the 30th new call is reported as step 80."""
    ck = tmp_path / "ck.pt"
    quick_train(NaNAfter(small_model(), 10**9), 50, checkpoint=ck, cosine_decay=False)
    with pytest.raises(NonFiniteLossError, match=r"at step 80 of 120\b"):
        quick_train(NaNAfter(small_model(), 30), 120, checkpoint=ck, log_every=16, cosine_decay=False)


def test_nonfinite_error_is_floating_point_error():
    """NonFiniteLossError can be caught as FloatingPointError (documented base class)."""
    assert issubclass(NonFiniteLossError, FloatingPointError)


def test_checkpoint_resume_matches_history(tmp_path):
    """200 steps with a checkpoint, then steps=400 on the same file resumes: 400 losses, the first 200 equal
    to the first run's; only the checkpoint file is left in the folder (atomic write, no .tmp)."""
    ck = tmp_path / "run.pt"
    first = quick_train(small_model(), 200, checkpoint=ck, cosine_decay=False)
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]
    resumed = quick_train(small_model(seed=99), 400, checkpoint=ck, cosine_decay=False)  # weights from the checkpoint
    assert resumed.losses.shape == (400,) and resumed.steps_run == 200
    np.testing.assert_array_equal(resumed.losses[:200], first.losses)
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]
    assert load_checkpoint(ck, small_model())["step"] == 400


def test_checkpoint_resume_is_exact_without_decay(tmp_path):
    """With a constant learning rate, 200 + 200 resumed steps equal an uninterrupted 400-step run, loss for loss,
    and the final weights agree."""
    ck = tmp_path / "run.pt"
    quick_train(small_model(), 200, checkpoint=ck, cosine_decay=False)
    m_resumed = small_model()
    resumed = quick_train(m_resumed, 400, checkpoint=ck, cosine_decay=False)
    m_full = small_model()
    full = quick_train(m_full, 400, cosine_decay=False)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    for (k, a), b in zip(m_resumed.state_dict().items(), m_full.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


class FailAfter(torch.nn.Module):
    """Wraps a model; its k-th call raises, like a run interrupted by the user."""

    def __init__(self, inner, k):
        super().__init__()
        self.inner, self.k, self.calls = inner, k, 0

    def forward(self, x, t, **cond):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt("interrupted")
        return self.inner(x, t, **cond)


def test_interrupted_run_resumes_exactly_with_default_cosine_decay(tmp_path):
    """Default settings (cosine decay), saves every 100 steps, interrupted at call 250: the interrupt saves the
    249 steps done, and resuming to 400 gives the uninterrupted 400-step run, loss for loss and weight for weight."""
    ck = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        quick_train(FailAfter(small_model(), 250), 400, checkpoint=ck, checkpoint_every=100, log_every=50)
    never = 10**9  # same wrapper (same state_dict keys), never interrupting
    assert load_checkpoint(ck, FailAfter(small_model(), never))["step"] == 249
    m_resumed, m_full = FailAfter(small_model(), never), FailAfter(small_model(), never)
    resumed = quick_train(m_resumed, 400, checkpoint=ck, log_every=50)
    full = quick_train(m_full, 400, log_every=50)
    assert resumed.steps_run == 151
    np.testing.assert_array_equal(resumed.losses, full.losses)
    for (k, a), b in zip(m_resumed.state_dict().items(), m_full.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_resume_with_another_plan_under_cosine_decay_is_refused(tmp_path):
    """A cosine-decayed 200-step run cannot silently be stretched to 400 steps: ValueError naming both plans."""
    ck = tmp_path / "run.pt"
    quick_train(small_model(), 200, checkpoint=ck)
    with pytest.raises(ValueError, match=r"steps=200.*cosine_decay=False"):
        quick_train(small_model(), 400, checkpoint=ck)


def test_checkpoint_with_more_steps_than_asked(tmp_path):
    """A checkpoint holding 30 steps cannot be resumed with steps=20: ValueError naming both numbers."""
    ck = tmp_path / "ck.pt"
    quick_train(small_model(), 30, checkpoint=ck)
    with pytest.raises(ValueError, match="30 steps.*steps=20"):
        quick_train(small_model(), 20, checkpoint=ck)


def test_checkpoint_same_steps_is_a_no_op(tmp_path):
    """Resuming with steps equal to the saved step runs nothing and returns the saved history unchanged."""
    ck = tmp_path / "ck.pt"
    first = quick_train(small_model(), 30, checkpoint=ck)
    mtime = ck.stat().st_mtime_ns
    again = quick_train(small_model(), 30, checkpoint=ck)
    np.testing.assert_array_equal(again.losses, first.losses)
    assert again.steps_run == 0 and ck.stat().st_mtime_ns == mtime


def test_save_load_round_trip(tmp_path):
    """load_checkpoint restores a state_dict equal to the saved one, plus step, losses and optimizer state."""
    src = small_model(seed=1)
    opt = torch.optim.Adam(src.parameters(), lr=1e-2)
    src(torch.randn(4, 2), 0.5).sum().backward()
    opt.step()
    ck = tmp_path / "sub" / "ck.pt"  # the folder is created
    save_checkpoint(ck, src, opt, step=7, losses=[1.0, 0.5, 0.25])
    dst = small_model(seed=2)
    opt2 = torch.optim.Adam(dst.parameters(), lr=1.0)
    state = load_checkpoint(ck, dst, opt2)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    assert state["step"] == 7
    np.testing.assert_array_equal(state["losses"].numpy(), [1.0, 0.5, 0.25])
    assert opt2.param_groups[0]["lr"] == 1e-2
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert os.listdir(ck.parent) == ["ck.pt"]


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    """If writing fails midway, the previous checkpoint is intact and no temporary file is left behind."""
    ck = tmp_path / "ck.pt"
    model = small_model(seed=1)
    save_checkpoint(ck, model, step=1, losses=[1.0])
    before = ck.read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(training_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(ck, small_model(seed=2), step=2, losses=[1.0, 0.5])
    assert os.listdir(tmp_path) == ["ck.pt"]
    assert ck.read_bytes() == before


def test_load_missing_checkpoint(tmp_path):
    """A missing file raises FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt", small_model())


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=-3), ValueError, "steps"),
    (dict(steps=2.5), TypeError, "steps"),
    (dict(batch_size=-1), ValueError, "batch_size"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-1e-3), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(log_every=0), ValueError, "log_every"),
    (dict(model=lambda x, t: x), TypeError, "model must be a torch.nn.Module"),
    (dict(path="condot"), TypeError, r"path must .*got str"),
    (dict(target=[1, 2, 3]), TypeError, "data must have a sample"),
    (dict(device="cuda:0" if not torch.cuda.is_available() else "warp"), ValueError, "device"),
    (dict(cosine_decay="no"), TypeError, r"cosine_decay must be True or False, got str 'no'"),
    (dict(cosine_decay=None), TypeError, r"cosine_decay must be True or False, got NoneType"),
    (dict(amp="on"), TypeError, r"amp must be True, False or None \(the default\), got str 'on'"),
    (dict(progress=1), TypeError, r"progress must be True, False or None \(the default\), got int 1"),
    (dict(checkpoint=3), TypeError, r"checkpoint must be a file path \(str or pathlib.Path\) or None, got int 3"),
])
def test_bad_inputs(kwargs, exc, match):
    """Bad arguments to train raise with a message naming the argument."""
    args = dict(model=small_model(), path=AffineGaussianPath(), target=TARGET, steps=5, progress=False)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        train(args.pop("model"), fmlearn.CFMObjective(args.pop("path"), args.pop("target")), **args)


def test_smoothed_vs_numpy_running_mean():
    """TrainResult.smoothed(w) vs a running mean computed by hand with cumulative sums."""
    losses = np.random.default_rng(0).random(50)
    res = TrainResult(losses=losses, seconds=0.0, device="cpu")
    c = np.concatenate([[0.0], np.cumsum(losses)])
    np.testing.assert_allclose(res.smoothed(10), (c[10:] - c[:-10]) / 10)
    np.testing.assert_allclose(res.smoothed(500), [losses.mean()])  # window clipped to the length


def test_custom_source_and_time_sampler():
    """source and time_sampler are used: with t fixed at 1 and CondOT, x_t = x1 and the target is x1 - x0, so the
    first loss equals the hand-computed loss on the batch drawn from the same generator."""
    seen = {}

    def t_one(n, generator, device):
        return torch.ones(n, device=device)

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = small_model()

        def forward(self, x, t):
            if "x" not in seen:
                seen["x"], seen["t"] = x.detach().clone(), t.detach().clone()
            return self.inner(x, t)

    model = Rec()
    ref_inner = small_model()
    source = Gaussian([10.0, 10.0], 0.1)
    res = quick_train(model, 1, source=source, time_sampler=t_one, seed=5)
    g = torch.Generator().manual_seed(5)
    x1 = TARGET.sample(64, generator=g)
    x0 = source.sample(64, generator=g)
    torch.testing.assert_close(seen["x"], x1)
    assert torch.equal(seen["t"], torch.ones(64))
    with torch.no_grad():
        want = ((ref_inner(x1, 1.0) - (x1 - x0)) ** 2).sum(1).mean().item()
    assert res.losses[0] == pytest.approx(want, rel=1e-5)


def test_model_left_in_eval_mode_on_device():
    """After train the model is in eval mode on the training device (as documented)."""
    model = small_model()
    res = quick_train(model, 3)
    assert not model.training and res.device == "cpu"
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_amp_on_cpu_runs():
    """amp=True on the CPU (bfloat16 autocast) trains to finite losses close to the float32 run's first loss."""
    a = quick_train(small_model(), 5, amp=True).losses
    b = quick_train(small_model(), 5, amp=False).losses
    assert np.isfinite(a).all()
    assert a[0] == pytest.approx(b[0], rel=0.05)


def test_exported_names():
    """The training names are re-exported at the package top level."""
    assert fmlearn.train is train and fmlearn.NonFiniteLossError is NonFiniteLossError
    assert fmlearn.logit_normal_time is logit_normal_time


def logit_normal_cdf(t, mean, std):
    """P(T <= t) = Phi((logit(t) - mean) / std), with scipy's logit and normal CDF."""
    return stats.norm.cdf((logit(t) - mean) / std)


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (-0.5, 0.7), (1.0, 2.0)])
def test_logit_normal_time_vs_exact_cdf(mean, std):
    """20000 draws vs the exact CDF Phi((logit(t) - mean) / std): the Kolmogorov-Smirnov test does not reject
    (p > 0.01), while against the CDF with the mean moved by 0.1 it does (p < 1e-6), so the check has power."""
    t = logit_normal_time(mean, std)(20_000, torch.Generator().manual_seed(0), "cpu").double().numpy()
    assert stats.kstest(t, lambda v: logit_normal_cdf(v, mean, std)).pvalue > 0.01
    assert stats.kstest(t, lambda v: logit_normal_cdf(v, mean + 0.1, std)).pvalue < 1e-6


def test_logit_normal_time_seeded_shape_and_range():
    """Shape (n,), float32 like uniform_time; the same seed gives the same draws, another seed others;
    values strictly inside (0, 1), even with std = 40 where sigmoid rounds to 0 or 1 in float32."""
    sampler = logit_normal_time(0.3, 1.5)
    a = sampler(500, torch.Generator().manual_seed(1), "cpu")
    b = sampler(500, torch.Generator().manual_seed(1), "cpu")
    c = sampler(500, torch.Generator().manual_seed(2), "cpu")
    assert a.shape == (500,) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    wide = logit_normal_time(0.0, 40.0)(5000, torch.Generator().manual_seed(0), "cpu")
    assert torch.sigmoid(40.0 * torch.randn(5000, generator=torch.Generator().manual_seed(0))).eq(1).any()
    assert bool((wide > 0).all() and (wide < 1).all())


@pytest.mark.parametrize("kwargs, match", [
    (dict(std=0.0), "std must be a positive finite number, got 0.0"),
    (dict(std=-1.0), "std must be a positive finite number"),
    (dict(std=float("nan")), "std must be a positive finite number"),
    (dict(std=float("inf")), "std must be a positive finite number"),
    (dict(mean=float("nan")), "mean must be a finite number, got nan"),
    (dict(mean=float("-inf")), "mean must be a finite number"),
])
def test_logit_normal_time_bad_input(kwargs, match):
    """A std that is not positive and finite, a mean that is not finite: ValueError naming them."""
    with pytest.raises(ValueError, match=match):
        logit_normal_time(**kwargs)


@pytest.mark.parametrize("kwargs, match", [(dict(mean="0"), "mean must be a real number, got str '0'"),
                                           (dict(std=True), "std must be a real number, got bool True")])
def test_logit_normal_time_not_a_number(kwargs, match):
    """A mean or std that is not a real number: TypeError naming it."""
    with pytest.raises(TypeError, match=match):
        logit_normal_time(**kwargs)


def test_train_with_logit_normal_time():
    """train(..., time_sampler=logit_normal_time(0.5, 0.8)) runs; the times the model sees at the first step equal
    sigmoid(0.5 + 0.8 z) with z drawn by hand from the seeded generator after x1 and x0."""
    seen = []

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = small_model()

        def forward(self, x, t):
            seen.append(t.detach().clone())
            return self.inner(x, t)

    res = quick_train(Rec(), 3, seed=7, time_sampler=logit_normal_time(0.5, 0.8))
    assert res.losses.shape == (3,) and np.isfinite(res.losses).all()
    g = torch.Generator().manual_seed(7)
    x1 = TARGET.sample(64, generator=g)
    torch.randn(x1.shape, generator=g)
    torch.testing.assert_close(seen[0], torch.sigmoid(0.5 + 0.8 * torch.randn(64, generator=g)))


def test_ema_weights_equal_a_hand_computed_average():
    """ema=0.8: the final weights equal theta_ema_k = d theta_ema_(k-1) + (1 - d) theta_k with the warmed-up decay
    d = min(0.8, k / (9 + k)) (k = 1, 2, ...), computed by hand from the weights of k-step runs (constant lr, so
    a k-step run is the first k steps of a longer one); without the warm-up (d = 0.8 throughout, which keeps
    0.8^5 = 33% of the random initial weights) they would differ."""
    decay, n = 0.8, 5
    snapshots = [small_model().state_dict()]
    for k in range(1, n + 1):
        m = small_model()
        quick_train(m, k, cosine_decay=False)
        snapshots.append(m.state_dict())
    manual = {key: v.clone() for key, v in snapshots[0].items()}
    flat = {key: v.clone() for key, v in snapshots[0].items()}
    for k, snap in enumerate(snapshots[1:], start=1):
        d = min(decay, k / (9 + k))
        for key in manual:
            manual[key] = d * manual[key] + (1 - d) * snap[key]
            flat[key] = decay * flat[key] + (1 - decay) * snap[key]
    m = small_model()
    quick_train(m, n, cosine_decay=False, ema=decay)
    for key, value in m.state_dict().items():
        torch.testing.assert_close(value, manual[key], rtol=1e-5, atol=1e-6, msg=key)
    assert max(float((value - flat[key]).abs().max()) for key, value in m.state_dict().items()) > 1e-3


@pytest.mark.parametrize("ema", [1.0, 0.0, 2, "0.9"])
def test_ema_bad_values(ema):
    """ema must be a float decay in (0, 1): ValueError naming it."""
    with pytest.raises(ValueError, match="ema must be None or a decay in"):
        quick_train(small_model(), 3, ema=ema)


def test_ema_checkpoint_resume_is_exact(tmp_path):
    """With ema, an interrupted run resumed from its periodic checkpoint ends with the uninterrupted run's weights."""
    ck = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        quick_train(FailAfter(small_model(), 130), 200, checkpoint=ck, checkpoint_every=100, log_every=50, ema=0.9)
    never = 10**9
    resumed, full = FailAfter(small_model(), never), FailAfter(small_model(), never)
    quick_train(resumed, 200, checkpoint=ck, log_every=50, ema=0.9)
    quick_train(full, 200, log_every=50, ema=0.9)
    for (k, a), b in zip(resumed.state_dict().items(), full.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


class _FirstInput(nn.Module):
    """small_model() that records the first x it is called with in ``seen["x"]``."""

    def __init__(self, seen):
        super().__init__()
        self.inner, self.seen = small_model(), seen

    def forward(self, x, t):
        self.seen.setdefault("x", x.detach().clone())
        return self.inner(x, t)


def test_coupling_repairs_each_batch():
    """The coupling sees each batch's (x0, x1) and its returned x0 is what the loss uses: with t = 0 and CondOT,
    x_t = x0, so the model's first input is exactly the coupling's output (here x0 reversed)."""
    seen, calls = {}, []

    def reverse(x0, x1):
        calls.append((x0.clone(), x1.clone()))
        return x0.flip(0)

    quick_train(_FirstInput(seen), 3, coupling=reverse, time_sampler=lambda n, g, d: torch.zeros(n, device=d), seed=2)
    assert len(calls) == 3
    g = torch.Generator().manual_seed(2)
    x1 = TARGET.sample(64, generator=g)
    x0 = torch.randn(x1.shape, generator=g)
    torch.testing.assert_close(calls[0][1], x1)
    torch.testing.assert_close(seen["x"], x0.flip(0))


def test_paired_data_supplies_both_ends():
    """With PairedData the pairs are drawn together: at t = 1 under CondOT the regression target is x1 - x0,
    and every pair the model sees is one of the given pairs."""
    from fmlearn import PairedData
    x0 = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    x1 = x0 * 2 + 5
    data = PairedData(x0, x1)
    seen = {}

    quick_train(_FirstInput(seen), 1, target=data, time_sampler=lambda n, g, d: torch.ones(n, device=d))
    xs = seen["x"]  # = x1 of the drawn pairs
    assert all(any(torch.equal(row, r) for r in x1) for row in xs)
    a, b = data.sample_pairs(500, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(b, a * 2 + 5)
    assert len({tuple(r.tolist()) for r in a}) == 20  # drawn with replacement from all 20 pairs


class _LabelRecorder(nn.Module):
    num_classes = 3

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.labels = []

    def forward(self, x, t, y):
        self.labels.append(y.detach().clone())
        return self.lin(torch.cat([x, t[:, None]], 1)) + y[:, None].float()


def test_conditional_training_feeds_labels_and_drops_them_at_the_asked_rate():
    """conditional=True passes the target's labels as y; label_dropout replaces a fraction p of them by
    num_classes (binomial check: p = 0.25 over 40 x 256 labels, 5 standard deviations)."""
    from fmlearn import GaussianMixture
    mix = GaussianMixture([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], 0.5)
    model = _LabelRecorder()
    quick_train(model, 40, target=mix, conditional=True, label_dropout=0.25, batch_size=256)
    y = torch.cat(model.labels)
    assert set(y.unique().tolist()) <= {0, 1, 2, 3}
    n, k = y.numel(), int((y == 3).sum())
    assert abs(k - 0.25 * n) < 5 * math.sqrt(n * 0.25 * 0.75)
    model = _LabelRecorder()
    quick_train(model, 1, target=mix, conditional=True, seed=4)
    _, want = mix.sample(64, generator=torch.Generator().manual_seed(4), return_labels=True)
    assert torch.equal(model.labels[0], want)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(coupling=3), TypeError, "coupling must be a callable"),
    (dict(label_dropout=0.1), ValueError, "needs conditional=True"),
    (dict(label_dropout=1.0, conditional=True), ValueError, "label_dropout must be a probability"),
    (dict(conditional=True), TypeError, "num_classes"),
])
def test_extension_bad_inputs(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        quick_train(small_model(), 1, **kwargs)


def test_paired_data_bad_input():
    from fmlearn import PairedData
    with pytest.raises(ValueError, match="same shape"):
        PairedData(torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(TypeError, match="tensors"):
        PairedData([[0.0]], torch.zeros(1, 1))
    with pytest.raises(ValueError, match="pass source=None"):
        quick_train(small_model(), 1, target=PairedData(torch.zeros(4, 2), torch.ones(4, 2)), source=TARGET)



# --- the run's contract: the objective's fingerprint and the model's declared attributes (issue 21, item 5) ---

def test_resume_with_another_path_is_refused(tmp_path):
    """A checkpoint trained on the CondOT path cannot be resumed on the VP path: the message names the part
    that differs with both values, and neither the weights nor the file are touched."""
    ck = tmp_path / "run.pt"
    quick_train(small_model(), 20, checkpoint=ck, cosine_decay=False)
    before = ck.read_bytes()
    model = small_model(seed=5)
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"another objective.*objective\.path\.schedule: saved CondOT, given VP"):
        quick_train(model, 40, checkpoint=ck, cosine_decay=False, path=AffineGaussianPath("vp"))
    assert ck.read_bytes() == before
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))


@pytest.mark.parametrize("change, part", [
    (dict(target=Gaussian(mean=[3.0, 2.0], std=0.5)), r"objective\.data\.mean: saved tensor float32 \(2,\) #\w+, "
                                                      r"given tensor float32 \(2,\) #\w+"),
    (dict(source=Gaussian(mean=[0.0, 0.0], std=2.0)), r"objective\.source: saved None, given Gaussian"),
    (dict(time_sampler=logit_normal_time(0.0, 1.0)), r"objective\.time_sampler: saved uniform_time, "
                                                     r"given logit_normal_time\(mean=0.0, std=1.0\)"),
])
def test_resume_with_another_target_source_or_time_sampler_is_refused(tmp_path, change, part):
    """Another target (same class, other values), another source, another time sampler: each refused by name."""
    ck = tmp_path / "run.pt"
    quick_train(small_model(), 20, checkpoint=ck, cosine_decay=False)
    with pytest.raises(ValueError, match=part):
        quick_train(small_model(), 40, checkpoint=ck, cosine_decay=False, **change)


def test_resume_with_the_same_objective_rebuilt_is_accepted(tmp_path, recwarn):
    """New instances built the same way (path, schedule, target, time sampler with the same parameters) are the
    same objective: the run resumes without a warning and its history goes on."""
    ck = tmp_path / "run.pt"
    first = quick_train(small_model(), 20, checkpoint=ck, cosine_decay=False, time_sampler=logit_normal_time(0.5))
    resumed = quick_train(small_model(), 40, checkpoint=ck, cosine_decay=False, time_sampler=logit_normal_time(0.5),
                          path=AffineGaussianPath("condot"), target=Gaussian(mean=[3.0, -2.0], std=0.5))
    assert resumed.steps_run == 20 and np.array_equal(resumed.losses[:20], first.losses)
    assert not [w for w in recwarn if "fingerprint" in str(w.message)]


def test_resume_a_token_model_with_the_other_loss_is_refused(tmp_path):
    """Cross-entropy, then generalized KL on the same mixture path and data: refused, naming the loss."""
    import fmlearn.discrete as D

    table = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 2, 2]])
    path = D.MixturePath(4, "mask")

    def model():
        torch.manual_seed(0)
        return D.TokenMLP(path.num_states, 4, 4, embed=8, hidden=16)

    ck = tmp_path / "tokens.pt"
    args = dict(steps=10, batch_size=16, progress=False, device="cpu", checkpoint=ck, cosine_decay=False)
    train(model(), D.DiscreteObjective(path, D.TokenData(table), loss="ce"), **args)
    with pytest.raises(ValueError, match=r"objective\.loss_name: saved 'ce', given 'gkl'"):
        train(model(), D.DiscreteObjective(path, D.TokenData(table), loss="gkl"), **{**args, "steps": 20})
    # the model declares the mask path it was built for, so the objective refuses it before the checkpoint does
    with pytest.raises(ValueError, match=r"objective\.path\.source: saved 'mask', given 'uniform'|"
                                         r"source='mask' \(the path's: 'uniform'\)"):
        train(model(), D.DiscreteObjective(D.MixturePath(5, "uniform"), D.TokenData(table)), **{**args, "steps": 20})


def test_resume_with_a_model_of_another_contract_is_refused(tmp_path):
    """A model declares what it was built for (here its space): another space on resume is refused, naming
    both; the same weights shapes would otherwise load without a word."""
    from fmlearn.manifolds import FlatTorus

    ck = tmp_path / "run.pt"
    model = small_model()
    model.space = fmlearn.spaces.Euclidean()
    quick_train(model, 20, checkpoint=ck, cosine_decay=False)
    other = small_model()
    other.space = FlatTorus(2)
    with pytest.raises(ValueError, match=r"model\.space: saved Euclidean, given FlatTorus"):
        quick_train(other, 40, checkpoint=ck, cosine_decay=False)
    bare = small_model()  # declares no space at all
    with pytest.raises(ValueError, match=r"model\.space: saved Euclidean, given \(absent\)"):
        quick_train(bare, 40, checkpoint=ck, cosine_decay=False)


def test_old_checkpoint_without_contract_resumes_with_a_warning(tmp_path):
    """A checkpoint written before the contract was stored resumes (the same losses as an uninterrupted run)
    with a warning naming the file; the next save stores the contract, and then another objective is refused."""
    ck = tmp_path / "old.pt"
    full = quick_train(small_model(), 40, cosine_decay=False)
    quick_train(small_model(), 20, checkpoint=ck, cosine_decay=False)
    state = torch.load(ck, weights_only=True)
    del state["contract"]
    torch.save(state, ck)
    with pytest.warns(UserWarning, match=rf"checkpoint {ck} holds no fingerprint of its objective"):
        resumed = quick_train(small_model(), 40, checkpoint=ck, cosine_decay=False)
    assert np.array_equal(resumed.losses, full.losses)
    assert "contract" in torch.load(ck, weights_only=True)
    with pytest.raises(ValueError, match="objective.path.schedule"):
        quick_train(small_model(), 60, checkpoint=ck, cosine_decay=False, path=AffineGaussianPath("cosine"))


def test_checkpoint_with_a_malformed_contract_is_refused(tmp_path):
    ck = tmp_path / "bad.pt"
    quick_train(small_model(), 20, checkpoint=ck, cosine_decay=False)
    state = torch.load(ck, weights_only=True)
    state["contract"] = [1, 2]
    torch.save(state, ck)
    with pytest.raises(ValueError, match="holds a contract that is not a dict of texts"):
        quick_train(small_model(), 40, checkpoint=ck, cosine_decay=False)


class HoldsTheModel:
    """An objective that keeps the model it trains (as a teacher-free self-distillation would): the model's
    weights change as it trains, which must not make the objective another one."""

    def __init__(self):
        self.inner = fmlearn.CFMObjective(AffineGaussianPath(), TARGET)

    def bind(self, model):
        self.model, self.first_layer = model, next(model.parameters())

    def draw(self, n, generator, device):
        return self.inner.draw(n, generator, device)

    def loss(self, model, batch):
        return self.inner.loss(model, batch)


def test_an_objective_holding_the_trained_model_resumes(tmp_path):
    ck = tmp_path / "run.pt"
    train(small_model(), HoldsTheModel(), steps=20, batch_size=32, progress=False, checkpoint=ck, cosine_decay=False)
    resumed = train(small_model(), HoldsTheModel(), steps=40, batch_size=32, progress=False, checkpoint=ck,
                    cosine_decay=False)
    assert resumed.steps_run == 20


def test_fingerprint_by_value_not_identity():
    """The fingerprint reads values: equal for objects built alike (a tensor copied to another dtype is not
    alike), different for a changed entry; long lists collapse into one hash; cycles and depth end."""
    from fmlearn._fingerprint import MAX_DEPTH, differences, fingerprint

    a = fingerprint(fmlearn.CFMObjective(AffineGaussianPath("sqrt"), Gaussian([1.0, 2.0], 0.5)), "o")
    b = fingerprint(fmlearn.CFMObjective(AffineGaussianPath("sqrt"), Gaussian([1.0, 2.0], 0.5)), "o")
    assert a == b and a["o.path.schedule"] == "Sqrt"
    c = fingerprint(fmlearn.CFMObjective(AffineGaussianPath("sqrt"), Gaussian([1.0, 2.0 + 1e-6], 0.5)), "o")
    assert [line.split(":")[0] for line in differences(a, c)] == ["o.data.mean"]

    class Node:
        def __init__(self, items):
            self.items, self.me, self._cache = items, self, object()

    long = fingerprint(Node(list(range(100))), "n")
    assert long["n.items"].startswith("list of 100 #") and "n.items[0]" not in long
    assert fingerprint(Node(list(range(100))), "n") == long != fingerprint(Node(list(range(101))), "n")
    assert long["n.me"].endswith("Node (not described further)") and not any("_cache" in k for k in long)
    deep = Node([])
    for _ in range(2 * MAX_DEPTH):
        deep = Node([deep])
    assert len(fingerprint(deep, "d")) <= 2 * MAX_DEPTH + 2
    assert differences({"a": "1", "a.x": "2"}, {"a": "3", "a.y": "4"}) == ["a: saved 1, given 3"]

    class Declared:  # declares its own parts: the rest of its attributes do not count
        def __init__(self, k):
            self.k, self.noise = k, torch.randn(3)

        def fingerprint(self):
            return {"k": self.k}

    assert fingerprint(Declared(2), "x") == {"x": "Declared", "x.k": "2"} == fingerprint(Declared(2), "x")
    net = small_model()
    assert fingerprint(net, "m")["m"].startswith("MLP weights #") and fingerprint(net, "m") != \
        fingerprint(small_model(seed=1), "m")
    assert fingerprint([net], "m", skip=[net]) == {"m": "list of 1", "m[0]": "the model being trained"}


def test_resume_with_the_same_objective_instance_is_accepted(tmp_path):
    """A notebook re-runs a cell with the objective it already trained on: its fingerprint, taken before the first
    step, is not changed by the steps (no public state moves as it draws), so the run resumes."""
    ck, objective = tmp_path / "run.pt", fmlearn.CFMObjective(AffineGaussianPath(), TARGET)
    train(small_model(), objective, steps=20, batch_size=32, progress=False, checkpoint=ck, cosine_decay=False)
    resumed = train(small_model(), objective, steps=40, batch_size=32, progress=False, checkpoint=ck,
                    cosine_decay=False)
    assert resumed.steps_run == 20


# -- the progress bar (issue 22): it leaves one line of text, never a widget ------------------------------------------

class _Handle:
    """Stands in for IPython's DisplayHandle: records what the bar shows and what it leaves."""

    def __init__(self, shown):
        self.shown = shown

    def update(self, bundle, raw=False):
        assert raw
        self.shown.append(dict(bundle))


@pytest.fixture
def kernel_display(monkeypatch):
    """Run train as if in a Jupyter kernel: the bundles shown and updated by display id, in order."""
    import IPython.display

    from fmlearn import _progress

    shown = []

    def display(bundle, raw=False, display_id=False):
        assert raw and display_id is True
        shown.append(dict(bundle))
        return _Handle(shown)

    monkeypatch.setattr(_progress, "in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    return shown


def test_progress_in_a_kernel_is_html_then_one_line_of_text(kernel_display):
    """The bar is plain HTML (a <progress> element), never a widget view, and ends as one line of text that says
    how many steps, how long and the last loss shown: what a saved notebook reopens on."""
    run = quick_train(small_model(), 30, log_every=10, progress=True)
    bars, last = kernel_display[:-1], kernel_display[-1]
    assert bars and all(set(b) == {"text/plain", "text/html"} and "<progress" in b["text/html"] for b in bars)
    assert 'value="0" max="30"' in bars[0]["text/html"]
    assert set(last) == {"text/plain"}
    line = last["text/plain"]
    assert line.startswith("trained 30 steps in ") and " s on cpu, loss " in line
    assert f"loss {np.mean(run.losses[-10:]):.4f} (mean of the last 10 steps)" in line
    assert "\n" not in line


def test_progress_says_where_a_run_stopped(kernel_display):
    with pytest.raises(NonFiniteLossError):
        quick_train(NaNAfter(small_model(), 15), 40, log_every=10, progress=True)
    assert kernel_display[-1] == {"text/plain": kernel_display[-1]["text/plain"]}
    assert kernel_display[-1]["text/plain"].startswith("training stopped at step 20 of 40 after ")
    assert kernel_display[-1]["text/plain"].endswith("(NonFiniteLossError)")


def test_progress_of_a_resumed_run_says_so(kernel_display, tmp_path):
    ck = tmp_path / "run.pt"
    quick_train(small_model(), 20, log_every=10, checkpoint=ck, cosine_decay=False)
    quick_train(small_model(), 40, log_every=10, checkpoint=ck, cosine_decay=False, progress=True)
    assert kernel_display[-1]["text/plain"].startswith("trained 20 steps (resumed at step 20 of 40) in ")
    quick_train(small_model(), 40, log_every=10, checkpoint=ck, cosine_decay=False, progress=True)
    assert kernel_display[-1] == {"text/plain": "nothing to train: the checkpoint holds all 40 steps"}


def test_progress_off_shows_nothing(kernel_display, capsys, monkeypatch):
    monkeypatch.setenv("FMLEARN_PROGRESS", "0")
    quick_train(small_model(), 20, progress=None)
    quick_train(small_model(), 20, progress=False)
    assert kernel_display == [] and capsys.readouterr() == ("", "")


def test_progress_in_a_terminal_is_erased_and_leaves_its_line(capsys):
    """Outside a kernel: tqdm's text bar on stderr, then the summary line; the losses are the same as without it."""
    with_bar = quick_train(small_model(), 30, log_every=10, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and err.rstrip("\n").splitlines()[-1].startswith("trained 30 steps in ")
    np.testing.assert_array_equal(with_bar.losses, quick_train(small_model(), 30, log_every=10).losses)


def test_a_notebook_run_stores_the_line_not_the_bar(tmp_path):
    """In a real kernel (nbclient, as the book and headless runs execute notebooks): the training cell's only output
    is the summary line, as text; no widget view and no bar is stored."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import fmlearn as fm\n"
        "fm.train(fm.MLP(2, hidden=16, depth=2), fm.CFMObjective(fm.AffineGaussianPath('condot'), "
        "fm.Gaussian(mean=[3.0, -2.0], std=0.5)), steps=50, batch_size=32, log_every=10, progress=True, "
        "device='cpu');")]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
    outputs = nb.cells[0].outputs
    assert len(outputs) == 1 and set(outputs[0].get("data", {})) == {"text/plain"}, outputs
    assert outputs[0]["data"]["text/plain"].startswith("trained 50 steps in ")
