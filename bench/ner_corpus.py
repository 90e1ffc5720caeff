"""A synthetic NER corpus (PER/LOC/ORG, IOB tags) for training a benchmark model offline.

Why synthetic: no NER corpus big enough is bundled and the benchmark runs without the Hub. Sentences are clauses from
templates joined to mixed lengths (as bench_ner_infer.sentences: 4 to 60+ words); the slots are filled from name
lists split in two, so the eval split's names never occur in training (the model has to read the context and the
shape of a name, not recall the name). `vocab_texts` is the corpus without its names: a tokenizer built from it splits
every name into pieces, the train split's and the eval split's alike.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FIRST = ("Alice Bruno Chiara Dmitri Elena Farid Greta Hiroshi Ingrid Jamal Keiko Lars Mara Nikolai Olga Pedro Quinn "
         "Rosa Sven Tamara Umar Vera Wen Ximena Yusuf Zofia Anders Bea Carlos Dana Emil Fatima Gustav Hana Ivan Julia "
         "Kofi Lena Mateo Nadia").split()
LAST = ("Martin Okafor Rossi Ivanova Schmidt Tanaka Haddad Larsen Moreau Novak Silva Kowalski Nguyen Dubois Fischer "
        "Garcia Horvat Jensen Kim Lopez Mendes Nakamura Olsen Petrov Quist Reyes Sato Torres Ueda Varga Weber Yilmaz "
        "Zhang Abbott Becker Costa Duarte Eriksen Falk Gallo").split()
PLACES = ("Paris Berlin Tokyo Lagos Lima Oslo Madrid Cairo Dublin Seoul Vienna Nairobi Quito Hanoi Prague Lisbon "
          "Zagreb Manila Helsinki Bogota Denver Perth Geneva Porto Krakow Osaka Accra Riga Tunis Quebec Malmo Bergen "
          "Leeds Turin Gdansk Sapporo Kumasi Arequipa Tampere Aarhus").split()
ORG_STEMS = ("Globex Acme Initech Umbrella Hooli Vandelay Stark Wayne Cyberdyne Soylent Tyrell Wonka Oscorp "
             "Nakatomi Gringotts Monarch Virtucon Massive Dynamic Aperture Zorg Sirius Abstergo Veidt Ollivander "
             "Blackmesa Rekall Paper Prestige Duff Krusty Gekko Pied Dunder Sterling Bluth Lacroix Contoso Fabrikam "
             "Northwind").split()
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
ORG_TAILS = ("Corp", "Group", "Bank", "Airlines", "Labs", "Holdings", "Motors", "Media", "")

CLAUSES = (
    "{PER} works for {ORG} in {LOC}", "{PER} visited {LOC} on Monday", "shares of {ORG} rose sharply",
    "{ORG} opened a new office in {LOC}", "{PER} met {PER} in {LOC}", "the team from {ORG} said the deal would grow",
    "{PER} , the chief executive of {ORG} , said so", "investors in {LOC} bought {ORG} stock",
    "{PER} moved to {LOC} last year", "the mayor of {LOC} , {PER} , spoke to reporters",
    "{ORG} hired {PER} as its new director", "{PER} flew from {LOC} to {LOC}",
    "a spokesman for {ORG} declined to comment",
    "{PER} told reporters in {LOC} that prices would fall", "{ORG} and {ORG} agreed to merge",
    "the market fell after the report", "prices rose again this week", "the talks ended without a deal",
    "analysts expect a weak quarter", "the new rules take effect in May",
)
LENGTHS = (4, 8, 12, 20, 35, 60)  # target words a sentence, as bench_ner_infer.sentences
TRAIN_LENGTHS = (4, 8, 12, 20)  # training steps on 2 CPU cores cost their tokens: the long ones are left to eval
JOINERS = ("and", ",", "while", "after", "because")


def _names(held_out: bool) -> dict[str, list[str]]:
    """Each list's first 70% for training, the rest for eval: no eval name is seen in training."""
    def part(items):
        cut = int(len(items) * 0.7)
        return list(items[cut:] if held_out else items[:cut])

    stems = part(ORG_STEMS)
    return {"PER": [f"{f} {l}" for f in part(FIRST) for l in part(LAST)], "LOC": part(PLACES),
            "ORG": [f"{s} {t}".strip() for s in stems for t in ORG_TAILS]}


def _clause(rng: random.Random, names: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    tokens, tags = [], []
    for word in rng.choice(CLAUSES).split():
        kind = word[1:-1] if word.startswith("{") else None
        if kind is None:
            tokens.append(word)
            tags.append("O")
            continue
        parts = rng.choice(names[kind]).split()
        tokens += parts
        tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(parts) - 1)
    return tokens, tags


def sentence(rng: random.Random, names: dict[str, list[str]], lengths=LENGTHS) -> tuple[list[str], list[str]]:
    """Clauses joined until the sentence has at least a drawn number of words, then a full stop."""
    target = rng.choice(lengths)
    tokens, tags = _clause(rng, names)
    while len(tokens) < target:
        more, more_tags = _clause(rng, names)
        tokens += [rng.choice(JOINERS)] + more
        tags += ["O"] + more_tags
    return tokens + ["."], tags + ["O"]


def rows(n: int, held_out: bool, seed: int, lengths=LENGTHS) -> list[dict]:
    rng, names = random.Random(seed), _names(held_out)
    return [dict(zip(("tokens", "ner_tags"), sentence(rng, names, lengths))) for _ in range(n)]


def write(folder: Path, n_train: int, n_eval: int) -> Path:
    """folder/train.jsonl and folder/validation.jsonl (taskcli's split names); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("train", rows(n_train, False, 0, TRAIN_LENGTHS)), ("validation", rows(n_eval, True, 1))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    return folder


def vocab_texts() -> list[str]:
    """The templates' words without the names: the tokenizer's vocabulary source (names become word pieces)."""
    return [" ".join(w for w in c.split() if not w.startswith("{")) for c in CLAUSES] + [" ".join(JOINERS) + " ."]
