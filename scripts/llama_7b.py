"""Write a 7B-shaped Llama checkpoint of random bf16 weights, sharded safetensors written tensor by
tensor, then scan it ``--layer-by-layer`` in a fresh process and report its peak RSS against the
checkpoint's size.

The shape is Llama-3-8B's and Mistral-7B's, with GPT-NeoX's vocabulary: 32 layers x 4096, 32 query
heads over 8 key/value heads, an MLP of 14,336, vocabulary 50,304, untied embeddings (7.4 B
parameters, 14.8 GB in bf16). Matrices are N(0, 0.02), RMSNorm gains 1 + N(0, 0.1). Only one shard
(about 2 GB) and one tensor in float32 are in memory at a time while writing.

    python scripts/llama_7b.py --folder /tmp/llama-7b            # write (once), scan, report
    python scripts/llama_7b.py --folder /tmp/tiny --layers 2 --width 512 --mlp 1024   # a small check

The scan is ``inductscan scan FOLDER --layer-by-layer --prefetch 0`` (the default probe: 10 x 25 x 4
random tokens; float32), run through the public API in a child process whose kernel high-water
mark (VmHWM) is its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARD_BYTES = 2 << 30

PEAK_SCRIPT = """
import sys, time
from pathlib import Path
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import local_suite
started = time.perf_counter()
summary = run_scan(plan(local_suite(Path(sys.argv[1]))), Path(sys.argv[2]),
                   ScanConfig(layer_by_layer=True, prefetch=0), progress=False)
assert summary.scored == 1, summary.failed
print(time.perf_counter() - started)
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1])
"""


def config(layers: int, width: int, heads: int, kv_heads: int, mlp: int, vocab: int) -> dict:
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "num_hidden_layers": layers,
        "hidden_size": width,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": mlp,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "torch_dtype": "bfloat16",
    }


def tensor_shapes(settings: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, in the order transformers' Llama names them."""
    d, m, vocab = settings["hidden_size"], settings["intermediate_size"], settings["vocab_size"]
    e = d // settings["num_attention_heads"]
    kv = settings["num_key_value_heads"] * e
    shapes = {"model.embed_tokens.weight": (vocab, d)}
    for index in range(settings["num_hidden_layers"]):
        p = f"model.layers.{index}."
        shapes |= {
            p + "input_layernorm.weight": (d,),
            p + "self_attn.q_proj.weight": (d, d),
            p + "self_attn.k_proj.weight": (kv, d),
            p + "self_attn.v_proj.weight": (kv, d),
            p + "self_attn.o_proj.weight": (d, d),
            p + "post_attention_layernorm.weight": (d,),
            p + "mlp.gate_proj.weight": (m, d),
            p + "mlp.up_proj.weight": (m, d),
            p + "mlp.down_proj.weight": (d, m),
        }
    return shapes | {"model.norm.weight": (d,), "lm_head.weight": (vocab, d)}


def write(folder: Path, settings: dict) -> int:
    """The checkpoint in ``folder``: config.json, shards of at most 2 GB, their index. Its bytes."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    shapes = tensor_shapes(settings)
    groups, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = 2 * torch.Size(shape).numel()
        if current and size + nbytes > SHARD_BYTES:
            groups.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    groups.append(current)
    generator = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    for number, names in enumerate(groups, start=1):
        shard = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        state = {}
        for name in names:
            values = torch.randn(shapes[name], generator=generator)
            gain = name.endswith("norm.weight")
            state[name] = (1 + 0.1 * values if gain else 0.02 * values).to(torch.bfloat16)
            del values
            weight_map[name] = shard
        save_file(state, folder / shard, metadata={"format": "pt"})
        total += (folder / shard).stat().st_size
        print(f"wrote {shard} ({(folder / shard).stat().st_size / 1e9:.2f} GB)", flush=True)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    (folder / "config.json").write_text(json.dumps(settings, indent=1))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/inductscan-llama-7b"))
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--mlp", type=int, default=14336)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--python", default=sys.executable)
    arguments = parser.parse_args()
    settings = config(
        arguments.layers, arguments.width, arguments.heads, arguments.kv_heads, arguments.mlp, arguments.vocab
    )
    checkpoint = arguments.folder / "suite" / "checkpoint-0"
    made = checkpoint / "config.json"
    if not made.is_file() or json.loads(made.read_text()) != settings:
        started = time.perf_counter()
        write(checkpoint, settings)
        print(f"written in {time.perf_counter() - started:.0f} s", flush=True)
    size = sum(path.stat().st_size for path in checkpoint.glob("*.safetensors"))
    parameters = sum(torch_numel(shape) for shape in tensor_shapes(settings).values())
    out = arguments.folder / "results"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    done = subprocess.run(
        [arguments.python, "-c", PEAK_SCRIPT, str(arguments.folder / "suite"), str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    seconds, peak_kb = done.stdout.split()[-2:]
    peak = int(peak_kb) * 1024
    print(
        f"{parameters / 1e9:.2f} B parameters, checkpoint {size / 1e9:.2f} GB in "
        f"{len(list(checkpoint.glob('*.safetensors')))} shards; --layer-by-layer scan {float(seconds):.0f} s, "
        f"peak RSS {peak / 1e9:.2f} GB = {peak / size:.3f} of the checkpoint"
    )


def torch_numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


if __name__ == "__main__":
    main()
