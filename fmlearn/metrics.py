"""Sample-quality measures: a two-sample distance with its noise floor, and mode fractions.

Energy distance between samples X (n) and Y (m), the V-statistic

    E(X, Y) = 2 mean_ij |x_i - y_j| - mean_ij |x_i - x_j| - mean_ij |y_i - y_j|,

is >= 0 and zero in expectation only as n, m grow. Two independent sets of n
samples drawn from the same distribution still give a positive value, 2 E|X - X'| / n
on average: the *floor*. A model is as good as this measure can tell when its
distance to true samples is within a small factor of that floor. Single values
scatter widely around the floor (a heavy right tail), so compare averages.

The two-sample distances (energy distance, exact W2) take a ``space`` (:mod:`fmlearn.spaces`) whose
pairwise distances ``space.cdist`` they use; the default is Euclidean, |x - y| over all data dimensions.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._checks import check_points, check_real, model_context
from .couplings import optimal_assignment
from .distributions import GaussianMixture, Sampleable
from .oracle import MixtureOracle
from .spaces import EUCLIDEAN, Space, check_metric_space


def _mean_pairwise_distance(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048, space=EUCLIDEAN) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, a.shape[0], chunk):
        total += space.cdist(a[i:i + chunk], b).double().sum()
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: torch.Tensor, y: torch.Tensor, space: Space | None = None) -> float:
    """The energy distance (V-statistic) between sample sets x (n, d) and y (m, d), with the distances of
    ``space`` (default Euclidean)."""
    space = check_metric_space(space)
    x = check_points("x", x).double()
    y = check_points("y", y, x.shape[1]).to(x)
    if callable(getattr(space, "check_points", None)):  # on a manifold: points off it have no distances
        x, y = space.check_points("x", x), space.check_points("y", y)
    return float(2 * _mean_pairwise_distance(x, y, space=space) - _mean_pairwise_distance(x, x, space=space)
                 - _mean_pairwise_distance(y, y, space=space))


def energy_distance_floor(dist: Sampleable, n: int, n_ref: int = 5000,
                          generator: torch.Generator | None = None) -> float:
    """The expected energy distance between two independent sets of ``n`` samples
    of ``dist``: what a perfect model scores on average.

    For the V-statistic, E[mean_ij |x_i - x_j|] = (n - 1) / n * delta with
    delta = E|X - X'|, so the expectation is 2 delta / n. delta is estimated
    from two independent sets of ``n_ref`` samples (n_ref^2 pairs).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    a = dist.sample(n_ref, generator=generator).double()
    b = dist.sample(n_ref, generator=generator).double()
    return float(2 * _mean_pairwise_distance(a, b) / n)


def energy_distance_to(dist: Sampleable, x: torch.Tensor, repeats: int = 4,
                       generator: torch.Generator | None = None) -> float:
    """Mean energy distance between samples ``x`` (n, d) and ``repeats`` fresh sets
    of n true samples: averaging over reference sets removes most of their noise,
    so what remains is the model's (compare with :func:`energy_distance_floor`)."""
    x = check_points("x", x)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    return sum(energy_distance(x, dist.sample(x.shape[0], generator=generator)) for _ in range(repeats)) / repeats


