"""Render results for people: plain text, one function per result type."""

from __future__ import annotations

from .registry import TITLES
from .schemas import DataProfile, ProbeResult, Quantity, Recommendation, Similarity, TrainResult


def _q(q: Quantity | None, fmt: str = "{:.3g}") -> str:
    return "—" if q is None else f"{fmt.format(q.value)}{(' ' + q.unit) if q.unit else ''} [{q.source}]"


def _count(value: float) -> str:
    """A count of epochs, short enough for a column: 12.3, 4821, 20.6k, 1.2M."""
    if value < 1000:
        return f"{value:.3g}" if value < 100 else f"{value:.0f}"
    return f"{value / 1e3:.3g}k" if value < 1e6 else f"{value / 1e6:.3g}M"


def duration(seconds: float) -> str:
    if seconds < 1:
        return "< 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def profile_text(p: DataProfile) -> str:
    lines = [
        f"Data: {p.root} ({p.layout} layout)",
        f"  {p.n_images} training images" + (f", {p.n_eval_images} for evaluation" if p.n_eval_images else "")
        + f", {p.n_classes} classes",
        f"  per class: min {p.images_per_class_min}, median {p.images_per_class_median:g}, max {p.images_per_class_max}"
        f"  (imbalance {p.imbalance:g}×)",
        f"  image size: median {p.width_median}×{p.height_median}, smallest {p.size_min[0]}×{p.size_min[1]}, "
        f"largest {p.size_max[0]}×{p.size_max[1]}",
        f"  modes: {', '.join(f'{m} {n}' for m, n in p.modes.items())}  → {'greyscale' if p.channels == 1 else 'colour'}",
        f"  scanned in {p.scan_seconds:.2f} s (headers only)",
    ]
    if p.unreadable:
        lines.append(f"  {len(p.unreadable)} unreadable file(s) skipped, e.g. {p.unreadable[0]}")
    if p.ignored:
        lines.append(f"  {p.ignored} non-image file(s) ignored")
    smallest = sorted(p.classes, key=lambda c: c.train)[:3]
    lines.append("  smallest classes: " + ", ".join(f"{c.name} ({c.train})" for c in smallest))
    return "\n".join(lines)


def similarity_text(s: Similarity) -> str:
    def opt(v: float | None) -> str:
        return "n/a (too few images per class)" if v is None else f"{v:.3f}"

    return "\n".join([
        f"Domain similarity to ImageNet: {s.score:.2f} (0 = unlike, 1 = ImageNet-like) [measured]",
        f"  from {s.sample_size} sampled images at {s.resolution}px with {s.backbone}, {s.seconds:.1f} s",
        f"  ImageNet head confidence {s.imagenet_confidence:.3f}, entropy {s.imagenet_entropy:.3f}, "
        f"feature-statistics shift {s.feature_shift:.2f}",
        f"  frozen features: 5-NN accuracy {opt(s.knn_accuracy)}, linear {opt(s.linear_accuracy)}, separability {opt(s.separability)}",
    ])


