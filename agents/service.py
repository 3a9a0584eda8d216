"""Answering questions off the index: a fast path and a Strands orchestrator agent.

Fast path (one LLM call when all goes well):

1. a follow-up in a conversation is rewritten into a standalone question (one short call, only when it leans on
   the conversation: ``core.conversation``);
2. hybrid retrieval of ``k`` distinct documents, each with its conclusions section (with the retrieval evidence of
   ``core.relevance`` recorded for the trace);
3. answerability (``core.answerability``): one constrained call judges which sources address the question (a
   follow-up that refers back and is judged uncovered is retrieved and judged once more with the conversation's
   subject attached, ``core.conversation.retry_with_subject``; one that refers back after an answer that cited the
   knowledge base is about those studies, which come first and are usable whatever the judge says,
   ``core.conversation.conversation_studies``); routing is code: the knowledge base when one does,
   and the answer may use only those; otherwise web search (MCP) when it is configured, else "the indexed sources do
   not cover this" with the nearest studies named, nothing cited;
4. a yes/no question's verdict is read from the conclusion of the source likeliest to address it: one short call,
   calibrated on dev (``core.verdict``);
5. one JSON-schema-constrained call writes evidence quotes, that verdict and cited sentences (``core.answering``);
   code checks every quote and sentence against the sources, and the verdict against the quotes. A failed check
   gets one correction call with the problems; if that fails too, the answer is the verified quotes themselves.

The orchestrator (``mode="agent"``) is ``agents.orchestrator``; prompts, sources and citations, web search and the
routing rule have their own modules. Agents import resources, never assets.
"""

from __future__ import annotations

import json
import time
from typing import Iterator

from agents import judgements
from agents.answers import AgentConfig, Answer, Plan, count_usage, trace_lineage, turns_of
from agents.prompts import answer_messages, passage_text
from agents.sources import Source, doc_key_of, page_label, source_id
from agents.tracing import trace_id_of, tracer
from agents.web_search import WebSearch, web_search_for
from core import answer_text, answerability, answering, conversation, verdict
from core.access import ReadScope
from core.conversation import Turn
from core.relevance import RELEVANCE_VERSION
from resources.gateway import LLMGatewayResource
from resources.retrieval import RetrieverResource


def _covered(judged) -> bool:
    return judged is not None and judged.route == "covered"


