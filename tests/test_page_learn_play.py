"""Learn page: play, pause and reset drive the trainer's step; the ablation ladder; the K = 1 note.

AppTest on the tiny random BERT (UEGR_LEARN_MODEL=tiny-bert). AppTest does not run fragment timers, so
each `run()` while playing is one tick: one training step.
"""

from __future__ import annotations

import pytest
import torch
from pagetools import open_page


@pytest.fixture(scope="module", autouse=True)
def tiny_learn():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UEGR_LEARN_MODEL", "tiny-bert")
        yield
    torch.set_num_threads(threads)


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def _steps(at) -> int:
    return int(_metric(at, "Steps played"))


def _play_xs(at) -> int:
    """Points on the play loss chart."""
    import json

    fig = next(c for c in at.get("plotly_chart") if "losses per step" in c.proto.spec)
    return len(json.loads(fig.proto.spec)["data"][0]["x"])


def test_play_pause_reset():
    at = open_page("../pages/learn.py")
    assert any("Press Play" in i.value for i in at.info)
    at.number_input(key="learn_play_n").set_value(3)
    at.button(key="learn_play").click().run()  # builds the player, starts the timer, first tick
    assert not at.exception, [e.value for e in at.exception]
    assert _steps(at) == 1 and at.session_state["learn_playing"]
    at.run()
    at.run()  # third tick: the target is reached and playing stops
    assert _steps(at) == 3 and not at.session_state["learn_playing"] and _play_xs(at) == 3
    player = at.session_state["learn_player"]
    assert [r["step"] for r in player.history] == [1, 2, 3] and [r["batch"] for r in player.history] == [0, 1, 2]
    at.run()
    assert _steps(at) == 3  # stopped: no more steps

    at.number_input(key="learn_play_n").set_value(50)
    at.button(key="learn_play").click().run()
    assert _steps(at) == 4
    at.button(key="learn_pause").click().run()
    assert not at.session_state["learn_playing"]
    at.run()
    assert _steps(at) == 4  # paused
    at.button(key="learn_play").click().run()  # resumes the same player: its state carries over
    assert _steps(at) == 5 and at.session_state["learn_player"] is player
    at.button(key="learn_pause").click().run()

    at.button(key="learn_reset").click().run()
    assert "learn_player" not in at.session_state and any("Press Play" in i.value for i in at.info)
    at.number_input(key="learn_play_n").set_value(1)
    at.button(key="learn_play").click().run()
    assert _steps(at) == 1 and at.session_state["learn_player"] is not player  # a fresh start


def test_ladder_and_k1_note():
    at = open_page("../pages/learn.py")
    assert any("Run the ladder" in i.value for i in at.info)
    at.button(key="learn_ladder_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "rung" in d.value.columns)
    assert list(table["rung"]) == ["vanilla", "+ adversary", "+ sub-models and JS", "+ selective update"]
    assert table["cos(g, vanilla)"].iloc[0] == pytest.approx(1.0)
    assert table["weights moved"].iloc[3] < table["weights moved"].iloc[2]
    assert table["loss"].iloc[3] == pytest.approx(table["loss"].iloc[2], rel=1e-6)

    # K = 1: L_JS is 0 and the page says why; including the clean pass makes it positive
    at.slider(key="learn_k").set_value(1).run()
    assert _metric(at, "L_JS") == "0.00e+00"
    assert any("Why L_JS = 0" in i.value for i in at.info)
    assert any("Knobs changed since the ladder ran" in w.value for w in at.warning)
    at.toggle(key="learn_js_clean").set_value(True).run()
    assert float(_metric(at, "L_JS")) > 0 and not any("Why L_JS = 0" in i.value for i in at.info)
    assert any("JS over 2 members" in c.value for c in at.caption)
