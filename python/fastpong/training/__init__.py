"""The training run: its directory, lock, checkpoints and metrics (run.py, runlock.py,
checkpoint.py, metrics.py), fed by a rollout source; the local one is local_lanes.py, Ray's is in
``fastpong.distributed``. ``fastpong.train`` is the front door."""
