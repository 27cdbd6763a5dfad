"""Training beyond one process: ``fastpong train --ray`` (ray_train.py, rollout_worker.py).

Importing this package never imports Ray: ``check_ray_args`` finds out whether it is installed."""


def check_ray_args(address, workers) -> None:
    """One-line ValueErrors for --ray/--workers before any work (Ray missing, bad address...)."""
    from .ray_train import check_ray_args as check

    check(address, workers)


def address_kind(address: str) -> str:
    """What config.json records of --ray: 'local', 'auto' or 'address' (a host:port, which may
    differ between sessions of the run)."""
    return address if address in ("local", "auto") else "address"
