#!/bin/sh
# Fetches axe-core (the accessibility rules engine the browser tests load
# into the page under test) into $1/axe with npm pack and checks it
# against axe.sha256. Never committed, never loaded from a CDN.
set -eu
dest=${1:?usage: fetch-axe.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/axe.sha256"
version=4.10.3
mkdir -p "$dest/axe"
cd "$dest/axe"
if sha256sum --quiet -c "$manifest" >/dev/null 2>&1; then
	exit 0
fi
rm -rf package axe.min.js "axe-core-$version.tgz"
npm pack --silent "axe-core@$version" >/dev/null
tar xzf "axe-core-$version.tgz" package/axe.min.js
mv package/axe.min.js axe.min.js
rm -rf package "axe-core-$version.tgz"
sha256sum --quiet -c "$manifest" || { echo "fetch-axe.sh: axe-core checksum mismatch" >&2; exit 1; }
echo "axe-core $version ready in $dest/axe"
