"""Part II, discrete flow matching: token states and the jumps of continuous-time Markov chains.

categorical   the space of one token among S states: a solver's step is a jump
"""

from .categorical import Categorical

__all__ = ["Categorical"]
