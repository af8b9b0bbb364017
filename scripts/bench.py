"""inductscan against the loops researchers run today, side by side in one run.

Makes N checkpoints of one shape (default GPT-2 small: 12 layers x 768, GPT-2 vocabulary, both
Stanford attention flags, fp16 ``pytorch_model.bin``) as branches ``checkpoint-{step}`` of
``stanford-crfm/alias-gpt2-small-x21`` in a Hub-layout cache (``HF_HUB_OFFLINE=1``), so that every
contender loads them the way it would load the real suite. ``--shape pythia-1.4b`` (or
``pythia-160m``, ``pythia-tiny``) makes GPT-NeoX checkpoints of Pythia's layout instead, random
fp16 ``model.safetensors`` as branches ``step{step}`` of ``EleutherAI/pythia-1.4b``.
``--shape olmo-1b`` makes OLMo-1B-shaped checkpoints of the Llama family (16 layers x 2048, 16
heads, vocabulary 50,304, tied embeddings, random bf16 ``model.safetensors``; ``olmo-tiny`` a small
one), run natively; ``--shape gptj-small`` GPT-J checkpoints (12 layers x 768, fp16), run through
transformers' own model. Both pose as branches of a Pythia repo of the same probe (no catalogued
suite of theirs is needed to time them). Then measures, each in its own process (for an honest
peak RSS), the per-checkpoint time of:

    (a) scan     ``inductscan scan stanford-gpt2-small --seeds 21 --steps ...`` (run_scan, in-process);
                 a cached file is trusted by its blob's sha256 name
    (a) scan-verify  the same with ``--verify-cached``: every file hashed again (sha256)
    (b) tl4      TransformerLens 4.x: ``TransformerBridge.boot_transformers(repo, revision=...)``
                 + ``run_with_cache`` (patterns only) + the induction score; this environment
    (b) tl39     TransformerLens 3.9: ``HookedTransformer.from_pretrained(repo, checkpoint_value=...)``
                 with its default weight processing + ``run_with_cache``; in the environment whose
                 python ``--tl39-python`` names (``pip install torch==2.13.0 transformer-lens==3.9.0``)
    (c) hf       transformers: ``from_pretrained`` (eager attention) + ``output_attentions=True``
    (d) floor    the forward pass alone on preloaded weights, logits included: transformers' eager
                 forward and inductscan's own; the floor is the faster of the two. It is timed
                 paired with the scan, in one process: a pass of each floor after one of its own
                 kind, then the scan of a checkpoint after the scan of another
    (e) read floor  every weight file of a checkpoint read into device memory, nothing else
                 (:class:`ReadFloor`), timed in the same pairs

The loops compute the induction score the way the ARENA notebooks do (a diagonal of the
pattern) and pickle it; the benchmark checks that (a) and (b) agree on it. The last line reads
``shape=S speedup_vs_transformerlens=X.XX speedup_vs_transformers=W.WW floor_ratio=Y.YY
peak_rss_gb=Z.Z``: the shape, the fastest TransformerLens loop's time over the scan's, the
transformers loop's over the scan's, the scan's time over the floor, and the scan's peak RSS. The machine
may be shared, so ``floor_ratio`` is the median over the pairs (``--rounds`` runs of the paired
measurement, 3 by default, 4 pairs each from 8 checkpoints) of each pair's scan time over its
faster floor pass; every pair is printed.

With ``--device cuda`` one more line follows, ``device=NAME s_per_ckpt=S
speedup_vs_transformerlens=X speedup_vs_transformers=Y read_floor_ratio=Z peak_gpu_gb=W``: the
scan's seconds per checkpoint once warm, the fastest TransformerLens loop's and the transformers
loop's time over the scan's, the paired median of the scan over the read floor, and the scan's peak
GPU memory (``torch.cuda.max_memory_allocated``). scripts/gpu_bench.sh runs the GPU set.

    pip install -e '.[bench]'                         # TransformerLens 4.x, benchmark only
    python scripts/bench.py --checkpoints 8 --tl39-python /path/to/tl39/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Shape:
    """A benchmark shape: the model family, its config, and the suite whose checkpoints it poses as."""

    family: str  # "gpt2" (fp16 pytorch_model.bin, as the Stanford branches), else the model_type (model.safetensors)
    config: dict
    suite: str
    dtype: str = "float16"  # the weight files'

    @property
    def weight_file(self) -> str:
        return "pytorch_model.bin" if self.family == "gpt2" else "model.safetensors"


PYTHIA = dict(rotary_pct=0.25, use_parallel_residual=True, vocab_size=50304, max_position_embeddings=2048)
OLMO = dict(
    vocab_size=50304, max_position_embeddings=2048, tie_word_embeddings=True, pad_token_id=1, eos_token_id=50279
)
SHAPES = {
    "gpt2-small": Shape("gpt2", dict(n_layer=12, n_embd=768, n_head=12), "stanford-gpt2-small"),
    "gpt2-medium": Shape("gpt2", dict(n_layer=24, n_embd=1024, n_head=16), "stanford-gpt2-medium"),
    "tiny": Shape("gpt2", dict(n_layer=2, n_embd=128, n_head=4), "stanford-gpt2-small"),
    "pythia-1.4b": Shape(
        "gpt_neox",
        dict(num_hidden_layers=24, hidden_size=2048, num_attention_heads=16, intermediate_size=8192, **PYTHIA),
        "pythia-1.4b",
    ),
    "pythia-160m": Shape(
        "gpt_neox",
        dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072, **PYTHIA),
        "pythia-160m",
    ),
    "pythia-tiny": Shape(
        "gpt_neox",
        dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=512, **PYTHIA),
        "pythia-14m",
    ),
    # OLMo-1B's shape (allenai/OLMo-1B-hf): LayerNorm without parameters, SwiGLU, tied embeddings
    "olmo-1b": Shape(
        "olmo",
        dict(num_hidden_layers=16, hidden_size=2048, num_attention_heads=16, intermediate_size=8192, **OLMO),
        "pythia-1b",
        "bfloat16",
    ),
    "olmo-tiny": Shape(
        "olmo",
        dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=512, **OLMO),
        "pythia-14m",
        "bfloat16",
    ),
    "gptj-small": Shape(
        "gptj",
        dict(n_layer=12, n_embd=768, n_head=12, rotary_dim=16, vocab_size=50400, n_positions=2048),
        "pythia-160m",
    ),
}
TL_LOOPS = ("tl4", "tl39")
LAYER_BY_LAYER = os.environ.get("INDUCTSCAN_BENCH_LAYER_BY_LAYER") == "1"  # set by --layer-by-layer
PROFILE = os.environ.get("INDUCTSCAN_BENCH_PROFILE")  # set by --profile: the scan worker's cProfile report


# ---------------------------------------------------------------- the checkpoints (driver side)


def suite_of(shape: str):
    from inductscan.suites import get_suite

    return get_suite(SHAPES[shape].suite)


def bench_steps(shape: str, n: int) -> list[int]:
    """The suite's first ``n`` steps (Stanford: 0, 10, 20, ...; Pythia: 0, 1, 2, 4, ...)."""
    return list(suite_of(shape).steps[:n])


