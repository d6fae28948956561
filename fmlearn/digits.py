"""scikit-learn's 8x8 handwritten digits as a labelled image data set, a digits classifier to score
generated images, and a per-class two-sample distance with its noise floor.

The 1797 digits ship with scikit-learn (``sklearn.datasets.load_digits``: no download). Pixels hold
0..16; we scale them to [-1, 1] by x = pixel / 8 - 1 and shape them (n, 1, 8, 8), one channel.
:func:`load_digits` splits them, class by class and deterministically, into two disjoint halves:
one to train a generator, one it never sees (to train the classifier that judges it, and as the
real reference of the two-sample distance).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import nn

from ._checks import check_positive_int, model_context
from ._random import draw_device
from .distributions import Sampleable
from .metrics import energy_distance
from .objectives import CrossEntropyObjective
from .training import train

DIGITS_SHAPE = (1, 8, 8)
NUM_DIGITS = 10


class Digits(Sampleable):
    """A labelled set of 8x8 images: ``sample(n, generator, device, return_labels)`` draws with replacement.

    Args:
        images: (n, 1, 8, 8) floats in [-1, 1]. labels: (n,) integers in 0..9.

    The set is copied to each device once, on first use, so a training loop draws its batches
    where it trains, with no host-to-device copy per step.
    """

    num_classes = NUM_DIGITS
    shape = DIGITS_SHAPE
    dim = 64

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if not isinstance(images, torch.Tensor) or tuple(images.shape[1:]) != DIGITS_SHAPE or images.shape[0] < 1:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a tensor of shape (n, 1, 8, 8), got {shape}")
        if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],) or labels.is_floating_point():
            shape = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, torch.Tensor) else \
                type(labels).__name__
            raise ValueError(f"labels must be an integer tensor of shape ({images.shape[0]},), got {shape}")
        if not (bool(torch.isfinite(images).all()) and float(images.min()) >= -1 and float(images.max()) <= 1):
            raise ValueError("images must be finite and lie in [-1, 1]")
        if not bool(((labels >= 0) & (labels < NUM_DIGITS)).all()):
            raise ValueError(f"labels must lie in 0..{NUM_DIGITS - 1}, got {int(labels.min())}..{int(labels.max())}")
        self.images, self.labels = images.detach().float(), labels.detach().long()
        self._on = {self.images.device: (self.images, self.labels)}

    def __len__(self) -> int:
        return self.images.shape[0]

    def _tensors(self, dev: torch.device):
        if dev not in self._on:
            self._on[dev] = (self.images.to(dev), self.labels.to(dev))
        return self._on[dev]

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None,
               return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """n images drawn uniformly with replacement: (n, 1, 8, 8), and their labels (n,) if asked."""
        check_positive_int("n", n)
        dev = draw_device(generator, device, same_kind=True)
        images, labels = self._tensors(dev)
        idx = torch.randint(len(self), (n,), generator=generator, device=dev)
        return (images[idx], labels[idx]) if return_labels else images[idx]

    def of_class(self, digit: int) -> torch.Tensor:
        """All images of one digit, shape (n_digit, 1, 8, 8)."""
        if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit < NUM_DIGITS:
            raise ValueError(f"digit must be an int in 0..{NUM_DIGITS - 1}, got {digit!r}")
        return self.images[self.labels == digit]

    def __repr__(self):
        return f"Digits(n={len(self)}, per class {torch.bincount(self.labels, minlength=NUM_DIGITS).tolist()})"


def image_grid(images: torch.Tensor, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile images (n, 1, h, w) into one 2-D array, ``ncols`` per row, row by row, separated by
    ``pad`` pixels of the background value -1: for ``plt.imshow(grid, cmap="gray_r")``."""
    check_positive_int("ncols", ncols)
    x = images.detach().float().cpu().clamp(-1, 1)
    n, _, h, w = x.shape
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), -1.0)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i, 0].numpy()
    return grid


def plot_digits(images: torch.Tensor, ncols: int = 10, ax: Axes | None = None, title: str = "") -> Axes:
    """Show images (n, 1, h, w) in [-1, 1] as a grid (:func:`image_grid`), ink dark on white; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.figure(figsize=(0.6 * ncols, 0.6 * -(-len(images) // ncols) + 0.4)).gca()
    ax.imshow(image_grid(images, ncols), cmap="gray_r", vmin=-1, vmax=1)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return ax


def load_digits(held_out: float = 0.5, seed: int = 0) -> tuple[Digits, Digits]:
    """scikit-learn's digits, scaled to [-1, 1], split into (train, held_out) sets.

    Each class is shuffled with ``numpy.random.default_rng(seed)`` and its first
    round(held_out * n_class) images go to the held-out set: the split is stratified (both sets keep
    the class proportions), deterministic for a seed, and disjoint.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    if not (isinstance(held_out, float) and 0.0 < held_out < 1.0):
        raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out!r}")
    data = _sk_load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float32).reshape(-1, *DIGITS_SHAPE) / 8.0 - 1.0
    labels = torch.as_tensor(data.target, dtype=torch.long)
    rng = np.random.default_rng(seed)
    train_idx, held_idx = [], []
    for digit in range(NUM_DIGITS):
        idx = rng.permutation(np.flatnonzero(data.target == digit))
        cut = int(round(held_out * len(idx)))
        held_idx.append(idx[:cut])
        train_idx.append(idx[cut:])
    train_idx, held_idx = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(held_idx))
    return Digits(images[train_idx], labels[train_idx]), Digits(images[held_idx], labels[held_idx])


