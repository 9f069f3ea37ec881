package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/enroll"
	"kiosk/firmware/enrollwire"
	"kiosk/firmware/hub"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/hubd"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/registrar"
)

// caInit makes the bank's device CA.
func caInit(e *env, args []string) int {
	fs := flag.NewFlagSet("ca init", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("out", "", "directory for root.crt, root.key, issuing.crt, issuing.key")
	org := fs.String("org", "Bank", "organization named in the CA certificates")
	rootKeyOut := fs.String("root-key-out", "", "write the root key here (offline storage, e.g. a removable disk) instead of DIR")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *out == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl ca init --out DIR [--org NAME] [--root-key-out FILE]")
		return ExitUsage
	}
	files := deviceca.FilesIn(*out)
	if *rootKeyOut != "" {
		// The hub host holds DIR (the issuing key); the root key must
		// not land there by another name.
		if within(*out, *rootKeyOut) {
			fmt.Fprintf(e.stderr, "kioskctl ca init: --root-key-out %s is inside %s: the root key belongs off the hub's disk\n", *rootKeyOut, *out)
			return ExitUsage
		}
		files.RootKey = *rootKeyOut
	}
	f, err := deviceca.InitFiles(files, *org, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl ca init:", err)
		return ExitFail
	}
	ca, err := deviceca.Load(f.RootCert, f.IssuingCert, f.IssuingKey)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl ca init: written CA does not load:", err)
		return ExitFail
	}
	fmt.Fprintf(e.stdout, "root %s (until %s)\nissuing %s (until %s)\nkeys %s, %s (mode 0600; keep the root key offline)\nroot sha256 %s\n",
		f.RootCert, ca.Root.NotAfter.UTC().Format(time.DateOnly), f.IssuingCert, ca.Issuing.NotAfter.UTC().Format(time.DateOnly),
		f.RootKey, f.IssuingKey, ca.RootFingerprint())
	if *rootKeyOut == "" {
		fmt.Fprintf(e.stderr, "kioskctl ca init: warning: %s lies beside the issuing key: move it to offline storage before %s goes on the hub (or use --root-key-out)\n", f.RootKey, *out)
	}
	return ExitOK
}

// within tells whether path lies inside dir (after cleaning both).
func within(dir, path string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return true // cannot tell: refuse
	}
	rel, err := filepath.Rel(d, p)
	return err != nil || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}

// hubRegistry opens the device registry of a kioskhub configuration.
func hubRegistry(ctx context.Context, path string) (hubstore.Registry, func() error, error) {
	cfg, err := hubd.Load(path)
	if err != nil {
		return nil, nil, err
	}
	s, _, err := hubd.OpenStore(ctx, cfg.Store)
	if err != nil {
		return nil, nil, err
	}
	reg, ok := s.(hubstore.Registry)
	if !ok {
		s.Close()
		return nil, nil, fmt.Errorf("store %q holds no device registry", cfg.Store.Kind)
	}
	return reg, s.Close, nil
}

// provisionToken mints a one-time enrollment token.
func provisionToken(e *env, args []string) int {
	fs := flag.NewFlagSet("provision token", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	device := fs.String("device", "", "device id the token is bound to")
	ttl := fs.Duration("ttl", 30*time.Minute, "lifetime of the token")
	cfgPath := fs.String("config", "/etc/kioskhub/kioskhub.toml", "kioskhub configuration (its store holds the token)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *device == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl provision token --device ID --ttl 30m [--config FILE]")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, closeFn, err := hubRegistry(ctx, *cfgPath)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision token:", err)
		return ExitUsage
	}
	defer closeFn()
	tok, err := registrar.MintToken(ctx, reg, *device, *ttl, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision token:", err)
		return ExitFail
	}
	// The token is the only output: staff hand it to the kiosk (it is
	// stored at the hub only as a hash).
	fmt.Fprintln(e.stdout, tok)
	return ExitOK
}

