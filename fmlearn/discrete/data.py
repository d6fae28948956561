"""The chapter's data as tokens: a discretized checkerboard, scikit-learn's digits at 17 grey levels, and dates.

checkerboard   2 tokens of ``size`` values; the cells (a, b) with (a // block + b // block) even: size^2 / 2 of them
digits         the 1797 8x8 digits of scikit-learn, 64 tokens of 17 levels (pixel values 0..16, as shipped);
               the first half (in the shipped order) to train, the second half held out
dates          "YYYY-MM-DD" for every valid date in a range, 10 tokens over the alphabet "0123456789-"
"""

from __future__ import annotations

import datetime

import torch

from .._checks import check_positive_int

DATE_ALPHABET = "0123456789-"


def checkerboard(size: int = 32, block: int = 4) -> torch.Tensor:
    """The support of the checkerboard, (size^2 / 2, 2) tokens, in increasing order of a * size + b."""
    check_positive_int("size", size)
    check_positive_int("block", block)
    if size % (2 * block):
        raise ValueError(f"size must be a multiple of 2 * block = {2 * block}, got size={size}")
    a = torch.arange(size)
    cells = torch.stack(torch.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
    return cells[(cells[:, 0] // block + cells[:, 1] // block) % 2 == 0]


def digits_tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train tokens (898, 64), train labels, held-out tokens (899, 64), held-out labels): the first and second
    halves of scikit-learn's digits in their shipped order; tokens are the pixel values 0..16."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.long)
    y = torch.as_tensor(data.target, dtype=torch.long)
    half = len(x) // 2
    return x[:half], y[:half], x[half:], y[half:]


def encode(strings: list[str], alphabet: str = DATE_ALPHABET) -> torch.Tensor:
    """Strings of one length as tokens (n, length): the index of each character in ``alphabet``."""
    index = {c: i for i, c in enumerate(alphabet)}
    try:
        return torch.tensor([[index[c] for c in s] for s in strings], dtype=torch.long)
    except KeyError as err:
        raise ValueError(f"strings must use only the characters {alphabet!r}, got {err.args[0]!r}") from None


def decode(tokens: torch.Tensor, alphabet: str = DATE_ALPHABET) -> list[str]:
    """Tokens (n, length) back to strings."""
    return ["".join(alphabet[i] for i in row) for row in tokens.tolist()]


def dates(first: str = "1900-01-01", last: str = "2099-12-31") -> torch.Tensor:
    """Every date from ``first`` to ``last`` as "YYYY-MM-DD" tokens, (n, 10), in order."""
    start, end = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last)
    days = (end - start).days + 1
    if days < 1:
        raise ValueError(f"last must not come before first, got first={first!r}, last={last!r}")
    return encode([(start + datetime.timedelta(days=k)).isoformat() for k in range(days)])


def valid_dates(tokens: torch.Tensor, first: str = "1900-01-01", last: str = "2099-12-31") -> torch.Tensor:
    """For each token row, whether it spells a valid date in the range (``datetime.date.fromisoformat``), (n,) bool."""
    lo, hi = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last)
    out = []
    for s in decode(tokens):
        try:
            out.append(len(s) == 10 and lo <= datetime.date.fromisoformat(s) <= hi)
        except ValueError:
            out.append(False)
    return torch.tensor(out, dtype=torch.bool)
