"""Bad input: every check raises ValueError naming what was expected and what came, and nothing
crashes or half-applies (a refused call leaves policies, gradients and episodes as they were)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastpong

H, D = 4, 6
NAN, INF = float("nan"), float("inf")
FRAME = (210, 160, 3)


def policy():
    return fastpong.Policy(hidden=H, input_size=D, seed=0)


def rows(dense):
    return fastpong.SparseFrames.from_dense(np.asarray(dense, dtype=np.float32))


def episode(steps=2):
    buffer = fastpong.EpisodeBuffer(H, D)
    for _ in range(steps):
        buffer.append(rows(np.eye(D)[1]), np.ones(H), 0.5)
    return buffer


def model(w1=None, w2=None):
    return {
        "W1": np.zeros((H, D)) if w1 is None else w1,
        "W2": np.zeros(H) if w2 is None else w2,
    }


def with_value(shape, index, value):
    a = np.zeros(shape)
    a[index] = value
    return a


# Valid calls with one argument replaced: each case below names only what is wrong.


def backward(eph=None, epx=None, epdlogp=None):
    return policy().backward(
        np.zeros((3, H)) if eph is None else eph,
        np.zeros((3, D)) if epx is None else epx,
        np.zeros(3) if epdlogp is None else epdlogp,
    )


def from_arrays(epx=None, eph=None, epdlogp=None, rewards=None):
    return fastpong.EpisodeBuffer.from_arrays(
        np.zeros((3, 2)) if epx is None else epx,
        np.zeros((3, 2)) if eph is None else eph,
        np.zeros(3) if epdlogp is None else epdlogp,
        np.zeros(3) if rewards is None else rewards,
    )


def batch_append(x=None, h=None, dlogps=None):
    return fastpong.EpisodeBatch(2, H, D).append(
        rows(np.zeros((2, D))) if x is None else x,
        np.zeros((2, H)) if h is None else h,
        np.zeros(2) if dlogps is None else dlogps,
    )


def accumulate(episode_=None, advantages=None, grads=None):
    p = policy()
    return p.accumulate_gradient(
        episode() if episode_ is None else episode_,
        np.ones(2) if advantages is None else advantages,
        p.gradient_buffer() if grads is None else grads,
    )


# (id, call, regex on the message: what was expected ... what came)
CASES = [
    # --- frames: dtype, shape, strings, objects -------------------------------------------------
    ("frame float", lambda: fastpong.frame_preprocessing(np.zeros((84, 84))),
     r"uint8 of shape \(210, 160, 3\).*got float64 \(84, 84\)"),
    ("frame float right shape", lambda: fastpong.frame_preprocessing(np.zeros(FRAME)),
     r"frame must be uint8 of shape \(210, 160, 3\) or \(N, 210, 160, 3\), "
     r"got float64 \(210, 160, 3\)"),
    ("frame float32 batch", lambda: fastpong.frame_preprocessing(np.zeros((2, *FRAME), np.float32)),
     r"uint8 .*got float32 \(2, 210, 160, 3\)"),
    ("frame grayscale", lambda: fastpong.frame_preprocessing(np.zeros((210, 160), np.uint8)),
     r"uint8 of shape \(210, 160, 3\).*got uint8 \(210, 160\)"),
    ("frame rgba", lambda: fastpong.frame_preprocessing(np.zeros((210, 160, 4), np.uint8)),
     r"uint8 of shape \(210, 160, 3\).*got uint8 \(210, 160, 4\)"),
    ("frame transposed", lambda: fastpong.frame_preprocessing(np.zeros((160, 210, 3), np.uint8)),
     r"got uint8 \(160, 210, 3\)"),
    ("frame 5d", lambda: fastpong.frame_preprocessing(np.zeros((1, 1, *FRAME), np.uint8)),
     r"got uint8 \(1, 1, 210, 160, 3\)"),
    ("frame int16", lambda: fastpong.frame_preprocessing(np.zeros(FRAME, np.int16)),
     r"uint8 .*got int16 \(210, 160, 3\)"),
    ("frame bool", lambda: fastpong.frame_preprocessing(np.zeros(FRAME, bool)),
     r"uint8 .*got bool \(210, 160, 3\)"),
    ("frame complex", lambda: fastpong.frame_preprocessing(np.zeros(FRAME, complex)),
     r"uint8 .*got complex128 \(210, 160, 3\)"),
    ("frame object", lambda: fastpong.frame_preprocessing(np.zeros(FRAME, object)),
     r"uint8 .*got object \(210, 160, 3\)"),
    ("frame string", lambda: fastpong.frame_preprocessing("frame"),
     r"uint8 of shape \(210, 160, 3\).*got <U5 \(\)"),
    ("frame None", lambda: fastpong.frame_preprocessing(None), r"uint8 .*got object \(\)"),
    ("frame list", lambda: fastpong.frame_preprocessing([1, 2, 3]), r"uint8 .*got int64 \(3,\)"),
    ("differencer single frame",
     lambda: fastpong.FrameDifferencer(1).step(np.zeros(FRAME, np.uint8)),
     r"frames must be uint8 of shape \(N, 210, 160, 3\), got uint8 \(210, 160, 3\)"),
    ("differencer float frames", lambda: fastpong.FrameDifferencer(1).step(np.zeros((1, *FRAME))),
     r"uint8 of shape \(N, 210, 160, 3\), got float64 \(1, 210, 160, 3\)"),
    ("differencer wrong count",
     lambda: fastpong.FrameDifferencer(2).step(np.zeros((3, *FRAME), np.uint8)),
     r"one frame per environment, 2, got uint8 \(3, 210, 160, 3\)"),
    ("differencer zero envs", lambda: fastpong.FrameDifferencer(0),
     r"num_envs must be a positive integer, got 0"),
    ("differencer negative envs", lambda: fastpong.FrameDifferencer(-3),
     r"num_envs must be a positive integer, got -3"),
    ("differencer reset past end", lambda: fastpong.FrameDifferencer(2).reset(2),
     r"env must be in \[0, 2\), got 2"),
    ("differencer reset negative", lambda: fastpong.FrameDifferencer(2).reset(-1),
     r"env must be in \[0, 2\), got -1"),
    # --- SparseFrames ---------------------------------------------------------------------------
    ("sparse nan", lambda: fastpong.SparseFrames.from_dense(np.array([0.0, NAN])),
     r"only -1, 0 and 1.*got nan at row 0, column 1"),
    ("sparse inf", lambda: fastpong.SparseFrames.from_dense(np.array([[0.0], [-INF]])),
     r"only -1, 0 and 1.*got -inf at row 1, column 0"),
    ("sparse not ternary", lambda: fastpong.SparseFrames.from_dense(np.array([0.0, 0.5])),
     r"only -1, 0 and 1.*got 0\.5"),
    ("sparse 3d", lambda: fastpong.SparseFrames.from_dense(np.zeros((1, 2, 3))),
     r"x must have shape \(D,\) or \(N, D\), got float64 \(1, 2, 3\)"),
    ("sparse complex", lambda: fastpong.SparseFrames.from_dense(np.zeros(3, complex)),
     r"real numeric array.*got complex128 \(3,\)"),
    ("sparse bool", lambda: fastpong.SparseFrames.from_dense(np.zeros(3, bool)),
     r"real numeric array.*got bool \(3,\)"),
    ("sparse string", lambda: fastpong.SparseFrames.from_dense("101"),
     r"real numeric array.*got <U3 \(\)"),
    ("to_dense too small", lambda: rows([0, 0, 1]).to_dense(2),
     r"input_size must exceed every stored pixel index, got 2 with index 2"),
    ("to_dense zero", lambda: rows([0, 0, 1]).to_dense(0),
     r"input_size must be a positive integer, got 0"),
    # --- sizes ----------------------------------------------------------------------------------
    ("policy hidden 0", lambda: fastpong.Policy(hidden=0),
     r"hidden must be a positive integer, got 0"),
    ("policy input -1", lambda: fastpong.Policy(input_size=-1),
     r"input_size must be a positive integer, got -1"),
    ("policy hidden float", lambda: fastpong.Policy(hidden=2.5),
     r"hidden must be a positive integer, got 2\.5"),
    ("policy hidden bool", lambda: fastpong.Policy(hidden=True),
     r"hidden must be a positive integer, got True"),
    ("gradient buffer hidden 0", lambda: fastpong.GradientBuffer(0, 5),
     r"hidden must be a positive integer, got 0"),
    ("gradient buffer input 0", lambda: fastpong.GradientBuffer(3, 0),
     r"input_size must be a positive integer, got 0"),
    ("episode hidden -2", lambda: fastpong.EpisodeBuffer(-2, 5),
     r"hidden must be a positive integer, got -2"),
    ("episode input 0", lambda: fastpong.EpisodeBuffer(2, 0),
     r"input_size must be a positive integer, got 0"),
    ("batch envs 0", lambda: fastpong.EpisodeBatch(0, 2, 3),
     r"num_envs must be a positive integer, got 0"),
    ("batch hidden 0", lambda: fastpong.EpisodeBatch(2, 0, 3),
     r"hidden must be a positive integer, got 0"),
    ("batch input -1", lambda: fastpong.EpisodeBatch(2, 2, -1),
     r"input_size must be a positive integer, got -1"),
    ("threads 0", lambda: fastpong.set_num_threads(0), r"threads must be .*\[1, \d+\], got 0"),
    ("threads absurd", lambda: fastpong.set_num_threads(10**10),
     r"threads must be .*\[1, \d+\], got 10000000000"),
    # --- policy forward -------------------------------------------------------------------------
    ("forward wrong length", lambda: policy().forward(np.zeros(D + 1)),
     r"x must have shape \(6,\) or \(N, 6\), got float64 \(7,\)"),
    ("forward wrong width", lambda: policy().forward(np.zeros((2, D - 1), np.float32)),
     r"x must have shape \(6,\) or \(N, 6\), got float32 \(2, 5\)"),
    ("forward 3d", lambda: policy().forward(np.zeros((2, D, 1))),
     r"\(6,\) or \(N, 6\), got float64 \(2, 6, 1\)"),
    ("forward list", lambda: policy().forward([[1, 0, 1]]),
     r"\(6,\) or \(N, 6\), got an object of type list of shape \(1, 3\)"),
    ("forward nan", lambda: policy().forward(with_value(D, 2, NAN)),
     r"x must be finite, got nan at flat index 2"),
    ("forward inf batch", lambda: policy().forward(with_value((3, D), (1, 0), INF)),
     r"x must be finite, got inf at flat index 6"),
    ("forward float32 overflow", lambda: _quiet_overflow(policy().forward, with_value(D, 0, 1e300)),
     r"x must be finite, got inf"),
    ("forward bool", lambda: policy().forward(np.zeros(D, bool)),
     r"real numeric array.*got bool \(6,\)"),
    ("forward complex", lambda: policy().forward(np.zeros(D, complex)),
     r"real numeric array.*got complex128 \(6,\)"),
    ("forward object", lambda: policy().forward(np.zeros(D, object)),
     r"real numeric array.*got object \(6,\)"),
    ("forward string", lambda: policy().forward("abcdef"), r"real numeric array.*got <U6 \(\)"),
    ("forward None", lambda: policy().forward(None), r"real numeric array.*got object \(\)"),
    ("forward ragged", lambda: policy().forward([[1, 0], [1]]),
     r"x must be a numeric array, got an object of type list"),
    ("forward sparse out of range", lambda: policy().forward(rows(np.eye(D + 2)[D + 1])),
     r"x pixel indices must be in \[0, 6\), got 7"),
    # --- policy backward ------------------------------------------------------------------------
    ("backward eph width", lambda: backward(eph=np.zeros((3, H + 1))),
     r"eph must have shape \(T, 4\), got float64 \(3, 5\)"),
    ("backward eph 1d", lambda: backward(eph=np.zeros(H)),
     r"eph must have shape \(T, 4\), got float64 \(4,\)"),
    ("backward epx steps", lambda: backward(epx=np.zeros((2, D))),
     r"epx must have shape \(3, 6\), got float64 \(2, 6\)"),
    ("backward epx width", lambda: backward(epx=np.zeros((3, D + 1))),
     r"epx must have shape \(3, 6\), got float64 \(3, 7\)"),
    ("backward epdlogp length", lambda: backward(epdlogp=np.zeros(4)),
     r"epdlogp must have shape \(3,\) or \(3, 1\), got float64 \(4,\)"),
    ("backward epdlogp 2 columns",
     lambda: backward(epdlogp=np.zeros((3, 2))),
     r"epdlogp must have shape \(3,\) or \(3, 1\), got float64 \(3, 2\)"),
    ("backward eph nan",
     lambda: backward(eph=with_value((3, H), (2, 1), NAN)),
     r"eph must be finite, got nan at flat index 9"),
    ("backward epx inf",
     lambda: backward(epx=with_value((3, D), (0, 0), -INF)),
     r"epx must be finite, got -inf at flat index 0"),
    ("backward epdlogp nan",
     lambda: backward(epdlogp=with_value((3, 1), (1, 0), NAN)),
     r"epdlogp must be finite, got nan at flat index 1"),
    ("backward bool epx", lambda: backward(epx=np.zeros((3, D), bool)),
     r"epx must be a real numeric array.*got bool \(3, 6\)"),
    ("backward string eph", lambda: backward(eph="eph"),
     r"eph must be a real numeric array.*got <U3 \(\)"),
    # --- weights --------------------------------------------------------------------------------
    ("from_model nan",
     lambda: fastpong.Policy.from_model(model(w1=with_value((H, D), (0, 3), NAN))),
     r"model\['W1'\] must be finite, got nan at flat index 3"),
    ("from_model inf W2", lambda: fastpong.Policy.from_model(model(w2=with_value(H, 1, INF))),
     r"model\['W2'\] must be finite, got inf at flat index 1"),
    ("from_model W2 shape", lambda: fastpong.Policy.from_model(model(w2=np.zeros(H + 1))),
     r"model\['W2'\] must have shape \(4,\), got float64 \(5,\)"),
    ("from_model W1 1d", lambda: fastpong.Policy.from_model(model(w1=np.zeros(D))),
     r"model\['W1'\] must have shape \(H, D\), got float64 \(6,\)"),
    ("from_model missing key", lambda: fastpong.Policy.from_model({"W1": np.zeros((H, D))}),
     r"model must have keys 'W1' and 'W2', missing 'W2'"),
    ("from_model None", lambda: fastpong.Policy.from_model(None),
     r"model must be a mapping with 'W1' of shape \(H, D\) and 'W2' of shape \(H,\), got NoneType"),
    ("load_model shape", lambda: policy().load_model(model(w1=np.zeros((H, D + 1)))),
     r"model\['W1'\] must have shape \(4, 6\), got float64 \(4, 7\)"),
    ("load_model transposed", lambda: policy().load_model(model(w1=np.zeros((D, H)))),
     r"model\['W1'\] must have shape \(4, 6\), got float64 \(6, 4\)"),
    ("load_model nan", lambda: policy().load_model(model(w2=with_value(H, 3, NAN))),
     r"model\['W2'\] must be finite, got nan at flat index 3"),
    ("load_model complex", lambda: policy().load_model(model(w1=np.zeros((H, D), complex))),
     r"model\['W1'\] must be a real numeric array.*got complex128 \(4, 6\)"),
    ("load_model string", lambda: policy().load_model(model(w1="W1")),
     r"model\['W1'\] must be a real numeric array.*got <U2 \(\)"),
    ("gradient buffer load shape",
     lambda: fastpong.GradientBuffer(H, D).load_model(model(w2=np.zeros((H, 1)))),
     r"model\['W2'\] must have shape \(4,\), got float64 \(4, 1\)"),
    ("gradient buffer load inf",
     lambda: fastpong.GradientBuffer(H, D).load_model(model(w1=with_value((H, D), (3, 5), INF))),
     r"model\['W1'\] must be finite, got inf at flat index 23"),
    # --- returns --------------------------------------------------------------------------------
    ("gamma 0", lambda: fastpong.discount_rewards([1.0], 0.0),
     r"gamma must be in \(0, 1\], got 0\.0"),
    ("gamma above 1", lambda: fastpong.discount_rewards([1.0], 1.5),
     r"gamma must be in \(0, 1\], got 1\.5"),
    ("gamma negative", lambda: fastpong.discount_rewards([1.0], -1e-9),
     r"gamma must be in \(0, 1\], got -1e-09"),
    ("gamma nan", lambda: fastpong.discount_rewards([1.0], NAN),
     r"gamma must be in \(0, 1\], got nan"),
    ("gamma inf", lambda: fastpong.discount_rewards([1.0], INF),
     r"gamma must be in \(0, 1\], got inf"),
    ("rewards nan", lambda: fastpong.discount_rewards([1.0, NAN], 0.9),
     r"r must be finite, got nan at flat index 1"),
    ("rewards inf column", lambda: fastpong.discount_rewards(with_value((3, 1), (2, 0), -INF), 0.9),
     r"r must be finite, got -inf at flat index 2"),
    ("rewards 2 columns", lambda: fastpong.discount_rewards(np.zeros((3, 2)), 0.9),
     r"r must have shape \(T,\) or \(T, 1\), got float64 \(3, 2\)"),
    ("rewards scalar", lambda: fastpong.discount_rewards(np.float64(1.0), 0.9),
     r"r must have shape \(T,\) or \(T, 1\), got an object of type float64"),
    ("rewards string", lambda: fastpong.discount_rewards("abc", 0.9),
     r"r must be a real numeric array.*got <U3 \(\)"),
    ("rewards bool", lambda: fastpong.discount_rewards(np.zeros(3, bool), 0.9),
     r"r must be a real numeric array.*got bool \(3,\)"),
    ("rewards object", lambda: fastpong.discount_rewards(np.array([1, None]), 0.9),
     r"r must be a real numeric array.*got object \(2,\)"),
    ("standardize inf", lambda: fastpong.standardize([1.0, INF]),
     r"values must be finite, got inf at flat index 1"),
    ("standardize 2d", lambda: fastpong.standardize(np.zeros((2, 2))),
     r"values must have shape \(T,\) or \(T, 1\), got float64 \(2, 2\)"),
    ("standardize complex", lambda: fastpong.standardize(np.zeros(2, complex)),
     r"values must be a real numeric array.*got complex128 \(2,\)"),
    # --- RMSProp --------------------------------------------------------------------------------
    ("lr 0", lambda: fastpong.RMSProp(learning_rate=0),
     r"learning_rate must be a positive number, got 0"),
    ("lr negative", lambda: fastpong.RMSProp(learning_rate=-1e-3),
     r"learning_rate must be a positive number, got -0\.001"),
    ("lr nan", lambda: fastpong.RMSProp(learning_rate=NAN),
     r"learning_rate must be a positive number, got nan"),
    ("lr inf", lambda: fastpong.RMSProp(learning_rate=INF),
     r"learning_rate must be a positive number, got inf"),
    ("lr beyond float32", lambda: fastpong.RMSProp(learning_rate=1e39),
     r"learning_rate must be a positive number, got 1e\+39"),
    ("lr string", lambda: fastpong.RMSProp(learning_rate="0.1"),
     r"learning_rate must be a positive number, got '0\.1'"),
    ("lr bool", lambda: fastpong.RMSProp(learning_rate=True),
     r"learning_rate must be a positive number, got True"),
    ("decay 1", lambda: fastpong.RMSProp(decay_rate=1.0),
     r"decay_rate must be in \[0, 1\), got 1\.0"),
    ("decay negative", lambda: fastpong.RMSProp(decay_rate=-0.1),
     r"decay_rate must be in \[0, 1\), got -0\.1"),
    ("decay nan", lambda: fastpong.RMSProp(decay_rate=NAN),
     r"decay_rate must be in \[0, 1\), got nan"),
    ("decay None", lambda: fastpong.RMSProp(decay_rate=None),
     r"decay_rate must be in \[0, 1\), got None"),
    ("rmsprop grads shape",
     lambda: fastpong.RMSProp().step(policy(), fastpong.GradientBuffer(H + 1, D)),
     r"grads must match the policy's shapes \(hidden=4, input_size=6\), "
     r"got hidden=5, input_size=6"),
    ("rmsprop dict shape",
     lambda: fastpong.RMSProp().step(policy(), model(w1=np.zeros((H + 1, D)))),
     r"grads\['W1'\] must have shape \(4, 6\), got float64 \(5, 6\)"),
    ("rmsprop dict nan", lambda: fastpong.RMSProp().step(policy(), model(w2=with_value(H, 0, NAN))),
     r"grads\['W2'\] must be finite, got nan at flat index 0"),
    ("rmsprop dict missing", lambda: fastpong.RMSProp().step(policy(), {"W1": np.zeros((H, D))}),
     r"grads must have keys 'W1' and 'W2', missing 'W2'"),
    # --- episodes -------------------------------------------------------------------------------
    ("set_last_reward on empty", lambda: fastpong.EpisodeBuffer(H, D).set_last_reward(1.0),
     r"set_last_reward needs a step first, the episode is empty"),
    ("set_last_reward nan", lambda: episode().set_last_reward(NAN),
     r"reward must be finite.*got nan"),
    ("set_last_reward overflow", lambda: episode().set_last_reward(1e300),
     r"reward must be finite in float32, got 1e\+300"),
    ("append two rows", lambda: episode().append(rows(np.zeros((2, D))), np.zeros(H), 0.1),
     r"x must have 1 row\(s\), got 2"),
    ("append index out of range",
     lambda: episode().append(rows(np.eye(D + 1)[D]), np.zeros(H), 0.1),
     r"x pixel indices must be in \[0, 6\), got 6"),
    ("append h shape", lambda: episode().append(rows(np.zeros(D)), np.zeros(H + 1), 0.1),
     r"h must have shape \(4,\), got float64 \(5,\)"),
    ("append h nan", lambda: episode().append(rows(np.zeros(D)), with_value(H, 1, NAN), 0.1),
     r"h must be finite, got nan at flat index 1"),
    ("append dlogp nan", lambda: episode().append(rows(np.zeros(D)), np.zeros(H), NAN),
     r"dlogp must be finite.*got nan"),
    ("append dlogp inf", lambda: episode().append(rows(np.zeros(D)), np.zeros(H), -INF),
     r"dlogp must be finite.*got -inf"),
    ("from_arrays epx 1d",
     lambda: from_arrays(epx=np.zeros(3)),
     r"epx must have shape \(T, D\), got float64 \(3,\)"),
    ("from_arrays epx values",
     lambda: from_arrays(epx=np.full((3, 2), 2.0)),
     r"epx must hold only -1, 0 and 1.*got 2\.0+ at step 0, pixel 0"),
    ("from_arrays epx nan",
     lambda: from_arrays(epx=with_value((3, 2), (1, 1), NAN)),
     r"epx must hold only -1, 0 and 1.*got nan at step 1, pixel 1"),
    ("from_arrays eph steps",
     lambda: from_arrays(eph=np.zeros((4, 2))),
     r"eph must have shape \(3, 2\), got float64 \(4, 2\)"),
    ("from_arrays eph nan",
     lambda: from_arrays(eph=with_value((3, 2), (0, 1), NAN)),
     r"eph must be finite, got nan at flat index 1"),
    ("from_arrays epdlogp length",
     lambda: from_arrays(epdlogp=np.zeros(4)),
     r"epdlogp must have shape \(3,\), got float64 \(4,\)"),
    ("from_arrays epdlogp inf",
     lambda: from_arrays(epdlogp=with_value(3, 2, INF)),
     r"epdlogp must be finite, got inf at flat index 2"),
    ("from_arrays rewards length",
     lambda: from_arrays(rewards=np.zeros(2)),
     r"rewards must have shape \(3,\), got float64 \(2,\)"),
    ("from_arrays rewards nan",
     lambda: from_arrays(rewards=[0, NAN, 0]),
     r"rewards must be finite, got nan at flat index 1"),
    ("from_arrays zero width",
     lambda: from_arrays(epx=np.zeros((3, 0))),
     r"epx's second dimension must be a positive integer, got 0"),
    ("batch episode past end", lambda: fastpong.EpisodeBatch(2, H, D).episode(2),
     r"env must be in \[0, 2\), got 2"),
    ("batch episode negative", lambda: fastpong.EpisodeBatch(2, H, D).episode(-1),
     r"env must be in \[0, 2\), got -1"),
    ("batch set_last_rewards on empty",
     lambda: fastpong.EpisodeBatch(2, H, D).set_last_rewards([0, 0]),
     r"set_last_rewards needs a step first, episode 0 is empty"),
    ("batch rows", lambda: batch_append(x=rows(np.zeros((3, D)))),
     r"x must have 2 row\(s\), got 3"),
    ("batch index out of range",
     lambda: batch_append(x=rows(np.eye(D + 1)[[0, D]])),
     r"x pixel indices must be in \[0, 6\), got 6"),
    ("batch h shape", lambda: batch_append(h=np.zeros((2, H + 1))),
     r"h must have shape \(2, 4\), got float64 \(2, 5\)"),
    ("batch h nan",
     lambda: batch_append(h=with_value((2, H), (1, 3), NAN)),
     r"h must be finite, got nan at flat index 7"),
    ("batch dlogps length",
     lambda: batch_append(dlogps=np.zeros(3)),
     r"dlogps must have shape \(2,\), got float64 \(3,\)"),
    ("batch dlogps nan",
     lambda: batch_append(dlogps=[NAN, 0]),
     r"dlogps must be finite, got nan at flat index 0"),
    ("batch rewards length", lambda: _batch_with_step().set_last_rewards([0, 0, 0]),
     r"rewards must have shape \(2,\), got an object of type list of shape \(3,\)"),
    ("batch rewards inf", lambda: _batch_with_step().set_last_rewards([INF, 0]),
     r"rewards must be finite, got inf at flat index 0"),
    # --- accumulate_gradient --------------------------------------------------------------------
    ("accumulate episode shape",
     lambda: accumulate(episode_=fastpong.EpisodeBuffer(H, D + 1)),
     r"episode must match the policy's shapes \(hidden=4, input_size=6\), "
     r"got hidden=4, input_size=7"),
    ("accumulate episode hidden",
     lambda: accumulate(episode_=fastpong.EpisodeBuffer(H + 1, D)),
     r"episode must match .*got hidden=5, input_size=6"),
    ("accumulate grads shape",
     lambda: accumulate(grads=fastpong.GradientBuffer(H, D + 1)),
     r"grads must match the policy's shapes \(hidden=4, input_size=6\), "
     r"got hidden=4, input_size=7"),
    ("accumulate advantages length",
     lambda: accumulate(advantages=np.ones(3)),
     r"advantages must have shape \(2,\), got float64 \(3,\)"),
    ("accumulate advantages list",
     lambda: accumulate(advantages=[1.0]),
     r"advantages must have shape \(2,\), got an object of type list of shape \(1,\)"),
    ("accumulate advantages nan",
     lambda: accumulate(advantages=[1.0, NAN]),
     r"advantages must be finite, got nan at flat index 1"),
    ("accumulate advantages complex",
     lambda: accumulate(advantages=np.ones(2, complex)),
     r"advantages must be a real numeric array.*got complex128 \(2,\)"),
]


def _quiet_overflow(function, *args):
    with np.errstate(over="ignore"):  # numpy's float64 -> float32 cast warns about the inf
        return function(*args)


def _batch_with_step():
    batch = fastpong.EpisodeBatch(2, H, D)
    batch.append(rows(np.zeros((2, D))), np.zeros((2, H)), np.zeros(2))
    return batch


@pytest.mark.parametrize("call,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# --- refused calls change nothing ---------------------------------------------------------------


def test_refused_load_model_leaves_weights():
    p = policy()
    before = p.to_model()
    bad = model(w1=np.ones((H, D)), w2=with_value(H, 2, NAN))  # W1 fine, W2 not
    with pytest.raises(ValueError, match=r"model\['W2'\] must be finite"):
        p.load_model(bad)
    for k in before:
        np.testing.assert_array_equal(p.to_model()[k], before[k])


def test_refused_rmsprop_step_leaves_policy_and_grads():
    p = policy()
    before = p.to_model()
    grads = model(w1=np.ones((H, D)), w2=np.ones(H + 1))
    optimizer = fastpong.RMSProp()
    with pytest.raises(ValueError, match=r"grads\['W2'\] must have shape \(4,\)"):
        optimizer.step(p, grads)
    for k in before:
        np.testing.assert_array_equal(p.to_model()[k], before[k])
    assert grads["W1"].all()  # not zeroed by a refused step
    # a cache made for this policy refuses another policy's shapes
    optimizer.step(p, p.gradient_buffer())
    other = fastpong.Policy(hidden=H + 1, input_size=D, seed=0)
    with pytest.raises(ValueError, match=r"cache must match the policy's shapes \(hidden=5"):
        optimizer.step(other, other.gradient_buffer())


def test_refused_appends_leave_episodes():
    buffer = episode(steps=2)
    for bad in (
        lambda: buffer.append(rows(np.zeros(D)), np.zeros(H), NAN),
        lambda: buffer.append(rows(np.zeros(D)), np.zeros(H + 1), 0.1),
        lambda: buffer.append(rows(np.zeros((2, D))), np.zeros(H), 0.1),
        lambda: buffer.set_last_reward(INF),
    ):
        with pytest.raises(ValueError):
            bad()
    assert len(buffer) == 2 and buffer.inputs.nonzeros == 2
    np.testing.assert_array_equal(buffer.rewards, [0, 0])
    batch = _batch_with_step()
    with pytest.raises(ValueError):
        batch.append(rows(np.zeros((2, D))), np.zeros((2, H)), [0.0, NAN])
    with pytest.raises(ValueError):
        batch.set_last_rewards([0.0, NAN])
    assert len(batch.episode(0)) == len(batch.episode(1)) == 1
    np.testing.assert_array_equal(batch.episode(1).rewards, [0])


def test_refused_accumulate_leaves_grads():
    p = policy()
    grads = p.gradient_buffer()
    grads.load_model(model(w1=np.ones((H, D)), w2=np.ones(H)))
    with pytest.raises(ValueError):
        p.accumulate_gradient(episode(), [1.0, NAN], grads)
    np.testing.assert_array_equal(grads.to_model()["W1"], 1)


def test_refused_differencer_step_keeps_state(pong_play):
    differencer = fastpong.FrameDifferencer(1)
    differencer.step(pong_play.frames[:1])
    with pytest.raises(ValueError):
        differencer.step(np.zeros((2, *FRAME), np.uint8))
    with pytest.raises(ValueError):
        differencer.reset(1)
    # still differencing against frames[0]
    expected = fastpong.FrameDifferencer(1)
    expected.step(pong_play.frames[:1])
    got = differencer.step(pong_play.frames[5:6])
    np.testing.assert_array_equal(got.indices, expected.step(pong_play.frames[5:6]).indices)


def test_set_num_threads_refusal_keeps_count(restore_threads):
    fastpong.set_num_threads(1)
    with pytest.raises(ValueError):
        fastpong.set_num_threads(-1)
    assert fastpong.get_num_threads() == 1
    assert isinstance(fastpong.has_openmp(), bool)


def test_valid_edge_values_are_accepted():
    """The boundaries of the accepted ranges: gamma = 1, decay = 0, tiny learning rate."""
    assert fastpong.discount_rewards([1.0], 1.0)[0] == 1.0
    assert fastpong.discount_rewards([1.0], math.ulp(0.0))[0] == 1.0
    fastpong.RMSProp(learning_rate=1e-30, decay_rate=0.0).step(policy(), policy().gradient_buffer())
    episode().set_last_reward(-3e38)  # large but finite in float32
