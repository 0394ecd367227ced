"""The `Law` container: a scaling law as data plus pure JAX functions.

A law is written in log space and in a *reference-centred* parametrisation: amplitudes are the
value of a term at a reference point of the data (the geometric mean of the observed inputs), not
at ``N = 1``. ``A * N**-alpha`` becomes ``exp(log_A_ref - alpha * (log N - log N_ref))``. This
decorrelates the posterior of amplitude and exponent (DESIGN.md §2) and cuts NUTS leapfrog steps
per draw about five-fold. ``Law.natural`` maps the sampled parameters back to the published ones
(``A``, ``alpha``, ...), which are what summaries and plots show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp

#: A reference point: logs of the inputs and of the loss at the centre of the data, e.g.
#: ``{"N": 20.1, "D": 23.4, "C": 46.0, "loss": 1.1}``. Values are JAX/NumPy scalars; the dict is a
#: pytree argument of compiled functions, so new data never triggers recompilation.
Reference = Mapping[str, Any]
#: Inputs a law may read: parameters, tokens, compute (FLOP) and unique tokens (repeated data).
INPUTS = ("N", "D", "C", "U")
#: Builds a NumPyro distribution from the reference point (priors centred on the data's scale).
PriorFn = Callable[[Reference], Any]


@dataclass(frozen=True)
class Parameter:
    """One sampled parameter of a law.

    Parameters
    ----------
    name
        Site name in the NumPyro model (e.g. ``"alpha"``, ``"log_A_ref"``).
    prior
        Callable ``ref -> numpyro.distributions.Distribution``; the default weakly-informative
        prior. A plain distribution is accepted too. Users override per fit with ``priors=``.
    description
        What the parameter means, shown in ``Law.describe()``.
    """

    name: str
    prior: PriorFn | Any
    description: str = ""

    def prior_at(self, ref: Reference) -> Any:
        """Return the prior distribution for this reference point."""
        return (
            self.prior(ref)
            if callable(self.prior) and not _is_distribution(self.prior)
            else self.prior
        )


def _is_distribution(obj: Any) -> bool:
    from numpyro.distributions import Distribution

    return isinstance(obj, Distribution)


def _identity_natural(params: Mapping[str, Any], ref: Reference) -> dict[str, Any]:
    return dict(params)


#: Site names of the model around a law (noise scale, Student-t degrees of freedom, the
#: observations): no law parameter may take them.
RESERVED_SITES = ("sigma", "nu", "obs", "obs_plate")


@dataclass(frozen=True, eq=False)
class Law:
    """A parametric scaling law.

    Parameters
    ----------
    name
        Registry name, e.g. ``"chinchilla"``.
    inputs
        Which inputs the law reads, from ``("N", "D", "C", "U")`` (``U``: unique tokens).
    parameters
        The sampled (reference-centred) parameters with their default priors.
    log_predict
        Pure JAX function ``(params, log_inputs, ref) -> log loss``; ``params`` maps parameter
        names to arrays, ``log_inputs`` maps input names to log inputs.
    natural
        Pure function ``(params, ref) -> dict`` of the published (natural) parameters.
    natural_names
        Names of the natural parameters, in display order.
    formula
        The formula in plain text, for the README and ``describe()``.
    citation
        The paper the law comes from.
    extra
        Optional facts the checks read: ``"irreducible"``, the natural name of the irreducible
        loss (default ``"E"``; e.g. ``"a"`` for the broken power laws), and ``"exponents"``,
        the parameters (natural or sampled names) whose correlation with it the
        identifiability check reports (default: the natural parameters named like exponents,
        ``alpha``, ``beta``, ``gamma`` or ``b`` with suffixes); ``"higher_is_better"``, True
        for a law of a score to maximise (the sigmoids' accuracy; default False: a loss or an
        error rate), which ``prob_beats`` and the axis labels read.
    """

    name: str
    inputs: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    log_predict: Callable[..., Any]
    natural: Callable[[Mapping[str, Any], Reference], dict[str, Any]] = _identity_natural
    natural_names: tuple[str, ...] = ()
    formula: str = ""
    citation: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [x for x in self.inputs if x not in INPUTS]
        if bad:
            raise ValueError(f"law {self.name!r}: unknown inputs {bad}; use {', '.join(INPUTS)}")
        names = [p.name for p in self.parameters]
        taken = [n for n in names if n in RESERVED_SITES or n in INPUTS]
        if taken:
            raise ValueError(
                f"law {self.name!r}: parameter name(s) {taken} are taken (the model's sites "
                f"{', '.join(RESERVED_SITES)} and the inputs {', '.join(INPUTS)}); rename them"
            )
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"law {self.name!r}: parameter(s) {twice} appear more than once")
        if not self.natural_names:
            object.__setattr__(self, "natural_names", self.param_names)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the sampled parameters."""
        return tuple(p.name for p in self.parameters)

    @property
    def num_params(self) -> int:
        """Number of law parameters (the noise scale not included)."""
        return len(self.parameters)

    @property
    def higher_is_better(self) -> bool:
        """True for a law of a score to maximise, such as an accuracy (``extra``)."""
        return bool(self.extra.get("higher_is_better", False))

    def quantity(self, likelihood: str = "lognormal") -> str:
        """What the law predicts, in words: ``"accuracy"`` for a score to maximise,
        ``"proportion"`` for another law under the Beta or binomial likelihood (an error rate,
        say), else ``"loss"``.

        >>> from bayescale.laws import get
        >>> get("sigmoid_c").quantity(), get("power_n").quantity("beta")
        ('accuracy', 'proportion')
        """
        if self.higher_is_better:
            return "accuracy"
        # bayescale.model.PROPORTION_LIKELIHOODS (model imports the laws, not the reverse)
        return "proportion" if likelihood in ("beta", "binomial") else "loss"

    def predict(self, params: Mapping[str, Any], log_inputs: Mapping[str, Any], ref: Reference):
        """Loss (not log loss) for ``params`` at ``log_inputs``."""
        return jnp.exp(self.log_predict(params, log_inputs, ref))

    def describe(self) -> str:
        """Plain-text description: formula, parameters, citation."""
        lines = [f"{self.name}: {self.formula}", f"  inputs: {', '.join(self.inputs)}"]
        for p in self.parameters:
            lines.append(f"  {p.name}: {p.description}")
        lines.append(f"  reference: {self.citation}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Law({self.name!r}, inputs={self.inputs}, formula={self.formula!r})"
