package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/enrollwire"
)

// ExportCSR creates the device key in keys and writes a PEM CSR for
// device to out: the offline path's first half (the file goes to the bank
// on USB).
func ExportCSR(ctx context.Context, keys devicekey.Store, device, out string) error {
	if !enrollwire.ValidDevice(device) {
		return fmt.Errorf("enroll: device id %q", device)
	}
	key, err := keys.Create(ctx)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: device}}, key)
	if err != nil {
		return fmt.Errorf("enroll: csr: %w", err)
	}
	return WriteFile(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
}

// ErrBundle wraps every reason a bundle is refused.
var ErrBundle = errors.New("enroll: bundle refused")

// ImportBundle verifies a signed bundle (the offline path's second half)
// and writes the identity: the signature by the issuing CA, the chain to
// the root, the root's SHA-256 against rootSHA256 (from staff, out of
// band), and the certificate against the key made by ExportCSR.
func ImportBundle(ctx context.Context, bundle []byte, rootSHA256, dir string, keys devicekey.Store, now time.Time) (Identity, error) {
	bu, a, err := enrollwire.ParseBundle(bundle)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	chain, err := parseCerts(a.Chain)
	if err != nil || len(chain) < 2 {
		return Identity{}, fmt.Errorf("%w: chain: %v", ErrBundle, err)
	}
	roots, err := parseCerts(a.Root)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: root: %v", ErrBundle, err)
	}
	sum := sha256.Sum256(roots[0].Raw)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, strings.TrimSpace(rootSHA256)) {
		return Identity{}, fmt.Errorf("%w: the root's SHA-256 is %s, not the %s given", ErrBundle, got, rootSHA256)
	}
	issuer := chain[1]
	pub, ok := issuer.PublicKey.(*ecdsa.PublicKey)
	h := sha512.Sum384(bu.Accepted)
	if !ok || !ecdsa.VerifyASN1(pub, h[:], bu.Sig) {
		return Identity{}, fmt.Errorf("%w: the signature does not verify with the issuing CA", ErrBundle)
	}
	if err := issuer.CheckSignatureFrom(roots[0]); err != nil {
		return Identity{}, fmt.Errorf("%w: the issuing CA is not the root's: %v", ErrBundle, err)
	}
	key, err := keys.Load(ctx)
	if err != nil {
		return Identity{}, fmt.Errorf("enroll: the key made with the CSR: %w", err)
	}
	return store(Options{Dir: dir, Keys: keys, Now: func() time.Time { return now }}, a.Device, key, a, nil)
}
