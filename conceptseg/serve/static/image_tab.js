// The image tab: open an image (uploaded once, encoded once), prompt with phrases and exemplar
// boxes, filter by threshold locally, refine an instance with clicks, delete instances, and
// download COCO JSON. Drawing lives in image_view.js; this file holds the state and the calls.

import { ApiError, del, postJSON, upload } from "./api.js";
import { decodeRLE } from "./masks.js";
import { cocoDocument, downloadJSON } from "./coco.js";
import { ImageView } from "./image_view.js";

const FETCH_FLOOR = 0.05; // results are fetched once at this threshold; the slider filters them
const MAX_INSTANCES = 100;

export class ImageTab {
  constructor(el, ui) {
    this.el = el; // {canvas, legend, chips, ...} elements of the tab (see app.js)
    this.ui = ui; // {error(err), clearError(), busy(on)}
    this.file = null; // the File opened last (re-uploaded if the server forgot it)
    this.image = null; // {id, width, height, name, bitmap}
    this.concepts = []; // {label, text, exemplars: [{box, positive}], instances, presence, gen}
    this.active = -1; // the concept that takes new exemplar boxes
    this.threshold = 0.5;
    this.floor = FETCH_FLOOR; // the threshold the shown results were fetched with
    this.selected = null; // {concept, inst} being refined
    this.points = []; // refine clicks on the selected instance: {x, y, label}
    this.refineId = null; // the last refine's id (its mask feeds the next click)
    this.view = new ImageView(this, el.canvas);
  }

