#!/bin/bash
# GPU smoke check for the device machine (one short prepared run; see README "GPUs").
# Needs the wheels of pydantic, trl, datasets, transformers 5.24 ... in .whl (carried).
# Writes logs to $OUT (or /tmp/out).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SPINDOCTOR_CACHE=/tmp/spd-cache
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
SD="python3 -c 'import sys; from spindoctor.cli import main; sys.argv[0]=\"spindoctor\"; main()'"
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__)" | tee -a "$OUT/gpu.txt"
echo "== pytest (CUDA present: device=auto takes the GPU paths)"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/spectral tests/models tests/probes tests/training tests/restore 2>&1 | tail -15 | tee "$OUT/pytest.txt"
echo "== quick study on the GPU"
start=$(date +%s.%N)
timeout 200 bash -c "$SD study --quick --out /tmp/q" > "$OUT/study.txt" 2>&1; rc=$?
echo "study rc=$rc seconds=$(python3 -c "print(round($(date +%s.%N)-$start,1))")" | tee -a "$OUT/gpu.txt"
tail -25 "$OUT/study.txt"
echo "== drift timing, SmolLM2-135M shapes (random weights), cold cache: cuda vs cpu"
timeout 150 python3 bench/drift_device.py 2>&1 | tail -5 | tee "$OUT/drift_device.txt"
