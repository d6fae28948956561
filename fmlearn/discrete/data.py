"""The chapter's data as tokens: a discretized checkerboard, scikit-learn's digits at 17 grey levels, and dates.

============== ======
checkerboard   2 tokens of ``size`` values; the cells (a, b) with (a // block + b // block) even: size^2 / 2 of them
digits         the 1797 8x8 digits of scikit-learn, 64 tokens of 17 levels (pixel values 0..16, as shipped);
               the first half (in the shipped order) to train, the second half held out
dates          "YYYY-MM-DD" for every valid date in a range, 10 tokens over the alphabet "0123456789-",
               and their exact posterior (mask source) in closed form
============== ======
"""

from __future__ import annotations

import datetime

import torch

from .._checks import check_positive_int
from .paths import check_tokens

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
    check_tokens("tokens", tokens, len(alphabet), f"the {len(alphabet)} characters of the alphabet")
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (n, length), got {tuple(tokens.shape)}")
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


class DatePosterior:
    """The exact posterior of the dates of whole years ``first_year``..``last_year`` (uniform), mask source:
    ``oracle(x_t, t) -> logits (batch, 10, 11)`` (log-probabilities), like
    :class:`~fmlearn.discrete.exact.ExactPosterior` but in O(batch x 566) instead of O(batch x 73,049).

    With the mask source the posterior of a uniform target is uniform over the dates consistent with the
    revealed characters (t does not enter). A date is a year y (consistent: Y(y)) and a month-day m (M(m));
    every year has the 365 common month-days, leap years also 02-29. So the consistent dates of year y number
    n(y) = #(M minus 02-29) + [y leap] M(02-29), those of month-day m number #Y for a common m and #(Y and leap)
    for 02-29, and the characters' marginals are P(y) = Y(y) n(y) / Z and P(m) = M(m) n(m) / Z read digit by digit.
    """

    def __init__(self, path, first_year: int = 1900, last_year: int = 2099):
        if path.mask is None or path.vocab_size != len(DATE_ALPHABET):
            raise ValueError(f"DatePosterior needs a mask-source path over the {len(DATE_ALPHABET)} characters "
                             f"{DATE_ALPHABET!r}, got {path!r}")
        self.path = path
        years = list(range(first_year, last_year + 1))
        self.year_tokens = encode([f"{y:04d}" for y in years])                          # (Y, 4)
        self.leap = torch.tensor([y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) for y in years])
        days = [datetime.date(2000, 1, 1) + datetime.timedelta(days=k) for k in range(366)]
        self.md_tokens = encode([d.strftime("%m%d") for d in days])                     # (366, 4), 2000 is leap
        self.feb29 = torch.tensor([d.month == 2 and d.day == 29 for d in days])

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        device, x = x.device, x.cpu()  # computed on the CPU (its tables live there), returned on x's device
        mask, dash = self.path.mask, DATE_ALPHABET.index("-")
        shown = x != mask
        y_ok = ((self.year_tokens[None] == x[:, None, :4]) | ~shown[:, None, :4]).all(-1).double()    # (b, Y)
        md_x = x[:, [5, 6, 8, 9]]
        md_ok = ((self.md_tokens[None] == md_x[:, None]) | (md_x == mask)[:, None]).all(-1).double()  # (b, 366)
        dashes_ok = ((x[:, [4, 7]] == dash) | ~shown[:, [4, 7]]).all(-1, keepdim=True).double()
        feb29 = self.feb29.double()
        n_year = (md_ok * (1 - feb29)).sum(1, keepdim=True) + self.leap.double() * (md_ok @ feb29)[:, None]
        n_md = (1 - feb29) * y_ok.sum(1, keepdim=True) + feb29 * (y_ok @ self.leap.double())[:, None]
        p_year, p_md = y_ok * n_year * dashes_ok, md_ok * n_md * dashes_ok
        z = p_year.sum(1, keepdim=True)
        possible = z > 0                                    # an x_t no date explains: the prior (every date)
        p_year = torch.where(possible, p_year / z.clamp_min(1), torch.full_like(p_year, 1.0) * self._prior_year())
        p_md = torch.where(possible, p_md / z.clamp_min(1), torch.full_like(p_md, 1.0) * self._prior_md())
        v = len(DATE_ALPHABET)
        probs = torch.zeros(x.shape[0], 10, v, dtype=torch.float64)
        probs[:, :4] = torch.einsum("by,yjv->bjv", p_year, torch.nn.functional.one_hot(self.year_tokens, v).double())
        probs[:, [5, 6, 8, 9]] = torch.einsum("bm,mjv->bjv", p_md,
                                              torch.nn.functional.one_hot(self.md_tokens, v).double())
        probs[:, [4, 7], dash] = 1.0
        return probs.float().clamp_min(1e-30).log().to(device)

    def _prior_year(self) -> torch.Tensor:
        n = 365 + self.leap.double()
        return n / n.sum()

    def _prior_md(self) -> torch.Tensor:
        n = (1 - self.feb29.double()) * len(self.leap) + self.feb29.double() * float(self.leap.sum())
        return n / n.sum()