def mode_fractions(mixture: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose most probable component is k, shape (K,).

    Each sample goes to argmax_k p(k | x), the Bayes assignment under the mixture.
    """
    x = check_points("x", x, mixture.dim)
    labels = mixture.component_log_probs(x.float().cpu()).argmax(dim=1)
    return torch.bincount(labels, minlength=mixture.n_components).double() / x.shape[0]


def fraction_near_modes(mixture: GaussianMixture, x: torch.Tensor, n_std: float = 4.0) -> float:
    """Fraction of samples within ``n_std`` standard deviations of some mode's mean
    (samples stranded between modes count against a model)."""
    check_real("n_std", n_std, positive=True)
    x = check_points("x", x, mixture.dim).float().cpu()
    z = (x[:, None, :] - mixture.means[None]) / mixture.stds[None]
    return float((z.norm(dim=-1).min(dim=1).values <= n_std).double().mean())


def fraction_near_modes_exact(mixture: GaussianMixture, n_std: float = 2.5) -> float:
    """What :func:`fraction_near_modes` gives for true samples of ``mixture``, in the limit of many samples.

    A sample of component k lies within ``n_std`` of mode k with probability
    P(chi^2_D <= n_std^2) = regularized_gamma(D/2, n_std^2 / 2) (D the dimension). It can also
    land near another mode, which this ignores, so the value is a lower bound; on the 11-mode
    target (neighbours 5.6 std apart) at n_std = 2.5 it is 0.956 against 0.957 measured on 400,000
    true samples. Only isotropic components (one std per component) are supported.
    """
    if not (mixture.stds == mixture.stds[:, :1]).all():
        raise ValueError("fraction_near_modes_exact needs isotropic components (one std per component)")
    if not n_std > 0:
        raise ValueError(f"n_std must be > 0, got {n_std!r}")
    from scipy.special import gammainc

    return float(gammainc(mixture.dim / 2, n_std ** 2 / 2))


def _mode_matched_reference(mixture: GaussianMixture, x: torch.Tensor, generator) -> torch.Tensor:
    """True samples with as many points in each component as x has (x_i assigned to its most probable one)."""
    counts = torch.bincount(mixture.component_log_probs(x).argmax(1), minlength=mixture.n_components)
    labels = torch.repeat_interleave(torch.arange(mixture.n_components), counts)
    return mixture.means[labels] + mixture.stds[labels] * torch.randn(len(labels), mixture.dim, generator=generator)


def energy_distance_mode_matched(mixture: GaussianMixture, x: torch.Tensor, repeats: int = 4,
                                 generator: torch.Generator | None = None) -> float:
    """Mean energy distance between samples x (n, d) and ``repeats`` sets of true samples drawn with the
    same number of points in each component as x (as in :func:`w2_mode_matched`).

    On a mixture of well separated modes most of the plain energy distance's scatter comes from the
    random split of n points among the modes (a perfect set of 2,000 points lands anywhere between
    0.5 and 2.8 times the floor); matching the counts removes that part, so what is left measures the
    *shape* of the modes (a ring, blurred or shifted modes). Judge the split itself with
    :func:`mode_fractions`. Compare with :func:`energy_distance_mode_matched_floor`.
    """
    x = check_points("x", x, mixture.dim).detach().float().cpu()
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    return sum(energy_distance(x, _mode_matched_reference(mixture, x, generator)) for _ in range(repeats)) / repeats


def energy_distance_mode_matched_floor(mixture: GaussianMixture, n: int, repeats: int = 4, draws: int = 4,
                                       generator: torch.Generator | None = None) -> float:
    """What a perfect model scores in :func:`energy_distance_mode_matched` with n samples: the mean over
    ``draws`` sets of n true samples (each scored with ``repeats`` references, as the model is)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    return sum(energy_distance_mode_matched(mixture, mixture.sample(n, generator=generator), repeats, generator)
               for _ in range(draws)) / draws


def velocity_error(model: Callable[..., torch.Tensor], oracle: MixtureOracle, t: float, n: int = 4000,
                   generator: torch.Generator | None = None) -> tuple[float, float]:
    """How far a learned velocity is from the exact one at time t, on n samples x ~ p_t.

    Returns (relative, rms): ||u_theta - u_t|| / ||u_t|| (norms over all n samples) and
    sqrt(mean_i |u_theta(x_i) - u_t(x_i)|^2). The relative error is meaningless where
    u_t itself nearly vanishes (for the 11-mode target, near t = 0.02); use rms there.
    ``oracle`` is a :class:`~fmlearn.oracle.MixtureOracle`; the model runs on its own device.
    """
    x = oracle.marginal(t).sample(n, generator=generator)
    exact = oracle.velocity(x, t)
    with model_context(model, x) as (net, x_model):
        learned = net(x_model, t).float().cpu()
    diff = learned - exact
    return float(diff.norm() / exact.norm()), float(diff.pow(2).sum(1).mean().sqrt())


def w2_distance(x: torch.Tensor, y: torch.Tensor, space: Space | None = None) -> float:
    """The exact 2-Wasserstein distance between two equal-size sample sets x, y of shape (n, *shape):

        W2(x, y) = sqrt( min_sigma (1/n) sum_i d(x_i, y_sigma(i))^2 ),

    d the distance of ``space`` (default Euclidean, |x_i - y_j| over all data dimensions), the minimum over
    permutations sigma, i.e. the optimal transport between the two empirical measures (a linear assignment
    problem, solved exactly by :func:`fmlearn.couplings.optimal_assignment`; O(n^3), fine up to a few
    thousand points). On the real line (one data dimension, Euclidean) the optimal permutation pairs the
    sorted samples, which is exact and O(n log n). Like the energy distance it is positive for two sets from
    the same distribution: compare with :func:`w2_floor`.
    """
    x, y = _equal_sets(x, y)
    if space is None and x[0].numel() == 1:
        return float((x.flatten().sort().values - y.flatten().sort().values).double().pow(2).mean().sqrt())
    cost = check_metric_space(space).cdist(x, y).pow(2)
    cols = optimal_assignment(cost)
    return float(cost.numpy()[torch.arange(len(cols)).numpy(), cols.numpy()].mean() ** 0.5)


def w2_floor(dist: Sampleable, n: int, repeats: int = 4, generator: torch.Generator | None = None) -> float:
    """The mean exact W2 between two independent sets of ``n`` samples of ``dist`` (over ``repeats`` pairs):
    what a perfect model scores at this sample size."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    return sum(w2_distance(dist.sample(n, generator=generator), dist.sample(n, generator=generator))
               for _ in range(repeats)) / repeats


def w2_mode_matched(mixture: GaussianMixture, x: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """Exact W2 between samples x (n, d) and true samples of ``mixture`` drawn with the same number of
    points in each component as x has (each x_i assigned to its most probable component).

    The plain two-sample W2 on a well-separated mixture is dominated by the random split of points
    among the modes (the few points that must travel between modes), so it scatters too widely to
    test small differences; matching the counts removes that part and leaves the shapes of the
    modes. Judge the mode weights separately (:func:`mode_fractions`).
    """
    x = check_points("x", x, mixture.dim).detach().float().cpu()
    return w2_distance(x, _mode_matched_reference(mixture, x, generator))


def _equal_sets(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sample sets of one shape (n, *data), flattened, detached, float64 on the CPU, checked finite."""
    for name, v in (("x", x), ("y", y)):
        if not isinstance(v, torch.Tensor) or v.ndim < 2 or v.shape[0] < 1:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name} must be a tensor of shape (n, *data_shape), got {shape}")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (equal-size sets), got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    x, y = x.detach().flatten(1).double().cpu(), y.detach().flatten(1).double().cpu()
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    return x, y
