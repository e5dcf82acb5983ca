#!/usr/bin/env bash
# Resume every learning-scale benchmark in the background for HOURS (default 2.5), committing
# each finished unit (../shared/EXPERIMENTS.md §6):
#
#   bash benchmarks/run_learning_scale.sh [HOURS]
#
# Two lanes of one torch thread each (on a 2-core CPU two single-thread jobs get more done
# than one two-thread job). Both lanes start with the GRAG benchmark (SPC, then PFG and ED;
# the GRAG issue comes first); then lane A runs the questioner and then CoPersona, lane B
# ROPG/RSPG, the questioner and then CoPersona (the questioner has the fewer units left, so both
# lanes finish it first). Two processes of one benchmark share its units
# out (each unit runs under a lock in the benchmark's work folder, and a unit whose input
# another process is still computing waits), so a lane that finishes its own benchmark helps
# with the other's instead of idling. No unit starts after the deadline; a unit still running
# when the session ends resumes from its checkpoints next time. Logs: benchmarks/results/tmp/logs/lane_{a,b}.log (outside git). Both lanes are
# niced, so tests and builds run beside them. Memory is the limit, not CPU: a GRAG lane
# training on PFG holds 8-10 GB (resident), so two of them leave little of a 24 GB machine;
# a third model-loading job beside them (a profile, CI) got one lane killed by the kernel's
# OOM killer (exit 137) on 2026-12-07. The lane then goes on to its next benchmark, and the
# killed unit resumes from its last checkpoint when a later run reaches it. A process also grew
# from unit to unit (9 to 13 GB over CoPersona's seed-0 training and two controls, which got it
# killed beside a questioner lane): after each unit `run_units` now collects garbage and trims the
# allocator's heap (`_common.release_memory`) and logs the resident size before and after: on
# 2026-12-07 that took a questioner lane from 8.2 to 2.0 GB and a CoPersona lane from 7.2 to 2.1.
# Inside a unit the heap grew too (9-11 GB per questioner lane), so the questioner and CoPersona
# trainings also trim it every 10 steps and after each dev evaluation (`_common.trim_callback`).
set -euo pipefail
HOURS="${1:-2.5}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Two processes on one unit would write the same checkpoints: refuse while one is running.
if running=$(pgrep -af "benchmarks/(grag_quality|ropg_pfg|questioner_pfg|copersona_pfg)\.py" | grep -v pgrep); then
  echo "a learning-scale benchmark is already running; stop it first (kill <pid>) or wait:" >&2
  echo "$running" >&2
  exit 1
fi
PY="${PYTHON:-.venv/bin/python}"
LOGS=benchmarks/results/tmp/logs
mkdir -p "$LOGS"
# glibc's default allocator settings on purpose: a fixed mmap threshold (MALLOC_MMAP_THRESHOLD_=1048576)
# held CoPersona processes to 6.4-6.7 GB but made a step 1.6x slower (30 s against 19 s, 65% of the
# time in page faults; 2026-12-07). Without it one CoPersona process peaks at 11.4 GiB, so two
# CoPersona lanes on 24 GB can meet the OOM killer (the unit resumes from its last checkpoint).
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
END=$("$PY" -c "import sys, time; print(time.time() + float(sys.argv[1]) * 3600)" "$HOURS")

lane() {  # run each benchmark with the hours left until END
  for script in "$@"; do
    left=$("$PY" -c "import sys, time; print(f'{max(0.0, (float(sys.argv[1]) - time.time()) / 3600):.2f}')" "$END")
    if "$PY" -c "import sys; sys.exit(float(sys.argv[1]) <= 0.01)" "$left"; then
      echo "[lane] $script: $left h left" && nice -n 19 "$PY" "$script" --commit --budget-hours "$left" || \
        echo "[lane] $script failed (exit $?); next benchmark"
    fi
  done
}

nohup bash -c "$(declare -f lane); END=$END PY=$PY; lane benchmarks/grag_quality.py benchmarks/questioner_pfg.py \
  benchmarks/copersona_pfg.py" > "$LOGS/lane_a.log" 2>&1 &
sleep 30  # lane A takes its first unit before lane B looks
nohup bash -c "$(declare -f lane); END=$END PY=$PY; lane benchmarks/grag_quality.py benchmarks/ropg_pfg.py \
  benchmarks/questioner_pfg.py benchmarks/copersona_pfg.py" > "$LOGS/lane_b.log" 2>&1 &
echo "started two lanes until $(date -d "@${END%.*}" '+%H:%M'); logs in $LOGS/lane_a.log and lane_b.log"
