#!/usr/bin/env bash
# The house rules of CODE_STYLE.md that a script can see (the compiler and clippy check the
# rest). Run by .ci/run; exits 1 naming every breach.
#   1. No code, test or script cites documents outside the repository: a clone stands alone.
#   2. Every source file ARCHITECTURE.md names exists, so the map stays true as files move.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0

outside="$(grep -rnE --include='*.rs' --include='*.py' --include='*.sh' --include='*.toml' \
  --exclude='style-check.sh' -e '\.\./shared' -e 'seeds/[0-9]' -e 'seed 00[0-9]' \
  crates src tests scripts benches 2> /dev/null || true)"
if [ -n "$outside" ]; then
  echo "$outside"
  echo "style: the lines above cite documents outside the repository"
  failed=1
fi

files="$(git ls-files)"
for name in $(grep -oE '`[A-Za-z0-9_/.-]+\.rs`' ARCHITECTURE.md | tr -d '`' | sort -u); do
  pattern="(^|/)$(printf '%s' "$name" | sed 's/[.]/[.]/g')\$"
  if ! grep -qE "$pattern" <<< "$files"; then
    echo "style: ARCHITECTURE.md names $name, and no file in the repository is that"
    failed=1
  fi
done

if [ "$failed" -eq 0 ]; then echo "style: ok"; fi
exit "$failed"
