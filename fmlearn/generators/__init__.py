"""Part II, generator matching: generators of flows, diffusions and jumps (chapter 10; empty for now).

Its processes will step through the same core as every other sampler (:mod:`fmlearn.stepping`,
:func:`fmlearn.odeint`) with a space (:mod:`fmlearn.spaces`) that applies their increments.
"""

__all__: list[str] = []
