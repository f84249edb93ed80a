"""What a fine-tuned model says about itself: its language, task and alignment heads in
``generation_config.json``, and a Hugging Face model card (``README.md``).

A merged model that names its language lets ``pipeline("automatic-speech-recognition",
model=folder)`` transcribe it without being told (transformers reads
``generation_config.language`` and ``.task`` when ``generate`` gets none). The converted
forms keep the same facts: CTranslate2's converter copies
``generation_config.alignment_heads`` into its ``config.json`` and we copy
``generation_config.json`` beside ``model.bin``; whisper.cpp's GGML file has no place for
either (its alignment heads are a context parameter, ``dtw_aheads``), so they go into
the folder's ``whisper_finetune.json``.

The card follows the Hugging Face convention: YAML front matter (language, license,
base_model, pipeline_tag, tags, datasets, metrics and a ``model-index`` with the
evaluation's figures), then prose: what the model was trained on, how, and how to use it
with each backend.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from whisper_finetune.text import language_code

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
GENERATION_CONFIG = "generation_config.json"
# names of the embedded models -> the hub repositories their weights are
_EMBEDDED_HUB = {"embedded:whisper-base": "openai/whisper-base"}


@dataclass(frozen=True)
class ModelFacts:
    """What ``generation_config.json`` says about a model (None: not said)."""

    language: str | None = None
    task: str | None = None
    alignment_heads: tuple[tuple[int, int], ...] | None = None

    def to_json(self) -> dict:
        out: dict = {"language": self.language, "task": self.task}
        if self.alignment_heads is not None:
            out["alignment_heads"] = [list(h) for h in self.alignment_heads]
        return out


def read_facts(model_dir: str | os.PathLike) -> ModelFacts:
    """Language, task and alignment heads from a transformers folder's generation config.

    Raises:
        ValueError: if ``generation_config.json`` is not valid JSON.
    """
    path = Path(model_dir) / GENERATION_CONFIG
    if not path.is_file():
        return ModelFacts()
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    heads = cfg.get("alignment_heads")
    return ModelFacts(
        language=language_code(cfg["language"]) if cfg.get("language") else None,
        task=cfg.get("task") or None,
        alignment_heads=tuple((int(a), int(b)) for a, b in heads) if heads else None,
    )


def write_facts(
    model_dir: str | os.PathLike,
    *,
    language: str | None = None,
    task: str | None = None,
    alignment_heads: list[tuple[int, int]] | None = None,
) -> ModelFacts:
    """Set the given fields of ``generation_config.json`` (others are left as they are).

    Raises:
        FileNotFoundError: if the folder has no ``generation_config.json``.
        ValueError: for an unknown language or task, or a head outside the model.
    """
    model_dir = Path(model_dir)
    path = model_dir / GENERATION_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no {GENERATION_CONFIG}")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if language is not None:
        cfg["language"] = language_code(language)
    if task is not None:
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be transcribe or translate, got {task!r}")
        cfg["task"] = task
    if alignment_heads is not None:
        model_cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        layers, heads = model_cfg["decoder_layers"], model_cfg["decoder_attention_heads"]
        for layer, head in alignment_heads:
            if not (0 <= layer < layers and 0 <= head < heads):
                raise ValueError(
                    f"alignment head ({layer}, {head}) is outside the model's "
                    f"{layers} decoder layers x {heads} heads"
                )
        cfg["alignment_heads"] = [[int(a), int(b)] for a, b in alignment_heads]
    # the language and task now live in their own fields; old forced ids would fight them
    cfg.pop("forced_decoder_ids", None)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return read_facts(model_dir)


def hub_name(base_model: str) -> str | None:
    """The hub id a base model name stands for (None for a local folder)."""
    if base_model in _EMBEDDED_HUB:
        return _EMBEDDED_HUB[base_model]
    if base_model.count("/") == 1 and not Path(base_model).exists():
        return base_model
    return None


@dataclass(frozen=True)
class CardInfo:
    """What the card tells; every field but ``base_model`` may be unknown."""

    base_model: str
    language: str | None = None
    task: str | None = None
    method: str | None = None
    train_data: tuple[str, ...] = ()
    test_data: str | None = None
    metric: str = "cer"
    eval_value: float | None = None
    guard_data: str | None = None
    guard_value: float | None = None
    guard_baseline: float | None = None
    guard_max_increase: float | None = None
    step: int | None = None
    scale: float = 1.0
    decoder_scale: float = 1.0
    alignment_heads: tuple[tuple[int, int], ...] | None = None
    details: dict = field(default_factory=dict)

    @property
    def guard_passed(self) -> bool | None:
        if None in (self.guard_value, self.guard_baseline, self.guard_max_increase):
            return None
        return self.guard_value <= self.guard_baseline + self.guard_max_increase + 1e-12


def _yaml(value) -> str:
    """A scalar as YAML: JSON's quoting is valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def card_text(info: CardInfo, model_name: str) -> str:
    """The model card: YAML front matter, then what, how and how to use it."""
    hub = hub_name(info.base_model)
    metric = info.metric.lower()
    lines = ["---"]
    if info.language:
        lines += ["language:", f"- {_yaml(info.language)}"]
    if hub and hub.startswith("openai/whisper"):
        lines.append("license: apache-2.0")
    if hub:
        lines.append(f"base_model: {_yaml(hub)}")
    lines.append("pipeline_tag: automatic-speech-recognition")
    tags = ["whisper", "whisper-finetune", *([info.method.lower()] if info.method else [])]
    lines += ["tags:", *(f"- {_yaml(t)}" for t in tags)]
    if info.train_data:
        lines += ["datasets:", *(f"- {_yaml(Path(d).name)}" for d in info.train_data)]
    results = []
    if info.eval_value is not None and info.test_data:
        results.append((Path(info.test_data).name, f"{metric}", info.eval_value, "test"))
    if info.guard_value is not None and info.guard_data:
        results.append((Path(info.guard_data).name, f"{metric}", info.guard_value, "guard"))
    if results:
        lines += ["metrics:", f"- {metric}", "model-index:", f"- name: {_yaml(model_name)}"]
        lines.append("  results:")
        for dataset, kind, value, role in results:
            lines += [
                "  - task:",
                "      type: automatic-speech-recognition",
                "      name: Speech Recognition",
                "    dataset:",
                f"      name: {_yaml(dataset)}",
                f"      type: {_yaml(dataset)}",
                "    metrics:",
                f"    - type: {kind}",
                f"      value: {round(float(value), 4)}",
                f"      name: {_yaml(f'{kind.upper()} ({role} set, greedy)')}",
            ]
    lines.append("---")
    return "\n".join(lines) + "\n\n" + _body(info, model_name, hub)