def where(shape: str, step: int) -> tuple[str, str]:
    """The Hub repo and revision a benchmark checkpoint poses as: the suite's first run."""
    suite = suite_of(shape)
    return suite.runs[0].repo, suite.revision_of(step)


def make_checkpoints(work: Path, shape: str, steps: list[int]) -> Path:
    """fp16 weights + ``config.json`` per step, in Hub layout under work/hf_home."""
    from inductscan.testing import place_in_hub_cache

    hf_home = work / "hf_home"
    marker = hf_home / f"made-{shape}-{'-'.join(map(str, steps))}"
    if marker.exists():
        return hf_home
    import shutil

    shutil.rmtree(hf_home, ignore_errors=True)  # made for other steps: start clean
    name = SHAPES[shape].weight_file
    for step in steps:
        repo, revision = where(shape, step)
        folder = work / "files" / revision
        folder.mkdir(parents=True, exist_ok=True)
        if SHAPES[shape].family == "gpt2":
            save_gpt2(SHAPES[shape].config, step, folder)
        else:
            save_random(SHAPES[shape], step, folder)
        files = {file: folder / file for file in ("config.json", name)}
        place_in_hub_cache(hf_home, repo, revision, files)
        if step == steps[-1]:
            place_in_hub_cache(hf_home, repo, "main", files)  # TransformerLens 3.9 reads the config off main
        (folder / name).unlink()
    marker.touch()
    return hf_home


