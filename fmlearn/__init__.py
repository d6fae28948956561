"""fmlearn: the companion package of the flow matching course.

One module per idea, in the course's order:

============= ======
config        budget (FMLEARN_QUICK), device (FMLEARN_DEVICE), seeding
distributions Gaussian, GaussianMixture: exact sample, log_prob, score; PairedData (fixed pairs, for reflow)
toys          moons, 8 Gaussians, checkerboard, two spirals (samplers)
schedules     alpha_t / beta_t schedules: CondOT, sqrt, cosine, polynomial, VP, VE; the convex (kappa) family
paths         the affine Gaussian conditional path and its velocity; the geodesic path of a space (chapter 9)
oracle        exact marginal velocity and score of a mixture target
models        velocity networks called as model(x, t, **cond)
objectives    what training minimises: the CFM regression on a path, cross-entropy of a categorical model
training      the one training loop (Adam, cosine decay, EMA, mixed precision, checkpoints) for any objective
stepping      the time-stepping core: the Solution type, time grids, tuple states, fixed-step steppers
spaces        where a state lives: how an increment is applied (x + dx in R^d), tangent projection, exp/log, distance
adaptive      the adaptive Dormand-Prince 5(4) method with error control
solvers       one entry point, odeint(method=...), fixed-step and adaptive; sampling a velocity model;
              a process's Step (flow_step; the jump steps of generators) run by simulate
sde           SDE samplers with the flow's marginals (Euler-Maruyama), Langevin corrector
couplings     minibatch OT couplings (exact, Sinkhorn) under a space's cost, the one exact assignment solver,
              straightness, path energy, reflow pairs
guidance      classifier-free guidance: the guided velocity, guided sampling, an exact conditional oracle
digits        scikit-learn's 8x8 digits (split, labelled sampler), a digits classifier, per-class distances
metrics       energy distance and exact W2 (under a space's distance) with their floors, mode fractions
flowmaps      the exact flow map X_{s->t} of a velocity, the average velocity, a flow-map network and its step;
              in flowmap_objectives, the MeanFlow, shortcut and distillation objectives that train it (chapter 11)
plotting      the course's figures
widgets       the interactive path explorer (a static grid without a kernel)
============= ======

Part II, in namespaces that plug into the same core (objectives + train, stepping + solvers, spaces):

============= ======
discrete      token spaces whose solver step is a CTMC jump; mixture paths (mask or uniform source), posterior
              networks, cross-entropy and generalized-KL objectives, the Euler sampler and corrector, the ELBO,
              exact posteriors and exact laws on small state spaces, classical baselines (chapter 8)
manifolds     the sphere and the flat torus as spaces (projection, exp and log, geodesics, uniform density),
              vMF and wrapped-normal mixtures with exact densities, a projected velocity network (chapter 9)
generators    generators of flows, diffusions, jumps and CTMCs; Bregman losses; jump processes in R^d,
              a learned jump model, the Markov superposition of a flow and jumps (chapter 10)
============= ======
"""

import os as _os
import sys as _sys

# CPU threads (README, "Threads"): OpenMP worker threads that busy-wait between the many small kernels of
# the course's models slow training ~100x as soon as anything else runs on a small machine. Sleeping
# workers (OMP_WAIT_POLICY=PASSIVE) fix it, but OpenMP reads the setting once, when torch loads it.
_TORCH_WAS_LOADED = "torch" in _sys.modules
if not _TORCH_WAS_LOADED:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import budget, describe, get_device, is_quick, seed_everything, show_progress, threads_note  # noqa: E402
from .couplings import (OTCoupling, SinkhornCoupling, optimal_assignment, ot_plan_exact, path_energy, reflow_pairs,
                        sinkhorn_plan, squared_distances, straightness)
from .digits import DigitClassifier, Digits, class_energy_distances, load_digits, train_classifier
from .distributions import Gaussian, GaussianMixture, PairedData, Sampleable
from .likelihood import bits_per_dim, divergence_exact, divergence_hutchinson, log_likelihood
from .metrics import (energy_distance, energy_distance_floor, energy_distance_mode_matched,
                      energy_distance_mode_matched_floor, energy_distance_to, fraction_near_modes,
                      fraction_near_modes_exact, mode_fractions, velocity_error, w2_distance, w2_floor,
                      w2_mode_matched)
