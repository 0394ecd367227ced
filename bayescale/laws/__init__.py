"""Parametric scaling laws as pure JAX functions in log space.

=============  ==========================================  ==========================
name           formula                                     paper
=============  ==========================================  ==========================
kaplan_n       L = (N_c/N)^alpha_N                         Kaplan et al. 2020
kaplan_d       L = (D_c/D)^alpha_D                         Kaplan et al. 2020
kaplan_c       L = (C_c/C)^alpha_C                         Kaplan et al. 2020
kaplan_nd      L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^a_D Kaplan et al. 2020
power_n/d/c    L = E + A x^-alpha                          Hestness 2017; GPT-4 2023
chinchilla     L = E + A/N^alpha + B/D^beta                Hoffmann et al. 2022
=============  ==========================================  ==========================
"""

from .base import Law, Parameter, Reference
from .chinchilla import chinchilla, kaplan_nd
from .power import kaplan_c, kaplan_d, kaplan_n, power_c, power_d, power_n
from .registry import UnknownLawError, available, from_function, get, register

__all__ = [
    "Law",
    "Parameter",
    "Reference",
    "UnknownLawError",
    "available",
    "chinchilla",
    "from_function",
    "get",
    "kaplan_c",
    "kaplan_d",
    "kaplan_n",
    "kaplan_nd",
    "power_c",
    "power_d",
    "power_n",
    "register",
]
