// The page's entry: wires the elements to the two tabs (image_tab.js, video_tab.js), renders
// the side panels (concept chips, exemplars, legend, refine panel, video objects), shows API
// errors, and the tab bar / API key / model line.

import { ApiError, apiKey, getJSON, setApiKey } from "./api.js";
import { colour, css } from "./masks.js";
import { ImageTab } from "./image_tab.js";
import { VideoTab } from "./video_tab.js";
import { instanceColour } from "./image_view.js";

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

// ---- errors and busy state -----------------------------------------------------------------
let busyCount = 0;
const ui = {
  error(err) {
    const msg = err instanceof ApiError
      ? err.message + (err.status ? ` (${err.status} ${err.code})` : "")
      : String(err && err.message ? err.message : err);
    $("error-text").textContent = msg +
      (err instanceof ApiError && err.status === 401 ? " — enter the key under API key" : "");
    $("error").hidden = false;
    if (err instanceof ApiError && err.status === 401) document.querySelector(".settings").open = true;
  },
  clearError() { $("error").hidden = true; },
  busy(on) {
    busyCount = Math.max(0, busyCount + (on ? 1 : -1));
    for (const s of document.querySelectorAll(".spinner")) s.hidden = busyCount === 0;
    document.body.classList.toggle("busy", busyCount > 0);
  },
};
$("error-close").addEventListener("click", () => ui.clearError());
window.addEventListener("unhandledrejection", (e) => ui.error(e.reason));

// ---- image tab -----------------------------------------------------------------------------
const imageEl = {
  canvas: $("image-canvas"), status: $("status"),
  negative: $("negative"), pointNegative: $("point-negative"),
  render: renderImagePanels,
};
const img = new ImageTab(imageEl, ui);

$("image-file").addEventListener("change", (e) => {
  img.open(e.target.files[0]);
  e.target.value = "";
});
dropTarget($("image-stage"), (f) => img.open(f));

// drag-and-drop of a file onto a stage
function dropTarget(stage, open) {
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("drop"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("drop"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("drop");
    const f = e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) open(f);
  });
}

$("concept-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("concept-input");
  const added = img.addPhrases(input.value);
  input.value = "";
  if (!img.image) {
    if (added.length) ui.error(new ApiError(0, "no_image", "open an image first"));
    return;
  }
  img.segment(added.length ? added : img.concepts);
});

$("threshold").addEventListener("input", (e) => {
  const v = Number(e.target.value);
  $("threshold-value").textContent = v.toFixed(2);
  img.setThreshold(v);
});

$("undo-point").addEventListener("click", () => img.undoPoint());
$("refine-done").addEventListener("click", () => img.deselect());
$("delete-selected").addEventListener("click", () => {
  if (img.selected) img.deleteInstance(img.selected.concept, img.selected.inst);
});
$("download").addEventListener("click", () => img.downloadCOCO());

document.addEventListener("keydown", (e) => {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
  if (e.key === "Escape" && img.selected) { img.deselect(); return; }
  if (typing || !img.selected) return;
  if (e.key === "Delete" || e.key === "Backspace") {
    e.preventDefault();
    img.deleteInstance(img.selected.concept, img.selected.inst);
  } else if ((e.key === "z" || e.key === "Z") && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    img.undoPoint();
  }
});

function renderImagePanels(tab) {
  $("image-placeholder").hidden = !!tab.image;
  $("download").disabled = !tab.image || !tab.concepts.some((c) => c.instances.length);
  // chips: click = the concept takes new exemplars; × removes it
  const chips = $("chips");
  chips.replaceChildren(...tab.concepts.map((c, ci) => h("li", { class: "chip" },
    h("button", { type: "button", class: "chip-name", "aria-pressed": String(ci === tab.active),
      title: "exemplar boxes drawn now go to this concept", "data-testid": "chip",
      onclick: () => tab.setActive(c) }, c.label),
    h("button", { type: "button", class: "chip-x", "aria-label": `Remove ${c.label}`,
      onclick: () => tab.removeConcept(c) }, "×"))));
  // exemplars of the active concept
  const active = tab.concepts[tab.active];
  const ex = $("exemplars");
  ex.replaceChildren(...(active ? active.exemplars : []).map((e, i) => h("li", {},
    h("span", { class: e.positive ? "pos" : "neg" }, e.positive ? "+" : "−"),
    ` ${active.label}: ${e.box.join(", ")} `,
    h("button", { type: "button", "aria-label": `Remove exemplar ${i + 1}`,
      "data-testid": "remove-exemplar", onclick: () => tab.removeExemplar(active, i) }, "×"))));
  // refine panel
  const sel = tab.selected;
  $("refine").hidden = !sel;
  if (sel) {
    $("refine-title").textContent = `Refine ${sel.concept.label} #${sel.inst.id}` +
      (tab.points.length ? ` (${tab.points.length} point${tab.points.length > 1 ? "s" : ""})` : "");
    $("undo-point").disabled = !tab.points.length;
  }
  // legend: phrase -> instances
  const legend = $("legend");
  if (!tab.concepts.length) {
    legend.replaceChildren(h("p", { class: "muted" }, tab.image ? "Type a concept." : "No results yet."));
    return;
  }
  legend.replaceChildren(...tab.concepts.map((c, ci) => {
    const shown = c.instances.filter((i) => tab.visible(i));
    const head = c.presence === null ? "…"
      : shown.length ? `${shown.length} instance${shown.length > 1 ? "s" : ""}`
        : `no match above ${tab.threshold.toFixed(2)}`;
    const presence = c.presence === null ? "" : ` · presence ${c.presence.toFixed(2)}`;
    return h("section", { class: "concept", "data-testid": "legend-concept" },
      h("h3", {}, c.label, h("span", { class: "muted" }, ` — ${head}${presence}`)),
      h("ul", {}, ...shown.map((inst) => {
        const rgb = instanceColour(ci, inst);
        const isSel = sel && sel.inst === inst;
        return h("li", { class: isSel ? "selected" : "", "data-testid": "legend-instance" },
          h("button", { type: "button", class: "inst", "aria-pressed": String(!!isSel),
            title: "select to refine", onclick: () => isSel ? tab.deselect() : tab.select(c, inst) },
            h("span", { class: "swatch", style: `background:${css(rgb)}` }),
            `#${inst.id}`, h("span", { class: "score" }, inst.score.toFixed(2)),
            inst.refined ? h("span", { class: "muted", title: "refined" }, " ✎") : null,
            h("span", { class: "muted" }, ` ${inst.area} px`)),
          h("button", { type: "button", class: "x", "aria-label": `Delete ${c.label} #${inst.id}`,
            "data-testid": "delete-instance", onclick: () => tab.deleteInstance(c, inst) }, "×"));
      })));
  }));
}

