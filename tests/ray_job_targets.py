"""Small Ray job targets for tests/test_ray_jobs.py: ``package.module:function``, payload dict in, dict out."""

from __future__ import annotations

import os


def square_sum(payload: dict) -> dict:
    """Squares 0..n-1 in Ray tasks; reports where they ran and what they saw of ``payload["env_name"]``."""
    import ray

    env_name = payload.get("env_name", "")

    @ray.remote(num_cpus=1)
    def square(x: int):
        return x * x, os.environ.get(env_name) if env_name else None, ray.get_runtime_context().get_node_id()

    # How a target hands the runner's env to its workers (LocalRayJobRunner); on the Jobs API the key is absent
    # and the job-level runtime_env already reaches every worker.
    options = {"runtime_env": payload["_runtime_env"]} if payload.get("_runtime_env") else {}
    out = ray.get([square.options(**options).remote(x) for x in range(int(payload["n"]))])
    return {
        "sum": sum(v for v, _, _ in out),
        "env_in_tasks": sorted({str(e) for _, e, _ in out}),
        "env_in_driver": os.environ.get(env_name) if env_name else None,
        "node_ids": sorted({n for _, _, n in out}),
        "gcs_address": ray.get_runtime_context().gcs_address,
    }


def fail(payload: dict) -> dict:
    raise ValueError(f"target failed on purpose: {payload.get('why', '?')}")


def not_a_dict(payload: dict):
    return [1, 2, 3]


def sleep(payload: dict) -> dict:
    import time

    time.sleep(float(payload.get("s", 1)))
    return {"slept": payload.get("s", 1)}


def actor_left_in_cyclic_garbage(payload: dict) -> dict:
    """Starts a 1-CPU actor and leaves its only handle in a reference cycle, as Ray Data's finished pool once did:
    the actor lives until the driver's garbage collector frees that cycle."""
    import ray

    @ray.remote(num_cpus=1)
    class Idle:
        def ready(self) -> bool:
            return True

    actor = Idle.remote()
    ray.get(actor.ready.remote())
    cycle = {"actor": actor}
    cycle["self"] = cycle
    return {"started": True}
