"""``fastpong.train`` and ``fastpong.evaluate`` are functions and modules at once.

Importing a submodule makes Python set the package's attribute of that name to the module: after
``from fastpong.train import TrainSummary`` (or ``import fastpong.evaluate``), ``fastpong.train``
would be the module, and ``fastpong.train(...)`` a TypeError. Giving those modules a ``__call__``
that calls their function keeps ``fastpong.train(...)`` working whichever was imported first.
"""

from __future__ import annotations

import sys
import types


def call_through(module_name: str, function_name: str) -> None:
    """Makes sys.modules[module_name] callable: calling it calls its `function_name`."""
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        __doc__ = module.__doc__

        def __call__(self, *args, **kwargs):
            return getattr(self, function_name)(*args, **kwargs)

    module.__class__ = CallableModule
