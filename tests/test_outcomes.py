"""The trained-outcome claims and the script that measures their spread."""

from __future__ import annotations

import pytest

from tests import spread
from tests.outcomes import CLAIMS
from tests.outcomes import LINEAR_LOSS_FALLS
from tests.outcomes import Claim


def test_claims_have_distinct_names_and_hold_at_seed_0_for_the_cheap_ones() -> None:
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)
    assert LINEAR_LOSS_FALLS.check(0) > 0


def test_a_broken_claim_says_what_was_measured_and_where() -> None:
    claim = Claim("always 1", lambda seed: 1.0, bound=2.0)
    with pytest.raises(AssertionError, match=r"always 1: measured 1, claim > 2 \(seed 3, "):
        claim.check(3)
    assert Claim("below", lambda seed: 1.0, bound=2.0, above=False).check() == 1.0


def test_spread_prints_one_row_per_thread_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert spread.main(["--seeds", "2", "--threads", "1", "2", "--only", "linear"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("torch ") and lines[1].split()[0] == "claim"
    rows = [line.split() for line in lines[2:]]
    # ... thr min median max bound margin broken (seconds)
    assert [row[-9] for row in rows] == ["1", "2"]
    assert all(row[-5] == ">0" and row[-3] == "0/2" for row in rows)


def test_spread_refuses_a_filter_matching_nothing() -> None:
    with pytest.raises(SystemExit):
        spread.main(["--only", "no such claim"])
