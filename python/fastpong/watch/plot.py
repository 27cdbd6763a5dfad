"""Plot learning curves from the ``metrics.csv`` that training writes into a run directory.

``metrics.csv`` has one row per finished episode and exactly this header::

    episode,env_steps,reward,running_reward,points_won,points_lost,wall_seconds,steps_per_second

``reward`` is ``points_won - points_lost``; ``wall_seconds`` counts seconds
since the run began, cumulatively across resumes.  A CartPole run has no points:
its header is ``CLASSIC_COLUMNS`` (``length`` in their place), ``reward`` is the
episode's return, and its plot has no win-rate panel.

:func:`plot_runs` draws, for one or several runs:

* top: the reward of every episode (thin, faint) and the running reward
  logged by training (bold);
* bottom: the fraction of points won over the trailing ``window`` episodes,
  with a dashed line at 0.5 (an even game).

The figure is a plain :class:`matplotlib.figure.Figure` rendered with the Agg
canvas; pyplot's global state is never touched, so this works on headless
machines and inside notebooks alike.  Only numpy, matplotlib and the standard
library are imported, so this module works before the compiled core of
``fastpong`` is built.
"""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

__all__ = ["METRICS_FILE", "METRICS_COLUMNS", "CLASSIC_COLUMNS", "UPDATE_COLUMNS", "PLOT_EXTENSIONS", "X_AXES", "load_metrics", "plot_runs"]

PathLike = Union[str, "os.PathLike[str]"]

METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = (
    "episode",
    "env_steps",
    "reward",
    "running_reward",
    "points_won",
    "points_lost",
    "wall_seconds",
    "steps_per_second",
)
#: Columns an actor-critic run (--agent ppo) adds after METRICS_COLUMNS: its last update's
#: diagnostics at the time each episode ended (fastpong.agents.ppo.UPDATE_COLUMNS; kept here so
#: that plotting needs no compiled core).
UPDATE_COLUMNS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                  "explained_variance", "learning_rate")
# The lab's CNN agent (mit-pong) adds its policy's mean entropy over each game instead, under the
# same name "entropy": the third panel draws either.
CLASSIC_COLUMNS = (
    "episode",
    "env_steps",
    "reward",
    "running_reward",
    "length",
    "wall_seconds",
    "steps_per_second",
)
_INT_COLUMNS = frozenset({"episode", "env_steps", "points_won", "points_lost", "length"})
PLOT_EXTENSIONS = (".png", ".svg", ".pdf")
X_AXES = ("episode", "env_steps", "wall_seconds")

FIGSIZE = (10.0, 7.0)  # inches
DPI = 100  # a PNG is FIGSIZE * DPI = 1000 x 700 pixels


# --------------------------------------------------------------------------
# Loading


