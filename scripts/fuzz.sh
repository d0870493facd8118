#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/ into build/fuzz/ and runs each for SECONDS_PER_TARGET seconds
# (default 60, as `make fuzz`) on its corpus build/fuzz/corpus/<target>, seeded from Fuzz/seeds.py. Each target is
# one binary: the core's sources, Fuzz/FuzzInput.swift and its harness, compiled together as module
# VMMCore with the toolchain's libFuzzer and AddressSanitizer. Exits non-zero when a target does not
# build or finds a crash, trap, leak or timeout; reproducers land in build/fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]     all targets unless some are named
#   build/fuzz/<target> build/fuzz/artifacts/<target>/crash-…     replays one reproducer
set -u
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
ONLY=" $* "
OUT=build/fuzz
SWIFTC=${SWIFTC:-swiftc}
# target name and harness file
TARGETS=(
    "virtqueue VirtqueueFuzz"
    "transport TransportFuzz"
    "configuration ConfigurationFuzz"
    "boot BootFuzz"
    "distributor DistributorFuzz"
    "driverqueues DriverQueuesFuzz"
    "switch SwitchFuzz"
)
# The Swift runtime's own crash reporter would hold the process (and its pipes) after a trap;
# libFuzzer's handler reports the crash and writes the reproducer instead.
export SWIFT_BACKTRACE=enable=no

mkdir -p "$OUT"
python3 Fuzz/seeds.py "$OUT/corpus" || exit 1

failed=0
summary=()
for entry in "${TARGETS[@]}"; do
    read -r name harness <<<"$entry"
    [[ $ONLY == "  " || $ONLY == *" $name "* ]] || continue
    binary="$OUT/$name"
    sources=(Sources/VMMCore/*/*.swift Fuzz/FuzzInput.swift "Fuzz/$harness"*.swift)   # the harness and its continuations (HarnessMore.swift)
    if [[ ! -x $binary ]] || [[ -n $(find "${sources[@]}" -newer "$binary" 2>/dev/null) ]]; then
        echo "fuzz: building $name"
        # ld.gold warns about every ASan helper symbol; only real diagnostics are shown.
        if ! "$SWIFTC" -g -O -sanitize=fuzzer,address -parse-as-library -module-name VMMCore \
                "${sources[@]}" -o "$binary" 2> "$OUT/$name.build.log"; then
            grep -v "Cannot export local symbol" "$OUT/$name.build.log" >&2
            echo "fuzz: $name: build failed" >&2
            summary+=("$name: BUILD FAILED")
            failed=1
            continue
        fi
    fi

    mkdir -p "$OUT/corpus/$name" "$OUT/artifacts/$name"
    echo "fuzz: running $name for ${SECONDS_PER_TARGET}s"
    "$binary" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$name/" "$OUT/corpus/$name" > "$OUT/$name.log" 2>&1
    status=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$OUT/$name.log" | tail -1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
    execs=$(sed -nE 's/^stat::average_exec_per_sec:[[:space:]]+([0-9]+)/\1/p' "$OUT/$name.log")
    runs=$(sed -nE 's/^stat::number_of_executed_units:[[:space:]]+([0-9]+)/\1/p' "$OUT/$name.log")
    if [[ $status -ne 0 ]]; then
        failed=1
        artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$OUT/$name.log" | tail -1)
        reason=$(grep -m1 -E 'Fatal error|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)' "$OUT/$name.log")
        summary+=("$name: FAILED (exit $status) ${reason:-see $OUT/$name.log} ${artifact:+reproducer $artifact}")
    else
        summary+=("$name: ok  runs ${runs:-?}  exec/s ${execs:-?}  cov ${cov:-?}  ft ${ft:-?}")
    fi
done

echo
printf 'fuzz: %s\n' "${summary[@]}"
exit $failed
