#!/bin/bash
# make deb: builds kioskd_<version>_<arch>.deb and kioskhub_<version>_<arch>.deb
# into an output directory with dpkg-deb (Debian's own tool; no packaging
# framework needed for two binary packages).
#
#   packaging/build-deb.sh OUTDIR [VERSION]
#
# VERSION defaults to 0.1.0~git<commit time>.<short hash> (sorts by commit
# time, as upgrades must). Runtime dependencies of the cgo binaries come
# from dpkg-shlibdeps (the OpenCV 4.6 runtime libraries, libpcsclite1…),
# never -dev packages. The face models are shipped in the kioskd package
# (fetched by `make models`, checked against firmware/face/models.sha256).
set -euo pipefail

repo=$(git rev-parse --show-toplevel)
out=${1:?usage: build-deb.sh OUTDIR [VERSION]}
version=${2:-}
if [ -z "$version" ]; then
	version="0.1.0~git$(TZ=UTC git -C "$repo" log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S).$(git -C "$repo" rev-parse --short=7 HEAD)"
fi
arch=$(dpkg --print-architecture)
models=$repo/.cache/models
go=${GO:-go}

say() { echo "deb: $*"; }
fail() {
	echo "deb: $*" >&2
	exit 1
}

[[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || fail "version $version is not a Debian version"
(cd "$models" && sha256sum --quiet -c "$repo/firmware/face/models.sha256") || fail "face models missing or altered: make models"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Position-independent, stripped, without build paths; the version as
# kioskd reports it.
ldflags="-s -w -X main.version=$version"
for b in kioskd:firmware/cmd/kioskd kioskctl:provisioning/cmd/kioskctl kioskhub:provisioning/cmd/kioskhub; do
	name=${b%%:*}
	(cd "$repo" && "$go" build -trimpath -buildmode=pie -ldflags "$ldflags" -o "$work/bin/$name" "./${b#*:}") || fail "go build $name"
done

# doc installs the package's documentation as Debian policy wants it.
doc() {
	local pkg=$1 root=$2 d=$2/usr/share/doc/$1
	install -d "$d"
	gzip -9n <"$repo/README.md" >"$d/README.md.gz"
	install -m 0644 "$repo/packaging/copyright" "$d/copyright"
	printf '%s (%s) stable; urgency=medium\n\n  * Built from commit %s.\n\n -- Kiosk Firmware Team <firmware@kiosk.invalid>  %s\n' \
		"$pkg" "$version" "$(git -C "$repo" rev-parse HEAD)" \
		"$(TZ=UTC git -C "$repo" log -1 --format=%cd --date=format-local:'%a, %d %b %Y %H:%M:%S +0000')" |
		gzip -9n >"$d/changelog.gz"
	install -d "$root/usr/share/man/man8"
	local m
	for m in "$repo"/packaging/"$pkg"/*.8; do
		gzip -9n <"$m" >"$root/usr/share/man/man8/$(basename "$m").gz"
	done
	install -d "$root/usr/share/lintian/overrides"
	install -m 0644 "$repo/packaging/$pkg/lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"
}

# shlibs prints the Depends dpkg-shlibdeps derives for the given binaries.
shlibs() {
	local d=$work/shlibs
	rm -rf "$d" && mkdir -p "$d/debian"
	printf 'Source: kiosk\n\nPackage: kiosk\nArchitecture: any\n' >"$d/debian/control"
	(cd "$d" && dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

# control writes DEBIAN/ for a staged root: control, conffiles, scripts, md5sums.
control() {
	local pkg=$1 root=$2 depends=$3 recommends=$4 description=$5
	install -d "$root/DEBIAN"
	local size
	size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
	{
		echo "Package: $pkg"
		echo "Version: $version"
		echo "Architecture: $arch"
		echo "Maintainer: Kiosk Firmware Team <firmware@kiosk.invalid>"
		echo "Installed-Size: $size"
		echo "Depends: $depends"
		[ -z "$recommends" ] || echo "Recommends: $recommends"
		echo "Section: misc"
		echo "Priority: optional"
		echo "Homepage: https://kiosk.invalid/"
		printf 'Description: %s\n' "$description"
	} >"$root/DEBIAN/control"
	(cd "$root" && find etc -type f -printf '/%p\n' | sort) >"$root/DEBIAN/conffiles"
	install -m 0755 "$repo/packaging/$pkg/postinst" "$repo/packaging/$pkg/prerm" "$repo/packaging/$pkg/postrm" "$root/DEBIAN/"
	(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
}

# --- kioskd -----------------------------------------------------------------
r=$work/kioskd
install -d "$r/usr/bin" "$r/lib/systemd/system" "$r/usr/lib/sysusers.d" "$r/usr/lib/tmpfiles.d" \
	"$r/lib/udev/rules.d" "$r/etc/kioskd" "$r/usr/share/kioskd/models" "$r/usr/share/kioskd/examples"
install -m 0755 "$work/bin/kioskd" "$work/bin/kioskctl" "$r/usr/bin/"
install -m 0644 "$repo/systemd/kioskd.service" "$repo/systemd/kiosk-display.service" "$r/lib/systemd/system/"
install -m 0644 "$repo/packaging/kioskd/sysusers.conf" "$r/usr/lib/sysusers.d/kioskd.conf"
install -m 0644 "$repo/packaging/kioskd/tmpfiles.conf" "$r/usr/lib/tmpfiles.d/kioskd.conf"
install -m 0644 "$repo/packaging/kioskd/60-kioskd.rules" "$r/lib/udev/rules.d/"
install -m 0644 "$repo/provisioning/config/kioskd.toml" "$r/etc/kioskd/kioskd.toml"
install -m 0644 "$models"/*.onnx "$r/usr/share/kioskd/models/"
install -m 0644 "$repo/firmware/face/models.sha256" "$r/usr/share/kioskd/models/SHA256SUMS"
install -m 0644 "$repo/packaging/kioskd/simulation.toml" "$r/usr/share/kioskd/examples/"
doc kioskd "$r"
deps=$(shlibs -e"$r/usr/bin/kioskd" -e"$r/usr/bin/kioskctl")
[ -n "$deps" ] || fail "dpkg-shlibdeps found no dependencies for kioskd"
control kioskd "$r" "$deps, pcscd, procps, systemd" "cage, xwayland, chromium, fonts-wqy-microhei, libccid, espeak-ng" \
	"bank and checkout kiosk appliance: eID chip and face verification
 kioskd drives the kiosk's camera (OpenCV), smart-card reader (PC/SC),
 GPIO lines and its link to the bank's hub (MQTT): it reads and verifies
 eID chips (ICAO 9303), matches the live face to the chip's photo, asks
 the shopper to smile to confirm, and reports signed transactions.
 kioskctl is the staff tool. The kiosk-display unit shows the shopper
 screen with cage and Chromium."
dpkg-deb --root-owner-group -Zgzip --build "$r" "$out/kioskd_${version}_${arch}.deb" >/dev/null
say "built $out/kioskd_${version}_${arch}.deb"

# --- kioskhub ---------------------------------------------------------------
r=$work/kioskhub
install -d "$r/usr/bin" "$r/lib/systemd/system" "$r/usr/lib/sysusers.d" "$r/usr/lib/tmpfiles.d" "$r/etc/kioskhub"
install -m 0755 "$work/bin/kioskhub" "$r/usr/bin/"
install -m 0644 "$repo/systemd/kioskhub.service" "$r/lib/systemd/system/"
install -m 0644 "$repo/packaging/kioskhub/sysusers.conf" "$r/usr/lib/sysusers.d/kioskhub.conf"
install -m 0644 "$repo/packaging/kioskhub/tmpfiles.conf" "$r/usr/lib/tmpfiles.d/kioskhub.conf"
install -m 0644 "$repo/provisioning/config/kioskhub.toml" "$r/etc/kioskhub/kioskhub.toml"
doc kioskhub "$r"
deps=$(shlibs -e"$r/usr/bin/kioskhub")
[ -n "$deps" ] || fail "dpkg-shlibdeps found no dependencies for kioskhub"
control kioskhub "$r" "$deps, systemd" "postgresql-15" \
	"bank hub for kiosk fleets
 kioskhub takes the kiosks' signed transaction reports and authorization
 requests (MQTT shared subscriptions, or a RabbitMQ quorum queue),
 stores them in PostgreSQL exactly once, and answers with sealed
 acknowledgements and authorizations. Instances are stateless and share
 the work."
dpkg-deb --root-owner-group -Zgzip --build "$r" "$out/kioskhub_${version}_${arch}.deb" >/dev/null
say "built $out/kioskhub_${version}_${arch}.deb"
echo "$version" >"$out/VERSION"
