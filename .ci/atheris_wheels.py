"""Exit 0 if PyPI has atheris wheels for this interpreter, 1 if not; say which on stderr.

.ci/run installs atheris where this says yes and lets a failed install fail CI there; elsewhere it
skips the coverage-guided fuzzers with this script's reason. Checked against PyPI's files for
atheris >= 2.3 (Dec 2026): manylinux (glibc >= 2.17) x86_64 wheels for CPython 3.6-3.11 (2.3.0),
3.11-3.13 (3.0.0) and 3.12-3.14 (3.1.0); nothing for other machines, musl, macOS or PyPy. Without
a wheel pip would build atheris from source, which needs clang with libFuzzer: not a CI promise.
"""

import platform
import sys

LAST_WITH_WHEELS = (3, 14)

reasons = []
if platform.python_implementation() != "CPython":
    reasons.append(f"{platform.python_implementation()} (wheels are for CPython)")
if sys.version_info[:2] > LAST_WITH_WHEELS:
    reasons.append(f"Python {sys.version_info.major}.{sys.version_info.minor} (wheels up to 3.14)")
if sys.platform != "linux" or platform.machine() != "x86_64":
    reasons.append(f"{sys.platform} {platform.machine()} (wheels are for Linux x86_64)")
elif platform.libc_ver()[0] != "glibc":
    reasons.append("a libc other than glibc (wheels are manylinux)")

if reasons:
    print("no atheris wheels for " + ", ".join(reasons), file=sys.stderr)
    sys.exit(1)
print(f"atheris wheels exist for CPython {sys.version_info.major}.{sys.version_info.minor} on Linux x86_64",
      file=sys.stderr)
