"""fmlearn: the companion package of the flow matching course.

One module per idea, in the course's order:

config        budget (FMLEARN_QUICK), device (FMLEARN_DEVICE), seeding
distributions Gaussian, GaussianMixture: exact sample, log_prob, score
toys          moons, 8 Gaussians, checkerboard, two spirals (samplers)
schedules     alpha_t / beta_t schedules: CondOT, sqrt, cosine, VP
paths         the affine Gaussian conditional path and its velocity
oracle        exact marginal velocity and score of a mixture target
models        velocity networks called as model(x, t, **cond)
training      the CFM loss, the training loop, checkpoints
solvers       fixed-step ODE solvers and sampling
metrics       energy distance and its floor, mode fractions
plotting      the course's figures
"""

from .config import budget, describe, get_device, is_quick, seed_everything
from .distributions import Gaussian, GaussianMixture, Sampleable
from .metrics import energy_distance, energy_distance_floor, energy_distance_to, fraction_near_modes, mode_fractions
from .models import MLP
from .oracle import MixtureOracle
from .paths import AffineGaussianPath, PathSample
from .schedules import VP, CondOT, Cosine, Schedule, Sqrt, get_schedule
from .solvers import ODESolution, odeint, sample, time_grid
from .toys import Checkerboard, EightGaussians, Moons, TwoSpirals
from .training import NonFiniteLossError, TrainResult, cfm_loss, load_checkpoint, save_checkpoint, train

__version__ = "0.1.0"
