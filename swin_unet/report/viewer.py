"""The slice viewer of report.html: pre-rendered slice strips per case and the script that shows them.

Each volume case gets one JPEG strip of its (downsampled) image slices stacked top to bottom,
in ``figures/``, and its label maps as grayscale PNG strips (value = class index) inlined as
data URIs, which a canvas may read from a page opened from disk. A few dozen lines of plain
JavaScript draw a slice with its overlays, scroll with a slider or the mouse wheel, toggle
the layers, set the opacity and name the class under the cursor.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..io.atomic import atomic_write
from ..palette import class_colours, grey_image
from .figures import _display_window, _is_colour, display_plan, display_slice

__all__ = ["render_strips", "viewer_html", "VIEWER_SCRIPT", "MAX_SIDE", "MAX_SLICES"]

# Largest in-plane side and number of slices of a strip: a few MB per case at most.
MAX_SIDE = 192
MAX_SLICES = 64


def _png_uri(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_strips(folder: Path, case: str, prediction: np.ndarray,
                  image: Optional[np.ndarray] = None, label: Optional[np.ndarray] = None,
                  affine: Optional[np.ndarray] = None,
                  spacing: Optional[Sequence[float]] = None) -> Optional[dict]:
    """Write ``folder/<case>_slices.jpg`` and return what the viewer needs (None for one slice
    or more than 255 classes)."""
    from PIL import Image

    depth = prediction.shape[-1]
    if depth < 2 or int(np.max(prediction)) > 255 or (label is not None
                                                      and int(np.max(label)) > 255):
        return None
    plan = display_plan(affine)
    slices = np.unique(np.linspace(0, depth - 1, min(depth, MAX_SLICES)).round().astype(int))
    height, width = display_slice(prediction, 0, plan).shape
    step = max(1, int(np.ceil(max(height, width) / MAX_SIDE)))
    data = {"slices": slices.tolist(), "layers": {}, "strip": None}
    if image is not None:
        window = _display_window(image)
        channels = image if _is_colour(image) else [image[0] if image.ndim == 4 else image]
        frames = [np.stack([display_slice(c, z, plan)[::step, ::step] for c in channels], -1)
                  for z in slices]
        strip = (grey_image(np.concatenate(frames), window) * 255).round().astype(np.uint8)
        name = f"{case}_slices.jpg"
        picture = Image.fromarray(strip if strip.shape[-1] == 3 else strip[..., 0])
        atomic_write(folder / name, lambda tmp: picture.save(tmp, quality=88))
        data["strip"] = f"{folder.name}/{name}"
    for key, labels in (("ground truth", label), ("prediction", prediction)):
        if labels is not None:
            frames = [display_slice(labels, z, plan)[::step, ::step] for z in slices]
            data["layers"][key] = _png_uri(np.concatenate(frames).astype(np.uint8))
    h, w = display_slice(prediction, 0, plan)[::step, ::step].shape
    aspect = 1.0
    if spacing is not None and len(spacing) >= 2 and all(s > 0 for s in spacing[:2]):
        aspect = float(spacing[1] / spacing[0] if plan[0] else spacing[0] / spacing[1])
    data.update(width=int(w), height=int(h), aspect=aspect)
    return data


def viewer_html(case: str, data: dict, class_names: Sequence[str]) -> str:
    """The viewer's markup for one case (the script, :data:`VIEWER_SCRIPT`, goes once a page)."""
    colours = class_colours(len(class_names)).tolist()
    config = dict(data, names=["background", *class_names], colours=[[0, 0, 0], *colours])
    views = "".join(f'<figure class="view" data-layer="{html.escape(k)}"><canvas></canvas>'
                    f"<figcaption>{html.escape(k)}</figcaption></figure>"
                    for k in data["layers"])
    toggles = "".join(f'<label><input type="checkbox" data-toggle="{html.escape(k)}" checked> '
                      f"{html.escape(k)}</label>" for k in ["image", *data["layers"]]
                      if k != "image" or data["strip"])
    return (f'<div class="viewer" id="viewer-{html.escape(case)}" '
            f"data-viewer='{html.escape(json.dumps(config), quote=True)}'>"
            f'<div class="views">{views}</div><div class="controls">'
            f'<input type="range" class="slider" min="0" max="{len(data["slices"]) - 1}" '
            f'value="{len(data["slices"]) // 2}" aria-label="slice">'
            f'<span class="slice"></span> {toggles} <label>opacity <input type="range" '
            f'class="opacity" min="0" max="100" value="50"></label></div>'
            f'<div class="hover">&nbsp;</div></div>')


