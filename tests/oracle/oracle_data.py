"""What the oracle tests share: a small movie catalog, reranking examples over it, and the
serve_oracle.py handle. Imported by path (`from oracle_data import ...`), not from `conftest`,
whose module name every test folder shares: which conftest `import conftest` finds depends on
the order pytest collected the folders in."""

from __future__ import annotations

import json
import random
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from lit_verbrec.data.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tools" / "serve_oracle.py"
GENRES = ["Horror", "Sci-Fi", "Drama", "Comedy", "Crime", "Romance", "Western", "Animation"]
TAGS = ["haunted house", "time loop", "aliens", "grief", "heist", "satire", "road trip", "revenge",
        "small town", "space station", "courtroom", "twins", "amnesia", "desert", "boxing"]
WORDS = ["amber", "willow", "harbor", "cinder", "marble", "falcon", "velvet", "lantern", "orchid", "summit"]


def make_catalog(n_items: int = 40, seed: int = 0) -> Catalog:
    """Movies with 1-2 genres and at most 3 tags: every tag fits the prompt's cap of 3, so the
    server's lexical backend sees exactly the metadata the in-process lexical oracle reads."""
    rng = random.Random(seed)
    titles = [f"{WORDS[i % 10].title()} {WORDS[(i // 10 + i + 1) % 10].title()} {i}" for i in range(n_items)]
    return Catalog.from_table(pa.table({
        "item": [f"m{i}" for i in range(n_items)],
        "title": titles,
        "year": pa.array([rng.choice([None, 1990 + i % 30]) for i in range(n_items)], pa.int32()),
        "genres": [rng.sample(GENRES, rng.randint(1, 2)) for _ in range(n_items)],
        "tags": [rng.sample(TAGS, rng.randint(0, 3)) for _ in range(n_items)],
        "kind": ["movie"] * n_items,
        "series_id": pa.array([None] * n_items, pa.string()),
        "episode": pa.array([None] * n_items, pa.int32()),
    }))


def make_examples(catalog: Catalog, n: int, seed: int = 1, n_candidates: int = 10) -> dict:
    """{"verbalizations", "candidates"}: each text mentions a few genres/tags (and sometimes a
    title), so the lexical choice varies between examples."""
    rng = random.Random(seed)
    items = list(catalog)
    verbalizations, candidates = [], []
    for k in range(n):
        cands = rng.sample(items, n_candidates)
        terms = rng.sample(GENRES + TAGS, rng.randint(1, 4))
        if k % 5 == 0:
            terms.append(catalog[rng.choice(cands)].title)
        verbalizations.append(f"Example {k}: watched " + ", ".join(terms) + ".")
        candidates.append(cands)
    return {"verbalizations": verbalizations, "candidates": candidates}


@dataclass
class Server:
    """A running tools/serve_oracle.py."""

    process: subprocess.Popen
    url: str
    """http://127.0.0.1:PORT (the OpenAI base_url is url + "/v1")."""
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as response:
            return json.loads(response.read())