def recommendation_text(r: Recommendation) -> str:
    best = r.estimate(r.strategy)
    s = best.settings
    lines = [
        f"Recommendation: {TITLES[r.strategy].upper()}  (confidence {r.confidence.value:.0%} [{r.confidence.source}]"
        + (f"; a tie with {TITLES[r.runner_up]}, the cheaper chosen)" if r.tie else
           f"; runner-up {TITLES[r.runner_up]})" if r.runner_up else ")"),
        f"  decided by: {r.decided_by}",
        "Why:",
        *[f"  - {reason}" for reason in r.reasons],
        "",
        f"Settings for {TITLES[r.strategy]}:",
        f"  {'backbone' if s.pretrained else 'network'} {s.backbone} ({'ImageNet weights' if s.pretrained else 'random init'}), "
        f"{s.resolution}px, batch {s.batch_size}" + (f"  — {s.architecture_reason}" if s.architecture_reason else ""),
        f"  frozen: {', '.join(s.frozen) if s.frozen else 'nothing'}  (trains {s.trainable_fraction:.0%} of the weights"
        + (f"; the last {s.fine_tune_depth} stages and the head)" if s.fine_tune_depth else ")"),
        f"  learning rate {_q(s.learning_rate)}" + (f", head {_q(s.head_learning_rate)}" if s.head_learning_rate else "")
        + f", weight decay {s.weight_decay:g}, label smoothing {s.label_smoothing:g}",
        f"  epochs {_q(s.epochs, '{:.1f}')}",
        f"  augmentation: {', '.join(s.augmentation) if s.augmentation else 'none (features are computed once)'}",
        "",
        f"Every strategy within {r.budget.given_as} on {r.hardware.name}:",
        f"  {'strategy':<20}{'feasible':<10}{'score':<12}{'epochs fit':<26}{'planned time':<20}accuracy",
    ]
    for e in r.estimates:
        q = e.epochs_in_budget
        epochs = "—" if q is None else f"{_count(q.value)} epochs [{q.source}]"
        if e.strategy == "feature_extraction" and q:  # features are computed once: one pass is all it needs
            epochs = f"1 pass ({_count(q.value)} fit)"
        t = f"{duration(e.expected_seconds.value)} [{e.expected_seconds.source}]" if e.expected_seconds else "—"
        acc = "—" if e.accuracy is None else f"{e.accuracy.value:.1%}" + (
            f" ({e.accuracy.low:.0%}–{e.accuracy.high:.0%})" if e.accuracy.low is not None else "") + f" [{e.accuracy.source}]"
        mark = "→ " if e.strategy == r.strategy else "  "
        lines.append(f"{mark}{TITLES[e.strategy]:<20}{'yes' if e.feasible else 'no':<10}{e.score.value:<12g}{epochs:<26}{t:<20}{acc}")
    fe = r.estimate("feature_extraction").accuracy
    if fe is not None and fe.source == "measured":
        lines.append(f"  accuracy [measured]: {fe.detail}. Others need a probe: advisor probe")
    elif fe is not None:
        lines.append(f"  accuracy [model]: {fe.detail}")
    if r.pixel_baseline is not None:
        px = r.pixel_baseline
        lines.append(f"  pixel baseline [measured]: {px.value:.1%} ({px.low:.0%}–{px.high:.0%}), {px.detail}; "
                     "the gain model reads it")
    if r.throughput:
        lines.append(f"  throughput [{r.throughput.source}], {r.throughput.origin}: "
                     + ", ".join(f"{TITLES[k]} {v:.0f} img/s" for k, v in r.throughput.images_per_second.items())
                     + f" ({r.throughput.detail})")
    lines.append("Fired rules: " + ", ".join(f.id for f in r.fired_rules))
    if r.similarity:
        lines[0:0] = [similarity_text(r.similarity), ""]
    if r.profile:
        lines[0:0] = [profile_text(r.profile), ""]
    lines += [f"Note: {w}" for w in r.warnings]
    return "\n".join(lines)


def probe_text(p: ProbeResult) -> str:
    lines = [
        recommendation_text(p.recommendation),
        "",
        f"Probe: {p.train_images} training / {p.val_images} validation images at {p.resolution}px"
        + "".join(f" ({r.strategy} at {r.resolution}px)" for r in p.runs if r.resolution not in (None, p.resolution)) + ", "
        f"{p.seconds_per_strategy:g} s per strategy on {p.recommendation.hardware.name} [measured]",
        f"  {'strategy':<20}{'val acc':<10}{'steps':<8}{'epochs':<8}{'seconds':<10}{'ms/step':<10}img/s",
    ]
    fe = p.recommendation.estimate("feature_extraction").accuracy
    for run in sorted(p.runs, key=lambda r: p.ranking.index(r.strategy)):
        fc = run.forecast
        at_budget = (f"  → {fc.value:.1%} ({fc.low:.0%}–{fc.high:.0%}) at your budget [forecast, from {run.share:.1%} of the full run]"
                     if fc is not None and fc.low is not None else
                     f"  → {fe.value:.1%} on all the data [measured before the probe]"
                     if run.strategy == "feature_extraction" and fe is not None and fe.source == "measured" else "")
        lines.append(f"  {TITLES[run.strategy]:<20}{run.val_accuracy:<10.1%}{run.steps:<8}{run.epochs:<8.2f}{run.seconds:<10.1f}{1000 * run.seconds / max(run.steps, 1):<10.0f}{run.images_per_second:.0f}"
                     + at_budget + (f"  ({run.note})" if run.note else ""))
    lines.append(p.verdict)
    if p.cost:
        lines.append(f"Probe cost: {p.cost.value:.0f} s [measured], {p.cost.detail}.")
    if p.throughput_record:
        lines.append(f"Throughput: {p.throughput_record}.")
    if p.calibrated:
        before, after = p.recommendation, p.calibrated
        weights = p.calibration_weights or {}
        errs = ", ".join(f"{TITLES[s]} {v:+.2f} (weight {weights.get(s, 0):.2f})" for s, v in p.model_errors.items())
        forecasts = any(r.forecast is not None for r in p.runs)
        lines += ["", "Calibration: the model's error (normalised accuracy; "
                      + ("forecast − model at your budget, feature extraction at the probe's conditions" if forecasts
                         else "at the probe's conditions") + f"): {errs}; "
                      "weights = how far the evidence reaches toward the budget × validation size.",
                  f"  before: {TITLES[before.strategy]} ({before.confidence.value:.0%})   "
                  f"after: {TITLES[after.strategy]} ({after.confidence.value:.0%})"]
        for e_before, e_after in zip(before.estimates, after.estimates):
            if e_before.accuracy and e_after.accuracy:
                lines.append(f"  {TITLES[e_before.strategy]:<20}{e_before.accuracy.value:.1%} → {e_after.accuracy.value:.1%}")
    if p.stored_at:
        lines.append(f"Saved for calibration: {p.stored_at}")
    return "\n".join(lines)


