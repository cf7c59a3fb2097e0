"""A smoke training run on <=200 examples, and the adapter round-trip."""
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_training_and_round_trip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    own = [json.loads(x) for p in sorted((ROOT / "training/data/own").glob("*.jsonl"))
           for x in p.read_text().splitlines() if x.strip()]
    rows = [dict(r, source="own:smoke", context=r.get("context", [])) for r in own[::max(1, len(own) // 150)]][:150]
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:120]) + "\n")
    (data / "val.jsonl").write_text("\n".join(json.dumps(r) for r in rows[120:]) + "\n")
    out = tmp_path / "adapter"
    r = subprocess.run([sys.executable, str(ROOT / "training/train.py"), "--data", str(data), "--out", str(out),
                        "--max-examples", "120", "--epochs", "1"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("guardrail.json", "heads.safetensors", "adapter_model.safetensors", "adapter_config.json",
                 "tokenizer.json"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "guardrail.json").read_text())
    assert cfg["base_sha256"] and cfg["levels"] == ["safe", "borderline", "unsafe"]
    assert cfg["training"]["train_examples"] == 120
    # the rows it saw, per source and level, for the model card
    assert list(cfg["training"]["rows"]) == ["own:smoke"]
    assert sum(cfg["training"]["rows"]["own:smoke"].values()) == 120

    from guardrail import Classifier
    from guardrail.modeling import load_judge

    texts = [{"text": "I want to kill myself"}, {"text": "nice weather today", "role": "assistant"}]
    a = Classifier.load(out, int8=False).classify_batch(texts)   # the exact judge: compared with the unmerged one below
    b = Classifier.load(out, int8=False).classify_batch(texts)
    assert [v.scores for v in a] == [v.scores for v in b]
    assert [v.categories for v in a] == [v.categories for v in b]
    # merged (inference) and unmerged (trainable) forms of the same adapter agree
    judge, enc, _ = load_judge(out, merge=False)
    judge.eval()
    ids, mask = enc.pad([enc.encode(t["text"], t.get("role", "user")) for t in texts])
    with torch.inference_mode():
        lv, _ = judge(ids, mask)
    probs = torch.softmax(lv / cfg["level_temperature"], -1)
    for row, v in zip(probs.tolist(), a):
        assert all(abs(p - v.scores[k]) < 1e-3 for p, k in zip(row, ("safe", "borderline", "unsafe")))

    # a second stage starts from this adapter and records where it came from
    out2 = tmp_path / "stage2"
    r = subprocess.run([sys.executable, str(ROOT / "training/train.py"), "--data", str(data), "--out", str(out2),
                        "--init", str(out), "--max-examples", "32", "--epochs", "1"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    stage2 = json.loads((out2 / "guardrail.json").read_text())
    assert stage2["training"]["init"]["adapter"] == cfg["model_id"]
    assert stage2["model_id"] != cfg["model_id"]


def test_warm_start_copies_the_adapter_exactly():
    """A fresh trainable judge warm-started from the shipped adapter scores like it."""
    import pytest

    from guardrail import Classifier
    from guardrail.modeling import AdapterError, JudgeConfig, load_judge, new_judge, read_config, warm_start

    folder = Classifier.default_path()
    shipped = read_config(folder)
    fresh, enc = new_judge(JudgeConfig.from_dict({**shipped.to_dict(), "training": {}}))
    before = warm_start(fresh, folder)
    assert before["train_examples"] == shipped.training["train_examples"]
    ref, _, _ = load_judge(folder, merge=False, engine="transformers")
    fresh.eval(), ref.eval()
    ids, mask = enc.pad([enc.encode("I want to end it all tonight", "user"), enc.encode("kill the process", "user")])
    with torch.inference_mode():
        for a, b in zip(fresh(ids, mask), ref(ids, mask)):
            assert torch.allclose(a, b, atol=1e-5)

    smaller, _ = new_judge(JudgeConfig.from_dict({**shipped.to_dict(), "num_layers": 4, "lora_layers": [2, 3]}))
    with pytest.raises(AdapterError, match="num_layers"):
        warm_start(smaller, folder)


def test_training_rows_repeat_share_and_bad_pattern(tmp_path):
    """What one epoch trains on: own rows x own_repeat (x ``repeat`` for the matching ones), a seeded source share."""
    import random

    import pytest

    sys.path.insert(0, str(ROOT))
    from training.train import training_rows

    rows = ([{"text": f"hn {i}", "role": "user", "level": "safe", "categories": [], "source": "own:hard_negatives"}
             for i in range(4)]
            + [{"text": f"c {i}", "role": "user", "level": "unsafe", "categories": ["suicide_self_harm"],
                "source": "own:crisis"} for i in range(3)]
            + [{"text": f"s {i}", "role": "user", "level": "safe", "categories": [], "source": "goemotions"}
               for i in range(10)])
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = {"data": {"seed": 1}, "train": {"seed": 1, "own_repeat": 2, "source_share": 0.5,
                                          "repeat": {"own:hard_negatives*": 3}}}
    out, own = training_rows(cfg, tmp_path, random.Random(1))
    count = lambda src: sum(r["source"] == src for r in out)  # noqa: E731
    assert len(own) == 7
    assert count("own:crisis") == 3 * 2                   # own_repeat
    assert count("own:hard_negatives") == 4 * 3           # repeat replaces own_repeat for these
    assert count("goemotions") == 5                       # half of the source rows
    cfg["train"]["repeat"] = {"own:*": 3, "own:crisis": 4}     # overlapping patterns: the largest, not the sum
    out, _ = training_rows(cfg, tmp_path, random.Random(1))
    assert count("own:crisis") == 3 * 4 and count("own:hard_negatives") == 4 * 3
    cfg["train"]["repeat"] = {"own:nothing*": 2}
    with pytest.raises(SystemExit, match="matches no own training rows"):
        training_rows(cfg, tmp_path, random.Random(1))
    cfg["train"]["repeat"] = {"own:crisis": 1}
    with pytest.raises(SystemExit, match="must be a whole number >= own_repeat"):
        training_rows(cfg, tmp_path, random.Random(1))


def test_loss_weights_per_source(tokenizer):
    """``train.weight``: a row's weight in the loss by its source (the largest matching pattern)."""
    sys.path.insert(0, str(ROOT))
    from guardrail.inputs import Encoder
    from training.train import collate, encode_all

    enc = Encoder(tokenizer)
    rows = [{"text": "hello", "role": "user", "level": "safe", "categories": [], "source": s}
            for s in ("own:crisis", "own:crisis_more", "sad")]
    examples = encode_all(enc, rows, {"own:crisis*": 2, "own:crisis_more": 3})
    assert [e[3] for e in examples] == [2.0, 3.0, 1.0]
    *_, weights = collate(enc, examples, [0, 1, 2])
    assert weights.tolist() == [2.0, 3.0, 1.0]
    assert [e[3] for e in encode_all(enc, rows)] == [1.0, 1.0, 1.0]   # no weights: the plain loss


def test_hard_rows_take_listed_rows_once(tmp_path):
    """``train.real_hard``: the listed rows of a cap key's pool, hardest first, none already sampled."""
    import pytest

    sys.path.insert(0, str(ROOT))
    from training.mine_hard import row_key
    from training.train import hard_rows

    pool = [{"id": f"sad:{i}", "text": f"a long week number {i}", "level": "safe"} for i in range(4)]
    listed = {"sad": [row_key(pool[3]), row_key(pool[0]), "sad:99|notinpool", row_key(pool[2])]}
    path = tmp_path / "hard.json"
    path.write_text(json.dumps({"lists": listed}))
    picked = hard_rows({"sad": 2}, {"sad": pool}, chosen=[pool[0]], path=path)
    assert picked == [pool[3], pool[2]]          # list order; pool[0] was sampled already
    assert hard_rows({"sad": 0}, {"sad": pool}, [], path=path) == []
    with pytest.raises(SystemExit, match="has no list for"):
        hard_rows({"esconv:seeker": 1}, {"sad": pool}, [], path=path)
    with pytest.raises(SystemExit, match="is missing"):
        hard_rows({"sad": 1}, {"sad": pool}, [], path=tmp_path / "absent.json")
