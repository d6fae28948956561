"""Part II, Riemannian flow matching: manifolds as spaces (:mod:`fmlearn.spaces`) the one core trains and solves on.

============== ======
base           CompactManifold: what the sphere and the torus share (uniform source, point checks, equality)
sphere         the unit sphere S^{d-1} in R^d: tangent projection, exp and log maps, geodesics, uniform density
torus          the flat torus T^d in angles: wrapped difference, exp and log maps, geodesics, uniform density
ellipsoid      an ellipsoid in R^3 (no closed-form geodesics): normal, tangent projection, radial retraction and
               map to the sphere, area, uniform density; RadialImage, a sphere distribution carried onto it
distributions  targets with exact densities and samplers: vMF mixtures on S^2, wrapped-normal mixtures on T^d;
               the uniform source
paths          GeodesicPath: the geodesic conditional path on a manifold, from its uniform source by default
premetric      PremetricPath: Chen & Lipman's premetric conditional path, solved by the one solver core;
               RadialPremetric (the angle seen from the centre); PathBankObjective (train on a solved bank)
models         ProjectedVelocity: a Part I network on the embedded point, its output made tangent
plotting       3-D spheres and tori, map projections, the torus square with its seams, a time slider
============== ======

Training is :func:`fmlearn.train` on a :class:`fmlearn.CFMObjective` with a :class:`GeodesicPath` (the source
defaults to the manifold's uniform one); sampling is :func:`fmlearn.sample` and the likelihood
:func:`fmlearn.log_likelihood`, both on the model's own space (a :class:`ProjectedVelocity` declares it).
"""

from .base import CompactManifold
from .distributions import (ManifoldMixture, Uniform, VonMisesFisherMixture, WrappedNormalMixture, vmf_entropy,
                            vmf_log_normalizer)
from .ellipsoid import Ellipsoid, RadialImage
from .models import ProjectedVelocity
from .paths import GeodesicPath, geodesic
from .premetric import PathBankObjective, PremetricPath, RadialPremetric, descent_field
from .sphere import Sphere
from .torus import FlatTorus

__all__ = ["CompactManifold", "Ellipsoid", "FlatTorus", "GeodesicPath", "ManifoldMixture", "PathBankObjective",
           "PremetricPath", "ProjectedVelocity", "RadialImage", "RadialPremetric", "Sphere", "Uniform",
           "VonMisesFisherMixture", "WrappedNormalMixture", "descent_field", "geodesic", "vmf_entropy",
           "vmf_log_normalizer"]
