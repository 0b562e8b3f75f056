# Every target sets itself up: a virtual environment in $(VENV), polyhead and its
# pinned dependencies installed once per pyproject.toml version.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup data demo test bench defaults clean ffmpeg

setup: $(STAMP) ffmpeg

## ffmpeg: torchcodec (audio decoding for ASR, datasets' Audio columns) needs FFmpeg's shared libraries;
## installed with apt-get when missing (as root, or through sudo)
ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { echo "installing ffmpeg (audio decoding)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null; }

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## make data: fetch MovieLens-100k (not redistributable, so not in the repo) from the recbole
## wheel on PyPI into ~/.cache/polyhead/ml-100k ($POLYHEAD_ML100K_DIR); no-op once there
data: setup
	$(BIN)/python -c 'from polyhead.tasks.recommendation import fetch_movielens_100k; print(fetch_movielens_100k())'

## make demo: train the forecaster on the embedded CO2 series, compare with seasonal naive;
## evaluate the embedded next-item recommender on MovieLens-100k beside most-popular and BPR-MF;
## play 5 CartPole-v1 episodes with the embedded PPO-GTrXL agent and 20 LunarLander-v3 episodes with the embedded
## Decision Transformer (trained offline on heuristic/noisy/random trajectories);
## WER/CER of the embedded Conformer-CTC speech recognizer on the unseen voices of the embedded speech set;
## COCO mAP of the embedded ConvNeXt+FCOS detector on the test split of the embedded pasted-objects set;
## Dice/HD95 of the embedded Swin-UNETR-style brain segmenter on the held-out region of the MNI152 template
demo: setup data
	$(BIN)/polyhead train configs/forecasting/patchtst_co2.py
	$(BIN)/polyhead evaluate polyhead/defaults/recommendation
	OMP_NUM_THREADS=1 $(BIN)/polyhead evaluate polyhead/defaults/rl --env CartPole-v1 --episodes 5
	OMP_NUM_THREADS=1 $(BIN)/polyhead evaluate polyhead/defaults/rl_lunarlander --env LunarLander-v3 --episodes 20
	$(BIN)/polyhead evaluate polyhead/defaults/asr
	OMP_NUM_THREADS=1 $(BIN)/polyhead evaluate polyhead/defaults/detection
	$(BIN)/polyhead evaluate polyhead/defaults/segmentation

## make test: the whole test suite
test: setup data
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

## make bench: measured ratios, written to benchmarks/results/*.json
bench: setup data
	$(BIN)/python -m benchmarks.forecasting
	$(BIN)/python -m benchmarks.recommendation
	$(BIN)/python -m benchmarks.rl
	$(BIN)/python -m benchmarks.asr
	$(BIN)/python -m benchmarks.detection
	$(BIN)/python -m benchmarks.segmentation
	$(BIN)/python -m benchmarks.onnx
	$(BIN)/python -m benchmarks.distributed
	$(BIN)/python -m benchmarks.dataloading

## make defaults: re-train the embedded default models with polyhead itself
defaults: setup
	$(BIN)/python scripts/make_defaults.py

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
