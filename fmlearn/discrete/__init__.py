"""Part II, discrete flow matching (chapter 8): tokens, the jumps of continuous-time Markov chains, and the
mixture paths that carry a source to data token by token.

categorical   the space of one token among S states: a solver's step is a jump with probability 1 - exp(-h lambda)
paths         the mixture path (mask or uniform source, kappa schedule), posterior from logits, the velocity
models        TokenMLP: a posterior network model(x_t, t) -> logits over the data values
objectives    cross-entropy and generalized-KL objectives for fmlearn.train; TokenData
sampling      the discrete Euler sampler through fmlearn.odeint, the final jump at t = 1, the corrector
elbo          the ELBO in bits with its standard error (plain and masked estimators)
exact         the exact posterior of a known target (oracle); exact laws of the chain (forward equation, Euler)
baselines     per-position categorical and EM mixture of product categoricals (held-out bits)
data          the chapter's data as tokens: checkerboard, digits (17 grey levels), dates and their exact posterior
"""

from . import baselines, data
from .categorical import Categorical, draw, invalid_rows, jump_chance, jump_probabilities
from .elbo import ELBOEstimate, elbo
from .exact import (ExactPosterior, JointLaw, Tabulated, all_states, euler_law, generator_matrix, marginal_law,
                    model_law, nll_bits, source_law, state_index, tabulated)
from .models import TokenConvNet, TokenMLP
from .objectives import DiscreteObjective, TokenData, token_losses
from .paths import MixturePath, check_path, check_probabilities, check_tokens
from .sampling import corrector_rates, final_jump, posterior_field, sample

__all__ = ["Categorical", "draw", "invalid_rows", "jump_chance", "jump_probabilities", "ELBOEstimate", "elbo",
           "ExactPosterior", "JointLaw", "Tabulated", "all_states", "euler_law", "generator_matrix", "marginal_law",
           "model_law", "nll_bits", "source_law", "state_index", "tabulated", "TokenConvNet", "TokenMLP",
           "DiscreteObjective", "TokenData", "token_losses", "MixturePath", "check_path", "check_probabilities",
           "check_tokens", "corrector_rates", "final_jump", "posterior_field", "sample"]
