"""The answer service's two constrained readings, made before any answer sentence is written: which sources address
the question (``core.answerability``) and a yes/no question's verdict from a conclusion (``core.verdict``). Each is
one LLM call whose engine log-probabilities are turned into a fitted score."""

from __future__ import annotations

from agents.answers import count_usage
from agents.sources import Source
from agents.tracing import tracer
from core import answerability, answering, verdict


def _top_logprobs(choice) -> list[dict]:
    """Per generated token: {"token", "top_logprobs": [{"token", "logprob"}]} (none when the engine gave none)."""
    return [
        {"token": c.token, "top_logprobs": [{"token": a.token, "logprob": a.logprob} for a in c.top_logprobs]}
        for c in ((choice.logprobs.content or []) if choice.logprobs else [])
    ]


def judge_sources(
    client,
    gateway,
    fit: answerability.Fit,
    answer_messages: list[dict],
    question: str,
    sources: list[Source],
    tokens: dict,
    models: list[str],
) -> tuple[answerability.Answerability, list[answerability.Features]]:
    """One constrained call: does each source address the question? Then the fitted per-source score and the route.
    Its prompt is the answer's (``answer_messages``) up to the question, so the answer call that follows pays only
    its own instructions and output."""
    messages = answerability.judge_messages(answer_messages, question, [(s.n, s.title) for s in sources])
    with tracer().start_as_current_span("judge_answerability") as span:
        span.set_attribute("gen_ai.request.model", gateway.chat_model)
        r = client.chat.completions.create(
            model=gateway.chat_model,
            messages=messages,
            max_tokens=4 * len(sources) + 8,
            temperature=0.0,
            logprobs=True,
            top_logprobs=5,
            **gateway.structured("judge_answerability", answerability.judge_schema(len(sources))),
        )
        count_usage(r, tokens, span, models)
        choice = r.choices[0]
        probs = answerability.yes_probabilities(choice.message.content or "", _top_logprobs(choice), len(sources))
        lead = answerability.leads([s.dense for s in sources])
        features = [
            answerability.Features(p, answerability.subject_overlap(question, f"{s.title}\n{s.text}"), s.dense, g)
            for p, s, g in zip(probs, sources, lead)
        ]
        decided = answerability.decide([s.n for s in sources], features, fit)
        span.set_attribute("agentic.answerability.route", decided.route)
        span.set_attribute("agentic.answerability.score", decided.score)
        span.set_attribute("agentic.answerability.covered", len(decided.covered))
    return decided, features


def read_verdict(
    client, gateway, fit: verdict.Fit, question: str, source: Source, tokens: dict, models: list[str]
) -> verdict.Decision:
    """One short call: the model's yes / no / uncertain over ``source``'s conclusion, calibrated. The answer is then
    written under that verdict."""
    conclusion = source.reading or verdict.reading(answering.conclusion_part(source.text), source.text)
    with tracer().start_as_current_span("decide_verdict") as span:
        span.set_attribute("gen_ai.request.model", gateway.chat_model)
        r = client.chat.completions.create(
            model=gateway.chat_model,
            messages=verdict.messages(question, conclusion),
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=20,
        )
        count_usage(r, tokens, span, models)
        choice = r.choices[0]
        first = _top_logprobs(choice)[:1]
        alts = first[0]["top_logprobs"] if first else []
        decided = verdict.decide(verdict.choice_probabilities(alts, choice.message.content or ""), fit, source.n)
        span.set_attribute("agentic.verdict.said", decided.said)
        span.set_attribute("agentic.verdict.calibrated", decided.verdict)
        span.set_attribute("agentic.verdict.p_supports", decided.p_supports)
    return decided
