"""Sampling parameters (temperature, top-p, top-k, seed): one validated object.

:class:`SamplingParams` is what every entry point checks them with: the config
(:class:`~spec_graph.config.SpeculativeThinkingConfig` declares its flat ``temperature``,
``top_p``, ``top_k`` and ``seed`` fields with the same types and exposes them as
``config.sampling``), the command line (``spec-graph run`` and ``spec-graph eval``), the
evaluation systems and the chat model. The field types (:data:`Temperature`, :data:`TopP`,
:data:`TopK`, :data:`Seed`) carry the ranges, so a field declared with them anywhere validates
the same way.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spec_graph.config_errors import ConfigError

__all__ = ["SamplingParams", "Seed", "Temperature", "TopK", "TopP"]

Temperature = Annotated[float, Field(ge=0, le=100)]
"""Sampling temperature in [0, 100]; 0 = greedy."""
TopP = Annotated[float, Field(gt=0, le=1)]
"""Nucleus sampling mass in (0, 1]."""
TopK = Annotated[int, Field(ge=0)]
"""Top-k sampling, >= 0; 0 = off."""
Seed = Annotated[int | None, Field()]
"""Random seed, or None for unseeded sampling."""


class SamplingParams(BaseModel):
    """How tokens are drawn: temperature (0 = greedy), top-p, top-k and seed.

    The defaults are the reference code's hard-coded values (0.6, 0.95, 50, unseeded).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: Temperature = Field(0.6, description="Sampling temperature in [0, 100]; 0 = greedy.")
    top_p: TopP = Field(0.95, description="Nucleus sampling mass in (0, 1].")
    top_k: TopK = Field(50, description="Top-k sampling, >= 0; 0 = off.")
    seed: Seed = Field(None, description="Random seed, or None for unseeded sampling.")

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (temperature 0)."""
        return self.temperature == 0

    @classmethod
    def check(cls, **values: Any) -> SamplingParams:
        """Validate ``values`` (None values mean the default), raising a one-line error.

        Raises:
            ConfigError: a value out of range, or an unknown name; its message names the field and
                the valid values, e.g. ``temperature: Input should be greater than or equal to 0, got -1``.
        """
        try:
            return cls.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError.from_validation(exc, fields=cls.model_fields) from None
