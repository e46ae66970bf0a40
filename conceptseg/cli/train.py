"""``conceptseg train``: train or fine-tune a concept segmentation model.

Examples::

    conceptseg train --config tiny --stage pretrain --steps 3000 --out runs/tiny-pre
    conceptseg train --init runs/tiny-pre/model.safetensors --steps 40000 --out runs/tiny \\
        --curriculum 0:1:easy,3000:2:mixed,10000:4:mixed
    conceptseg train --init sam3.pt --data ann.json --images imgs/ --epochs 5 --freeze vision,text
    conceptseg train ... --resume       # continue the run in --out from its last checkpoint
    conceptseg train --stage tracker --init runs/tiny/model.safetensors --steps 3000 \
        --out runs/tiny-tracker             # the video tracker, detector frozen (TRACKER.md)
"""

from __future__ import annotations

import argparse

from ..data.splits import TRAIN_SEED
from ..errors import InputError
from ..train.config import TrainConfig
from ..train.detect import train
from ..train.loop import WEIGHTS
from ..train.losses import LossWeights
from ..train.tracker import train_tracker
from ..train.tracker_step import TrackerTrainConfig


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def add_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--config", help="model preset (tiny, fixture, test, sam3) or config JSON; "
                                    "with --init: only needed for checkpoints of custom size")
    t.add_argument("--init", help="initial weights, any layout (official sam3.pt, HF, ours)")
    t.add_argument("--stage", choices=["detect", "pretrain", "tracker"], default="detect",
                   help="detect: concept segmentation; pretrain: contrastive vision-text "
                        "alignment; tracker: the video tracker on synthetic clips (detector "
                        "frozen; --init a detector or video checkpoint)")
    t.add_argument("--data", default="synthetic", help="'synthetic' or a COCO / SA-Co JSON file")
    t.add_argument("--images", help="image folder of a COCO JSON (default: the JSON's folder)")
    t.add_argument("--skip-bad", action="store_true",
                   help="skip bad entries of a COCO JSON (and report how many) instead of stopping")
    t.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl)")
    t.add_argument("--steps", type=int, default=1000, help="total optimizer steps")
    t.add_argument("--epochs", type=int, help="COCO data: total epochs (overrides --steps; "
                                               "synthetic data is a stream: use --steps)")
    t.add_argument("--batch-images", type=int, default=8)
    t.add_argument("--phrases-per-image", type=int, default=4)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--backbone-lr-mult", type=float, default=1.0,
                   help="learning-rate multiplier of the vision trunk and the text encoder")
    t.add_argument("--warmup", type=int, default=200, help="linear warm-up steps (then cosine)")
    t.add_argument("--min-lr-ratio", type=float, default=0.05)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--clip", type=float, default=0.1, help="gradient norm clip (0: off)")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    t.add_argument("--freeze", type=_csv, default=(),
                   help="comma list: vision, neck, text, text-resizer, geometry, encoder, decoder, "
                        "scoring, masks, backbone")
    t.add_argument("--curriculum", help="synthetic data: stages step:max_attributes:easy|hard|mixed, "
                                        "comma separated, e.g. 0:1:easy,2000:2:mixed,6000:4:mixed")
    t.add_argument("--o2m", type=int, default=0, metavar="K",
                   help="one-to-many auxiliary matching: each target to K extra queries (0: off)")
    t.add_argument("--dac", action="store_true",
                   help="with --o2m: duplicate the queries (no self-attention) for the o2m loss")
    t.add_argument("--dn", action="store_true",
                   help="recognition queries: one per instance at its jittered box, trained to "
                        "say whether it matches the phrase (synthetic data)")
    t.add_argument("--stop-at", type=int, metavar="STEP",
                   help="end this run at STEP (checkpointed) while the learning-rate schedule "
                        "still spans --steps; resume later with --resume")
    t.add_argument("--exemplars", type=float, default=0.0, metavar="P",
                   help="synthetic data: share of rows prompted with an exemplar box (half of them "
                        "exemplar-only, text 'visual'), so exemplar prompting is trained")
    t.add_argument("--attr-aux", type=float, default=0.0, metavar="W",
                   help="synthetic data: weight of a per-token attribute classification loss on "
                        "the ViT output (keeps teaching shapes while the detector trains)")
    t.add_argument("--randomize", action="store_true",
                   help="synthetic data: domain randomisation of everything that is not the concept "
                        "(backgrounds, clutter, scale, aspect, colour jitter within each name, "
                        "anti-aliasing, outlines, blur, noise, JPEG; conceptseg/data/randomize.py)")
    t.add_argument("--oov-negatives", type=float, default=0.0, metavar="P",
                   help="synthetic data: share of negative phrases replaced by words the engine "
                        "never draws ('board', 'red board'), so they get presence near 0")
    t.add_argument("--loss", metavar="k=v,...", default="",
                   help="loss weights, e.g. presence=5,sem_bce=2 (see conceptseg.train.losses)")
    t.add_argument("--seed", type=int, default=TRAIN_SEED)
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--snapshot-every", type=int, default=0,
                   help="also keep RUN/snapshots/step_N.safetensors every N steps")
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--eval-every", type=int, default=0,
                   help="quick synthetic evaluation every N steps (logged to metrics.jsonl)")
    t.add_argument("--eval-images", type=int, default=48)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--workers", type=int, default=0,
                   help="data processes rendering batches ahead of the training step (detect "
                        "stage; use several on a GPU)")
    t.add_argument("--time-limit", type=float, metavar="MIN",
                   help="checkpoint and stop after MIN minutes (resume later with --resume)")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--resume", action="store_true",
                   help="continue from RUN/train_state.pt (starts fresh if there is none); "
                        "changed schedule options (--lr, --steps, ...) apply from there on")
    t.add_argument("--overwrite", action="store_true",
                   help="start over in a --out that holds a run (its files are removed)")


