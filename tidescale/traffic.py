"""Synthetic LLM inference requests (the llm-preprocessor's input schema), for the demo and benchmarks.

Pure: deterministic for a seed; the optional `malformed_every` inserts records that must be dead-lettered.
"""

from __future__ import annotations

import json
import random

MODELS = ("llama-3-8b", "llama-3-70b", "mistral-7b", "mixtral-8x22b")
PROMPTS = (
    "  What is the   capital of France? Answer in one word.  ",
    "Wie spät ist es und wo ist der Bahnhof?",
    "Quelle est la meilleure façon de faire du pain ?",
    "東京で一番おいしいラーメンはどこですか",
    "Summarise\tthis\n\ndocument, please: the quarterly results were strong.",
)


def llm_requests(n: int, seed: int = 3, malformed_every: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if malformed_every and i % malformed_every == malformed_every - 1:
            out.append(b'{"id": "r%d", "prompt": ' % i)  # truncated JSON
            continue
        record = {
            "id": f"r{i}",
            "user": f"u{i % 1000}",
            "model": MODELS[i % len(MODELS)],
            "prompt": f"{PROMPTS[rng.randrange(len(PROMPTS))]} #{i}",
            "ts": 1_700_000_000_000 + i,
        }
        out.append(json.dumps(record, ensure_ascii=False).encode())
    return out
