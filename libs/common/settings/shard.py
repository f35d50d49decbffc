"""`shard: {index, count}` of a sharded service (signal, market_data): which part of the universe it owns."""

from __future__ import annotations

from pydantic import Field, model_validator

from libs.common.settings.base import Section
from libs.common.shard import MAX_SHARDS, Shard


class ShardSettings(Section):
    index: int = Field(
        default=0, ge=0, description="This instance's shard, 0 .. count-1 (env BNML_<SERVICE>__SHARD__INDEX)"
    )
    count: int = Field(
        default=1,
        ge=1,
        le=MAX_SHARDS,
        description="Instances the universe is split over; 1 = unsharded (owns every symbol)",
    )

    @model_validator(mode="after")
    def _index_below_count(self) -> ShardSettings:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count} (0 .. {self.count - 1})")
        return self

    def shard(self) -> Shard:
        return Shard(self.index, self.count)