def add_tracker_arguments(t: argparse.ArgumentParser) -> None:
    g = t.add_argument_group("--stage tracker (see conceptseg/train/TRACKER.md)")
    g.add_argument("--clips", type=int, default=4, help="synthetic clips per step")
    g.add_argument("--frames", type=int, default=5, help="frames per clip (frame 0 prompted)")
    g.add_argument("--max-objects", type=int, default=2, help="objects tracked per clip (1..N)")
    g.add_argument("--tracker-config", help="tracker preset for a fresh tracker (default: the "
                                            "one paired with the detector's preset)")
    g.add_argument("--correct-prob", type=float, default=0.25,
                   help="chance per step that one tracked frame gets a corrective click")


def config_from_args(args) -> TrainConfig:
    weights = LossWeights(o2m_k=args.o2m)
    for item in _csv(args.loss):
        k, _, v = item.partition("=")
        if not hasattr(weights, k) or k in ("matcher",):
            raise InputError(f"--loss: unknown weight {k!r}")
        try:
            cast = type(getattr(weights, k))
            setattr(weights, k, cast(v) if cast is not bool else v.lower() in ("1", "true", "yes"))
        except ValueError:
            raise InputError(f"--loss: bad value in {item!r}") from None
    cfg = TrainConfig(
        out=args.out, stage=args.stage, data=args.data, images=args.images, skip_bad=args.skip_bad,
        steps=args.steps, epochs=args.epochs, batch_images=args.batch_images,
        phrases_per_image=args.phrases_per_image, lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult, warmup=args.warmup, min_lr_ratio=args.min_lr_ratio,
        weight_decay=args.weight_decay, clip=args.clip, bf16=args.bf16, freeze=args.freeze,
        curriculum=args.curriculum, dac=args.dac, dn=args.dn, attr_aux=args.attr_aux,
        randomize=args.randomize, oov_negatives=args.oov_negatives,
        exemplars=args.exemplars, stop_at=args.stop_at, seed=args.seed,
        checkpoint_every=args.checkpoint_every, snapshot_every=args.snapshot_every,
        log_every=args.log_every, eval_every=args.eval_every, eval_images=args.eval_images,
        threads=args.threads, workers=args.workers, time_limit=args.time_limit,
        device=args.device, progress=not args.no_progress, loss=weights)
    cfg.validate()
    return cfg