def save_gpt2(settings: dict, step: int, folder: Path) -> None:
    """A randomly initialised GPT-2 with both Stanford attention flags, as an fp16 ``pytorch_model.bin``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        **settings,
        scale_attn_by_inverse_layer_idx=True,
        reorder_and_upcast_attn=True,
        architectures=["GPT2LMHeadModel"],
        n_ctx=1024,
    )  # as the Stanford configs say
    torch.manual_seed(step)  # a script: the global RNG is fine here
    model = GPT2LMHeadModel(config)
    config.save_pretrained(folder)
    torch.save({key: value.half() for key, value in model.state_dict().items()}, folder / "pytorch_model.bin")


def save_random(shape: Shape, step: int, folder: Path) -> None:
    """A model of ``shape``'s family (GPT-NeoX in Pythia's layout, OLMo, GPT-J) of random weights in
    its dtype as ``model.safetensors``, drawn tensor by tensor (no model is built: a 1.4B one would
    take minutes to initialise): matrices N(0, 0.02), norm gains near 1, biases near 0; the names
    and shapes from a model on the meta device (a tied unembedding left out, as transformers saves)."""
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoConfig

    untied = {"gpt_neox": dict(tie_word_embeddings=False)}.get(shape.family, {})
    config = AutoConfig.for_model(shape.family, **shape.config, **untied)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_class = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[shape.family])
    config.architectures = [model_class.__name__]
    with torch.device("meta"):
        shapes = {key: tuple(value.shape) for key, value in model_class(config).state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    generator = torch.Generator().manual_seed(step)
    state = {}
    for key, size in shapes.items():
        values = torch.randn(size, generator=generator)
        gain = key.endswith("weight") and ("layernorm" in key or "layer_norm" in key or key.endswith("norm.weight"))
        state[key] = (1 + 0.1 * values if gain else 0.02 * values).to(getattr(torch, shape.dtype))
        del values
    config.save_pretrained(folder)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def write_probe(work: Path, shape: str) -> Path:
    """The scan's own probe ids for the shape's suite, for the loops to run."""
    import torch

    from inductscan.families.registry import read_architecture
    from inductscan.plan import ScanConfig, suite_probe

    config = next((work / "files").glob("*/config.json"))
    probe = suite_probe(suite_of(shape), read_architecture(config), ScanConfig())
    path = work / "probe.pt"
    torch.save({"ids": probe.ids, "length": probe.layout.length, "offset": probe.layout.offset}, path)
    return path


# ---------------------------------------------------------------- the contenders (worker side)


def peak_rss_gb() -> float:
    """This process's peak RSS (the kernel's VmHWM; getrusage's ru_maxrss would carry the forking
    driver's peak across exec)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024 / 1e9


def induction_from_pattern(pattern, length: int, offset: int):
    """ARENA's induction score: the diagonal ``q - length + 1`` at the induction positions.

    pattern (batch, head, query, key) -> (head,)."""
    diagonal = pattern.diagonal(offset=-(length - 1), dim1=-2, dim2=-1)  # entry i is q = i + length - 1
    return diagonal[..., offset + 1 :].mean(dim=(0, -1))  # q >= offset + length


