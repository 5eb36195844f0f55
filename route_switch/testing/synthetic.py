"""The synthetic evalset (written by the project itself): query difficulty decides which FAKE model succeeds."""
from __future__ import annotations

import numpy as np


EASY = ["What is the capital of {}?", "Translate '{}' into French.", "Say hello to {}.", "Spell the word {}."]
HARD = ["Prove that the sum of the first {} odd numbers is a perfect square, step by step.",
        "Write a Python function that solves the {} puzzle with dynamic programming.",
        "Derive the closed form of the integral of x^{} * exp(x) and explain each step."]
WORDS = ["France", "Peru", "apple", "river", "Kenya", "violin", "Oslo", "mountain", "glass", "tiger",
         "Chile", "garden", "copper", "Japan", "window", "orange", "Tonga", "silver", "autumn", "Nepal"]


def synthetic_records(n: int = 240, seed: int = 0) -> list[dict]:
    """Queries whose outcome depends on difficulty: the small model fails hard ones, the large rarely fails."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hard = i % 3 == 0
        tmpl = HARD[i % len(HARD)] if hard else EASY[i % len(EASY)]
        prompt = tmpl.format(f"{WORDS[i % len(WORDS)]} {i}")
        p_small, p_mid, p_large = (0.1, 0.5, 0.95) if hard else (0.9, 0.95, 0.97)
        for model, p, cost in (("small", p_small, 0.001), ("medium", p_mid, 0.004), ("large", p_large, 0.02)):
            rows.append({"id": f"q{i}", "prompt": prompt, "task": "hard" if hard else "easy", "model": model,
                         "score": float(rng.random() < p), "cost_usd": cost * (1 + 0.1 * rng.random())})
    return rows


def synthetic_evalset(n: int = 240, seed: int = 0):
    """The synthetic records as an ``Evalset`` (models small/medium/large)."""
    from route_switch.core.evalset import from_records

    return from_records(synthetic_records(n, seed), source="synthetic")
