"""Tests for fastpong.plot: loading metrics.csv and drawing learning curves."""

import os

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from fastpong.plot import DPI, FIGSIZE, METRICS_COLUMNS, load_metrics, plot_runs

HEADER = "episode,env_steps,reward,running_reward,points_won,points_lost,wall_seconds,steps_per_second"
EXPECTED_PNG_SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


def make_run(run_dir, n=300, seed=0):
    """A plausible learning run: the agent wins more points as episodes go by."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    steps, wall, running = 0, 0.0, None
    lines = [HEADER]
    for ep in range(1, n + 1):
        p_win = 0.05 + 0.6 * ep / n
        won = lost = 0
        while won < 21 and lost < 21:
            if rng.random() < p_win:
                won += 1
            else:
                lost += 1
        length = int(1000 + 3000 * p_win)
        steps += length
        sps = 5000.0 + rng.normal(0, 50)
        wall += length / sps
        reward = won - lost
        running = reward if running is None else 0.99 * running + 0.01 * reward
        lines.append(f"{ep},{steps},{reward},{running:.4f},{won},{lost},{wall:.3f},{sps:.1f}")
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# ---------------------------------------------------------------- load_metrics


def test_load_metrics_columns_and_values(tmp_path):
    run = make_run(tmp_path / "run", n=50)
    m = load_metrics(run)
    assert tuple(m) == METRICS_COLUMNS
    assert all(len(v) == 50 for v in m.values())
    np.testing.assert_array_equal(m["episode"], np.arange(1, 51))
    assert m["episode"].dtype == np.int64 and m["points_won"].dtype == np.int64
    assert m["running_reward"].dtype == np.float64
    np.testing.assert_array_equal(m["reward"], m["points_won"] - m["points_lost"])
    assert (np.diff(m["env_steps"]) > 0).all()


def test_load_metrics_ignores_a_row_being_written(tmp_path):
    run = make_run(tmp_path / "run", n=5)
    with open(run / "metrics.csv", "a") as f:
        f.write("6,1234,")
    assert len(load_metrics(run)["episode"]) == 5


def test_load_metrics_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_metrics(tmp_path / "nope")


def test_load_metrics_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no metrics.csv"):
        load_metrics(tmp_path)


def test_load_metrics_empty_file(tmp_path):
    (tmp_path / "metrics.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_metrics(tmp_path)


def test_load_metrics_header_only(tmp_path):
    (tmp_path / "metrics.csv").write_text(HEADER + "\n")
    with pytest.raises(ValueError, match="no rows"):
        load_metrics(tmp_path)


def test_load_metrics_wrong_header(tmp_path):
    (tmp_path / "metrics.csv").write_text("episode,reward\n1,-21\n")
    with pytest.raises(ValueError, match="header"):
        load_metrics(tmp_path)


def test_load_metrics_malformed_row(tmp_path):
    (tmp_path / "metrics.csv").write_text(HEADER + "\n1,2,3,4,5,6,7,8\n1,2,three,4,5,6,7,8\n2,3,4,5,6,7,8,9\n")
    with pytest.raises(ValueError, match="line 3"):
        load_metrics(tmp_path)


def test_errors_are_one_line(tmp_path):
    for setup in (lambda: None, lambda: (tmp_path / "metrics.csv").write_text("a,b\n")):
        setup()
        with pytest.raises(ValueError) as info:
            load_metrics(tmp_path)
        assert "\n" not in str(info.value)


# ---------------------------------------------------------------- plot_runs


def test_plot_one_run(tmp_path):
    run = make_run(tmp_path / "run_a")
    out = tmp_path / "curve.png"
    fig = plot_runs([run], output=out)
    assert isinstance(fig, Figure)
    assert png_size(out) == EXPECTED_PNG_SIZE
    reward_ax = fig.axes[0]
    assert "run_a" in reward_ax.get_legend().get_texts()[0].get_text()
    # Episode reward + running reward in the top panel, win rate below.
    assert len(reward_ax.lines) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "run_a"]


def test_plot_two_runs(tmp_path):
    a = make_run(tmp_path / "run_a", n=300, seed=1)
    b = make_run(tmp_path / "run_b", n=200, seed=2)
    out = tmp_path / "both.png"
    fig = plot_runs([a, str(b)], output=out)
    assert png_size(out) == EXPECTED_PNG_SIZE
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("run_a") for t in legend)
    assert any(t.startswith("run_b") for t in legend)
    colours = {line.get_color() for line in fig.axes[1].lines if line.get_linestyle() == "-"}
    assert len(colours) == 2


@pytest.mark.parametrize("x", ["episode", "env_steps", "wall_seconds"])
def test_plot_x_axes_without_output(tmp_path, x):
    run = make_run(tmp_path / "run", n=120)
    fig = plot_runs(run, x=x)
    assert isinstance(fig, Figure)
    assert list(tmp_path.iterdir()) == [run]


def test_plot_single_episode_run(tmp_path):
    run = make_run(tmp_path / "run", n=1)
    plot_runs(run, output=tmp_path / "one.png")
    assert png_size(tmp_path / "one.png") == EXPECTED_PNG_SIZE


def test_plot_replaces_existing_output_atomically(tmp_path):
    run = make_run(tmp_path / "run", n=50)
    out = tmp_path / "curve.png"
    out.write_bytes(b"old")
    plot_runs(run, output=out)
    assert png_size(out) == EXPECTED_PNG_SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "run"]


def test_plot_svg_and_pdf(tmp_path):
    run = make_run(tmp_path / "run", n=50)
    plot_runs(run, output=tmp_path / "c.svg")
    plot_runs(run, output=tmp_path / "c.pdf")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "c.pdf").read_bytes().startswith(b"%PDF")


def test_plot_errors(tmp_path):
    run = make_run(tmp_path / "run", n=20)
    with pytest.raises(ValueError, match="unsupported plot extension '.jpg'"):
        plot_runs(run, output=tmp_path / "curve.jpg")
    with pytest.raises(ValueError, match="does not exist"):
        plot_runs(run, output=tmp_path / "missing" / "curve.png")
    with pytest.raises(ValueError, match="does not exist"):
        plot_runs(tmp_path / "no_such_run")
    with pytest.raises(ValueError, match="no metrics.csv"):
        plot_runs([run, tmp_path])
    with pytest.raises(ValueError, match="x must be"):
        plot_runs(run, x="hours")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_plot_checks_output_before_loading(tmp_path):
    # A bad output location is reported even though the run is missing too.
    with pytest.raises(ValueError, match="unsupported plot extension"):
        plot_runs(tmp_path / "no_such_run", output=tmp_path / "curve.gif")


def test_plot_unwritable_output_dir_reported(tmp_path, monkeypatch):
    # Works as root too, where chmod cannot make a directory unwritable.
    run = make_run(tmp_path / "run", n=20)
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: False)
    with pytest.raises(ValueError, match="not writable"):
        plot_runs(run, output=tmp_path / "curve.png")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_plot_unwritable_output_dir(tmp_path):
    run = make_run(tmp_path / "run", n=20)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="not writable"):
            plot_runs(run, output=locked / "curve.png")
    finally:
        locked.chmod(0o700)


def write_ppo_metrics(run_dir, episodes=6):
    """A PPO run's metrics.csv: Pong's columns, then each row's last update diagnostics (empty
    before the first update)."""
    from fastpong.plot import UPDATE_COLUMNS

    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [",".join(METRICS_COLUMNS + UPDATE_COLUMNS)]
    for i in range(1, episodes + 1):
        base = [i, 900 * i, -21 + i, -21 + i / 2, i, 21, 30.0 * i, 3000.0]
        update = [""] * len(UPDATE_COLUMNS) if i == 1 else [0.01, 0.2, 1.79 - 0.1 * i, 0.004, 0.05, 0.3, 2.5e-4]
        lines.append(",".join(str(v) for v in base + update))
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_ppo_metrics_load_with_nan_before_the_first_update(tmp_path):
    write_ppo_metrics(tmp_path / "ppo")
    metrics = load_metrics(tmp_path / "ppo")
    assert np.isnan(metrics["entropy"][0])
    np.testing.assert_allclose(metrics["entropy"][1:], [1.79 - 0.1 * i for i in range(2, 7)])
    assert metrics["points_won"].dtype == np.int64


def test_ppo_run_gets_a_diagnostics_panel(tmp_path):
    write_ppo_metrics(tmp_path / "ppo")
    fig = plot_runs(tmp_path / "ppo", tmp_path / "ppo.png")
    assert len(fig.axes) >= 3  # reward, win rate, diagnostics (plus the secondary x axis)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "per update" in labels
    assert "actor-critic" in fig._suptitle.get_text()
    assert Image.open(tmp_path / "ppo.png").size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)


def test_a_rare_spike_runs_off_the_diagnostics_panel_instead_of_flattening_it(tmp_path):
    """One update of 400 with a KL 200 times the others (drawn x 100: 40 against 0.2): the panel's
    top follows the curves that fill it, not the spike, and never falls below a uniform policy's
    entropy (the dashed line)."""
    from fastpong.plot import UPDATE_COLUMNS

    run = tmp_path / "spiky"
    run.mkdir()
    lines = [",".join(METRICS_COLUMNS + UPDATE_COLUMNS)]
    for i in range(1, 401):
        kl = 0.4 if i == 200 else 0.002
        base = [i, 900 * i, -21 + i % 40, 0.0, i % 20, 21, 30.0 * i, 3000.0]
        lines.append(",".join(str(v) for v in base + [0.01, 0.2, 1.2, kl, 0.05, 0.3, 2.5e-4]))
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    fig = plot_runs(run, tmp_path / "spiky.png")
    diagnostics = next(ax for ax in fig.axes if ax.get_ylabel() == "per update")
    bottom, top = diagnostics.get_ylim()
    assert np.log(6) < top < 40  # the spike (40) is cut; the uniform line (1.79) shows
    assert bottom < 0 < top


def test_mit_pong_run_gets_an_entropy_panel(tmp_path):
    """mit-pong logs each game's mean policy entropy after Pong's columns: drawn per episode, as a
    policy-gradient run (no PPO legend, no clipped fraction), empty rows of an older session NaN."""
    run = tmp_path / "mit-pong"
    run.mkdir()
    lines = [",".join(METRICS_COLUMNS + ("entropy",))]
    for i in range(1, 7):
        entropy = "" if i == 1 else 1.79 - 0.2 * i
        lines.append(",".join(str(v) for v in [i, 900 * i, -21 + i, -21 + i / 2, i, 21, 30.0 * i, 3000.0, entropy]))
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    metrics = load_metrics(run)
    assert np.isnan(metrics["entropy"][0]) and metrics["entropy"][-1] == pytest.approx(0.59)
    fig = plot_runs(run, tmp_path / "mit-pong.png")
    assert "per episode" in [ax.get_ylabel() for ax in fig.axes]
    assert "policy gradient" in fig._suptitle.get_text()


def test_unknown_extra_columns_are_refused(tmp_path):
    run = tmp_path / "odd"
    run.mkdir()
    (run / "metrics.csv").write_text(",".join(METRICS_COLUMNS + ("mystery",)) + "\n")
    with pytest.raises(ValueError, match="has header"):
        load_metrics(run)


def test_step_counts_are_rounded_before_their_unit_is_chosen():
    from fastpong.watch.plot import _format_steps

    assert _format_steps(999_960) == "1M"
    assert _format_steps(1_234_567) == "1.23M"
    assert _format_steps(999) == "999"
    assert _format_steps(999_6) == "10k"