class AnswerService:
    """The fast path (``plan`` then ``complete``) and the steps the orchestrator reuses: retrieval, the answerability
    judge, the follow-up rewrite and the checked structured answer."""

    def __init__(
        self,
        retriever: RetrieverResource,
        gateway: LLMGatewayResource,
        config: AgentConfig | None = None,
        web_search: WebSearch | None = None,
        state=None,  # a PipelineStateStore, for the index generation's lineage record (optional)
        fit: answerability.Fit | None = None,  # the answerability fit; the committed one by default
    ):
        self.retriever, self.gateway = retriever, gateway
        self.config = config or AgentConfig()
        self.web = web_search or web_search_for(self.config.web_search, self.config.web_search_url)
        self.client = gateway.openai_client()
        self.state = state
        self._fit = fit
        self._verdict_fit: verdict.Fit | None = None
        self._lineage_cache: tuple[float, dict] | None = None

    @property
    def fit(self) -> answerability.Fit:
        """The answerability fit of the model that answers (resolved once, through the gateway)."""
        if self._fit is None:
            self._fit = answerability.load_fit(self.lineage()["llm"])
        return self._fit

    @property
    def verdict_fit(self) -> verdict.Fit:
        """The verdict calibration of the model that answers (``core.verdict``)."""
        if self._verdict_fit is None:
            self._verdict_fit = verdict.load_fit(self.lineage()["llm"])
        return self._verdict_fit

    # -- lineage --------------------------------------------------------------------------------
    def lineage(self, llm: str = "") -> dict:
        """What an answer was made from: index generation, chunker, embedding model, LLM, prompt version."""
        now = time.monotonic()
        if self._lineage_cache is None or now - self._lineage_cache[0] > 30:
            store = self.retriever.vector_store
            generation = self.config.generation or store.serving_generation()
            built = {}
            if self.state is not None and generation:
                from core.generations import LINEAGE_PREFIX

                built = self.state.read_json(LINEAGE_PREFIX + generation) or {}
            self._lineage_cache = (
                now,
                {
                    "llm": self.gateway.upstream_model(self.gateway.chat_model),
                    "index_generation": generation,
                    "chunker_version": built.get("chunker_version"),
                    "embedding_model": built.get("embedding_model") or self.retriever.embedder.model_id,
                },
            )
        cached = self._lineage_cache[1]
        return {
            **cached,
            "llm": cached["llm"] if not llm or llm == self.gateway.chat_model else llm,
            "prompt_version": (
                f"{answering.PROMPT_VERSION}+{answerability.ANSWERABILITY_VERSION}+{RELEVANCE_VERSION}"
                f"+{verdict.VERDICT_VERSION}+{conversation.REWRITE_VERSION}"
            ),
        }

    # -- building blocks (also the orchestrator's tools) ----------------------------------------
    def retrieve(
        self,
        question: str,
        filters: dict | None = None,
        k: int | None = None,
        whole: int = 0,
        *,
        scope: ReadScope,
        pinned: list[str] | None = None,
    ) -> tuple[list[Source], dict]:
        """``k`` documents the ``scope`` may read, as numbered sources (conclusions first; the first ``whole`` of
        them entire), and the relevance evidence ({} if none found). ``pinned``: cited ids ("PMID:123") that come
        first (``RetrieverResource.passages``)."""
        with tracer().start_as_current_span("retrieve") as span:
            found = self.retriever.passages(
                question,
                k=k or self.config.k,
                filters=filters,
                generation=self.config.generation,
                whole=whole,
                scope=scope,
                pinned=[doc_key_of(i) for i in pinned or []],
            )
            span.set_attribute("agentic.principal", scope.principal)
            span.set_attribute("retrieval.mode", "hybrid+conclusions")
            span.set_attribute("retrieval.hits", len(found.passages))
        sources = [
            Source(
                n=i + 1,
                id=source_id(p.hit),
                title=p.hit.title or "",
                text=passage_text(
                    p.conclusion, p.hit.text, self.config.max_passage_chars, p.document, self.config.max_document_chars
                ),
                origin="knowledge_base",
                score=float(p.hit.score),
                doc_key=p.hit.doc_key or "",
                page=page_label(p.hit),
                dense=float(p.dense),
                reading=p.reading,
            )
            for i, p in enumerate(found.passages)
        ]
        return sources, (found.evidence.as_dict() if found.evidence else {})

    def web_sources(self, question: str, start: int = 1) -> tuple[list[Source], dict]:
        with tracer().start_as_current_span("web_search") as span:
            result = self.web.search(question, max_results=self.config.k)
            span.set_attribute("web_search.available", bool(result.get("available")))
            span.set_attribute("web_search.results", len(result.get("results", [])))
        sources = [
            Source(
                n=start + i,
                id=r.get("url", ""),
                title=r.get("title", ""),
                text=(r.get("content") or "")[: self.config.max_passage_chars],
                origin="web",
                url=r.get("url", ""),
                score=float(r.get("score") or 0),
            )
            for i, r in enumerate(result.get("results", []))
        ]
        return sources, result

    def _chat(
        self,
        plan_tokens: dict,
        span_name: str,
        messages: list[dict],
        max_tokens: int,
        schema: dict | None = None,
        models: list[str] | None = None,
        **extra,
    ) -> str:
        """One chat call; with ``schema`` the gateway's structured output makes the reply compact JSON of it."""
        with tracer().start_as_current_span(span_name) as span:
            span.set_attribute("gen_ai.system", "openai")
            span.set_attribute("gen_ai.request.model", self.gateway.chat_model)
            kwargs = dict(extra, **self.gateway.structured(span_name, schema)) if schema else extra
            r = self.client.chat.completions.create(
                model=self.gateway.chat_model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                **kwargs,
            )
            count_usage(r, plan_tokens, span, models)
            return r.choices[0].message.content or ""

    def judge(
        self, question: str, sources: list[Source], yes_no: bool, tokens: dict, models: list[str]
    ) -> tuple[answerability.Answerability, list[answerability.Features]]:
        """Which sources address the question (``agents.judgements.judge_sources``)."""
        messages = answer_messages(question, sources, yes_no, self.config.max_quotes)
        return judgements.judge_sources(
            self.client, self.gateway, self.fit, messages, question, sources, tokens, models
        )

    def decide_verdict(self, question: str, source: Source, tokens: dict, models: list[str]) -> verdict.Decision:
        """The calibrated verdict from ``source``'s conclusion (``agents.judgements.read_verdict``)."""
        return judgements.read_verdict(self.client, self.gateway, self.verdict_fit, question, source, tokens, models)

    def standalone(self, question: str, history: list[Turn], tokens: dict, models: list[str]) -> tuple[str, int]:
        """The question made standalone from the conversation: (question, LLM calls made: 0 or 1)."""
        if not conversation.needs_rewrite(question, history):
            return question, 0
        window = conversation.history_window(history, self.config.history_budget_tokens)
        text = self._chat(
            tokens,
            "rewrite_question",
            conversation.rewrite_messages(question, window),
            self.config.rewrite_max_tokens,
            conversation.REWRITE_SCHEMA,
            models,
        )
        try:
            rewritten = str(json.loads(text).get("question", ""))
        except (ValueError, AttributeError):
            rewritten = ""
        return conversation.accept_rewrite(question, rewritten, window), 1

    def _judged_sources(self, question, filters, yes_no, tokens, models, timings, scope, pinned=None):
        """Retrieval, then the answerability judgement of what it found: (sources, evidence, judgement or None)."""
        t = time.perf_counter()
        # a yes/no question is decided by the conclusions; an open one, or one about a pinned study, reads its first
        # document whole ("Was that a randomized trial?" is answered in METHODS)
        whole = 1 if pinned or not yes_no else 0
        sources, evidence = self.retrieve(question, filters, whole=whole, scope=scope, pinned=pinned)
        timings["retrieve"] = timings.get("retrieve", 0.0) + (time.perf_counter() - t) * 1000
        if not sources:
            return sources, evidence, None
        t = time.perf_counter()
        judged, _features = self.judge(question, sources, yes_no, tokens, models)
        timings["judge"] = timings.get("judge", 0.0) + (time.perf_counter() - t) * 1000
        return sources, evidence, judged

    def _assess(self, question, standalone, turns, filters, yes_no, usage, scope):
        """Sources judged for ``standalone``; a follow-up that presupposes the conversation's subject and found none
        that address it is asked once more with the subject attached. Returns (asked, sources, evidence, judgement,
        calls, retried: None when not asked again, else whether the second judgement found it covered).

        A follow-up that refers back to studies the last answer cited is about them: they come first, whole, and are
        usable whatever the judge says of them (``answerability.with_referenced``); it is not asked again."""
        studies = conversation.conversation_studies(question, turns)
        found = self._judged_sources(standalone, filters, yes_no, *usage, scope, pinned=studies)
        calls = int(found[2] is not None)
        referenced = [s.n for s in found[0] if s.id in studies] if found[2] is not None else []
        if referenced:  # a cited study the scope cannot read (or no longer indexed) leaves the retry below
            judged = answerability.with_referenced(found[2], referenced)
            return standalone, found[0], found[1], judged, calls, None
        retry = None if _covered(found[2]) else conversation.retry_with_subject(question, standalone, turns)
        if not retry:
            return standalone, *found, calls, None
        again = self._judged_sources(retry, filters, yes_no, *usage, scope)
        calls += again[2] is not None
        from opentelemetry import trace

        trace.get_current_span().set_attribute("agentic.follow_up_retry", _covered(again[2]))
        return (retry, *again, calls, True) if _covered(again[2]) else (standalone, *found, calls, False)

    # -- fast path ------------------------------------------------------------------------------
    def plan(
        self, question: str, filters: dict | None = None, history: list | None = None, *, scope: ReadScope
    ) -> Plan:
        question = question.strip()
        if not question:
            raise ValueError("question is empty")
        span = tracer().start_span("agentic.answer", attributes={"agentic.question_chars": len(question)})
        from opentelemetry import trace

        token = trace.context_api.attach(trace.set_span_in_context(span))
        tokens = {"prompt": 0, "completion": 0}
        timings: dict[str, float] = {}
        notes: list[str] = []
        models: list[str] = []
        try:
            t = time.perf_counter()
            turns = turns_of(history)
            standalone, calls = self.standalone(question, turns, tokens, models)
            if calls:
                timings["rewrite"] = (time.perf_counter() - t) * 1000
                span.set_attribute("agentic.standalone_question", standalone[:300])
            yes_no = answering.is_yes_no(standalone)
            standalone, sources, evidence, judged, judge_calls, retried = self._assess(
                question, standalone, turns, filters, yes_no, (tokens, models, timings), scope
            )
            calls += judge_calls
            with tracer().start_as_current_span("assess_relevance") as rspan:
                for name, value in evidence.items():
                    rspan.set_attribute(f"agentic.relevance.{name}", value)
            nearest = []
            if judged is not None:
                order = sorted(sources, key=lambda s: -judged.scores.get(s.n, 0.0))
                nearest = [(s.id, s.title) for s in order[:3]]
            relevance: float | None = judged.score if judged else None
            if _covered(judged):
                route = "knowledge_base"
            else:
                t = time.perf_counter()
                web, result = self.web_sources(standalone)
                timings["web_search"] = (time.perf_counter() - t) * 1000
                if web:
                    route, sources = "web_search", web
                else:
                    why = result.get("error") or ("no results" if result.get("available") else "not configured")
                    notes.append(
                        f"No indexed source addresses the question (answerability {relevance or 0:.2f}, needed "
                        f"{self.fit.threshold:.2f}), and web search gave nothing ({why})."
                    )
                    route, sources = "not_in_knowledge_base", []
            span.set_attribute("agentic.route", route)
            if relevance is not None:
                span.set_attribute("agentic.relevance", relevance)
            allowed = judged.covered if route == "knowledge_base" and judged is not None else None
            decision = None
            if yes_no and allowed:
                # the verdict from the conclusion of the study the follow-up refers to, else of the source judged
                # likeliest to address the question
                top = next((s for s in sources if s.n in judged.referenced[:1]), None) or max(
                    (s for s in sources if s.n in allowed), key=lambda s: judged.scores.get(s.n, 0.0)
                )
                t = time.perf_counter()
                decision = self.decide_verdict(standalone, top, tokens, models)
                timings["verdict"] = (time.perf_counter() - t) * 1000
                calls += 1
            messages = answer_messages(standalone, sources, yes_no, self.config.max_quotes, allowed)
            plan = Plan(question, sources, relevance, route, messages, trace_id_of(span), span, calls, tokens, timings)
            plan.decision = decision
            if decision is not None:
                plan.verdict_steps.update(model=decision.said, calibrated=decision.verdict, decision=decision.as_dict())
            plan.notes, plan.standalone, plan.yes_no = notes, standalone, yes_no
            plan.relevance_evidence, plan.models = evidence, models
            plan.answerability, plan.nearest, plan.allowed = judged, nearest, allowed
            plan.follow_up_retry = retried
            return plan
        except Exception as exc:
            span.record_exception(exc)
            span.end()
            raise
        finally:
            trace.context_api.detach(token)

    def answer(
        self,
        question: str,
        filters: dict | None = None,
        mode: str = "auto",
        history: list | None = None,
        conversation_id: str | None = None,
        *,
        scope: ReadScope,
    ) -> Answer:
        """The answer from what ``scope`` may read (its filter is in every retrieval, the orchestrator's too)."""
        if mode == "agent":
            from agents.orchestrator import agent_answer

            result = agent_answer(self, question, filters, history, scope=scope)
        elif mode == "auto":
            result = self.complete(self.plan(question, filters, history, scope=scope))
        else:
            raise ValueError("mode must be 'auto' or 'agent'")
        result.conversation_id, result.principal = conversation_id, scope.principal
        return result

    def structured_answer(self, plan: Plan) -> tuple[str, list[int], answering.Checked]:
        """The answer call, the code checks, at most ``max_corrections`` correction calls, the quote fallback.
        Only the sources judged to address the question may be quoted or cited (schema and checks alike)."""
        allowed = plan.allowed
        by_n = {s.n: s.text for s in plan.sources if allowed is None or s.n in allowed}
        # written under the verdict decided from the conclusion, corrections too
        schema = plan.answer_schema(self.config.max_quotes, self.config.max_sentences)
        messages = list(plan.messages)
        checked = None
        steps = plan.verdict_steps
        for attempt in range(1 + self.config.max_corrections):
            name = "generate_answer" if attempt == 0 else "correct_answer"
            raw = self._chat(plan.tokens, name, messages, self.config.answer_max_tokens, schema, plan.models)
            plan.llm_calls += 1
            parsed = answering.parse_answer(raw)
            said = parsed.get("verdict")
            if attempt == 0:
                steps["answer_call"] = said
                if plan.decision is None:
                    steps["model"] = said
            else:
                steps["checks"].append(f"correction call: the model said {said}")
            with tracer().start_as_current_span("check_answer") as span:
                checked = answering.check_answer(
                    parsed,
                    by_n,
                    plan.yes_no,
                    self.config.min_quote_support,
                    self.config.min_sentence_support,
                    plan.standalone,
                    on_topic=plan.route == "knowledge_base",
                )
                span.set_attribute("agentic.check.ok", checked.ok)
                span.set_attribute("agentic.check.problems", len(checked.problems))
            if checked.ok:
                if attempt:
                    plan.notes.append("The first answer failed the support check; the corrected one passed.")
                if checked.repaired:
                    plan.notes.append(f"Corrected in code: {checked.repaired}.")
                    steps["checks"].append(checked.repaired)
                text, numbers = answer_text.render(checked)
                return text, numbers, checked
            repaired = answering.repair(checked)
            if repaired is not None:
                # the verdict contradicts the evidence's own conclusion: fixed from that conclusion, no second call
                plan.notes.append(f"Corrected in code: {repaired.repaired}.")
                plan.span.set_attribute("agentic.check.repaired", repaired.repaired)
                steps["checks"].append(repaired.repaired)
                text, numbers = answer_text.render(repaired)
                return text, numbers, repaired
            messages = [*plan.messages, {"role": "assistant", "content": raw}]
            messages.append({"role": "user", "content": answering.correction_message(checked)})
        plan.notes.append(
            "The answer failed the support check ("
            + "; ".join(checked.problems[:3])
            + "): the verified quotes from the sources are given instead of its sentences."
        )
        # the verdict read from a conclusion before the answer stands when its source is quoted; the model's does not
        decided = (plan.decision.verdict, plan.decision.source) if plan.decision else None
        checked.verdict = answer_text.fallback_verdict(checked, decided)
        text, numbers = answer_text.render_quotes(checked, checked.verdict)
        steps["checks"].append(answer_text.fallback_step(checked.verdict))
        return text, numbers, checked

    def complete(self, plan: Plan) -> Answer:
        """The answer for a plan from :meth:`plan` (also what :meth:`stream_answer` streams)."""
        from opentelemetry import trace

        token = trace.context_api.attach(trace.set_span_in_context(plan.span))
        try:
            t = time.perf_counter()
            evidence: list[dict] = []
            if plan.route == "not_in_knowledge_base":
                judged = plan.answerability
                text = answerability.render_uncovered(judged.route if judged else "not_covered", plan.nearest)
                numbers, verdict = [], "not_in_sources"
            else:
                text, numbers, checked = self.structured_answer(plan)
                verdict = checked.verdict
                by_n = {s.n: s for s in plan.sources}
                evidence = [{"n": q["source"], "id": by_n[q["source"]].id, "quote": q["quote"]} for q in checked.quotes]
                if verdict == "not_in_sources":
                    plan.notes.append("The model found no source about the question.")
                if verdict in ("not_in_sources", "unanswered") and plan.route == "knowledge_base" and plan.sources:
                    # a source was judged to address the question: say which one it looked in, not "not covered"
                    covered = plan.answerability.covered if plan.answerability else []
                    top = next((s for s in plan.sources if s.n in covered), plan.sources[0])
                    text, numbers = answer_text.render_closest(top.n, top.title)
            plan.timings_ms["generate"] = (time.perf_counter() - t) * 1000
            chosen = set(numbers)
            citations = [s.citation() for s in plan.sources if s.n in chosen]
            plan.span.set_attribute("agentic.citations", len(citations))
            plan.span.set_attribute("agentic.verdict", verdict)
            result = Answer(
                plan.question,
                text,
                citations,
                plan.relevance,
                plan.route,
                plan.trace_id,
                plan.llm_calls,
                plan.tokens,
                {k: round(v, 1) for k, v in plan.timings_ms.items()},
                plan.notes,
                verdict=verdict,
                evidence=evidence,
                standalone_question=plan.standalone,
                relevance_evidence=plan.relevance_evidence,
                lineage=self.lineage(",".join(plan.models)),
                answerability=plan.answerability.as_dict() if plan.answerability else {},
                verdict_steps={**plan.verdict_steps, "final": verdict},
            )
            plan.span.set_attribute("agentic.answer_id", result.answer_id)
            trace_lineage(plan.span, result)
            plan.result = result
            return result
        except Exception as exc:
            plan.span.record_exception(exc)
            raise
        finally:
            plan.span.end()
            trace.context_api.detach(token)

    def stream_answer(self, plan: Plan) -> Iterator[str]:
        """The answer's text in pieces; the finished :class:`Answer` is stored in ``plan.result``.

        The text is streamed after the support check, not token by token: an answer that might be withdrawn by the
        check is not shown to a clinician first.
        """
        result = self.complete(plan)
        for i, word in enumerate(result.answer.split(" ")):
            yield (" " if i else "") + word

    # -- orchestrator agent -----------------------------------------------------------------------
    def close(self) -> None:
        self.web.close()