def write_tokenizer(work: Path, vocab_size: int = 50257, bos: int = 50256) -> Path:
    """A word-level tokenizer of GPT-2's size, saved to a folder: the loops only ever see token
    ids, but TransformerLens insists on a tokenizer it can reload by name."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    folder = work / "tokenizer"
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=f"t{bos}", eos_token=f"t{bos}", unk_token="t0"
    ).save_pretrained(folder)
    return folder


def worker(kind: str, work: Path, steps: list[int], device: str, shape: str) -> dict:
    """One contender over every checkpoint. Its libraries are imported before the clock starts
    (transformers too, for the scan: it reads configs with it), so that the time is the loop's."""
    import torch
    import transformers  # noqa: F401  every contender imports it

    probe = torch.load(work / "probe.pt")
    ids, length, offset = probe["ids"].to(device), probe["length"], probe["offset"]
    if kind == "paired":
        return paired(work, steps, ids, device, shape)
    if kind in ("scan", "scan-verify"):
        return scan_worker(work, steps, device, shape, verify_cached=kind == "scan-verify")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if kind == "tl4":
        from transformer_lens.model_bridge import TransformerBridge
    elif kind == "tl39":
        from transformer_lens import HookedTransformer
    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")
    results: dict[int, list[float]] = {}
    finished = []  # when each checkpoint was done
    started = time.perf_counter()
    for step in steps:
        repo, revision = where(shape, step)
        if kind == "tl4":
            model = TransformerBridge.boot_transformers(repo, revision=revision, tokenizer=tokenizer, device=device)
        elif kind == "tl39":
            model = HookedTransformer.from_pretrained(repo, checkpoint_value=step, tokenizer=tokenizer, device=device)
        if kind in TL_LOOPS:
            with torch.inference_mode():
                _, cache = model.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_pattern"))
            patterns = [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(model.cfg.n_layers)]
        else:  # hf
            model = (
                AutoModelForCausalLM.from_pretrained(
                    repo, revision=revision, dtype=torch.float32, attn_implementation="eager"
                )
                .to(device)
                .eval()
            )
            with torch.inference_mode():
                patterns = model(ids, output_attentions=True).attentions
        scores = torch.stack([induction_from_pattern(pattern, length, offset) for pattern in patterns])
        results[step] = scores.double().cpu().reshape(-1).tolist()
        with open(work / f"{kind}.pickle", "wb") as file:  # what the loops people run end with
            pickle.dump(results, file)
        del model, patterns
        finished.append(time.perf_counter())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "steady": steady(finished), "peak_rss_gb": peak_rss_gb(), "induction": results}


def steady(finished: list[float]) -> float:
    """Seconds per checkpoint once warm: between the first checkpoint done and the last."""
    return (finished[-1] - finished[0]) / (len(finished) - 1) if len(finished) > 1 else float("nan")


def scan_worker(work: Path, steps: list[int], device: str, shape: str, verify_cached: bool) -> dict:
    import torch

    from inductscan.plan import ScanConfig, plan
    from inductscan.results.read import load_results
    from inductscan.runner import run_scan

    out = work / ("scan-verify-results" if verify_cached else "scan-results")
    suite = suite_of(shape)
    refs = plan(suite, seeds=[suite.runs[0].seed], steps=steps)
    config = ScanConfig(device=device, verify_cached=verify_cached, layer_by_layer=LAYER_BY_LAYER)
    started = time.perf_counter()
    if PROFILE:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        summary = profiler.runcall(run_scan, refs, out, config, progress=False)
        with open(PROFILE, "w") as report_file:
            for order, rows in (("cumulative", 45), ("tottime", 30)):
                pstats.Stats(profiler, stream=report_file).sort_stats(order).print_stats(rows)
    else:
        summary = run_scan(refs, out, config, progress=False)
    seconds = time.perf_counter() - started
    if summary.scored != len(steps):
        raise SystemExit(f"the scan scored {summary.scored} of {len(steps)}: {summary.failed}")
    table = load_results(out).reset_index()
    results = {
        int(step): rows.sort_values(["layer", "head"])["induction"].tolist() for step, rows in table.groupby("step")
    }
    finished = sorted(table.groupby("step")["scored_at"].max().map(lambda when: when.timestamp()))
    result = {"seconds": seconds, "steady": steady(finished), "peak_rss_gb": peak_rss_gb(), "induction": results}
    if device.startswith("cuda"):
        result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
        result["device_name"] = torch.cuda.get_device_name()
    return result


