#!/usr/bin/env bash
# Speed of two checkouts of gallery side by side, alternating, so both see the same machine and load.
#
#   git worktree add /tmp/before <commit>
#   benchmarks/compare_trees.sh /tmp/before . [rounds]     # results in ./compare-trees/
#
# Each benchmark runs in each tree in turn (with that tree's code first on PYTHONPATH and this
# checkout's virtual environment), `rounds` times (default 2). Compare the two trees' rows;
# absolute figures depend on the load, which the log records before each run.
set -u
before=$(realpath "$1") after=$(realpath "$2") rounds=${3:-2}
python=$(realpath "$(dirname "$0")/../.venv/bin/python")
out=$(pwd)/compare-trees
mkdir -p "$out"
run() {  # label tree arguments...
  local label=$1 tree=$2; shift 2
  echo "=== $label $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)" >> "$out/log"
  (cd "$tree" && PYTHONPATH="$tree" nice -n 5 "$python" "$@") >> "$out/$label.txt" 2>&1
}
benchmarks=(
  "pipeline benchmarks/bench_pipeline.py --runs 15"
  "identify -m benchmarks.bench_identify --sizes 1000,100000 --runs 20 --work /tmp/compare-SIDE"
  "search -m benchmarks.bench_search --sizes 1000,100000"
  "enroll -m benchmarks.bench_enroll --photos 500"
  "cli -m benchmarks.bench_cli --photos lfw --runs 3"
)
for _ in $(seq "$rounds"); do
  for benchmark in "${benchmarks[@]}"; do
    for side in before after; do
      read -r name arguments <<< "${benchmark//SIDE/$side}"
      # shellcheck disable=SC2086  # the arguments are words on purpose
      run "$side-$name" "${!side}" $arguments
    done
  done
done
echo "=== done $(date +%T)" >> "$out/log"
