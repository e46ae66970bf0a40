// The image tab's canvas: draws the image, every shown instance (mask, outline, box, id,
// score), the exemplar boxes and refine clicks; turns pointer gestures into prompts:
// drag = exemplar box (shift-drag or the toggle = negative), click = select an instance, then
// clicks add refine points (shift-click or right-click = negative).

import { colour, drawBox, drawOverlay, fitCanvas, imageTransform, maskOverlay } from "./masks.js";

const DRAG_PX = 5; // screen pixels before a press becomes a drag

export function instanceColour(ci, inst) {
  return colour(ci * 7 + inst.id);
}

export class ImageView {
  constructor(tab, canvas) {
    this.tab = tab;
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.press = null; // {x, y, sx, sy, shift, dragging} while a button is down
    this.hover = null; // image point under the pointer while dragging
    this.pending = false;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointercancel", () => { this.press = null; this.draw(); });
    this.w = 640; // the image's size: the canvas shows it scaled to fit
    this.h = 360;
    window.addEventListener("resize", () => this.resize());
    canvas.addEventListener("contextmenu", (e) => {
      e.preventDefault();
      if (this.tab.selected) {
        const p = this.point(e);
        this.tab.addPoint(p.x, p.y, false);
      }
    });
  }

  resize() {
    const im = this.tab.image;
    this.w = im ? im.width : 640;
    this.h = im ? im.height : 360;
    fitCanvas(this.canvas, this.w, this.h);
    this.draw();
  }

  // pointer position in image pixels (the canvas is CSS-scaled to fit)
  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return {
      x: Math.max(0, Math.min(this.w, (e.clientX - r.left) * this.w / r.width)),
      y: Math.max(0, Math.min(this.h, (e.clientY - r.top) * this.h / r.height)),
    };
  }

  down(e) {
    if (!this.tab.image || e.button !== 0) return;
    const p = this.point(e);
    this.press = { x: p.x, y: p.y, sx: e.clientX, sy: e.clientY, shift: e.shiftKey, dragging: false };
    this.canvas.setPointerCapture(e.pointerId);
  }

  move(e) {
    if (!this.press) return;
    if (!this.press.dragging &&
        Math.hypot(e.clientX - this.press.sx, e.clientY - this.press.sy) > DRAG_PX) {
      this.press.dragging = true;
    }
    if (this.press.dragging) {
      this.hover = this.point(e);
      this.draw();
    }
  }

  up(e) {
    const press = this.press;
    this.press = null;
    if (!press) return;
    const p = this.point(e);
    const tab = this.tab;
    if (press.dragging) {
      this.hover = null;
      const box = [Math.min(press.x, p.x), Math.min(press.y, p.y),
        Math.max(press.x, p.x), Math.max(press.y, p.y)];
      if (box[2] - box[0] < 2 || box[3] - box[1] < 2) { this.draw(); return; }
      const negative = press.shift || e.shiftKey || tab.el.negative.checked;
      tab.deselect();
      tab.addExemplar(box, !negative);
      return;
    }
    if (tab.selected) {
      tab.addPoint(p.x, p.y, !(e.shiftKey || tab.el.pointNegative.checked));
      return;
    }
    const hit = this.hit(p.x, p.y);
    if (hit) tab.select(hit.concept, hit.inst);
    else if (tab.concepts.length) tab.status("no instance here: click one to refine it, or drag a box to add an exemplar");
  }

  // the shown instance under (x, y): the smallest mask containing the point, else the
  // smallest box containing it
  hit(x, y) {
    const tab = this.tab;
    const xi = Math.min(tab.image.width - 1, Math.floor(x));
    const yi = Math.min(tab.image.height - 1, Math.floor(y));
    let best = null, bestBox = null;
    for (const concept of tab.concepts) {
      for (const inst of concept.instances) {
        if (!tab.visible(inst)) continue;
        const m = inst.mask;
        if (m && m.data[yi * m.width + xi] && (!best || inst.area < best.inst.area)) {
          best = { concept, inst };
        }
        const [x0, y0, x1, y1] = inst.box;
        const a = (x1 - x0) * (y1 - y0);
        if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && (!bestBox || a < bestBox.a)) {
          bestBox = { concept, inst, a };
        }
      }
    }
    return best || bestBox;
  }

  draw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.paint(); });
  }

  paint() {
    const { ctx, canvas, tab } = this;
    const s = imageTransform(ctx, this.w, this.h);
    if (!tab.image) return;
    ctx.drawImage(tab.image.bitmap, 0, 0, this.w, this.h);
    const sel = tab.selected;
    const multi = tab.concepts.length > 1;
    let drawn = 0;
    tab.concepts.forEach((concept, ci) => {
      for (const inst of concept.instances) {
        if (!tab.visible(inst)) continue;
        const rgb = instanceColour(ci, inst);
        if (inst.overlay === undefined) inst.overlay = inst.mask ? maskOverlay(inst.mask, rgb) : null;
        ctx.globalAlpha = sel && sel.inst !== inst ? 0.3 : 1;
        if (inst.overlay) drawOverlay(ctx, inst.overlay);
        const label = `${multi ? concept.label + " " : ""}#${inst.id} ${inst.score.toFixed(2)}` +
          (inst.refined ? " ✎" : "");
        drawBox(ctx, inst.box, rgb, label, { scale: s, width: this.w,
          selected: sel && sel.inst === inst });
        drawn++;
      }
    });
    ctx.globalAlpha = 1;
    const active = tab.concepts[tab.active];
    if (active) {
      for (const ex of active.exemplars) {
        drawBox(ctx, ex.box, ex.positive ? [30, 200, 60] : [230, 40, 40],
          ex.positive ? "+ exemplar" : "− exemplar", { scale: s, width: this.w, dashed: true });
      }
    }
    for (const p of tab.points) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, 6 * s, 0, 2 * Math.PI);
      ctx.fillStyle = p.label ? "#1ec83c" : "#e62828";
      ctx.fill();
      ctx.lineWidth = 2 * s;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
    if (this.press && this.press.dragging && this.hover) {
      const neg = this.press.shift || tab.el.negative.checked;
      const b = [Math.min(this.press.x, this.hover.x), Math.min(this.press.y, this.hover.y),
        Math.max(this.press.x, this.hover.x), Math.max(this.press.y, this.hover.y)];
      drawBox(ctx, b, neg ? [230, 40, 40] : [30, 200, 60], null, { scale: s, dashed: true });
    }
    canvas.dataset.drawn = String(drawn); // instances on the canvas (read by the browser test)
  }
}
