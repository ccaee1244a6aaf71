"""Checkpoints: safetensors weights with a JSON metadata record in the same file's header.

One file, written to a temporary name and renamed, so a killed run never leaves half a checkpoint
and weights never drift apart from their record. Foreign ``.pt``/``.pth`` files load only through
``torch.load(weights_only=True)``: a pickle that carries code is refused, never executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from robustkit.data.base import DatasetInfo
from robustkit.errors import CheckpointError
from robustkit.version import __version__

META_KEY = "robustkit"
WEIGHT_FILES = (".pt", ".pth", ".safetensors", ".bin")


def is_weights_file(weights: str) -> bool:
    """A path (by suffix or separator) rather than a library's weights name such as DEFAULT."""
    return Path(weights).suffix.lower() in WEIGHT_FILES or "/" in weights or Path(weights).exists()


@dataclass(frozen=True, kw_only=True)
class CheckpointRecord:
    """What a checkpoint is: enough to rebuild its model without the data, and to cite it."""

    model: str
    dataset: str
    dataset_info: dict[str, Any]
    defense: str = "none"
    defense_settings: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train_settings: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    seed: int | None = None
    clean_accuracy: float | None = None
    robustkit_version: str = __version__
    torch_version: str = torch.__version__
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo.from_dict(self.dataset_info)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path) -> CheckpointRecord:
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})  # newer keys are ignored
        except (json.JSONDecodeError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{source}: malformed robustkit metadata ({err})") from None


def write_safetensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> Path:
    """Write tensors + string metadata atomically (temp file, then rename): a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_safetensors(path: str | Path, what: str = "file") -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a missing or damaged file is one ``CheckpointError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    if not _looks_like_safetensors(path):
        raise CheckpointError(f"{path} is not a safetensors file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable safetensors file, truncated or corrupt ({err})") from None


def save_checkpoint(model: nn.Module, path: str | Path, record: CheckpointRecord) -> Path:
    """Write weights + record atomically."""
    return write_safetensors(path, model.state_dict(), {META_KEY: record.to_json()})


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], CheckpointRecord | None]:
    """The tensors and (for robustkit checkpoints) the record; any defect is one ``CheckpointError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if _looks_like_safetensors(path):
        state, meta = read_safetensors(path, "checkpoint")
        record = CheckpointRecord.from_json(meta[META_KEY], path) if META_KEY in meta else None
        return state, record
    return _read_torch_file(path), None


def read_record(path: str | Path) -> CheckpointRecord | None:
    """A checkpoint's record without reading its tensors (None for a foreign or unreadable file)."""
    path = Path(path).expanduser()
    if not path.is_file() or not _looks_like_safetensors(path):
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return None
    return CheckpointRecord.from_json(meta[META_KEY], path) if META_KEY in meta else None


def _looks_like_safetensors(path: Path) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON object
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_torch_file(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused, it is a pickle holding more than tensors ({first})") from None
    except Exception as err:  # zip errors, EOF, bad magic: all mean the file is broken
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or corrupt ({type(err).__name__})"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    return obj


def load_weights(model: nn.Module, state: dict[str, Tensor], source: str | Path) -> None:
    """Strict load with a one-line account of what does not fit."""
    if not any(k.startswith(("normalize.", "net.")) for k in state) and hasattr(model, "net"):
        model = model.net  # a bare network's state dict (from another tool): it fits inside our wrapper
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{len(items)} {what} ({', '.join(items[:3])}{', …' if len(items) > 3 else ''})"
            for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched))
            if items
        ]
        raise CheckpointError(f"{source} does not fit this architecture: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_model(
    path: str | Path,
    *,
    model: str | None = None,
    info: DatasetInfo | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, CheckpointRecord | None]:
    """Rebuild the checkpoint's model (from its record, or ``model``/``info`` for foreign files), in eval mode."""
    from robustkit.models import get_model

    state, record = read_checkpoint(path)
    if record is not None and model is not None and model != record.model:
        raise CheckpointError(f"{path} holds a '{record.model}' model, not a '{model}'")
    if record is None and (model is None or info is None):
        raise CheckpointError(f"{path} has no robustkit metadata: name its model and data set (--model, --dataset)")
    name = model or record.model
    net = get_model(name, info or record.info, **(record.model_kwargs if record else {}))
    load_weights(net, state, path)
    return net.to(device).eval(), record


def file_sha256(path: str | Path | None) -> str | None:
    """The file's SHA-256, all 64 hex digits: what ``sha256sum`` prints, so a user can check the file cited."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(state: dict[str, Tensor]) -> str:
    """A SHA-256 of the tensors alone (name, dtype, shape, bytes; by name): what an evaluation depends on.

    A checkpoint's file hash also covers its header (when it was written, how fast it trained), so two
    trainings with bit-identical weights give two files; this digest is the same for both, and for the
    same weights in another format (a ``.pt`` state dict) or in memory.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()  # logical order: channels_last gives the same digest
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
