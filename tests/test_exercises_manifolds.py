"""The checks of chapter 9's exercises: each accepts the reference answer and rejects plausible wrong ones with
the hint that names the slip."""

import math

import pytest
import torch

from fmlearn.exercises import ExerciseCheckError
from fmlearn.exercises.checks_manifolds import (check_geodesic_velocity, check_sphere_maps, check_tangent_projection,
                                                check_wrapped_difference)


def _dot(a, b):
    return (a * b).sum(1, keepdim=True)


def _exp(x, v):
    n = v.norm(dim=1, keepdim=True)
    return torch.cos(n) * x + torch.sin(n) * v / n.clamp_min(1e-12)


def _log(x, y):
    w = y - _dot(x, y) * x
    return torch.arccos(_dot(x, y).clamp(-1, 1)) * w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def test_check_sphere_maps(capsys):
    assert check_sphere_maps(_exp, _log)
    assert capsys.readouterr().out.startswith("OK")


@pytest.mark.parametrize("exp, log, hint", [
    (_exp, lambda x, y: y - x, "chord through the ball"),
    (_exp, lambda x, y: y - _dot(x, y) * x, "its length is sin"),
    (_exp, lambda x, y: _log(x, y) / 2, "great-circle distance"),
    (lambda x, v: torch.cos(v.norm(dim=1, keepdim=True)) * x + torch.sin(v.norm(dim=1, keepdim=True)) * v, _log,
     "unit vector v / |v|"),
    (lambda x, v: (x + v) / (x + v).norm(dim=1, keepdim=True), _log, "follows the great circle"),
    (lambda x, v: torch.cos(v.norm(dim=1, keepdim=True)) * x
     + torch.sin(v.norm(dim=1, keepdim=True)) * v / v.norm(dim=1, keepdim=True), _log, "0 / 0 at v = 0"),
])
def test_check_sphere_maps_rejects(exp, log, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*hint: .*{hint}"):
        check_sphere_maps(exp, log)


def test_check_tangent_projection_catches_the_missing_division():
    assert check_tangent_projection(lambda x, v: v - _dot(x, v) / _dot(x, x) * x)
    with pytest.raises(ExerciseCheckError, match=r"(?s)\|x\| = 2.*hint: you dropped the division by \|x\|\^2"):
        check_tangent_projection(lambda x, v: v - _dot(x, v) * x)
    with pytest.raises(ExerciseCheckError, match="hint: P.x. v = v - <x, v> x / |x|"):
        check_tangent_projection(lambda x, v: v - _dot(x, v) / _dot(x, x))  # forgot the factor x


def _velocity(x0, x1, t):
    v = _log(x0, x1)
    th = v.norm(dim=1, keepdim=True)
    return torch.cos(t * th) * v - th * torch.sin(t * th) * x0


def test_check_geodesic_velocity():
    assert check_geodesic_velocity(_velocity)
    with pytest.raises(ExerciseCheckError, match="hint: log_.x0..x1. is the velocity at t = 0 only"):
        check_geodesic_velocity(lambda x0, x1, t: _log(x0, x1))
    with pytest.raises(ExerciseCheckError, match=r"(?s)at t = 1 is not finite.*hint: log_\{x_t\}\(x1\) / \(1 - t\)"):
        check_geodesic_velocity(lambda x0, x1, t: _log(_exp(x0, t * _log(x0, x1)), x1) / (1 - t)
                                if t < 1 else torch.full_like(x0, float("nan")))
    with pytest.raises(ExerciseCheckError, match="differentiate x_t"):
        check_geodesic_velocity(lambda x0, x1, t: -_velocity(x0, x1, t))


def test_check_geodesic_velocity_names_the_division_by_zero_at_t_1():
    """Written as log_{x_t}(x1) / (1 - t), the division by zero at t = 1 gives NaN or inf: the hint says so."""
    def via_log(x0, x1, t):
        with torch.no_grad():
            return _log(_exp(x0, t * _log(x0, x1)), x1) / torch.tensor(1 - t, dtype=x0.dtype)
    with pytest.raises(ExerciseCheckError, match="(?s)not finite|NaN or inf"):
        check_geodesic_velocity(via_log)


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, y: y - x, "long way round"),
    (lambda x, y: torch.remainder(x - y + math.pi, 2 * math.pi) - math.pi, "you have x - y"),
    (lambda x, y: torch.remainder(y - x, 2 * math.pi), r"shift by pi"),
    (lambda x, y: torch.remainder(y - x + math.pi, 2 * math.pi), r"wrap each entry"),
])
def test_check_wrapped_difference(wrong, hint):
    assert check_wrapped_difference(lambda x, y: torch.remainder(y - x + math.pi, 2 * math.pi) - math.pi)
    with pytest.raises(ExerciseCheckError, match=f"hint: .*{hint}"):
        check_wrapped_difference(wrong)


def _chord(x, y):
    """A wrong task-1 log: the direction is right, the length is sin(theta), not theta."""
    return y - _dot(x, y) * x


def _velocity_on(log):
    def velocity(x0, x1, t):
        v = log(x0, x1)
        th = v.norm(dim=1, keepdim=True)
        return torch.cos(t * th) * v - th * torch.sin(t * th) * x0

    return velocity


def test_a_right_velocity_on_a_wrong_log_passes_and_the_log_is_named(capsys):
    """The derivative is task 3; the log is task 1. A right derivative built on a wrong log passes, with a verdict
    that names the log; a wrong derivative on it is judged against the learner's own curve, and the hint says that
    task 1 is wrong too, not only the derivative."""
    with pytest.raises(ExerciseCheckError):  # without the learner's log: a wrong log looks like a wrong derivative
        check_geodesic_velocity(_velocity_on(_chord))
    assert check_geodesic_velocity(_velocity_on(_chord), _chord)
    assert "your sphere_log (task 1) is wrong" in capsys.readouterr().out
    assert check_geodesic_velocity(_velocity, _log)
    with pytest.raises(ExerciseCheckError, match=r"(?s)derivative of the curve built on your sphere_log at t = 0\.4.*"
                       r"hint: log_.x0..x1. is the velocity at t = 0 only.*your sphere_log \(task 1\) differs"):
        check_geodesic_velocity(lambda x0, x1, t: _chord(x0, x1), _chord)
    with pytest.raises(ExerciseCheckError, match="returns 0 for points that differ"):  # no free pass on a null log
        check_geodesic_velocity(lambda x0, x1, t: torch.zeros_like(x0), lambda x, y: torch.zeros_like(x))


def test_failures_show_the_worst_row():
    """The row shown is the one that is wrong, not row 0 (here right)."""
    def one_row_wrong(x, y):
        out = torch.remainder(y - x + math.pi, 2 * math.pi) - math.pi
        out[7] += 1.0
        return out

    with pytest.raises(ExerciseCheckError, match=r"expected: .*\(row 7 of a \(12, 2\) tensor, where they differ most"):
        check_wrapped_difference(one_row_wrong)

    def exp_wrong_in_row_5(x, v):
        out = _exp(x, v)
        out[5] = -out[5]
        return out

    with pytest.raises(ExerciseCheckError, match=r"got: .*\(row 5 of a \(8, 3\) tensor"):
        check_sphere_maps(exp_wrong_in_row_5, _log)
