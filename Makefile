# Two entry points for a new user (see README):
#   make demo   set up, then prepare the bundled genome and pretrain a small model on it
#   make test   set up, then run the test suite
# TORCH picks the PyTorch build. The default is the CPU build; a GPU user passes their own,
# e.g. make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128",
# or installs genoseq into an environment that already has a CUDA torch.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO ?= runs/demo

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(BIN)/genoseq prepare --out $(DEMO)/genome.h5 --overwrite true
	$(BIN)/genoseq pretrain --config configs/demo.yaml --data $(DEMO)/genome.h5 --out $(DEMO)/run --overwrite true
	$(BIN)/genoseq score --model $(DEMO)/run/model --fasta genoseq/data/lambda_phage.fa --out $(DEMO)/scores.tsv
	$(BIN)/genoseq generate --model $(DEMO)/run/model --num_samples 3 --max_new_tokens 300 --out $(DEMO)/generated.fa

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) runs build *.egg-info
