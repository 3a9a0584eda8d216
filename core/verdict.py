"""The verdict on a yes/no question, read from the source's conclusion before the answer is written.

A 1.5B model asked for a verdict inside its answer said "supports" to 11 of 12 negative dev conclusions. Asked
alone, over one conclusion and the question, with six worked examples written for this prompt (none from the
evaluation sets), its words still lean to "yes", but its probabilities separate the two (dev AUROC 0.97 over what
``reading`` gives it: the conclusions, or an unlabelled abstract's end; 0.94 over whole unlabelled abstracts). So the
model writes one constrained word (yes / no / uncertain), its log-odds of "yes" are calibrated by a logistic
function fitted on the dev split per model (``benchmarks/fit_verdict.py`` writes ``core/verdict_fit.json``), and
the answer is then written under that verdict. The raw word, the calibrated verdict and what the answer's checks
change are reported separately. Pure functions; the call is in ``agents.service``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from core import fits
from core.chunking import split_sentences
from core.evaluation import CONCLUSION_LABELS

VERDICT_VERSION = "verdict-v2-conclusion-tail"
FIT_PATH = Path(__file__).with_name("verdict_fit.json")
CHOICES = ("yes", "no", "uncertain")
TO_VERDICT = {"yes": "supports", "no": "refutes", "uncertain": "insufficient"}

SYSTEM = (
    "You read a study's conclusion and answer a question from it with one word: yes, no, or uncertain. No effect, "
    "no difference, similar, comparable or not associated means no."
)
# written for this prompt: one per kind of conclusion (an effect, none, equivalence, no association, not known)
SHOTS = (
    (
        "Does daily aspirin reduce the risk of migraine attacks in adults?",
        "Daily aspirin reduced the frequency of migraine attacks compared with placebo.",
        "yes",
    ),
    (
        "Is drug X more effective than drug Y for lowering blood pressure?",
        "Drug X and drug Y lowered blood pressure to a similar extent; neither was superior.",
        "no",
    ),
    (
        "Is higher coffee intake associated with lower bone density?",
        "Coffee intake was not associated with bone density after adjustment for confounders.",
        "no",
    ),
    (
        "Does vitamin D supplementation prevent falls in older adults?",
        "Whether vitamin D prevents falls remains unclear, and larger trials are needed.",
        "uncertain",
    ),
    (
        "Do night shifts increase the risk of obesity in nurses?",
        "Night shift work was associated with a higher prevalence of obesity among nurses.",
        "yes",
    ),
    (
        "Is laparoscopic repair associated with fewer complications than open repair?",
        "Complication rates were comparable between laparoscopic and open repair.",
        "no",
    ),
)
SCHEMA = {"type": "string", "enum": list(CHOICES)}


# an unstructured abstract's last ~800 characters hold the end of its results and its conclusion
TAIL_CHARS = 800
_INLINE_LABEL = re.compile(rf"\b(?:{CONCLUSION_LABELS})\s*:", re.I)


def reading(conclusion: str, text: str = "", limit: int = TAIL_CHARS) -> str:
    """What the classifier reads of a source: its labelled conclusions, whole (from their label, when the chunk that
    holds them begins with the end of RESULTS). A source without them (an unstructured abstract, an excerpt) read
    whole made the model say "yes" to questions its last sentences answer "no" (its methods and background come
    first). So then: ``text`` from its last inline conclusions label ("... Conclusion: ..."), else its last sentences
    within ``limit`` characters (at least one)."""
    if (conclusion or "").strip():
        return _from_label(conclusion.strip())
    text = _from_label((text or "").strip())
    if len(text) <= limit:
        return text
    kept: list[str] = []
    for sentence in reversed(split_sentences(text)):
        if kept and sum(len(k) + 1 for k in kept) + len(sentence) > limit:
            break
        kept.insert(0, sentence)
    return " ".join(kept)


def _from_label(text: str) -> str:
    found = list(_INLINE_LABEL.finditer(text))
    return text[found[-1].start() :] if found else text


def messages(question: str, conclusion: str, system: str = SYSTEM, shots=SHOTS) -> list[dict]:
    """The classifier's prompt: the examples first (a constant prefix the serving engine's cache keeps), then the
    conclusion and the question. ``system``, ``shots``: other instructions and examples, for trying them on dev
    (``benchmarks/explore_verdict.py``)."""
    out = [{"role": "system", "content": system}]
    for q, c, a in shots:
        out += [{"role": "user", "content": _turn(q, c)}, {"role": "assistant", "content": a}]
    return out + [{"role": "user", "content": _turn(question, conclusion)}]


def _turn(question: str, conclusion: str) -> str:
    return f"Study conclusion: {conclusion.strip()}\nQuestion: {question.strip()}"


def _word(token: str) -> str:
    return re.sub(r"[^a-z]", "", token.lower())


def choice_probabilities(top_logprobs: list[dict], said: str = "") -> dict[str, float]:
    """P(yes), P(no), P(uncertain) at the first generated token, renormalised over the three (a token counts for the
    choice it begins: "unc" for "uncertain"). From the word itself (1.0) when no alternative was returned."""
    mass = dict.fromkeys(CHOICES, 0.0)
    for alt in top_logprobs or []:
        w = _word(alt.get("token", ""))
        hit = next((c for c in CHOICES if w and c.startswith(w) and (len(w) >= 2 or w == c)), None)
        if hit:
            mass[hit] += math.exp(alt.get("logprob", -100.0))
    total = sum(mass.values())
    if total <= 0:
        word = said.strip().strip('"').lower()
        return {c: float(c == word) for c in CHOICES}
    return {c: m / total for c, m in mass.items()}


def log_odds_yes(p: dict[str, float]) -> float:
    """log P(yes) - log P(no or uncertain), bounded (a probability of exactly 0 or 1 is not a finite feature)."""
    y = min(max(p.get("yes", 0.0), 1e-4), 1 - 1e-4)
    return math.log(y / (1 - y))


@dataclass
class Fit:
    weights: list[float]  # bias, then the weight of log_odds_yes
    version: str = VERDICT_VERSION
    fitted_on: dict = field(default_factory=dict)

    def p_supports(self, p: dict[str, float]) -> float:
        z = self.weights[0] + self.weights[1] * log_odds_yes(p)
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))


def load_fit(model: str = "", path: Path = FIT_PATH) -> Fit:
    """The fit for ``model`` (each model's probabilities are calibrated on their own); a model without one gets the
    default model's, and says so in ``fitted_on``."""
    chosen, fitted_on = fits.choose(path, model)
    return Fit(chosen["weights"], chosen.get("version", ""), fitted_on)


@dataclass
class Decision:
    said: str  # the model's own word, before any calibration: supports / refutes / insufficient
    verdict: str  # the calibrated verdict
    p_supports: float
    probabilities: dict[str, float]
    source: int = 0  # the number of the source whose conclusion was read

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "said": self.said,
            "calibrated": self.verdict,
            "p_supports": round(self.p_supports, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
        }


def decide(p: dict[str, float], fit: Fit, source: int = 0) -> Decision:
    """Supports when the calibrated probability is at least one half; otherwise "no" or "uncertain", whichever the
    model found likelier. ``source``: the number of the source whose conclusion the model read."""
    said = TO_VERDICT[max(CHOICES, key=lambda c: p.get(c, 0.0))]
    ps = fit.p_supports(p)
    if ps >= 0.5:
        verdict = "supports"
    else:
        verdict = "insufficient" if p.get("uncertain", 0.0) > p.get("no", 0.0) else "refutes"
    return Decision(said, verdict, ps, p, source)
