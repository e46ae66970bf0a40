// The image tab's result as a COCO JSON file (pycocotools loads it): one image, one category
// per phrase, one annotation per shown instance with its RLE segmentation as the server sent
// it, bbox xywh, area and score.

export function cocoDocument(image, concepts, visible) {
  const categories = [];
  const annotations = [];
  concepts.forEach((c, ci) => {
    const catId = ci + 1;
    categories.push({ id: catId, name: c.label, supercategory: "concept" });
    for (const inst of c.instances) {
      if (!visible(inst)) continue;
      const [x0, y0, x1, y1] = inst.box;
      const ann = {
        id: annotations.length + 1,
        image_id: 1,
        category_id: catId,
        segmentation: inst.rle,
        area: inst.area,
        bbox: [x0, y0, x1 - x0, y1 - y0].map((v) => Math.round(v * 100) / 100),
        score: inst.score,
        iscrowd: 0,
        instance_id: inst.id,
      };
      if (inst.refined) ann.refined = true;
      annotations.push(ann);
    }
  });
  return {
    info: { description: "conceptseg web page", date_created: new Date().toISOString() },
    licenses: [],
    images: [{ id: 1, file_name: image.name, width: image.width, height: image.height }],
    categories,
    annotations,
  };
}

export function downloadJSON(doc, filename) {
  const blob = new Blob([JSON.stringify(doc)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