// provisionRevoke revokes a device's certificates, or one serial.
func provisionRevoke(e *env, args []string) int {
	fs := flag.NewFlagSet("provision revoke", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	device := fs.String("device", "", "revoke every certificate of this device")
	serial := fs.String("serial", "", "revoke one certificate serial (hex; 0x and colons accepted)")
	reason := fs.String("reason", "revoked by staff", "reason recorded with the revocation")
	cfgPath := fs.String("config", "/etc/kioskhub/kioskhub.toml", "kioskhub configuration")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*device == "") == (*serial == "") {
		fmt.Fprintln(e.stderr, "usage: kioskctl provision revoke (--device ID | --serial HEX) [--reason TEXT] [--config FILE]")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, closeFn, err := hubRegistry(ctx, *cfgPath)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision revoke:", err)
		return ExitUsage
	}
	defer closeFn()
	if *serial != "" {
		c, err := registrar.RevokeSerial(ctx, reg, *serial, *reason, time.Now())
		if err != nil {
			fmt.Fprintln(e.stderr, "kioskctl provision revoke:", err)
			return ExitFail
		}
		fmt.Fprintln(e.stdout, "revoked", c.Serial, "of device", c.Device)
		return ExitOK
	}
	serials, err := registrar.RevokeDevice(ctx, reg, *device, *reason, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision revoke:", err)
		return ExitFail
	}
	for _, s := range serials {
		fmt.Fprintln(e.stdout, "revoked", s)
	}
	return ExitOK
}

// provisionEnroll enrolls this kiosk with a token.
func provisionEnroll(e *env, args []string) int {
	fs := flag.NewFlagSet("provision enroll", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	broker := fs.String("hub", "", "the hub's MQTT broker URL (ssl://, mqtts:// or wss://)")
	token := fs.String("token", "", "enrollment token from bank staff; - reads it from stdin (kept out of the process list)")
	dir := fs.String("dir", "/var/lib/kioskd/identity", "identity directory")
	keyFile := fs.String("key", "", "device key file when there is no TPM (default DIR/device.key)")
	storage := fs.String("key-storage", "auto", "auto (the TPM if --tpm exists, else a file), tpm or file")
	tpmDev := fs.String("tpm", "/dev/tpmrm0", "TPM 2.0 device, or unix:PATH for a software TPM's socket")
	ca := fs.String("ca", "", "CA bundle to trust the broker with (default: system roots)")
	prefix := fs.String("prefix", "kiosk/v1", "topic prefix")
	waitFor := fs.Duration("wait", 30*time.Second, "how long to wait for the hub's answer")
	asJSON := fs.Bool("json", false, "print the identity as JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *broker == "" || *token == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl provision enroll --hub BROKER_URL --token T [--dir DIR] [--ca FILE] [--key-storage auto|tpm|file] [--tpm DEV] [--key FILE]")
		return ExitUsage
	}
	if *token == "-" {
		t, err := readToken(e.stdin)
		if err != nil {
			fmt.Fprintln(e.stderr, "kioskctl provision enroll: --token -:", err)
			return ExitUsage
		}
		*token = t
	}
	// The token travels in the request: never in clear text.
	if u, err := url.Parse(*broker); err != nil || (u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "mqtts" && u.Scheme != "wss") {
		fmt.Fprintf(e.stderr, "kioskctl provision enroll: --hub %q: the token must travel over TLS (ssl://, tls://, mqtts:// or wss://)\n", *broker)
		return ExitUsage
	}
	tlsCfg, err := hub.TLSConfig(*ca, "", "")
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision enroll: --ca:", err)
		return ExitUsage
	}
	if *keyFile == "" {
		*keyFile = filepath.Join(*dir, "device.key")
	}
	keys, closeKeys, err := keyStore(*storage, *tpmDev, *keyFile)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision enroll:", err)
		return ExitUsage
	}
	defer closeKeys()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	id, err := enroll.Enroll(ctx, enroll.Options{Broker: *broker, TLS: tlsCfg, Token: *token, Dir: *dir,
		Keys: keys, Prefix: *prefix, Wait: *waitFor})
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision enroll:", err)
		var re *enroll.RejectedError
		if errors.As(err, &re) {
			return ExitUsage
		}
		return ExitFail
	}
	if *asJSON {
		b, _ := json.MarshalIndent(id, "", "  ")
		fmt.Fprintln(e.stdout, string(b))
		return ExitOK
	}
	fmt.Fprintf(e.stdout, "enrolled %s in %d ms: certificate %s until %s, key_storage %s, identity in %s\n",
		id.Device, time.Since(start).Milliseconds(), id.Serial, id.NotAfter.Format(time.DateOnly), id.KeyStorage, *dir)
	return ExitOK
}

