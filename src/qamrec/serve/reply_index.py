"""An index of what human recommenders said: recommender utterances of training dialogues, movies as slots.

Each :class:`Utterance` is a recommender turn of a training dialogue (ReDial's raw dialogues: the published
validation subsets and ``train_extra/``; INSPIRED's train split) with every movie it names replaced by the slot
:data:`SLOT`, and the conversation before it (:func:`~qamrec.models.query.context_text`, as the model's training
examples read it). The contexts are embedded with the project's text encoder (through the embedding cache, so
the contexts the model trained on are not encoded again) and the index answers a query embedding with the
utterances whose context is closest (cosine). The index is cached under ``$QAMREC_HOME/cache/replies/`` (float16
vectors as ``.npy`` and the utterances as JSON, both written atomically) by a digest of its inputs.

Only utterances that name a movie (one to :data:`MAX_SLOTS` slots) and read as templates (:func:`is_template`)
are kept: the reply always recommends, and a template with a person, a year or a number in it would state
something about the wrong movie once its slot is filled.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qamrec.io import atomic_path, atomic_write_text, iter_jsonl
from qamrec.models.query import context_text

__all__ = ["SLOT", "MAX_SLOTS", "Utterance", "ReplyIndex", "is_template", "redial_dialogues", "inspired_dialogues",
           "utterances", "slot_redial", "slot_names"]

#: the movie slot (the token UniCRS's processed responses use)
SLOT = "<movie>"
#: templates with more slots than this are not kept
MAX_SLOTS = 3

_MENTION = re.compile(r"@(\d+)")
#: words that may be capitalized inside a template without naming anyone
_CAPS_OK = {"i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "oh", "yes", "no", "hi", "hello", "hey", "have",
            "it", "it's", "if", "you", "the", "that", "this", "what", "how", "do", "did", "and", "but", "so", "or",
            "well", "great", "sure", "also", "another", "a", "an", "maybe", "then", "there", "they", "those",
            "good", "lol", "haha", "thanks", "thank", "awesome", "cool", "nice", "wow", "yeah", "in", "my", "for",
            "one", "some", "any", "would", "will", "can", "could", "are", "is", "was", "its", "not",
            "definitely", "perfect", "absolutely", "alright", "all", "right", "hmm", "ah", "me", "we",
            "let", "let's", "try", "check", "watch", "see", "seen", "as", "just", "love", "like", "really",
            "probably", "personally", "honestly", "actually", "anyway", "ever", "to", "too", "with", "on", "at",
            "your", "since", "because", "when", "either", "both", "bye", "goodbye", "enjoy", "glad", "oops"}


#: words that state something about a movie the slot's movie may not have (its age, its source, its people,
#: its awards, its place in a series): a template with one is not kept
_UNCHECKABLE = frozenset("""recent recently new newer newest latest old older oldest classic classics sequel sequels
prequel prequels series trilogy remake remakes reboot original book books novel novels based true story oscar oscars
award awards won nominated starring stars star actor actors actress actresses director directed directs cast plays
played version part franchise marvel disney pixar dc netflix hbo theater theaters theatre cinema cinemas trailer
box released release came out year years decade decades century era musical documentary animated cartoon cartoons
anime foreign subtitles subtitled british french japanese korean indian spanish italian german chinese""".split())


@dataclass(frozen=True)
class Utterance:
    """A recommender's utterance with its movies as slots, and the conversation before it."""

    template: str
    slots: int
    context: str
    source: str  # "redial" or "inspired"
    dialogue: str


def is_template(text: str) -> bool:
    """Whether a slotted utterance can be filled with any movie: 1..MAX_SLOTS slots, no digits, no capitalized
    word (a name) but at the start of a sentence or a common one, no word that states what we cannot check
    (a movie's age, source, people, awards or series: "a recent one", "based on the book", "the sequel"),
    3..40 words, no URL."""
    n = text.count(SLOT)
    if not 1 <= n <= MAX_SLOTS or any(c.isdigit() for c in text) or "http" in text or "@" in text:
        return False
    words = text.replace(SLOT, " ").split()
    if not 3 <= len(text.split()) <= 40:
        return False
    if any(w.strip("\"'()[],.!?;:-*").lower() in _UNCHECKABLE for w in words):
        return False
    start = True
    for w in words:
        core = w.strip("\"'()[],.!?;:-*")
        if core and core[0].isupper() and not start and core.lower() not in _CAPS_OK:
            return False
        start = w.endswith((".", "!", "?"))
    return True


def slot_redial(text: str) -> tuple[str, int]:
    """A raw ReDial message (movies as ``@<id>``) with every mention as :data:`SLOT`; and how many."""
    out, n = _MENTION.subn(SLOT, text)
    return " ".join(out.split()), n


def slot_names(text: str, names: Iterable[str]) -> tuple[str, int]:
    """``text`` with each of ``names`` (longest first, whole words, case-insensitive) as :data:`SLOT`."""
    n = 0
    for name in sorted({x.strip() for x in names if x and len(x.strip()) > 1}, key=len, reverse=True):
        text, k = re.subn(rf"(?<!\w){re.escape(name)}(?!\w)", SLOT, text, flags=re.IGNORECASE)
        n += k
    return " ".join(text.split()), n


