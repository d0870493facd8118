#!/usr/bin/env bash
# `make test`'s driver: runs each stage (a shell command) in order, every one even when an earlier one
# failed, with its output on the terminal and in LOG; then prints one line that counts everything that
# ran, as the last line of `make test`:
#
#   tests: N passed, N failed, N skipped
#
# Counted: host unit tests (XCTest's last "Executed N tests, with M failures"), integration tests
# (unittest's "Ran N tests" and "OK/FAILED (failures=…, errors=…, skipped=…)"), fuzz targets (one
# "fuzz: TARGET: ok|FAILED|BUILD FAILED" line each, from scripts/fuzz.sh). A stage that fails without
# a failed test (a build error, a crash of the runner) counts as one failure, so a broken build can
# never read as a pass. Exit status 1 if anything failed.
#
#   scripts/test-summary.sh LOG "STAGE COMMAND" …
set -uo pipefail
log=$1
shift
mkdir -p "$(dirname "$log")"
: >"$log"

passed=0 failed=0 skipped=0
for stage in "$@"; do
    stage_log=$(mktemp)
    bash -c "$stage" 2>&1 | tee "$stage_log"
    status=${PIPESTATUS[0]}
    cat "$stage_log" >>"$log"

    # Host unit tests: the last "Executed" line is the total of all suites.
    unit=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with [0-9]+ failures?" "$stage_log" | tail -1)
    if [ -n "$unit" ]; then
        run=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$unit")
        bad=$(sed -E 's/.*with ([0-9]+) failures?.*/\1/' <<<"$unit")
        s_pass=$((run - bad)) s_fail=$bad s_skip=0
    else
        s_pass=0 s_fail=0 s_skip=0
    fi
    # Integration tests (unittest): each "Ran N tests" with the OK/FAILED line after it.
    ran=$(grep -E "^Ran [0-9]+ tests? in" "$stage_log" | awk '{s += $2} END {print s + 0}')
    i_fail=$(grep -E "^(OK|FAILED) \(" "$stage_log" | grep -oE "(failures|errors)=[0-9]+" | awk -F= '{s += $2} END {print s + 0}')
    i_skip=$(grep -E "^(OK|FAILED) \(" "$stage_log" | grep -oE "skipped=[0-9]+" | awk -F= '{s += $2} END {print s + 0}')
    s_pass=$((s_pass + ran - i_fail - i_skip)) s_fail=$((s_fail + i_fail)) s_skip=$((s_skip + i_skip))
    # Fuzz targets.
    f_ok=$(grep -cE "^fuzz: [a-z0-9_-]+: ok" "$stage_log")
    f_bad=$(grep -cE "^fuzz: [a-z0-9_-]+: (FAILED|BUILD FAILED)" "$stage_log")
    s_pass=$((s_pass + f_ok)) s_fail=$((s_fail + f_bad))

    if [ "$status" -ne 0 ] && [ "$s_fail" -eq 0 ]; then
        echo "test: '$stage' failed (exit status $status) with no failed test: counted as one failure"
        s_fail=1
    fi
    passed=$((passed + s_pass)) failed=$((failed + s_fail)) skipped=$((skipped + s_skip))
    rm -f "$stage_log"
done

echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
