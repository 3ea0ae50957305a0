"""Train: spend the budget on one strategy with the advised settings, on every training image, and leave a model
that ``advisor predict`` uses.

The time limit holds: the clock starts when ``train`` is called (advice, decoding and saving count), training
stops early enough for the final evaluation and the save to fit, and what they cost is re-measured as the run
goes. A run survives interruption: a checkpoint (atomic) every few minutes and on SIGINT/SIGTERM, and a
heartbeat of the budget spent every few seconds, so ``resume`` goes on with what is really left even after a
``kill -9``. A finished run is stored like a probe at the full budget: the strongest calibration evidence there is.

Run folder: ``model.pt`` (state dict, network, class names, preprocessing), ``run.json`` (:class:`TrainResult`,
or the plan while the run is unfinished), ``curve.png``; ``checkpoint.pt`` and ``progress.json`` while unfinished.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .nets import architectures, engine

from .measure import calibration

from . import hardware, registry, store

from .data import images

from .model import learned

from .advice import planning
from .nets import backbone as bb
from .nets import strategies as st
from .advice.decide import decide
from .errors import AdvisorError, BudgetError, DataError, printable
from .advice.plan import Plan
from .data.scan import IMAGE_EXTENSIONS, ImageItem, fingerprint, scan
from .schemas import DataFacts, Prediction, Quantity, Settings, TrainOptions, TrainResult
from .state import MachineState
from .units import accuracy_interval

MODEL_FILE, RUN_FILE, CHECKPOINT_FILE, HEARTBEAT_FILE, CURVE_FILE = (
    "model.pt", "run.json", "checkpoint.pt", "progress.json", "curve.png")
CHECKPOINT_SECONDS = 120.0  # at most this long between checkpoints ...
CHECKPOINT_SHARE = 0.1  # ... and at most this share of the budget (what a kill -9 can cost beyond the heartbeat)
HEARTBEAT_SECONDS = 2.0  # how often the budget spent is written down
EVAL_IMAGES = 512  # validation images of the evaluations during training; the final one uses all
MIN_SECONDS = 5.0  # a budget below this cannot even be planned
SAFETY = 1.25  # the final evaluation and save are reserved at this multiple of what they were measured to cost


class _Clock:
    """Seconds of the budget spent: what earlier sessions of the run spent + this session's wall time."""

    def __init__(self, before: float = 0.0, started: float | None = None) -> None:
        self.before, self.t0 = before, time.perf_counter() if started is None else started

    def __call__(self) -> float:
        return self.before + time.perf_counter() - self.t0


@dataclass
class _Position:
    """Where training stands: what a checkpoint holds beside the network and the optimiser."""

    step: int = 0
    seen: int = 0
    spent: float = 0.0  # budget seconds spent when written
    train_from: float = 0.0  # the budget second training began: the learning-rate schedule's zero
    pos: int = 0
    batch_size: int = 32
    sessions: int = 1
    curve: list = field(default_factory=list)