// ---- video tab -----------------------------------------------------------------------------
const videoEl = {
  canvas: $("video-canvas"), status: $("video-status"), progress: $("video-progress"),
  frame: $("video-frame"), frameLabel: $("video-frame-label"), render: renderVideoPanels,
};
const vid = new VideoTab(videoEl, ui);

$("video-file").addEventListener("change", (e) => {
  vid.open(e.target.files[0]);
  e.target.value = "";
});
dropTarget(document.querySelector("#panel-video .stage"), (f) => vid.open(f));
$("video-form").addEventListener("submit", (e) => {
  e.preventDefault();
  vid.prompt($("video-phrase").value, $("video-add").checked);
});
$("video-propagate").addEventListener("click", () => vid.propagate($("video-direction").value));
$("video-stop").addEventListener("click", () => { vid.abortStream(); vid.stop(); });
$("video-play").addEventListener("click", () => vid.play());
$("video-frame").addEventListener("input", (e) => { vid.stop(); vid.show(Number(e.target.value)); });
$("video-close").addEventListener("click", () => vid.close().then(() => vid.status("session closed")));

function renderVideoPanels(tab) {
  const has = !!tab.video;
  for (const id of ["video-prompt", "video-propagate", "video-play", "video-close"]) {
    document.querySelector(`[data-testid=${id}]`).disabled = !has;
  }
  $("video-stop").disabled = !tab.stream && !tab.playing;
  $("video-play").textContent = tab.playing ? "Pause" : "Play";
  $("video-frame").disabled = !has;
  const legend = $("video-legend");
  const objs = [...tab.objects.entries()];
  if (!objs.length) { legend.replaceChildren(h("p", { class: "muted" }, "No objects yet.")); return; }
  legend.replaceChildren(h("ul", {}, ...objs.map(([id, o]) => h("li",
    { "data-testid": "video-object" },
    h("span", { class: "swatch", style: `background:${css(colour(id))}` }),
    ` ${id} ${o.phrase || ""} `,
    h("button", { type: "button", class: "x", "aria-label": `Remove object ${id}`,
      onclick: () => tab.removeObject(id) }, "×")))));
}

// ---- tabs, API key, model line -------------------------------------------------------------
const tabs = [["tab-image", "panel-image"], ["tab-video", "panel-video"]];
function selectTab(which) {
  for (const [t, p] of tabs) {
    const on = t === which;
    $(t).setAttribute("aria-selected", String(on));
    $(t).tabIndex = on ? 0 : -1;
    $(p).hidden = !on;
  }
  window.dispatchEvent(new Event("resize")); // fit the shown tab's canvas
}
for (const [t] of tabs) $(t).addEventListener("click", () => selectTab(t));
$("tab-image").addEventListener("keydown", (e) => {
  if (e.key === "ArrowRight") { selectTab("tab-video"); $("tab-video").focus(); }
});
$("tab-video").addEventListener("keydown", (e) => {
  if (e.key === "ArrowLeft") { selectTab("tab-image"); $("tab-image").focus(); }
});

$("api-key").value = apiKey();
$("api-key").addEventListener("change", (e) => { setApiKey(e.target.value.trim()); loadModel(); });

async function loadModel() {
  try {
    const m = await getJSON("/v1/model");
    $("model").textContent = `${m.config}${m.shipped ? " (shipped)" : ""} · ` +
      `${(m.parameters / 1e6).toFixed(1)} M params · ${m.device} ${m.precision}`;
    $("model").dataset.ready = "true";
    ui.clearError();
  } catch (e) {
    $("model").textContent = "model unavailable";
    ui.error(e);
  }
}
loadModel();
renderImagePanels(img);
renderVideoPanels(vid);