// keyStore picks where the device key is made: the TPM when asked for or,
// with auto, when its device exists; a 0600 file otherwise.
func keyStore(kind, tpmDev, keyFile string) (devicekey.Store, func(), error) {
	if kind == "auto" {
		kind = "file"
		if strings.HasPrefix(tpmDev, "unix:") {
			kind = "tpm"
		} else if _, err := os.Stat(tpmDev); err == nil {
			kind = "tpm"
		}
	}
	switch kind {
	case "tpm":
		t, err := devicekey.OpenTPM(tpmDev)
		if err != nil {
			return nil, nil, err
		}
		return t, func() { t.Close() }, nil
	case "file":
		return &devicekey.File{Path: keyFile}, func() {}, nil
	}
	return nil, nil, fmt.Errorf("--key-storage %q: auto, tpm or file", kind)
}

// provisionCSR (kiosk, offline): the key is made on the kiosk, the CSR
// written to a file for the bank.
func provisionCSR(e *env, args []string) int {
	fs := flag.NewFlagSet("provision csr", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	device := fs.String("device", "", "this kiosk's device id")
	out := fs.String("out", "", "CSR file to write (PEM), e.g. on a USB stick")
	dir := fs.String("dir", "/var/lib/kioskd/identity", "identity directory")
	keyFile := fs.String("key", "", "device key file when there is no TPM (default DIR/device.key)")
	storage := fs.String("key-storage", "auto", "auto, tpm or file")
	tpmDev := fs.String("tpm", "/dev/tpmrm0", "TPM 2.0 device, or unix:PATH")
	force := fs.Bool("force", false, "replace a device key that exists (the kiosk stops working until the bundle is imported)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *device == "" || *out == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl provision csr --device ID --out FILE [--dir DIR] [--key-storage auto|tpm|file] [--tpm DEV] [--force]")
		return ExitUsage
	}
	if *keyFile == "" {
		*keyFile = filepath.Join(*dir, "device.key")
	}
	keys, closeKeys, err := keyStore(*storage, *tpmDev, *keyFile)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision csr:", err)
		return ExitUsage
	}
	defer closeKeys()
	// The offline path makes its key in place (the bundle comes back in
	// another run): a working key is replaced only when staff say so.
	if _, err := keys.Load(context.Background()); err == nil && !*force {
		fmt.Fprintln(e.stderr, "kioskctl provision csr: this kiosk already has a device key; a new CSR replaces it at once and the kiosk stops signing until the bundle is imported: add --force to do so")
		return ExitFail
	}
	if err := enroll.ExportCSR(context.Background(), keys, *device, *out); err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision csr:", err)
		return ExitFail
	}
	fmt.Fprintf(e.stdout, "CSR for %s written to %s (key_storage %s)\n", *device, *out, keys.Kind())
	return ExitOK
}

// provisionSign (bank, offline): a CSR file into a signed bundle.
func provisionSign(e *env, args []string) int {
	fs := flag.NewFlagSet("provision sign", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	csrFile := fs.String("csr", "", "CSR file from the kiosk")
	device := fs.String("device", "", "the device id the CSR must be for")
	out := fs.String("out", "", "bundle file to write")
	cfgPath := fs.String("config", "/etc/kioskhub/kioskhub.toml", "kioskhub configuration (its [ca] with the issuing key, its store)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *csrFile == "" || *device == "" || *out == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl provision sign --csr FILE --device ID --out BUNDLE [--config FILE]")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, closeFn, err := offlineRegistrar(ctx, *cfgPath)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision sign:", err)
		return ExitUsage
	}
	defer closeFn()
	// A CSR is a few hundred bytes: anything near the enrollment
	// request's bound is not one.
	csr, err := readBounded(*csrFile, enrollwire.MaxRequest)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision sign:", err)
		return ExitUsage
	}
	b, err := r.SignOffline(ctx, csr, *device)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision sign:", err)
		return ExitFail
	}
	if err := enroll.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision sign:", err)
		return ExitFail
	}
	fmt.Fprintf(e.stdout, "bundle for %s written to %s; on the kiosk: kioskctl provision import --bundle FILE --root-sha256 %s\n",
		*device, *out, r.RootFingerprint())
	return ExitOK
}

