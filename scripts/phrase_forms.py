"""cgF1 and IL_MCC per phrase form, from a written ground truth and predictions (issue 14).

    python scripts/phrase_forms.py --gt DIR/foreign_test_80/annotations.json --pred DIR/predictions.json

The form of a datapoint is its ``phrase_form`` field (the second renderer writes it) or, for
other SA-Co style files (the first engine's ``synthetic:N`` split), the attributes its phrase
names ("small red star" -> size+colour+shape, "red object" -> colour+object). Each row restricts
the ground truth to one form (``evaluate.restrict``) and scores it with the official-equal
cgF1 (``evaluate.evaluate_cgf1``); nothing is re-implemented here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conceptseg.data.phrases import ATTRIBUTES, parse_phrase
from conceptseg.evaluate import evaluate_cgf1, load_ground_truth, load_predictions, restrict

_WORD = {"size": "size", "fill": "fill", "color": "colour", "shape": "shape"}
ORDER = ("colour+object", "colour+shape", "size+colour+shape", "fill+shape", "shape")


def form_of(text: str) -> str:
    """The phrase form named by a phrase of the engines' grammar ('other' when it is not one)."""
    try:
        q = parse_phrase(text)
    except ValueError:
        return "other"
    words = [_WORD[a] for a in ATTRIBUTES if a in q]
    return "+".join(words) if "shape" in q else "+".join(words + ["object"])


def phrase_form_table(gt_path, pred_path, threshold: float = 0.5, iou_type: str = "segm") -> list[dict]:
    """[{form, pairs, cgF1, IL_MCC, pmF1}] per phrase form, the usual forms first."""
    entries = json.loads(Path(gt_path).read_text())["images"]
    forms = {e["id"]: e.get("phrase_form") or form_of(e["text_input"]) for e in entries}
    gt = load_ground_truth(str(gt_path))
    preds = load_predictions(str(pred_path), gt)
    names = sorted(set(forms.values()), key=lambda f: (ORDER.index(f) if f in ORDER else len(ORDER), f))
    rows = []
    for name in names:
        sub = restrict(gt, lambda d, n=name: forms.get(d.id) == n)
        if not sub.eval_ids:
            continue
        r = evaluate_cgf1(sub, preds, iou_type, threshold)
        rows.append({"form": name, "pairs": len(sub.eval_ids), "cgF1": r.cgF1, "IL_MCC": r.IL_MCC,
                     "pmF1": r.pmF1})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| phrase form | pairs | cgF1 | IL_MCC |", "|---|---:|---:|---:|"]
    lines += [f"| {r['form']} | {r['pairs']} | {r['cgF1']:.1f} | {r['IL_MCC']:.2f} |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gt", required=True, help="SA-Co style ground truth (annotations.json)")
    p.add_argument("--pred", required=True, help="COCO results (predictions.json of conceptseg eval)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--iou-type", choices=["segm", "bbox"], default="segm")
    p.add_argument("--json", help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    rows = phrase_form_table(a.gt, a.pred, a.threshold, a.iou_type)
    print(markdown(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
