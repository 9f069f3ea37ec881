#!/bin/bash
# make package-check: the packages as a bank installs them. Builds two
# versions of kioskd and kioskhub (make deb), checks them with lintian,
# then in a fresh Debian 12 root (mmdebstrap minbase, the host's apt
# sources) installs v1 with apt-get, checks files, users, modes and
# conffiles, checks the shipped configuration, starts the packaged kioskd
# as its service user with NOTIFY_SOCKET on a test socket (READY=1, then a
# clean stop on SIGTERM), verifies and scores the installed units, boots
# the root's own systemd (systemd-nspawn) to run kioskd.service as shipped
# and upgrade to v2 under it (the running service restarted, local
# conffile edits and state kept), removes (state kept) and purges (state
# gone). Last line:
#
#   package: kioskd <version> installed in a clean root, READY in N ms, security exposure X.X, lintian clean
#
# Runs as root. Mounts live in a private mount namespace; the root is
# removed on exit. Logs in .cache/package-check/.
set -euo pipefail

repo=$(git rev-parse --show-toplevel)
logs=$repo/.cache/package-check
suite=${PACKAGE_CHECK_SUITE:-bookworm}
step=prepare

say() { echo "package-check: $*"; }
fail() {
	echo "package-check: FAILED at $step: $*" >&2
	exit 1
}

if [ "${PACKAGE_CHECK_NS:-}" != 1 ]; then
	[ "$(id -u)" = 0 ] || fail "needs root (mmdebstrap --mode=root, chroot, mounts)"
	missing=
	for t in mmdebstrap:mmdebstrap lintian:lintian systemd-nspawn:systemd-container ip:iproute2; do
		command -v "${t%%:*}" >/dev/null || missing="$missing ${t#*:}"
	done
	if [ -n "$missing" ]; then
		say "installing$missing (needed by this check only)"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
			fail "cannot install$missing"
	fi
	rm -rf "$logs"
	mkdir -p "$logs"
	# Everything below in a private mount namespace: mounts end with it.
	exec env PACKAGE_CHECK_NS=1 unshare --mount --propagation private --fork -- "$0" "$@"
fi

work=$(mktemp -d /var/tmp/kiosk-package-check.XXXXXX)
root=$work/root
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -d "$root" ]; then
		grep " $root" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	fi
	rm -rf --one-file-system "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "package-check: interrupted during $step" >&2; exit 130' INT TERM

# --- Two versions, lintian ----------------------------------------------------
step="make deb (v1, v2)"
base=$(TZ=UTC git -C "$repo" log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)
v1="0.1.0~check${base}.1"
v2="0.1.0~check${base}.2"
bash "$repo/packaging/build-deb.sh" "$work/v1" "$v1" >"$logs/build-v1.log" 2>&1 || { tail -20 "$logs/build-v1.log" >&2; fail "build v1"; }
bash "$repo/packaging/build-deb.sh" "$work/v2" "$v2" >"$logs/build-v2.log" 2>&1 || { tail -20 "$logs/build-v2.log" >&2; fail "build v2"; }
arch=$(dpkg --print-architecture)

