// The video tab: upload a clip (one server session), prompt a phrase on the shown frame,
// propagate (the NDJSON stream read line by line as it arrives, each frame drawn as it comes),
// play the frames back with the tracked masks and ids, remove objects, close the session.

import { ApiError, del, fetchBlobURL, headers, postJSON, postStream, upload } from "./api.js";
import { colour, decodeRLE, drawBox, drawOverlay, fitCanvas, imageTransform, maskOverlay }
  from "./masks.js";

export class VideoTab {
  constructor(el, ui) {
    this.el = el; // {canvas, legend, status, progress, frame, ...} (see app.js)
    this.ui = ui; // {error(err), clearError(), busy(on)}
    this.video = null; // {id, num_frames, fps, width, height, name}
    this.results = new Map(); // frame index -> [VideoObject] (mask decoded lazily)
    this.objects = new Map(); // obj_id -> {phrase, removed}
    this.frames = new Map(); // frame index -> Promise<ImageBitmap> (JPEGs from the server)
    this.t = 0; // the frame shown
    this.playing = null; // playback timer
    this.stream = null; // AbortController of a running propagation
    this.ctx = el.canvas.getContext("2d");
    window.addEventListener("pagehide", () => this.closeQuietly());
    window.addEventListener("resize", () => {
      if (this.video) { fitCanvas(el.canvas, this.video.width, this.video.height); this.draw(); }
    });
  }

  async open(file) {
    if (!file) return;
    this.ui.clearError();
    this.stop();
    await this.close();
    this.status(`uploading ${file.name}…`);
    this.ui.busy(true);
    try {
      const r = await upload("/v1/videos", "video", file);
      this.video = { id: r.session_id, num_frames: r.num_frames, fps: r.fps || 10,
        width: r.width, height: r.height, name: file.name };
      this.el.canvas.dataset.sessionId = r.session_id;
      fitCanvas(this.el.canvas, r.width, r.height);
      this.el.frame.max = String(r.num_frames - 1);
      this.status(`${file.name}: ${r.num_frames} frames, ${r.width}×${r.height}, ` +
        `${(r.fps || 0).toFixed(1)} fps — type a phrase and prompt`);
      await this.show(0);
    } catch (e) {
      this.ui.error(e);
      this.status("");
    } finally {
      this.ui.busy(false);
      this.render();
    }
  }

  async prompt(text, add) {
    if (!this.video) return;
    text = text.trim();
    if (!text) { this.ui.error(new ApiError(0, "empty_prompt", "type a phrase first")); return; }
    this.ui.clearError();
    this.abortStream();
    this.ui.busy(true);
    const t0 = performance.now();
    try {
      const r = await postJSON(`/v1/videos/${this.video.id}/prompts`,
        { frame: this.t, text, replace: !add });
      if (!add) { this.results.clear(); this.objects.clear(); }
      this.remember(r);
      await this.show(r.frame);
      this.status(`${r.objects.length} object${r.objects.length === 1 ? "" : "s"} of '${text}' ` +
        `on frame ${r.frame} in ${Math.round(performance.now() - t0)} ms — propagate to track`);
    } catch (e) {
      this.ui.error(e);
    } finally {
      this.ui.busy(false);
      this.render();
    }
  }

  async propagate(direction) {
    if (!this.video) return;
    this.ui.clearError();
    this.abortStream();
    this.stop();
    const ctrl = new AbortController();
    this.stream = ctrl;
    const t0 = performance.now();
    let n = 0;
    this.el.progress.max = this.video.num_frames;
    this.el.progress.value = 0;
    this.status(`tracking ${direction}…`);
    this.render();
    try {
      const last = await postStream(`/v1/videos/${this.video.id}/propagate`,
        { direction, format: "rle" }, (line) => {
          this.remember(line);
          n++;
          this.el.progress.value = n;
          this.status(`tracking… frame ${line.frame} (${n} / ${this.video.num_frames})`);
          this.show(line.frame);
        }, ctrl.signal);
      const s = (performance.now() - t0) / 1000;
      this.status(`tracked ${last.frames} frames in ${s.toFixed(1)} s ` +
        `(${(last.frames / Math.max(s, 1e-3)).toFixed(1)} frames/s) — press Play`);
      this.el.canvas.dataset.propagated = String(last.frames);
    } catch (e) {
      if (e.name === "AbortError") this.status(`stopped after ${n} frames`);
      else this.ui.error(e);
    } finally {
      if (this.stream === ctrl) this.stream = null;
      this.render();
    }
  }