def paired(work: Path, steps: list[int], ids, device: str, shape: str) -> dict:
    """The floor and the scan side by side, in one process, each timed in its own steady state.

    The floor is the forward pass alone on preloaded weights, logits included: transformers'
    eager forward and inductscan's own (without the score hooks). The scan is ``run_scan`` itself,
    timed per checkpoint through the local executor's documented ``around`` hook (fetch already
    done by the prefetcher; load, score, write timed).
    Each pair takes two checkpoints: two passes of each floor, the second timed, then the scan of
    both checkpoints, the second timed. So each timed pass follows one of its own kind, as in a
    real scan, where a checkpoint follows a checkpoint. A scan timed right after the floor passes
    (kept, and printed, as ``scan_after_floor``) ran 0.03-0.04 s slower in the median. A pair is
    measured within ~12 s, so on a shared machine both of its sides see the same neighbours.
    The read floor (:class:`ReadFloor`, the first checkpoint's weight files into device memory)
    is timed in each pair the same way.
    """
    import shutil

    import torch
    from huggingface_hub import hf_hub_download
    from transformers import AutoModelForCausalLM

    from inductscan.families.native import family_of
    from inductscan.families.registry import make_scorer, read_architecture, runs_natively
    from inductscan.plan import ScanConfig, plan
    from inductscan.runner import LocalExecutor, run_scan
    from inductscan.weights import read_state_dict

    def timed(action) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        action()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    repo, revision = where(shape, steps[0])
    model = (
        AutoModelForCausalLM.from_pretrained(repo, revision=revision, dtype=torch.float32, attn_implementation="eager")
        .to(device)
        .eval()
    )
    files = [hf_hub_download(repo, name, revision=revision) for name in ("config.json", SHAPES[shape].weight_file)]
    arch = read_architecture(Path(files[0]))
    scorer = make_scorer(arch, device=device)
    weights = scorer.load(lambda: read_state_dict([Path(files[1])]))
    logits = torch.empty(*ids.shape, arch.vocab_size, device=device)  # one buffer, as a scan would keep

    @torch.inference_mode()
    def transformers_forward(model=model):
        model(ids)

    read = ReadFloor(device)
    floors = {
        "transformers": transformers_forward,
        # through transformers, the scan's own model is transformers' (loaded by the scan's scorer)
        "inductscan": (
            (lambda: family_of(arch).forward(weights, ids, logits_out=logits))
            if runs_natively(arch)
            else lambda: transformers_forward(weights)
        ),
        "read": lambda: read([Path(files[1])]),
    }
    for action in floors.values():
        action()  # warm
    out = work / "paired-results"
    shutil.rmtree(out, ignore_errors=True)
    pairs = []

    def around(fetched, process) -> tuple[str, str]:
        """Before each even checkpoint, both floors (the second pass of each timed); then the scan's
        own processing of the checkpoint, timed."""
        if len(pairs) == 0 or "scan" in pairs[-1]:
            pairs.append({})
            for kind, action in floors.items():
                action()  # after the other kind's work: untimed
                pairs[-1][kind] = timed(action)
        outcome = []
        seconds = timed(lambda: outcome.append(process()))
        if outcome[0][0] != "scored":
            raise SystemExit(f"the scan failed on {fetched.ref.describe()}: {outcome[0][1]}")
        pairs[-1]["scan" if "scan_after_floor" in pairs[-1] else "scan_after_floor"] = seconds
        return outcome[0]

    suite = suite_of(shape)
    refs = plan(suite, seeds=[suite.runs[0].seed], steps=steps)
    config = ScanConfig(device=device, layer_by_layer=LAYER_BY_LAYER)
    run_scan(refs, out, config, progress=False, executor=LocalExecutor(around=around))
    pairs = [pair for pair in pairs if "scan" in pair]
    return {"pairs": pairs}


