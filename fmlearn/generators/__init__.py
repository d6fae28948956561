"""Part II, generator matching: flows, diffusions and jumps as one idea (chapter 10).

=========== ======
generators  the generator L_t f of a flow, a diffusion, a jump process and a CTMC, applied to test functions
bregman     Bregman divergences, the losses of generator matching: squared norm, generalized KL
jumps       the conditional jump process of the CondOT path (intensity, kernel, exact landing draws),
            a learned jump model over bins and its objective
markov      the Euler step of a jump process and the Markov superposition of steps, for the one time loop
            (:func:`fmlearn.simulate`, with :func:`fmlearn.flow_step`)
=========== ======
"""

from .bregman import bregman, generalized_kl, squared_norm
from .generators import CTMCGenerator, DiffusionGenerator, FlowGenerator, JumpGenerator
from .jumps import (ConditionalJumps, JumpModel, JumpObjective, JumpRates, condot_density, condot_density_rate,
                    condot_intensity, condot_kernel_mass, condot_kernel_sample)
from .markov import jump_step, superpose, superposition

__all__ = ["CTMCGenerator", "ConditionalJumps", "DiffusionGenerator", "FlowGenerator", "JumpGenerator", "JumpModel",
           "JumpObjective", "JumpRates", "bregman", "condot_density", "condot_density_rate", "condot_intensity",
           "condot_kernel_mass", "condot_kernel_sample", "generalized_kl", "jump_step", "squared_norm",
           "superpose", "superposition"]
