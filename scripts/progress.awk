# Filters `swift build` / `swift test` output for a terminal or a log: SwiftPM's "[N/M] Compiling …"
# lines are shown at each tenth of the way (so a first build of a minute or two shows it is moving
# without printing hundreds of lines); every other line (warnings, errors, test results) passes.
/^\[[0-9]+\/[0-9]+\]/ {
    split(substr($1, 2), step, "/")
    done = step[1] + 0; total = step[2] + 0
    if (total != seen_total) { seen_total = total; shown = -1 }
    tenth = total > 0 ? int(done * 10 / total) : 0
    if (tenth > shown) { shown = tenth; print "  " $0; fflush() }
    next
}
{ print; fflush() }
