"""The fixture dataset: a small real image dataset in CIFAR-10's shape, standing in for CIFAR-10.

``fixtures/data/digits32.npz`` (built by ``fixtures/build_fixtures.py`` from scikit-learn's
handwritten digits, 1,797 real 8x8 scans) holds ``x_train``/``x_test`` as uint8 arrays of shape
(N, 32, 32, 3) -- CIFAR-10's HWC layout -- and ``y_train``/``y_test`` as int64 labels 0..9.
Loading it needs only NumPy.

``FixtureCIFAR10`` has ``torchvision.datasets.CIFAR10``'s constructor and item protocol (PIL
images through ``transform``), so the course's code runs on it unchanged; ``install()`` puts it in
place of ``torchvision.datasets.CIFAR10`` (fast grading mode). ``cifar10()`` builds either the
fixture or the real dataset from ``--data-root`` (full scale).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["FixtureCIFAR10", "load_arrays", "install", "cifar10", "FIXTURE_ENV", "SUBSET_ENV", "TEST_SUBSET_ENV"]

#: Environment variable naming the fixture npz (set by the grader in fast mode).
FIXTURE_ENV = "HW4_FIXTURE"
#: Environment variable: train on this many images (a fixed class-balanced subset); 0 = all.
SUBSET_ENV = "HW4_FAST_TRAIN_SIZE"
#: Environment variable: evaluate on this many test images (a fixed class-balanced subset); 0 = all.
TEST_SUBSET_ENV = "HW4_FAST_TEST_SIZE"


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The fixture's arrays, read without pickle.

    Raises:
        ValueError: the file lacks a split or has the wrong shape or dtype.
    """
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or len(x) != len(y):
            raise ValueError(f"{path}: x_{split} must be uint8 (N, 32, 32, 3) matching y_{split}")
    return arrays


def balanced_subset(labels: np.ndarray, size: int) -> np.ndarray:
    """Indices of the first ``size // 10`` (or so) images of each class, in dataset order."""
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per_class = -(-size // len(classes))
    picked = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
    return np.sort(picked)[:size]


class FixtureCIFAR10:
    """A ``torchvision.datasets.CIFAR10`` look-alike over the fixture arrays.

    Args:
        root: ignored (kept for the CIFAR10 signature); the data come from ``path`` or
            ``$HW4_FIXTURE``.
        train: the train split (True) or the test split.
        transform, target_transform: applied as torchvision applies them.
        download: ignored.
        path: the npz; default ``$HW4_FIXTURE``.
        train_size: for the train split, a fixed class-balanced subset of this many images;
            default ``$HW4_FAST_TRAIN_SIZE`` (0 or unset: the whole split).
        test_size: the same for the test split; default ``$HW4_FAST_TEST_SIZE``.
    """

    classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

    def __init__(self, root=None, train=True, transform=None, target_transform=None,
                 download=False, path=None, train_size=None, test_size=None):
        path = path or os.environ.get(FIXTURE_ENV)
        if not path:
            raise RuntimeError(f"FixtureCIFAR10: no fixture file (set ${FIXTURE_ENV})")
        arrays = load_arrays(path)
        split = "train" if train else "test"
        self.data, self.targets = arrays[f"x_{split}"], arrays[f"y_{split}"].astype(np.int64)
        if train:
            size = int(os.environ.get(SUBSET_ENV, "0") if train_size is None else train_size)
        else:
            size = int(os.environ.get(TEST_SUBSET_ENV, "0") if test_size is None else test_size)
        keep = balanced_subset(self.targets, size)
        self.data, self.targets = self.data[keep], self.targets[keep]
        self.targets = self.targets.tolist()
        self.train, self.root = train, root
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        from PIL import Image

        img, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


def install(path: str | os.PathLike[str] | None = None) -> None:
    """Make ``torchvision.datasets.CIFAR10`` build the fixture (fast grading mode)."""
    import torchvision

    if path is not None:
        os.environ[FIXTURE_ENV] = str(Path(path).resolve())
    torchvision.datasets.CIFAR10 = FixtureCIFAR10


def cifar10(train: bool, transform=None, data_root: str | None = None,
            fixture: str | os.PathLike[str] | None = None):
    """The dataset for one split: real CIFAR-10 under ``data_root`` if given, else the fixture."""
    if data_root:
        import torchvision

        return torchvision.datasets.CIFAR10(root=data_root, train=train, download=False,
                                            transform=transform)
    return FixtureCIFAR10(train=train, transform=transform, path=fixture)
