"""The advice as a picture: predicted accuracy of every strategy against the budget, in one self-contained file.

``write(path, rec, curve, ...)`` renders with matplotlib (no server, no network) to ``.png``, or to ``.html``
with the figure embedded (base64) beside a table of the numbers and where each came from.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .errors import AdvisorError
from .registry import STRATEGY_NAMES, TITLES
from .report import duration
from .schemas import ProbeResult, Recommendation

COLOURS = {"feature_extraction": "#1b9e77", "fine_tune": "#d95f02", "retrain": "#7570b3", "scratch": "#e7298a"}


def _hours(seconds: float) -> float:
    return seconds / 3600


def figure(rec: Recommendation, curve: list[Recommendation], thumbnails=None, probe: ProbeResult | None = None):
    """A matplotlib figure: accuracy vs budget (log axis) with 80 % bands, the user's budget, infeasible
    stretches greyed, the model's fitted region shaded, off-domain stretches dashed, the chosen strategy
    bold, probe results as points; below, images per class and sample thumbnails when the data were seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_data = rec.profile is not None
    fig = plt.figure(figsize=(11, 7.5 if has_data else 5.5), dpi=110)
    grid = fig.add_gridspec(2 if has_data else 1, 2, height_ratios=[3, 1.3] if has_data else [1], width_ratios=[1, 1.6])
    ax = fig.add_subplot(grid[0, :])
    x = [_hours(r.budget.seconds) for r in curve]
    _strategy_lines(ax, rec, curve, x)
    for i, r in enumerate(curve):  # grey where nothing the rules allow fits
        if not any(e.feasible for e in r.estimates) and i + 1 < len(x):
            ax.axvspan(x[i], x[i + 1], color="#d0d0d0", alpha=0.5, lw=0)
    budget = _hours(rec.budget.seconds)
    ax.axvline(budget, color="black", lw=1.2, ls=":")
    ax.annotate(f"your budget: {rec.budget.given_as}", (budget, 0.97), xycoords=("data", "axes fraction"),
                rotation=90, va="top", ha="right", fontsize=9, backgroundcolor="white")
    if probe is not None:
        for run in probe.runs:
            ax.scatter([run.seconds / 3600], [run.val_accuracy], color=COLOURS[run.strategy], edgecolor="black", zorder=5, s=40)
        ax.scatter([], [], color="white", edgecolor="black", label="probe runs (measured)")
    ax.plot([], [], color="#555", ls="--", label="model outside its fitted region (a guess)")
    ax.fill_between([], [], [], color="#e8f4e8", label="model's fitted region")
    ax.set_xscale("log")
    ax.set_xlabel(f"budget, hours of {rec.hardware.name}" + (" (GPU-hours)" if rec.hardware.device == "cuda" else ""))
    ax.set_ylabel("predicted validation accuracy (80 % interval)")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    src = rec.throughput.origin if rec.throughput else "throughput not measured"
    ax.set_title(f"{TITLES[rec.strategy]} advised ({rec.confidence.value:.0%} [{rec.confidence.source}]); "
                 f"{rec.facts.n_images} images, {rec.facts.n_classes} classes, similarity {rec.facts.similarity:.2f}\n"
                 f"speeds {src}", fontsize=10)
    if has_data:
        _data_panels(fig, grid, rec, thumbnails)
    fig.tight_layout()
    return fig

def _strategy_lines(ax, rec: Recommendation, curve: list[Recommendation], x: list[float]) -> None:
    """Each strategy's predicted accuracy along the budgets ``x`` with its band: grey where infeasible, dashed
    outside the model's fitted region (shaded where every number is inside it), the chosen strategy bold."""
    inside = [all(e.accuracy is None or e.accuracy.domain in (None, "inside") for e in r.estimates) for r in curve]
    for i in range(len(x) - 1):  # the fitted region: where every model number is inside it
        if inside[i] and inside[i + 1]:
            ax.axvspan(x[i], x[i + 1], color="#e8f4e8", lw=0, zorder=0)
    for s in STRATEGY_NAMES:
        est = [r.estimate(s) for r in curve]
        if all(e.accuracy is None for e in est):
            continue
        chosen = s == rec.strategy
        width = 3.2 if chosen else 1.6
        for i in range(len(x) - 1):
            a, b = est[i], est[i + 1]
            if a.accuracy is None or b.accuracy is None:
                continue
            off = "outside" in (a.accuracy.domain, b.accuracy.domain)
            feasible = a.feasible and b.feasible
            ax.plot(x[i:i + 2], [a.accuracy.value, b.accuracy.value], color=COLOURS[s] if feasible else "#9a9a9a",
                    lw=width, ls="--" if off else "-", alpha=1 if feasible else 0.6, zorder=3 if chosen else 2)
            if a.accuracy.low is not None and b.accuracy.low is not None:
                ax.fill_between(x[i:i + 2], [a.accuracy.low, b.accuracy.low], [a.accuracy.high, b.accuracy.high],
                                color=COLOURS[s] if feasible else "#bdbdbd", alpha=0.13 if feasible else 0.1, lw=0)
        ax.plot([], [], color=COLOURS[s], lw=width, label=TITLES[s] + (" (advised)" if chosen else ""))


