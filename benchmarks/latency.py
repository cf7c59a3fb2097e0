"""Latency, throughput, cold start and memory of the judge (a benchmark, not a test).

    python benchmarks/latency.py                  # writes benchmarks/results/latency.json
    python benchmarks/latency.py --quick          # fewer repetitions

Measures, on this machine:
* per-turn latency p50 / p95 for user turns of 16, 64 and 256 tokens, with no context
  and with 3 previous turns, at 1 and 2 torch threads (batch 1);
* batched throughput (64 turns of 64 tokens with context);
* cold start (process start to the first verdict) and peak RSS, in a fresh process, for
  the lean engine (default) and transformers + peft;
* the arithmetic floor: 2 x non-embedding parameters x input tokens, over the fp32
  matrix-multiply rate measured in the same run;
* levers, one by one, each with its latency and its quality (macro-F1 on a seeded sample of
  the test split, hard negatives flagged, challenge2 macro-F1: training/compare.py's sets):
  transformers + peft (the old load path), the lean engine without and with the cached
  system-turn keys/values (fp32), int8 gate/up projections (torch's dynamic quantization
  with per-tensor and per-channel weight scales), int8 on every projection, W8A8
  (guardrail/int8.py: int8 weights and per-token int8 activations) on gate/up (the
  default judge), on all but down_proj and on every projection, shorter inputs (max_length 64), fewer layers (an adapter trained on 6
  layers, if given) and the fastest combination;
* the zero-shot LLM-judge rail (the full 30-layer SmolLM2 reading an instruction prompt,
  scored from the label tokens' probabilities), for comparison;
* the guardrail's added latency inside a NeMo Guardrails turn (input + output rails,
  fake chat LLM), against the same turn without the rails.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

SENTENCE = ("I have been feeling a bit off this week, work is busy and I keep putting off the things I need to do, "
            "so I wanted to ask for some ideas on how to get back on track. ")
CONTEXT = [{"role": "user", "text": "hi, can I ask you something?"},
           {"role": "assistant", "text": "Of course, I'm happy to help. What's on your mind?"},
           {"role": "user", "text": "it's about my week, it has been a lot"}]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def text_of(tokenizer, n: int) -> str:
    """A user turn of exactly ``n`` tokens (before the input format's markers)."""
    ids = tokenizer.ids(SENTENCE * (n // 10 + 2))[:n]
    return tokenizer.decode(ids)


def matmul_gflops(threads: int, size: int = 1024, reps: int = 20) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size ** 3 * reps / (time.perf_counter() - t) / 1e9


def time_turns(clf, text, context, reps: int) -> list[float]:
    for _ in range(3):
        clf.classify(text, context=context)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        clf.classify(text, context=context)
        out.append(1000 * (time.perf_counter() - t))
    return out


def non_embedding_params(judge) -> int:
    return sum(p.numel() for n, p in judge.named_parameters() if "embed_tokens" not in n)


def cold_start(adapter: str | None, engine: str = "auto") -> dict:
    """A fresh interpreter: import, load and judge one 64-token turn with context; its own peak RSS."""
    code = textwrap.dedent(f"""
        import time, resource, json
        t0 = time.time()
        def peak_rss_mb():  # VmHWM: Linux carries ru_maxrss over exec, so it would show the parent's peak
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        from guardrail import Classifier
        clf = Classifier.load({adapter!r}, engine={engine!r})
        t1 = time.time()
        clf.classify("I have been feeling a bit off this week and wanted to ask for ideas", context={CONTEXT!r})
        t2 = time.time()
        for _ in range(20):
            clf.classify("how do I get back on track after a rough week at work, any tips?", context={CONTEXT!r})
        print(json.dumps({{"import_and_load_s": t1 - t0, "first_verdict_s": t2 - t1,
                           "peak_rss_mb": peak_rss_mb()}}))
    """)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    inner = json.loads(out.stdout.strip().splitlines()[-1])
    # wall includes the 20 extra verdicts; subtract them using the in-process figures
    return {"cold_start_s": round(inner["import_and_load_s"] + inner["first_verdict_s"], 3),
            "process_wall_s": round(wall, 3), "peak_rss_mb": round(inner["peak_rss_mb"], 1),
            "load_s": round(inner["import_and_load_s"], 3), "first_verdict_s": round(inner["first_verdict_s"], 3)}


def lever_quality(clf, sets) -> dict:
    """Macro-F1 on the test sample and challenge2, and the share of hard negatives flagged."""
    from sklearn.metrics import f1_score

    from guardrail.taxonomy import LEVELS

    out = {}
    for name, rows in sets.items():
        verdicts = clf.classify_batch([{"text": r["text"], "role": r["role"], "context": r.get("context", [])}
                                       for r in rows], batch_size=32)
        pred = [LEVELS.index(v.level) for v in verdicts]
        if name.startswith("hard negatives"):
            out["hard_negatives_flagged"] = round(sum(x != 0 for x in pred) / len(pred), 4)
        else:
            key = "test_macro_f1" if name.startswith("test") else "challenge2_macro_f1"
            out[key] = round(float(f1_score([LEVELS.index(r["level"]) for r in rows], pred,
                                            labels=[0, 1, 2], average="macro", zero_division=0)), 4)
    return out


def zero_shot_latency(text: str, reps: int) -> dict:
    from training.llm_judge import PromptJudge

    judge = PromptJudge.load(few_shot=0)
    rows = [{"text": text, "role": "user", "context": CONTEXT}]
    for _ in range(2):
        judge.score(rows)
    xs = []
    for _ in range(reps):
        t = time.perf_counter()
        judge.score(rows)
        xs.append(1000 * (time.perf_counter() - t))
    return {"p50_ms": round(statistics.median(xs), 1), "p95_ms": round(pct(xs, 0.95), 1),
            "prompt_tokens": judge.prompt_tokens(rows[0]), "forward_passes_per_turn": 2}


def nemo_added_latency(clf, reps: int) -> dict:
    """Median time of a guarded NeMo turn minus the same turn without the rails (fake chat LLM)."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from nemoguardrails import LLMRails, RailsConfig
    from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

    from guardrail import Guard
    from guardrail.nemo import set_guard
    from guardrail.policy import load_policy

    reply = "Here are a few ideas: pick one small task, set a timer for 25 minutes, and take a short walk after."
    guarded = RailsConfig.from_path(str(ROOT / "rails"))
    set_guard(Guard(clf, load_policy(ROOT / "policies" / "default.yaml"), audit=False), guarded)
    plain = RailsConfig.from_content(yaml_content="models: []\n")
    results = {}
    for name, cfg in (("without rails", plain), ("with rails", guarded)):
        rails = LLMRails(cfg, llm=LangChainLLMAdapter(FakeListChatModel(responses=[reply] * (reps + 5))))
        msgs = [{"role": "user", "content": "how do I get back on track after a rough week at work?"}]
        for _ in range(2):
            rails.generate(messages=msgs)
        xs = []
        for _ in range(reps):
            t = time.perf_counter()
            rails.generate(messages=msgs)
            xs.append(1000 * (time.perf_counter() - t))
        results[name] = round(statistics.median(xs), 1)
    results["added_ms"] = round(results["with rails"] - results["without rails"], 1)
    return results


def report_p50(turns, n, ctx, threads):
    return next(r["p50_ms"] for r in turns if (r["turn_tokens"], r["context"], r["threads"]) == (n, ctx, threads))


def levers(args, text64: str, reps: int) -> dict:
    """Each speed lever alone (and the fastest combination): latency of a 64-token turn with
    3 turns of context at 2 threads, and quality on training/compare.py's seeded sets."""
    from guardrail import Classifier
    from guardrail.inputs import Encoder, InputConfig
    from guardrail.int8 import quantize_w8a8
    from guardrail.modeling import ALL_PROJECTIONS, load_judge, quantize_int8
    from training.compare import comparison_sets

    sets = comparison_sets(Path(args.data), sample=300, cap=150)
    folder = Path(args.adapter) if args.adapter else Classifier.default_path()
    small = args.small_adapter if args.small_adapter and (Path(args.small_adapter) / "guardrail.json").is_file() else None

    def shorter(clf):
        short = InputConfig(max_length=64, turn_budget=48, context_turns=clf.config.inputs.context_turns)
        return Classifier(clf.judge, Encoder(clf.encoder.tokenizer, short), clf.adapter_path)

    def no_prefix_cache():
        judge, encoder, _ = load_judge(folder, prefix_cache=False)
        return Classifier(judge, encoder, folder)

    def every_projection_int8():
        judge, encoder, _ = load_judge(folder, prefix_cache=False)
        quantize_int8(judge, ALL_PROJECTIONS)
        judge.backbone.cache_prefix(encoder.prefix_ids)  # after quantizing: the cache must match the weights
        return Classifier(judge, encoder, folder)

    def w8a8(modules):
        judge, encoder, _ = load_judge(folder, prefix_cache=False)
        quantize_w8a8(judge.backbone, modules)
        judge.backbone.cache_prefix(encoder.prefix_ids)
        return Classifier(judge, encoder, folder)

    every = ALL_PROJECTIONS
    options = {
        "transformers + peft, fp32 (the old load path)": lambda: Classifier.load(args.adapter, engine="transformers", int8=False),
        "lean engine, fp32, no cached system turn": lambda: no_prefix_cache(),
        "lean engine, fp32 + cached system turn": lambda: Classifier.load(args.adapter, int8=False),
        "+ int8 gate/up projections, per-tensor scales": lambda: Classifier.load(args.adapter, int8="per_tensor"),
        "+ int8 gate/up projections, per-channel scales": lambda: Classifier.load(args.adapter, int8="per_channel"),
        "+ int8 on every projection": lambda: every_projection_int8(),
        "+ W8A8 (int8 weights and per-token activations) on gate/up (the default, int8=True)": lambda: Classifier.load(args.adapter),
        "+ W8A8 on every projection but down_proj": lambda: w8a8(every[:-1]),
        "+ W8A8 on every projection": lambda: w8a8(every),
        "+ SmoothQuant scales folded in, then W8A8 on every projection (int8='w8a8_smooth')":
            lambda: Classifier.load(args.adapter, int8="w8a8_smooth"),
        "shorter inputs (max_length 64), fp32": lambda: shorter(Classifier.load(args.adapter, int8=False)),
        "int8 gate/up + max_length 64": lambda: shorter(Classifier.load(args.adapter, int8=True)),
    }
    if small:
        options["6 layers (adapter trained on 6), fp32"] = lambda: Classifier.load(small, int8=False)
        options["6 layers + int8 gate/up"] = lambda: Classifier.load(small, int8=True)
        options["6 layers + int8 gate/up + max_length 64"] = lambda: shorter(Classifier.load(small, int8=True))
    # all loaded first, then timed round-robin: this machine's speed drifts by tens of percent
    # over minutes, and timing one lever after another would credit the drift to a lever
    loaded = {name: make() for name, make in options.items()}
    for clf in loaded.values():
        time_turns(clf, text64, CONTEXT, 2)
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(reps):
        for name, clf in loaded.items():
            t = time.perf_counter()
            clf.classify(text64, context=CONTEXT)
            times[name].append(1000 * (time.perf_counter() - t))
    out = {}
    for name, clf in loaded.items():
        xs = times[name]
        out[name] = {"p50_ms": round(statistics.median(xs), 1), "p95_ms": round(pct(xs, 0.95), 1),
                     "model_id": clf.model_id, **lever_quality(clf, sets)}
        print(f"lever {name}: {json.dumps(out[name])}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", default=None)
    p.add_argument("--small-adapter", default=str(ROOT / "training" / "models" / "smollm2-L6"),
                   help="an adapter trained on fewer layers, for the fewer-layers lever (skipped if missing)")
    p.add_argument("--data", default=str(ROOT / "training" / "build"), help="prepare_data.py output, for lever F1")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency.json"))
    p.add_argument("--skip", nargs="*", default=[], choices=["zero_shot", "nemo", "cold_start", "levers"])
    args = p.parse_args(argv)
    reps = 8 if args.quick else 40

    from guardrail import Classifier
    from guardrail.inputs import Turn

    report = {"machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "torch": torch.__version__, "python": platform.python_version()},
              "generated": time.strftime("%Y-%m-%d %H:%M"), "repetitions": reps}
    clf = Classifier.load(args.adapter)
    tok = clf.encoder.tokenizer
    report["model_id"] = clf.model_id
    params = non_embedding_params(clf.judge)
    report["non_embedding_params"] = params

    def log(key, value):
        print(f"{key}: {json.dumps(value)}", flush=True)

    turns = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rate = matmul_gflops(threads)
        report.setdefault("matmul_gflops", {})[threads] = round(rate, 1)
        for n in (16, 64, 256):
            text = text_of(tok, n)
            for ctx_name, ctx in (("none", []), ("3 turns", CONTEXT)):
                xs = time_turns(clf, text, ctx, reps)
                seq = len(clf.encoder.encode(text, "user", [Turn(**c) for c in ctx]))
                floor = 2 * params * seq / (rate * 1e9) * 1000
                row = {"threads": threads, "turn_tokens": n, "context": ctx_name, "input_tokens": seq,
                       "p50_ms": round(statistics.median(xs), 1), "p95_ms": round(pct(xs, 0.95), 1),
                       "floor_ms": round(floor, 1)}
                turns.append(row)
                log("turn", row)
    report["per_turn"] = turns
    torch.set_num_threads(2)

    text64 = text_of(tok, 64)
    batch = [{"text": text64, "context": CONTEXT}] * 64
    for bs in (1, 16):
        clf.classify_batch(batch[:bs], batch_size=bs)
        t = time.perf_counter()
        clf.classify_batch(batch, batch_size=bs)
        report.setdefault("throughput_turns_per_s", {})[f"batch {bs}"] = round(64 / (time.perf_counter() - t), 1)
    log("throughput", report["throughput_turns_per_s"])

    if "levers" not in args.skip:
        report["levers_64_tokens_with_context"] = levers(args, text64, reps)

    if "cold_start" not in args.skip:
        report["cold_start"] = cold_start(args.adapter)
        report["cold_start_transformers_peft"] = cold_start(args.adapter, engine="transformers")
        log("cold_start", {"lean": report["cold_start"], "transformers": report["cold_start_transformers_peft"]})
    if "nemo" not in args.skip:
        report["nemo"] = nemo_added_latency(clf, max(5, reps // 4))
        classifier_p50 = report_p50(turns, 64, "3 turns", 2)
        report["nemo"]["classifier_p50_ms"] = classifier_p50
        report["nemo"]["target_ms"] = round(2 * classifier_p50 + 30, 1)
        log("nemo", report["nemo"])
    if "zero_shot" not in args.skip:
        report["zero_shot_llm_judge"] = zero_shot_latency(text64, max(5, reps // 4))
        log("zero_shot", report["zero_shot_llm_judge"])

    out = Path(args.out)
    if args.skip and out.is_file():  # a partial re-run keeps the skipped sections of the last full run
        previous = json.loads(out.read_text())
        sections = {"cold_start": ("cold_start", "cold_start_transformers_peft"), "nemo": ("nemo",),
                    "zero_shot": ("zero_shot_llm_judge",), "levers": ("levers_64_tokens_with_context",)}
        for skipped in args.skip:
            for key in sections[skipped]:
                if key in previous:
                    report[key] = previous[key]
                    report.setdefault("carried_over_from", {})[key] = previous.get("generated")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
