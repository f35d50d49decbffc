"""The local demo opens the edge gate for the synthetic bootstrap model only: paper, synthetic data, not chosen."""

from bnml.launcher import DEMO_EDGE_ENV, demo_rule_applies
from libs.common.settings import load_settings


def _settings(**env):
    return load_settings(None).model_copy(update=env)


def test_demo_rule_applies_to_paper_on_synthetic_data_only_when_the_user_set_nothing():
    s = _settings()
    assert s.mode == "paper" and s.paper_market_data_mode == "synthetic"
    assert demo_rule_applies(s, {})
    assert not demo_rule_applies(s, {DEMO_EDGE_ENV: "0"})  # the user's own choice stands
    assert not demo_rule_applies(_settings(paper_market_data_mode="replay"), {})
    assert not demo_rule_applies(_settings(mode="live"), {})
