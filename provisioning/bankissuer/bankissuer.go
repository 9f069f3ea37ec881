// Package bankissuer is a test eID authority for bank eID cards: a root
// that certifies card keys (SM2 with SM3, or ECDSA P-256 with SHA-256),
// publishes a CRL, and issues virtual cards (package bankcard) in every
// profile the terminal must handle.
package bankissuer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
)

// Authority is an eID authority's root.
type Authority struct {
	Cert    *smx509.Certificate
	Key     crypto.Signer // *sm2.PrivateKey or *ecdsa.PrivateKey
	Revoked []*big.Int
}

// NewAuthority makes a self-signed root named name; ecdsaP256 picks
// ECDSA P-256 instead of SM2.
func NewAuthority(name string, ecdsaP256 bool) (*Authority, error) {
	key, err := newKey(ecdsaP256)
	if err != nil {
		return nil, err
	}
	pub := key.Public()
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	ski := sha256.Sum256(spki)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name, Country: []string{"CN"}, Organization: []string{"eID test authority"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId: ski[:20],
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("bankissuer: root: %w", err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}

func newKey(ecdsaP256 bool) (crypto.Signer, error) {
	if ecdsaP256 {
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return sm2.GenerateKey(rand.Reader)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n.Add(n, big.NewInt(1))
}

// Holder is who a card names.
type Holder struct {
	Name      string // certificate CN
	EIDNumber string // subject serialNumber: one per person
	PIN       string
	Retries   int // PIN retry counter maximum; 0 = 3
}

// Issue makes a card in profile (bankcard.Profiles) for h. The card's key
// has the authority's algorithm. The CRL (CRL) lists the card when the
// profile is revoked.
func (a *Authority) Issue(h Holder, profile string) (*bankcard.Image, error) {
	if _, ok := bankcard.Profiles()[profile]; !ok {
		return nil, fmt.Errorf("bankissuer: unknown profile %q", profile)
	}
	if _, err := bankeid.PINBlock(bankeid.PIN(h.PIN)); err != nil {
		return nil, err
	}
	if h.Retries == 0 {
		h.Retries = 3
	}
	_, isECDSA := a.Key.(*ecdsa.PrivateKey)
	key, err := newKey(isECDSA)
	if err != nil {
		return nil, err
	}
	signer := a
	if profile == bankcard.ProfileOtherAuthority {
		// A look-alike authority: same name, another key.
		if signer, err = NewAuthority(a.Cert.Subject.CommonName, isECDSA); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: h.Name, SerialNumber: h.EIDNumber, Country: []string{"CN"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, signer.Cert.ToX509(), key.Public(), signer.Key)
	if err != nil {
		return nil, fmt.Errorf("bankissuer: card certificate: %w", err)
	}
	im := &bankcard.Image{
		Meta: bankcard.Meta{Kind: bankcard.Kind, Profile: profile, PIN: h.PIN, PINRetries: h.Retries},
		Cert: der, Key: key,
	}
	switch profile {
	case bankcard.ProfileWrongPIN:
		// The card holds another PIN than the holder was given.
		last := (h.PIN[len(h.PIN)-1]-'0'+1)%10 + '0'
		im.Meta.PIN = h.PIN[:len(h.PIN)-1] + string(rune(last))
	case bankcard.ProfileBlockedPIN:
		im.Meta.BlockedPIN = true
	case bankcard.ProfileRevoked:
		a.Revoked = append(a.Revoked, tmpl.SerialNumber)
	case bankcard.ProfileReplay:
		// The digest of a challenge for another transaction, as a card
		// (or a relay) would replay it.
		old := bankeid.Challenge{KioskID: "kiosk-elsewhere", TransactionID: "tx-earlier", Amount: 100, Currency: "CNY",
			Time: now.Add(-24 * time.Hour), Nonce: bytes.Repeat([]byte{0x5A}, bankeid.NonceSize)}
		m, err := old.Encode()
		if err != nil {
			return nil, err
		}
		if im.Meta.ReplayDigest, err = bankeid.Digest(key.Public(), m); err != nil {
			return nil, err
		}
	}
	return im, nil
}

// CRL returns the authority's current CRL (DER), valid for a week.
func (a *Authority) CRL() ([]byte, error) {
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(now.Unix()), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 0, 7)}
	for _, s := range a.Revoked {
		// gmsm v0.15.5 encodes the deprecated field only.
		//lint:ignore SA1019 smx509.CreateRevocationList reads RevokedCertificates, not RevokedCertificateEntries
		tmpl.RevokedCertificates = append(tmpl.RevokedCertificates, pkix.RevokedCertificate{SerialNumber: s, RevocationTime: now.Add(-time.Minute)})
	}
	return smx509.CreateRevocationList(rand.Reader, tmpl, a.Cert, a.Key)
}

// Trust returns the kiosk's view of this authority.
func (a *Authority) Trust() (*bankeid.Trust, error) {
	crl, err := a.CRL()
	if err != nil {
		return nil, err
	}
	return bankeid.NewTrust([][]byte{a.Cert.Raw}, [][]byte{crl})
}

// File names WriteTrust and Save use.
const (
	RootFile    = "root.pem"
	CRLFile     = "root.crl"
	RootKeyFile = "root-key.pem"
)

// WriteTrust writes the root and its CRL into dir (bankeid.LoadTrust's
// format).
func (a *Authority) WriteTrust(dir string) error {
	crl, err := a.CRL()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(filepath.Join(dir, RootFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw}), 0o644),
		os.WriteFile(filepath.Join(dir, CRLFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), 0o644))
}

// SaveKey writes the root certificate and key into dir (a test
// authority's secrets: keep it off kiosks).
func (a *Authority) SaveKey(dir string) error {
	key, err := smx509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(filepath.Join(dir, RootFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw}), 0o644),
		os.WriteFile(filepath.Join(dir, RootKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600))
}
