"""Parametric scaling laws as pure JAX functions in log space.

===============  =====================================================  =========================
name             formula                                                paper
===============  =====================================================  =========================
kaplan_n         L = (N_c/N)^alpha_N                                    Kaplan et al. 2020
kaplan_d         L = (D_c/D)^alpha_D                                    Kaplan et al. 2020
kaplan_c         L = (C_c/C)^alpha_C                                    Kaplan et al. 2020
kaplan_nd        L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D        Kaplan et al. 2020
power_n/d/c      L = E + A x^-alpha                                     Hestness 2017; GPT-4 2023
chinchilla       L = E + A/N^alpha + B/D^beta                           Hoffmann et al. 2022
bnsl_1/2(_n/_c)  L = a + b x^-c0 prod (1 + (x/d_i)^(1/f_i))^-(c_i f_i)  Caballero et al. 2022
sigmoid_c        acc = floor + (ceiling - floor) sigmoid(k log(C/C0))   Ruan et al. 2024
datablations     L = E + A/N'^alpha + B/D'^beta (repeated data, U)      Muennighoff et al. 2023
overtraining     L = a N^b + c 6^(b/2) (M N)^b + E, M = D/N             Gadre et al. 2024
===============  =====================================================  =========================
"""

from .base import Law, Parameter, Reference
from .broken import bnsl, bnsl_1, bnsl_1_c, bnsl_1_n, bnsl_2, bnsl_2_c, bnsl_2_n
from .chinchilla import chinchilla, kaplan_nd
from .datablations import MUENNIGHOFF_2023_PARAMS, datablations, datablations_loss
from .overtraining import (
    GADRE_2024_RPJ,
    ErrorLink,
    error_from_loss,
    fit_error_link,
    loss_to_error,
    overtraining,
    overtraining_loss,
)
from .power import kaplan_c, kaplan_d, kaplan_n, power_c, power_d, power_n
from .registry import UnknownLawError, available, from_function, get, register
from .sigmoid import sigmoid, sigmoid_c

__all__ = [
    "GADRE_2024_RPJ",
    "MUENNIGHOFF_2023_PARAMS",
    "ErrorLink",
    "Law",
    "Parameter",
    "Reference",
    "UnknownLawError",
    "available",
    "bnsl",
    "bnsl_1",
    "bnsl_1_c",
    "bnsl_1_n",
    "bnsl_2",
    "bnsl_2_c",
    "bnsl_2_n",
    "chinchilla",
    "datablations",
    "datablations_loss",
    "error_from_loss",
    "fit_error_link",
    "from_function",
    "get",
    "kaplan_c",
    "kaplan_d",
    "kaplan_n",
    "kaplan_nd",
    "loss_to_error",
    "overtraining",
    "overtraining_loss",
    "power_c",
    "power_d",
    "power_n",
    "register",
    "sigmoid",
    "sigmoid_c",
]
