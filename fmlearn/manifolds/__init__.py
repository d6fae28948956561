"""Part II, Riemannian flow matching: manifolds as spaces (:mod:`fmlearn.spaces`) the solvers step on.

sphere   the unit sphere S^{d-1} in R^d: tangent projection, exp and log maps, geodesic distance
"""

from .sphere import Sphere

__all__ = ["Sphere"]
