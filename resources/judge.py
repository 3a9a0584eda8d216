"""RAGAS 0.4 metrics judged by a model behind the LLM gateway.

The judge is whatever the gateway routes ``judge_model`` to: the local llama.cpp model on ``local``, a Bedrock
model id through LiteLLM on ``eks``. Structured output uses instructor's JSON_SCHEMA mode (``response_format:
json_schema``), which llama.cpp enforces with a grammar, rather than RAGAS' default JSON mode that only asks.

A judgement that times out or cannot be parsed is retried, then recorded as a failure with its error, never as a
score: ``score_sample`` returns ``{metric: value}`` and ``{metric_error: message}`` for the ones that failed.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

from resources.gateway import LLMGatewayResource  # noqa: E402


@dataclass
class JudgeSettings:
    timeout_s: float = 240.0  # per metric per question (a metric makes 1-k LLM calls)
    attempts: int = 2  # tries per metric before it is recorded as a failure
    max_tokens: int = 512
    concurrency: int = 1  # questions judged at once (the local server runs one request at a time well)


class RagasJudge:
    def __init__(self, gateway: LLMGatewayResource, settings: JudgeSettings | None = None, model: str | None = None):
        import instructor
        from ragas.embeddings import embedding_factory
        from ragas.llms.base import InstructorLLM, InstructorModelArgs
        from ragas.metrics.collections import AnswerRelevancy, ContextPrecision, ContextRecall, Faithfulness

        self.settings = settings or JudgeSettings()
        self.model = model or gateway.judge_model
        client = gateway.async_openai_client()
        patched = instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA)
        llm = InstructorLLM(
            client=patched,
            model=self.model,
            provider="openai",
            model_args=InstructorModelArgs(temperature=0.0, top_p=1.0, max_tokens=self.settings.max_tokens),
            max_retries=1,
        )
        embeddings = embedding_factory("openai", model=gateway.embedding_model, client=client)
        self.metrics = {
            "faithfulness": (
                Faithfulness(llm=llm),
                lambda s: dict(user_input=s["question"], response=s["response"], retrieved_contexts=s["contexts"]),
            ),
            "answer_relevancy": (
                AnswerRelevancy(llm=llm, embeddings=embeddings, strictness=2),
                lambda s: dict(user_input=s["question"], response=s["response"]),
            ),
            "context_precision": (
                ContextPrecision(llm=llm),
                lambda s: dict(user_input=s["question"], reference=s["reference"], retrieved_contexts=s["contexts"]),
            ),
            "context_recall": (
                ContextRecall(llm=llm),
                lambda s: dict(user_input=s["question"], retrieved_contexts=s["contexts"], reference=s["reference"]),
            ),
        }

    async def _one(self, name: str, sample: dict) -> tuple[str, float | None, str | None]:
        metric, args = self.metrics[name]
        error = None
        for attempt in range(1, self.settings.attempts + 1):
            try:
                result = await asyncio.wait_for(metric.ascore(**args(sample)), timeout=self.settings.timeout_s)
                value = float(result.value)
                if math.isnan(value):
                    raise ValueError("the judge produced no verdicts (NaN)")
                return name, max(0.0, min(1.0, value)), None
            except asyncio.TimeoutError:
                error = f"timeout after {self.settings.timeout_s:.0f}s (attempt {attempt})"
            except Exception as exc:  # unparsable output, HTTP errors, validation errors of the structured output
                error = f"{type(exc).__name__}: {str(exc)[:300]} (attempt {attempt})"
        return name, None, error

    async def score_sample(self, sample: dict, metrics: tuple[str, ...] | None = None) -> dict:
        """sample: question, response, contexts (list[str]), reference. Metrics run one after another:
        the local model serves one request at a time, and sequential calls keep its prompt cache warm."""
        out: dict = {}
        if not sample.get("response", "").strip() or not sample.get("contexts"):
            for name in metrics or self.metrics:
                out[f"{name}_error"] = "nothing to judge: empty response or no retrieved contexts"
            return out
        for name in metrics or self.metrics:
            name, value, error = await self._one(name, sample)
            if error is None:
                out[name] = value
            else:
                out[f"{name}_error"] = error
        return out

    def score_all(self, samples: list[dict], metrics: tuple[str, ...] | None = None, progress=None) -> list[dict]:
        async def run() -> list[dict]:
            sem = asyncio.Semaphore(max(1, self.settings.concurrency))
            done = 0

            async def guarded(s):
                nonlocal done
                async with sem:
                    r = await self.score_sample(s, metrics)
                done += 1
                if progress:
                    progress(done, len(samples))
                return r

            return await asyncio.gather(*(guarded(s) for s in samples))

        return asyncio.run(run())
