// Command mkbundle is `make bundle`: the kiosk's root file system image
// (ext4: kioskd, kioskctl, the face models, the firmware version kioskd
// reads for downgrade protection) in a RAUC bundle signed with a release
// key. A bank signs with its own release key and certificate (-cert,
// -key; RELEASE_CERT, RELEASE_KEY in the Makefile), issued by the release
// CA its kiosks trust (update.keyring). Without them it makes a test
// release PKI once under -pki and says so: never the device key.
//
//	mkbundle -kioskd bin/kioskd -kioskctl bin/kioskctl -models .cache/models -version 0.1.5 -out dist/kiosk-0.1.5.raucb
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"kiosk/firmware/update"
	"kiosk/firmware/update/rauctest"
)

func main() {
	kioskd := flag.String("kioskd", "bin/kioskd", "kioskd binary")
	kioskctl := flag.String("kioskctl", "bin/kioskctl", "kioskctl binary")
	models := flag.String("models", ".cache/models", "face models directory (copied to /usr/share/kioskd/models)")
	version := flag.String("version", "", "firmware version, N.N.N (required)")
	compatible := flag.String("compatible", "kiosk-debian12", "RAUC compatible string (system.conf [system] compatible)")
	cert := flag.String("cert", "", "release signing certificate (PEM)")
	key := flag.String("key", "", "release signing key (PEM)")
	pkiDir := flag.String("pki", ".cache/release-pki", "where a test release PKI is made when -cert/-key are not given")
	out := flag.String("out", "", "bundle file to write (required)")
	flag.Parse()
	if err := run(*kioskd, *kioskctl, *models, *version, *compatible, *cert, *key, *pkiDir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		os.Exit(1)
	}
}

func run(kioskd, kioskctl, models, version, compatible, cert, key, pkiDir, out string) error {
	if version == "" || out == "" {
		return fmt.Errorf("-version and -out are required")
	}
	if _, err := update.CompareVersions(version, "0"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pki := rauctest.PKI{Cert: cert, Key: key}
	switch {
	case cert != "" && key != "":
	case cert != "" || key != "":
		return fmt.Errorf("-cert and -key go together")
	default:
		pki.CA = filepath.Join(pkiDir, "release-ca.pem")
		pki.Cert, pki.Key = filepath.Join(pkiDir, "release.pem"), filepath.Join(pkiDir, "release.key")
		if _, err := os.Stat(pki.Key); err != nil {
			var err error
			if pki, err = rauctest.NewPKI(pkiDir, "Test Bank"); err != nil {
				return err
			}
		}
		fmt.Printf("bundle: signed with the TEST release key %s (kiosks trust %s); a bank passes RELEASE_CERT and RELEASE_KEY\n", pki.Key, pki.CA)
	}
	tmp, err := os.MkdirTemp("", "bundle-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	files := map[string]struct {
		from string
		mode os.FileMode
	}{
		"usr/bin/kioskd":   {kioskd, 0o755},
		"usr/bin/kioskctl": {kioskctl, 0o755},
	}
	ents, err := os.ReadDir(models)
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			files["usr/share/kioskd/models/"+e.Name()] = struct {
				from string
				mode os.FileMode
			}{filepath.Join(models, e.Name()), 0o644}
		}
	}
	for to, f := range files {
		if err := copyFile(f.from, filepath.Join(root, to), f.mode); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/kioskd"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/kioskd/firmware-version"), []byte(version+"\n"), 0o644); err != nil {
		return err
	}
	img := filepath.Join(tmp, "rootfs.ext4")
	if err := rauctest.RootFS(ctx, root, img); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := rauctest.Bundle(ctx, pki, compatible, version, img, out); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("bundle: %s (%s %s, %.1f MiB)\n", out, compatible, version, float64(fi.Size())/(1<<20))
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