#: detector-only options (dest -> default) that --stage tracker refuses instead of ignoring
_DETECTOR_ONLY = {"epochs": None, "images": None, "skip_bad": False, "batch_images": 8,
                  "phrases_per_image": 4, "backbone_lr_mult": 1.0, "bf16": False, "freeze": (),
                  "curriculum": None, "o2m": 0, "dac": False, "dn": False, "exemplars": 0.0,
                  "attr_aux": 0.0, "eval_every": 0, "workers": 0,
                  "randomize": False, "oov_negatives": 0.0}


def tracker_config_from_args(args) -> TrackerTrainConfig:
    if args.data != "synthetic":
        raise InputError("--stage tracker trains on synthetic clips only (leave out --data)")
    for dest, default in _DETECTOR_ONLY.items():
        if getattr(args, dest) != default:
            raise InputError(f"--{dest.replace('_', '-')} does not apply to --stage tracker")
    losses = {}
    for item in (x.strip() for x in args.loss.split(",") if x.strip()):
        k, _, v = item.partition("=")
        if k not in ("focal", "dice", "iou", "obj", "iou_loss"):
            raise InputError(f"--loss: unknown tracker loss term {k!r} (focal, dice, iou, obj, "
                             "iou_loss)")
        if k == "iou_loss":
            if v not in ("l1", "mse", "bce"):
                raise InputError("--loss iou_loss must be l1, mse or bce")
            losses[k] = v
            continue
        try:
            losses[k] = float(v)
        except ValueError:
            raise InputError(f"--loss: bad value in {item!r}") from None
    cfg = TrackerTrainConfig(
        **losses, out=args.out, steps=args.steps, stop_at=args.stop_at, clips=args.clips,
        frames=args.frames, max_objects=args.max_objects, correct_prob=args.correct_prob,
        lr=args.lr, warmup=args.warmup, min_lr_ratio=args.min_lr_ratio,
        weight_decay=args.weight_decay, clip=args.clip, seed=args.seed,
        checkpoint_every=args.checkpoint_every, snapshot_every=args.snapshot_every,
        log_every=args.log_every, time_limit=args.time_limit, threads=args.threads,
        device=args.device, progress=not args.no_progress)
    cfg.validate()
    return cfg


def cmd_train(args) -> int:
    if args.stage == "tracker":
        cfg = tracker_config_from_args(args)
        if not args.resume and not args.init and not args.config:
            raise InputError("give --init (a detector or video checkpoint) or --config (a preset)")
        res = train_tracker(cfg, init=args.init, model_config=args.config,
                            tracker_config=args.tracker_config, resume=args.resume,
                            overwrite=args.overwrite)
        shown = ", ".join(f"{k} {res[k]:.4g}" for k in ("loss", "track_iou", "obj_acc")
                          if k in res)
        print(f"trained the tracker to step {res['step']}" + (f" ({shown})" if shown else "")
              + f"; video model in {cfg.out}/{WEIGHTS}")
        return 0
    cfg = config_from_args(args)
    if not args.resume and not args.config and not args.init:
        raise InputError("give --config (preset or JSON) or --init (a checkpoint)")
    res = train(cfg, model_config=args.config, init=args.init, resume=args.resume,
                overwrite=args.overwrite)
    shown = ", ".join(f"{k} {res[k]:.4g}" for k in ("loss", "presence", "pres_gap", "matched_iou",
                                                     "top1") if k in res)
    print(f"trained to step {res['step']}" + (f" ({shown})" if shown else "")
          + f"; weights in {cfg.out}/{WEIGHTS}")
    return 0


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train or fine-tune on synthetic or COCO/SA-Co data",
                              description=__doc__.splitlines()[0])
    add_arguments(t)
    add_tracker_arguments(t)
    t.set_defaults(func=cmd_train)
