#!/usr/bin/env bash
# Builds the book in docs/ with mdBook into target/book/ and checks that its internal links and
# anchors resolve (scripts/book_links.py). Installs mdBook (the version below, without its
# live-reload server) with cargo when it is missing; `--tools` only installs it.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.5.4
if ! command -v mdbook > /dev/null || [ "$(mdbook --version)" != "mdbook v$MDBOOK_VERSION" ]; then
  echo "installing mdbook $MDBOOK_VERSION"
  cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features --features search
fi
[ "${1:-}" = "--tools" ] && exit 0
mdbook build docs
python3 scripts/book_links.py target/book

# The README's own links into the repository (the book, ARCHITECTURE.md, the picture).
missing=0
for link in $(grep -oE '\]\([^)#]+' README.md | sed 's/^](//'); do
  case "$link" in http://* | https://*) continue ;; esac
  if [ ! -e "$link" ]; then
    echo "book: README.md links to $link: no such file"
    missing=1
  fi
done
exit "$missing"
