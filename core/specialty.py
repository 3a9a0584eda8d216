"""Medical specialty of a document: labels from MeSH, a classifier on embeddings, macro-F1.

Labels. The five classes follow MeSH tree branches of the diseases category (the classes of the
"medical text classification" data set the reference design used): C04 Neoplasms, C06 Digestive
System Diseases, C10 Nervous System Diseases, C14 Cardiovascular Diseases, C23 Pathological
Conditions, Signs and Symptoms. PubMed records carry descriptor names and UIs but not tree numbers,
and MeSH's tree file (mtrees) is not published on any registry this project can reach, so branch
membership is decided by rules on descriptor names written to follow those branches (the branch
heads and the name patterns of their descendants). A descriptor may sit in two branches (Stroke:
C10 and C14), as in MeSH. A document gets a label when its descriptors point to exactly one branch;
documents in several branches or none are not used for training and are still classified.

Classifier. Multinomial logistic regression (numpy, L2, full-batch gradient descent with class
weights) on the document embedding: the normalized mean of its chunk vectors. Held-out split by a
hash of the document key (stable across runs).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

CLASSES = ("neoplasms", "digestive", "nervous_system", "cardiovascular", "pathological_conditions")
BRANCHES = {
    "neoplasms": "C04 Neoplasms",
    "digestive": "C06 Digestive System Diseases",
    "nervous_system": "C10 Nervous System Diseases",
    "cardiovascular": "C14 Cardiovascular Diseases",
    "pathological_conditions": "C23 Pathological Conditions, Signs and Symptoms",
}

_RULES = {
    "neoplasms": r"neoplasm|carcinoma|cancer|tumou?r|lymphoma|leukemia|leukaemia|sarcoma|melanoma|adenoma|glioma|glioblastoma|"
    r"blastoma\b|myeloma|mesothelioma|metasta|carcinogenesis|papilloma|teratoma|neurofibroma|meningioma|"
    r"carcinoid|hamartoma|cholangiocarcinoma|seminoma|lipoma|fibroma|precancerous",
    "digestive": r"digestive system disease|gastrointestinal disease|stomach disease|intestinal disease|liver disease|"
    r"hepatitis|cirrhosis|fatty liver|colitis|crohn|inflammatory bowel|pancreatitis|esophag|gastritis|"
    r"peptic ulcer|gastroesophageal|cholecyst|cholangitis|biliary|gallstone|cholelithiasis|diverticul|"
    r"celiac|appendicitis|hepatic (?:encephalopathy|insufficiency|failure)|liver (?:failure|cirrhosis)|"
    r"irritable bowel|constipation|dyspepsia|gastroparesis|ileus|hernia, hiatal|barrett|enterocolitis|"
    r"proctitis|hemorrhoids|anal fissure|malabsorption|duodenal|colonic diseases|rectal diseases|"
    r"pancreatic diseases|portal hypertension|ascites|jaundice|cholestasis|gastroenteritis|dysphagia|"
    r"esophageal varices|liver abscess|gastrointestinal hemorrhage|intestinal obstruction|colorectal|"
    r"stomach neoplasms|liver neoplasms|pancreatic neoplasms|colonic neoplasms|rectal neoplasms|"
    r"esophageal neoplasms|gastrointestinal neoplasms|digestive system neoplasms|hepatocellular",
    "nervous_system": r"nervous system disease|brain disease|brain injur|central nervous system|neurodegenerative|alzheimer|"
    r"parkinson|dementia|epilep|seizure|stroke|cerebrovascular|cerebral (?:infarction|hemorrhage|palsy|ischemia)|"
    r"brain ischemia|multiple sclerosis|migraine|headache|neuropath|neuralgia|spinal cord|myelitis|"
    r"encephalitis|encephalopathy|meningitis|amyotrophic|huntington|ataxia|neuromuscular|myasthenia|"
    r"guillain|paralysis|paresis|hydrocephalus|intracranial|subarachnoid|glioma|brain neoplasms|"
    r"nervous system neoplasms|spinal cord neoplasms|autism|cognitive dysfunction|cognition disorders|"
    r"delirium|sleep (?:wake )?disorders|narcolepsy|restless legs|tremor|dystonia|movement disorders|"
    r"neuritis|neurotoxicity|nerve injur|peripheral nerve|sciatica|radiculopathy|polyneuropathies|"
    r"craniocerebral trauma|concussion|coma|aphasia|neurodevelopmental|autonomic nervous system diseases",
    "cardiovascular": r"cardiovascular disease|heart disease|heart failure|heart arrest|cardiac|cardiomyopath|myocardial|"
    r"coronary|angina|atrial fibrillation|arrhythmia|tachycardia|bradycardia|heart block|heart valve|"
    r"aortic (?:valve|stenosis|aneurysm|dissection)|mitral|endocarditis|myocarditis|pericard|"
    r"hypertension|hypotension|atherosclerosis|arteriosclerosis|aneurysm|thrombosis|thromboembolism|"
    r"embolism|venous insufficiency|varicose|vasculitis|vascular disease|peripheral arterial|"
    r"ischemia|infarction|stroke|cerebrovascular|heart defects|congenital heart|ventricular dysfunction|"
    r"shock, cardiogenic|heart neoplasms|takotsubo|long qt|brugada|wolff-parkinson|raynaud|"
    r"arteritis|vascular malformations|hemangioma|intracranial aneurysm|carotid (?:stenosis|artery diseases)",
    "pathological_conditions": r"pathological conditions|signs and symptoms|^pain\b|chronic pain|pain, postoperative|inflammation|"
    r"fever|fibrosis|necrosis|edema|hypoxia|syndrome\b|disease progression|"
    r"postoperative complications|obesity|overweight|weight loss|cachexia|body weight|"
    r"insulin resistance|shock\b|sepsis|multiple organ failure|cysts|calcinosis|"
    r"hyperplasia|hypertrophy|atrophy|aneuploidy|chromosome aberrations|hemorrhage|"
    r"dyspnea|cough|fatigue|nausea|vomiting|pruritus|vertigo|dizziness|syncope|"
    r"anorexia|malnutrition|dehydration|frailty|pathologic processes|disease models|"
    r"birth weight|fetal growth retardation|premature birth|infertility|recurrence|"
    r"neoplasm recurrence|reperfusion injury|oxidative stress|cell transformation",
}
_PATTERNS = {c: re.compile(p, re.I) for c, p in _RULES.items()}
_NOT_A_DISEASE = re.compile(
    r"^(humans|animals|male|female|adult|aged|child|infant|adolescent|middle aged|young adult|"
    r"mice|rats|retrospective studies|prospective studies|cohort studies|treatment outcome|"
    r"risk factors|prognosis)$",
    re.I,
)


def branches_of(descriptor: str) -> set[str]:
    """The specialty branches a MeSH descriptor name belongs to (may be several, like MeSH itself)."""
    d = descriptor.strip()
    if not d or _NOT_A_DISEASE.match(d):
        return set()
    return {c for c, p in _PATTERNS.items() if p.search(d)}


def label_document(mesh_terms: list[str]) -> tuple[str | None, dict[str, int]]:
    """(label or None, descriptor counts per branch). A label only when one branch is named.

    C23 (pathological conditions) is a label only when no specific organ-system branch is named,
    since nearly every disease article also carries general condition descriptors.
    """
    counts: dict[str, int] = {}
    for term in mesh_terms or []:
        for c in branches_of(term):
            counts[c] = counts.get(c, 0) + 1
    specific = {c for c in counts if c != "pathological_conditions"}
    if len(specific) == 1:
        return next(iter(specific)), counts
    if not specific and "pathological_conditions" in counts:
        return "pathological_conditions", counts
    return None, counts


def holdout(key: str, fraction: float = 0.2) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


@dataclass
class SoftmaxClassifier:
    weights: np.ndarray  # (dim + 1, classes), last row = bias
    classes: tuple[str, ...]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)]) @ self.weights
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> tuple[list[str], np.ndarray]:
        p = self.predict_proba(x)
        idx = p.argmax(axis=1)
        return [self.classes[i] for i in idx], p[np.arange(len(idx)), idx]

    def to_bytes(self) -> bytes:
        """The model as .npz bytes, in memory: the caller puts them in the state store (no step writes a file)."""
        import io

        buf = io.BytesIO()
        np.savez(buf, weights=self.weights, classes=np.array(self.classes))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SoftmaxClassifier":
        import io

        data = np.load(io.BytesIO(raw))
        return cls(np.asarray(data["weights"]), tuple(str(c) for c in data["classes"]))


def train_softmax(
    x: np.ndarray,
    labels: list[str],
    classes: tuple[str, ...] = CLASSES,
    l2: float = 1e-3,
    epochs: int = 400,
    lr: float = 2.0,
) -> SoftmaxClassifier:
    """Class-weighted multinomial logistic regression by full-batch gradient descent (deterministic)."""
    if len(x) == 0:
        raise ValueError("no labelled documents to train on")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[l] for l in labels])
    n, d = x.shape
    k = len(classes)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    cw = np.where(counts > 0, n / (k * np.maximum(counts, 1)), 0.0)
    sw = cw[y][:, None]
    # float32 and the bias kept apart: no design matrix with a column of ones, so the step holds the sample once
    # (a 20k sample is 31 MB; hstack + astype to float64 held three more copies, ~150 MB).
    x = np.asarray(x, np.float32)
    onehot = np.eye(k, dtype=np.float32)[y]
    sw = sw.astype(np.float32)
    w = np.zeros((d, k), np.float32)
    b = np.zeros(k, np.float32)
    for _ in range(epochs):
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * sw
        w -= lr * (x.T @ g / n + l2 * w)  # no penalty on the bias
        b -= lr * g.sum(axis=0) / n
    return SoftmaxClassifier(np.vstack([w, b[None, :]]), tuple(classes))


def macro_f1(y_true: list[str], y_pred: list[str], classes: tuple[str, ...] = CLASSES) -> tuple[float, dict[str, dict]]:
    """Macro-F1 over the classes present in ``y_true``; per-class precision, recall, F1, support."""
    per = {}
    for c in classes:
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "support": tp + fn}
    present = [c for c in classes if per[c]["support"]]
    score = float(np.mean([per[c]["f1"] for c in present])) if present else 0.0
    return score, per
