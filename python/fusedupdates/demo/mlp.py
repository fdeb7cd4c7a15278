"""A two-layer perceptron written by hand, for any NumPy-compatible array module."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "init_params", "loss", "loss_and_grads", "predict", "to_device"]


def init_params(sizes: tuple[int, int, int], seed: int = 0) -> list[np.ndarray]:
    """Draw the initial weights of a ``sizes[0]-sizes[1]-sizes[2]`` ReLU network.

    The hidden layer uses He initialisation (ReLU), the output layer LeCun initialisation
    (variance ``1 / sizes[1]``, so the initial logits are moderate); biases start at zero.

    Parameters
    ----------
    sizes : tuple of int
        Input, hidden and output widths, e.g. ``(64, 128, 10)``.
    seed : int, optional
        Seed, so that every rule starts from the same point.

    Returns
    -------
    list of numpy.ndarray
        ``[W1, b1, W2, b2]`` as C-contiguous float32 host arrays.
    """
    n_in, n_hidden, n_out = sizes
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)
    w2 = rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden)
    return [
        np.ascontiguousarray(w1, dtype=np.float32),
        np.zeros(n_hidden, dtype=np.float32),
        np.ascontiguousarray(w2, dtype=np.float32),
        np.zeros(n_out, dtype=np.float32),
    ]


def to_device(params: list[np.ndarray], xp: Any, dtype: Any = np.float32) -> list[Any]:
    """Return fresh, C-contiguous copies of ``params`` in the array module ``xp``, stored as
    ``dtype`` (float32, or a 16-bit dtype for mixed-precision training).

    Each rule trains its own copy, so the host arrays are never written.
    """
    return [xp.ascontiguousarray(xp.asarray(p, dtype=np.float32).astype(dtype)) for p in params]


def _compute(params: list[Any]) -> list[Any]:
    """The params as float32 for the forward and backward pass (16-bit params are widened:
    mixed precision stores 16 bits and computes in 32)."""
    return [p if p.dtype == np.float32 else p.astype(np.float32) for p in params]


def _forward(params: list[Any], x: Any, xp: Any) -> tuple[Any, Any]:
    w1, b1, w2, b2 = _compute(params)
    hidden = xp.maximum(x @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    return hidden, logits


def _log_softmax(logits: Any, xp: Any) -> Any:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def loss(params: list[Any], x: Any, onehot: Any, xp: Any) -> Any:
    """Mean softmax cross-entropy of the network on ``x`` (a 0-d array in ``xp``)."""
    _, logits = _forward(params, x, xp)
    return -(_log_softmax(logits, xp) * onehot).sum(axis=1).mean()


def loss_and_grads(params: list[Any], x: Any, onehot: Any, xp: Any) -> tuple[Any, list[Any]]:
    """Forward and backward pass on one minibatch.

    Parameters
    ----------
    params : list of array
        ``[W1, b1, W2, b2]``.
    x : array, shape (batch, n_in)
        Inputs.
    onehot : array, shape (batch, n_out)
        One-hot targets.
    xp : module
        ``numpy`` or ``cupy``.

    Returns
    -------
    loss : 0-d array
        Mean cross-entropy on the batch (left on the device: no host sync).
    grads : list of array
        Fresh C-contiguous gradients ``[dW1, db1, dW2, db2]`` in the params' dtypes, none
        aliasing a parameter.
    """
    w1, _, w2, _ = _compute(params)
    hidden, logits = _forward(params, x, xp)
    log_probs = _log_softmax(logits, xp)
    batch_loss = -(log_probs * onehot).sum(axis=1).mean()
    d_logits = (xp.exp(log_probs) - onehot) / np.float32(x.shape[0])
    d_w2 = hidden.T @ d_logits
    d_b2 = d_logits.sum(axis=0)
    d_hidden = (d_logits @ w2.T) * (hidden > 0)
    d_w1 = x.T @ d_hidden
    d_b1 = d_hidden.sum(axis=0)
    grads = [
        xp.ascontiguousarray(g.astype(p.dtype)) for g, p in zip((d_w1, d_b1, d_w2, d_b2), params)
    ]
    return batch_loss, grads


def predict(params: list[Any], x: Any, xp: Any) -> Any:
    """Predicted class of each row of ``x``."""
    _, logits = _forward(params, x, xp)
    return logits.argmax(axis=1)


def accuracy(params: list[Any], x: Any, labels: Any, xp: Any) -> float:
    """Fraction of rows of ``x`` classified as ``labels``."""
    return float((predict(params, x, xp) == labels).sum()) / int(labels.shape[0])