def _body(info: CardInfo, model_name: str, hub: str | None) -> str:
    lang = info.language or "?"
    out = [f"# {model_name}", ""]
    out.append(
        f"A fine-tune of `{hub or info.base_model}` for speech recognition "
        f"(language `{lang}`, task `{info.task or 'transcribe'}`), made with whisper-finetune."
    )
    out += ["", "## Training", ""]
    if info.train_data:
        out.append("Trained on: " + ", ".join(f"`{d}`" for d in info.train_data) + ".")
    if info.method:
        how = f"Method: {info.method}"
        if info.details:
            how += " (" + ", ".join(f"{k} {v}" for k, v in info.details.items()) + ")"
        out.append(how + ".")
    if info.step is not None:
        out.append(f"Weights of training step {info.step}.")
    if info.scale != 1.0 or info.decoder_scale != 1.0:
        out.append(
            f"Merged at scale {info.scale:g} (decoder {info.decoder_scale:g}): "
            "W = W_base + scale * delta."
        )
    out += ["", "## Evaluation", ""]
    metric = info.metric.upper()
    if info.eval_value is not None:
        out.append(f"- {metric} on `{info.test_data}`: {info.eval_value:.4f} (greedy).")
    if info.guard_value is not None:
        line = f"- {metric} on the guard set `{info.guard_data}`: {info.guard_value:.4f}"
        if info.guard_baseline is not None:
            line += f" (base model {info.guard_baseline:.4f}"
            if info.guard_max_increase is not None:
                verdict = "kept" if info.guard_passed else "NOT kept"
                line += f"; limit +{info.guard_max_increase:g}: {verdict}"
            line += ")"
        out.append(line + ".")
    if info.eval_value is None and info.guard_value is None:
        out.append("No evaluation was recorded with this model.")
    if info.alignment_heads:
        heads = ", ".join(f"({a}, {b})" for a, b in info.alignment_heads)
        out.append(f"- Word-timestamp alignment heads (layer, head): {heads}.")
    code = info.language or "zh"
    out += [
        "",
        "## Use",
        "",
        "transformers (language and task come from `generation_config.json`):",
        "",
        "```python",
        "from transformers import pipeline",
        f'asr = pipeline("automatic-speech-recognition", model="{model_name}")',
        'print(asr("audio.wav")["text"])',
        "```",
        "",
        "faster-whisper (convert first; faster-whisper does not read a default language):",
        "",
        "```bash",
        f"whisper-finetune convert --model_path={model_name} --output_dir={model_name}-ct2",
        "```",
        "",
        "```python",
        "from faster_whisper import WhisperModel",
        f'model = WhisperModel("{model_name}-ct2")',
        f'segments, info = model.transcribe("audio.wav", language="{code}")',
        "```",
        "",
        "whisper.cpp (GGML):",
        "",
        "```bash",
        f"whisper-finetune convert --model_path={model_name} --format=ggml "
        f"--output_dir={model_name}-ggml",
        f"whisper-cli -m {model_name}-ggml/ggml-model.bin -l {code} -f audio.wav",
        "```",
        "",
        "whisper-finetune:",
        "",
        "```bash",
        f"whisper-finetune infer --model_path={model_name} --audio_path=audio.wav",
        "```",
        "",
    ]
    return "\n".join(out)


