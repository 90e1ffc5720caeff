"""Modalities: the kind of input a task reads (texts, images, recordings), as objects holding everything that
differs by it, so no other module switches on a modality's name: the files it takes, the reader that opens one,
its dataset folders, the header-level check and figures of the preflight and `taskcli check`, the example input of
a model card's snippet, infer's chunk size, serve's warm-up inputs. The registry lists them (`registry.modalities`);
a task declares its modality by name and `Task.modality` is the object. Cheap to import: images.py, audio.py and
files.py import their libraries where they use them.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from taskcli import audio, files, images
from taskcli.errors import TaskcliError


@dataclass(frozen=True, eq=False)
class Modality:
    name: str  # "text", "image", "audio"; also the dataset column (role) a media task's files are in
    example: str  # one input, as Python source, for the model card's `pipeline(...)` snippet
    # () -> two inputs of different sizes, as a `serve` client sends them: a compiled forward is warmed up on them
    # before the server listens (Task.warm_up replaces them where the task reads more than a text)
    warm_up: Callable[[], list]
    # suffixes of its files, for folders and globs given to `infer` and dataset folders; empty: inputs are texts
    suffixes: frozenset[str] = frozenset()
    read: Callable[[Any], Any] | None = None  # opens one file (a path or a {"bytes", "path"} cell)
    bad_file: type[Exception] | None = None  # what `read` raises for one file that will not open
    # the dataset columns (task column roles) holding its files, the input first (segmentation masks and depth maps
    # are images too)
    roles: tuple[str, ...] = ()
    # (a path or BytesIO, its name) -> why it will not open, from its header alone (no decoding), or None
    header_problem: Callable[[Any, str | None], str | None] | None = None
    # a split's files (cells of its input column) -> `taskcli check`'s figures of them, from their headers
    figures: Callable[[list], dict] | None = None
    chunk_batches: int = 4  # `infer` works this many batches at a time (decoded media are far bigger than text)
    min_chunk: int = 0  # ... and at least this many inputs
    streams: bool = True  # data.streaming is supported

    @property
    def media(self) -> bool:
        """True when inputs are files (paths), False when they are texts."""
        return bool(self.suffixes)

    @property
    def column(self) -> str:
        """The column a folder dataset puts its files in, and an infer table's input role."""
        return self.roles[0] if self.roles else "text"

    def expand_inputs(self, args: list[str]) -> list[str]:
        """`taskcli infer` arguments -> file paths, in order (see files.expand_inputs)."""
        return files.expand_inputs(args, set(self.suffixes), self.name)

    def folder(self, path: Path):
        """A DatasetDict of a local folder dataset of this modality's files (files + metadata, or one folder per
        label; see files.load_folder), or None when `path` is not such a folder."""
        if not self.media or not path.is_dir() or not files.has_media(path, set(self.suffixes)):
            return None
        return files.load_folder(path, set(self.suffixes), self.column)

    def chunk_size(self, batch_size: int) -> int:
        """Inputs `infer` reads and runs at a time by default."""
        return max(self.chunk_batches * batch_size, self.min_chunk)

    # Until every module reads the object, a modality still equals its name (`task.modality == "text"`).
    def __eq__(self, other) -> bool:
        return other == self.name if isinstance(other, str) else self is other

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name


def cell_source(value):
    """A dataset cell naming a file (a path, or a {"bytes", "path"} dict) -> what a reader opens: a path or BytesIO."""
    if isinstance(value, dict):
        return io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    return value


def spread(values: list) -> dict:
    """{"min", "median", "max"} of the values, {} for none."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else {}


def _image_figures(values: list) -> dict:
    sizes = [s for s in (images.header_size(cell_source(v)) for v in values) if s]
    return {"image_sizes": {"width": spread([w for w, _ in sizes]), "height": spread([h for _, h in sizes]),
                            "distinct": len(set(sizes))}}


def _audio_figures(values: list) -> dict:
    seconds = [s for s in (audio.header_seconds(cell_source(v)) for v in values) if s is not None]
    return {"audio_seconds": {**spread(seconds), "total": round(sum(seconds), 2)}}


def _upload(name: str, data: bytes) -> dict:
    import base64

    return {"name": name, "base64": base64.b64encode(data).decode()}


def _warm_up_images() -> list:
    """Two PNGs of different sizes and shades (processors that keep the aspect ratio give two shapes)."""
    from PIL import Image

    pngs = []
    for k, size in enumerate(((320, 240), (200, 300))):
        buffer = io.BytesIO()
        Image.linear_gradient("L").resize(size).convert("RGB").rotate(90 * k).save(buffer, format="PNG")
        pngs.append(_upload(f"warm-up-{k + 1}.png", buffer.getvalue()))
    return pngs


def _warm_up_recordings() -> list:
    """Two WAVs of a 440 Hz tone, 1 s and 1.5 s at 16 kHz."""
    import numpy as np
    import soundfile

    waves = []
    for k, seconds in enumerate((1.0, 1.5)):
        buffer = io.BytesIO()
        soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000), 16000,
                        format="WAV")
        waves.append(_upload(f"warm-up-{k + 1}.wav", buffer.getvalue()))
    return waves


TEXT = Modality("text", example='"Replace this with your text."', chunk_batches=8, min_chunk=256,
                warm_up=lambda: ["Alice works for Globex in Paris.",
                                 "A second, longer text, so that the warm-up batch holds two different lengths."])
IMAGE = Modality("image", example='"photo.jpg"', suffixes=frozenset(images.IMAGE_SUFFIXES), read=images.load,
                 bad_file=images.BadImage, roles=("image", "mask", "depth"), header_problem=images.header_problem,
                 figures=_image_figures, streams=False, warm_up=_warm_up_images)
AUDIO = Modality("audio", example='"clip.flac"', suffixes=frozenset(audio.AUDIO_SUFFIXES), read=audio.decode,
                 bad_file=audio.BadAudio, roles=("audio",), header_problem=audio.header_problem,
                 figures=_audio_figures, warm_up=_warm_up_recordings)
ALL = (TEXT, IMAGE, AUDIO)


def get(modality: "Modality | str | None") -> Modality:
    """The modality object of a name (a task's declaration); an object as is; None is text."""
    if isinstance(modality, Modality):
        return modality
    found = next((m for m in ALL if m.name == (modality or "text")), None)
    if found is None:
        raise TaskcliError(f"unknown modality '{modality}'", f"modalities: {', '.join(m.name for m in ALL)}")
    return found
