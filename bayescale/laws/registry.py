"""Name -> law registry, and the way users add their own law."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from .base import Law, Parameter, _is_distribution
from .broken import bnsl_1, bnsl_1_c, bnsl_1_n, bnsl_2, bnsl_2_c, bnsl_2_n
from .chinchilla import chinchilla, kaplan_nd
from .datablations import datablations
from .overtraining import overtraining
from .power import kaplan_c, kaplan_d, kaplan_n, power_c, power_d, power_n
from .sigmoid import sigmoid_c


class UnknownLawError(ValueError):
    """A law name that is not registered. The message lists the known names."""


_REGISTRY: dict[str, Law] = {}


def register(law: Law, *, overwrite: bool = False) -> Law:
    """Add ``law`` to the registry so that ``bs.fit(..., law=law.name)`` finds it.

    Parameters
    ----------
    law
        A :class:`Law`, e.g. built with :func:`from_function`.
    overwrite
        Replace an existing law of the same name (otherwise a ``ValueError``).

    Returns
    -------
    Law
        The registered law, so ``register`` also works as a decorator-style call.
    """
    if not isinstance(law, Law):
        raise TypeError(f"register() takes a bayescale Law, got {type(law).__name__}")
    if law.name in _REGISTRY and not overwrite:
        raise ValueError(f"a law named {law.name!r} is already registered; pass overwrite=True")
    _REGISTRY[law.name] = law
    return law


def get(law: str | Law) -> Law:
    """Return the law registered under ``law`` (a ``Law`` passes through).

    Raises
    ------
    UnknownLawError
        When the name is not registered; the message lists the known names.
    """
    if isinstance(law, Law):
        return law
    if isinstance(law, str) and law in _REGISTRY:
        return _REGISTRY[law]
    raise UnknownLawError(f"unknown law {law!r}; known laws: {', '.join(sorted(_REGISTRY))}")


def available() -> list[str]:
    """Names of all registered laws."""
    return sorted(_REGISTRY)


def from_function(
    name: str,
    fn: Callable[..., Any],
    *,
    inputs: tuple[str, ...],
    priors: Mapping[str, Any],
    formula: str = "",
    citation: str = "user-defined",
    extra: Mapping[str, Any] | None = None,
) -> Law:
    r"""Build a :class:`Law` from a plain JAX function of the inputs and parameters.

    Parameters
    ----------
    name
        Name to register the law under.
    fn
        Pure JAX function ``fn(**inputs, **params) -> loss`` in natural units, e.g.
        ``lambda N, E, A, alpha: E + A * N**-alpha``. It receives the inputs (not their logs).
    inputs
        Input names the function takes, from ``("N", "D", "C")``.
    priors
        Parameter name -> NumPyro distribution, or a callable ``ref -> distribution`` where
        ``ref`` holds the log reference scales ``ref["N"]`` ... and the mean log loss
        ``ref["loss"]``. The order of this mapping is the parameter order.
    formula, citation
        Shown in ``describe()`` and summaries.
    extra
        Facts the checks read (:class:`Law`), e.g. ``{"higher_is_better": True}`` for a law of
        an accuracy, which ``prob_beats`` then counts from above.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> import bayescale as bs
    >>> law = bs.laws.from_function(
    ...     "my_power", lambda N, E, A, alpha: E + A * N ** -alpha, inputs=("N",),
    ...     priors={"E": dist.LogNormal(0, 1), "A": dist.LogNormal(3, 3), "alpha": dist.LogNormal(-1, 1)})
    >>> _ = bs.laws.register(law, overwrite=True)
    """
    for k, v in priors.items():
        if isinstance(v, type) or not (_is_distribution(v) or callable(v)):
            raise ValueError(
                f"law {name!r}: the prior of {k!r} must be a NumPyro distribution instance "
                f"(e.g. dist.LogNormal(0, 1)) or a callable ref -> distribution, got {v!r}"
            )
    params = tuple(Parameter(k, v, "user-defined") for k, v in priors.items())

    def log_predict(p, log_x, ref):
        values = {k: jnp.exp(log_x[k]) for k in inputs}
        out = fn(**values, **p)
        # a law that ignores (part of) its inputs, e.g. a constant, still gives one value per
        # point (and per draw)
        shape = jnp.broadcast_shapes(jnp.shape(out), *(jnp.shape(v) for v in values.values()))
        return jnp.log(jnp.broadcast_to(out, shape))

    return Law(
        name=name,
        inputs=tuple(inputs),
        parameters=params,
        log_predict=log_predict,
        formula=formula or f"user-defined {name}({', '.join(inputs)})",
        citation=citation,
        extra=dict(extra or {}),
    )


for _law in (
    kaplan_n,
    kaplan_d,
    kaplan_c,
    kaplan_nd,
    power_n,
    power_d,
    power_c,
    chinchilla,
    bnsl_1,
    bnsl_2,
    bnsl_1_n,
    bnsl_2_n,
    bnsl_1_c,
    bnsl_2_c,
    sigmoid_c,
    datablations,
    overtraining,
):
    register(_law)