// readToken reads the token from the first line of r (at most 1 KiB).
func readToken(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if t := strings.TrimSpace(line); t != "" {
		return t, nil
	}
	return "", errors.New("no token on stdin")
}

// readBounded reads a file of at most max bytes; a larger one is refused
// before it is read whole.
func readBounded(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// provisionImport (kiosk, offline): a signed bundle into the identity.
func provisionImport(e *env, args []string) int {
	fs := flag.NewFlagSet("provision import", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	bundle := fs.String("bundle", "", "bundle file from the bank")
	rootSum := fs.String("root-sha256", "", "the device CA root's SHA-256 (from kioskctl ca init / provision sign), checked out of band")
	dir := fs.String("dir", "/var/lib/kioskd/identity", "identity directory")
	keyFile := fs.String("key", "", "device key file when there is no TPM (default DIR/device.key)")
	storage := fs.String("key-storage", "auto", "auto, tpm or file")
	tpmDev := fs.String("tpm", "/dev/tpmrm0", "TPM 2.0 device, or unix:PATH")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *bundle == "" || *rootSum == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl provision import --bundle FILE --root-sha256 HEX [--dir DIR] [--key-storage auto|tpm|file] [--tpm DEV]")
		return ExitUsage
	}
	if *keyFile == "" {
		*keyFile = filepath.Join(*dir, "device.key")
	}
	keys, closeKeys, err := keyStore(*storage, *tpmDev, *keyFile)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision import:", err)
		return ExitUsage
	}
	defer closeKeys()
	b, err := readBounded(*bundle, enrollwire.MaxBundle)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision import:", err)
		return ExitUsage
	}
	id, err := enroll.ImportBundle(context.Background(), b, *rootSum, *dir, keys, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl provision import:", err)
		return ExitFail
	}
	fmt.Fprintf(e.stdout, "enrolled %s offline: certificate %s until %s, key_storage %s, identity in %s\n",
		id.Device, id.Serial, id.NotAfter.Format(time.DateOnly), id.KeyStorage, *dir)
	return ExitOK
}

// offlineRegistrar is the registrar of a kioskhub configuration, for
// signing CSR files.
func offlineRegistrar(ctx context.Context, path string) (*registrar.Registrar, func() error, error) {
	cfg, err := hubd.Load(path)
	if err != nil {
		return nil, nil, err
	}
	if cfg.CA.IssuingKey == "" {
		return nil, nil, fmt.Errorf("%s: [ca] issuing_key is required to sign", path)
	}
	ca, err := deviceca.Load(cfg.CA.Root, cfg.CA.IssuingCert, cfg.CA.IssuingKey)
	if err != nil {
		return nil, nil, err
	}
	read := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		b, err := os.ReadFile(p)
		return string(b), err
	}
	brokerCA, err := read(cfg.CA.BrokerCA)
	if err != nil {
		return nil, nil, err
	}
	authCert, err := read(cfg.Keys.AuthCert)
	if err != nil {
		return nil, nil, err
	}
	bundle, err := read(cfg.CA.TrustBundle)
	if err != nil {
		return nil, nil, err
	}
	reg, closeFn, err := hubRegistry(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	r, err := registrar.New(registrar.Options{CA: ca, Registry: reg, Prefix: cfg.MQTT.Prefix, Validity: cfg.CA.Validity.Duration,
		BrokerCA: brokerCA, AuthCert: authCert, TrustBundle: bundle})
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return r, closeFn, nil
}
