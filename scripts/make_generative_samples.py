"""Writes the bundled smoke samples of the generative tasks (taskcli/samples/).

text-generation.txt and fill-mask.txt (raw text, one line per row), summarization.jsonl
({"document", "summary"}) and translation.jsonl (WMT-style nested {"translation": {"en", "fr"}}).
Deterministic (fixed seed): re-running it reproduces the committed files byte for byte.
    python scripts/make_generative_samples.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "taskcli" / "samples"

NAMES = ["Alice", "Bob", "Clara", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Karin", "Liam"]
PLACES = ["market", "library", "harbour", "station", "garden", "bakery", "museum", "river"]
ITEMS = ["apples", "books", "candles", "maps", "letters", "shells", "stamps", "flowers"]
WEATHER = ["sunny", "cold", "windy", "quiet", "rainy", "warm"]


def lm_lines(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        name, place, item, weather = rng.choice(NAMES), rng.choice(PLACES), rng.choice(ITEMS), rng.choice(WEATHER)
        k = rng.randint(2, 9)
        lines.append(rng.choice([
            f"{name} walked to the {place} and bought {k} {item}. The day was {weather}.",
            f"On a {weather} morning, {name} went to the {place} to look for {item}.",
            f"The {place} was {weather} today, so {name} stayed at home with {k} {item}.",
            f"{name} told a friend that the {place} sells the best {item} in town.",
        ]))
    return lines


CITIES = ["Leeds", "Cardiff", "Bristol", "York", "Dundee", "Exeter", "Bath", "Derby"]
EVENTS = [("opened a bakery", "bakery"), ("held a concert", "concert"), ("ran a marathon", "race"),
          ("started a market", "market"), ("painted a mural", "mural"), ("built a bridge", "bridge")]
JOBS = ["teacher", "farmer", "nurse", "builder", "chef", "pilot"]
DAYS = ["Monday", "Tuesday", "Friday", "Saturday", "Sunday"]


def summaries(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        name, city, (event, thing), job, day = (rng.choice(NAMES), rng.choice(CITIES), rng.choice(EVENTS),
                                               rng.choice(JOBS), rng.choice(DAYS))
        visitors = rng.choice([50, 120, 300, 800, 2000])
        document = (f"{name}, a {job} from {city}, {event} on {day}. The {thing} drew {visitors} visitors, "
                    f"according to local officials. Organisers said they were pleased with the turnout. "
                    f"{name} plans to return next year.")
        summary = f"{name} {event} in {city} on {day}, drawing {visitors} visitors."
        rows.append({"document": document, "summary": summary})
    return rows


SUBJECTS = [("the cat", "le chat"), ("the dog", "le chien"), ("my sister", "ma sœur"),
            ("the teacher", "le professeur"), ("our neighbour", "notre voisin"), ("the child", "l'enfant")]
VERBS = [("eats", "mange"), ("sees", "voit"), ("likes", "aime"), ("buys", "achète"), ("draws", "dessine")]
OBJECTS = [("an apple", "une pomme"), ("the red car", "la voiture rouge"), ("a big house", "une grande maison"),
           ("the old book", "le vieux livre"), ("a small bird", "un petit oiseau"), ("the blue sea", "la mer bleue")]
TIMES = [("every morning", "chaque matin"), ("today", "aujourd'hui"), ("in the evening", "le soir"),
         ("on Sunday", "le dimanche")]


def translations(rng: random.Random, n: int) -> list[dict]:
    rows, seen = [], set()
    while len(rows) < n:
        (s_en, s_fr), (v_en, v_fr), (o_en, o_fr), (t_en, t_fr) = (rng.choice(SUBJECTS), rng.choice(VERBS),
                                                                  rng.choice(OBJECTS), rng.choice(TIMES))
        en = f"{s_en[0].upper()}{s_en[1:]} {v_en} {o_en} {t_en}."
        if en in seen:
            continue
        seen.add(en)
        fr = f"{s_fr[0].upper()}{s_fr[1:]} {v_fr} {o_fr} {t_fr}."
        rows.append({"translation": {"en": en, "fr": fr}})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "text-generation.txt").write_text("\n".join(lm_lines(random.Random(1), 48)) + "\n", encoding="utf-8")
    (OUT / "fill-mask.txt").write_text("\n".join(lm_lines(random.Random(2), 48)) + "\n", encoding="utf-8")
    write_jsonl(OUT / "summarization.jsonl", summaries(random.Random(3), 32))
    write_jsonl(OUT / "translation.jsonl", translations(random.Random(4), 48))


if __name__ == "__main__":
    main()
