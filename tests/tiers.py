"""The two test tiers: `make test` runs the everyday set (<= ~10 min on 2 cores); TASKCLI_TESTS=all (.ci/run sets it)
adds the tests that cost minutes each for one more case of something the everyday set covers. A module of its own,
without conftest's side effects: the replay's driver scripts import test modules in a process that must stay online."""

import os

import pytest

FULL_TIER = os.environ.get("TASKCLI_TESTS") == "all"
slow_tier = pytest.mark.skipif(not FULL_TIER, reason="slow tier: TASKCLI_TESTS=all runs it (CI does)")
