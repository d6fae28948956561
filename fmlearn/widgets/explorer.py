"""The one explorer of the course: a slider (or several) over figures drawn in advance.

An :class:`Explorer` draws one figure per value of its parameters (or per point of
their grid) when it is first shown, then lets the reader move through them. It shows
itself as a self-contained HTML fragment, the same in JupyterLab, the web book, an
exported notebook or a viewer without a kernel: the sliders as ``<input type="range">``
and a few lines of JavaScript, the figures embedded as image data, nothing fetched from
a network and nothing asked of the kernel, so a saved notebook reopens showing it, and
it still answers, after a kernel restart.

- Without JavaScript (an untrusted notebook) the HTML still shows the start frame (the
  static fallback), and :meth:`Explorer.static` draws a few frames side by side as one figure;
- as text, one line that says what to look at;
- :meth:`Explorer.widget` builds the ipywidgets version, for whoever wants one in a live kernel.

Every explorer carries that one line, ``look``: what to watch as the slider moves. Each frame's
image has an alt text, the explorer's ``title`` and the sliders' values, which follows the sliders,
and each slider announces its value and unit (``aria-valuetext``), not its index.
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
        title: a short name of what the frames show ("Probability paths"): the start of each frame's alt text,
            which goes on with the sliders' values ("Probability paths, schedule = CondOT, t = 0.50"). Default:
            "Explorer frame".
        units: optional name -> unit of its values ("steps"), written after the value in the alt text and in
            what the slider announces to a screen reader (its ``aria-valuetext``).
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
                 image_format: str = "webp", title: str | None = None,
                 units: Mapping[str, str] | None = None) -> None:
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
        if title is not None and (not isinstance(title, str) or not title.strip()):
            raise ValueError(f"title must be a short non-empty text (or None for the default), got {title!r}")
        self.title = title.strip() if title is not None else "Explorer frame"
        self.units = {name: "" for name in self.params}
        for name, unit in (units or {}).items():
            if name not in self.params:
                raise ValueError(f"units names {name!r}, which is not a parameter ({list(self.params)})")
            if not isinstance(unit, str):
                raise TypeError(f"units[{name!r}] must be a text such as 'steps', got {type(unit).__name__}")
            self.units[name] = unit.strip()
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

    def value_text(self, name: str, index: int) -> str:
        """What a slider announces at ``index``: its value's label and unit ("8 steps", "0.50")."""
        return f"{self.labels[name][index]} {self.units[name]}".strip()

    def alt(self, **indices: int) -> str:
        """The alt text of a frame, given each parameter's index (the others at their start): the title and
        every slider's value, e.g. "Probability paths, schedule = CondOT, t = 0.50"."""
        idx = {name: indices.get(name, self.start[name]) for name in self.params}
        return ", ".join([self.title, *(f"{n} = {self.value_text(n, i)}" for n, i in idx.items())])

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
        """The ipywidgets version: a slider per parameter (and a play button), the frame as an image with its alt
        text. Display it yourself if you want it: an explorer shows itself as its HTML version (see
        ``_repr_mimebundle_``), since a widget view needs its kernel and a saved notebook would reopen on
        "Error displaying widget: model not found"; ipywidgets' sliders also announce an index, not the value."""
        import ipywidgets as w

        frames = self.frames
        sliders = {}
        for name in self.params:
            sliders[name] = w.SelectionSlider(options=[(lab, i) for i, lab in enumerate(self.labels[name])],
                                              value=self.start[name], description=name,
                                              continuous_update=True, layout=w.Layout(width="420px"))
        image = w.HTML(self._img_tag(self.start), layout=w.Layout(max_width="100%"))
        image.add_class("fmlearn-explorer-frame")

        def show(*_):
            image.value = self._img_tag({n: s.value for n, s in sliders.items()})

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

    def _img_tag(self, indices: Mapping[str, int]) -> str:
        """The frame at these indices as an ``<img>`` with its alt text, drawn at its own size (no more than
        the page's width), so it does not jump as the slider moves."""
        data = base64.b64encode(self.frames[self.flat_index(**indices)]).decode("ascii")
        return (f'<img class="fmx-frame" alt="{html.escape(self.alt(**indices))}" width="{self._width}" '
                f'src="data:image/{self.image_format};base64,{data}" style="max-width: 100%; height: auto">')

    # -- the web version --------------------------------------------------------------------------------------
    def to_html(self) -> str:
        """A self-contained HTML fragment: range sliders, a play button, the frames as data URIs, a few
        lines of JavaScript; without JavaScript it shows the start frame. The frame's alt text and each slider's
        ``aria-valuetext`` follow the sliders (see :meth:`alt` and :meth:`value_text`)."""
        uid = "fmx-" + uuid.uuid4().hex[:10]
        frames = [base64.b64encode(f).decode("ascii") for f in self.frames]
        rows = []
        for k, name in enumerate(self.params):
            n, i = len(self.params[name]), self.start[name]
            button = (f'<button type="button" class="fmx-play" data-param="{k}">&#9654; play</button> '
                      if name == self.play else "")
            rows.append(
                f'<div class="fmx-control">{button}<label>{html.escape(name)} '
                f'<input type="range" min="0" max="{n - 1}" step="1" value="{i}" data-param="{k}" '
                f'aria-label="{html.escape(name)}" aria-valuetext="{html.escape(self.value_text(name, i))}"></label> '
                f'<output>{html.escape(self.value_text(name, i))}</output></div>')
        data = json.dumps({"shape": list(self.shape), "names": list(self.params), "labels": list(self.labels.values()),
                           "units": list(self.units.values()), "title": self.title,
                           "interval": self.interval, "format": self.image_format, "frames": frames})
        data = data.replace("</", "<\\/")  # a label cannot end the script element early
        return f"""<div class="fmlearn-explorer" id="{uid}">
<p class="fmx-look"><b>What to look at:</b> {html.escape(self.look)}</p>
{''.join(rows)}
{self._img_tag(self.start)}
<script type="application/json" class="fmx-data">{data}</script>
<script>(function () {{
  var me = document.currentScript, root = (me && me.parentNode) || document.getElementById("{uid}");
  if (!root || root.dataset.ready) return; root.dataset.ready = "1";
  var d = JSON.parse(root.querySelector(".fmx-data").textContent);
  var sliders = root.querySelectorAll("input[type=range]"), img = root.querySelector("img.fmx-frame");
  function said(k, v) {{ return (d.labels[k][v] + " " + d.units[k]).trim(); }}
  function show() {{
    var i = 0, alt = [d.title];
    for (var k = 0; k < sliders.length; k++) {{
      var v = +sliders[k].value; i = i * d.shape[k] + v;
      sliders[k].setAttribute("aria-valuetext", said(k, v));
      sliders[k].parentNode.nextElementSibling.textContent = said(k, v);
      alt.push(d.names[k] + " = " + said(k, v));
    }}
    img.src = "data:image/" + d.format + ";base64," + d.frames[i];
    img.alt = alt.join(", ");
  }}
  // a page that binds keys of its own (JupyterLab: arrows move between cells) must not take the slider's keys
  function keep(keys) {{ return function (e) {{ if (keys.indexOf(e.key) >= 0) e.stopPropagation(); }}; }}
  sliders.forEach(function (s) {{
    s.addEventListener("input", show);
    s.addEventListener("keydown", keep(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End",
                                        "PageUp", "PageDown"]));
  }});
  root.querySelectorAll("button.fmx-play").forEach(function (b) {{
    var timer = null, s = sliders[+b.dataset.param];
    b.addEventListener("keydown", keep(["Enter", " "]));
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
        """The HTML version and a line of text, everywhere: JupyterLab, the web book, an exported notebook
        (the HTML), a console (the text).

        No widget view, on purpose: JupyterLab ranks a widget view above HTML and shows it whenever it is in the
        output, and the view needs its model in a live kernel, so a saved notebook reopened after a restart (or
        the next day) would show "Error displaying widget: model not found" in place of the explorer. The HTML
        slider needs no kernel: its frames are in the page, so it answers the same before and after a restart
        (JupyterLab runs its script in a notebook the learner ran and saved, which it trusts; in an untrusted
        one it shows the start frame)."""
        return {"text/plain": repr(self), "text/html": self.to_html()}
