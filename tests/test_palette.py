"""Figures for everyone (issue 22, item 3): every colour pair whose meaning the course's figures carry by colour
stays distinct under simulated deuteranopia and protanopia, and every figure carries a short description.

The colour science is written here from the published formulas, in numpy, and checked against reference values
before it judges the palette: sRGB (IEC 61966-2-1) to CIE XYZ (D65) to CIELAB; CIE76 and CIEDE2000 colour
differences (Sharma, Wu & Dalal 2005, whose test pairs check the latter); the dichromacy simulation of Machado,
Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB. The criterion is the issue's: CIE76 ΔE >= 20 in
CIELAB after simulation (the issue measured tab10's green/red at 120 for normal vision and 7 for deuteranopia,
which this code reproduces).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from fmlearn import plotting as P

ROOT = Path(__file__).resolve().parents[1]

# Machado, Oliveira & Fernandes (2009), Table 1, severity 1.0 (linear RGB in, linear RGB out)
DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968],
                         [0.280085, 0.672501, 0.047413],
                         [-0.011820, 0.042940, 0.968881]])
PROTANOPIA = np.array([[0.152286, 1.052583, -0.204868],
                       [0.114503, 0.786281, 0.099216],
                       [-0.003882, -0.048116, 1.051998]])
VISIONS = {"normal": np.eye(3), "deuteranopia": DEUTERANOPIA, "protanopia": PROTANOPIA}
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
MIN_DELTA_E = 20.0


def linear(rgb):
    rgb = np.asarray(rgb, dtype=float)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def encoded(lin):
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def lab(rgb):
    """CIELAB (D65 white) of an sRGB colour with components in [0, 1]."""
    xyz = SRGB_TO_XYZ @ linear(rgb) / (SRGB_TO_XYZ @ np.ones(3))
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def simulate(rgb, matrix):
    """The colour a dichromat sees (Machado et al. 2009): the matrix on linear RGB, clipped, re-encoded."""
    return encoded(matrix @ linear(rgb))


def delta_e76(lab1, lab2) -> float:
    return float(np.linalg.norm(np.asarray(lab1) - np.asarray(lab2)))


def delta_e2000(lab1, lab2) -> float:
    """CIEDE2000 (kL = kC = kH = 1), as in Sharma, Wu & Dalal (2005), equations 2-23."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360 if c2p else 0.0
    dlp, dcp = l2 - l1, c2p - c1p
    if c1p * c2p == 0:
        dhp = 0.0
    elif abs(h2p - h1p) <= 180:
        dhp = h2p - h1p
    else:
        dhp = h2p - h1p - 360 if h2p > h1p else h2p - h1p + 360
    dhp_big = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dhp) / 2)
    lp, cp = (l1 + l2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        hp = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hp = (h1p + h2p) / 2
    else:
        hp = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (1 - 0.17 * np.cos(np.radians(hp - 30)) + 0.24 * np.cos(np.radians(2 * hp))
         + 0.32 * np.cos(np.radians(3 * hp + 6)) - 0.20 * np.cos(np.radians(4 * hp - 63)))
    d_theta = 30 * np.exp(-(((hp - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(cp ** 7 / (cp ** 7 + 25.0 ** 7))
    s_l = 1 + 0.015 * (lp - 50) ** 2 / np.sqrt(20 + (lp - 50) ** 2)
    s_c, s_h = 1 + 0.045 * cp, 1 + 0.015 * cp * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    return float(np.sqrt((dlp / s_l) ** 2 + (dcp / s_c) ** 2 + (dhp_big / s_h) ** 2
                         + r_t * (dcp / s_c) * (dhp_big / s_h)))


def drawn(color: str, alpha: float) -> np.ndarray:
    """The colour as it shows over a white page at transparency ``alpha``."""
    return alpha * np.array(to_rgb(color)) + (1 - alpha)


def pair_delta_e(first, second, matrix, metric=delta_e76) -> float:
    return metric(lab(simulate(drawn(*first), matrix)), lab(simulate(drawn(*second), matrix)))


# ---- the colour science against references ---------------------------------------------------------------------

@pytest.mark.parametrize("rgb, want", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),   # sRGB red (D65), the usual reference triple
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
])
def test_srgb_to_lab_matches_reference_values(rgb, want):
    np.testing.assert_allclose(lab(rgb), want, atol=2e-3)


@pytest.mark.parametrize("lab1, lab2, want", [  # Sharma, Wu & Dalal (2005), Table 1, pairs 1, 7, 17, 25
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
])
def test_ciede2000_matches_sharma_test_pairs(lab1, lab2, want):
    assert delta_e2000(lab1, lab2) == pytest.approx(want, abs=1e-4)
    assert delta_e2000(lab2, lab1) == pytest.approx(want, abs=1e-4)


def test_machado_simulation_keeps_greys_and_reproduces_the_issues_figures():
    """Rows sum to 1 (a grey stays that grey), and tab10's green/red pair measures as the issue said: ΔE76 about
    120 for normal vision, about 7 under deuteranopia."""
    for matrix in (DEUTERANOPIA, PROTANOPIA):
        np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(simulate((0.3, 0.3, 0.3), matrix), 0.3, atol=1e-4)
    green, red = ("tab:green", 1.0), ("tab:red", 1.0)
    assert pair_delta_e(green, red, np.eye(3)) == pytest.approx(120, abs=1)
    assert pair_delta_e(green, red, DEUTERANOPIA) == pytest.approx(7, abs=1)


# ---- the palette -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vision", ["deuteranopia", "protanopia", "normal"])
@pytest.mark.parametrize("name", list(P.PAIRS))
def test_every_pair_that_carries_meaning_stays_distinct(name, vision):
    first, second = P.PAIRS[name]
    d76 = pair_delta_e(first, second, VISIONS[vision])
    assert d76 >= MIN_DELTA_E, f"{name}: ΔE76 {d76:.1f} under {vision}"


def test_the_old_pairs_fail_the_check():
    """The check can fail: under deuteranopia, tab10's green/red, opaque (chapter 5's and plotting's old pairs) and
    filled at alpha 0.5 (chapter 10's old land/leave pair), and Okabe-Ito's orange/vermillion, the pair the palette's
    docstring forbids."""
    assert pair_delta_e(("tab:green", 1.0), ("tab:red", 1.0), DEUTERANOPIA) < MIN_DELTA_E
    assert pair_delta_e(("tab:green", 0.5), ("tab:red", 0.5), DEUTERANOPIA) < MIN_DELTA_E
    assert pair_delta_e((P.ORANGE, 1.0), (P.VERMILLION, 1.0), DEUTERANOPIA) < MIN_DELTA_E


def test_the_colour_cycle_is_okabe_ito():
    cycle = [c.lower() for c in mpl.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [c.lower() for c in P.OKABE_ITO.values()]
    assert np.allclose(to_rgb("C3"), to_rgb(P.VERMILLION)) and np.allclose(to_rgb("C0"), to_rgb(P.BLUE))


# tab10's red and green by name, or matplotlib's named red/green, as a colour argument
_RAW_PAIR_COLOUR = re.compile(r"""colou?rs?\s*=\s*["'](?:red|green|tab:red|tab:green|#d62728|#2ca02c)["']""")


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in
                                        [*ROOT.glob("chapters/*.py"), ROOT / "fmlearn/plotting.py",
                                         ROOT / "fmlearn/manifolds/plotting.py"]))
def test_no_figure_names_the_old_red_or_green(path):
    text = (ROOT / path).read_text()
    assert not _RAW_PAIR_COLOUR.search(text), f"{path} draws with a raw red or green; use fmlearn.plotting's roles"


# ---- alt text ------------------------------------------------------------------------------------------------------

def test_plain_text_reads_mathtext_without_markup():
    assert P.plain_text(r"source $p_0 = N(0, I)$") == "source p_0 = N(0, I)"
    assert P.plain_text(r"$[\partial_t p_t]_+$: land here") == "[∂_t p_t]_+: land here"
    assert P.plain_text(r"$\mathbb R^d$, $\mathrm{KL}(p\,\|\,q)$, $\alpha_t$") == "ℝ^d, KL(p ‖ q), α_t"


def test_figure_alt_from_titles_and_set_alt():
    fig, ax = plt.subplots()
    ax.set(title=r"loss $\alpha_t$", xlabel="step", ylabel="loss")
    assert P.figure_alt(fig) == "loss α_t: loss against step"
    fig2, axes = plt.subplots(1, 2)
    axes[0].set_title("left")
    axes[1].set_title("right")
    assert P.figure_alt(fig2) == "2 panels: left; right"
    fig2.suptitle("two things")
    assert P.figure_alt(fig2) == "two things (panels: left; right)"
    fig3, axes3 = plt.subplots(2, 4)
    for i, ax in enumerate(axes3.flat):
        ax.set_title(f"t = {i}")
    fig3.suptitle("a grid")
    assert P.figure_alt(fig3) == "a grid (8 panels)"
    assert P.set_alt(fig2, "  what to   look at ") is fig2 and P.figure_alt(fig2) == "what to look at"
    with pytest.raises(ValueError, match="text"):
        P.set_alt(fig2, " ")


def test_an_ipython_display_of_a_figure_carries_its_alt_text():
    """The mechanism (README-free, for the book and for JupyterLab): text/html ``<img alt=... src=data:...>`` and
    ``metadata["text/html"]["alt"]``; the alt text is escaped."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert P.register_alt_text(shell)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.suptitle('a "quoted" <title> & more')
    data, metadata = shell.display_formatter.format(fig)
    assert metadata["text/html"] == {"alt": 'a "quoted" <title> & more'}
    assert data["text/html"].startswith('<img alt="a &quot;quoted&quot; &lt;title&gt; &amp; more" '
                                        'src="data:image/png;base64,iVBORw0KGgo')


def test_modes_in_a_ring_differ_from_their_neighbours_and_each_pair_is_checked():
    """Chapter 6's 11 modes and chapter 1's animation: three colours in turn, so two neighbouring modes (the last
    and the first included) never share one, and every two of the three are a pair the ΔE test above covers."""
    from fmlearn.plotting import MODE_CYCLE, PAIRS, mode_colours

    for n in (8, 11):
        colours = mode_colours(range(n))
        assert all(colours[k] != colours[(k + 1) % n] for k in range(n)), (n, colours)
    opaque = {frozenset((a[0], b[0])) for a, b in PAIRS.values() if a[1] == b[1] == 1.0}
    for i, a in enumerate(MODE_CYCLE):
        for b in MODE_CYCLE[i + 1:]:
            assert frozenset((a, b)) in opaque, (a, b)
