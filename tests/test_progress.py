"""The training progress display (taskcli/progress.py)."""

from types import SimpleNamespace

from taskcli.progress import RichProgress


def test_no_loss_nan_before_the_first_log():
    shown = []
    bar = RichProgress(log=shown.append)
    state = SimpleNamespace(max_steps=4, global_step=0, epoch=0.0)
    bar.on_train_begin(None, state, None)
    fields = bar.progress.tasks[0].fields
    assert fields["loss"] == "—" and fields["lr"] == "—"
    bar.on_log(None, state, None, logs={"loss": 0.5, "learning_rate": 1e-3})
    fields = bar.progress.tasks[0].fields
    assert fields["loss"] == "0.5000" and fields["lr"] == "1.00e-03"
    state.global_step = 4
    live = bar.progress
    bar.on_train_end(None, state, None)
    assert "nan" not in str(live.tasks[0].fields) and live.tasks[0].completed == 4
    assert bar.progress is None  # stopped: later lines print below the bar
