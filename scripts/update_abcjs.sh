#!/usr/bin/env bash
# Re-vendor abcjs (MIT, npm package `abcjs`) into producer/gallery_assets/abcjs/.
#
# The gallery page must load from file:// with no network, so the built abcjs-basic-min.js is
# committed with its licence rather than fetched from a CDN. This script is the one way to change
# it: `npm pack` downloads the pinned version from the npm registry (npm checks the tarball
# against the registry's integrity hash), and the version and the file's SHA-256 are recorded
# beside it so tests/producer/test_gallery_assets.py notices a hand-edited copy.
#
# Usage: scripts/update_abcjs.sh [VERSION]   (default: the version in VERSION; `make abcjs`)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/producer/gallery_assets/abcjs"
version="${1:-$(cat "$dest/VERSION")}"
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "error: '$version' is not an exact abcjs version (e.g. 6.7.2); pin one, never a range" >&2
  exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "abcjs@$version" >/dev/null && tar xzf "abcjs-$version.tgz")
cp "$work/package/dist/abcjs-basic-min.js" "$work/package/dist/abcjs-basic-min.js.LICENSE" "$dest/"
cp "$work/package/LICENSE.md" "$dest/LICENSE.md"
echo "$version" > "$dest/VERSION"
(cd "$dest" && sha256sum abcjs-basic-min.js > SHA256SUMS)
echo "abcjs $version vendored into $dest"