class _Stop:
    """SIGINT/SIGTERM ask the loop to stop after its current step (then it checkpoints); only in the main thread."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, lambda *_: setattr(self, "requested", True))
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def _check_run_dir(out: Path, data_root: Path | None, force: bool) -> None:
    """A run folder must be new (or empty, or ``force``), writable and outside the user's data folder."""
    out = out.expanduser().resolve()
    if data_root is not None and (out == data_root or data_root in out.parents):
        raise AdvisorError(f"The run folder '{printable(str(out))}' is inside the data folder; advisor never writes there. "
                           "Choose --out elsewhere.")
    if out.exists() and not out.is_dir():
        raise AdvisorError(f"'{printable(str(out))}' is a file; --out needs a folder for the run.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise AdvisorError(f"'{printable(str(out))}' is not empty (an earlier run?); choose a new folder, continue it with "
                           f"--resume {printable(str(out))}, or overwrite it with --force.")
    parent = next((p for p in (out, *out.parents) if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise AdvisorError(f"Cannot write the run to '{printable(str(out))}': '{printable(str(parent))}' is not a writable folder.")


def _default_run_dir(data: Path, strategy: str | None) -> Path:
    return Path("advisor-runs") / f"{data.resolve().name}-{strategy or 'advised'}-{datetime.now():%Y%m%d-%H%M%S}"


def _split(scanned) -> tuple[list[ImageItem], list[ImageItem]]:
    """(train, held-out): the folder's val split, else 20 % of each class (the same draw every time)."""
    if scanned.layout == "split" and scanned.split("eval"):
        return scanned.split("train"), scanned.split("eval")
    train, val = images.split_stratified(scanned.split("train"), 0.2)
    if not val:
        raise DataError("Too few images to hold any out for validation; add images or a val/ split.")
    return train, val


def _save_json(path: Path, record: dict) -> None:
    store.atomic_write(path, json.dumps(record, indent=1))


def save_torch(payload: dict, path: Path | str) -> None:
    """Write a torch payload atomically. It is serialised in memory first and written by Python, so a full disk
    is a :class:`~advisor.errors.StoreError` saying so (torch's own writer reports it as an unexplained
    RuntimeError) and never a half-written file."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    store.atomic_replace(path, lambda tmp: tmp.write_bytes(buf.getbuffer()))


def _write_checkpoint(run_dir: Path, model, optimizer, where: _Position, gen: torch.Generator, perm: torch.Tensor) -> float:
    """Atomically write the checkpoint; returns the seconds it took."""
    t = time.perf_counter()
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
               "position": asdict(where), "generator": gen.get_state(), "perm": perm}
    save_torch(payload, run_dir / CHECKPOINT_FILE)
    return time.perf_counter() - t


def _network(plan: dict, n_classes: int, pretrained: bool = True) -> tuple[torch.nn.Module, registry.Strategy]:
    """The network the plan trains (pretrained weights loaded for a fresh run; a resumed or saved one loads its own)."""
    strat = registry.resolve(plan["strategy"], plan["settings"]["resolution"], plan["train_images"],
                             depth=plan["settings"].get("fine_tune_depth"))
    if not pretrained:
        strat = replace(strat, pretrained=False)
    return st.build(strat, n_classes, plan["backbone"], plan.get("weights") if pretrained else None), strat


def _eval_seconds(model, x_val: torch.Tensor, hw, backbone: str) -> float:
    """Seconds to evaluate every validation image, from one timed batch."""
    part = x_val[: min(64, len(x_val))]
    t = time.perf_counter()
    engine.predict(model, part, hw, backbone)
    return (time.perf_counter() - t) * len(x_val) / max(len(part), 1)


def _linear_head(model, x_train, y_train, n_classes: int, hw, backbone: str, clock: _Clock, until: float) -> int:
    """Feature extraction: embed the training images (class-interleaved, so a prefix cut by the time limit stays
    stratified), fit the engine's logistic regression, and write it into the network's classifier so one
    ``model.pt`` serves every strategy. Returns the images used."""
    rank = torch.zeros(len(y_train), dtype=torch.long)
    for c in range(n_classes):
        idx = torch.nonzero(y_train == c).flatten()
        rank[idx] = torch.arange(len(idx))
    order = torch.argsort(rank * n_classes + y_train, stable=True)
    feats, used = [], 0
    for i in range(0, len(order), 128):
        if used >= 2 * n_classes and clock() > until:
            break
        idx = order[i : i + 128]
        feats.append(engine.predict(model, x_train[idx], hw, backbone, features=True).numpy())
        used += len(idx)
    y = y_train[order[:used]].numpy()
    clf = engine.fit_linear(np.concatenate(feats), y)
    scaler, lr = clf[0], clf[-1]
    coef = lr.coef_ / scaler.scale_
    bias = lr.intercept_ - (lr.coef_ * (scaler.mean_ / scaler.scale_)).sum(1)
    if coef.shape[0] == 1:  # binary: sklearn keeps one row, the logit of its second class
        coef, bias = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], bias])
    weight = np.zeros((n_classes, coef.shape[1]))
    full_bias = np.full(n_classes, -1e4)  # a class the time left no image of is never predicted
    weight[lr.classes_], full_bias[lr.classes_] = coef, bias
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(full_bias, dtype=head.bias.dtype))
    return used


def _train_loop(model, strat, plan: dict, data: tuple, hw, clock: _Clock, where: _Position, run_dir: Path,
                optimizer, gen: torch.Generator, perm: torch.Tensor, stop: _Stop, bar) -> tuple[_Position, bool]:
    """Train until the time left only covers the final evaluation and save (re-estimated as the run goes) or a
    stop is asked for; checkpoint every few minutes. Returns the position and whether the loss diverged."""
    (x_train, y_train), (x_val, y_val) = data
    s, backbone, budget = plan["settings"], plan["backbone"], plan["budget_seconds"]
    n = len(x_train)
    x_train, y_train = engine.to_device((x_train, y_train), hw)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    every = min(CHECKPOINT_SECONDS, CHECKPOINT_SHARE * budget)
    eval_s = _eval_seconds(model, x_val, hw, backbone)
    save_s = _write_checkpoint(run_dir, model, optimizer, where, gen, perm)
    last_ckpt = last_beat = clock()
    diverged = False
    while not stop.requested:
        until = budget - SAFETY * (eval_s + 2 * save_s) - 0.5  # the final evaluation, model.pt and run.json must fit
        now = clock()
        if now >= until:
            break
        factor = engine.lr_factor((now - where.train_from) / max(until - where.train_from, 1e-9))
        for g, base in zip(optimizer.param_groups, base_lrs):
            g["lr"] = base * factor
        if where.pos + where.batch_size > n:
            perm, where.pos = torch.randperm(n, generator=gen), 0
        idx = perm[where.pos : where.pos + where.batch_size]
        where.pos += len(idx)
        st.set_train_mode(model, strat, backbone)
        loss = engine.guarded_step(model, optimizer, x_train, y_train, idx, strat, hw, backbone, s["hflip"], s["crop_padding"] or 1 / 8)
        if loss is None:
            where.batch_size //= 2
            bar.write(f"out of memory: batch size halved to {where.batch_size}")
            continue
        where.step, where.seen = where.step + 1, where.seen + len(idx)
        if not math.isfinite(loss):
            diverged = True
            break
        now = clock()
        bar.update(min(now, budget) - bar.n)
        if now - last_beat >= HEARTBEAT_SECONDS:
            _save_json(run_dir / HEARTBEAT_FILE, {"spent": now, "step": where.step})
            last_beat = now
        if now - last_ckpt >= every:
            eval_t, save_t = _checkpoint(model, optimizer, (x_val, y_val), hw, backbone, clock, where, run_dir, gen, perm, bar)
            eval_s, save_s, last_ckpt = max(eval_s, eval_t), max(save_s, save_t), clock()
    where.spent = clock()
    if stop.requested:
        _write_checkpoint(run_dir, model, optimizer, where, gen, perm)
        _save_json(run_dir / HEARTBEAT_FILE, {"spent": where.spent, "step": where.step})
    return where, diverged


def _checkpoint(model, optimizer, val: tuple, hw, backbone: str, clock: _Clock, where: _Position, run_dir: Path,
                gen: torch.Generator, perm: torch.Tensor, bar) -> tuple[float, float]:
    """Mid-run: validation accuracy on up to :data:`EVAL_IMAGES` images into the curve and the progress bar, then a
    checkpoint. Returns (a full evaluation's seconds, estimated from this one; the checkpoint's seconds)."""
    x_val, y_val = val
    t = time.perf_counter()
    acc = engine._accuracy(model, x_val[:EVAL_IMAGES], y_val[:EVAL_IMAGES], hw, backbone)
    eval_s = (time.perf_counter() - t) * len(x_val) / min(len(x_val), EVAL_IMAGES)
    where.curve.append((round(clock(), 2), round(acc, 4)))
    bar.set_postfix_str(f"val {acc:.1%} (on {min(len(x_val), EVAL_IMAGES)}), batch {where.batch_size}")
    where.spent = clock()
    return eval_s, _write_checkpoint(run_dir, model, optimizer, where, gen, perm)


def _payload(model, plan: dict) -> dict:
    return {"state_dict": model.state_dict(), "strategy": plan["strategy"], "variant": plan["variant"],
            "backbone": plan["backbone"], "arch": plan["arch"], "classes": plan["classes"],
            "resolution": plan["settings"]["resolution"], "train_images": plan["train_images"],
            "fine_tune_depth": plan["settings"].get("fine_tune_depth"), "advisor_version": plan["advisor_version"]}


def _write_curve(path: Path, curve: list, budget: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if curve:
        ax.plot([c[0] / 60 for c in curve], [100 * c[1] for c in curve], marker="o")
    ax.axvline(budget / 60, color="grey", linestyle="--", label="budget")
    ax.set_xlabel("minutes of the budget")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    store.atomic_replace(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _teach(state: MachineState, plan: dict, accuracy: float, k_reached: float | None, hw, run: dict) -> str | None:
    """Store the finished run like a probe at the full budget: the model's error there for this strategy (when
    the model predicted it), and the run itself (``run``: :class:`advisor.model.cells.RunRecord` fields), which
    ``advisor calibrate --export --cells`` writes as a contributed cell (:func:`advisor.model.cells.contributed`)."""
    facts = DataFacts.model_validate(plan["facts"])
    predicted = plan.get("predicted_normalised")
    error = None if predicted is None else float(learned.to_normalised(accuracy, facts.n_classes) - predicted)
    reach = {plan["strategy"]: None if plan["strategy"] == "feature_extraction" else k_reached}
    record = calibration.probe_record({} if error is None else {plan["strategy"]: round(error, 4)}, reach,
                                      plan["val_images"], plan["data"], facts)
    cell = {"strategy": plan["strategy"], "run": run, "k": k_reached, "facts": plan["facts"], "device": hw.device,
            "dataset": plan.get("fingerprint"), "fe_measured": plan.get("fe_measured"),
            "pixel_measured": plan.get("pixel_measured"), "speed_ratios": plan.get("speed_ratios"),
            "train_images": plan["train_images"], "val_images": plan["val_images"], "advisor_version": plan.get("advisor_version")}
    calibration.record_probe(state, {**record, "source": "train", "cell": cell}, hw)
    if error is None:
        return "stored on this machine as a full run (no learned model predicted it, so it corrects nothing)"
    return (f"stored on this machine as a probe at the full budget ({plan['strategy']}: model error {error:+.3f} "
            "normalised); later advice on this data takes it into account")


def _probe_forecast(state: MachineState, root: str, name: str) -> dict | None:
    """The latest stored probe's forecast for ``name`` on the data at ``root`` (JSON), if a probe made one."""
    if not state.stored():
        return None
    with state.database() as db:
        results = db.read("probe_result", state.machine)
    for r in sorted(results, key=lambda r: r.get("time", ""), reverse=True):
        theirs = (r.get("recommendation", {}).get("profile") or {}).get("root")
        if theirs is None or Path(theirs).resolve() != Path(root).resolve():
            continue
        found = [run["forecast"] for run in r.get("runs", []) if run.get("strategy") == name and run.get("forecast")]
        if found:
            given = r["recommendation"]["budget"]["given_as"]
            return {**found[0], "detail": f"{found[0]['detail']}; a probe of {r['time'][:16]} for a budget of {given}"}
    return None


def _plan(plan: Plan, rec, name: str, train_items, val_items, state) -> dict:
    """Everything a resumed session needs to go on exactly as this one would: JSON-able."""
    scanned, backbone, weights = plan.scanned, plan.backbone, plan.weights
    settings = rec.estimate(name).settings
    strat = registry.resolve(name, settings.resolution, len(train_items), depth=settings.fine_tune_depth)
    k, fe, pred = plan.k, plan.measured_fe, plan.predictor
    predicted = None
    if pred is not None and k is not None:
        predicted = float(pred.normalised(plan.facts, k, plan.speed_ratios)[registry.STRATEGY_NAMES.index(name)])
    import advisor

    return {"status": "running", "data": str(scanned.root), "strategy": name, "recommended": rec.strategy,
            "variant": strat.variant, "arch": strat.arch, "backbone": backbone, "weights": weights,
            "settings": settings.model_dump(mode="json"), "classes": scanned.classes,
            "budget_seconds": rec.budget.seconds, "budget": rec.budget.given_as, "k_budget": k.value if k else None,
            "facts": rec.facts.model_dump(mode="json"), "predicted": (rec.estimate(name).accuracy.model_dump(mode="json")
                                                                      if rec.estimate(name).accuracy else None),
            "predicted_normalised": predicted, "advisor_version": advisor.__version__,
            "fe_measured": fe.model_dump(mode="json") if fe is not None else None,
            "pixel_measured": plan.pixels.model_dump(mode="json") if plan.pixels is not None else None,
            "speed_ratios": plan.speed_ratios,
            "fingerprint": fingerprint(train_items, length=16),
            "forecast": _probe_forecast(state, str(scanned.root), name),
            "train": [(it.path, it.label) for it in train_items], "val": [(it.path, it.label) for it in val_items],
            "train_images": len(train_items), "val_images": len(val_items)}


def _items(pairs) -> list[ImageItem]:
    return [ImageItem(path=p, label=int(label), split="train", size=(0, 0), mode="") for p, label in pairs]


def train(
    data: str | os.PathLike,
    options: TrainOptions | None = None,
    *,
    log: planning.Log = planning.quiet,
    state: MachineState | None = None,
    started: float | None = None,
    **fields,
) -> TrainResult:
    """Advise, then train ``strategy`` (default: the advised one) with the advised settings on every training
    image within the budget; the run, its model and its record go to ``out`` (a new folder). ``options`` is a
    :class:`TrainOptions`; its fields may be given as keywords instead, checked once. The budget's clock starts
    at ``started`` (a ``time.perf_counter()`` value; default: now), so a caller can count its own start-up."""
    clock = _Clock(started=started)
    o = TrainOptions.of(options, **fields)
    strategy, out, force, progress = o.strategy, o.out, o.force, o.progress
    if strategy is not None and strategy not in registry.STRATEGY_NAMES:
        raise AdvisorError(f"Unknown strategy '{strategy}'; choose one of: {', '.join(registry.STRATEGY_NAMES)}.")
    book, hw, _, budget = planning.setup(o.rules, o.device, o.backbone, gpu_hours=o.gpu_hours, hours=o.hours, minutes=o.minutes)
    if budget.seconds < MIN_SECONDS:
        raise BudgetError(f"A budget of {budget.seconds:.1f} s is too small to train anything (at least {MIN_SECONDS:g} s).")
    run_dir = Path(out) if out is not None else _default_run_dir(Path(data), strategy)
    _check_run_dir(run_dir, Path(data).expanduser().resolve(), force)
    state = state or MachineState()
    log(f"scanning {data} …")
    scanned = scan(data, progress=progress)
    planned = planning.plan_scanned(scanned, budget, hw, book, state, o.backbone, o.weights, use_model=o.use_model, log=log)
    rec = decide(planned)
    name = strategy or rec.strategy
    train_items, val_items = _split(scanned)
    plan = _plan(planned, rec, name, train_items, val_items, state)
    est = rec.estimate(name)
    step_s = (est.seconds_per_epoch.value * est.settings.batch_size / rec.facts.n_images) if est.seconds_per_epoch else 0.0
    if budget.seconds - clock() < 3 * step_s + MIN_SECONDS / 2:
        raise BudgetError(f"The budget ({budget.given_as}) leaves {max(0.0, budget.seconds - clock()):.1f} s after advising, too "
                          f"little for one step of {name} ({step_s:.2f} s) and the final evaluation; give a larger budget.")
    if run_dir.exists() and force:
        for p in run_dir.iterdir():
            if p.is_file():
                p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    _save_json(run_dir / RUN_FILE, plan)
    log(f"training {name} ({plan['variant']}) on {len(train_items)} images, holding out {len(val_items)}, "
        f"within {budget.given_as}; run folder {run_dir}")
    return _run(run_dir, plan, hw, clock, None, state, progress, log)


def resume(run_dir: str | os.PathLike, *, device: str | None = None, progress: bool = True, log: planning.Log = planning.quiet,
           state: MachineState | None = None, started: float | None = None) -> TrainResult:
    """Go on with an unfinished run from its last checkpoint, with what is left of its budget (the time since
    the last checkpoint, up to the last heartbeat, counts as spent)."""
    run_dir = Path(run_dir).expanduser()
    try:
        plan = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        raise AdvisorError(f"'{printable(str(run_dir))}' holds no advisor run to resume (no readable {RUN_FILE}).") from None
    if plan.get("status") == "finished" or "train" not in plan:
        raise AdvisorError(f"The run in '{printable(str(run_dir))}' has finished; start a new one in a new folder.")
    hw = hardware.detect(device)
    spent = 0.0
    for path in (run_dir / HEARTBEAT_FILE,):
        try:
            spent = max(spent, float(json.loads(path.read_text())["spent"]))
        except (OSError, ValueError, KeyError):
            pass
    checkpoint = None
    if (run_dir / CHECKPOINT_FILE).is_file():
        checkpoint = torch.load(run_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        spent = max(spent, checkpoint["position"]["spent"])
    left = plan["budget_seconds"] - spent
    if left < MIN_SECONDS / 2:
        raise BudgetError(f"The run in '{printable(str(run_dir))}' has spent {spent:.0f} s of its {plan['budget_seconds']:.0f} s; "
                          "nothing is left to resume with.")
    log(f"resuming {plan['strategy']} in {run_dir}: {spent:.0f} s of {plan['budget_seconds']:.0f} s spent, "
        + ("from the last checkpoint" if checkpoint else "no checkpoint yet: training starts again"))
    return _run(run_dir, plan, hw, _Clock(spent, started), checkpoint, state or MachineState(), progress, log)


def _run(run_dir: Path, plan: dict, hw, clock: _Clock, checkpoint: dict | None, state: MachineState, progress: bool,
         log: planning.Log) -> TrainResult:
    s, backbone = plan["settings"], plan["backbone"]
    n_classes = len(plan["classes"])
    log(f"decoding {plan['train_images']} training and {plan['val_images']} held-out images at {s['resolution']}px …")
    data = images.load(_items(plan["train"]), s["resolution"]), images.load(_items(plan["val"]), s["resolution"])
    (x_train, y_train), (x_val, y_val) = data
    model, strat = _network(plan, n_classes, pretrained=checkpoint is None)
    model = model.to(hw.device).to(memory_format=hardware.memory_format(hw))
    gen = torch.Generator(device="cpu").manual_seed(0)
    perm = torch.randperm(len(x_train), generator=gen)
    where = _Position(batch_size=min(s["batch_size"], len(x_train)), train_from=clock())
    optimizer = torch.optim.AdamW(st.param_groups(model, strat)) if strat.trains_backbone else None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        if optimizer is not None and checkpoint["optimizer"] is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
        where = _Position(**{**checkpoint["position"], "curve": [tuple(c) for c in checkpoint["position"]["curve"]]})
        where.sessions += 1
        gen.set_state(checkpoint["generator"])
        perm = checkpoint["perm"]
    budget = plan["budget_seconds"]
    stop, diverged, used = _Stop(), False, len(x_train)
    with stop.installed(), tqdm(total=round(budget, 1), initial=round(min(clock(), budget), 1), desc=f"train {plan['strategy']}",
                                unit="s", disable=not progress, mininterval=1.0, bar_format="{desc}: {bar}| {n:.0f}/{total:.0f} s of the "
                                "budget [{elapsed}<{remaining}{postfix}]") as bar:
        if strat.trains_backbone:
            where, diverged = _train_loop(model, strat, plan, data, hw, clock, where, run_dir, optimizer, gen, perm, stop, bar)
        else:
            until = budget - SAFETY * (_eval_seconds(model, x_val, hw, backbone) + 1.0)
            used = _linear_head(model, x_train, y_train, n_classes, hw, backbone, clock, until)
            where.step, where.seen = 1, used
        bar.update(min(clock(), budget) - bar.n)
    if stop.requested:
        plan["status"] = "interrupted"
        _save_json(run_dir / RUN_FILE, plan)
        raise AdvisorError(f"Interrupted after {clock():.0f} s of {budget:.0f} s; the run is saved — continue it with "
                           f"`advisor train --resume {printable(str(run_dir))}`.")
    accuracy = engine._accuracy(model, x_val, y_val, hw, backbone)
    where.curve.append((round(clock(), 2), round(accuracy, 4)))
    torch_payload = _payload(model, plan)
    save_torch(torch_payload, run_dir / MODEL_FILE)
    return _finish(run_dir, plan, hw, clock, where, accuracy, used, diverged, state, len(x_train), len(x_val), log)


def _finish(run_dir: Path, plan: dict, hw, clock: _Clock, where: _Position, accuracy: float, used: int, diverged: bool,
            state: MachineState, n_train: int, n_val: int, log: planning.Log) -> TrainResult:
    """Teach advisor, write run.json and the curve, remove the checkpoint: the run is finished."""
    budget, name = plan["budget_seconds"], plan["strategy"]
    trained_s = max(clock() - where.train_from, 1e-9)
    k_reached = plan["k_budget"] * min(1.0, trained_s / budget) if plan.get("k_budget") else None
    low, high = accuracy_interval(accuracy, n_val)
    measured = Quantity(value=round(accuracy, 4), source="measured", low=round(low, 4), high=round(high, 4),
                        detail=f"on the {n_val} held-out images after training; 80 % interval from their count")
    run = {"val_accuracy": round(accuracy, 4), "epochs": round(where.seen / n_train, 3), "seconds": round(trained_s, 2),
           "images_per_second": round(where.seen / trained_s, 1), "variant": plan["variant"]}
    taught = None if diverged else _teach(state, plan, accuracy, k_reached, hw, run)
    predicted = Quantity.model_validate(plan["predicted"]) if plan.get("predicted") else None
    forecast = Quantity.model_validate(plan["forecast"]) if plan.get("forecast") else None
    notes = []
    if diverged:
        notes.append("the training loss became NaN or infinite: the run stopped there and the model is the one it had")
    if name == "feature_extraction" and used < n_train:
        notes.append(f"feature extraction embedded {used} of {n_train} training images before the time limit")
    if forecast is not None:
        notes.append(f"the probe forecast {forecast.value:.1%} (for its budget of {forecast.detail.rsplit('for a budget of ', 1)[-1]})"
                     + (f" ({forecast.low:.1%}–{forecast.high:.1%})" if forecast.low is not None else "")
                     + f"; reached {accuracy:.1%}")
    if predicted is not None:
        notes.append(f"advised: {predicted.value:.1%}"
                     + (f" ({predicted.low:.1%}–{predicted.high:.1%})" if predicted.low is not None else "")
                     + f"; reached {accuracy:.1%}")
    result = TrainResult(
        strategy=name, recommended=plan["recommended"], variant=plan["variant"], run_dir=str(run_dir),
        model_path=str(run_dir / MODEL_FILE), settings=Settings.model_validate(plan["settings"]), classes=plan["classes"],
        train_images=n_train, val_images=n_val, val_accuracy=measured, predicted=predicted, forecast=forecast, steps=where.step,
        epochs=round(where.seen / n_train, 2), batch_size=where.batch_size,
        images_per_second=round(where.seen / trained_s, 1), seconds=round(clock(), 1), budget_seconds=budget,
        curve=where.curve, sessions=where.sessions, diverged=diverged, calibration=taught, notes=notes)
    _write_curve(run_dir / CURVE_FILE, where.curve, budget, f"{name} on {Path(plan['data']).name}: {accuracy:.1%}")
    result = result.model_copy(update={"seconds": round(clock(), 1)})
    _save_json(run_dir / RUN_FILE, {**plan, "status": "finished", "result": result.model_dump(mode="json")})
    for leftover in (CHECKPOINT_FILE, HEARTBEAT_FILE):
        (run_dir / leftover).unlink(missing_ok=True)
    log(f"finished in {clock():.1f} s of {budget:.0f} s: {accuracy:.1%} on {n_val} held-out images")
    return result


# --- predict ------------------------------------------------------------------------------------------------

def load_model(run_dir: str | os.PathLike, device: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The trained network of a finished run and its description (classes, resolution, preprocessing)."""
    path = Path(run_dir).expanduser() / MODEL_FILE
    if not path.is_file():
        raise AdvisorError(f"No trained model in '{printable(str(path.parent))}' (no {MODEL_FILE}); train one with `advisor train`.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file
        raise AdvisorError(f"'{printable(str(path))}' is not an advisor model ({type(exc).__name__}).") from None
    n = len(payload["classes"])
    if payload["arch"]:
        model = architectures.build(payload["arch"], n)
    else:
        model = bb.create(payload["backbone"], pretrained=False)
        model.reset_classifier(n)
    model.load_state_dict(payload["state_dict"])
    return model.to(hardware.detect(device).device).eval(), payload


def _files(folder: Path, classes: list[str]) -> list[tuple[str, str | None]]:
    """(image path, its true class when it lies in a folder named after one of ``classes``), sorted."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [(str(p), p.parent.name if p.parent != folder and p.parent.name in classes else None) for p in found]


def _held_out(run_dir: Path, classes: list[str]) -> list[tuple[str, str | None]]:
    """The run's own held-out images with their classes, from its run.json."""
    try:
        plan = json.loads((run_dir / RUN_FILE).read_text())
        return [(p, classes[label]) for p, label in plan["val"]]
    except (OSError, ValueError, KeyError):
        raise AdvisorError(f"'{printable(str(run_dir))}' has no readable {RUN_FILE} listing its held-out images.") from None


def predict(run_dir: str | os.PathLike, data: str | os.PathLike | None = None, device: str | None = None,
            progress: bool = False) -> list[Prediction]:
    """Top-1 class and its probability for every image under ``data`` (any layout; an image in a folder named
    after a class also gets that class as its truth); without ``data``, the run's own held-out images."""
    model, payload = load_model(run_dir, device)
    hw = hardware.detect(device)
    if data is None:
        files = _held_out(Path(run_dir).expanduser(), payload["classes"])
    else:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise DataError(f"'{printable(str(folder))}' is not a folder of images.")
        files = _files(folder, payload["classes"])
    if not files:
        raise DataError(f"No images found under '{printable(str(data))}'.")
    out: list[Prediction] = []
    for i in tqdm(range(0, len(files), 256), desc="predict", disable=not progress):
        chunk = files[i : i + 256]
        x, _ = images.load([ImageItem(p, 0, "eval", (0, 0), "") for p, _ in chunk], payload["resolution"])
        if len(x) < len(chunk):
            raise DataError("Some images could not be decoded; remove them and try again.")
        probs = torch.softmax(engine.predict(model, x, hw, payload["backbone"]).float(), 1)
        top, label = probs.max(1)
        out += [Prediction(path=p, label=payload["classes"][int(j)], probability=round(float(q), 4), truth=t)
                for (p, t), j, q in zip(chunk, label, top)]
    return out


def predictions_csv(rows: list[Prediction]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "probability", "truth"])
    for r in rows:
        writer.writerow([r.path, r.label, f"{r.probability:.4f}", r.truth or ""])
    return buf.getvalue()