def _data_panels(fig, grid, rec: Recommendation, thumbnails) -> None:
    """Below the curves: images per class (the 30 largest classes) and a strip of sample thumbnails."""
    bars = fig.add_subplot(grid[1, 0])
    counts = sorted(rec.profile.classes, key=lambda c: -c.train)[:30]
    bars.bar(range(len(counts)), [c.train for c in counts], color="#4c72b0")
    bars.set_xticks(range(len(counts)), [c.name[:10] for c in counts], rotation=60, fontsize=7)
    bars.set_ylabel("images per class", fontsize=8)
    strip = fig.add_subplot(grid[1, 1])
    strip.axis("off")
    if thumbnails is not None and len(thumbnails):
        strip.imshow(thumbnails)
        strip.set_title("sample images", fontsize=8)


def thumbnails(data, per_class: int = 1, classes: int = 10, size: int = 64):
    """A strip of sample images (one per class for the first ``classes``) as an (size, n·size, 3) array."""
    import numpy as np

    from .data import images
    from .data.scan import scan

    scanned = scan(data)
    picked = []
    for label in range(min(classes, len(scanned.classes))):
        picked += [it for it in scanned.items if it.label == label][:per_class]
    x, _ = images.load(picked, size)
    if len(x) == 0:
        return None
    return np.concatenate(list(x.permute(0, 2, 3, 1).numpy()), axis=1)


def write(path: str | Path, rec: Recommendation, curve: list[Recommendation], strip=None,
          probe: ProbeResult | None = None) -> Path:
    """Write the report as ``.png`` or ``.html`` (chosen by the suffix), atomically."""
    from .store import atomic_replace

    path = Path(path).expanduser()
    if path.suffix.lower() not in (".png", ".html", ".htm"):
        raise AdvisorError(f"--report must end in .html or .png; got '{path.name}'.")
    import matplotlib.pyplot as plt

    fig = figure(rec, curve, strip, probe)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    png = buf.getvalue()
    if path.suffix.lower() == ".png":
        return atomic_replace(path, lambda tmp: tmp.write_bytes(png))
    return atomic_replace(path, lambda tmp: tmp.write_text(_html(rec, png), encoding="utf-8"))


def _html(rec: Recommendation, png: bytes) -> str:
    e = html.escape
    rows = []
    for est in rec.estimates:
        acc = est.accuracy
        acc_s = "—" if acc is None else (f"{acc.value:.1%}" + (f" ({acc.low:.0%}–{acc.high:.0%})" if acc.low is not None else "")
                                          + f" [{acc.source}{', ' + acc.domain if acc.domain else ''}]")
        epochs = est.settings.epochs
        t = est.expected_seconds
        rows.append(f"<tr{' class=chosen' if est.strategy == rec.strategy else ''}><td>{e(TITLES[est.strategy])}</td>"
                    f"<td>{'yes' if est.feasible else 'no'}</td><td>{e(acc_s)}</td>"
                    f"<td>{epochs.value:g} [{e(epochs.source)}]</td><td>{'—' if t is None else f'{duration(t.value)} [{e(t.source)}]'}</td></tr>")
    notes = "".join(f"<li>{e(w)}</li>" for w in rec.warnings)
    reasons = "".join(f"<li>{e(r)}</li>" for r in rec.reasons)
    img = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>advisor: {e(TITLES[rec.strategy])}</title>
<style>body{{font:14px system-ui,sans-serif;max-width:1250px;margin:20px auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}tr.chosen{{font-weight:bold;background:#fff4e5}}
img{{max-width:100%}}</style></head><body>
<h1>{e(TITLES[rec.strategy])} <small>({rec.confidence.value:.0%} [{e(rec.confidence.source)}]{', a tie' if rec.tie else ''})</small></h1>
<p>{e(rec.budget.given_as)} on {e(rec.hardware.name)} · decided by {e(rec.decided_by)}</p>
<img alt="predicted accuracy of each strategy against the budget" src="data:image/png;base64,{img}">
<h2>Every strategy at your budget</h2>
<table><tr><th>strategy</th><th>feasible</th><th>accuracy (80 % interval) [source]</th><th>planned epochs</th><th>planned time</th></tr>
{''.join(rows)}</table>
<h2>Why</h2><ul>{reasons}</ul>
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
<p><small>Speeds: {e(rec.throughput.origin + '; ' + rec.throughput.detail) if rec.throughput else 'not measured'}</small></p>
</body></html>
"""
