"""The ``fastpong`` command: train, eval and plot.

Every mistake a user can type ends in one readable line on stderr and exit code 2, before any work
starts; an interrupted training run saves its checkpoint and exits 130 (SIGINT) or 143 (SIGTERM);
a file that cannot be written mid-run (full disk, unwritable directory) ends it with one line and
exit code 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback

from .config import (AGENT_FIELDS, DEFAULT_ENV_ID, ENGINES, OPTIMIZERS, PRESET_NAMES, PRESETS, RESUMABLE_FIELDS,
                     RETURN_WINDOW)
from .shipped import describe_shipped_policies

EXIT_USAGE = 2
EXIT_FAILURE = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not the usage block plus the error."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _add_train(subparsers) -> None:
    from .agents import AGENTS, KARPATHY, MIT_CARTPOLE, PPO
    from .reference.ppo import OBSERVATIONS

    p = subparsers.add_parser(
        "train", help="train an agent", description="Train a policy-gradient agent: the tutorial's on Pong "
        "(the default), or the MIT lab's on CartPole (--env CartPole-v1).")
    # Algorithm flags default to None so that we know which ones the user typed: on --resume only
    # those must agree with the checkpoint; the agent fills in the others.
    pong, cartpole = KARPATHY.defaults, MIT_CARTPOLE.defaults

    def default(name):
        if pong[name] == cartpole[name]:
            return f"{pong[name]:g}"
        return f"{pong[name]:g} for karpathy, {cartpole[name]:g} for mit-cartpole"

    # Groups, so that --help reads as a few short lists of related options instead of one long one.
    env = p.add_argument_group("environment and agent", "what plays, and what learns to play it")
    env.add_argument("--preset", choices=PRESET_NAMES,
                     help="karpathy (Pong): karpathy or tutorial, the originals' settings; fast, see "
                     "experiments/README.md. mit-cartpole: lab, the MIT lab's own settings. "
                     "mit-pong: lab, the lab's environment (Pong-v0, frameskip 5) and settings; "
                     "lab-entropy, the same with an entropy bonus of 0.01. "
                     "Flags given with it still win")
    env.add_argument("--env", dest="env_id", metavar="ID",
                     help=f"a gymnasium ALE id, or CartPole-v1 / CartPole-v0 (default {DEFAULT_ENV_ID})")
    env.add_argument("--frameskip", type=_positive_int, metavar="N",
                     help="Atari: emulator frames per agent step, fixed (default: the environment's "
                     "own: 4 for ALE/Pong-v5, 2 to 4 at random for Pong-v0; the MIT lab plays "
                     "Pong-v0 with 5)")
    env.add_argument("--agent", choices=list(AGENTS),
                     help="karpathy (the tutorial's Pong agent), mit-cartpole or mit-pong (the MIT "
                     "lab's CartPole and Pong agents), ppo (actor-critic on the lab's CNN, beyond the "
                     "seeds); default: the environment's")
    env.add_argument("--engine", choices=ENGINES, help="fast (C++ kernels) or reference (the same algorithm in "
                     "NumPy: the tutorial's loop with 1 env, or the lab's with N); default fast")
    algorithm = p.add_argument_group("algorithm", "recorded in config.json; on --resume they come from "
                                     "the checkpoint; only the schedules (--learning-rate, --entropy-coef, "
                                     "and ppo's --anneal-steps and --final-entropy-coef) may change")
    algorithm.add_argument("--optimizer", choices=OPTIMIZERS,
                           help=f"default {pong['optimizer']} for karpathy, {cartpole['optimizer']} for mit-cartpole")
    algorithm.add_argument("--batch-size", type=_positive_int, metavar="N",
                           help=f"finished episodes per update (default {default('batch_size')})")
    algorithm.add_argument("--learning-rate", type=_number, metavar="F", help=f"default {default('learning_rate')}; with --resume, the rate from here on (a step "
                           "schedule, logged in RUN_DIR/learning_rates.csv)")
    algorithm.add_argument("--decay-rate", type=_number, metavar="F", help="RMSProp decay (default 0.99)")
    algorithm.add_argument("--gamma", type=_number, metavar="F", help=f"discount factor (default {default('gamma')})")
    algorithm.add_argument("--hidden", type=_positive_int, metavar="N", help=f"hidden units (default {default('hidden')})")
    algorithm.add_argument("--seed", type=_non_negative_int, metavar="N", help="default: random, recorded in config.json")
    length = p.add_argument_group("run length", "without any of these a run goes on until interrupted "
                                  "(Ctrl-C writes its checkpoint)")
    count = length.add_mutually_exclusive_group()  # one limit on the count, plus the target
    count.add_argument("--episodes", type=_positive_int, metavar="N",
                       help="stop after N finished episodes in all (default: Pong runs until interrupted; CartPole "
                            "stops when solved, see --target-return)")
    count.add_argument("--steps", type=_positive_int, metavar="N",
                       help="stop after N environment steps in all")
    length.add_argument("--target-return", type=_number, metavar="R",
                        help=f"stop once the mean return of the last {RETURN_WINDOW} episodes reaches R (default "
                             "with no --episodes or --steps: CartPole's solved threshold, gymnasium's "
                             "reward_threshold, 475 for CartPole-v1)")
    run = p.add_argument_group("run directory and output", "where a run keeps config.json, metrics.csv, "
                               "checkpoint.npz and its videos, and what the command prints")
    run.add_argument("--run-dir", metavar="DIR", help="default: runs/<env>-<date>-<time>")
    run.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint (its settings; only "
                     "the schedules may change: --learning-rate, --anneal-steps, --entropy-coef, "
                     "--final-entropy-coef, each logged)")
    run.add_argument("--video-every", type=_positive_int, metavar="K",
                     help="record RUN_DIR/video/update-XXXX.mp4 every K updates (default: never)")
    run.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    speed = p.add_argument_group("speed", "games at once and threads: how fast, never what is learned")
    speed.add_argument("--num-envs", type=_positive_int, metavar="N",
                       help="environments stepped together (default: Pong, enough to keep every core busy; "
                       f"CartPole {cartpole['num_envs']})")
    speed.add_argument("--threads", type=_positive_int, metavar="N", help="emulator and kernel threads (default: all cores)")
    ppo = p.add_argument_group("the ppo agent", "actor-critic settings (defaults: CleanRL's Atari PPO; docs: the ppo agent)")
    ppo_defaults = PPO.defaults
    ppo.add_argument("--rollout-steps", type=_positive_int, metavar="N",
                     help=f"steps of every environment per update (default {ppo_defaults['rollout_steps']})")
    ppo.add_argument("--epochs", type=_positive_int, metavar="N",
                     help=f"passes over each rollout (default {ppo_defaults['epochs']})")
    ppo.add_argument("--minibatches", type=_positive_int, metavar="N",
                     help=f"minibatches per pass, one Adam step each (default {ppo_defaults['minibatches']})")
    ppo.add_argument("--clip-coef", type=_number, metavar="F",
                     help=f"probability-ratio (and value) clip (default {ppo_defaults['clip_coef']:g})")
    ppo.add_argument("--entropy-coef", type=_number, metavar="F",
                     help=f"entropy bonus weight (default {ppo_defaults['entropy_coef']:g}; mit-pong too, "
                          "default 0, the lab's)")
    ppo.add_argument("--value-coef", type=_number, metavar="F",
                     help=f"value loss weight (default {ppo_defaults['value_coef']:g})")
    ppo.add_argument("--gae-lambda", type=_number, metavar="F",
                     help=f"GAE's lambda (default {ppo_defaults['gae_lambda']:g})")
    ppo.add_argument("--max-grad-norm", type=_number, metavar="F",
                     help=f"clip the gradient's global norm to this (default {ppo_defaults['max_grad_norm']:g}; "
                          "mit-pong too, default: no clipping, the lab's)")
    ppo.add_argument("--anneal-steps", type=_positive_int, metavar="N",
                     help="the learning rate falls linearly over N environment steps to the rate of "
                          "its last update there, and stays at that "
                          f"(default {ppo_defaults['anneal_steps']:,})")
    ppo.add_argument("--final-entropy-coef", type=_number, metavar="F",
                     help="the entropy bonus weight falls linearly to F with the learning rate, over "
                          "--anneal-steps (default: it stays at --entropy-coef, CleanRL's)")
    ppo.add_argument("--observation", choices=OBSERVATIONS,
                     help="what the network sees of a step: the lab's 40x40 frame change, or the frame "
                          "and the change in one channel, where still paddles show "
                          f"(default {ppo_defaults['observation']})")
    lab_pong = p.add_argument_group("the mit-pong agent", "beyond the lab's settings (also --entropy-coef, "
                                    "--max-grad-norm above; docs: the lab's Pong agent)")
    lab_pong.add_argument("--head-init-scale", type=_number, metavar="F",
                          help="multiply the logits layer's initial weights by F (CleanRL's 0.01: a "
                               "near-uniform first policy; default: the lab's Glorot init as it is)")
    ray = p.add_argument_group("Ray", 'rollout workers on a cluster, the learner here (pip install "fastpong[ray]")')
    ray.add_argument("--ray", metavar="ADDRESS|auto|local",
                     help="play on Ray rollout workers: a cluster's head host:port, auto (the cluster "
                     "this machine joined with `ray start`) or local (a Ray instance of this machine)")
    ray.add_argument("--workers", type=_positive_int, metavar="N",
                     help="with --ray: rollout workers of one CPU and --num-envs games each "
                     "(default: the cluster's CPUs less one)")
    p.set_defaults(handler=_run_train)


def _run_train(args) -> int:
    from .train import StopSignals, TrainingCrash, train

    # Installed for good, before any work: from here to exit a stop signal (even a second one)
    # lets the run write its checkpoint and this command report it, instead of killing either.
    stop = StopSignals().install()
    if args.resume and args.run_dir is None:
        raise ValueError("--resume needs --run-dir: the run directory to continue")
    settings = {name: getattr(args, name) for name in (
        "env_id", "num_envs", "episodes", "steps", "batch_size", "learning_rate", "decay_rate",
        "gamma", "hidden", "seed", "threads", "engine", "video_every", "agent", "optimizer",
        "target_return", "frameskip", *AGENT_FIELDS) if getattr(args, name) is not None}
    if args.preset:
        preset = _preset_settings(args.preset, settings)
        if args.resume:  # a resumed run's schedules change only when their flags are typed
            for name in RESUMABLE_FIELDS:
                preset.pop(name, None)
        settings = {**preset, **settings}
    try:
        summary = train(run_dir=args.run_dir, resume=args.resume, progress=not args.quiet,
                        stop_signals=stop, ray=args.ray, workers=args.workers, **settings)
    except TrainingCrash as exc:  # a bug, not a usage error: the traceback for a report, then one line
        traceback.print_exception(exc.error, file=sys.stderr)
        print(f"fastpong train: {exc} (continue with: fastpong train --run-dir {exc.checkpoint_path.parent} "
              "--resume; please report the error above)", file=sys.stderr)
        return EXIT_FAILURE
    except RuntimeError as exc:  # a Ray run that lost every worker (its checkpoint is written)
        if args.ray is None:
            raise
        print(f"fastpong train: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc}; the last checkpoint written is intact: "
                                 "free space (or fix the cause), then continue with --resume") from None
    stop.ignore()  # the checkpoint is written: from here on, only report and exit
    if summary.nothing_to_do is not None:  # said even with --quiet: nothing was trained
        print(f"fastpong train: nothing left to do in {summary.run_dir} ({summary.nothing_to_do}); ask for "
              "more with --episodes, --steps or --target-return", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()))
    checkpoint = f"{summary.run_dir}/checkpoint.npz"
    if summary.interrupted_by is not None:
        name = signal.Signals(summary.interrupted_by).name
        print(f"fastpong train: stopped by {name}; checkpoint written to {checkpoint} "
              f"(continue with: fastpong train --run-dir {summary.run_dir} --resume)", file=sys.stderr)
        return 128 + summary.interrupted_by
    if not args.quiet:
        running = "n/a" if summary.running_reward is None else f"{summary.running_reward:+.2f}"
        print(f"fastpong train: {summary.episodes} episodes, {summary.steps} steps, {summary.updates} updates; "
              f"running reward {running}; {summary.steps_per_second:,.0f} steps/s; checkpoint {checkpoint}",
              file=sys.stderr)
    return 0


def _preset_settings(preset: str, settings: dict) -> dict:
    """The settings of the run's agent's preset (karpathy, tutorial, fast: the tutorial's agent;
    lab: the MIT lab's agents, each its own); ValueError if the agent has no such preset."""
    from .agents import default_agent

    agent = settings.get("agent") or default_agent(settings.get("env_id", DEFAULT_ENV_ID))
    presets = PRESETS.get(agent, {})
    if preset not in presets:
        owners = [name for name, named in PRESETS.items() if preset in named]
        whose = (f"agent {owners[0]!r}" if len(owners) == 1
                 else "agents " + " and ".join(repr(name) for name in owners))
        raise ValueError(f"--preset {preset} holds settings of {whose}, not of {agent!r} "
                         f"(its presets: {', '.join(presets) or 'none'}; name the agent with --agent)")
    return dict(presets[preset])  # a copy: callers may change it


def _add_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="play a trained policy", description="Play full games with a trained policy "
        "and report the score; optionally record the first game as a video.")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="a checkpoint .npz, a run directory, or a policy shipped with fastpong: "
                        + describe_shipped_policies())
    p.add_argument("--env", dest="env_id", metavar="ID",
                   help=f"default: the run's environment ({DEFAULT_ENV_ID} for a bare Pong policy)")
    p.add_argument("--frameskip", type=_positive_int, metavar="N",
                   help="Atari: emulator frames per agent step (default: the run's, else the environment's own)")
    p.add_argument("--episodes", type=_positive_int, default=10, metavar="N", help="episodes to play (default 10)")
    p.add_argument("--num-envs", type=_positive_int, metavar="N",
                   help="episodes played at once (default 4 for Pong, 16 for CartPole)")
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="default 0")
    p.add_argument("--greedy", action="store_true",
                   help="play the most probable action (Pong: up when p > 0.5) instead of sampling")
    p.add_argument("--video", metavar="FILE", help="record the first game to FILE.mp4 or FILE.gif")
    p.add_argument("--max-steps", type=_positive_int, metavar="N",
                   help="stop after N agent steps; unfinished games count as truncated")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    p.set_defaults(handler=_run_eval)


