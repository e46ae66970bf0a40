"""The one training loop, shared by every stage (detector, contrastive pretraining, tracker):
checkpointing, resume, time limit, logging to ``metrics.jsonl``, snapshots and evaluation hooks.
A stage hands the loop a :class:`Stage` (its step function, optimizer and what a checkpoint
holds, see :mod:`conceptseg.train.detect` and :mod:`conceptseg.train.tracker`).

Run directory layout::

    RUN/train_state.pt          everything needed to resume (optimizer, scheduler, step, training
                                config, the stage's weights and RNG state); atomic
    RUN/model.safetensors       latest weights in our layout
    RUN/snapshots/step_N.safetensors   optional numbered copies (--snapshot-every)
    RUN/metrics.jsonl           one JSON line per log interval / evaluation
    RUN/train_config.json       the training configuration

An existing run is never overwritten silently: continue it (``resume``) or start it over
(``overwrite``, which removes its files first). A batch is a pure function of the global step
and the checkpoint holds the RNG states, so a resumed run continues exactly where the last
checkpoint left it: on CPU its weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..atomic import atomic_write
from ..errors import InputError
from ..runtime import check_output_path, progress
from .optim import optimizer_step

__all__ = ["STATE", "WEIGHTS", "METRICS", "CONFIG", "Schedule", "Stage", "open_run",
           "check_resumed_options", "run", "save_state"]

STATE = "train_state.pt"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
CONFIG = "train_config.json"
SNAPSHOTS = "snapshots"

#: options that only say how this invocation runs: a resumed run may change them without a note
BOOKKEEPING = frozenset({"out", "stop_at", "time_limit", "threads", "workers", "device", "progress",
                         "log_every", "checkpoint_every", "snapshot_every", "eval_every",
                         "eval_images"})


@dataclass
class Schedule:
    """When the loop logs, checkpoints and stops (options every stage shares)."""

    total: int  # optimizer steps the learning-rate schedule spans
    stop_at: int | None = None  # end this invocation at this step (checkpointed)
    checkpoint_every: int = 200
    snapshot_every: int = 0  # also keep snapshots/step_N.safetensors every N steps (0: off)
    log_every: int = 10
    time_limit: float | None = None  # minutes: checkpoint and stop once this much time passed
    clip: float = 0.1  # max gradient norm (0: off)
    progress: bool = True  # a progress bar (drawn on a terminal only)


@dataclass
class Stage:
    """One training stage as the loop sees it, built by the stage for the step it starts at."""

    name: str  # progress bar label: detect, pretrain, tracker
    step: Callable[[int], tuple[torch.Tensor, dict]]  # global step -> (loss, logged components)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    params: list[torch.Tensor]  # the trainable tensors (gradient clipping)
    save_weights: Callable[[Path], object]  # write the model to a .safetensors path
    state: Callable[[int], dict]  # the stage's part of train_state.pt at a step
    describe: Callable[[int], dict]  # the data position of a step (logged)
    show: tuple[str, ...] = ("loss",)  # components on the progress bar
    epoch_end: Callable[[int], bool] | None = None  # True after an epoch's last step: checkpoint
    evaluate: Callable[[int], dict | None] | None = None  # after a step: a metrics.jsonl record


# -- the run directory ----------------------------------------------------------------------------
def open_run(out: str | Path, resume: bool, overwrite: bool, log) -> dict | None:
    """Check ``out`` before any work and return the state to resume from (None: a new run).
    An existing run without ``resume`` or ``overwrite`` is refused in one line."""
    out = check_output_path(out, "--out", directory=True)
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    if resume and (out / STATE).exists():
        try:
            return torch.load(out / STATE, map_location="cpu", weights_only=False)
        except Exception as e:  # a corrupt state: say so in one line
            raise InputError(f"cannot read {out / STATE} to resume: "
                             f"{str(e).splitlines()[0][:200]}") from None
    if resume:
        log(f"no checkpoint in {out}; starting a new run")
    elif not overwrite:
        found = [n for n in (STATE, WEIGHTS, METRICS) if (out / n).exists()]
        if found:
            raise InputError(f"--out {out} already holds a run ({found[0]}): continue it with "
                             "--resume or start it over with --overwrite")
    return None


def check_resumed_options(saved: dict, new: dict, refuse: dict[str, str], log) -> None:
    """Compare the resumed run's training config with this invocation's: a changed option in
    ``refuse`` (name -> why) is refused in one line; every other change is honoured and noted."""
    for k in sorted(set(saved) | set(new)):
        if k in BOOKKEEPING or saved.get(k) == new.get(k):
            continue
        flag = "--" + k.replace("_", "-")
        if k in refuse:
            raise InputError(f"--resume: {flag} {new.get(k)!r} differs from the run's "
                             f"{saved.get(k)!r}: {refuse[k]}")
        log(f"note: resuming with {flag} {new.get(k)!r} (the run had {saved.get(k)!r})")


def _start_files(out: Path, start: int) -> None:
    """A new run removes an earlier run's files; a resumed one drops the metrics lines logged
    after its checkpoint (they are logged again), so metrics.jsonl stays one run in order."""
    out.mkdir(parents=True, exist_ok=True)
    if start == 0:
        for p in [out / STATE, out / WEIGHTS, out / METRICS,
                  *sorted((out / SNAPSHOTS).glob("step_*.safetensors"))]:
            p.unlink(missing_ok=True)
        return
    if not (out / METRICS).exists():
        return
    keep = []
    for line in (out / METRICS).read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= start:
                keep.append(line + "\n")
        except ValueError:  # a line torn by a kill
            continue
    atomic_write(out / METRICS, lambda tmp: Path(tmp).write_text("".join(keep)))


def save_state(obj: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


# -- the loop -----------------------------------------------------------------------------------
def run(stage: Stage, schedule: Schedule, out: str | Path, start: int, train_config: dict,
        hooks: dict[str, Callable] | None = None, log=print) -> dict:
    """Steps ``start`` .. end of ``stage``; returns the last logged metrics plus ``step``.
    ``hooks["step_end"](step, metrics)`` runs after every step (after that step's checkpoint)
    and may raise to stop the run."""
    hooks = hooks or {}
    out = Path(out)
    _start_files(out, start)
    atomic_write(out / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(train_config, indent=1)))
    end = schedule.total if schedule.stop_at is None else min(schedule.total, schedule.stop_at)

    def checkpoint(done: int) -> None:
        stage.save_weights(out / WEIGHTS)  # first: a resumed tracker run reads it
        if schedule.snapshot_every and done % schedule.snapshot_every == 0:
            stage.save_weights(out / SNAPSHOTS / f"step_{done:07d}.safetensors")
        save_state({"optimizer": stage.opt.state_dict(), "scheduler": stage.sched.state_dict(),
                    "step": done, "train_config": train_config, **stage.state(done)}, out / STATE)

    step, last = start, {}
    acc: dict[str, float] = {}
    cnt: dict[str, int] = {}
    n_acc, t_acc = 0, 0.0
    bar = progress(total=schedule.total, initial=step, desc=f"{stage.name} {out.name}",
                   dynamic_ncols=True, disable=not schedule.progress, mininterval=2.0)
    metrics_f = open(out / METRICS, "a")
    started = time.time()
    try:
        while step < end:
            t0 = time.time()
            loss, comps = stage.step(step)
            comps.update(optimizer_step(loss, stage.opt, stage.sched, stage.params, schedule.clip,
                                        step))
            step += 1
            for k, v in comps.items():  # some keys (pres_gap, prompt_iou) are not in every step
                acc[k] = acc.get(k, 0.0) + v
                cnt[k] = cnt.get(k, 0) + 1
            n_acc += 1
            t_acc += time.time() - t0
            bar.update(1)
            if step % schedule.log_every == 0 or step == end:
                last = {k: v / cnt[k] for k, v in acc.items()}
                last.update(step=step, lr=stage.opt.param_groups[0]["lr"], s_per_step=t_acc / n_acc,
                            time=time.time(), **stage.describe(step - 1))
                metrics_f.write(json.dumps(last) + "\n")
                metrics_f.flush()
                bar.set_postfix({k: f"{last[k]:.3g}" for k in stage.show if k in last},
                                refresh=False)
                acc, cnt, n_acc, t_acc = {}, {}, 0, 0.0
            epoch_end = stage.epoch_end is not None and stage.epoch_end(step - 1)
            out_of_time = (schedule.time_limit is not None
                           and time.time() - started >= 60 * schedule.time_limit)
            if step % schedule.checkpoint_every == 0 or step == end or epoch_end or out_of_time:
                checkpoint(step)
            if out_of_time:
                log(f"time limit of {schedule.time_limit:g} min reached at step {step}; "
                    "checkpointed (continue with --resume)")
                break
            record = stage.evaluate(step) if stage.evaluate is not None else None
            if record:
                metrics_f.write(json.dumps(record) + "\n")
                metrics_f.flush()
            if "step_end" in hooks:
                hooks["step_end"](step, comps)
    finally:
        bar.close()
        metrics_f.close()
    return {"step": step, **last}
