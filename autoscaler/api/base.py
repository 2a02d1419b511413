"""The base of every edge model: frozen, strict about unknown fields, camelCase in documents.

Its own module so that the policy documents (`autoscaler.api.policy`) and the trigger models, which live with
their trigger types (`autoscaler.core.triggers.*`), build on the same base without importing each other.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Spec(BaseModel):
    """Base of the edge models: frozen, strict about unknown fields, camelCase in documents."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)