  abortStream() {
    if (this.stream) { this.stream.abort(); this.stream = null; }
  }

  remember(frameResult) {
    this.results.set(frameResult.frame, frameResult.objects);
    for (const o of frameResult.objects) {
      if (!this.objects.has(o.obj_id)) this.objects.set(o.obj_id, { phrase: o.phrase });
    }
  }

  async removeObject(objId) {
    if (!this.video) return;
    this.ui.clearError();
    try {
      await del(`/v1/videos/${this.video.id}/objects/${objId}`);
      this.objects.delete(objId);
      for (const [t, objs] of this.results) this.results.set(t, objs.filter((o) => o.obj_id !== objId));
      this.status(`removed object ${objId}`);
      this.draw();
    } catch (e) {
      this.ui.error(e);
    }
    this.render();
  }

  // ---- playback ----------------------------------------------------------------------------
  frameImage(t) {
    if (!this.frames.has(t)) {
      const p = fetchBlobURL(`/v1/videos/${this.video.id}/frames/${t}`).then(async (url) => {
        const img = new Image();
        img.src = url;
        await img.decode();
        URL.revokeObjectURL(url);
        return img;
      });
      p.catch(() => this.frames.delete(t));
      this.frames.set(t, p);
    }
    return this.frames.get(t);
  }

  async show(t) {
    if (!this.video) return;
    t = Math.max(0, Math.min(this.video.num_frames - 1, t));
    this.t = t;
    this.el.frame.value = String(t);
    this.el.frameLabel.textContent = `frame ${t} / ${this.video.num_frames - 1}`;
    try {
      this.image = await this.frameImage(t);
      this.imageT = t;
    } catch (e) {
      this.ui.error(e);
    }
    if (this.t === t) this.draw();
  }

  play() {
    if (this.playing) { this.stop(); return; }
    if (!this.video) return;
    if (this.t >= this.video.num_frames - 1) this.t = -1;
    const step = async () => {
      if (!this.playing) return;
      const next = this.t + 1;
      if (next >= this.video.num_frames) { this.stop(); return; }
      for (let k = 1; k <= 4; k++) if (next + k < this.video.num_frames) this.frameImage(next + k);
      const t0 = performance.now();
      await this.show(next);
      const played = Number(this.el.canvas.dataset.played || 0) + 1;
      this.el.canvas.dataset.played = String(played);
      const wait = Math.max(0, 1000 / this.video.fps - (performance.now() - t0));
      this.playing = setTimeout(step, wait);
    };
    this.playing = setTimeout(step, 0);
    this.render();
  }

  stop() {
    if (this.playing) clearTimeout(this.playing);
    this.playing = null;
    this.render();
  }

  draw() {
    const { ctx } = this;
    const c = this.el.canvas;
    if (!this.video) {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, c.width, c.height);
      return;
    }
    const { width: w, height: h } = this.video;
    const s = imageTransform(ctx, w, h);
    if (this.image && this.imageT === this.t) ctx.drawImage(this.image, 0, 0, w, h);
    const objs = this.results.get(this.t) || [];
    for (const o of objs) {
      const rgb = colour(o.obj_id);
      if (o.overlay === undefined) {
        o.overlay = o.mask && o.mask.counts !== undefined ? maskOverlay(decodeRLE(o.mask), rgb) : null;
      }
      if (o.overlay) drawOverlay(ctx, o.overlay);
      if (o.area > 0) {
        drawBox(ctx, o.box_xyxy, rgb, `${o.obj_id}${o.phrase ? " " + o.phrase : ""} ` +
          `${o.score.toFixed(2)}`, { scale: s, width: w });
      }
    }
    c.dataset.frame = String(this.t);
    c.dataset.drawn = String(objs.filter((o) => o.area > 0).length);
  }

  // ---- session -----------------------------------------------------------------------------
  async close() {
    this.abortStream();
    this.stop();
    const v = this.video;
    this.video = null;
    this.results.clear();
    this.objects.clear();
    this.frames.clear();
    this.image = null;
    if (v) await del(`/v1/videos/${v.id}`).catch(() => {});
    this.el.canvas.dataset.sessionId = "";
    this.draw();
    this.render();
  }

  closeQuietly() {
    if (this.video) {
      fetch(`/v1/videos/${this.video.id}`, { method: "DELETE", keepalive: true,
        headers: headers() }).catch(() => {});
    }
  }

  status(text) {
    this.el.status.textContent = text;
  }

  render() {
    this.el.render(this);
  }
}
