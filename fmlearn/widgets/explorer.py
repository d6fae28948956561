"""The one explorer of the course: a slider (or several) over figures drawn in advance.

An :class:`Explorer` draws one figure per value of its parameters (or per point of
their grid) when it is first shown, then lets the reader move through them:

- in JupyterLab (a live kernel with ipywidgets) as a widget: a slider per parameter,
  a play button for an animation, the figure as an image that changes at once;
- anywhere else that renders HTML (the web book, an exported notebook, a viewer
  without a kernel) as a self-contained HTML page fragment: the same sliders as
  ``<input type="range">`` and a few lines of JavaScript, the figures embedded as
  image data, nothing fetched from a network;
- without JavaScript the HTML still shows the default frame (the static fallback),
  and :meth:`Explorer.static` draws a few frames side by side as one figure;
- as text, one line that says what to look at.

Every explorer carries that one line, ``look``: what to watch as the slider moves.
A frame is a matplotlib figure saved (WebP by default) at a fixed size (no tight bounding box), so
the image does not jump while the slider moves.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import uuid
from typing import Any, Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["Explorer"]


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class Explorer:
    """A slider explorer over precomputed frames.

    Args:
        draw: ``draw(**values) -> Figure``, called once per point of the parameter
            grid (keyword arguments named as in ``params``). The figure is saved as an
            image and closed.
        params: parameter name -> the values its slider steps through (at least one
            each; the grid is their product, so keep it small: tens of frames).
        look: one line, shown above the figure: what to look at as the slider moves.
        start: the values shown first, by name (default: each parameter's first value).
        labels: optional name -> list of strings to show instead of the values.
        play: the parameter a play button animates (an animation over time, say),
            or None for no play button.
        interval: milliseconds between frames when playing.
        dpi: resolution of the saved frames.
        image_format: "webp" (lossy at quality 90: a tenth to a half of a PNG's size, which matters with
            tens of frames in one page) or "png" (lossless).
    """

    def __init__(self, draw: Callable[..., Figure], params: Mapping[str, Sequence[Any]], *, look: str,
                 start: Mapping[str, Any] | None = None, labels: Mapping[str, Sequence[str]] | None = None,
                 play: str | None = None, interval: int = 200, dpi: int = 80,
                 image_format: str = "webp") -> None:
        if not callable(draw):
            raise TypeError(f"draw must be a function value -> Figure, got {type(draw).__name__}")
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"params must be a non-empty mapping name -> values, got {params!r}")
        self.params = {str(k): list(v) for k, v in params.items()}
        for name, values in self.params.items():
            if not values:
                raise ValueError(f"params[{name!r}] is empty: give at least one value to show")
        n_frames = int(np.prod([len(v) for v in self.params.values()]))
        if n_frames > 400:
            raise ValueError(f"params span {n_frames} frames; an explorer draws each in advance, so keep it "
                             f"at most 400 (fewer values per slider)")
        if not isinstance(look, str) or not look.strip():
            raise ValueError("look must be one non-empty line saying what to look at as the slider moves")
        self.look = look.strip()
        self.labels = {name: [_label(v) for v in values] for name, values in self.params.items()}
        for name, names in (labels or {}).items():
            if name not in self.params:
                raise ValueError(f"labels names {name!r}, which is not a parameter ({list(self.params)})")
            if len(names) != len(self.params[name]):
                raise ValueError(f"labels[{name!r}] has {len(names)} entries for {len(self.params[name])} values")
            self.labels[name] = [str(s) for s in names]
        self.start = {name: 0 for name in self.params}
        for name, value in (start or {}).items():
            if name not in self.params:
                raise ValueError(f"start names {name!r}, which is not a parameter ({list(self.params)})")
            self.start[name] = self._index_of(name, value)
        if play is not None and play not in self.params:
            raise ValueError(f"play must name a parameter ({list(self.params)}) or be None, got {play!r}")
        self.play = play
        self.interval = int(interval)
        self.dpi = int(dpi)
        if image_format not in ("webp", "png"):
            raise ValueError(f"image_format must be 'webp' or 'png', got {image_format!r}")
        self.image_format = image_format
        self._draw = draw
        self._frames: list[bytes] | None = None
        self._width = 0  # pixels, of the frames as saved
        self._widget = None

    # -- frames ---------------------------------------------------------------------------------------------
    def _index_of(self, name: str, value: Any) -> int:
        values = self.params[name]
        for i, v in enumerate(values):
            if v is value or (type(v) is type(value) and v == value):
                return i
        if all(isinstance(v, (int, float)) for v in values) and isinstance(value, (int, float)):
            return int(np.argmin([abs(float(v) - float(value)) for v in values]))
        raise ValueError(f"start[{name!r}] = {value!r} is not one of its values {values}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.params.values())

    def flat_index(self, **indices: int) -> int:
        """The frame number of a point of the grid, given each parameter's index."""
        idx = [indices.get(name, self.start[name]) for name in self.params]
        return int(np.ravel_multi_index(idx, self.shape))

    @property
    def frames(self) -> list[bytes]:
        """The image bytes of every frame (``image_format``), in the grid's C order (drawn on first use)."""
        if self._frames is None:
            frames = []
            names = list(self.params)
            for combo in itertools.product(*self.params.values()):
                fig = self._draw(**dict(zip(names, combo)))
                if not isinstance(fig, Figure):
                    raise TypeError(f"draw must return a matplotlib Figure, got {type(fig).__name__} "
                                    f"for {dict(zip(names, combo))}")
                buf = io.BytesIO()
                kw = {"pil_kwargs": {"quality": 90}} if self.image_format == "webp" else {}
                self._width = max(self._width, int(round(fig.get_figwidth() * self.dpi)))
                fig.savefig(buf, format=self.image_format, dpi=self.dpi, **kw)
                plt.close(fig)
                frames.append(buf.getvalue())
            self._frames = frames
        return self._frames

    def frame(self, **values: Any) -> bytes:
        """The image of the frame at these parameter values (the others at their start)."""
        return self.frames[self.flat_index(**{k: self._index_of(k, v) for k, v in values.items()})]

    def static(self, name: str | None = None, at: Sequence[Any] | None = None, cols: int = 4) -> Figure:
        """The static fallback as one figure: frames side by side along one parameter (default: the played
        one, else the first), at ``at`` (default: up to ``cols`` values spread over its range)."""
        name = name or self.play or next(iter(self.params))
        values = self.params[name]
        idx = ([self._index_of(name, v) for v in at] if at is not None
               else sorted(set(np.linspace(0, len(values) - 1, min(cols, len(values))).round().astype(int))))
        from matplotlib.image import imread

        images = [imread(io.BytesIO(self.frames[self.flat_index(**{name: i})]), format=self.image_format)
                  for i in idx]
        h, w = images[0].shape[:2]
        fig, axes = plt.subplots(1, len(images), figsize=(len(images) * w / self.dpi * 0.6, h / self.dpi * 0.6),
                                 squeeze=False)
        for ax, img, i in zip(axes[0], images, idx):
            ax.imshow(img)
            ax.set_title(f"{name} = {self.labels[name][i]}", fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        return fig

    # -- the live widget --------------------------------------------------------------------------------------
    def widget(self) -> Any:
        """The ipywidgets version: a slider per parameter (and a play button), the frame as an image."""
        import ipywidgets as w

        frames = self.frames
        sliders = {}
        for name in self.params:
            sliders[name] = w.SelectionSlider(options=[(lab, i) for i, lab in enumerate(self.labels[name])],
                                              value=self.start[name], description=name,
                                              continuous_update=True, layout=w.Layout(width="420px"))
        image = w.Image(value=frames[self.flat_index(**self.start)], format=self.image_format,
                        layout=w.Layout(width=f"{self._width}px", max_width="100%"))  # drawn at its own size
        image.add_class("fmlearn-explorer-frame")

        def show(*_):
            image.value = frames[self.flat_index(**{n: s.value for n, s in sliders.items()})]

        for s in sliders.values():
            s.observe(show, names="value")
        controls = []
        for name, s in sliders.items():
            if name == self.play:
                player = w.Play(value=self.start[name], min=0, max=len(self.params[name]) - 1,
                                interval=self.interval, description=f"play {name}")
                w.jslink((player, "value"), (s, "index"))
                controls.append(w.HBox([player, s]))
            else:
                controls.append(s)
        look = w.HTML(f"<b>What to look at:</b> {html.escape(self.look)}")
        box = w.VBox([look, *controls, image])
        box.add_class("fmlearn-explorer")
        return box

    # -- the web version --------------------------------------------------------------------------------------
    def to_html(self) -> str:
        """A self-contained HTML fragment: range sliders, a play button, the frames as data URIs, a few
        lines of JavaScript; without JavaScript it shows the start frame."""
        uid = "fmx-" + uuid.uuid4().hex[:10]
        frames = [base64.b64encode(f).decode("ascii") for f in self.frames]
        first = self.flat_index(**self.start)
        rows = []
        for k, name in enumerate(self.params):
            n = len(self.params[name])
            button = (f'<button type="button" class="fmx-play" data-param="{k}">&#9654; play</button> '
                      if name == self.play else "")
            rows.append(
                f'<div class="fmx-control">{button}<label>{html.escape(name)} '
                f'<input type="range" min="0" max="{n - 1}" step="1" value="{self.start[name]}" data-param="{k}" '
                f'aria-label="{html.escape(name)}"></label> '
                f'<output>{html.escape(self.labels[name][self.start[name]])}</output></div>')
        data = json.dumps({"shape": list(self.shape), "labels": list(self.labels.values()),
                           "interval": self.interval, "format": self.image_format, "frames": frames})
        alt = html.escape(f"{self.look} (frame: " + ", ".join(
            f"{n} = {self.labels[n][self.start[n]]}" for n in self.params) + ")")
        return f"""<div class="fmlearn-explorer" id="{uid}">
<p class="fmx-look"><b>What to look at:</b> {html.escape(self.look)}</p>
{''.join(rows)}
<img class="fmx-frame" alt="{alt}" src="data:image/{self.image_format};base64,{frames[first]}" style="max-width:100%">
<script type="application/json" class="fmx-data">{data}</script>
<script>(function () {{
  var root = document.getElementById("{uid}");
  if (!root || root.dataset.ready) return; root.dataset.ready = "1";
  var d = JSON.parse(root.querySelector(".fmx-data").textContent);
  var sliders = root.querySelectorAll("input[type=range]"), img = root.querySelector("img.fmx-frame");
  function show() {{
    var i = 0;
    for (var k = 0; k < sliders.length; k++) {{
      var v = +sliders[k].value; i = i * d.shape[k] + v;
      sliders[k].parentNode.nextElementSibling.textContent = d.labels[k][v];
    }}
    img.src = "data:image/" + d.format + ";base64," + d.frames[i];
  }}
  sliders.forEach(function (s) {{ s.addEventListener("input", show); }});
  root.querySelectorAll("button.fmx-play").forEach(function (b) {{
    var timer = null, s = sliders[+b.dataset.param];
    b.addEventListener("click", function () {{
      if (timer) {{ clearInterval(timer); timer = null; b.innerHTML = "&#9654; play"; return; }}
      b.innerHTML = "&#10074;&#10074; pause";
      timer = setInterval(function () {{
        s.value = (+s.value + 1) % (+s.max + 1); show();
        if (+s.value === +s.max) {{ clearInterval(timer); timer = null; b.innerHTML = "&#9654; play"; }}
      }}, d.interval);
    }});
  }});
}})();</script>
</div>"""

    # -- display ----------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        grid = ", ".join(f"{n}: {len(v)} values" for n, v in self.params.items())
        return f"Explorer({grid}). What to look at: {self.look}"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Every representation at once: the front end picks what it can show. JupyterLab shows the live
        widget; the web book (which ranks HTML first) and exported notebooks the HTML; a console the text."""
        bundle: dict[str, Any] = {"text/plain": repr(self), "text/html": self.to_html()}
        if _live_kernel():
            try:
                self._widget = self.widget()  # kept: a widget whose Python object is collected stops responding
            except ImportError:
                return bundle
            view = self._widget._repr_mimebundle_()
            if view and "application/vnd.jupyter.widget-view+json" in view:
                bundle["application/vnd.jupyter.widget-view+json"] = \
                    view["application/vnd.jupyter.widget-view+json"]
        return bundle


def _live_kernel() -> bool:
    """True inside a Jupyter kernel (where a widget can talk to its front end)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
