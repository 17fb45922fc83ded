# salseg: `make exp NAME=quickstart` and `make test` are all the set-up there is (both install first if needed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# the quickstart runs the GD gradient map (captum: attribution), the tests read COCO masks (pycocotools: coco) and
# plan SLURM studies (submitit: slurm)
EXTRAS := dev,coco,attribution,slurm
# LAUNCHER=slurm: a study's variants as SLURM jobs (configs/launcher/); `make collect NAME=...` writes its table
LAUNCH := $(if $(LAUNCHER),launcher=$(LAUNCHER),)
# a scratch venv holding the lowest version each bound in pyproject.toml allows (`make test-lowest`)
LOWEST_VENV  := .venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.installed-stamp
LOWEST_PINS  := $(shell sed -n 's/==.*//p' .ci/constraints-lowest.txt | paste -sd'|' -)

.PHONY: install lint test test-lowest test-slow exp ablation collect robust eval predict bench bench-gpu list clean help

help:
	@echo "make install                      create .venv and install salseg with its dev extra"
	@echo "make lint                         ruff check . (config in pyproject.toml; CI runs it before make test)"
	@echo "make test                         run the test suite (CI's command; slow tests excluded)"
	@echo "make test-lowest                  the suite against the lowest supported versions (.ci/constraints-lowest.txt) in .venv-lowest"
	@echo "make exp NAME=quickstart [ARGS=\"trainer.max_epochs=3 ...\"] [RESUME=1]"
	@echo "make ablation NAME=rc_spatial [ARGS=...] [LAUNCHER=slurm] [RESUME=1]   LAUNCHER=slurm: one SLURM job per variant"
	@echo "make collect NAME=rc_spatial [STUDY=dir]   a study's table from its complete variants + each variant's state"
	@echo "make robust NAME=quickstart [CKPT=last.ckpt] [VARIANCES=0.001,0.01,0.1] [ARGS=...] [LAUNCHER=slurm] [RESUME=1]   AWGN/JPEG table + F-vs-noise plot"
	@echo "make eval PRED=\"[NAME=]dir ...\" GT=dir | CONFIG=eval.yaml [OUT=dir] [JSON=out.json]   one table per dataset"
	@echo "make predict RUN=runs/<NAME>/<stamp>|ckpt|rc_sod IMAGES=dir OUT=dir [MAP=name] [ARGS=\"--batch-size 16 --device cuda\"]   maps of any folder of images"
	@echo "make bench [BENCH=cost|metrics|menet|gd|dcsp]  cost table of every method (params, FLOPs, images/s) + speed benchmarks (benchmarks/)"
	@echo "make bench-gpu [ARGS=\"--device cpu --quick --budget 20 --sections gd --json out.json\"]   metrics, MEnet, GD, DCSP speed on a GPU (< 8 min; JSON in runs/bench_gpu/)"
	@echo "make list                         known experiments and ablations"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/python -m pytest -q

$(LOWEST_STAMP): pyproject.toml .ci/constraints-lowest.txt
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install -q -c .ci/constraints-lowest.txt -e ".[$(EXTRAS)]"
	@touch $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP)  # the bounds are tested, not assumed: the same suite on the oldest allowed versions
	$(LOWEST_VENV)/bin/python -m pip list --format=freeze | grep -iE "^($(LOWEST_PINS))=="
	$(LOWEST_VENV)/bin/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

exp: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make exp NAME=<experiment> [ARGS=\"key=value ...\"] [RESUME=1]"; $(BIN)/python -m salseg list; exit 2; }
	$(BIN)/python -m salseg run $(NAME) $(LAUNCH) $(ARGS) $(if $(filter 1 yes true,$(RESUME)),--resume,)

ablation: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make ablation NAME=<ablation> [ARGS=\"key=value ...\"] [RESUME=1]"; $(BIN)/python -m salseg list; exit 2; }
	$(BIN)/python -m salseg ablate $(NAME) $(LAUNCH) $(ARGS) $(if $(filter 1 yes true,$(RESUME)),--resume,)

collect: $(STAMP)  # a SLURM study's collect job runs the same; exit 1 while a variant is not complete
	@test -n "$(NAME)" || { echo "usage: make collect NAME=<ablation|comparison> [STUDY=runs/ablations/NAME/<stamp>]"; exit 2; }
	$(BIN)/python -m salseg collect $(NAME) $(if $(STUDY),--study "$(STUDY)",)

robust: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make robust NAME=<experiment> [CKPT=path.ckpt] [VARIANCES=v1,v2,...] [ARGS=\"key=value ...\"] [LAUNCHER=slurm] [RESUME=1]"; $(BIN)/python -m salseg list; exit 2; }
	$(BIN)/python -m salseg robust $(NAME) $(LAUNCH) $(if $(CKPT),--ckpt "$(CKPT)",) $(if $(VARIANCES),--variances "$(VARIANCES)",) $(ARGS) $(if $(filter 1 yes true,$(RESUME)),--resume,)

eval: $(STAMP)  # PRED: one folder, or several "NAME=dir" (a table per dataset, best bold); or CONFIG (methods x datasets)
	@test -n "$(CONFIG)" -o \( -n "$(PRED)" -a -n "$(GT)" \) || { echo "usage: make eval PRED=\"[NAME=]<maps dir> ...\" GT=<masks dir> | CONFIG=<eval.yaml> [OUT=dir] [JSON=out.json]"; exit 2; }
	$(BIN)/python -m salseg eval $(if $(CONFIG),--config "$(CONFIG)",$(foreach p,$(PRED),--pred "$(p)") --gt "$(GT)") $(if $(OUT),--out "$(OUT)",) $(if $(JSON),--json "$(JSON)",)

predict: $(STAMP)  # RUN: a run folder, a checkpoint or a training-free experiment (rc_sod); 8-bit PNG maps at native size
	@test -n "$(RUN)" -a -n "$(IMAGES)" -a -n "$(OUT)" || { echo "usage: make predict RUN=<run folder|checkpoint|experiment> IMAGES=<images dir> OUT=<maps dir> [MAP=<map name>] [ARGS=\"--batch-size 16 --device cuda ...\"]"; exit 2; }
	$(BIN)/python -m salseg predict "$(RUN)" --images "$(IMAGES)" --out "$(OUT)" $(if $(MAP),--map "$(MAP)",) $(ARGS)

BENCHES := cost metrics menet gd dcsp

bench: $(STAMP)  # BENCH=cost|metrics|menet|gd|dcsp runs one; ARGS go to it (e.g. BENCH=menet ARGS="--device cuda")
	@for b in $(or $(BENCH),$(BENCHES)); do \
	  test -f benchmarks/bench_$$b.py || { echo "unknown BENCH=$$b; known: $(BENCHES)"; exit 2; }; \
	  echo "== benchmarks/bench_$$b.py"; $(BIN)/python benchmarks/bench_$$b.py $(if $(BENCH),$(ARGS),) || exit 1; \
	done

bench-gpu: $(STAMP)  # one script, every section guarded; --device cpu runs reduced sizes in a few minutes
	$(BIN)/python benchmarks/bench_gpu.py $(ARGS)

list: $(STAMP)
	$(BIN)/python -m salseg list

clean:  # caches only: runs/ holds results and checkpoints, delete it yourself if you mean to
	rm -rf wandb .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
