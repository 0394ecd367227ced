"""bayescale: Bayesian neural scaling laws, fast.

Fit parametric scaling laws (Kaplan, Chinchilla, power laws with irreducible loss, your own) to
training runs with NumPyro NUTS, forecast large runs with credible intervals, and read the
diagnostics that tell you whether to trust them.

>>> import bayescale as bs
>>> data = bs.datasets.chinchilla_synthetic(seed=0)
>>> fit = bs.fit(data, law="chinchilla")                  # doctest: +SKIP
>>> fit.predict(N=70e9, D=1.4e12, prob=0.9)               # doctest: +SKIP
"""

import jax as _jax

# float64 by default: power laws span 1e6..1e27 and posteriors are ill-conditioned. Inputs are
# converted to float64 NumPy logs before they reach JAX; float32 is an explicit opt-in of fit().
_jax.config.update("jax_enable_x64", True)


def _import_tqdm_auto() -> None:
    # NumPyro imports tqdm.auto, which in a notebook without ipywidgets warns "IProgress not
    # found" at import: a warning about nothing the user did, in every notebook's first cell.
    # Import it first with that warning silenced: it then is the text bar there, for NumPyro's
    # bars and bayescale's alike.
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import tqdm.auto  # noqa: F401


_import_tqdm_auto()

from . import check, datasets, laws  # noqa: E402
from ._fit import fit  # noqa: E402
from .batch import BatchFit, fit_many, load_batch  # noqa: E402
from .compare import LOOWarning, compare, holdout_split  # noqa: E402
from .data import (  # noqa: E402
    DataError,
    DataWarning,
    ScalingData,
    as_scaling_data,
    from_arrays,
    from_dataframe,
    read_csv,
)
from .infer.optimize import (  # noqa: E402
    OptimizationWarning,
    PointFit,
    UnconvergedOptimumError,
    hoffmann_starts,
    huber_objective_hoffmann,
    optimize,
)
from .laws import Law, Parameter, UnknownLawError  # noqa: E402
from .model import ModelError, build_model  # noqa: E402
from .pooling import PooledBatchFit, PoolingError  # noqa: E402
from .results import (  # noqa: E402
    Convergence,
    ConvergenceWarning,
    ExtrapolationWarning,
    Fit,
    IntervalWarning,
    UnconvergedError,
    __version__,
    load,
)

__all__ = [
    "BatchFit",
    "Convergence",
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "ExtrapolationWarning",
    "Fit",
    "IntervalWarning",
    "LOOWarning",
    "Law",
    "ModelError",
    "OptimizationWarning",
    "Parameter",
    "PointFit",
    "PooledBatchFit",
    "PoolingError",
    "ScalingData",
    "UnconvergedError",
    "UnconvergedOptimumError",
    "UnknownLawError",
    "__version__",
    "as_scaling_data",
    "build_model",
    "check",
    "compare",
    "datasets",
    "fit",
    "fit_many",
    "from_arrays",
    "from_dataframe",
    "hoffmann_starts",
    "holdout_split",
    "huber_objective_hoffmann",
    "laws",
    "load",
    "load_batch",
    "optimize",
    "read_csv",
]
