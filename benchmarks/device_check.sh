#!/usr/bin/env bash
# One-go accelerator check of tace_jax (issue 12), meant for a GPU/TPU machine; about 8 minutes.
#
#   bash benchmarks/device_check.sh            # full sizes
#   bash benchmarks/device_check.sh --quick    # tiny sizes: a CPU smoke test of this script
#
# Uses the python on PATH with tace_jax importable (pip install -e ".[cuda12]" or ".[tpu]",
# see README). Each part has its own time limit; a failing part is reported and the rest runs.
# Output: stdout, and the same under ${OUT:-benchmarks/results}/device_check.log.
set -u
cd "$(dirname "$0")/.."
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
OUTDIR="${OUT:-benchmarks/results}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/device_check.log"
: > "$LOG"

part() {  # part NAME SECONDS CMD...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

part "environment" 60 python -c "import jax, jaxlib, tace_jax; print('jax', jax.__version__, 'backend', jax.default_backend(), jax.devices())"
if [ $QUICK = 1 ]; then
  part "bench_model" 300 python benchmarks/bench_model.py --systems aspirin --repeats 2
  part "largest system" 300 python benchmarks/bench_max_atoms.py --sizes 1,2 --repeats 1
  part "jax-md NVE" 300 python benchmarks/bench_md.py --systems aspirin --steps 5
  part "training steps" 600 python benchmarks/bench_train_step.py --frames 10 --valid 2 --epochs 3
else
  part "bench_model" 180 python benchmarks/bench_model.py --systems aspirin,water,si --repeats 3
  # 46,656 / 110,592 / 216,000 atoms: the target is 100,000
  part "largest system" 170 python benchmarks/bench_max_atoms.py --sizes 18,24,30 --repeats 2 --timeout 70
  # bench_model's si system: 1,440 atoms
  part "jax-md NVE" 90 python benchmarks/bench_md.py --systems si --steps 200
  part "training steps" 90 python benchmarks/bench_train_step.py --frames 200 --epochs 4
fi
echo "log: $LOG"