def _run_eval(args) -> int:
    from .watch.evaluate import evaluate

    result = evaluate(args.checkpoint, env_id=args.env_id, frameskip=args.frameskip, episodes=args.episodes,
                      num_envs=args.num_envs, seed=args.seed, greedy=args.greedy, video=args.video,
                      max_steps=args.max_steps)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    if "mean_return" in summary:
        _print_returns(result, summary)
    else:
        _print_games(result, summary)
    if args.video:
        print(f"video of the first episode: {args.video}")
    return 0


def _print_returns(result, summary) -> None:
    print(f"{'episode':>7}  {'return':>7}  {'steps':>6}")
    for i, e in enumerate(result.episodes, 1):
        note = "  (truncated)" if e.truncated else ""  # by the time limit (balanced to the end) or --max-steps
        print(f"{i:>7}  {e.reward:>7g}  {e.steps:>6}{note}")
    print(f"mean return {summary['mean_return']:.1f} ± {summary['std_return']:.1f} over {summary['episodes']} "
          f"episodes (min {summary['min_return']:g}, max {summary['max_return']:g}); mean length "
          f"{summary['mean_length']:.1f} ± {summary['std_length']:.1f} steps")


def _print_games(result, summary) -> None:
    print(f"{'episode':>7}  {'won':>3}  {'lost':>4}  {'reward':>6}  {'steps':>6}")
    for i, e in enumerate(result.episodes, 1):
        note = "  (truncated)" if e.truncated else ""
        print(f"{i:>7}  {e.points_won:>3}  {e.points_lost:>4}  {e.reward:>+6d}  {e.steps:>6}{note}")
    print(f"mean reward {summary['mean_reward']:+.2f} ± {summary['std_reward']:.2f} over {summary['episodes']} "
          f"episodes; episodes won {summary['episodes_won']}/{summary['episodes']}; points won "
          f"{summary['points_won']}/{summary['points_won'] + summary['points_lost']} "
          f"({100 * summary['point_win_rate']:.1f}%)")


