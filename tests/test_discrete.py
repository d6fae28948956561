"""fmlearn.discrete (chapter 8): each check against a reference computed another way: matrix exponentials,
closed-form marginals, brute-force enumeration, known entropies, the sampler's own exact law."""

import math

import pytest
import torch

import fmlearn as fm
from fmlearn import discrete as D
from fmlearn.discrete import baselines, data

SMALL = data.checkerboard(8, block=2)          # 32 cells of an 8 x 8 board: 5 bits
CHECKER = data.checkerboard(32, block=4)       # the chapter's: 512 cells, 9 bits


def _on(support, vocab):
    mask = torch.zeros(vocab ** support.shape[1], dtype=torch.bool)
    mask[D.state_index(support, vocab)] = True
    return mask


# --- the token space and the forward equation ---------------------------------------------------------------

def test_jump_probabilities_leave_with_one_minus_exp():
    """P(leave) = 1 - exp(-h lambda), the destination in proportion to the rates; any step gives a distribution."""
    x = torch.tensor([0, 1, 2])
    rates = torch.tensor([[0.0, 2.0, 1.0], [0.5, 0.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    for h in (0.01, 0.5, 50.0):
        p = D.jump_probabilities(x, h * rates, 3)
        lam = rates.sum(1)
        torch.testing.assert_close(p.sum(1), torch.ones(3, dtype=torch.float64))
        torch.testing.assert_close(1 - p[torch.arange(3), x], 1 - torch.exp(-h * lam))
        torch.testing.assert_close(p[0, 1] / p[0, 2], torch.tensor(2.0, dtype=torch.float64))


def test_forward_equation_matches_matrix_exp():
    """Constant per-token rates on 2 tokens of 3 states: RK4 on d p / dt = p Q through odeint equals
    p0 matrix_exp(Q), Q built by generator_matrix; its rows sum to 0."""
    g = torch.Generator().manual_seed(0)
    rates = torch.rand(9, 2, 3, generator=g, dtype=torch.float64)
    q = D.generator_matrix(rates)
    assert float(q.sum(1).abs().max()) < 1e-12
    p0 = torch.softmax(torch.randn(1, 9, generator=g, dtype=torch.float64), 1)
    law = fm.odeint(lambda p, t: p @ q, p0, method="rk4", steps=100).x
    torch.testing.assert_close(law, p0 @ torch.linalg.matrix_exp(q), atol=1e-8, rtol=0)


def test_joint_law_matches_brute_force_product():
    """One JointLaw step equals the product over tokens of each token's jump law, enumerated by a Python loop."""
    g = torch.Generator().manual_seed(1)
    law = D.JointLaw(3, 2)
    dx = torch.rand(9, 2, 3, generator=g, dtype=torch.float64)
    p = torch.softmax(torch.randn(1, 9, generator=g, dtype=torch.float64), 1)
    step = law.step(p, dx)
    probs = D.jump_probabilities(law.states, dx, 3)
    want = torch.zeros(9, dtype=torch.float64)
    for n, (a, b) in enumerate(law.states.tolist()):
        for m, (c, d) in enumerate(law.states.tolist()):
            want[m] += p[0, n] * probs[n, 0, c] * probs[n, 1, d]
    torch.testing.assert_close(step[0], want)


# --- the mixture path, the velocity, the oracle -------------------------------------------------------------

@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_velocity_rows_sum_to_zero_and_stay_finite_at_the_ends(source):
    path = D.MixturePath(8, source)
    oracle = D.ExactPosterior(SMALL, path)
    for t in (0.0, 0.5, 1.0):
        x = path.sample_given(SMALL, t, torch.Generator().manual_seed(2))
        u = path.velocity(path.posterior(oracle(x, t), x), x, t)
        assert torch.isfinite(u).all()
        assert float(u.sum(-1).abs().max()) < 1e-5 * (1 + float(u.abs().max()))
        off = u * (1 - torch.nn.functional.one_hot(x, path.num_states))
        assert float(off.min()) >= 0


@pytest.mark.parametrize("source, corrector", [("mask", 0.0), ("uniform", 0.0), ("mask", 1.5)])
def test_oracle_velocity_generates_the_closed_form_marginals(source, corrector):
    """The forward equation driven by the exact posterior's velocity (and the corrector, defined for the mask
    source) gives the closed-form marginal sum_m q_m prod_i p_t(x^i | s_m^i) at t = 0.3 and 0.7."""
    path = D.MixturePath(8, source)
    field = D.posterior_field(D.ExactPosterior(SMALL, path), path, corrector)
    states = D.all_states(path.num_states, 2)
    law = fm.odeint(lambda p, t: p @ D.generator_matrix(field(states, t).double()), D.source_law(path, 2),
                    method="rk4", times=torch.linspace(0, 0.7, 141), return_trajectory=True)
    for k, t in ((60, 0.3), (140, 0.7)):
        torch.testing.assert_close(law.trajectory[k], D.marginal_law(path, SMALL, t), atol=1e-5, rtol=0)


def test_corrector_changes_the_rates():
    path = D.MixturePath(8, "mask")
    x = torch.tensor([[3, 8], [8, 8]])
    back = D.corrector_rates(path, x, 0.5)
    assert float(back[0, 0, 8]) == pytest.approx(2.0) and float(back[1].abs().sum()) == 0


def test_exact_posterior_matches_enumeration():
    """p(x1^1 = v | x_t) by a loop over the support, for a partly masked x_t."""
    path = D.MixturePath(8, "mask")
    x = torch.tensor([[8, 2]])
    probs = path.posterior(D.ExactPosterior(SMALL, path)(x, 0.4), x)[0, 0]
    want = torch.zeros(8)
    for a, b in SMALL.tolist():
        if b == 2:
            want[a] += 1
    torch.testing.assert_close(probs, want / want.sum())


# --- sampling: the sampler's law, the exact likelihood, the ELBO ---------------------------------------------

def test_sampler_matches_its_exact_law():
    """20,000 sequences from D.sample (the oracle, 4 steps, mask source) against euler_law (no sampling), within
    4.5 standard errors per cell; the law puts mass off the support (the sampler's error), as predicted."""
    path = D.MixturePath(8, "mask")
    oracle = D.ExactPosterior(SMALL, path)
    g = torch.Generator().manual_seed(3)
    x = D.sample(oracle, path, path.sample_source((20_000, 2)), steps=4, generator=g).x
    freq = torch.bincount(D.state_index(x, 8), minlength=64).double() / len(x)
    law = D.euler_law(oracle, path, 2, steps=4)
    se = (law * (1 - law) / len(x)).sqrt()
    assert bool(((freq - law).abs() <= 4.5 * se + 1e-4).all())
    assert float(law[~_on(SMALL, 8)].sum()) > 0.05


def test_euler_law_error_falls_like_one_over_steps():
    path = D.MixturePath(32, "mask")
    oracle = D.ExactPosterior(CHECKER, path)
    on = _on(CHECKER, 32)
    off = [1 - float(D.euler_law(oracle, path, 2, steps=n)[on].sum()) for n in (8, 32)]
    assert 3.5 < off[0] / off[1] < 4.5 and off[1] < 0.02


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_exact_likelihood_of_the_oracle_is_the_entropy(source):
    """The continuous-time chain of the exact posterior ends on the target: -log2 p = log2 32 = 5 bits on each cell."""
    path = D.MixturePath(8, source)
    law = D.model_law(D.ExactPosterior(SMALL, path), path, 2, ode_steps=60)
    assert float(law.sum()) == pytest.approx(1, abs=1e-6)
    bits = D.nll_bits(law, SMALL, 8)
    assert float((bits - 5).abs().max()) < 1e-3


def test_model_law_is_the_limit_of_the_euler_law():
    """The forward equation (RK4) against the sampler's exact law at 400 steps, for an untrained network."""
    torch.manual_seed(0)
    path = D.MixturePath(4, "mask")
    model = D.TokenMLP(path.num_states, 4, 2, hidden=32)
    fine = D.model_law(model, path, 2, ode_steps=80)
    euler = D.euler_law(model, path, 2, steps=400)
    assert float((fine - euler).abs().sum()) < 0.01


def test_elbo_with_the_true_posterior_is_the_entropy():
    """Mask source, exact posterior: the ELBO equals the entropy (9 bits), both estimators, the rewrite more precise;
    with the uniform source it stays well above (a loose bound)."""
    g = torch.Generator().manual_seed(4)
    path = D.MixturePath(32, "mask")
    masked = D.elbo(D.ExactPosterior(CHECKER, path), path, CHECKER, repeats=16, generator=g)
    plain = D.elbo(D.ExactPosterior(CHECKER, path), path, CHECKER, repeats=16, estimator="plain", generator=g)
    assert abs(masked.bits - 9) < 3 * masked.se + 0.005 and masked.se < 0.02
    assert abs(plain.bits - 9) < 4 * plain.se and masked.se < plain.se
    few = D.elbo(D.ExactPosterior(CHECKER, path), path, CHECKER, repeats=16, positions=1, generator=g)
    assert abs(few.bits - 9) < 4 * few.se + 0.005
    upath = D.MixturePath(32, "uniform")
    loose = D.elbo(D.ExactPosterior(CHECKER, upath), upath, CHECKER, repeats=32, generator=g)
    assert loose.bits > 10.5


def test_gkl_objective_integrates_to_the_elbo():
    """The generalized-KL loss (per token, nats) averaged over uniform t is the ELBO / L (masked estimator)."""
    path = D.MixturePath(8, "mask")
    oracle = D.ExactPosterior(SMALL, path)
    obj = D.DiscreteObjective(path, D.TokenData(SMALL), loss="gkl")
    g = torch.Generator().manual_seed(5)
    losses = torch.tensor([float(obj.loss(oracle, obj.draw(4096, g, "cpu"))) for _ in range(40)])
    gkl_bits = 2 * float(losses.mean()) / math.log(2)
    gkl_se = 2 * float(losses.std()) / math.sqrt(len(losses)) / math.log(2)
    assert abs(gkl_bits - 5) < 4 * gkl_se + 0.01


def test_cross_entropy_training_reaches_the_oracle_loss():
    """CE is minimised by the true posterior: after training, the model's loss is within 0.03 nats of the oracle's
    on the same batches (and far below an untrained network's)."""
    path = D.MixturePath(8, "mask")
    obj = D.DiscreteObjective(path, D.TokenData(SMALL))
    fm.seed_everything(0)
    model = D.TokenMLP(path.num_states, 8, 2, hidden=64)
    g = torch.Generator().manual_seed(6)
    batches = [obj.draw(4096, g, "cpu") for _ in range(5)]
    best = sum(float(obj.loss(D.ExactPosterior(SMALL, path), b)) for b in batches) / 5
    with torch.no_grad():
        before = sum(float(obj.loss(model, b)) for b in batches) / 5
    fm.train(model, obj, steps=600, batch_size=256, lr=3e-3, seed=0, progress=False)
    with torch.no_grad():
        after = sum(float(obj.loss(model, b)) for b in batches) / 5
    assert before > best + 0.1 and abs(after - best) < 0.03, (before, after, best)


def test_tabulated_model_gives_the_same_logits():
    path = D.MixturePath(8, "uniform")
    oracle = D.ExactPosterior(SMALL, path)
    x = path.sample_given(SMALL, 0.5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(D.tabulated(oracle, 8, 2)(x, 0.5), oracle(x, 0.5))


def test_conv_net_sees_every_pixel():
    torch.manual_seed(0)
    net = D.TokenConvNet(18, 17, side=8, embed=4, channels=8, depth=7)
    x = torch.randint(18, (2, 64))
    out = net(x, torch.tensor([0.2, 0.9]))
    assert out.shape == (2, 64, 17)
    emb = net.embed(x).detach().requires_grad_(True)
    h = emb.transpose(1, 2).reshape(2, -1, 8, 8)
    tt = net.time(torch.tensor([0.2, 0.9]))
    for conv, film in zip(net.convs, net.film):
        h = torch.nn.functional.silu(conv(h) + film(tt)[:, :, None, None])
    net.out(h).flatten(2)[0, :, 0].sum().backward()   # output pixel 0 ...
    assert bool((emb.grad[0].abs().sum(-1) > 0).all())  # ... depends on all 64 input pixels


# --- baselines and data -------------------------------------------------------------------------------------

def test_baselines_against_counting():
    x = torch.tensor([[0, 1], [0, 2], [1, 2], [0, 2]])
    pp = baselines.PerPosition(3, alpha=0.5).fit(x)
    want = -math.log2((3 + 0.5) / (4 + 1.5)) - math.log2((1 + 0.5) / (4 + 1.5))
    assert float(pp.bits(torch.tensor([[0, 1]]))) == pytest.approx(want)
    em = baselines.ProductMixture(3, components=1, alpha=0.5, iters=3).fit(x)
    torch.testing.assert_close(em.bits(x), pp.bits(x))
    digits_train, _, digits_held, _ = data.digits_tokens()
    assert digits_train.shape == (898, 64) and digits_held.shape == (899, 64) and int(digits_train.max()) == 16


def test_date_posterior_equals_the_enumerated_posterior():
    """The closed-form posterior of the dates against ExactPosterior's sum over all 73,049 dates, on partly masked
    dates, an x_t that starts with 29 February's month-day, and one no date explains (both give the prior)."""
    path = D.MixturePath(11, "mask")
    d = data.dates()
    g = torch.Generator().manual_seed(8)
    x = path.sample_given(d[torch.randint(len(d), (24,), generator=g)], torch.rand(24, generator=g), g)
    x[0] = 11
    x[1] = torch.tensor([11, 11, 11, 11, 11, 0, 2, 11, 2, 9])   # ????-02-29 with the dashes masked
    x[2, 4] = 3                                                  # a digit where the dash goes: impossible
    fast = path.posterior(data.DatePosterior(path)(x, 0.5), x)
    slow = path.posterior(D.ExactPosterior(d, path)(x, 0.5), x)
    assert float((fast - slow).abs().max()) < 1e-4
    leap_years = fast[1, :4]   # the year of a 29 February is a leap year: its last digit is even
    assert float(leap_years[3, [1, 3, 5, 7, 9]].sum()) < 1e-6


def test_dates():
    d = data.dates()
    assert len(d) == 73_049 and data.decode(d[[0, -1]]) == ["1900-01-01", "2099-12-31"]
    ok = data.valid_dates(data.encode(["2000-02-29", "1900-02-29", "2001-13-01", "1899-12-31", "2024-1-011"]))
    assert ok.tolist() == [True, False, False, False, False]
    assert float(baselines.PerPosition(11, alpha=1e-3).fit(d).bits(d).mean()) > math.log2(73_049) + 1


# --- bad input ----------------------------------------------------------------------------------------------

def test_bad_input_is_refused_with_the_argument_named():
    path = D.MixturePath(8, "mask")
    oracle = D.ExactPosterior(SMALL, path)
    x = torch.tensor([[8, 8]])
    probs = torch.full((1, 2, 8), 1 / 8)
    with pytest.raises(ValueError, match=r"x must hold tokens in 0..8, got values from 0 to 9"):
        path.velocity(probs, torch.tensor([[0, 9]]), 0.5)
    with pytest.raises(TypeError, match="x0 must hold integer tokens, got dtype torch.float32"):
        D.sample(oracle, path, torch.zeros(3, 2), steps=4)
    with pytest.raises(ValueError, match="x0 must hold tokens in 0..8"):
        D.sample(oracle, path, torch.full((3, 2), 9), steps=4)
    with pytest.raises(ValueError, match="probs must hold probabilities .* logits"):
        path.velocity(oracle(x, 0.5), x, 0.5)
    with pytest.raises(ValueError, match="probs must hold probabilities"):
        path.velocity(probs * 1.2, x, 0.5)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        D.sample(oracle, path, x, steps=0)
    with pytest.raises(ValueError, match="steps must be a positive int, got -1"):
        D.euler_law(oracle, path, 2, steps=-1)
    with pytest.raises(ValueError, match="t must lie in"):
        path.sample_given(SMALL, 1.5)
    with pytest.raises(ValueError, match="t must lie in"):
        path.velocity(probs, x, torch.tensor([1.2]))
    with pytest.raises(ValueError, match="source must be one of"):
        D.MixturePath(8, "gaussian")
    with pytest.raises(ValueError, match="a posterior model must return logits of shape"):
        path.posterior(torch.zeros(1, 2, 9), x)

    class Overshoot(fm.KappaSchedule):
        def kappa(self, t):
            return t + 0.8 * torch.sin(math.pi * t)

        def d_kappa(self, t):
            return 1 + 0.8 * math.pi * torch.cos(math.pi * t)

    with pytest.raises(ValueError, match="kappa must rise from 0 to 1 and stay in"):
        D.MixturePath(8, "mask", Overshoot())
    with pytest.raises(TypeError, match="schedule must be a KappaSchedule"):
        D.MixturePath(8, "mask", fm.Cosine())
    uniform = D.MixturePath(8, "uniform")
    with pytest.raises(ValueError, match="corrector > 0 needs the mask source"):
        D.posterior_field(D.ExactPosterior(SMALL, uniform), uniform, corrector=1.0)


# --- declared contracts (issue 21): no plausible tokens from bad inputs or a diverged model -------------------

class _Const(torch.nn.Module):
    """A posterior 'model' with one fixed logit everywhere (a diverged network); declares its path."""

    def __init__(self, value, path):
        super().__init__()
        self.value, self.vocab_size, self.num_states, self.source = value, path.vocab_size, path.num_states, \
            path.source
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return torch.full((*x.shape, self.vocab_size), self.value) + 0 * self.w


def test_draw_refuses_rows_that_are_no_distribution():
    """NaN, inf, a negative weight or an all-zero row used to draw state 0 (or the negative state) silently."""
    good = torch.tensor([0.2, 0.3, 0.5])
    for bad, word in ((torch.tensor([float("nan"), 1.0, 1.0]), "NaN"), (torch.tensor([0.0, 0.0, 0.0]), "all zero"),
                      (torch.tensor([-1.0, 0.0, 2.0]), "negative"), (torch.tensor([0.0, float("inf"), 1.0]), "inf")):
        with pytest.raises(ValueError, match=f"probs must hold rows.*{word}"):
            D.draw(torch.stack([good, bad]))
    with pytest.raises(TypeError, match="probs must be a floating tensor"):
        D.draw(torch.tensor([[1, 2]]))
    assert D.draw(good[None].expand(5, 3), torch.Generator().manual_seed(0)).shape == (5,)


@pytest.mark.parametrize("value, source", [(float("nan"), "mask"), (float("-inf"), "mask"),
                                           (float("nan"), "uniform")])
def test_a_diverged_model_samples_no_tokens(value, source):
    """NaN or all -inf logits gave every token 0 (a 'valid' sample); now the sampler raises once, at its end."""
    path = D.MixturePath(4, source)
    with pytest.raises(ValueError, match="NaN or infinite|diverged"):
        D.sample(_Const(value, path), path, path.sample_source((16, 2)), steps=4,
                 generator=torch.Generator().manual_seed(0))


def test_the_token_space_checks_each_step_unless_deferred():
    x = torch.zeros(3, dtype=torch.long)
    rates = torch.tensor([[0.0, float("nan"), 1.0]] * 3)
    with pytest.raises(ValueError, match="diverged"):
        D.Categorical(3).step(x, rates)
    space = D.Categorical(3, deferred=True)
    space.step(x, rates)                      # no sync: recorded
    with pytest.raises(ValueError, match="3 token-steps"):
        space.check_draws()
    space.check_draws()                       # the flag is cleared
    assert D.Categorical(3) == D.Categorical(3, torch.Generator()) != D.Categorical(4)


def test_indices_and_bits_refuse_tokens_outside_the_vocabulary():
    """[0, 4] with V = 4 used to read the bits of [1, 0]; a negative token indexed from the end."""
    law = torch.full((16,), 1 / 16, dtype=torch.float64)
    for x in (torch.tensor([[0, 4]]), torch.tensor([[0, -1]])):
        with pytest.raises(ValueError, match="x1 must hold tokens in 0..3"):
            D.nll_bits(law, x, 4)
        with pytest.raises(ValueError, match="x must hold tokens in 0..3"):
            D.state_index(x, 4)
    with pytest.raises(ValueError, match="law must be a law over the V"):
        D.nll_bits(law[:8], torch.tensor([[0, 1]]), 4)
    path = D.MixturePath(4, "mask")
    table = D.tabulated(D.ExactPosterior(torch.tensor([[0, 1], [2, 3]]), path), path.num_states, 2)
    with pytest.raises(ValueError, match="x must hold tokens in 0..4"):
        table(torch.tensor([[0, 5]]), 0.5)
    torch.testing.assert_close(table(torch.tensor([[4, 1]]), 0.5)[0, 0].exp(), torch.tensor([1.0, 0, 0, 0]))
    assert D.state_index(torch.tensor([[1, 0]]), 4).item() == 4


def test_a_model_of_another_path_is_refused_naming_both():
    mask, uniform = D.MixturePath(4, "mask"), D.MixturePath(4, "uniform")
    model = D.TokenMLP(mask.num_states, 4, 2, embed=4, hidden=8, depth=1)
    assert (model.vocab_size, model.num_states, model.source) == (4, 5, "mask")
    x1 = torch.tensor([[0, 1], [2, 3]])
    for call in (lambda: D.sample(model, uniform, uniform.sample_source((3, 2)), steps=2),
                 lambda: D.elbo(model, uniform, x1, repeats=2),
                 lambda: D.euler_law(model, uniform, 2, steps=2),
                 lambda: D.model_law(model, uniform, 2, ode_steps=4)):
        with pytest.raises(ValueError, match=r"source='mask' \(the path's: 'uniform'\)"):
            call()
    with pytest.raises(ValueError, match="num_states=5 does not fit vocab_size=3"):
        D.TokenMLP(5, 3, 2)
    with pytest.raises(ValueError, match="num_states = 5 for source='mask'"):
        D.TokenConvNet(4, 4, side=2, source="mask")


def test_a_mask_model_without_the_extra_state_fails_before_training():
    """num_states=V on a mask path (the +1 forgotten) used to fail inside fm.train with 'IndexError: index out
    of range in self'; data tokens outside the vocabulary likewise."""
    path = D.MixturePath(4, "mask")
    model = D.TokenMLP(4, 4, 2, embed=4, hidden=8, depth=1)
    data = D.TokenData(torch.tensor([[0, 1], [2, 3]]))
    with pytest.raises(ValueError, match=r"num_states=4 \(the path's: 5\).*\+1 is the mask"):
        fm.train(model, D.DiscreteObjective(path, data), steps=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"data \(its table\) must hold tokens in 0..3"):
        D.DiscreteObjective(path, D.TokenData(torch.tensor([[0, 1], [2, 4]])))

    class Wild:
        def sample(self, n, generator=None, device=None):
            return torch.full((n, 2), 7)

    good = D.TokenMLP(path.num_states, 4, 2, embed=4, hidden=8, depth=1)
    with pytest.raises(ValueError, match=r"data \(a batch of data.sample\) must hold tokens in 0..3"):
        fm.train(good, D.DiscreteObjective(path, Wild()), steps=1, batch_size=4, progress=False)


def test_losses_are_named_right():
    """loss='kl' used to compute the generalized KL silently."""
    path = D.MixturePath(4, "mask")
    x = torch.tensor([[4, 1]])
    with pytest.raises(ValueError, match="loss must be one of.*named 'gkl'"):
        D.token_losses(path, torch.zeros(1, 2, 4), x, torch.tensor([[0, 1]]), torch.tensor([0.5]), loss="kl")
    with pytest.raises(ValueError, match="loss must be one of"):
        D.DiscreteObjective(path, D.TokenData(torch.tensor([[0, 1]])), loss="mse")


def test_mixture_path_sample_follows_the_path_interface_and_refuses_bad_input():
    path = D.MixturePath(4, "mask")
    x1 = torch.tensor([[0, 1], [2, 3]])
    ps = path.sample(path.sample_source((2, 2)), x1, 1.0)
    assert isinstance(ps, fm.PathSample) and torch.equal(ps.xt, x1) and ps.t.shape == (2,)
    assert path.space == D.Categorical(5)
    for x0, xx1, t, match in ((torch.full((2, 1), 4), x1, 0.5, "one shape"),
                              (path.sample_source((2, 2)), x1, 1.5, "t must lie in"),
                              (path.sample_source((2, 2)), x1, torch.tensor([0.5, -0.1]), "t must lie in"),
                              (path.sample_source((2, 2)), x1.float(), 0.5, "x1 must hold integer tokens"),
                              (path.sample_source((2, 2)), torch.tensor([[0, 4], [1, 1]]), 0.5,
                               "x1 must hold tokens in 0..3"),
                              (torch.full((2, 2), 5), x1, 0.5, "x0 must hold tokens in 0..4")):
        with pytest.raises((ValueError, TypeError), match=match):
            path.sample(x0, xx1, t)


def test_the_elbo_of_a_nan_model_is_refused():
    path = D.MixturePath(4, "mask")
    with pytest.raises(ValueError, match="ELBO came out NaN"):
        D.elbo(_Const(float("nan"), path), path, torch.tensor([[0, 1], [2, 3]]), repeats=2)
