"""Write a recorded replay of the Hugging Face Hub: every repo the shipped recipes name, as a local cache.

    python -m tests.replay.build OUT_DIR        # or: make replay

What is real and what is not (the manifest, ``OUT_DIR/manifest.json``, lists it per repo):

* Real, from ``facts/`` (each fact with the Hub page it was read from): file names, ``config.json``,
  generation/tokenizer/processor configs, dataset layouts (files per revision, the README's ``configs`` and
  ``dataset_info``), split and column names, ClassLabel names, loading-script-only repos.
* Not real: weights are random; layer counts are cut (``CUTS``: depths, never widths) to keep CPU time down;
  vocabularies are re-made locally from the bundled sample texts with the real tokenizer kind and special
  tokens, so token ids in configs are remapped to the local vocabulary; dataset rows are a handful of
  realistic rows, not the data.

The output has the ``HF_HUB_CACHE`` layout (``models--ORG--NAME/refs/<rev>`` + ``snapshots/<commit>/``), so
``from_pretrained`` resolves it offline; ``hubserver.ReplayHub`` serves the same folder over HTTP for
``datasets``, which reads Hub repos only online.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import shutil
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
FACTS = HERE / "facts"
REPO = HERE.parent.parent
SAMPLES = REPO / "taskcli" / "samples"
TEST_DATA = REPO / "tests" / "data"

# Layer-count cuts per model_type (widths, vocab kinds and processors stay real).
CUTS: dict[str, dict] = {
    "bert": {"num_hidden_layers": 2},
    "distilbert": {"n_layers": 2},
    "roberta": {"num_hidden_layers": 2},
    "gpt2": {"n_layer": 2},
    "t5": {"num_layers": 2, "num_decoder_layers": 2},
    "bart": {"encoder_layers": 1, "decoder_layers": 1, "num_hidden_layers": 1},
    "mbart": {"encoder_layers": 1, "decoder_layers": 1, "num_hidden_layers": 1},
    "vit": {"num_hidden_layers": 2},
    "convnext": {"depths": [1, 1, 1, 1]},
    "segformer": {"depths": [1, 1, 1, 1]},
    "glpn": {"depths": [1, 1, 1, 1]},
    "mask2former": {"encoder_layers": 1, "decoder_layers": 2, "backbone_config.depths": [1, 1, 1, 1]},
    "detr": {"encoder_layers": 1, "decoder_layers": 1, "backbone_config.depths": [1, 1, 1, 1]},
    "wav2vec2": {"num_hidden_layers": 2},
    "hubert": {"num_hidden_layers": 2},
    "whisper": {"encoder_layers": 2, "decoder_layers": 2, "num_hidden_layers": 2},
}

# Real ids of the special tokens per tokenizer kind, to move config token ids onto the local vocabulary.
_WORDPIECE_IDS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
_GPT2_IDS = {50256: "<|endoftext|>"}
_ROBERTA_IDS = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", 50264: "<mask>"}
_T5_IDS = {0: "<pad>", 1: "</s>", 2: "<unk>"}
_TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "forced_bos_token_id",
                  "forced_eos_token_id", "sep_token_id", "cls_token_id", "mask_token_id", "unk_token_id",
                  "no_timestamps_token_id", "prev_sot_token_id", "decoder_bos_token_id")


def commit_of(*parts) -> str:
    """A stable fake commit hash for a (repo, revision, content) triple."""
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()


def load_facts(kind: str) -> dict[str, dict]:
    out = {}
    for path in sorted((FACTS / kind).glob("*.yaml")):
        facts = yaml.safe_load(path.read_text())
        facts["_file"] = f"facts/{kind}/{path.name}"
        out[facts["id"]] = facts
    return out


# ----------------------------------------------------------------------------- texts for local vocabularies


def sample_texts() -> list[str]:
    """Every string in the bundled samples and the real-format test files: the local vocabularies' corpus."""
    texts: list[str] = []

    def walk(v):
        if isinstance(v, str):
            texts.append(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    for path in sorted(SAMPLES.glob("*.jsonl")) + sorted(TEST_DATA.rglob("*.json")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                walk(json.loads(line))
            except json.JSONDecodeError:
                texts.append(line)
    for path in sorted(SAMPLES.glob("*.txt")):
        texts += path.read_text(encoding="utf-8").splitlines()
    return [t for t in texts if t.strip()]


# ----------------------------------------------------------------------------- tokenizers


def _train_sentencepiece(texts: list[str], out: Path, model_type: str, vocab_size: int, **ids) -> Path:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, model_type=model_type, vocab_size=vocab_size,
        hard_vocab_limit=False, character_coverage=1.0, minloglevel=2, **ids,
    )
    out.write_bytes(buf.getvalue())
    return out


def make_tokenizer(facts: dict, texts: list[str], snap: Path, tmp: Path):
    """Write the repo's vocabulary files (re-made locally, real kind and special tokens) into `snap`;
    return (tokenizer or None, {real special id: token string}, notes)."""
    import transformers

    tok_facts = facts.get("tokenizer") or {}
    kind = tok_facts.get("kind", "none")
    files = set(facts.get("files") or [])
    model_type = facts["config"]["model_type"]
    tcfg = facts.get("tokenizer_config") or {}
    notes: list[str] = []
    if kind in ("none", None):
        return None, {}, notes
    if kind == "wordpiece":
        from taskcli.tiny.text import wordpiece_vocab

        lower = bool(tcfg.get("do_lower_case", tok_facts.get("lowercase", True)))
        vocab = wordpiece_vocab(texts, lower)
        (snap / "vocab.txt").write_text("".join(f"{t}\n" for t in sorted(vocab, key=vocab.get)), encoding="utf-8")
        cls = transformers.DistilBertTokenizer if model_type == "distilbert" else transformers.BertTokenizer
        tok = cls(vocab=vocab, do_lower_case=lower)
        real_ids = _WORDPIECE_IDS
    elif kind == "bpe":
        from taskcli.tiny.lm import _bpe

        specials = ["<|endoftext|>"] if model_type == "gpt2" else ["<s>", "<pad>", "</s>", "<unk>"]
        vocab, merges = _bpe(texts, specials, 1200)
        if model_type != "gpt2":
            vocab["<mask>"] = len(vocab)
        (snap / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (snap / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
        cls = {"gpt2": transformers.GPT2Tokenizer, "roberta": transformers.RobertaTokenizer,
               "bart": transformers.BartTokenizer}[model_type]
        tok = cls(vocab=vocab, merges=merges)
        real_ids = _GPT2_IDS if model_type == "gpt2" else _ROBERTA_IDS
    elif kind == "sentencepiece-unigram":  # T5: pad 0, eos 1, unk 2, no bos; 100 sentinel ids added by the class
        spiece = _train_sentencepiece(texts, snap / "spiece.model", "unigram", 800, pad_id=0, eos_id=1, unk_id=2,
                                      bos_id=-1)
        tok = transformers.T5Tokenizer(vocab_file=str(spiece), extra_ids=int(tcfg.get("extra_ids", 100)))
        real_ids = _T5_IDS
    elif kind == "sentencepiece-bpe":  # mBART: fairseq ids <s>0 <pad>1 </s>2 <unk>3, then the spm pieces, then codes
        from transformers.models.mbart.tokenization_mbart import FAIRSEQ_LANGUAGE_CODES

        spiece = _train_sentencepiece(texts, snap / "sentencepiece.bpe.model", "bpe", 800)
        tok = transformers.MBartTokenizer(vocab_file=str(spiece), src_lang=tcfg.get("src_lang"),
                                          tgt_lang=tcfg.get("tgt_lang"))
        real_ids = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}
        real_ids.update({250001 + i: code for i, code in enumerate(FAIRSEQ_LANGUAGE_CODES)})
        real_ids[250001 + len(FAIRSEQ_LANGUAGE_CODES)] = "<mask>"
    elif kind == "whisper":
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        from taskcli.tiny.speech import _AFTER_LANGS, whisper_tokenizer

        tok = whisper_tokenizer(texts)
        n_langs = int(facts["config"]["vocab_size"]) - 51765  # 51865 -> 99 languages (v1/v2), 51866 -> 100 (v3)
        names = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in list(LANGUAGES)[:n_langs]],
                 *_AFTER_LANGS]
        real_ids = {50257 + i: name for i, name in enumerate(names)}
        real_ids[50257 + len(names)] = "<|0.00|>"
        notes.append("vocabulary: byte-level BPE of ~650 tokens trained on the bundled samples + Whisper's real "
                     "special tokens (languages in LANGUAGES order) and 1501 timestamps; ids remapped")
    elif kind == "ctc-chars":  # the real character vocabulary is small: keep it as recorded
        vocab = tok_facts.get("vocab")
        if not vocab:
            raise SystemExit(f"{facts['id']}: ctc-chars tokenizer needs tokenizer.vocab in its facts")
        (snap / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        tok = transformers.Wav2Vec2CTCTokenizer(str(snap / "vocab.json"), **{
            k: v for k, v in tcfg.items() if k in ("unk_token", "pad_token", "bos_token", "eos_token",
                                                  "word_delimiter_token", "do_lower_case")})
        real_ids = {i: t for t, i in vocab.items()}
        return tok, real_ids, notes
    else:
        raise SystemExit(f"{facts['id']}: unknown tokenizer kind {kind}")
    if "tokenizer.json" in files or kind in ("whisper",):
        tok.save_pretrained(tmp / "tok")
        for name in ("tokenizer.json",):
            if (tmp / "tok" / name).is_file():
                (snap / name).write_bytes((tmp / "tok" / name).read_bytes())
    if kind == "whisper":  # the real repo's vocab.json/merges.txt/added_tokens.json, as the class writes them
        for name in ("vocab.json", "merges.txt", "added_tokens.json"):
            if (tmp / "tok" / name).is_file():
                (snap / name).write_bytes((tmp / "tok" / name).read_bytes())
    notes.append(f"tokenizer: {kind}, re-made locally ({len(tok)} tokens)")
    return tok, real_ids, notes


def remap_token_ids(cfg: dict, tok, real_ids: dict[int, str], notes: list[str], where: str) -> None:
    """Token ids in a config dict -> ids of the same tokens in the local vocabulary (in place)."""
    if tok is None:
        return

    def one(value):
        if isinstance(value, int) and value in real_ids:
            local = tok.convert_tokens_to_ids(real_ids[value])
            return local if local is not None else value
        return value

    for key in _TOKEN_ID_KEYS:
        value = cfg.get(key)
        if isinstance(value, list):
            cfg[key] = [one(v) for v in value]
        elif isinstance(value, int):
            new = one(value)
            if new == value and value >= len(tok):
                notes.append(f"{where}.{key}={value}: no such token locally, set to null")
                new = None
            cfg[key] = new


def remap_generation_config(gen: dict, tok, real_ids: dict, notes: list[str], decoder_layers: int | None) -> dict:
    gen = copy.deepcopy(gen)
    remap_token_ids(gen, tok, real_ids, notes, "generation_config")
    ids = tok.convert_tokens_to_ids
    if isinstance(gen.get("lang_to_id"), dict):
        gen["lang_to_id"] = {k: ids(k) for k in gen["lang_to_id"]}
    if isinstance(gen.get("task_to_id"), dict):
        gen["task_to_id"] = {k: ids(f"<|{k}|>") for k in gen["task_to_id"]}
    if isinstance(gen.get("forced_decoder_ids"), list):
        gen["forced_decoder_ids"] = [[pos, ids(real_ids[t]) if t in real_ids else t] for pos, t in
                                     gen["forced_decoder_ids"]]
    if gen.get("suppress_tokens"):
        notes.append("generation_config.suppress_tokens: emptied (they name ids of the real vocabulary)")
        gen["suppress_tokens"] = []
    if isinstance(gen.get("begin_suppress_tokens"), list):
        gen["begin_suppress_tokens"] = [ids(real_ids[t]) if t in real_ids else ids("Ġ") for t in
                                        gen["begin_suppress_tokens"]]
    if isinstance(gen.get("alignment_heads"), list) and decoder_layers:
        gen["alignment_heads"] = [[layer, head] for layer, head in gen["alignment_heads"] if layer < decoder_layers]
    return gen


# ----------------------------------------------------------------------------- models


def apply_cuts(cfg: dict, model_type: str) -> list[str]:
    cuts = []
    for dotted, value in CUTS.get(model_type, {}).items():
        node, keys = cfg, dotted.split(".")
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node and node[keys[-1]] != value:
            cuts.append(f"{dotted}: {node[keys[-1]]} -> {value}")
            node[keys[-1]] = value
    return cuts


def build_model_revision(facts: dict, revision: str, rev_facts: dict, texts: list[str], snap: Path, tmp: Path) -> dict:
    import torch
    import transformers

    cfg = copy.deepcopy(rev_facts["config"])
    model_type = cfg["model_type"]
    if isinstance(cfg.get("id2label"), dict) and not isinstance(cfg.get("label2id"), dict):
        cfg["label2id"] = {name: int(i) for i, name in cfg["id2label"].items()}  # facts abbreviate the inverse
    merged = dict(facts, **rev_facts)
    tok, real_ids, notes = make_tokenizer(merged, texts, snap, tmp)
    cuts = apply_cuts(cfg, model_type)
    if tok is not None and "vocab_size" in cfg and merged["tokenizer"]["kind"] != "ctc-chars":
        cuts.append(f"vocab_size: {cfg['vocab_size']} -> {len(tok)} (local vocabulary)")
        cfg["vocab_size"] = len(tok)
        remap_token_ids(cfg, tok, real_ids, notes, "config")  # task_specific_params hold no ids: left as they are
    (snap / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    for key, name in (("tokenizer_config", "tokenizer_config.json"), ("special_tokens_map", "special_tokens_map.json"),
                      ("preprocessor_config", "preprocessor_config.json")):
        value = merged.get(key)
        if value:
            value = {k: v for k, v in value.items() if k != "added_tokens_decoder"}
            (snap / name).write_text(json.dumps(value, indent=2) + "\n")
    gen = merged.get("generation_config")
    if gen:
        if tok is not None:
            gen = remap_generation_config(gen, tok, real_ids, notes, cfg.get("decoder_layers"))
        (snap / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")

    # random weights of the repo's own architecture class, in the repo's own weight format
    config = transformers.AutoConfig.from_pretrained(snap)
    arch = (cfg.get("architectures") or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        cls = transformers.AutoModel
        notes.append(f"architecture {arch} not in transformers: saved as AutoModel")
    torch.manual_seed(0)
    weights = merged.get("weights") or "model.safetensors"
    try:
        model = cls._from_config(config) if hasattr(cls, "_from_config") else cls.from_config(config)
    except ImportError as err:  # e.g. a timm backbone: loading stops here for a user too, before weights are read
        from safetensors.torch import save_file

        save_file({"replay.placeholder": torch.zeros(1)}, snap / "model.safetensors")
        notes.append(f"weights: placeholder only; building the model needs a package missing here "
                     f"({str(err).strip().splitlines()[0][:120]})")
        return {"revision": revision, "cuts": cuts, "notes": notes, "weights": "placeholder", "architecture": arch}
    if weights == "pytorch_model.bin":
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, snap / "pytorch_model.bin")
    else:
        model.save_pretrained(tmp / "model")  # (its config.json is transformers' rewrite: only the weights are kept)
        shutil.move(tmp / "model" / "model.safetensors", snap / "model.safetensors")  # moved, not copied: ~2.5 GB
    params = sum(p.numel() for p in model.parameters())
    return {"revision": revision, "cuts": cuts, "notes": notes, "weights": weights, "parameters": params,
            "architecture": arch}


def write_repo(cache: Path, kind: str, repo_id: str, revision: str, commit: str) -> Path:
    folder = cache / f"{kind}s--{repo_id.replace('/', '--')}"
    ref = folder / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def build_model(cache: Path, facts: dict, texts: list[str], tmp: Path) -> dict:
    revisions = {facts.get("revision", "main"): facts}
    revisions.update(facts.get("other_revisions") or (facts.get("tokenizer") or {}).get("other_revisions") or {})
    out = {"id": facts["id"], "facts": facts["_file"], "sources": facts.get("sources", {}), "revisions": []}
    for revision, rev_facts in revisions.items():
        snap = write_repo(cache, "model", facts["id"], revision, commit_of(facts["id"], revision))
        sub = tmp / revision.replace("/", "_")
        sub.mkdir(parents=True, exist_ok=True)
        out["revisions"].append(build_model_revision(facts, revision, rev_facts, texts, snap, sub))
    return out


# ----------------------------------------------------------------------------- datasets


def parse_features(spec):
    """`facts` feature notation -> datasets.Features (see facts/FORMAT.md)."""
    import datasets

    def one(v):
        if isinstance(v, str):
            return datasets.Value({"int": "int64", "float": "float32", "str": "string", "bool": "bool"}.get(v, v))
        if isinstance(v, list):
            return datasets.List(one(v[0]))
        if isinstance(v, dict):
            if "class_label" in v:
                names = v["class_label"]
                names = names if isinstance(names, list) else [names[k] for k in sorted(names, key=int)]
                return datasets.ClassLabel(names=[str(n) for n in names])
            if "image" in v:
                return datasets.Image()
            if "audio" in v:
                return datasets.Audio(sampling_rate=(v["audio"] or {}).get("sampling_rate"))
            if "translation" in v:
                return datasets.Translation(languages=list(v["translation"]))
            if "sequence" in v:  # the card's `sequence`: a dict inside becomes a dict of lists, as on the Hub
                return datasets.Sequence(one(v["sequence"]), length=v.get("length", -1))
            if "list" in v:
                return datasets.List(one(v["list"]), length=v.get("length", -1))
            if "dtype" in v and len(v) <= 2:
                return one(v["dtype"])
            return {k: one(x) for k, x in v.items()}
        raise ValueError(f"unknown feature spec {v!r}")

    if isinstance(spec, list):  # the README card's `dataset_info.features` list form
        return datasets.Features._from_yaml_list(spec)
    return datasets.Features({k: one(v) for k, v in spec.items()})


def _media(kind: str, i: int, family: str = "object-detection") -> dict:
    """Bytes of a bundled sample file for image/audio cells (cycled by row index). `family`: whose images, so an
    image and its mask or depth map come from the same sample pair."""
    if kind == "audio":
        files = sorted((SAMPLES / "automatic-speech-recognition").glob("*.flac"))
    elif kind == "mask":
        files = sorted((SAMPLES / "image-segmentation" / "masks").glob("*.png"))
    elif kind == "depth":
        files = sorted((SAMPLES / "depth-estimation" / "depth").glob("*.png"))
    else:
        files = sorted(p for p in (SAMPLES / family / "images").iterdir() if p.suffix in (".jpg", ".png"))
    path = files[i % len(files)]
    if kind == "depth":  # NYU-style depth maps: float32 metres (PIL mode F, stored as TIFF), not 16-bit mm PNGs
        import numpy as np
        from PIL import Image

        metres = np.asarray(Image.open(path), dtype=np.float32) / 1000.0
        buf = io.BytesIO()
        Image.fromarray(metres, mode="F").save(buf, format="TIFF")
        return {"bytes": buf.getvalue(), "path": path.with_suffix(".tiff").name}
    return {"bytes": path.read_bytes(), "path": path.name}


def fill_media(rows: list[dict], features) -> list[dict]:
    """Media cells the facts leave out (or name by a placeholder) get real sample files."""
    import datasets

    out = []
    names = " ".join(features).lower()
    family = ("image-segmentation" if any(w in names for w in ("annotation", "mask", "segment")) else
              "depth-estimation" if "depth" in names else "object-detection")
    for i, row in enumerate(rows):
        row = dict(row)
        for name, feat in features.items():
            value = row.get(name)
            if isinstance(feat, (datasets.Image, datasets.Audio)) and not (isinstance(value, dict) and value.get("bytes")):
                hint = str(row.get(name) or name).lower()
                kind = "audio" if isinstance(feat, datasets.Audio) else (
                    "mask" if any(w in hint for w in ("annotation", "mask", "label", "segment")) else
                    "depth" if "depth" in hint else "image")
                row[name] = _media(kind, i, family)
        out.append(row)
    return out


def write_parquet(path: Path, rows: list[dict], features) -> None:
    """Rows -> parquet with the features in the schema metadata, as `push_to_hub` and the Hub's export write it."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = fill_media(rows, features)
    plain = {}
    for name, feat in features.items():
        if isinstance(feat, (datasets.Image, datasets.Audio)):
            plain[name] = datasets.Value("binary")  # placeholder, replaced below
    table = datasets.Dataset.from_list(
        [{k: (v if k not in plain else None) for k, v in r.items()} for r in rows],
        features=datasets.Features({k: (datasets.Value("null") if k in plain else f) for k, f in features.items()}),
    ).data.table
    for name in plain:  # media as the {bytes, path} struct the Image/Audio features store
        struct = pa.array([r.get(name) for r in rows], type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        table = table.set_column(table.column_names.index(name), name, struct)
    meta = {"huggingface": json.dumps({"info": {"features": features.to_dict()}})}
    table = table.replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _card(facts: dict) -> str:
    """The README with the real card's YAML header, less the split sizes: datasets checks those against the
    rows it reads, and the replay holds a handful of rows, not the data."""
    card = copy.deepcopy(facts.get("card_yaml") or {})
    infos = card.get("dataset_info")
    for info in infos if isinstance(infos, list) else [infos] if isinstance(infos, dict) else []:
        for key in ("splits", "download_size", "dataset_size"):
            info.pop(key, None)
    header = yaml.safe_dump(card, sort_keys=False, allow_unicode=True) if card else ""
    return f"---\n{header}---\n\n# {facts['id']} (replay)\n\nRecorded layout of the Hub repo; a few rows only.\n"


def _split_of(path: str, splits) -> str | None:
    name = path.lower()
    for split in sorted(splits, key=len, reverse=True):
        if re.search(rf"(^|[/_.-]){re.escape(split.lower())}([/_.-]|$)", name):
            return split
    return None


def build_dataset(cache: Path, facts: dict) -> dict:
    """main (card, data files or the loading script) and, when recorded, the parquet export branch."""
    repo_id = facts["id"]
    configs = facts.get("configs") or []
    rows = facts.get("rows") or {}
    out = {"id": repo_id, "facts": facts["_file"], "sources": facts.get("sources", {}), "revisions": []}

    export = facts.get("parquet_export") or {}

    def config_for(path: str, revision: str):
        named = [c for c in configs if c.get("revision", "main") == revision]
        for c in named:  # a config whose name is a path segment
            if c.get("name") and c["name"] in Path(path).parts:
                return c
        if len(named) == 1:
            return named[0]
        if revision != "main" and export.get("features"):  # the export's own record of its features
            first = Path(path).parts[0]
            return {"name": first, "features": export["features"], "splits": export.get("splits")
                    or {"train": 0, "validation": 0, "test": 0}}
        return None

    def write_files(snap: Path, files: list[str], revision: str) -> list[str]:
        written = []
        for rel in files:
            target = snap / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel == "README.md":
                target.write_text(_card(facts), encoding="utf-8")
            elif rel.endswith(".py"):
                target.write_text(f"# Loading script of {repo_id} (replay placeholder: datasets >= 4 refuses to run it)\n")
            elif rel.endswith(".parquet"):
                cfg = config_for(rel, revision)
                if cfg is None:
                    continue
                features = parse_features(cfg["features"])
                split = _split_of(rel, cfg.get("splits") or {"train": 0})
                cfg_rows = rows.get(cfg.get("name") or "default") or next(iter(rows.values()), [])
                if not cfg_rows:
                    raise SystemExit(f"{repo_id}: no rows recorded for {rel}")
                if isinstance(cfg_rows, dict):
                    cfg_rows = cfg_rows.get(split) or next(iter(cfg_rows.values()))
                write_parquet(target, cfg_rows, features)
            elif rel.endswith(".json") and isinstance(facts.get(rel), (dict, list)):  # e.g. label files
                target.write_text(json.dumps(facts[rel], ensure_ascii=False), encoding="utf-8")
            elif rel.endswith((".json", ".jsonl")) and facts.get("file_contents", {}).get(rel) is not None:
                content = facts["file_contents"][rel]
                target.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
            else:
                continue  # archives, images, .gitattributes: not needed to replay loading
            written.append(rel)
        return written

    main_files = list(facts.get("files") or [])
    if "README.md" not in main_files:
        main_files.insert(0, "README.md")
    snap = write_repo(cache, "dataset", repo_id, "main", commit_of(repo_id, "main"))
    out["revisions"].append({"revision": "main", "files": write_files(snap, main_files, "main"),
                             "script": facts.get("script")})
    if export.get("files"):
        rev = "refs/convert/parquet"
        snap = write_repo(cache, "dataset", repo_id, rev, commit_of(repo_id, rev))
        out["revisions"].append({"revision": rev, "files": write_files(snap, export["files"], rev)})
    return out


def main(argv: list[str]) -> int:
    import tempfile

    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    cache = Path(argv[0])
    cache.mkdir(parents=True, exist_ok=True)
    texts = sample_texts()
    manifest = {"models": [], "datasets": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repo_id, facts in load_facts("models").items():
            if argv[1:] and repo_id not in argv[1:]:
                continue
            print(f"model   {repo_id}", file=sys.stderr)
            manifest["models"].append(build_model(cache, facts, texts, Path(tmp) / re.sub(r"\W", "_", repo_id)))
        for repo_id, facts in load_facts("datasets").items():
            if argv[1:] and repo_id not in argv[1:]:
                continue
            print(f"dataset {repo_id}", file=sys.stderr)
            manifest["datasets"].append(build_dataset(cache, facts))
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
