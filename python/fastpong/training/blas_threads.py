"""NumPy's BLAS held to one thread while fastpong's own kernels train.

fastpong's C++ kernels run on their own OpenMP threads (``fastpong.set_num_threads``). The
actor-critic's step alternates them with NumPy products (its dense heads, 0.2 ms each for a
minibatch of 256), and OpenBLAS's worker threads, which spin for a while after each product, took
the cores the next C++ call wanted. One BLAS thread leaves the products where they are (on the
calling thread) and the cores to the kernels. threadpoolctl finds whichever BLAS NumPy loaded
(OpenBLAS, MKL, BLIS, Accelerate) and restores its setting afterwards.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext


def blas_limit_for(engine: str) -> AbstractContextManager:
    """A context in which NumPy's BLAS uses one thread, for the fast engine; the reference engines
    are NumPy as their authors ran it, BLAS threads and all, so for them nothing changes."""
    if engine != "fast":
        return nullcontext()
    from threadpoolctl import threadpool_limits  # only a training session needs it

    return threadpool_limits(limits=1, user_api="blas")
