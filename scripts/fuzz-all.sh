#!/usr/bin/env bash
# Runs every Fuzz target in the module for FUZZTIME each (default 10s).
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
found=0
while IFS= read -r file; do
	dir=$(dirname "$file")
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
		found=1
		echo "fuzz: ./$dir $target for $FUZZTIME"
		"$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "./$dir"
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
[ "$found" = 1 ] || echo "fuzz: no targets"
