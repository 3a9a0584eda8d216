"""Per-model fits kept in a JSON file (``{"default": model, "fits": {model: {...}}}``): the one for a model, or the
default model's, saying so. A model's probabilities are its own, so each model is calibrated on its own."""

from __future__ import annotations

import json
from pathlib import Path


def choose(path: Path, model: str = "") -> tuple[dict, dict]:
    """(the fit's entry, its ``fitted_on`` with the model it was fitted for and, if it is not ``model``'s, a note)."""
    data = json.loads(path.read_text())
    fits = data["fits"]
    chosen = fits.get(model) or fits[data["default"]]
    fitted_on = dict(chosen.get("fitted_on", {}), model=model if model in fits else data["default"])
    if model and model not in fits:
        fitted_on["note"] = f"no fit for {model}: the default model's is used; fit it on dev before relying on it"
    return chosen, fitted_on