from .guidance import ConditionalMixtureOracle, GuidedVelocity, guided_sample, guided_velocity
from .models import MLP, ConditionalMLP, TinyUNet
from .oracle import MixtureOracle
from .paths import AffineGaussianPath, GeodesicPath, PathSample
from .schedules import VE, VP, CondOT, Cosine, KappaSchedule, Polynomial, Schedule, Sqrt, get_schedule
from .solvers import Step, flow_step, odeint, sample, simulate
from .sde import diffusion_noise, langevin_step, sde_sample
from .spaces import Euclidean
from .stepping import Solution, check_grid, time_grid
from .toys import Checkerboard, EightGaussians, Moons, TwoSpirals
from .objectives import CFMObjective, CrossEntropyObjective, cfm_loss, logit_normal_time, uniform_time
from .flowmaps import FlowMapMLP, average_velocity, flow_map, flow_map_step, map_agreement, sample_flow_map
from .flowmap_objectives import (DistillationObjective, MeanFlowObjective, ShortcutObjective, meanflow_target,
                                 sample_time_pairs)
from .training import NonFiniteLossError, TrainResult, load_checkpoint, save_checkpoint, train
from . import discrete, generators, manifolds  # noqa: E402  the Part II namespaces: fm.discrete.Categorical, ...

__version__ = "0.1.0"

# What ``from fmlearn import *`` gives: the objects above, not the submodules (whose names, such as paths,
# models or training, a notebook often uses for its own variables). Grouped as imported.
__all__ = [
    "budget", "describe", "get_device", "is_quick", "seed_everything", "show_progress", "threads_note",
    "OTCoupling", "SinkhornCoupling", "optimal_assignment", "ot_plan_exact", "path_energy", "reflow_pairs",
    "sinkhorn_plan", "squared_distances", "straightness",
    "DigitClassifier", "Digits", "class_energy_distances", "load_digits", "train_classifier",
    "Gaussian", "GaussianMixture", "PairedData", "Sampleable",
    "bits_per_dim", "divergence_exact", "divergence_hutchinson", "log_likelihood",
    "energy_distance", "energy_distance_floor", "energy_distance_mode_matched", "energy_distance_mode_matched_floor",
    "energy_distance_to", "fraction_near_modes", "fraction_near_modes_exact", "mode_fractions", "velocity_error",
    "w2_distance", "w2_floor", "w2_mode_matched",
    "ConditionalMixtureOracle", "GuidedVelocity", "guided_sample", "guided_velocity",
    "MLP", "ConditionalMLP", "TinyUNet",
    "MixtureOracle",
    "AffineGaussianPath", "GeodesicPath", "PathSample",
    "VE", "VP", "CondOT", "Cosine", "KappaSchedule", "Polynomial", "Schedule", "Sqrt", "get_schedule",
    "Step", "flow_step", "odeint", "sample", "simulate",
    "diffusion_noise", "langevin_step", "sde_sample",
    "Euclidean",
    "Solution", "check_grid", "time_grid",
    "Checkerboard", "EightGaussians", "Moons", "TwoSpirals",
    "CFMObjective", "CrossEntropyObjective", "cfm_loss", "logit_normal_time", "uniform_time",
    "NonFiniteLossError", "TrainResult", "load_checkpoint", "save_checkpoint", "train",
    "FlowMapMLP", "average_velocity", "flow_map", "flow_map_step", "map_agreement", "sample_flow_map",
    "DistillationObjective", "MeanFlowObjective", "ShortcutObjective", "meanflow_target", "sample_time_pairs",
]

if _TORCH_WAS_LOADED and threads_note().startswith("busy"):
    import warnings as _warnings

    _warnings.warn("torch was imported before fmlearn without OMP_WAIT_POLICY=PASSIVE, so its idle CPU threads "
                   "busy-wait and training can run ~100x slower while anything else uses the CPU. Import fmlearn "
                   "first, or start Python with OMP_WAIT_POLICY=PASSIVE (make lab and make test do).", stacklevel=2)
