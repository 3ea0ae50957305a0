"""The `advisor` command: parses, calls the API, renders. User mistakes become one clear line."""

from __future__ import annotations

import functools
import warnings

import click

from .measure import calibration

from .data import datasets

from . import report
from .registry import BACKBONES, DEFAULT_BACKBONE, STRATEGY_NAMES
from .errors import AdvisorError, printable
from .state import MachineState
from .schemas import ProbeOptions


def _user_errors(func):
    """Turn AdvisorError into click's one-line error (exit 1) and warnings into 'warning:' lines."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():  # restored when the command returns
            warnings.showwarning = lambda message, *a, **k: click.echo(printable(f"warning: {message}"), err=True)
            try:
                return func(*args, **kwargs)
            except AdvisorError as exc:
                raise click.ClickException(printable(str(exc))) from None

    return wrapper


def _budget_options(func):
    for option in reversed([
        click.option("--gpu-hours", help="Budget in GPU-hours (hours of this machine's CPU when it has no GPU)."),
        click.option("--hours", help="Budget in hours of the device advisor plans for."),
        click.option("--minutes", help="Budget in minutes of the device advisor plans for."),
    ]):
        func = option(func)
    return func


def _common_options(func):
    for option in reversed([
        click.option("--data", required=True, type=click.Path(file_okay=True, dir_okay=True),
                     help="Folder with one sub-folder per class (or train/ and val/ splits of those)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Plan for this device (default: CUDA if present)."),
        click.option("--backbone", type=click.Choice(list(BACKBONES)), default=DEFAULT_BACKBONE, show_default=True),
        click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Your own weights file for the backbone."),
        click.option("--rules", type=click.Path(dir_okay=False), default=None, help="A rules file instead of rules/default.toml."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        click.option("--no-model", is_flag=True, help="Decide by the rules alone, without the learned model."),
    ]):
        func = option(func)
    return func


def _target_options(func):
    for option in reversed([
        click.option("--hardware", "hardware_file", type=click.Path(dir_okay=False), default=None,
                     help="Plan for the device of this profile (saved by `advisor hardware --save`); nothing is timed here."),
        click.option("--device-name", default=None, help="Plan for this accelerator with an estimated profile (e.g. a100, h100, l4, t4)."),
        click.option("--retime", is_flag=True, help="Time this device afresh instead of reusing its record."),
    ]):
        func = option(func)
    return func


def _log(as_json: bool):
    from .advice import planning  # torch loads only when a command needs it: --help and errors stay fast

    return planning.quiet if as_json else planning.stderr_log


@click.group()
@click.version_option(package_name="advisor")
def main() -> None:
    """Advice on training an image classifier: scratch, fine-tune, feature extraction or retrain."""


@main.command()
@_common_options
@_budget_options
@_target_options
@click.option("--probe", "with_probe", is_flag=True, help="Also probe (5 % of the budget) and show the advice before and after calibration.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the advice as a picture: REPORT.html (self-contained) or REPORT.png.")
@click.option("--fe-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Feature extraction's accuracy (0–1) if you measured it yourself; advisor then does not measure it.")
@_user_errors
def recommend(data, device, backbone, weights, rules, as_json, no_model, gpu_hours, hours, minutes, hardware_file, device_name,
              retime, with_probe, report_path, fe_accuracy):
    """Recommend a strategy for the images in --data and the budget."""
    if with_probe:
        ignored = [name for name, given in (("--device-name", device_name), ("--hardware", hardware_file),
                                            ("--retime", retime), ("--fe-accuracy", fe_accuracy is not None)) if given]
        if ignored:  # the probe trains here and plans for here: never drop an option silently
            raise AdvisorError(f"--probe trains on this machine and plans for it, so it cannot use {', '.join(ignored)}; "
                               "run `advisor recommend` with it and `advisor probe` separately.")
    if report_path and not str(report_path).lower().endswith((".html", ".htm", ".png")):
        raise AdvisorError(f"--report must end in .html or .png; got '{report_path}'.")
    from . import api
    from .advice import planning
    from .advice.decide import decide

    state, log = MachineState(), _log(as_json)
    options = ProbeOptions.of(progress=not as_json) if with_probe else None  # checked before any work
    plan = api.plan(data, gpu_hours=gpu_hours, hours=hours, minutes=minutes, device=device, backbone=backbone,
                    weights=weights, rules=rules, use_model=not no_model, progress=not (with_probe and as_json), log=log, state=state,
                    hardware=hardware_file, device_name=device_name, retime=retime, fe_accuracy=fe_accuracy)
    if with_probe:
        from .probing import probe as run_probe

        result = run_probe(plan, options, state, log)
        click.echo(result.model_dump_json(indent=2) if as_json else report.probe_text(result))
        if report_path:  # the curve after the probe: the plan with the model as the probe corrected it
            _write_report(report_path, result.calibrated or result.recommendation, planning.refreshed(plan, state, not no_model),
                          data, as_json, result)
        return
    rec = decide(plan)
    click.echo(rec.model_dump_json(indent=2) if as_json else report.recommendation_text(rec))
    if report_path:
        _write_report(report_path, rec, plan, data, as_json)


def _write_report(path, rec, plan, data, as_json, probe_result=None) -> None:
    from . import api, chart

    log = _log(as_json)
    log("drawing the report (the same decision at 33 budgets) …")
    written = chart.write(path, rec, api.budget_curve(plan), chart.thumbnails(data), probe_result)
    log(f"report written to {written}")


@main.command()
@_common_options
@_budget_options
@click.option("--fraction", type=float, default=0.05, show_default=True, help="Share of the budget the probe may spend.")
@click.option("--seconds", type=float, default=None, help="Total probe time in seconds (instead of --fraction).")
@click.option("--steps", type=int, default=None,
              help="Train each strategy exactly this many steps, however busy the machine (instead of a time).")
@click.option("--max-train", type=click.IntRange(min=2), default=600, show_default=True, help="Training images in the probe subset.")
@click.option("--resolution", type=click.IntRange(min=16), default=None, help="Probe resolution (default: planned, ≤ 64 px on CPU).")
@_user_errors
def probe(data, device, backbone, weights, rules, as_json, no_model, gpu_hours, hours, minutes, fraction, seconds, steps,
          max_train, resolution):
    """Check the recommendation with short real training runs of every strategy."""
    from . import api

    result = api.probe(data, gpu_hours=gpu_hours, hours=hours, minutes=minutes, fraction=fraction, seconds=seconds,
                       steps=steps, max_train=max_train, resolution=resolution, device=device, backbone=backbone, weights=weights,
                       rules=rules, use_model=not no_model, progress=not as_json, log=_log(as_json), state=MachineState())
    click.echo(result.model_dump_json(indent=2) if as_json else report.probe_text(result))


@main.command()
@click.option("--data", required=True, type=click.Path(), help="Folder with one sub-folder per class.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@_user_errors
def profile(data, as_json):
    """Show what advisor sees in a data folder (reads headers only; writes nothing)."""
    from . import api

    p = api.profile(data)
    click.echo(p.model_dump_json(indent=2) if as_json else report.profile_text(p))


@main.command()
@click.option("--show", "action", flag_value="show", default=True, help="Show what is recorded for this machine (default).")
@click.option("--reset", "action", flag_value="reset", help="Forget this machine's records.")
@click.option("--export", "action", flag_value="export", help="Print this machine's records as JSON lines.")
@click.option("--cells", "as_cells", is_flag=True,
              help="With --export: print this machine's finished `advisor train` runs as meta-dataset cells (JSON lines) to contribute.")
@_user_errors
def calibrate(action, as_cells):
    """Show, reset or export this machine's calibration: measured throughput, probe records and results."""
    import json

    state = MachineState()
    if as_cells and action != "export":
        raise AdvisorError("--cells goes with --export.")
    if action == "reset":
        click.echo(f"removed {calibration.reset(state)} record(s) of this machine from {state.db_path}")
    elif action == "export" and as_cells:
        from .model import cells

        for cell in cells.contributed(calibration.probes(state)):
            click.echo(cell.model_dump_json(by_alias=True))
    elif action == "export":
        for record in calibration.export(state):
            click.echo(json.dumps(record, default=str))
    else:
        click.echo(calibration.show(state))


