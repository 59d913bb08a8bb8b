"""Offline word substitutes for the word-swap attack: WordNet synonyms, the encoder's embedding neighbours, a
stop-word list, and sentence similarity from the MiniLM encoder's mean-pooled embeddings.

WordNet 3.0 is read from its own database files (`index.<pos>`, `data.<pos>`; Debian's `wordnet-base` puts them
in /usr/share/wordnet, `$DYNASCOPE_WORDNET` names another folder) by the small reader below: no NLTK, which
refuses /usr/share/wordnet and fetches its data from the network. Without the files, word-swap uses embedding
neighbours alone and says so in its summary (`settings.wordnet`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

WORDNET_ENV = "DYNASCOPE_WORDNET"
WORDNET_DIRS = ("/usr/share/wordnet",)
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}

# TextFooler's stop words, in short: function words are never replaced
STOP_WORDS = frozenset(
    """a about above across after afterwards again against ain all almost alone along already also although am
    among amongst an and another any anyhow anyone anything anyway anywhere are aren aren't around as at back be
    became because become becomes becoming been before beforehand behind being below beside besides between
    beyond both but by can cannot could couldn couldn't d didn didn't doesn doesn't don don't down due during
    either else elsewhere empty enough even ever everyone everything everywhere except first for former formerly
    from hadn hadn't hasn hasn't haven haven't he hence her here hereafter hereby herein hereupon hers herself
    him himself his how however hundred i if in indeed into is isn isn't it it's its itself just latter latterly
    least ll may me meanwhile mightn mightn't mine more moreover most mostly must mustn mustn't my myself
    namely needn needn't neither never nevertheless next no nobody none noone nor not nothing now nowhere o of
    off on once one only onto or other others otherwise our ours ourselves out over per please s same shan
    shan't she she's should've shouldn shouldn't somehow something sometime somewhere such t than that that'll
    the their theirs them themselves then thence there thereafter thereby therefore therein thereupon these they
    this those through throughout thru thus to too toward towards under unless until up upon used ve was wasn
    wasn't we were weren weren't what whatever when whence whenever where whereafter whereas whereby wherein
    whereupon wherever whether which while whither who whoever whole whom whose why with within without won
    won't would wouldn wouldn't y yet you you'd you'll you're you've your yours yourself yourselves""".split()
)


def wordnet_dir() -> Path | None:
    """The WordNet folder: $DYNASCOPE_WORDNET when set (a folder without the files turns WordNet off), else
    /usr/share/wordnet when it holds the files."""
    named = os.environ.get(WORDNET_ENV)
    for candidate in (named,) if named is not None else WORDNET_DIRS:
        if candidate and (Path(candidate) / "index.noun").is_file():
            return Path(candidate)
    return None


class WordNet:
    """Lemmas -> synonyms (the other lemmas of the word's synsets) and the parts of speech a lemma has."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index: dict[str, dict[str, list[int]]] = {}  # lemma -> pos -> synset offsets
        for pos, name in POS_FILES.items():
            with open(folder / f"index.{name}", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith(" "):
                        continue  # the licence header
                    parts = line.split()
                    n_synsets, n_pointers = int(parts[2]), int(parts[3])
                    offsets = [int(x) for x in parts[6 + n_pointers : 6 + n_pointers + n_synsets]]
                    self.index.setdefault(parts[0], {})[pos] = offsets
        self._data: dict[str, bytes] = {}

    def pos_of(self, word: str) -> set[str]:
        return set(self.index.get(word.lower(), {}))

    def _synset(self, pos: str, offset: int) -> tuple[list[str], list[tuple[str, str, int]]]:
        """A synset's words and its pointers (symbol, pos, offset) from its line in data.<pos>."""
        data = self._data.get(pos)
        if data is None:
            data = self._data[pos] = (self.folder / f"data.{POS_FILES[pos]}").read_bytes()
        end = data.index(b"\n", offset)
        parts = data[offset:end].decode("utf-8", "replace").split()
        count = int(parts[3], 16)
        words = [w.split("(")[0].lower() for w in parts[4 : 4 + 2 * count : 2]]
        at = 4 + 2 * count
        pointers = []
        for k in range(int(parts[at])):
            symbol, target, target_pos = parts[at + 1 + 4 * k : at + 4 + 4 * k]
            pointers.append((symbol, "a" if target_pos == "s" else target_pos, int(target)))
        return words, pointers

    def _synset_words(self, pos: str, offset: int) -> list[str]:
        return self._synset(pos, offset)[0]

    def antonyms(self, word: str) -> set[str]:
        """Words of the synsets that the word's synsets point to as antonyms ('!')."""
        out: set[str] = set()
        for pos, offsets in self.index.get(word.lower(), {}).items():
            for offset in offsets:
                for symbol, target_pos, target in self._synset(pos, offset)[1]:
                    if symbol == "!" and target_pos in POS_FILES:
                        out.update(self._synset_words(target_pos, target))
        return out

    def synonyms(self, word: str) -> list[str]:
        """Single-word synonyms of `word` over all its senses, most frequent sense first, without the word."""
        out: list[str] = []
        for pos, offsets in self.index.get(word.lower(), {}).items():
            for offset in offsets:
                out += [w for w in self._synset_words(pos, offset) if "_" not in w and "-" not in w]
        return [w for w in dict.fromkeys(out) if w != word.lower() and w.isalpha()]


@lru_cache(maxsize=1)
def load_wordnet() -> WordNet | None:
    folder = wordnet_dir()
    return WordNet(folder) if folder is not None else None


class EmbeddingNeighbours:
    """The nearest whole-word tokens of a word in the encoder's input embeddings (cosine)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        vocab: dict[str, int] = tokenizer.get_vocab()
        words = sorted(
            (w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 2), key=vocab.__getitem__
        )
        self.words = words
        self.row = {w: i for i, w in enumerate(words)}
        with torch.no_grad():
            weight = model.get_input_embeddings().weight.detach().float().cpu()
            emb = weight[torch.tensor([vocab[w] for w in words])]
            self.matrix = torch.nn.functional.normalize(emb, dim=1).numpy()

    def neighbours(self, word: str, k: int, min_cos: float) -> list[str]:
        i = self.row.get(word.lower())
        if i is None:
            return []
        cos = self.matrix @ self.matrix[i]
        top = np.argpartition(-cos, k + 1)[: k + 1]
        top = top[np.argsort(-cos[top])]
        return [self.words[j] for j in top if j != i and cos[j] >= min_cos][:k]


class SentenceEncoder:
    """Sentence similarity: cosine of the MiniLM sentence encoder's mean-pooled, normalised embeddings (the
    pretrained model the runs start from, all-MiniLM-L6-v2, which was trained for exactly this)."""

    def __init__(self, path: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def embed(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        out = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"][:, :, None].float()
        pooled = (out * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=1).numpy()

    def similarity(self, original: str, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        emb = self.embed([original, *texts])
        return emb[1:] @ emb[0]  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def default_sentence_encoder() -> SentenceEncoder:
    from engine.training.config import DEFAULT_MODEL
    from engine.training.model import resolve_model_path

    return SentenceEncoder(resolve_model_path(DEFAULT_MODEL))