class DigitClassifier(nn.Module):
    """A small CNN for 8x8 digits: two 3x3 convolutions (the second halves the resolution), a hidden
    dense layer, and 10 logits. Input (batch, 1, 8, 8) in [-1, 1]; output logits (batch, 10)."""

    def __init__(self, channels: int = 32, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("hidden", hidden)
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(channels * 16, hidden), nn.SiLU(), nn.Linear(hidden, NUM_DIGITS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != DIGITS_SHAPE:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (batch, 1, 8, 8), got {shape}")
        return self.net(x)

    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """The most probable digit of each image, shape (batch,), on the CPU (eval mode, no gradients)."""
        with model_context(self):
            dev = next(self.parameters()).device
            return torch.cat([self(x[i:i + batch_size].to(dev).float()).argmax(1).cpu()
                              for i in range(0, len(x), batch_size)])

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of images x whose predicted digit equals ``labels``."""
        return float((self.predict(x) == labels.cpu()).double().mean())


def random_shift(x: torch.Tensor, generator: torch.Generator | None = None, max_shift: int = 1) -> torch.Tensor:
    """Shift each image by a random whole number of pixels in -max_shift..max_shift along each axis,
    filling with the background value -1 (augmentation: a digit moved by a pixel is the same digit)."""
    n, size, k = x.shape[0], x.shape[-1], 2 * max_shift + 1
    padded = nn.functional.pad(x, (max_shift,) * 4, value=-1.0)
    crops = torch.stack([padded[..., i:i + size, j:j + size] for i in range(k) for j in range(k)])
    choice = torch.randint(k * k, (n,), generator=generator, device=x.device)
    return crops[choice, torch.arange(n, device=x.device)]


def train_classifier(data: Digits, *, steps: int = 1500, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     device: torch.device | str | None = None) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on ``data``: :func:`fmlearn.train` on the cross-entropy of its labels
    (:class:`~fmlearn.objectives.CrossEntropyObjective`) with random one-pixel shifts, Adam with a cosine-decayed
    learning rate, no progress bar; the weights are initialised from ``torch.manual_seed(seed)``. Returns it
    in eval mode."""
    if not isinstance(data, Digits):
        raise TypeError(f"data must be a Digits set, got {type(data).__name__}")
    check_positive_int("steps", steps)
    torch.manual_seed(seed)
    model = DigitClassifier()
    train(model, CrossEntropyObjective(data, augment=random_shift), steps=steps, batch_size=batch_size, lr=lr,
          seed=seed, device=device, amp=False, progress=False)
    return model.eval()


def class_energy_distances(generated: torch.Tensor, labels: torch.Tensor, real: Digits, *, repeats: int = 10,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per digit, the energy distance (in pixel space, images flattened to 64-vectors) between generated
    and real images, and its floor: the same distance between two halves of the real images.

    For digit c with m real images, each repeat splits them at random into halves A, B of h = m // 2
    images and takes two disjoint sets G1, G2 of h generated images of digit c:

        floor_c = mean over repeats of E(A, B),    distance_c = mean over repeats of [E(G1, A) + E(G2, B)] / 2,

    with E the energy distance (:func:`fmlearn.energy_distance`). Every term compares two sets of h
    images, so a perfect generator has distance_c = floor_c on average; a collapsed or off generator
    scores more. Needs at least 2h generated images per digit.

    Returns:
        (distance, floor), two float64 tensors of shape (10,).
    """
    check_positive_int("repeats", repeats)
    if not isinstance(real, Digits):
        raise TypeError(f"real must be a Digits set, got {type(real).__name__}")
    if not isinstance(generated, torch.Tensor) or tuple(generated.shape[1:]) != DIGITS_SHAPE:
        raise ValueError(f"generated must have shape (n, 1, 8, 8), got {tuple(getattr(generated, 'shape', ()))}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (generated.shape[0],):
        raise ValueError(f"labels must have shape ({generated.shape[0]},), got {tuple(getattr(labels, 'shape', ()))}")
    generated, labels = generated.detach().flatten(1).double().cpu(), labels.cpu()
    distance, floor = torch.zeros(NUM_DIGITS, dtype=torch.float64), torch.zeros(NUM_DIGITS, dtype=torch.float64)
    for c in range(NUM_DIGITS):
        ref, gen_c = real.of_class(c).flatten(1).double().cpu(), generated[labels == c]
        h = ref.shape[0] // 2
        if gen_c.shape[0] < 2 * h:
            raise ValueError(f"need at least {2 * h} generated images of digit {c}, got {gen_c.shape[0]}")
        for _ in range(repeats):
            r = torch.randperm(ref.shape[0], generator=generator)
            g = torch.randperm(gen_c.shape[0], generator=generator)
            a, b = ref[r[:h]], ref[r[h:2 * h]]
            floor[c] += energy_distance(a, b)
            distance[c] += 0.5 * (energy_distance(gen_c[g[:h]], a) + energy_distance(gen_c[g[h:2 * h]], b))
    return distance / repeats, floor / repeats
