"""Writes the bundled smoke samples for the encoder text tasks (taskcli/samples/*.jsonl).

Deterministic (fixed seed): re-running it reproduces the committed files byte for byte.
    python scripts/make_text_samples.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "taskcli" / "samples"

PEOPLE = ["Alice Martin", "Bob Stone", "Clara Diaz", "David Chen", "Emma Weber", "Farid Khan", "Grace Hall",
          "Hiro Tanaka", "Ines Duarte", "Jonas Berg", "Karin Lund", "Liam Walsh"]
PLACES = ["Paris", "Berlin", "Tokyo", "Lisbon", "Oslo", "Madrid", "Toronto", "Nairobi", "Sydney", "Chicago"]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Hooli", "Vandelay Industries", "Stark Bank", "Wayne Foods"]

NER_TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .",
    "{PER} moved to {LOC} last year .",
    "{ORG} opened a new office in {LOC} .",
    "Yesterday {PER} met {PER2} in {LOC} .",
    "{PER} joined {ORG} as an engineer .",
    "The team from {ORG} visited {LOC} on Monday .",
    "{PER} said {ORG} will grow in {LOC} .",
    "Shares of {ORG} rose after {PER} spoke .",
]

POSITIVE = ["a wonderful film with a warm heart", "great acting and a clever story", "I loved every minute of it",
            "truly delightful and funny", "an excellent and moving performance", "the best meal I have had all year",
            "friendly staff and superb service", "beautiful music and a happy ending", "a brilliant , joyful ride",
            "fantastic value , would buy again", "sharp writing and lovely characters", "pure fun from start to end"]
NEGATIVE = ["a dull film with no heart", "terrible acting and a silly story", "I hated every minute of it",
            "truly boring and painful", "an awful and lifeless performance", "the worst meal I have had all year",
            "rude staff and slow service", "ugly music and a sad mess", "a tedious , gloomy ride",
            "poor value , never again", "lazy writing and flat characters", "a waste of time from start to end"]
OPENERS = ["", "honestly , ", "overall , ", "in short , ", "well , "]


def ner_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        template = rng.choice(NER_TEMPLATES)
        per, per2 = rng.sample(PEOPLE, 2)
        fill = {"PER": per, "PER2": per2, "LOC": rng.choice(PLACES), "ORG": rng.choice(ORGS)}
        tokens, tags = [], []
        for piece in template.split():
            if piece.startswith("{"):
                key = piece.strip("{}")
                label = "PER" if key.startswith("PER") else key
                for k, word in enumerate(fill[key].split()):
                    tokens.append(word)
                    tags.append(("B-" if k == 0 else "I-") + label)
            else:
                tokens.append(piece)
                tags.append("O")
        rows.append({"tokens": tokens, "ner_tags": tags})
    return rows


def sentiment_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        text = rng.choice(OPENERS) + rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        rows.append({"text": text[0].upper() + text[1:] + " .", "label": label})
    return rows


QA_FACTS = [
    ("{PER} was born in {LOC} and later worked for {ORG} .", [
        ("Where was {PER} born ?", "{LOC}"), ("Who did {PER} work for ?", "{ORG}")]),
    ("{ORG} was founded in {YEAR} by {PER} in {LOC} .", [
        ("When was {ORG} founded ?", "{YEAR}"), ("Who founded {ORG} ?", "{PER}")]),
    ("The {COLOR} car belongs to {PER} , who lives in {LOC} .", [
        ("What color is the car of {PER} ?", "{COLOR}"), ("Where does {PER} live ?", "{LOC}")]),
]
COLORS = ["red", "blue", "green", "yellow", "black", "white"]


def qa_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    while len(rows) < n:
        context_t, questions = rng.choice(QA_FACTS)
        fill = {"PER": rng.choice(PEOPLE), "LOC": rng.choice(PLACES), "ORG": rng.choice(ORGS),
                "YEAR": str(rng.randint(1900, 2020)), "COLOR": rng.choice(COLORS)}
        filler = rng.choice(["It is a quiet story .", "Nobody remembers the weather that day .", ""])
        context = (filler + " " + context_t.format(**fill)).strip()
        q_t, a_t = rng.choice(questions)
        answer = a_t.format(**fill)
        start = context.index(answer)
        rows.append({"id": f"q{len(rows):03d}", "question": q_t.format(**fill), "context": context,
                     "answers": {"text": [answer], "answer_start": [start]}})
    return rows


def similarity_rows(rng: random.Random, n: int) -> list[dict]:
    """Sentence pairs scored 0-5 like STS-B: the same review (5), the same review reworded by its opener (4),
    another review of the same polarity (2), the opposite polarity (1), and a news sentence (0)."""
    rows = []
    kinds = [(5.0, "same"), (4.0, "opener"), (2.0, "polarity"), (1.0, "opposite"), (0.0, "news")]
    for i in range(n):
        score, kind = kinds[i % len(kinds)]
        pool, other = (POSITIVE, NEGATIVE) if rng.random() < 0.5 else (NEGATIVE, POSITIVE)
        first = rng.choice(pool)
        if kind == "same":
            second = first
        elif kind == "opener":
            second = rng.choice(OPENERS[1:]) + first
        elif kind == "polarity":
            second = rng.choice([s for s in pool if s != first])
        elif kind == "opposite":
            second = rng.choice(other)
        else:
            second = rng.choice(NER_TEMPLATES).format(PER=rng.choice(PEOPLE), PER2=rng.choice(PEOPLE),
                                                      ORG=rng.choice(ORGS), LOC=rng.choice(PLACES))
        second = second.rstrip(" .")
        rows.append({"text": first[0].upper() + first[1:] + " .", "text_pair": second[0].upper() + second[1:] + " .",
                     "label": score})
    return rows


def write(name: str, rows: list[dict]) -> None:
    path = OUT / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {path} ({len(rows)} rows)")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write("text-classification.jsonl", sentiment_rows(random.Random(1), 48))
    write("token-classification.jsonl", ner_rows(random.Random(2), 48))
    write("question-answering.jsonl", qa_rows(random.Random(3), 48))
    write("text-similarity.jsonl", similarity_rows(random.Random(4), 40))
