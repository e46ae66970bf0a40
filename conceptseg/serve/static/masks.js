// Masks and drawing on the page: COCO RLE decoded in JS (pycocotools' compressed string or a counts list,
// column-major), one colour per instance, and a cached overlay canvas per mask so that a
// redraw (threshold slider, selection) is a few drawImage calls.

// pycocotools rleFrString: 5 bits a character (offset 48), 0x20 = more follows, 0x10 on the
// last character = negative; counts after the second are deltas from the count two before.
export function decodeCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x += (c & 0x1f) * Math.pow(2, 5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x -= Math.pow(2, 5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// {"size": [h, w], "counts": str | number[]} -> {width, height, data: Uint8Array row-major 0/1}
export function decodeRLE(rle) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  const data = new Uint8Array(w * h);
  let idx = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (i % 2 === 1) {
      for (let j = idx; j < idx + n && j < w * h; j++) {
        const x = (j / h) | 0;
        data[(j - x * h) * w + x] = 1;
      }
    }
    idx += n;
  }
  return { width: w, height: h, data };
}

// Distinct, stable colours: golden-angle hues.
export function colour(index) {
  const hue = (index * 137.508 + 20) % 360;
  return hslToRgb(hue / 360, 0.85, 0.55);
}

function hslToRgb(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

export function css(rgb, alpha) {
  return alpha === undefined ? `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`
    : `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${alpha})`;
}

// A canvas holding the mask filled with the colour (alpha 0.45) and its outline (opaque),
// cropped to the mask's extent: {canvas, x, y} or null for an empty mask.
export function maskOverlay(mask, rgb) {
  const { width: w, height: h, data } = mask;
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      if (data[row + x]) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        y1 = y;
      }
    }
  }
  if (x1 < 0) return null;
  const cw = x1 - x0 + 1, ch = y1 - y0 + 1;
  const canvas = document.createElement("canvas");
  canvas.width = cw; canvas.height = ch;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(cw, ch);
  const px = img.data;
  const on = (x, y) => x >= 0 && y >= 0 && x < w && y < h && data[y * w + x] === 1;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (!data[y * w + x]) continue;
      const edge = !on(x - 1, y) || !on(x + 1, y) || !on(x, y - 1) || !on(x, y + 1);
      const o = ((y - y0) * cw + (x - x0)) * 4;
      px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2];
      px[o + 3] = edge ? 255 : 115;
    }
  }
  ctx.putImageData(img, 0, 0);
  return { canvas, x: x0, y: y0 };
}

// Draw a labelled box in image pixels: outline in the colour, a filled tag above it.
// opts: scale (image pixels per CSS pixel), width (the image's, to keep the tag on it),
// selected (thicker), dashed.
export function drawBox(ctx, box, rgb, label, opts) {
  const o = opts || {};
  const [x0, y0, x1, y1] = box;
  const scale = o.scale || 1;
  ctx.save();
  ctx.lineWidth = (o.selected ? 3 : 1.5) * scale;
  ctx.strokeStyle = css(rgb);
  if (o.dashed) ctx.setLineDash([6 * scale, 4 * scale]);
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  if (label) {
    ctx.setLineDash([]);
    ctx.font = `${12 * scale}px system-ui, sans-serif`;
    const tw = ctx.measureText(label).width + 6 * scale;
    const th = 16 * scale;
    const ty = y0 - th >= 0 ? y0 - th : y0;
    const tx = Math.max(0, Math.min(x0, (o.width || Infinity) - tw)); // keep the tag on the image
    ctx.fillStyle = css(rgb, 0.9);
    ctx.fillRect(tx, ty, tw, th);
    ctx.fillStyle = textOn(rgb);
    ctx.fillText(label, tx + 3 * scale, ty + 12 * scale);
  }
  ctx.restore();
}

// Black or white text, whichever reads better on the colour.
export function textOn(rgb) {
  return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150 ? "#111" : "#fff";
}

// Size a canvas on screen to fill its stage (up to 3x the w x h image), keeping the aspect
// ratio, with a backing store of the displayed device pixels (crisp outlines and labels).
export function fitCanvas(canvas, w, h) {
  const stage = canvas.parentElement;
  if (!stage.clientWidth) { // a hidden tab: fitted again when shown
    canvas.width = w; canvas.height = h;
    return;
  }
  const pad = 16;
  const top = stage.getBoundingClientRect().top + window.scrollY;
  const aw = Math.max(100, stage.clientWidth - pad);
  const ah = Math.max(200, window.innerHeight - top - pad - (stage.querySelector(".player") ? 56 : 16));
  const k = Math.min(aw / w, ah / h, 3);
  const cssW = Math.max(1, Math.floor(w * k)), cssH = Math.max(1, Math.floor(h * k));
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
}

// Clear the canvas and map image pixels (w x h) onto it; returns image pixels per CSS pixel
// (the scale of line widths and fonts given in CSS pixels).
export function imageTransform(ctx, w, h) {
  const c = ctx.canvas;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.setTransform(c.width / w, 0, 0, c.height / h, 0, 0);
  const r = c.getBoundingClientRect();
  return r.width ? w / r.width : 1;
}

// Draw a mask overlay (from maskOverlay) pixel-sharp at any zoom.
export function drawOverlay(ctx, overlay) {
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(overlay.canvas, overlay.x, overlay.y);
  ctx.imageSmoothingEnabled = true;
}