class ReadFloor:
    """Read every weight file of a checkpoint into device memory, and nothing else: the time no
    scan can beat. On the CPU each file is read straight into a reused buffer; on CUDA it is read
    in 64 MB pieces into two alternating page-locked buffers, each piece sent to the device without
    waiting while the next one is read."""

    CHUNK = 64 << 20

    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.staging = (
            [torch.empty(self.CHUNK, dtype=torch.uint8, pin_memory=True) for _ in range(2)] if self.cuda else []
        )
        self.sent: list = [None, None]
        self.targets: dict[Path, object] = {}  # reused from one call to the next, as the scan's buffers are

    def __call__(self, paths: list[Path]) -> int:
        """Bytes read; on CUDA the last transfers may still be in flight (the caller synchronises)."""
        total = 0
        for path in paths:
            size = os.path.getsize(path)
            target = self.targets.get(path)
            if target is None or target.numel() != size:
                target = self.targets[path] = self.torch.empty(size, dtype=self.torch.uint8, device=self.device)
            with open(path, "rb", buffering=0) as file:
                total += self._read_cuda(file, target, size) if self.cuda else file.readinto(target.numpy())
        return total

    def _read_cuda(self, file, target, size: int) -> int:
        offset, turn = 0, 0
        while offset < size:
            staging = self.staging[turn]
            if self.sent[turn] is not None:
                self.sent[turn].synchronize()  # its previous piece has left for the device
            got = file.readinto(staging.numpy()[: min(self.CHUNK, size - offset)])
            if not got:
                break
            target[offset : offset + got].copy_(staging[:got], non_blocking=True)
            self.sent[turn] = self.torch.cuda.Event()
            self.sent[turn].record()
            offset, turn = offset + got, 1 - turn
        return offset


# ---------------------------------------------------------------- the driver


