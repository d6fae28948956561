"""Explorers and animations: one :class:`Explorer` (sliders over figures drawn in advance) that shows itself as
a self-contained HTML slider, in JupyterLab as on a web page (so a saved notebook reopens showing it), each with a
one-line "what to look at", a title and alt text that follow the sliders, and a static fallback. One module per topic, each adding the explorers of its chapters:

- ``paths``: chapter 2's probability-path explorer (schedule x t) and its static grid;
- ``sampling``: chapters 1, 3 and 7 (the flow as an animation, solver steps, the SDE's noise level);
- ``couplings``: chapter 5 (Sinkhorn's epsilon beside the plan); ``guidance``: chapter 6 (the guidance scale);
- ``discrete``: chapter 8 (tokens jumping); ``manifolds``: chapter 9 (the flow on the sphere);
- ``generators``: chapter 10 (the superposition weight).
"""

from .explorer import Explorer
from .paths import *  # noqa: F401,F403
from .sampling import *  # noqa: F401,F403
from .couplings import *  # noqa: F401,F403
from .guidance import *  # noqa: F401,F403
from .discrete import *  # noqa: F401,F403
from .manifolds import *  # noqa: F401,F403
from .generators import *  # noqa: F401,F403
from . import couplings, discrete, generators, guidance, manifolds, paths, sampling  # noqa: F401
