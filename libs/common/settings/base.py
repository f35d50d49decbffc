"""The base every settings section derives from: unknown keys are rejected, and a section is frozen (the cores
take their section itself, read-only; `model_copy(update=...)` makes a changed copy)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)
