"""The serving commands: start and stop the services, the API in the foreground, the Dagster UI, and asking a
question."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pipelines.cli.common import dagster_instance, parse_filters, principal_scope, run_and_report, say
from pipelines.settings import Settings


def cmd_ui(args, settings: Settings) -> int:
    """`dagster dev` on this code location, sharing the instance that `agentic run` records runs in."""
    dagster_instance(settings)  # sets DAGSTER_HOME
    repo = Path(__file__).resolve().parents[2]
    dagster = Path(sys.executable).parent / "dagster"
    cmd = [str(dagster), "dev", "-w", str(repo / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    say(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    os.execv(cmd[0], cmd)
    return 0


def cmd_up(args, settings: Settings) -> int:
    from dataclasses import replace

    from pipelines.services import ensure_ray_head, metrics_targets, start_api, start_metrics, start_trace_store

    settings = start_trace_store(settings, log=say)
    address = ensure_ray_head(settings, log=say)
    settings = replace(settings, ray_address=address)
    os.environ["AGENTIC_RAY_ADDRESS"] = address
    if not run_and_report(settings, "serving_job").success:
        return 1
    if not args.no_api:
        pid = start_api(settings, args.host, args.port)
        say(
            f"API on http://{args.host}:{args.port} (pid {pid}); bearer token: AGENTIC_API_KEY or the file `agentic keys` names"
        )
    start_metrics(settings, metrics_targets(settings, None if args.no_api else f"{args.host}:{args.port}"), log=say)
    return 0


def cmd_down(args, settings: Settings) -> int:
    from pipelines.services import down

    down(settings, log=say)
    return 0


def cmd_serve(args, settings: Settings) -> int:
    import uvicorn

    from agents.api import Limits, stateful_app
    from pipelines.profiles import build_key_store
    from pipelines.services import build_answer_service, resolve_env

    service = build_answer_service(settings)
    app, audit = stateful_app(
        service,
        resolve_env(build_key_store(settings)),
        limits=Limits(rate_per_minute=settings.api_rate_per_minute, concurrency=settings.api_concurrency),
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=30)
    finally:
        audit.close()
        service.close()
    return 0


def cmd_ask(args, settings: Settings) -> int:
    from agents.conversations import ConversationStore
    from agents.records import AnswerRecords
    from agents.tracing import flush
    from pipelines.services import build_answer_service

    service = build_answer_service(settings)
    conversations = ConversationStore(service.state)
    try:
        t0 = time.perf_counter()
        try:
            from pipelines.profiles import build_key_store

            scope = principal_scope(build_key_store(settings), args.principal)
            history = conversations.history(args.conversation) if args.conversation else []
            answer = service.answer(
                args.question,
                parse_filters(args.filter),
                "agent" if args.agent else "auto",
                history=history,
                conversation_id=args.conversation,
                scope=scope,
            )
            if args.conversation:
                conversations.record(args.conversation, answer)
            AnswerRecords(service.state).record_answer(answer.to_dict())
        except Exception as exc:
            print(f"error: could not answer ({type(exc).__name__}: {exc}); is `agentic up` running?", file=sys.stderr)
            return 1
        secs = time.perf_counter() - t0
    finally:
        service.close()
        flush()
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    say(f"Q: {answer.question}")
    if answer.standalone_question and answer.standalone_question != answer.question:
        say(f"   (standalone: {answer.standalone_question})")
    say(f"A: {answer.answer}")
    from agents.sources import cite_label

    for c in answer.citations:
        say(f"   [{c['n']}] {cite_label(c)}  {c['title'][:90]}")
    rel = "n/a" if answer.relevance is None else f"{answer.relevance:.2f}"
    for q in answer.evidence:
        say(f'   evidence [{q["n"]}]: "{q["quote"][:160]}"')
    say(
        f"   verdict={answer.verdict or 'n/a'} route={answer.route} answerability={rel} llm_calls={answer.llm_calls} "
        f"{secs:.1f}s trace={answer.trace_id} answer_id={answer.answer_id}"
    )
    steps = answer.verdict_steps or {}
    if steps.get("checks"):
        say(f"   verdict: the model said {steps.get('model')}; the checks: {'; '.join(steps['checks'])}")
    for note in answer.notes:
        say(f"   note: {note}")
    from pipelines.services import phoenix_server

    phoenix = phoenix_server(settings)
    if answer.trace_id and phoenix.alive():
        say(f"   trace: {phoenix.url}/redirects/traces/{answer.trace_id}")
    return 0