#: one dialogue: its id and (role, shown text, slotted text, slots) per turn
Dialogue = tuple[str, list[tuple[str, str, str, int]]]


def redial_dialogues(raw: Path) -> Iterator[Dialogue]:
    """ReDial's raw dialogues (``redial/raw/*.jsonl``, then ``redial/train_extra/*.jsonl``), each conversation
    id once, the first copy kept."""
    files = sorted((raw / "redial" / "raw").glob("*.jsonl")) + sorted((raw / "redial" / "train_extra").glob("*.jsonl"))
    seen: set[str] = set()
    for path in files:
        for _, d in iter_jsonl(path):
            did = str(d.get("conversationId", ""))
            if not did or did in seen:
                continue
            seen.add(did)
            names = {k: str(v or "").strip() for k, v in (d.get("movieMentions") or {}).items()}
            seeker = d.get("initiatorWorkerId")
            turns = []
            for m in d.get("messages") or ():
                text = str(m.get("text") or "")
                shown = " ".join(_MENTION.sub(lambda mt: " ".join(names.get(mt.group(1), "").split())
                                              or mt.group(0), text).split())
                slotted, n = slot_redial(text)
                turns.append(("seeker" if m.get("senderWorkerId") == seeker else "recommender", shown, slotted, n))
            yield did, turns


def inspired_dialogues(raw: Path, file: str = "train_data_dbpedia.jsonl") -> Iterator[Dialogue]:
    """INSPIRED's dialogues of one UniCRS file (default: the train split), movie names as slots."""
    for line, d in iter_jsonl(raw / "inspired" / "unicrs" / file):
        turns = []
        for t in d if isinstance(d, list) else ():
            text = " ".join(str(t.get("text") or "").split())
            slotted, n = slot_names(text, t.get("movie_name") or ())
            role = "recommender" if str(t.get("role", "")).upper() == "RECOMMENDER" else "seeker"
            turns.append((role, text, slotted, n))
        yield f"inspired:{line}", turns


def utterances(dialogues: Iterable[Dialogue], source: str, exclude: Callable[[str], bool] | None = None,
               ) -> list[Utterance]:
    """The template utterances of recommender turns (with a context) of ``dialogues``; a dialogue for which
    ``exclude(dialogue id)`` holds is left out."""
    out: list[Utterance] = []
    for did, turns in dialogues:
        if exclude is not None and exclude(did):
            continue
        context: list[str] = []
        for role, shown, slotted, n in turns:
            if role == "recommender" and n and context and is_template(slotted):
                out.append(Utterance(slotted, n,
                                     context_text(context), source, did))
            context.append(shown)
    return out


class ReplyIndex:
    """Utterances and their contexts' unit embeddings ``[n, dim]``; :meth:`nearest` retrieves by cosine."""

    def __init__(self, items: Sequence[Utterance], vectors: np.ndarray) -> None:
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} utterances but {len(vectors)} vectors")
        self.items = list(items)
        v = np.asarray(vectors, dtype=np.float32)
        self.vectors = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    def __len__(self) -> int:
        return len(self.items)

    def nearest(self, query: np.ndarray, k: int = 20) -> list[tuple[Utterance, float]]:
        """The ``k`` utterances whose context is closest to ``query`` (an embedding ``[dim]`` or ``[1, dim]``),
        closest first, with their cosine."""
        if not self.items:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-9)
        s = self.vectors @ q
        k = min(k, len(s))
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return [(self.items[i], float(s[i])) for i in top.tolist()]

    @staticmethod
    def digest(items: Sequence[Utterance], model: str) -> str:
        h = hashlib.sha256(model.encode())
        for u in items:
            h.update(json.dumps(asdict(u), sort_keys=True).encode())
        return h.hexdigest()[:20]

    @classmethod
    def build(cls, items: Sequence[Utterance], encode: Callable[[list[str]], np.ndarray], cache: Path | None = None,
              model: str = "") -> ReplyIndex:
        """Embed the contexts of ``items`` with ``encode`` (its own cache in front), or read them from
        ``cache/<digest>.npy`` when an index of the same utterances was built before."""
        path = cache / f"{cls.digest(items, model)}.npy" if cache is not None else None
        if path is not None and path.is_file():
            try:
                vec = np.load(path, allow_pickle=False)
                if vec.shape[0] == len(items):
                    return cls(items, vec.astype(np.float32))
            except (OSError, ValueError):
                pass  # damaged: built again below
        vec = np.asarray(encode([u.context for u in items]), dtype=np.float32) if items else np.zeros((0, 1))
        if path is not None:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, vec.astype(np.float16), allow_pickle=False)
            atomic_write_text(path.with_suffix(".json"), json.dumps([asdict(u) for u in items], ensure_ascii=False))
        return cls(items, vec)
