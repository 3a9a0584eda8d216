"""The access commands: principals' API keys and the audit trail of API requests."""

from __future__ import annotations

import json
import os
import sys
import time

from pipelines.cli.common import say
from pipelines.settings import Settings


def cmd_keys(args, settings: Settings) -> int:
    """API keys of principals. Tokens are printed once, at create/rotate; the store keeps only their hashes."""
    from pipelines.profiles import build_key_store
    from pipelines.secrets import LOCAL_SECRETS

    keys = build_key_store(settings)
    action = args.action or "where"
    try:
        if action == "create":
            groups = [g for g in args.groups.split(",") if g.strip()]
            record, token = keys.create(args.principal, groups, args.rate, args.concurrency, args.description)
            if args.json:
                print(json.dumps({**record.public(), "token": token}))
            else:
                say(f"key {record.key_id} for {record.principal} (groups {', '.join(record.groups)})")
                say(f"token (shown once, store it now): {token}")
            return 0
        if action == "rotate":
            record, token = keys.rotate(args.key_id)
            if args.json:
                print(json.dumps({**record.public(), "token": token, "replaces": args.key_id}))
            else:
                say(f"key {args.key_id} revoked; new key {record.key_id} for {record.principal}")
                say(f"token (shown once, store it now): {token}")
            return 0
        if action == "revoke":
            record = keys.revoke(args.key_id)
            say(f"key {record.key_id} of {record.principal} revoked (API caches drop it within seconds)")
            return 0
    except (KeyError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    if action == "list":
        rows = [r.public() for r in keys.list_keys(args.principal, include_revoked=args.all)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        say(f"{len(rows)} key(s) in {keys.describe()}")
        for r in rows:
            state = (
                "active" if r["revoked"] is None else f"revoked{' -> ' + r['rotated_to'] if r['rotated_to'] else ''}"
            )
            say(f"  {r['key_id']}  {r['principal']:<20} {','.join(r['groups']):<30} {state}")
        return 0
    for var, name in LOCAL_SECRETS.items():
        path = settings.secrets_dir / name
        in_file = path.exists() and path.read_text().strip() == os.environ.get(var)
        say(f"{var}: {f'in {path} (mode 0600)' if in_file else 'from the environment'}")
    say(f"principals' keys: {keys.describe()} (`agentic keys list`)")
    return 0


def cmd_audit(args, settings: Settings) -> int:
    """The audit trail: one record per API request (principal, time, question hash, documents returned, route)."""
    from agents.audit import AuditTrail
    from pipelines.profiles import build_resources
    from pipelines.services import resolve_env

    trail = AuditTrail(resolve_env(build_resources(settings)["pipeline_state"]), background=False)
    since = time.time() - args.hours * 3600 if args.hours else None
    question = None
    if args.question:
        from core.access import question_hash

        question = question_hash(args.question)
    n = 0
    for r in trail.query(since=since, principal=args.principal, doc_id=args.doc, path=args.path):
        if question is not None and r.get("question_sha256") != question:
            continue
        n += 1
        if args.json:
            print(json.dumps(r))
        elif n <= args.limit:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["time"]))
            say(
                f"{when}Z {r['principal'] or '-':<16} {r['status']} {r['path']:<22} {r['route'] or '-':<22} "
                f"docs={','.join(r['doc_ids'][:5]) or '-'} q={r['question_sha256'][:12] or '-'}"
            )
    if not args.json:
        say(f"{n} record(s)")
    return 0
