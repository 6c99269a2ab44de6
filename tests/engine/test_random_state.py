"""Random-number states: saved as plain values, restored bit for bit."""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pytest
import torch

from engine import random_state
from engine.random_state import capture_rng
from engine.random_state import restore_rng


def draws() -> tuple[Any, ...]:
    """One draw from each global generator, Gaussian ones included (they cache a value)."""
    return (
        torch.rand(3).tolist(),
        random.random(),
        random.gauss(0.0, 1.0),
        float(np.random.rand()),
        float(np.random.randn()),
    )


def through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]


def test_restore_repeats_every_generator_bit_for_bit() -> None:
    # a pending Gaussian in Python and numpy: half of a pair drawn, the other cached
    random.gauss(0.0, 1.0)
    np.random.randn()
    state = capture_rng()
    first = draws()
    assert restore_rng(state) == []
    assert draws() == first


def test_the_state_survives_weights_only_loading() -> None:
    state = capture_rng()
    first = draws()
    assert restore_rng(through_a_file(state)) == []
    assert draws() == first


def test_the_state_holds_plain_values_only() -> None:
    state = capture_rng()
    assert type(state["python"]["state"]) is list
    assert state["numpy"]["keys"].dtype == torch.int64
    assert {type(v) for v in state["numpy"].values()} == {str, torch.Tensor, int, float}


def test_the_state_matches_the_libraries_own() -> None:
    """Same values as the generators' own getstate: nothing lost in the conversion."""
    random.gauss(0.0, 1.0)
    np.random.randn()
    state = capture_rng()
    python = state["python"]
    assert (python["version"], tuple(python["state"]), python["gauss_next"]) == random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    saved = state["numpy"]
    assert (saved["kind"], saved["pos"], saved["has_gauss"]) == (kind, pos, has_gauss)
    assert saved["cached_gaussian"] == cached
    assert np.array_equal(saved["keys"].numpy(), keys)
    assert torch.equal(state["torch"], torch.get_rng_state())


def test_cuda_states_of_another_machine_are_skipped_and_reported() -> None:
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    state = capture_rng()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * (here + 1)
    first = draws()
    assert restore_rng(state) == [f"the CUDA generators ({here + 1} saved, {here} device(s) here)"]
    assert draws() == first  # everything else was restored


def test_without_numpy_its_state_is_none_and_a_saved_one_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved = capture_rng()
    monkeypatch.setattr(random_state, "_numpy", lambda: None)
    assert capture_rng()["numpy"] is None
    assert restore_rng(saved) == ["numpy's generator (numpy is not installed)"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_generators_are_restored() -> None:
    state = capture_rng()
    assert len(state["cuda"]) == torch.cuda.device_count()
    first = torch.rand(4, device="cuda").tolist()
    assert restore_rng(through_a_file(state)) == []
    assert torch.rand(4, device="cuda").tolist() == first