VIEWER_SCRIPT = """
document.querySelectorAll("div.viewer").forEach(function(root){
  var d = JSON.parse(root.dataset.viewer), w = d.width, h = d.height, layers = {};
  var slider = root.querySelector(".slider"), opacity = root.querySelector(".opacity");
  var strip = new Image(), pending = 1 + Object.keys(d.layers).length;
  function on(name){ var t = root.querySelector('[data-toggle="' + name + '"]');
    return !t || t.checked; }
  function ready(){ if (--pending === 0) draw(); }
  Object.keys(d.layers).forEach(function(key){
    var img = new Image(); img.onload = function(){
      var c = document.createElement("canvas"); c.width = w; c.height = img.height;
      var g = c.getContext("2d"); g.drawImage(img, 0, 0);
      layers[key] = g.getImageData(0, 0, w, img.height).data; ready(); };
    img.src = d.layers[key]; });
  if (d.strip) { strip.onload = ready; strip.src = d.strip; } else { ready(); }
  function draw(){
    var z = +slider.value, alpha = opacity.value / 100;
    root.dataset.slice = d.slices[z];
    root.querySelector(".slice").textContent = "slice " + d.slices[z] + " (" + (z + 1) +
      " of " + d.slices.length + ")";
    root.querySelectorAll(".view").forEach(function(view){
      var canvas = view.querySelector("canvas"), g = canvas.getContext("2d");
      canvas.width = w; canvas.height = h; canvas.style.height = (canvas.clientWidth * h *
        d.aspect / w) + "px";
      g.fillStyle = "#000"; g.fillRect(0, 0, w, h);
      if (d.strip && on("image")) g.drawImage(strip, 0, z * h, w, h, 0, 0, w, h);
      var key = view.dataset.layer, values = layers[key];
      if (!values || !on(key)) return;
      var o = document.createElement("canvas"); o.width = w; o.height = h;
      var og = o.getContext("2d"), out = og.createImageData(w, h);
      for (var i = 0; i < w * h; i++) { var k = values[(z * w * h + i) * 4];
        if (k > 0) { var c = d.colours[k] || [255, 255, 255];
          out.data.set([c[0], c[1], c[2], 255 * (d.strip && on("image") ? alpha : 1)],
                       i * 4); } }
      og.putImageData(out, 0, 0); g.drawImage(o, 0, 0); });
  }
  slider.addEventListener("input", draw); opacity.addEventListener("input", draw);
  root.querySelectorAll("input[type=checkbox]").forEach(function(t){
    t.addEventListener("change", draw); });
  root.querySelector(".views").addEventListener("wheel", function(e){
    e.preventDefault(); slider.value = +slider.value + (e.deltaY > 0 ? 1 : -1); draw();
  }, {passive: false});
  root.querySelectorAll("canvas").forEach(function(canvas){
    canvas.addEventListener("mousemove", function(e){
      var x = Math.floor(e.offsetX / canvas.clientWidth * w);
      var y = Math.floor(e.offsetY / canvas.clientHeight * h), z = +slider.value;
      var text = Object.keys(layers).map(function(key){
        var k = layers[key][((z * h + y) * w + x) * 4];
        return key + ": " + (d.names[k] || k); });
      root.querySelector(".hover").textContent = text.join(" \\u00b7 "); }); });
});
"""