def write_card(model_dir: str | os.PathLike, info: CardInfo, name: str | None = None) -> Path:
    """Write ``README.md`` (the model card) into ``model_dir``; ``name``: the model's
    folder name in the examples (default: ``model_dir``'s)."""
    path = Path(model_dir) / CARD_FILE
    path.write_text(card_text(info, name or Path(model_dir).name), encoding="utf-8")
    return path


def write_converted_facts(folder: str | os.PathLike, heads: list[tuple[int, int]]) -> str:
    """Put alignment heads into a converted model: a CTranslate2 folder's ``config.json``
    (and its copy of ``generation_config.json``), or a GGML folder's
    ``whisper_finetune.json`` (whisper.cpp takes them as ``dtw_aheads``).

    Returns:
        ``"ct2"`` or ``"ggml"``.

    Raises:
        ValueError: for a folder that is neither.
    """
    folder = Path(folder)
    pairs = [[int(a), int(b)] for a, b in heads]
    if (folder / "model.bin").is_file() and (folder / "config.json").is_file():
        path = folder / "config.json"
        cfg = json.loads(path.read_text(encoding="utf-8"))
        cfg["alignment_heads"] = pairs
        path.write_text(json.dumps(cfg, indent=4) + "\n", encoding="utf-8")
        gen = folder / GENERATION_CONFIG
        if gen.is_file():
            data = json.loads(gen.read_text(encoding="utf-8"))
            data["alignment_heads"] = pairs
            gen.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return "ct2"
    marker = folder / "whisper_finetune.json"
    if marker.is_file() and any(folder.glob("ggml-model*.bin")):
        data = json.loads(marker.read_text(encoding="utf-8"))
        data["alignment_heads"] = pairs
        marker.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return "ggml"
    raise ValueError(
        f"{folder} is neither a CTranslate2 folder (model.bin, config.json) nor a GGML "
        "folder written by convert --format=ggml"
    )
