"""What the commands share: printing, the home's Dagster instance, running a job in process (with a progress bar),
reporting its result, and the read scope of a principal."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

from core.access import ADMIN_PRINCIPAL, FULL_SCOPE, ReadScope
from pipelines.settings import Settings


def say(msg: str) -> None:
    print(msg, flush=True)


def dagster_instance(settings: Settings):
    import dagster as dg

    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():  # runs, events and schedules in SQLite under AGENTIC_HOME; no telemetry (offline)
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return dg.DagsterInstance.get()


def bar_listener(bar):
    """An instance event listener that feeds the run's step events and progress lines to ``bar``."""
    from core.progress import PROGRESS_TAG

    def on_event(entry) -> None:
        step = entry.step_key or ""
        if not entry.is_dagster_event:
            if step and entry.user_message.startswith(PROGRESS_TAG + " "):
                bar.step_progress(step, entry.user_message)
            return
        event = entry.get_dagster_event()
        if event.is_step_start:
            bar.step_started(step)
        elif event.is_step_success:
            bar.step_finished(step, "done")
        elif event.is_step_failure:
            bar.step_finished(step, "failed")
        elif event.is_step_skipped:
            bar.step_finished(step, "skipped")

    return on_event


def run_job(
    settings: Settings,
    job_name: str | None = None,
    log_level: str = "INFO",
    ops: dict | None = None,
    progress: bool = False,
):
    """Runs a job in this process, recorded in this home's instance. ``progress``: a bar on stdout (steps done, the
    current step and its latest progress line), redrawn in place on a terminal, one line per finished step
    otherwise."""
    import uuid

    from assets.knowledge import MAIN_JOB
    from core.progress import RunBar
    from pipelines.definitions import build_definitions

    defs = build_definitions(settings)
    job = defs.resolve_job_def(job_name or MAIN_JOB)
    instance = dagster_instance(settings)
    run_id, bar = str(uuid.uuid4()), None  # known before the run starts, so the bar can listen for it
    if progress:
        tty = sys.stdout.isatty()
        bar = RunBar(len(job.graph.nodes), sys.stdout, tty, width=shutil.get_terminal_size().columns - 1)
        instance.add_event_listener(run_id, bar_listener(bar))
        if tty:  # the bar stands for the info lines on a terminal; the UI and the event log keep them all
            log_level = "WARNING"
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if ops:
        run_config["ops"] = ops
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, run_id=run_id)
    if bar is not None:
        bar.close(result.success)
    return result


def summarize(result) -> list[str]:
    import dagster as dg

    lines = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            md = {
                k: v.value
                for k, v in mat.metadata.items()
                if isinstance(v.value, int | float | str)
                and not isinstance(v.value, bool)
                and not (isinstance(v.value, str) and v.value.startswith("!["))
            }  # plots are for the UI
            keep = {k: md[k] for k in list(md)[:8] if k not in ("preview",)}
            lines.append(f"  {mat.asset_key.to_user_string():<20} {json.dumps(keep)}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            verdict = "passed" if ev.passed else ("warning" if ev.severity == dg.AssetCheckSeverity.WARN else "FAILED")
            lines.append(f"  check {ev.check_name:<32} {verdict}")
    return lines


def run_and_report(settings: Settings, job_name: str | None, **run_args):
    """Runs ``job_name`` (``run_job``'s arguments) and prints how it went: the run's outcome and time, what each
    asset materialized and each check said, and the errors of a failed run. Returns the run's result."""
    t0 = time.perf_counter()
    result = run_job(settings, job_name, **run_args)
    outcome = "succeeded" if result.success else "FAILED"
    say(f"{result.dagster_run.job_name} run {result.run_id} {outcome} in {time.perf_counter() - t0:.1f}s")
    for line in summarize(result):
        say(line)
    if not result.success:
        for ev in result.all_events:
            if ev.is_failure and getattr(ev.event_specific_data, "error", None):
                say(ev.event_specific_data.error.to_string())
    return result


def parse_filters(items: list[str]) -> dict:
    filters: dict = {}
    for item in items or []:
        for op, key in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("=", None)):
            if op in item:
                name, value = item.split(op, 1)
                name, value = name.strip(), value.strip()
                if name == "year":
                    value = int(value)
                if key:
                    filters.setdefault(name, {})[key] = value
                elif name in filters and not isinstance(filters[name], dict):
                    prev = filters[name]
                    filters[name] = (prev if isinstance(prev, list) else [prev]) + [value]
                else:
                    filters[name] = value
                break
        else:
            raise SystemExit(f"bad --filter {item!r}; use field=value, year>=2000, year<=2010")
    return filters


def principal_scope(keys, name: str | None) -> ReadScope:
    """What the CLI may read as ``name``: the groups of the principal's active keys (None or ``admin``: everything,
    the operator's view)."""
    if name is None or name == ADMIN_PRINCIPAL:
        return FULL_SCOPE
    active = keys.list_keys(principal=name)
    if not active:
        raise LookupError(f"principal {name!r} has no active key (`agentic keys create {name} --groups ...`)")
    return ReadScope.of({g for r in active for g in r.groups}, name)
