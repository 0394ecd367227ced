"""Inference engines: single-dataset NUTS."""

from .nuts import SamplerConfig, compiled_sampler, run_nuts

__all__ = ["SamplerConfig", "compiled_sampler", "run_nuts"]
