#!/bin/bash
# make cleanroom: proves the README's two commands on a machine that has only
# what the README says it needs. It builds a fresh Debian 12 root with
# mmdebstrap, puts git, make, ca-certificates and the host's Go toolchain in
# it, clones this repository at HEAD into it (a clone, so untracked files
# cannot help), and inside it runs `make run` until the screen answers on
# 127.0.0.1:8080, stops it with SIGTERM, then runs `make test`.
#
# What comes from the host is the machine's own configuration, never a
# literal in this repository: apt sources and apt's network options, the
# extra CA certificates the machine trusts, DNS, and the Go proxy and npm
# registry settings. Nothing else is cached: every package, module, model
# and test file is fetched again, as on a new machine.
#
# Runs as root (mmdebstrap --mode=root, chroot, mounts). Everything inside
# runs in private mount and PID namespaces, so its mounts and processes end
# with it, even when this script is killed; the root is removed on exit.
# Logs are kept in .cache/cleanroom/.
set -euo pipefail

repo=$(git rev-parse --show-toplevel)
commit=$(git rev-parse HEAD)
logs=$repo/.cache/cleanroom
suite=${CLEANROOM_SUITE:-bookworm}
# Set-up included: apt, the Go modules, a cold build, models and media.
run_limit=${CLEANROOM_RUN_LIMIT:-1500}

step=prepare
work=
nspid=