def train_text(t: TrainResult) -> str:
    s = t.settings
    advised = "" if t.strategy == t.recommended else f" (advised: {TITLES[t.recommended]})"
    q = t.val_accuracy
    lines = [
        f"Trained {TITLES[t.strategy]}{advised} [{t.variant}]: {q.value:.1%} on {t.val_images} held-out images "
        f"(80 % interval {q.low:.1%}–{q.high:.1%}) [measured]",
        (f"  {t.train_images} training images at {s.resolution}px, {t.steps} steps of batch {t.batch_size}, {t.epochs:g} epochs, "
         f"{t.images_per_second:.0f} img/s [measured]" if t.strategy != "feature_extraction" else
         f"  {round(t.epochs * t.train_images)} of {t.train_images} training images embedded at {s.resolution}px in one pass, "
         f"then a logistic regression [measured]"),
        f"  time: {duration(t.seconds)} of the {duration(t.budget_seconds)} budget [measured]"
        + (f", over {t.sessions} sessions (resumed)" if t.sessions > 1 else ""),
    ]
    lines += [f"  {note}" for note in t.notes]
    if t.calibration:
        lines.append(f"  {t.calibration}")
    lines.append(f"Model: {t.model_path}  (use: advisor predict --model {t.run_dir} --data FOLDER)")
    return "\n".join(lines)


def hardware_text(p, saved_to: str | None = None) -> str:
    """A hardware profile as a table: images/s of each configuration (rows) at each resolution (columns)."""
    res = sorted({m.resolution for m in p.measurements})
    batches = sorted({m.batch_size for m in p.measurements})
    lines = [f"Hardware profile [{p.source}]: {p.device.name} ({p.device.precision}), {p.time}"
             + (f", advisor {p.advisor_version}, torch {p.torch_version}" if p.advisor_version else "")]
    if p.assumption:
        lines.append(f"  estimate: {p.assumption}")
    lines.append(f"  training images/s   {'configuration':<22}{'batch':>6}" + "".join(f"{r:>9}px" for r in res))
    for batch in batches:
        for variant in dict.fromkeys(m.variant for m in p.measurements if m.batch_size == batch):
            row = {m.resolution: m for m in p.measurements if m.variant == variant and m.batch_size == batch}
            cells = "".join(f"{(f'{row[r].images_per_second:.0f}' if row[r].images_per_second else 'OOM') if r in row else '–':>11}" for r in res)
            lines.append(f"  {'':<18}{variant:<22}{batch:>6}{cells}")
    for c in p.conditions:
        if not (c.quiet and c.stable and c.plausible):
            lines.append(f"  caution: timed with other processes using {c.other_load or 0:.0%} of the CPUs, rounds within {c.spread:.0%}")
    if saved_to:
        lines.append(f"Saved to {saved_to}: plan with it anywhere via `advisor recommend … --hardware {saved_to}`.")
    return "\n".join(lines)