def load_metrics(run_dir: PathLike) -> Dict[str, np.ndarray]:
    """Read ``run_dir/metrics.csv`` into a dict mapping column name to a numpy array.

    ``episode``, ``env_steps``, ``points_won`` and ``points_lost`` are int64,
    the other columns float64, in file order.  A last line without a trailing
    newline is ignored if it is incomplete (training may be appending to the
    file right now).

    Raises :class:`ValueError` with a one-line message if the directory does
    not exist, holds no ``metrics.csv``, or the file is empty, has a different
    header, has no data rows, or has a malformed row.
    """
    run = Path(os.fspath(run_dir))
    if not run.exists():
        raise ValueError(f"run directory {str(run)!r} does not exist")
    if not run.is_dir():
        raise ValueError(f"run directory {str(run)!r} is not a directory")
    path = run / METRICS_FILE
    if not path.is_file():
        raise ValueError(f"no {METRICS_FILE} in run directory {str(run)!r}")

    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        raise ValueError(f"metrics file {str(path)!r} is empty")

    lines = text.splitlines(keepends=True)
    header = [name.strip() for name in next(csv.reader([lines[0]]))]
    if not _known_header(tuple(header)):
        raise ValueError(
            f"metrics file {str(path)!r} has header {','.join(header)!r}, expected {','.join(METRICS_COLUMNS)!r} "
            f"(or, for CartPole, {','.join(CLASSIC_COLUMNS)!r})"
        )
    columns = tuple(header)
    ncol = len(columns)
    rows: List[List[float]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = next(csv.reader([line]))
        complete = line.endswith(("\n", "\r"))
        try:
            if len(fields) != ncol:
                raise ValueError
            # An update's diagnostics are empty until the run's first update: NaN.
            rows.append([float(v) if v != "" or name not in UPDATE_COLUMNS else np.nan
                         for name, v in zip(columns, fields)])
        except ValueError:
            if not complete and lineno == len(lines):
                break  # a row still being written
            raise ValueError(
                f"metrics file {str(path)!r}, line {lineno}: expected {ncol} numbers, got {line.strip()!r}"
            ) from None
    if not rows:
        raise ValueError(f"metrics file {str(path)!r} has a header but no rows")

    table = np.array(rows, dtype=np.float64)
    out: Dict[str, np.ndarray] = {}
    for i, name in enumerate(columns):
        column = table[:, i]
        out[name] = np.rint(column).astype(np.int64) if name in _INT_COLUMNS else column
    return out


# --------------------------------------------------------------------------
# Helpers


def _known_header(header: Tuple[str, ...]) -> bool:
    """A Pong or CartPole header, or a Pong header followed by update diagnostics (PPO) or by
    each game's policy entropy (mit-pong)."""
    if header in (METRICS_COLUMNS, CLASSIC_COLUMNS):
        return True
    base = len(METRICS_COLUMNS)
    return header[:base] == METRICS_COLUMNS and set(header[base:]) <= set(UPDATE_COLUMNS) and len(header) > base


def _check_output(output: PathLike) -> Path:
    p = Path(os.fspath(output))
    if p.suffix.lower() not in PLOT_EXTENSIONS:
        raise ValueError(f"unsupported plot extension {p.suffix!r} for {str(p)!r}: expected .png, .svg or .pdf")
    parent = p.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write plot {str(p)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write plot {str(p)!r}: directory {str(parent)!r} is not writable")
    if p.is_dir():
        raise ValueError(f"cannot write plot {str(p)!r}: it is an existing directory")
    return p


def _save_atomically(fig: Figure, path: Path) -> None:
    """Save to a hidden sibling file, then rename it over ``path``."""
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:12]}{path.suffix}")
    try:
        with open(tmp, "xb") as f:  # "x": normal umask permissions, never clobbers
            fig.savefig(f, format=path.suffix.lower()[1:], dpi=fig.dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _trailing_win_rate(won: np.ndarray, lost: np.ndarray, window: int) -> np.ndarray:
    """Points won / points played over the last ``window`` episodes (fewer at the start)."""
    won_c = np.concatenate([[0.0], np.cumsum(won, dtype=np.float64)])
    played_c = np.concatenate([[0.0], np.cumsum(won + lost, dtype=np.float64)])
    end = np.arange(1, len(won) + 1)
    start = np.maximum(end - window, 0)
    w = won_c[end] - won_c[start]
    p = played_c[end] - played_c[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p > 0, w / np.where(p > 0, p, 1.0), np.nan)


def _steps_unit(max_steps: float) -> Tuple[float, str]:
    return (1e6, "millions") if max_steps >= 1e6 else (1e3, "thousands")


def _time_unit(max_seconds: float) -> Tuple[float, str]:
    return (3600.0, "hours") if max_seconds >= 2 * 3600 else (60.0, "minutes")


def _format_steps(steps: float) -> str:
    # By the rounded value: 999,960 steps is "1M", not "1e+03k".
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if float(f"{steps / scale:.3g}") >= 1:
            return f"{steps / scale:.3g}{unit}"
    return f"{steps:.0f}"


def _format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds >= 3600:
        h = int(seconds // 3600)
        return f"{h} h {int(round((seconds - 3600 * h) / 60)):02d} min"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _monotone_map(src: np.ndarray, dst: np.ndarray):
    """Piecewise-linear forward/inverse maps between two increasing quantities.

    Used for a secondary axis.  Points where either quantity does not
    increase (e.g. rows repeated after a resume) are dropped so both
    directions stay well defined; outside the data range the end segments
    are extended linearly.
    """
    order = np.argsort(src, kind="stable")
    s = np.asarray(src, dtype=np.float64)[order]
    d = np.maximum.accumulate(np.asarray(dst, dtype=np.float64)[order])
    keep = np.concatenate([[True], (np.diff(s) > 0) & (np.diff(d) > 0)])
    s, d = s[keep], d[keep]
    if len(s) < 2:
        return None

    def interp(x, xp, fp):
        x = np.asarray(x, dtype=np.float64)
        y = np.interp(x, xp, fp)
        lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
        hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        y = np.where(x < xp[0], fp[0] + (x - xp[0]) * lo_slope, y)
        return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * hi_slope, y)

    return (lambda x: interp(x, s, d)), (lambda y: interp(y, d, s))


def _run_labels(paths: Sequence[Path]) -> List[str]:
    names = [p.resolve().name or str(p) for p in paths]
    if len(set(names)) < len(names):  # same leaf name twice: show the paths as given
        names = [str(p) for p in paths]
    return names


# --------------------------------------------------------------------------
# Plotting


def _clip_rare_spikes(ax, floor: float, share: float = 99.5) -> None:
    """Cap the y axis at the share-th percentile of what the axes show (at least floor), so a few
    outlying updates (a KL of 0.4 once in a thousand) do not flatten every other curve to the
    bottom; the cut peaks run off the top of the panel, still visible as lines that leave it."""
    values = [line.get_ydata() for line in ax.get_lines() if len(line.get_ydata()) > 2]
    values = np.concatenate([np.asarray(v, dtype=float) for v in values]) if values else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size:
        top = max(floor, float(np.percentile(values, share))) * 1.15
        ax.set_ylim(bottom=min(0.0, float(values.min())) - 0.03 * top, top=top)


def plot_runs(
    run_dirs: Union[PathLike, Iterable[PathLike]],
    output: Optional[PathLike] = None,
    x: str = "episode",
    *,
    window: int = 100,
    title: Optional[str] = None,
) -> Figure:
    """Plot the learning curves of one or more training runs.

    Parameters
    ----------
    run_dirs:
        A run directory, or several; each must contain ``metrics.csv``.
        Each run gets its own colour, labelled with the directory name.
    output:
        If given, the figure is also saved there (``.png``, ``.svg`` or
        ``.pdf``), atomically: a temporary file in the same directory is
        renamed over the target.  The location is checked before anything is
        loaded or drawn.  A PNG is ``FIGSIZE * DPI`` = 1000 x 700 pixels.
    x:
        Main x axis: ``"episode"`` (default), ``"env_steps"`` or
        ``"wall_seconds"`` (drawn in minutes or hours).  With a single run a
        secondary axis on top shows env steps (or, when ``x="env_steps"``,
        wall-clock time) at the same points.
    window:
        Number of trailing episodes over which the point win rate is pooled.
    title:
        Figure title; a default naming the run(s) is used if omitted.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    out_path = _check_output(output) if output is not None else None

    if isinstance(run_dirs, (str, bytes, os.PathLike)):
        run_dirs = [run_dirs]
    paths = [Path(os.fspath(p)) for p in run_dirs]
    if not paths:
        raise ValueError("no run directories given")
    runs = [load_metrics(p) for p in paths]
    labels = _run_labels(paths)
    # Pong runs have points (a win-rate panel); CartPole runs have returns and lengths only.
    scored = ["points_won" in r for r in runs]
    if any(scored) and not all(scored):
        raise ValueError("cannot plot Pong runs (points) and CartPole runs (returns) in one figure")
    scored = scored[0]

    # Main x axis quantity and its unit.
    if x == "episode":
        scale, xlabel = 1.0, "episode"
    elif x == "env_steps":
        scale, unit = _steps_unit(max(float(r["env_steps"].max()) for r in runs))
        xlabel = f"environment steps ({unit})"
    else:
        scale, unit = _time_unit(max(float(r["wall_seconds"].max()) for r in runs))
        xlabel = f"wall-clock time ({unit})"
    xs = [r[x] / scale for r in runs]

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    # Actor-critic runs log their updates' diagnostics, mit-pong runs each game's policy entropy:
    # a third panel shows them.
    diagnostics = scored and any("entropy" in r for r in runs)
    actor_critic = any("clip_fraction" in r for r in runs)
    ax_d = None
    if diagnostics:
        ax_r, ax_w, ax_d = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 2]})
    elif scored:
        ax_r, ax_w = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    else:
        ax_r = ax_w = fig.subplots(1, 1)

    colours = [f"C{i % 10}" for i in range(len(runs))]
    run_handles = []
    for run, xv, label, colour in zip(runs, xs, labels, colours):
        ax_r.plot(xv, run["reward"], color=colour, lw=0.6, alpha=0.25, zorder=2)
        ax_r.plot(xv, run["running_reward"], color=colour, lw=2.2, zorder=3)
        if scored:
            rate = _trailing_win_rate(run["points_won"], run["points_lost"], window)
            ax_w.plot(xv, rate, color=colour, lw=1.8, zorder=3)
        if ax_d is not None and "entropy" in run:
            ax_d.plot(xv, run["entropy"], color=colour, lw=1.8, zorder=3)
        if ax_d is not None and "clip_fraction" in run:
            ax_d.plot(xv, run["clip_fraction"], color=colour, lw=1.2, ls="--", zorder=3)
            ax_d.plot(xv, 100 * run["approx_kl"], color=colour, lw=1.2, ls=":", zorder=3)
        summary = (
            f"{len(run['episode'])} episodes, {_format_steps(float(run['env_steps'][-1]))} steps, "
            f"{_format_duration(float(run['wall_seconds'][-1]))}"
        )
        run_handles.append(Line2D([], [], color=colour, lw=2.2, label=f"{label}: {summary}"))

    # Reward panel.
    lo = min(float(np.nanmin(np.r_[r["reward"], r["running_reward"]])) for r in runs)
    hi = max(float(np.nanmax(np.r_[r["reward"], r["running_reward"]])) for r in runs)
    if scored and lo >= -21 and hi <= 21:  # Pong: a game ends when one side reaches 21 points
        ax_r.set_ylim(-22, 22)
        ax_r.set_yticks(range(-21, 22, 7))
    ax_r.axhline(0, color="0.35", lw=0.8, ls=":", zorder=1)
    ax_r.set_ylabel("reward per episode\n(points won \N{MINUS SIGN} points lost)" if scored
                    else "return per episode\n(steps the pole stayed up)")
    ax_r.grid(True, alpha=0.3)
    what = "reward" if scored else "return"
    style_handles = [
        Line2D([], [], color="0.4", lw=0.8, alpha=0.5, label=f"episode {what}"),
        Line2D([], [], color="0.4", lw=2.2, label=f"running {what}"),
    ]
    # Wherever the curves leave room: for a run that learns, the empty corner is the late, low one
    # that a fixed "upper left" would not pick (it covered the first minutes of every curve).
    ax_r.legend(handles=run_handles + style_handles, loc="best", fontsize=9, framealpha=0.9)

    # Win-rate panel.
    if scored:
        ax_w.axhline(0.5, color="0.3", lw=1.0, ls="--", zorder=1)
        ax_w.set_ylim(0, 1)
        ax_w.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax_w.set_ylabel(f"point win rate\n(pooled over last {window} episodes)")
    ax_w.grid(True, alpha=0.3)
    if ax_d is not None:
        ax_d.axhline(np.log(6), color="0.3", lw=1.0, ls="--", zorder=1)  # a uniform policy
        ax_d.set_ylabel("per update" if actor_critic else "per episode")
        ax_d.grid(True, alpha=0.3)
        handles = [Line2D([], [], color="0.4", lw=1.8, label="policy entropy (nats; dashed line: uniform)")]
        if actor_critic:
            handles += [Line2D([], [], color="0.4", lw=1.2, ls="--", label="clipped fraction"),
                        Line2D([], [], color="0.4", lw=1.2, ls=":", label="approx. KL x 100")]
        ax_d.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
        _clip_rare_spikes(ax_d, floor=np.log(6))
    (ax_d if ax_d is not None else ax_w).set_xlabel(xlabel)

    x_lo = min(0.0, min(float(np.min(v)) for v in xs))  # all three x quantities start near 0
    x_hi = max(float(np.max(v)) for v in xs)
    bottom = ax_d if ax_d is not None else ax_w
    if x_hi > x_lo:
        bottom.set_xlim(x_lo, x_hi)
    if x == "episode":
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))

    # Secondary axis on top (single run only: each run maps episodes to steps differently).
    if len(runs) == 1:
        run = runs[0]
        if x == "env_steps":
            other, (oscale, ounit) = "wall_seconds", _time_unit(float(run["wall_seconds"].max()))
            olabel = f"wall-clock time ({ounit})"
        else:
            other, (oscale, ounit) = "env_steps", _steps_unit(float(run["env_steps"].max()))
            olabel = f"environment steps ({ounit})"
        maps = _monotone_map(xs[0], run[other] / oscale)
        if maps is not None:
            top = ax_r.secondary_xaxis("top", functions=maps)
            top.set_xlabel(olabel)

    if title is None:
        game = "Pong" if scored else "CartPole"
        if actor_critic:
            method = ("actor-critic (PPO)" if all("clip_fraction" in r for r in runs)
                      else "policy gradient and actor-critic (PPO)")
        else:
            method = "policy gradient"
        title = f"{game} {method}: " + (labels[0] if len(labels) == 1 else f"{len(labels)} runs")
    fig.suptitle(title, fontsize=13, fontweight="bold")

    if out_path is not None:
        _save_atomically(fig, out_path)
    return fig
