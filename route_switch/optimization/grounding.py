"""Data-grounded routing instructions: what the labelled training split says each tier is needed for.

A small proposer LLM writes poor instructions. These candidates are written from the data
instead: for every query the *needed tier* is the cheapest one reaching the best score any tier
got on it; the words that most distinguish each needed tier's queries (a multinomial logistic
regression on word counts) and their typical length become one plain sentence per tier.
MIPROv2 then chooses among these, the starting instruction and the proposer's candidates.

The text holds single words and counts, never a query.
"""
from __future__ import annotations

import re

import numpy as np

from route_switch.core.tiers import to_tier

# Words that say nothing about difficulty in any domain.
STOP = set("""a an the and or of to in on at for from by with as is are was were be been it its this that these those
which what who whom whose when where why how you your i me my we our they them their he she his her not no yes do does
did can could should would will shall may might must than then there here if else into out up down over under about
above below also just only very more most some any each every all both either neither such same other another own so
too again once per via let lets use using used give given find write make show answer question following based whether
one two three four five six seven eight nine ten""".split())

ASKS_BACK = ("please provide", "provide me", "i will use", "could you provide", "can you provide", "let me know",
             "i need more information", "detailed description of the task")


def needed_tier_index(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """0-based cheapest tier (by mean cost) reaching each query's best score."""
    order = np.argsort(costs.mean(axis=0), kind="stable")
    s = scores[:, order]
    ok = s >= s.max(axis=1, keepdims=True) - 1e-9
    return ok.argmax(axis=1)  # position in cost order = tier index


def tier_keywords(prompts: list[str], tiers: np.ndarray, n_tiers: int, k: int = 8) -> list[list[str]]:
    """The ``k`` words whose presence most raises the odds of each needed tier."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(lowercase=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]{2,}\b", stop_words=list(STOP),
                          min_df=max(3, len(prompts) // 200), binary=True, max_features=5000)
    try:
        X = vec.fit_transform(prompts)
    except ValueError:  # no usable words
        return [[] for _ in range(n_tiers)]
    words = np.array(vec.get_feature_names_out())
    present = sorted(set(tiers.tolist()))
    if len(present) < 2:
        return [[] for _ in range(n_tiers)]
    lr = LogisticRegression(C=0.5, max_iter=2000).fit(X, tiers)
    coef = lr.coef_ if len(present) > 2 else np.vstack([-lr.coef_[0], lr.coef_[0]])
    out = [[] for _ in range(n_tiers)]
    for row, t in zip(coef, present):
        top = np.argsort(-row)[:k]
        out[t] = [str(words[j]) for j in top if row[j] > 0]
    return out


def grounded_instruction(prompts: list[str], scores: np.ndarray, costs: np.ndarray, tiers: list[dict]) -> str:
    """One plain-text routing instruction rendered from a labelled split (see module docstring)."""
    need = needed_tier_index(np.asarray(scores, float), np.asarray(costs, float))
    n_tiers = len(tiers)
    words = tier_keywords(prompts, need, n_tiers)
    lengths = np.array([len(p.split()) for p in prompts])
    lines = ["You route user requests to language models of different size and cost. Choose the cheapest tier "
             "that will still answer the request well.",
             f"In {len(prompts)} past requests with known outcomes:"]
    for t in range(n_tiers):
        m = need == t
        share = float(m.mean()) if len(m) else 0.0
        what = f"Tier {to_tier(t)} ({tiers[t]['name']}) was the cheapest good choice for {share:.0%} of requests"
        if m.any():
            what += f", typically {int(np.median(lengths[m]))} words long"
        if words[t]:
            what += "; their wording often includes: " + ", ".join(words[t])
        lines.append(f"- {what}.")
    lines.append("Send a request to a higher tier only when it clearly needs several reasoning steps, exact "
                 "computation, working code or specialist knowledge that a smaller model would get wrong.")
    return "\n".join(lines)


_PREAMBLE = re.compile(r"^[^\n]*\b(?:here is|here's|proposed|new|improved)\b[^\n]*\binstruction\b[^\n]*:\s*\n*", re.I)


def strip_preamble(text: str) -> str:
    """A proposal without a chatty first line such as "…, here is a proposed instruction …:"."""
    return _PREAMBLE.sub("", text.strip(), count=1).strip() or text.strip()


def describes_tiers(instruction: str, tiers: list[dict]) -> tuple[bool, str]:
    """Whether an instruction reads as a routing instruction a reviewer would keep; (ok, why not)."""
    t = instruction.lower()
    if not 40 <= len(instruction) <= 3000:
        return False, f"length {len(instruction)} outside 40..3000 characters"
    if any(p in t for p in ASKS_BACK):
        return False, "asks the reader for information instead of routing"
    named = sum(bool(re.search(rf"\btier\s*{i}\b", t)) or tier["name"].lower() in t for i, tier in enumerate(tiers, 1))
    if named < min(2, len(tiers)):
        return False, f"names {named} of the {len(tiers)} tiers"
    return True, ""