@main.command("hardware")
@click.option("--save", "save_to", type=click.Path(dir_okay=False), default=None, help="Write the measured profile to this file.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Profile this device (default: CUDA if present).")
@click.option("--resolution", "resolutions", type=click.IntRange(min=16, max=1024), multiple=True,
              help="Resolutions to time (repeatable; default 32 64 128 224).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Batch size (default: the rules' planned batch for the device).")
@click.option("--device-name", default=None, help="Show the estimated profile of this accelerator instead of measuring.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@_user_errors
def hardware_cmd(save_to, device, resolutions, batch, device_name, as_json):
    """Measure this device's training speed for every configuration advisor plans (a hardware profile)."""
    from .advice import planning
    from .measure import profiles

    if device_name:
        prof = profiles.estimate(device_name)
    else:
        book, hw, _, _ = planning.setup(None, device, DEFAULT_BACKBONE, minutes=1)
        from .rules import plan_batch_size

        size = batch or plan_batch_size(hw, 10**6, book)
        prof = profiles.measure(hw, size, resolutions or profiles.PROFILE_RESOLUTIONS, log=_log(as_json))
    if save_to:
        profiles.save(prof, save_to)
    click.echo(prof.model_dump_json(indent=1) if as_json else report.hardware_text(prof, save_to))


@main.command()
@click.option("--data", type=click.Path(file_okay=True, dir_okay=True), default=None,
              help="Folder with one sub-folder per class (or train/ and val/ splits of those).")
@_budget_options
@click.option("--strategy", type=click.Choice(list(STRATEGY_NAMES)), default=None, help="Train this strategy instead of the advised one.")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Run folder for the model, its record and its curve (new or empty; default advisor-runs/DATA-STRATEGY-TIME).")
@click.option("--force", is_flag=True, help="Overwrite the files of an existing run folder.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the unfinished run in this folder with what is left of its budget.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Train on this device (default: CUDA if present).")
@click.option("--backbone", type=click.Choice(list(BACKBONES)), default=DEFAULT_BACKBONE, show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Your own weights file for the backbone.")
@click.option("--rules", type=click.Path(dir_okay=False), default=None, help="A rules file instead of rules/default.toml.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-model", is_flag=True, help="Advise by the rules alone, without the learned model.")
@_user_errors
def train(data, gpu_hours, hours, minutes, strategy, out, force, resume_dir, device, backbone, weights, rules, as_json, no_model):
    """Train the advised strategy (or --strategy) on --data within the budget; leaves RUN/model.pt and RUN/run.json."""
    import time

    started = time.perf_counter()  # the budget counts loading torch too
    from . import training

    if resume_dir:
        given = [n for n, v in (("--data", data), ("--gpu-hours", gpu_hours), ("--hours", hours), ("--minutes", minutes),
                                ("--strategy", strategy), ("--out", out)) if v]
        if given:
            raise AdvisorError(f"--resume continues a run as it was planned; drop {', '.join(given)}.")
        result = training.resume(resume_dir, device=device, progress=not as_json, log=_log(as_json), state=MachineState(),
                                 started=started)
    else:
        if not data:
            raise AdvisorError("Give --data (a folder of images), or --resume RUN_DIR to continue a run.")
        result = training.train(data, gpu_hours=gpu_hours, hours=hours, minutes=minutes, strategy=strategy, out=out, force=force,
                                device=device, backbone=backbone, weights=weights, rules=rules, use_model=not no_model,
                                progress=not as_json, log=_log(as_json), state=MachineState(), started=started)
    click.echo(result.model_dump_json(indent=2) if as_json else report.train_text(result))


@main.command()
@click.option("--model", "run_dir", required=True, type=click.Path(file_okay=False), help="A finished run folder of `advisor train`.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Folder of images (any layout; class folders give the truth). Default: the run's own held-out images.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None, help="Write the CSV here instead of printing it.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@_user_errors
def predict(run_dir, data, out, device):
    """Top-1 class and probability for every image under --data, as CSV (path,label,probability,truth)."""
    from pathlib import Path

    from . import store, training

    if out and data and Path(data).resolve() in Path(out).resolve().parents:
        raise AdvisorError("--out is inside the data folder; advisor never writes there. Choose another path.")
    rows = training.predict(run_dir, data, device, progress=bool(out))
    text = training.predictions_csv(rows)
    known = [r for r in rows if r.truth is not None]
    if out:
        store.atomic_write(Path(out), text)
        click.echo(f"wrote {len(rows)} predictions to {out}", err=True)
    else:
        click.echo(text, nl=False)
    if known:
        correct = sum(r.label == r.truth for r in known)
        where = "in class folders" if data else "held out by the run"
        click.echo(f"accuracy on the {len(known)} images {where}: {correct / len(known):.1%}", err=True)


@main.command("demo-data")
@click.argument("dest", type=click.Path())
@click.option("--source", type=click.Choice(list(datasets.SOURCES)), default="digits", show_default=True)
@click.option("--per-class", type=click.IntRange(min=1), default=None, help="Keep at most this many images per class.")
@_user_errors
def demo_data(dest, source, per_class):
    """Export a real labelled image set that installs offline to an ImageFolder at DEST."""
    path = datasets.export(source, dest, per_class)
    click.echo(f"wrote {sum(1 for _ in path.rglob('*.png'))} images of '{source}' to {path}")


if __name__ == "__main__":
    main()
