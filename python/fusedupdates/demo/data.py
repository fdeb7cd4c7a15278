"""The handwritten-digits data set used by the demo (bundled with scikit-learn, no download)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Digits", "load_data"]

_DEPS_HINT = "pip install 'fusedupdates[demo]'"


@dataclass(frozen=True)
class Digits:
    """Standardised 8x8 digit images with a fixed train/test split.

    Attributes
    ----------
    x_train, x_test : array of float32, shape (n, 64)
        Inputs, standardised with the training mean and standard deviation.
    y_train, y_test : array of int64, shape (n,)
        Class labels 0-9.
    onehot_train : array of float32, shape (n, 10)
        One-hot encoding of ``y_train`` (the cross-entropy targets).
    """

    x_train: Any
    y_train: Any
    onehot_train: Any
    x_test: Any
    y_test: Any

    @property
    def num_features(self) -> int:
        """Number of input features (64)."""
        return int(self.x_train.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes (10)."""
        return int(self.onehot_train.shape[1])


def load_data(xp: Any = np, test_size: float = 0.25, seed: int = 0) -> Digits:
    """Load scikit-learn's digits, split and standardise them, and move them to ``xp``.

    Parameters
    ----------
    xp : module, optional
        Array module the returned arrays live in (``numpy`` or ``cupy``).
    test_size : float, optional
        Fraction of the 1797 images held out for testing (stratified split).
    seed : int, optional
        Seed of the split, so that every run uses the same split.

    Returns
    -------
    Digits
        The split, standardised data set.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the demo needs scikit-learn: {_DEPS_HINT}") from exc

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0.0] = 1.0  # border pixels that are always blank in the training set
    x_train = ((x_train - mean) / std).astype(np.float32)
    x_test = ((x_test - mean) / std).astype(np.float32)
    num_classes = int(y.max()) + 1
    onehot = np.eye(num_classes, dtype=np.float32)[y_train]
    return Digits(
        x_train=xp.asarray(x_train),
        y_train=xp.asarray(y_train.astype(np.int64)),
        onehot_train=xp.asarray(onehot),
        x_test=xp.asarray(x_test),
        y_test=xp.asarray(y_test.astype(np.int64)),
    )
