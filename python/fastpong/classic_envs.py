"""Moved to ``fastpong.envs.classic`` (CHANGELOG.md). Importing this old name gives that very module object, not
a copy, so code that patches or reads its attributes through the old name still reaches it."""

import sys

from .envs import classic as _moved

sys.modules[__name__] = _moved
