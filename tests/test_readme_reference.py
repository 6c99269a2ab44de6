"""The README's plugin-author reference ("## Write a plugin" and "## Write a plugin
package"): every Python example in it runs, in order, and does what the text says."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from engine import hookimpl

ROOT = Path(__file__).resolve().parents[1]


def reference_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Write a plugin\n")
    end = text.index("### Enable and configure")
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


@pytest.fixture
def namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The blocks run one after another in one namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    found: dict[str, object] = {"__name__": "readme_reference"}
    for block in reference_blocks():
        if "import lookinside_grad_norm" in block:
            # the plugin module the text has the reader write: GradNorm, registered
            module = types.ModuleType("lookinside_grad_norm")
            module.GradNorm = found["GradNorm"]  # type: ignore[attr-defined]
            module.lookinside_register = hookimpl(  # type: ignore[attr-defined]
                lambda register: register(module.GradNorm)
            )
            monkeypatch.setitem(sys.modules, module.__name__, module)
        exec(compile(block, "README.md", "exec"), found)
    return found


def test_the_reference_has_its_examples() -> None:
    blocks = reference_blocks()
    assert len(blocks) >= 4
    assert any("class StopAtLoss" in b for b in blocks)
    assert any("log_keys" in b for b in blocks)
    assert any("engine.testing" in b for b in blocks)
    assert any("lookinside_register" in b for b in blocks)


def test_stop_at_loss_says_why(namespace: dict[str, object]) -> None:
    from engine.testing import make_learner

    stop = namespace["StopAtLoss"](threshold=10.0)  # type: ignore[operator]
    learner = make_learner([stop, "progress"])
    learner.fit(3)
    assert str(learner.cancelled).startswith("loss ") and "< 10.0" in str(learner.cancelled)
    assert learner.plugins["stop_at_loss"] is stop  # its name, as documented


def test_the_column_is_declared_and_written(namespace: dict[str, object]) -> None:
    from engine.testing import make_learner

    grad_norm = namespace["GradNorm"]()  # type: ignore[operator]
    learner = make_learner([grad_norm, "metrics", "early_stopping:monitor=grad_norm,mode=min"])
    learner.fit(1)  # early_stopping accepted the monitor at begin_fit: log_keys
    assert learner.log["grad_norm"] > 0
    assert list(learner.log)[-1] == "grad_norm"  # after metrics' columns


def test_the_dataset_example_meets_the_contract(namespace: dict[str, object]) -> None:
    from engine.nn.build import build_model

    data = namespace["blobs"](bs=32)  # type: ignore[operator]
    assert data.c == 2 and data.input_shape == (2,)
    xb, yb = next(iter(data.train_dl))
    assert xb.shape == (32, 2) and yb.shape == (32,)
    model = build_model("auto", data)  # an MLP for flat features, as the text says
    assert model(xb).shape == (32, 2)
