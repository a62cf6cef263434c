"""Save an open_clip model with random weights as a local checkpoint.

No package ships CLIP weights and these machines cannot download them, so this
is how the open_clip path of the pipeline is exercised end to end offline:

    .venv/bin/python scripts/save_random_clip_checkpoint.py ViT-S-32 /tmp/vit-s-32-random.safetensors
    dedupkit dedup SRC OUT --embedder open_clip:ViT-S-32:/tmp/vit-s-32-random.safetensors

Random weights give meaningless embeddings: use it to test plumbing, never quality.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import open_clip
import torch


def save_random_checkpoint(model_name: str, path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_model

        save_model(model, str(path))  # save_model copes with tied tensors, save_file does not
    else:
        torch.save(model.state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_name", help=f"an open_clip model, e.g. one of {open_clip.list_models()[:4]}")
    parser.add_argument("path", type=Path, help="output .safetensors or .pt file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.model_name not in open_clip.list_models():
        parser.error(f"unknown open_clip model '{args.model_name}': see open_clip.list_models()")
    print(save_random_checkpoint(args.model_name, args.path, args.seed))


if __name__ == "__main__":
    main()