say() { echo "cleanroom: $*"; }
fail() {
	echo "cleanroom: FAILED at $step: $*" >&2
	exit 1
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$nspid" ] && kill -0 "$nspid" 2>/dev/null; then
		# unshare --kill-child: its child is PID 1 of the namespace, and
		# every process in it dies with that child.
		kill -KILL "$nspid" 2>/dev/null || true
		wait "$nspid" 2>/dev/null || true
	fi
	if [ -n "$work" ] && [ -d "$work" ]; then
		if [ -d "$work/root/root/logs" ]; then
			mkdir -p "$logs"
			cp -f "$work"/root/root/logs/* "$logs"/ 2>/dev/null || true
		fi
		# The mounts lived in the namespace; never remove through one that
		# is somehow still there.
		local i
		for i in $(seq 50); do
			grep -q " $work/" /proc/self/mountinfo || break
			sleep 0.1
		done
		if grep -q " $work/" /proc/self/mountinfo; then
			grep " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
		fi
		rm -rf --one-file-system "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "cleanroom: interrupted during $step" >&2; exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "needs root (mmdebstrap --mode=root, chroot and mounts)"
if ! command -v mmdebstrap >/dev/null; then
	say "installing mmdebstrap (needed by this check only)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null ||
		fail "cannot install mmdebstrap"
fi
gobin=$(command -v go) || fail "go not found on the host (its toolchain is copied into the root)"
goroot=$("$gobin" env GOROOT)
for port in 8080 8081 1883; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		fail "127.0.0.1:$port is already in use on this machine; make run needs it"
	fi
done
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
	say "note: uncommitted changes are not part of this check (it clones $commit)"
fi

work=$(mktemp -d /var/tmp/kiosk-cleanroom.XXXXXX)
root=$work/root
rm -rf "$logs"
mkdir -p "$logs"

# --- The fresh root ---------------------------------------------------------
step="debootstrap (mmdebstrap)"
# apt's network options as this machine has them (e.g. a snapshot mirror's
# validity checks, a proxy), so apt inside behaves as apt here.
apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy|Retries) ' >"$work/host-apt.conf" || true
sources=()
shopt -s nullglob
sources=(/etc/apt/sources.list.d/*.sources)
shopt -u nullglob
if [ ${#sources[@]} -gt 0 ]; then
	cat "${sources[@]}" >"$work/sources"
elif [ -f /etc/apt/sources.list ]; then
	cp /etc/apt/sources.list "$work/sources"
else
	fail "no apt sources on this machine"
fi
t0=$(date +%s)
mmdebstrap --quiet --variant=minbase --mode=root --include=git,make,ca-certificates \
	--aptopt="$work/host-apt.conf" "$suite" "$root" - <"$work/sources" >"$logs/mmdebstrap.log" 2>&1 ||
	{ tail -20 "$logs/mmdebstrap.log" >&2; fail "mmdebstrap failed (log: $logs/mmdebstrap.log)"; }
say "Debian $suite root (minbase + git, make, ca-certificates) in $(($(date +%s) - t0)) s"

step="prepare the root"
# The machine's network trust and name resolution, not the project's.
shopt -s nullglob
extra_ca=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
if [ ${#extra_ca[@]} -gt 0 ]; then
	cp "${extra_ca[@]}" "$root/usr/local/share/ca-certificates/"
	chroot "$root" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates"
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp -L /etc/hosts "$root/etc/hosts"
# The one prerequisite that is not a Debian package: Go 1.26.
mkdir -p "$root/usr/local"
cp -a "$goroot" "$root/usr/local/go"
# A clone of the commit under test.
git clone -q --no-local "$repo" "$root/root/kiosk" || fail "git clone"
git -C "$root/root/kiosk" checkout -q --detach "$commit" || fail "git checkout $commit"
mkdir -p "$root/root/logs"
# This workplace lays shared/ (public trust lists, a face calibration set)
# beside every checkout; tests read it from there. It is data, not a cache.
if [ -d "$repo/../shared/data" ]; then
	mkdir -p "$root/root/shared"
	cp -a "$repo/../shared/data" "$root/root/shared/data"
	chmod -R a-w "$root/root/shared"
fi

# The environment a new user's shell would have, plus where the machine
# reaches its registries (read from the host's Go and npm configuration).
envs=(HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 SHELL=/bin/bash TERM=dumb
	PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
for v in GOPROXY GOSUMDB GONOSUMDB GONOPROXY GOPRIVATE GOINSECURE GOFLAGS GOTOOLCHAIN; do
	val=$("$gobin" env "$v")
	[ -z "$val" ] || envs+=("$v=$val")
done
if command -v npm >/dev/null; then
	reg=$(npm config get registry 2>/dev/null || true)
	[ -z "$reg" ] || envs+=("npm_config_registry=$reg")
	caf=$(npm config get cafile 2>/dev/null || true)
	case $caf in /etc/ssl/certs/*) envs+=("npm_config_cafile=$caf") ;; esac
fi
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
	[ -z "${!v:-}" ] || envs+=("$v=${!v}")
done
printf '%s\n' "${envs[@]}" >"$root/root/cleanroom.env"

# The steps a new user takes, run inside the root.
cat >"$root/root/cleanroom-steps.sh" <<'EOF'
#!/bin/bash
set -u
cd /root/kiosk
limit=$1
fail() { echo "$1" >/root/logs/failed-step; echo "$2" >&2; exit 1; }

screen_ok() {
	local status body
	exec 3<>/dev/tcp/127.0.0.1/8080 || return 1
	printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n\r\n' >&3
	body=$(timeout 5 cat <&3)
	exec 3<&-
	status=${body%%$'\r'*}
	[[ $status == "HTTP/1."?" 200"* && $body == *"<html"* ]]
}

kioskd_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = kioskd ] && { echo "${p#/proc/}"; return 0; }
	done
	return 1
}

start=$(date +%s)
make run >/root/logs/make-run.log 2>&1 &
mk=$!
until screen_ok 2>/dev/null; do
	kill -0 "$mk" 2>/dev/null || { wait "$mk"; fail "make run" "make run exited with $? before the screen answered"; }
	[ $(($(date +%s) - start)) -lt "$limit" ] || fail "make run" "the screen did not answer on 127.0.0.1:8080 within $limit s"
	sleep 1
done
served=$(($(date +%s) - start))
echo "make run: screen answered on 127.0.0.1:8080 after $served s" >&2
pid=$(kioskd_pid) || fail "make run" "the screen answered but no kioskd process was found"
kill -TERM "$pid"
wait "$mk"
rc=$?
[ "$rc" = 0 ] || fail "make run (stop)" "make run exited with $rc after SIGTERM to kioskd (want a clean stop)"

start=$(date +%s)
make test >/root/logs/make-test.log 2>&1
rc=$?
took=$(($(date +%s) - start))
[ "$rc" = 0 ] || fail "make test" "make test exited with $rc after $took s"
pkgs=$(grep -cE '^ok[[:space:]]+kiosk/' /root/logs/make-test.log)
echo "$served $pkgs $took" >/root/logs/result
EOF
chmod 755 "$root/root/cleanroom-steps.sh"

# --- Inside: private mount and PID namespaces, then chroot -------------------
step="make run / make test"
say "inside the root: make run, then make test (logs in $logs)"
unshare --mount --pid --fork --kill-child --propagation private -- /bin/bash -c '
	set -e
	r=$1
	# The root is a mount point, as / is on a machine: a process that makes
	# its own mounts private (pcscd in the tests, systemd units) needs that.
	mount --bind "$r" "$r"
	mount -t proc proc "$r/proc"
	mount -t sysfs -o ro sysfs "$r/sys"
	mount -t tmpfs -o mode=755,nosuid dev "$r/dev"
	for d in null zero full random urandom tty; do
		touch "$r/dev/$d"; mount --bind "/dev/$d" "$r/dev/$d"
	done
	# Loop devices, as on a machine (the update tests put
	# their A/B slots on loop devices): the control node and 64 block nodes.
	if [ -e /dev/loop-control ]; then
		touch "$r/dev/loop-control"; mount --bind /dev/loop-control "$r/dev/loop-control"
		for n in $(seq 0 63); do mknod -m 660 "$r/dev/loop$n" b 7 "$n"; done
	fi
	mkdir -p "$r/dev/pts" "$r/dev/shm"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
	ln -s pts/ptmx "$r/dev/ptmx"
	ln -s /proc/self/fd "$r/dev/fd"
	ln -s /proc/self/fd/0 "$r/dev/stdin"
	ln -s /proc/self/fd/1 "$r/dev/stdout"
	ln -s /proc/self/fd/2 "$r/dev/stderr"
	mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
	mount -t tmpfs -o mode=755,nosuid,nodev run "$r/run"
	mapfile -t envs <"$r/root/cleanroom.env"
	exec chroot "$r" /usr/bin/env -i "${envs[@]}" /bin/bash /root/cleanroom-steps.sh "$2"
' cleanroom "$root" "$run_limit" &
nspid=$!
set +e
wait "$nspid"
rc=$?
set -e
nspid=

if [ "$rc" != 0 ] || [ ! -f "$root/root/logs/result" ]; then
	failed=$(cat "$root/root/logs/failed-step" 2>/dev/null || echo "the namespace set-up")
	step=$failed
	case $failed in
	"make test")
		log=$root/root/logs/make-test.log
		# The failing tests and what they said, then the end of the log.
		grep -E -B2 -A12 '^(--- FAIL|FAIL|panic:)' "$log" | head -120 >&2 || true
		echo "--- last lines of make test ---" >&2
		tail -15 "$log" >&2
		;;
	"make run"*)
		echo "--- last lines of make run ---" >&2
		tail -30 "$root/root/logs/make-run.log" >&2
		;;
	esac
	fail "exit $rc (logs: $logs)"
fi
read -r served pkgs took <"$root/root/logs/result"
step=report
echo "cleanroom: make run served in $served s, make test passed ($pkgs packages) in $took s"