  // ---- image -------------------------------------------------------------------------------
  async open(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      this.ui.error(new ApiError(0, "not_an_image", `${file.name} is not an image`));
      return;
    }
    this.ui.clearError();
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (e) {
      this.ui.error(new ApiError(0, "bad_image", `${file.name} could not be read as an image`));
      return;
    }
    const old = this.image;
    this.file = file;
    this.image = { id: null, width: bitmap.width, height: bitmap.height, name: file.name, bitmap };
    this.deselect();
    // exemplar boxes belong to the old image: drop them (and a prompt made only of them)
    this.concepts = this.concepts.filter((c) => c.text !== null);
    this.active = Math.min(this.active, this.concepts.length - 1);
    for (const c of this.concepts) {
      c.instances = []; c.exemplars = []; c.presence = null;
      c.gen++; // answers still on their way are for the old image
    }
    this.view.resize();
    this.changed();
    this.status(`uploading ${file.name}…`);
    try {
      if (!await this.upload()) return; // superseded by a newer image
    } catch (e) {
      if (this.file === file) { this.ui.error(e); this.status(""); }
      return;
    }
    if (old && old.id && old.id !== this.image.id) del(`/v1/images/${old.id}`).catch(() => {});
    if (this.concepts.length) await this.segment(this.concepts); else this.status(
      `${file.name}: ${this.image.width}×${this.image.height}, encoded — type a concept`);
  }

  // Upload the current file; false when another image was opened meanwhile.
  async upload() {
    const image = this.image;
    const r = await upload("/v1/images", "image", this.file);
    if (this.image !== image) return false;
    image.id = r.image_id;
    // the server applies EXIF orientation as the browser does; its size is the truth
    image.width = r.width; image.height = r.height;
    this.el.canvas.dataset.imageId = r.image_id;
    this.view.resize();
    return true;
  }

  // Run fn(); when the server has forgotten the image (expired, evicted), upload it again
  // and run fn() once more.
  async withImage(fn) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404 || !this.file) throw e;
      await this.upload();
      return await fn();
    }
  }

  // ---- concepts ----------------------------------------------------------------------------
  addPhrases(raw) {
    const added = [];
    for (const part of raw.split(/[,;\n]/)) {
      const text = part.trim().replace(/\s+/g, " ");
      if (!text) continue;
      let c = this.concepts.find((k) => k.text === text);
      if (!c) {
        c = { label: text, text, exemplars: [], instances: [], presence: null, gen: 0 };
        this.concepts.push(c);
      }
      added.push(c);
    }
    if (added.length) this.active = this.concepts.indexOf(added[added.length - 1]);
    this.changed();
    return added;
  }

  removeConcept(c) {
    if (this.selected && this.selected.concept === c) this.deselect();
    this.concepts.splice(this.concepts.indexOf(c), 1);
    this.active = Math.min(this.active, this.concepts.length - 1);
    this.changed();
  }

  setActive(c) {
    this.active = this.concepts.indexOf(c);
    this.changed();
  }

  activeConcept() {
    if (this.active < 0 || this.active >= this.concepts.length) {
      // exemplars without a phrase: a visual prompt of its own
      let c = this.concepts.find((k) => k.text === null);
      if (!c) {
        c = { label: "exemplars", text: null, exemplars: [], instances: [], presence: null, gen: 0 };
        this.concepts.push(c);
      }
      this.active = this.concepts.indexOf(c);
    }
    return this.concepts[this.active];
  }

  async addExemplar(box, positive) {
    if (!this.image) return;
    const c = this.activeConcept();
    c.exemplars.push({ box: box.map((v) => Math.round(v)), positive });
    this.changed();
    await this.segment([c]);
  }

  async removeExemplar(c, i) {
    c.exemplars.splice(i, 1);
    this.changed();
    if (c.text === null && !c.exemplars.length) { this.removeConcept(c); return; }
    await this.segment([c]);
  }

  // ---- segment -----------------------------------------------------------------------------
  // Phrases without exemplars go in one request (the server batches them on one encoding);
  // each phrase with exemplars gets its own request.
  async segment(concepts) {
    if (!this.image || !this.image.id || !concepts.length) return;
    this.ui.clearError();
    const plain = concepts.filter((c) => !c.exemplars.length && c.text !== null);
    const groups = plain.length ? [plain] : [];
    for (const c of concepts) if (c.exemplars.length) groups.push([c]);
    const t0 = performance.now();
    this.ui.busy(true);
    try {
      await Promise.all(groups.map((g) => this.segmentGroup(g)));
      const n = concepts.reduce((s, c) => s + c.instances.filter((i) => this.visible(i)).length, 0);
      this.status(`${n} instance${n === 1 ? "" : "s"} of ${concepts.length} prompt` +
        `${concepts.length === 1 ? "" : "s"} in ${Math.round(performance.now() - t0)} ms`);
    } catch (e) {
      this.ui.error(e);
    } finally {
      this.ui.busy(false);
      this.changed();
    }
  }

  async segmentGroup(group) {
    const gens = group.map((c) => ++c.gen);
    const body = {
      text: group.filter((c) => c.text !== null).map((c) => c.text),
      exemplars: group.length === 1 ? group[0].exemplars.map((e) =>
        [...e.box, e.positive ? "pos" : "neg"]) : [],
      threshold: this.floor, format: "rle", max_instances: MAX_INSTANCES,
    };
    const r = await this.withImage(() => postJSON(`/v1/images/${this.image.id}/segment`, body));
    group.forEach((c, i) => {
      if (c.gen !== gens[i] || !this.concepts.includes(c)) return; // a newer request won
      if (this.selected && this.selected.concept === c) this.deselect();
      const res = r.results[i];
      c.presence = res.presence;
      c.instances = res.instances.map((inst) => this.instance(inst));
    });
  }

  instance(raw) {
    const inst = { id: raw.id, score: raw.score, deleted: false, refined: false };
    this.setMask(inst, raw);
    inst.original = { rle: inst.rle, box: inst.box, area: inst.area, mask: inst.mask };
    return inst;
  }

  setMask(inst, m) {
    inst.rle = m.mask;
    inst.box = m.box_xyxy;
    inst.area = m.area;
    inst.mask = m.mask ? decodeRLE(m.mask) : null;
    inst.overlay = undefined; // rebuilt (and cached) by the view on the next draw
  }

  visible(inst) {
    return !inst.deleted && inst.score >= this.threshold;
  }

  setThreshold(v) {
    this.threshold = v;
    if (v < this.floor - 1e-9) {
      // below what was fetched: fetch again with a lower floor (debounced while sliding)
      this.floor = Math.max(0, Math.min(FETCH_FLOOR, v));
      clearTimeout(this.refetch);
      this.refetch = setTimeout(() => this.segment(this.concepts), 250);
    }
    this.changed();
  }

  // ---- refine ------------------------------------------------------------------------------
  select(concept, inst) {
    this.selected = { concept, inst };
    this.points = [];
    this.refineId = null;
    this.changed();
  }

  deselect() {
    this.selected = null;
    this.points = [];
    this.refineId = null;
    if (this.el) this.changed();
  }

  async addPoint(x, y, positive) {
    if (!this.selected) return;
    this.points.push({ x: Math.round(x), y: Math.round(y), label: positive ? 1 : 0 });
    this.changed();
    await this.refine();
  }

  async undoPoint() {
    if (!this.selected || !this.points.length) return;
    this.points.pop();
    this.refineId = null;
    if (!this.points.length) {
      const inst = this.selected.inst;
      Object.assign(inst, inst.original, { refined: false, overlay: undefined });
      this.changed();
      return;
    }
    await this.refine();
  }

  async refine() {
    const { concept, inst } = this.selected;
    const body = {
      points: this.points.map((p) => [p.x, p.y]),
      labels: this.points.map((p) => p.label),
      instance: { text: concept.text === null ? "" : concept.text, id: inst.id },
      mask_input_id: this.refineId, multimask: false, format: "rle",
    };
    const t0 = performance.now();
    this.ui.clearError();
    this.ui.busy(true);
    try {
      const r = await postJSON(`/v1/images/${this.image.id}/refine`, body);
      if (!this.selected || this.selected.inst !== inst) return; // moved on meanwhile
      this.refineId = r.refine_id;
      this.setMask(inst, r.masks[0]);
      inst.refined = true;
      inst.refineScore = r.masks[0].score;
      this.status(`refined ${concept.label} #${inst.id} with ${this.points.length} point` +
        `${this.points.length === 1 ? "" : "s"} in ${Math.round(performance.now() - t0)} ms ` +
        `(predicted IoU ${r.masks[0].score.toFixed(2)})`);
    } catch (e) {
      this.points.pop();
      if (e instanceof ApiError && e.code === "unknown_session" && this.file) {
        // the server forgot the image: upload it again and segment again (new instances)
        await this.upload().catch(() => {});
        this.deselect();
        await this.segment(this.concepts);
        e = new ApiError(e.status, e.code, "the image session had expired: the image was " +
          "uploaded and segmented again; click the instance again to refine it");
      }
      this.ui.error(e);
    } finally {
      this.ui.busy(false);
      this.changed();
    }
  }

  deleteInstance(concept, inst) {
    inst.deleted = true;
    if (this.selected && this.selected.inst === inst) this.deselect();
    this.status(`deleted ${concept.label} #${inst.id}`);
    this.changed();
  }

  // ---- output ------------------------------------------------------------------------------
  downloadCOCO() {
    if (!this.image) return;
    const doc = cocoDocument(this.image, this.concepts, (i) => this.visible(i) && i.rle);
    const stem = this.image.name.replace(/\.[^.]+$/, "") || "image";
    downloadJSON(doc, `${stem}.coco.json`);
    this.status(`downloaded ${doc.annotations.length} annotations as ${stem}.coco.json`);
  }

  status(text) {
    this.el.status.textContent = text;
  }

  changed() {
    this.view.draw();
    this.el.render(this);
  }
}