def run_worker(
    python: str, kind: str, work: Path, steps: list[int], device: str, hf_home: Path, shape: str, layer_by_layer: bool
) -> dict:
    # the caller's PYTHONPATH is kept (an environment assembled with it must still find TransformerLens)
    python_path = os.pathsep.join(part for part in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if part)
    environment = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "PYTHONPATH": python_path,
        "TOKENIZERS_PARALLELISM": "false",
        "INDUCTSCAN_BENCH_LAYER_BY_LAYER": "1" if layer_by_layer else "0",
    }
    command = [
        python,
        __file__,
        "--worker",
        kind,
        "--work",
        str(work),
        "--device",
        device,
        "--steps",
        ",".join(map(str, steps)),
        "--shape",
        shape,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def agreement(ours: dict, theirs: dict) -> float:
    return max(abs(a - b) for step in ours for a, b in zip(ours[step], theirs[str(step)], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=8)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    parser.add_argument("--work", type=Path, default=Path("/tmp/inductscan-bench"))
    parser.add_argument("--tl39-python", help="python of an environment with transformer-lens==3.9.0")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda: the summary line adds the GPU fields)")
    parser.add_argument("--layer-by-layer", action="store_true", help="scan with --layer-by-layer")
    parser.add_argument("--skip", default="", help="contenders to leave out, comma-separated (e.g. tl39)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of the paired floor-and-scan measurement; floor_ratio: the median over the pairs",
    )
    parser.add_argument(
        "--profile", type=Path, help="after the contenders, one more scan under cProfile; its report goes to this file"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        steps = [int(step) for step in arguments.steps.split(",")]
        print(json.dumps(worker(arguments.worker, arguments.work, steps, arguments.device, arguments.shape)))
        return

    if arguments.checkpoints < 2:
        parser.error("--checkpoints must be at least 2: each paired measurement scans two")
    sys.path.insert(0, str(REPO_ROOT))
    steps = bench_steps(arguments.shape, arguments.checkpoints)  # Stanford 0, 10, 20, ...; Pythia 0, 1, 2, 4, ...
    work = arguments.work / arguments.shape
    hf_home = make_checkpoints(work, arguments.shape, steps)
    write_probe(work, arguments.shape)
    write_tokenizer(work)
    skip = set(filter(None, arguments.skip.split(",")))
    if not arguments.tl39_python and "tl39" not in skip:
        raise SystemExit("--tl39-python is needed for the TransformerLens 3.9 loop (or --skip tl39)")
    order = [
        *[("paired", sys.executable)] * arguments.rounds,
        ("scan", sys.executable),
        ("scan-verify", sys.executable),
        ("hf", sys.executable),
        ("tl4", sys.executable),
        ("tl39", arguments.tl39_python),
    ]
    import shutil

    results: dict[str, list[dict]] = {}
    for kind, python in order:
        if kind in skip:
            continue
        if kind.startswith("scan"):
            shutil.rmtree(work / f"{kind}-results", ignore_errors=True)  # every scan starts from an empty folder
        print(f"running {kind} ...", flush=True)
        measured = run_worker(
            python, kind, work, steps, arguments.device, hf_home, arguments.shape, arguments.layer_by_layer
        )
        results.setdefault(kind, []).append(measured)
    report(results, len(steps), arguments, work)
    if arguments.profile:
        print(f"running scan under cProfile -> {arguments.profile} ...", flush=True)
        shutil.rmtree(work / "scan-results", ignore_errors=True)
        os.environ["INDUCTSCAN_BENCH_PROFILE"] = str(arguments.profile.resolve())
        run_worker(
            sys.executable, "scan", work, steps, arguments.device, hf_home, arguments.shape, arguments.layer_by_layer
        )


def report(runs: dict[str, list[dict]], n: int, arguments, work: Path) -> None:
    """The table, the checks, and the summary line. Seconds per checkpoint are once warm (between
    the first checkpoint done and the last) for every contender; the first column is the whole
    loop over the checkpoints divided by their number, warm-up included. The floor is the median
    of the paired passes, and floor_ratio the median of the pairs' own ratios."""
    pairs = [pair for run in runs["paired"] for pair in run["pairs"]]
    ratios = [pair["scan"] / min(pair["transformers"], pair["inductscan"]) for pair in pairs]
    floor_ratio = median(ratios)
    floors = {kind: median(pair[kind] for pair in pairs) for kind in ("transformers", "inductscan")}
    floor_seconds = min(floors.values())
    read_ratios = [pair["scan"] / pair["read"] for pair in pairs]
    print(f"\n{n} checkpoints of {arguments.shape} on {arguments.device}; probe {tuple(torch_shape(work))}")
    print(f"paired (each side timed after one of its own kind; {len(pairs)} pairs in {len(runs['paired'])} runs):")
    after_floor = [pair["scan_after_floor"] for run in runs["paired"] for pair in run["pairs"][1:]]  # no buffers made
    for name, values in (
        ("transformers forward", [pair["transformers"] for pair in pairs]),
        ("inductscan forward", [pair["inductscan"] for pair in pairs]),
        ("scan", [pair["scan"] for pair in pairs]),
        ("scan / faster floor", ratios),
        ("read floor", [pair["read"] for pair in pairs]),
        ("scan / read floor", read_ratios),
        ("scan right after floors", after_floor),
    ):
        if not values:  # with 2 or 3 checkpoints, no scan right after the floors but the first
            continue
        print(f"  {name:24}{median(values):7.3f}  (median of {' '.join(f'{value:.2f}' for value in values)})")
    results = {kind: typical(kind_runs) for kind, kind_runs in runs.items() if kind != "paired"}
    scan = results["scan"]["steady"]
    print(f"\n{'':36}{'all/n':>7}{'s/ckpt':>8}{'x floor':>9}{'x scan':>8}{'peak RSS':>10}{'process':>9}")
    floor_names = {"transformers": "(d) floor: transformers forward", "inductscan": "(d) floor: inductscan forward"}
    for kind, name in floor_names.items():
        print(f"{name:36}{'':7}{floors[kind]:8.3f}{floors[kind] / floor_seconds:9.2f}")
    read_floor = median(pair["read"] for pair in pairs)
    print(
        f"{'(e) read floor: files to ' + arguments.device:36}{'':7}{read_floor:8.3f}{read_floor / floor_seconds:9.2f}"
    )
    names = {
        "scan": "(a) inductscan scan",
        "scan-verify": "(a) scan --verify-cached",
        "tl4": "(b) TransformerLens 4.x bridge loop",
        "tl39": "(b) TransformerLens 3.9 loop",
        "hf": "(c) transformers loop",
    }
    for kind, name in names.items():
        if kind in results:
            result = results[kind]
            print(
                f"{name:36}{result['seconds'] / n:7.3f}{result['steady']:8.3f}{result['steady'] / floor_seconds:9.2f}"
                f"{result['steady'] / scan:8.2f}{result['peak_rss_gb']:9.2f}G{result['process_seconds']:8.1f}s"
            )
    print("all/n: the loop over all checkpoints / n (libraries imported first); s/ckpt: once warm; process: wall;")
    print("each contender in its own process, one after another; the floor: the paired passes' median")
    ours = results["scan"]["induction"]
    for kind in ("scan-verify", "tl4", "tl39", "hf"):
        if kind in results:
            difference = agreement(ours, results[kind]["induction"])
            print(f"induction, scan vs {kind}: max |difference| {difference:.2e}")
            if kind in TL_LOOPS and difference > 1e-4:
                raise SystemExit(f"the scan and {kind} disagree on induction by {difference:.2e}")
    if "tl39" in results:
        tl39 = results["tl39"]
        print(
            f"vs TransformerLens 3.9: {tl39['steady'] / scan:.2f}x faster, "
            f"{results['scan']['peak_rss_gb'] / tl39['peak_rss_gb']:.2f} of its peak RSS"
        )
    paired_against = {kind: median(pair["scan"] / pair[kind] for pair in pairs) for kind in floors}
    print(
        f"scan / floor, paired: {paired_against['transformers']:.2f} against transformers' forward, "
        f"{paired_against['inductscan']:.2f} against inductscan's own; floor_ratio takes the faster of the two "
        f"in each pair"
    )
    tl = [results[kind]["steady"] for kind in TL_LOOPS if kind in results]
    speedup = min(tl) / scan if tl else float("nan")
    versus_hf = results["hf"]["steady"] / scan if "hf" in results else float("nan")
    print(
        f"shape={arguments.shape} speedup_vs_transformerlens={speedup:.2f} speedup_vs_transformers={versus_hf:.2f} "
        f"floor_ratio={floor_ratio:.2f} peak_rss_gb={results['scan']['peak_rss_gb']:.1f}"
    )
    if arguments.device.startswith("cuda"):
        device_name = results["scan"]["device_name"].replace(" ", "_")
        print(
            f"device={device_name} s_per_ckpt={scan:.3f} speedup_vs_transformerlens={speedup:.2f} "
            f"speedup_vs_transformers={versus_hf:.2f} read_floor_ratio={median(read_ratios):.2f} "
            f"peak_gpu_gb={results['scan']['peak_gpu_gb']:.1f}"
        )


def typical(kind_runs: list[dict]) -> dict:
    """One contender's runs as one: the median of each time, the highest peak RSS, the first run's scores."""
    typical_run = {key: median(run[key] for run in kind_runs) for key in ("seconds", "steady", "process_seconds")}
    return {
        **typical_run,
        "peak_rss_gb": max(run["peak_rss_gb"] for run in kind_runs),
        "induction": kind_runs[0]["induction"],
        **({"peak_gpu_gb": max(run["peak_gpu_gb"] for run in kind_runs)} if "peak_gpu_gb" in kind_runs[0] else {}),
        **({"device_name": kind_runs[0]["device_name"]} if "device_name" in kind_runs[0] else {}),
    }


def torch_shape(work: Path):
    import torch

    return torch.load(work / "probe.pt")["ids"].shape


if __name__ == "__main__":
    main()