step=lintian
# Clean means: no error, no warning; what is overridden is in
# packaging/*/lintian-overrides, each with its reason.
if ! lintian --fail-on error,warning --tag-display-limit 0 "$work"/v2/*.deb >"$logs/lintian.log" 2>&1; then
	cat "$logs/lintian.log" >&2
	fail "lintian reports errors or warnings"
fi
say "lintian: no error or warning, $(grep -c "^[IPX]: " "$logs/lintian.log" || true) remarks below (log: $logs/lintian.log)"

# --- The clean root -----------------------------------------------------------
step="debootstrap (mmdebstrap)"
apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy|Retries) ' >"$work/host-apt.conf" || true
shopt -s nullglob
sources=(/etc/apt/sources.list.d/*.sources)
extra_ca=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
if [ ${#sources[@]} -gt 0 ]; then
	cat "${sources[@]}" >"$work/sources"
elif [ -f /etc/apt/sources.list ]; then
	cp /etc/apt/sources.list "$work/sources"
else
	fail "no apt sources on this machine"
fi
t0=$(date +%s)
mmdebstrap --quiet --variant=minbase --mode=root --include=ca-certificates --aptopt="$work/host-apt.conf" "$suite" "$root" - <"$work/sources" \
	>"$logs/mmdebstrap.log" 2>&1 || { tail -20 "$logs/mmdebstrap.log" >&2; fail "mmdebstrap"; }
say "Debian $suite minbase root (+ ca-certificates) in $(($(date +%s) - t0)) s"
# The machine's network trust (a TLS-intercepting proxy's CA, say).
if [ ${#extra_ca[@]} -gt 0 ]; then
	cp "${extra_ca[@]}" "$root/usr/local/share/ca-certificates/"
	chroot "$root" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates"
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
cp "$work"/v1/*.deb "$work"/v2/*.deb "$root/tmp/"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
apt_in_root() { in_root apt-get -y -q -o Dpkg::Options::=--force-confold "$@" >>"$logs/apt.log" 2>&1 || { tail -30 "$logs/apt.log" >&2; fail "apt-get $*"; }; }

# --- Install v1 ---------------------------------------------------------------
step="install v1"
apt_in_root update
t0=$(date +%s)
# Without the recommended browser first (large): the packages must install
# without it. cage, which the display unit runs, lets systemd-analyze
# verify that unit.
apt_in_root install --no-install-recommends "/tmp/kioskd_${v1}_${arch}.deb" "/tmp/kioskhub_${v1}_${arch}.deb" cage
say "apt-get install ./kioskd_${v1}_${arch}.deb ./kioskhub_${v1}_${arch}.deb: $(($(date +%s) - t0)) s"
t0=$(date +%s)
# The browser the display unit runs, for its start under systemd below.
apt_in_root install --no-install-recommends chromium xwayland
say "apt-get install chromium xwayland (for the display unit): $(($(date +%s) - t0)) s"

step="files, users, modes, conffiles"
for f in /usr/bin/kioskd /usr/bin/kioskctl /usr/bin/kioskhub /lib/systemd/system/kioskd.service \
	/lib/systemd/system/kiosk-display.service /lib/systemd/system/kioskhub.service /usr/lib/sysusers.d/kioskd.conf \
	/usr/lib/tmpfiles.d/kioskd.conf /lib/udev/rules.d/60-kioskd.rules /usr/share/kioskd/models/fr_detect.onnx \
	/usr/share/doc/kioskd/copyright /usr/share/doc/kioskhub/changelog.gz /usr/share/man/man8/kioskd.8.gz; do
	[ -e "$root$f" ] || fail "$f not installed"
done
(cd "$root/usr/share/kioskd/models" && sha256sum --quiet -c SHA256SUMS) || fail "installed models do not match their SHA-256"
in_root getent passwd kioskd >/dev/null || fail "no kioskd user"
in_root getent passwd kioskhub >/dev/null || fail "no kioskhub user"
in_root getent passwd kiosk-display >/dev/null || fail "no kiosk-display user"
groups=$(in_root id -nG kioskd)
for g in kiosk-gpio video tss audio; do
	[[ " $groups " == *" $g "* ]] || fail "kioskd not in group $g (groups: $groups)"
done
[ "$(in_root getent passwd kioskd | cut -d: -f7)" = /usr/sbin/nologin ] || fail "kioskd has a login shell"
want_mode() {
	local got
	got=$(in_root stat -c '%a %U:%G' "$1")
	[ "$got" = "$2" ] || fail "$1 is $got, want $2"
}
want_mode /etc/kioskd "750 root:kioskd"
want_mode /etc/kioskd/kioskd.toml "644 root:root"
want_mode /var/lib/kioskd "750 kioskd:kioskd"
want_mode /etc/kioskhub "750 root:kioskhub"
want_mode /var/lib/kioskhub "750 kioskhub:kioskhub"
want_mode /usr/bin/kioskd "755 root:root"
in_root dpkg-query -W -f='${Conffiles}\n' kioskd | grep -q '^ /etc/kioskd/kioskd.toml ' || fail "kioskd.toml is not a conffile"
in_root dpkg-query -W -f='${Conffiles}\n' kioskhub | grep -q '^ /etc/kioskhub/kioskhub.toml ' || fail "kioskhub.toml is not a conffile"
if in_root dpkg-query -W -f='${Depends}\n' kioskd | grep -q -- '-dev'; then
	fail "kioskd depends on a -dev package: $(in_root dpkg-query -W -f='${Depends}' kioskd)"
fi

step="shipped configuration"
# The shipped configuration is production's (mTLS broker, device key,
# chip authentication…); it must check as it is installed.
in_root /usr/bin/kioskd --config /etc/kioskd/kioskd.toml --check-config >"$logs/check-config.log" 2>&1 ||
	{ cat "$logs/check-config.log" >&2; fail "kioskd --check-config on the shipped configuration"; }
in_root /usr/bin/kioskd --config /usr/share/kioskd/examples/simulation.toml --check-config >>"$logs/check-config.log" 2>&1 ||
	{ cat "$logs/check-config.log" >&2; fail "the example simulation configuration does not check"; }
in_root /usr/bin/kioskhub --config /etc/kioskhub/kioskhub.toml --check-config >"$logs/check-config-hub.log" 2>&1 ||
	{ cat "$logs/check-config-hub.log" >&2; fail "kioskhub --check-config on the shipped configuration"; }

step="start the packaged kioskd"
notifywait=$work/notifywait
(cd "$repo" && go build -o "$notifywait" ./internal/notifywait) || fail "build notifywait"
# As systemd would: the service user and its groups, the state directory
# the unit declares, the example simulation configuration.
# In a network namespace of its own (loopback only): the kiosk's ports
# (8080, 8081, 1883) stay free for whatever else runs on this machine,
# the clean room's make run included.
"$notifywait" -socket "$root/run/notify.sock" -env-socket /run/notify.sock -timeout 120s -- \
	unshare --net -- /bin/sh -c 'ip link set lo up && exec "$0" "$@"' chroot --userspec=kioskd:kioskd --groups=video,kiosk-gpio,tss,audio "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/var/lib/kioskd NOTIFY_SOCKET=/run/notify.sock \
	/usr/bin/kioskd --config /usr/share/kioskd/examples/simulation.toml >"$logs/kioskd-ready.txt" 2>"$logs/kioskd.log" ||
	{ tail -30 "$logs/kioskd.log" >&2; fail "the packaged kioskd did not start and stop as a notify service"; }
ready_ms=$(sed -n 's/^ready in \([0-9]*\) ms$/\1/p' "$logs/kioskd-ready.txt")
say "the packaged kioskd sent READY=1 after $ready_ms ms as user kioskd and stopped cleanly on SIGTERM"

step="units"
for u in kioskd.service kiosk-display.service kioskhub.service; do
	in_root systemd-analyze verify "/lib/systemd/system/$u" >"$logs/verify-$u.log" 2>&1 ||
		{ cat "$logs/verify-$u.log" >&2; fail "systemd-analyze verify $u"; }
done
score() {
	in_root systemd-analyze security --offline=true "/lib/systemd/system/$1" 2>&1 | tee "$logs/security-$1.log" |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
exposure=$(score kioskd.service)
hub_exposure=$(score kioskhub.service)
awk -v a="$exposure" -v b="$hub_exposure" 'BEGIN { exit !(a != "" && b != "" && a <= 2.0 && b <= 2.0) }' ||
	fail "security exposure kioskd $exposure, kioskhub $hub_exposure (want ≤ 2.0)"
say "systemd-analyze: units verify; security exposure kioskd $exposure, kioskhub $hub_exposure"

# --- Upgrade, remove, purge -----------------------------------------------------
step="under systemd: start, upgrade, stop"
# The root boots its own systemd (systemd-nspawn, with a network of its
# own: loopback only) and a oneshot unit drives the test inside it: the packaged
# kioskd.service, hardened as shipped (sandbox, system-call filter,
# watchdog), started with the example simulation configuration through a
# drop-in; the upgrade to v2 with apt-get, whose postinst must restart the
# running service; a clean stop. The results are read after power-off.
echo "# edited by the operator" >>"$root/etc/kioskd/kioskd.toml"
install -d -o "$(stat -c %u "$root/var/lib/kioskd")" -g "$(stat -c %g "$root/var/lib/kioskd")" "$root/var/lib/kioskd/state"
echo outbox >"$root/var/lib/kioskd/state/kept"
mkdir -p "$root/root/debs"
cp "$work"/v2/*.deb "$root/root/debs/"
cat >"$root/usr/local/sbin/kiosk-package-check" <<'INNER'
#!/bin/bash
exec >/root/package-check.result 2>/root/package-check.log
export DEBIAN_FRONTEND=noninteractive
mkdir -p /etc/systemd/system/kioskd.service.d
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/kioskd --config /usr/share/kioskd/examples/simulation.toml --check-config\nExecStart=\nExecStart=/usr/bin/kioskd --config /usr/share/kioskd/examples/simulation.toml\n' \
	>/etc/systemd/system/kioskd.service.d/simulation.conf
systemctl daemon-reload
t0=$(date +%s%N)
systemctl start kioskd.service
echo "start_ms=$((($(date +%s%N) - t0) / 1000000))"
echo "start_state=$(systemctl is-active kioskd.service)"
echo "start_pid=$(systemctl show -p MainPID --value kioskd.service)"
echo "user=$(ps -o user= -p "$(systemctl show -p MainPID --value kioskd.service)")"
apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold /root/debs/kioskd_*.deb /root/debs/kioskhub_*.deb >>/root/package-check.log 2>&1
echo "upgrade_rc=$?"
sleep 2
echo "upgrade_state=$(systemctl is-active kioskd.service)"
echo "upgrade_pid=$(systemctl show -p MainPID --value kioskd.service)"
# The shopper screen: cage on wlroots' headless backend (no display in a
# container), no tty or login session (none here); the rest as shipped.
# Started alone it must pull kioskd in and wait for its READY=1; a killed
# cage is restarted; each time Chromium holds kioskd's screen open.
systemctl stop kioskd.service
mkdir -p /etc/systemd/system/kiosk-display.service.d
printf '[Service]\nEnvironment=WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman XDG_RUNTIME_DIR=/run/kiosk-display\nPAMName=\nTTYPath=\nStandardInput=null\nUtmpIdentifier=\n' \
	>/etc/systemd/system/kiosk-display.service.d/headless.conf
systemctl daemon-reload
# screen_open: a process of the unit (Chromium's network service) holds a
# connection to kioskd's screen (the page's event stream keeps one open).
unit_procs() {
	# By each process's own cgroup line: the cgroup file system's layout
	# under systemd-nspawn is not the one systemctl names.
	grep -l 'kiosk-display\.service' /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3
}
screen_open() {
	local inodes pid fd inode i
	inodes=$(awk '$3 == "0100007F:1F90" && $4 == "01" { print $10 }' /proc/net/tcp)
	[ -n "$inodes" ] || return 1
	for pid in $(unit_procs); do
		for fd in /proc/$pid/fd/*; do
			inode=$(readlink "$fd" 2>/dev/null) || continue
			case "$inode" in "socket:["*"]") ;; *) continue ;; esac
			inode=${inode#socket:[}; inode=${inode%]}
			for i in $inodes; do [ "$i" = "$inode" ] && return 0; done
		done
	done
	return 1
}
# screen_diag: what the check saw, for the log when it fails.
screen_diag() {
	echo "--- $1: the unit's processes"
	for pid in $(unit_procs); do echo "$pid $(cat /proc/$pid/comm 2>/dev/null) $(tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null | cut -c1-120)"; done
	echo "--- $1: TCP to 127.0.0.1:8080 (state, inode)"
	awk '$3 == "0100007F:1F90" { print $4, $10 }' /proc/net/tcp
}
wait_screen() {
	local i
	for i in $(seq 1 120); do
		screen_open && { echo "$1_ms=$((($(date +%s%N) - t0) / 1000000))"; return 0; }
		sleep 0.5
	done
	echo "$1_ms=never"
	screen_diag "$1" >>/root/display-diag.log 2>&1
}
t0=$(date +%s%N)
systemctl start kiosk-display.service
echo "display_state=$(systemctl is-active kiosk-display.service)"
echo "display_kioskd_state=$(systemctl is-active kioskd.service)"
# The user of cage itself: right after start the main process can still be
# systemd's forked child (root) that has not yet switched user and exec'd.
display_user=none
for i in $(seq 1 40); do
	p=$(systemctl show -p MainPID --value kiosk-display.service)
	if [ "$p" -gt 0 ] 2>/dev/null && [ "$(cat /proc/$p/comm 2>/dev/null)" = cage ]; then
		display_user=$(ps -o user= -p "$p")
		break
	fi
	sleep 0.25
done
echo "display_user=$display_user"
echo "ready_at=$(systemctl show -p ActiveEnterTimestampMonotonic --value kioskd.service)"
echo "display_at=$(systemctl show -p ExecMainStartTimestampMonotonic --value kiosk-display.service)"
wait_screen display_screen
display_pid=$(systemctl show -p MainPID --value kiosk-display.service)
echo "display_pid=$display_pid"
t0=$(date +%s%N)
# Never kill 0 (this script's own process group) when cage is not running.
[ "$display_pid" -gt 0 ] 2>/dev/null && kill -KILL "$display_pid"
for i in $(seq 1 60); do
	[ "$display_pid" -gt 0 ] 2>/dev/null || break
	p=$(systemctl show -p MainPID --value kiosk-display.service)
	[ "$p" != 0 ] && [ "$p" != "$display_pid" ] && [ "$(systemctl is-active kiosk-display.service)" = active ] && break
	sleep 0.5
done
echo "display_restart_pid=$(systemctl show -p MainPID --value kiosk-display.service)"
echo "display_restarts=$(systemctl show -p NRestarts --value kiosk-display.service)"
wait_screen display_rescreen
{ cat /root/display-diag.log 2>/dev/null; journalctl -u kiosk-display.service --no-pager; } >/root/display.log 2>&1
systemctl stop kiosk-display.service
rm -rf /etc/systemd/system/kiosk-display.service.d
systemctl stop kioskd.service
echo "stop_result=$(systemctl show -p Result --value kioskd.service)"
journalctl -u kioskd.service --no-pager >>/root/package-check.log 2>&1
rm -rf /etc/systemd/system/kioskd.service.d
systemctl poweroff
INNER
chmod 0755 "$root/usr/local/sbin/kiosk-package-check"
printf '[Unit]\nDescription=package check\nAfter=multi-user.target\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/kiosk-package-check\n[Install]\nWantedBy=multi-user.target\n' \
	>"$root/etc/systemd/system/kiosk-package-check.service"
ln -sf /etc/systemd/system/kiosk-package-check.service "$root/etc/systemd/system/multi-user.target.wants/kiosk-package-check.service"
grep " $root/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
timeout 600 systemd-nspawn --quiet --directory="$root" --boot --register=no --keep-unit --private-network >"$logs/boot.log" 2>&1 ||
	{ tail -20 "$logs/boot.log" >&2; fail "booting the root under systemd-nspawn"; }
cp "$root/root/package-check.log" "$logs/systemd-run.log" 2>/dev/null || true
res() { sed -n "s/^$1=//p" "$root/root/package-check.result"; }
[ -f "$root/root/package-check.result" ] || fail "the check inside the booted root did not run (log: $logs/boot.log)"
[ "$(res start_state)" = active ] || fail "kioskd.service did not start under systemd: $(res start_state) (log: $logs/systemd-run.log)"
[ "$(res user)" = kioskd ] || fail "kioskd.service ran as $(res user), want kioskd"
[ "$(res upgrade_rc)" = 0 ] || fail "apt-get upgrade to $v2 inside the booted root (log: $logs/systemd-run.log)"
[ "$(res upgrade_state)" = active ] || fail "kioskd.service not active after the upgrade: $(res upgrade_state)"
[ "$(res upgrade_pid)" != "$(res start_pid)" ] || fail "the upgrade did not restart kioskd.service (MainPID $(res start_pid) before and after)"
[ "$(res stop_result)" = success ] || fail "kioskd.service stopped with result $(res stop_result)"
cp "$root/root/display.log" "$logs/display.log" 2>/dev/null || true
[ "$(res display_state)" = active ] || fail "kiosk-display.service did not start: $(res display_state) (log: $logs/display.log)"
[ "$(res display_kioskd_state)" = active ] || fail "starting kiosk-display.service did not start kioskd.service"
[ "$(res display_user)" = kiosk-display ] || fail "kiosk-display.service ran as $(res display_user), want kiosk-display"
[ "$(res display_at)" -ge "$(res ready_at)" ] || fail "the screen started before kioskd was ready ($(res display_at) < $(res ready_at) µs)"
[ "$(res display_screen_ms)" != never ] || fail "Chromium in kiosk-display.service never opened kioskd's screen (log: $logs/display.log)"
[ "$(res display_restarts)" = 1 ] && [ "$(res display_restart_pid)" != "$(res display_pid)" ] ||
	fail "kiosk-display.service not restarted after cage was killed (restarts $(res display_restarts), MainPID $(res display_pid) → $(res display_restart_pid))"
[ "$(res display_rescreen_ms)" != never ] || fail "after the restart Chromium never opened kioskd's screen again (log: $logs/display.log)"
rm -f "$root/etc/systemd/system/multi-user.target.wants/kiosk-package-check.service" "$root/etc/systemd/system/kiosk-package-check.service"
say "under systemd: kioskd.service (hardened as shipped) active in $(res start_ms) ms as user kioskd; the upgrade restarted it (MainPID $(res start_pid) → $(res upgrade_pid)); stopped cleanly"
say "under systemd: kiosk-display.service (cage headless + Chromium, as kiosk-display) started after kioskd's READY, showed the screen in $(res display_screen_ms) ms; cage killed → restarted, screen again in $(res display_rescreen_ms) ms"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"

step="upgrade to v2"
[ "$(in_root dpkg-query -W -f='${Version}' kioskd)" = "$v2" ] || fail "kioskd not at $v2 after the upgrade"
grep -q '^# edited by the operator$' "$root/etc/kioskd/kioskd.toml" || fail "the operator's edit of kioskd.toml was lost"
[ -f "$root/var/lib/kioskd/state/kept" ] || fail "state lost in the upgrade"
in_root /usr/bin/kioskd --version 2>&1 | grep -q -- "$v2" || fail "the upgraded kioskd does not report $v2"
say "upgraded $v1 → $v2: conffile edit and state kept"

step="remove"
apt_in_root remove kioskd kioskhub
[ ! -e "$root/usr/bin/kioskd" ] || fail "kioskd still installed after remove"
[ -f "$root/var/lib/kioskd/state/kept" ] || fail "state removed by remove (only purge removes it)"
[ -f "$root/etc/kioskd/kioskd.toml" ] || fail "configuration removed by remove"

step="purge"
apt_in_root purge kioskd kioskhub
for d in /var/lib/kioskd /etc/kioskd /var/lib/kioskhub /etc/kioskhub; do
	[ ! -e "$root$d" ] || fail "$d left after purge"
done
say "removed (state kept), purged (state and configuration gone)"

echo "package: kioskd $v1 installed in a clean root, READY in $ready_ms ms, security exposure $exposure, lintian clean"