def _add_plot(subparsers) -> None:
    p = subparsers.add_parser("plot", help="plot learning curves",
                              description="Plot the learning curve of one or more run directories.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories holding metrics.csv")
    p.add_argument("-o", "--output", default="learning-curve.png", metavar="FILE",
                   help="image to write: .png, .svg or .pdf (default learning-curve.png)")
    p.add_argument("--x", choices=("episode", "env_steps", "wall_seconds"), default="episode",
                   help="horizontal axis (default episode)")
    p.set_defaults(handler=_run_plot)


def _run_plot(args) -> int:
    from .watch.plot import plot_runs

    plot_runs(args.run_dirs, output=args.output, x=args.x)
    print(f"wrote {args.output}")
    return 0


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastpong")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from . import __version__

        return __version__


class _VersionAction(argparse.Action):
    """--version: the installed version, as pip and bug reports know it, looked up in the installed
    packages' metadata only when asked (not on every command's start-up), with no import of the
    compiled module."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show the installed version and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {_installed_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastpong", description="Policy-gradient agents, fast: Karpathy's Pong from pixels "
                     "and the MIT lab's CartPole and Pong.")
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=_Parser)
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_plot(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:  # Ctrl-C before train installs its handlers, or during eval / plot
        print(f"fastpong {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except ValueError as exc:  # bad input found before (or instead of) any work: one line
        print(f"fastpong {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the disk filled up or a place became unwritable while working
        print(f"fastpong {args.command}: error: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
