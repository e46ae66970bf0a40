"""Presence of a model on 200 out-of-vocabulary nouns over the first engine's test scenes.

    python scripts/oov_presence.py                 # the shipped model
    python scripts/oov_presence.py --model runs/x/model.safetensors --images 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conceptseg import build
from conceptseg.evaluate.oov import oov_presence


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="checkpoint ('' = the shipped model)")
    p.add_argument("--images", type=int, default=8, help="test scenes per noun")
    p.add_argument("--limit", type=float, default=0.05)
    p.add_argument("--json", help="also write the full result here")
    a = p.parse_args(argv)
    r = oov_presence(build.load(a.model or None), a.images, limit=a.limit)
    print(f"{100 * r['share_at_most_limit']:.1f} % of {r['num_words']} out-of-vocabulary nouns have "
          f"presence <= {a.limit:g} on all {r['num_images']} scenes (median of the highest "
          f"presence {r['median']:.3f}; target 95 %)")
    print("highest:", ", ".join(f"{w} {v:.3f}" for w, v in r["worst"]))
    print(f"board: {r['presence'].get('board', float('nan')):.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
