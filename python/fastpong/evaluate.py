"""Moved to ``fastpong.watch.evaluate`` (CHANGELOG.md). Importing this old name gives that very module object, not
a copy, so code that patches or reads its attributes through the old name still reaches it."""

import sys

from .watch import evaluate as _moved

sys.modules[__name__] = _moved
