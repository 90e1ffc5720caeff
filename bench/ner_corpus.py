"""A synthetic NER corpus (PER/LOC/ORG, IOB tags) for training a benchmark model offline.

Why synthetic: no NER corpus big enough is bundled and the benchmark runs without the Hub. Sentences are clauses from
templates joined to mixed lengths (as bench_ner_infer.sentences: 4 to 60+ words), each name slot filled from name
lists (first names x surnames, places, company stems x tails) or with random letter strings. The lists are cut 70/30:
training sentences take the first 70% on half their slots (SEEN_SHARE) and random strings on the rest; the validation
split is new sentences with those listed names (a real test set, too, repeats some of its training names),
and FOLDER-unseen.jsonl new sentences with the held-out 30%, which no training sentence has: what the model learnt of
the context alone. `vocab_texts` is the corpus without its names and `name_pieces` every pair of letters: a tokenizer
built from both splits every name into two-letter pieces, listed, held-out and random alike (no name is a whole token).
"""

from __future__ import annotations

import json
import random
import string
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
# the eval lengths: trained on 4-20 words only (to make steps cheaper), a model scored F1 0.8 on 8-word sentences
# and 0.35-0.4 on 35-word ones (its positions past ~60 tokens were never trained)
TRAIN_LENGTHS = LENGTHS
JOINERS = ("and", ",", "while", "after", "because")
# Half the training slots take names from the lists' first 70%, the others random letter strings. Measured (800
# steps, bench_export defaults): eval entity F1 0.90-0.92 on sentences with those names, 0.42-0.52 with held-out
# ones; trained on random names only, held-out-name F1 was 0.41 after 300 steps (names are learnt far faster than
# context).
SEEN_SHARE = 0.5


def _names(held_out: bool) -> dict[str, list[str]]:
    """Each list's first 70% (held_out False), or the rest (True: the eval split's and the timed sentences' names)."""
    def part(items):
        cut = int(len(items) * 0.7)
        return list(items[cut:] if held_out else items[:cut])

    stems = part(ORG_STEMS)
    return {"PER": [f"{f} {l}" for f in part(FIRST) for l in part(LAST)], "LOC": part(PLACES),
            "ORG": [f"{s} {t}".strip() for s in stems for t in ORG_TAILS]}


def _pseudo_names(seed: int, n: int = 2000) -> dict[str, list[str]]:
    """Training names: random letter strings (3-9 letters), so the model cannot learn names, only the context and that
    a name is not a template word; a few name-list lookalikes aside, none is an eval name (checked)."""
    rng = random.Random(seed)

    def word() -> str:
        return rng.choice(string.ascii_uppercase) + "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8)))

    names = {"PER": [f"{word()} {word()}" for _ in range(n)], "LOC": [word() for _ in range(n)],
             "ORG": [f"{word()} {rng.choice(ORG_TAILS)}".strip() for _ in range(n)]}
    held = {w for group in _names(True).values() for name in group for w in name.split()} - set(ORG_TAILS)
    return {kind: [x for x in group if not held & set(x.split())] for kind, group in names.items()}


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


def _mixed(random_names: dict[str, list[str]], seen_share: float) -> dict[str, list[str]]:
    """The random names plus the lists' first 70%, repeated so that a slot draws a list name with about seen_share."""
    listed = _names(False)
    out = {}
    for kind, group in random_names.items():
        want = round(len(group) * seen_share / (1 - seen_share))
        out[kind] = group + (listed[kind] * (want // len(listed[kind]) + 1))[:want]
    return out


def rows(n: int, held_out: bool | None, seed: int, lengths=LENGTHS, seen_share: float = 0.0) -> list[dict]:
    """n sentences with the held-out names (True), the lists' first 70% (False) or random ones (None; with seen_share
    of the slots filled from the lists' first 70% instead)."""
    rng = random.Random(seed)
    names = _mixed(_pseudo_names(seed), seen_share) if held_out is None else _names(held_out)
    return [dict(zip(("tokens", "ner_tags"), sentence(rng, names, lengths))) for _ in range(n)]


def write(folder: Path, n_train: int, n_eval: int, seen_share: float = SEEN_SHARE) -> Path:
    """folder/train.jsonl and folder/validation.jsonl (taskcli's split names), and FOLDER-unseen.jsonl beside it:
    n_eval sentences with held-out names. The validation split's names are the ones training has (seen_share > 0),
    or held-out ones too (0). Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": rows(n_train, None, 0, TRAIN_LENGTHS, seen_share),
              "validation": rows(n_eval, held_out=not seen_share, seed=3 if seen_share else 1)}
    for name, data in splits.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    unseen = rows(n_eval, True, 1)
    folder.with_name(f"{folder.name}-unseen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in unseen))
    return folder


def vocab_texts() -> list[str]:
    """The templates' words without the names: the tokenizer's vocabulary source (names become word pieces)."""
    return [" ".join(w for w in c.split() if not w.startswith("{")) for c in CLAUSES] + [" ".join(JOINERS) + " ."]


def name_pieces() -> list[str]:
    """Every pair of lower-case letters, as a word start and as a "##" continuation: names become letter pairs."""
    pairs = [a + b for a in string.ascii_lowercase for b in string.ascii_lowercase]
    return pairs + [f"##{p}" for p in pairs]
