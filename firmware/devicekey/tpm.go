package devicekey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultHandle is where the device key persists: a handle in the owner
// range of persistent objects (TCG "Registry of Reserved TPM 2.0 Handles
// and Localities" §2.3.1, 0x81000000–0x817FFFFF).
const DefaultHandle tpm2.TPMHandle = 0x81000101

// TPM keeps the device key inside a TPM 2.0: an ECDSA P-256 signing key
// created under the owner's storage root key (TCG ECC SRK template),
// made persistent at Handle. The private part never leaves the TPM;
// signing is TPM2_Sign (TPM 2.0 Part 3 §20.2).
type TPM struct {
	Handle tpm2.TPMHandle
	mu     sync.Mutex
	tpm    transport.TPMCloser
}

var _ Store = (*TPM)(nil)

// OpenTPM opens a TPM: a path like /dev/tpmrm0 (the kernel's resource
// manager), or "unix:PATH" for a software TPM's raw command socket
// (swtpm in tests and the demo).
func OpenTPM(dev string) (*TPM, error) {
	var (
		t   transport.TPMCloser
		err error
	)
	if path, ok := cutPrefix(dev, "unix:"); ok {
		t, err = dialUnix(path)
	} else {
		t, err = linuxtpm.Open(dev)
	}
	if err != nil {
		return nil, fmt.Errorf("devicekey: open TPM %s: %w", dev, err)
	}
	return &TPM{Handle: DefaultHandle, tpm: t}, nil
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

// Close releases the connection (the key stays in the TPM).
func (t *TPM) Close() error { return t.tpm.Close() }

// Kind implements Store.
func (t *TPM) Kind() string { return KindTPM }

// signingTemplate is an unrestricted ECDSA P-256/SHA-256 signing key
// bound to this TPM (fixedTPM, fixedParent: it cannot be duplicated out).
var signingTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		NoDA: true, SignEncrypt: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
}

// Create implements Store: any old key at Handle is evicted first.
func (t *TPM) Create(ctx context.Context) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.evict(); err != nil {
		return nil, err
	}
	if _, err := t.createAt(t.Handle); err != nil {
		return nil, err
	}
	return t.signer()
}

// createAt creates a signing key under the storage root key and
// persists it at h; it returns the key's blobs.
func (t *TPM) createAt(h tpm2.TPMHandle) (*tpm2.CreateResponse, error) {
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(t.tpm)
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM storage root key: %w", err)
	}
	defer t.flush(srk.ObjectHandle)
	parent := tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}
	cr, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(signingTemplate)}.Execute(t.tpm)
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM create key: %w", err)
	}
	if err := t.persist(parent, cr, h); err != nil {
		return nil, err
	}
	return cr, nil
}

// persist loads a key's blobs under parent and makes it persistent at h.
func (t *TPM) persist(parent tpm2.NamedHandle, cr *tpm2.CreateResponse, h tpm2.TPMHandle) error {
	ld, err := tpm2.Load{ParentHandle: parent, InPrivate: cr.OutPrivate, InPublic: cr.OutPublic}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("devicekey: TPM load key: %w", err)
	}
	defer t.flush(ld.ObjectHandle)
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: &tpm2.NamedHandle{Handle: ld.ObjectHandle, Name: ld.Name},
		PersistentHandle: h}).Execute(t.tpm); err != nil {
		return fmt.Errorf("devicekey: TPM persist key at %#x: %w", uint32(h), err)
	}
	return nil
}

// CreatePending makes a renewal's new key inside the TPM at the pending
// handle (Handle+1); commit moves it to Handle (the old key is evicted:
// destroyed), discard evicts it. The returned signer follows the move.
func (t *TPM) CreatePending(ctx context.Context) (key crypto.Signer, commit, discard func() error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ph := t.pendingHandle()
	if err := t.evictAt(ph); err != nil {
		return nil, nil, nil, err
	}
	cr, err := t.createAt(ph)
	if err != nil {
		return nil, nil, nil, err
	}
	rp, err := t.readPublicAt(ph)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := t.signerFrom(rp, ph)
	if err != nil {
		return nil, nil, nil, err
	}
	commit = func() error {
		t.mu.Lock()
		defer t.mu.Unlock()
		// Old key out, the new one persisted again at the main handle from
		// its blobs (a persistent object cannot be moved), then the
		// pending copy out. Until the last step a start finds the new key
		// at the pending handle (Load falls back to it).
		if err := t.evictAt(t.Handle); err != nil {
			return err
		}
		srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(t.tpm)
		if err != nil {
			return fmt.Errorf("devicekey: TPM storage root key: %w", err)
		}
		defer t.flush(srk.ObjectHandle)
		if err := t.persist(tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}, cr, t.Handle); err != nil {
			return err
		}
		s.handle = t.Handle
		return t.evictAt(ph)
	}
	discard = func() error {
		t.mu.Lock()
		defer t.mu.Unlock()
		// A commit that failed after evicting the old key leaves the new
		// one only at the pending handle (Load falls back to it): it is
		// the device's key now and must not be evicted.
		if _, err := t.readPublicAt(t.Handle); errors.Is(err, ErrNoKey) {
			return nil
		}
		return t.evictAt(ph)
	}
	return s, commit, discard, nil
}

// Load implements Store.
func (t *TPM) Load(ctx context.Context) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.signer()
}

// Exists reports whether a key is at Handle.
func (t *TPM) Exists() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.readPublic()
	if errors.Is(err, ErrNoKey) {
		return false, nil
	}
	return err == nil, err
}

// Wipe implements Store: the persistent key is evicted; the TPM destroys
// it (there is no copy: it was created inside, fixedTPM).
func (t *TPM) Wipe(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.evict()
}

func (t *TPM) evict() error {
	if err := t.evictAt(t.pendingHandle()); err != nil {
		return err
	}
	return t.evictAt(t.Handle)
}

func (t *TPM) evictAt(h tpm2.TPMHandle) error {
	rp, err := t.readPublicAt(h)
	if errors.Is(err, ErrNoKey) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: &tpm2.NamedHandle{Handle: h, Name: rp.Name},
		PersistentHandle: h}).Execute(t.tpm); err != nil {
		return fmt.Errorf("devicekey: TPM evict %#x: %w", uint32(h), err)
	}
	return nil
}

func (t *TPM) flush(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.tpm)
}

func (t *TPM) readPublic() (*tpm2.ReadPublicResponse, error) { return t.readPublicAt(t.Handle) }

func (t *TPM) readPublicAt(h tpm2.TPMHandle) (*tpm2.ReadPublicResponse, error) {
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t.tpm)
	if err != nil {
		// TPM_RC_HANDLE (Part 2 §6.6.3): nothing at that handle.
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, fmt.Errorf("%w: TPM handle %#x: %v", ErrNoKey, uint32(h), err)
		}
		return nil, fmt.Errorf("devicekey: TPM read %#x: %w", uint32(h), err)
	}
	return rp, nil
}

// pendingHandle holds a renewal's new key until it replaces the old one.
func (t *TPM) pendingHandle() tpm2.TPMHandle { return t.Handle + 1 }

func (t *TPM) signer() (crypto.Signer, error) {
	h := t.Handle
	rp, err := t.readPublicAt(h)
	if errors.Is(err, ErrNoKey) {
		// A renewal interrupted between its evictions left the new key
		// at the pending handle only.
		if prp, perr := t.readPublicAt(t.pendingHandle()); perr == nil {
			rp, h, err = prp, t.pendingHandle(), nil
		}
	}
	if err != nil {
		return nil, err
	}
	return t.signerFrom(rp, h)
}

func (t *TPM) signerFrom(rp *tpm2.ReadPublicResponse, h tpm2.TPMHandle) (*tpmSigner, error) {
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM public area: %w", err)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM key at %#x is not ECC: %w", uint32(t.Handle), err)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM key point: %w", err)
	}
	ek, err := tpm2.ECDSAPub(parms, point)
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM key: %w", err)
	}
	return &tpmSigner{t: t, handle: h, pub: ek, name: rp.Name}, nil
}

// tpmSigner signs SHA-256 digests with a persistent key.
type tpmSigner struct {
	t      *TPM
	handle tpm2.TPMHandle // guarded by t.mu (a renewal moves the key)
	pub    *ecdsa.PublicKey
	name   tpm2.TPM2BName
}

func (s *tpmSigner) Public() crypto.PublicKey { return s.pub }

// Sign returns an ASN.1 DER ECDSA signature (what crypto.Signer and TLS
// expect) of a SHA-256 digest.
func (s *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, fmt.Errorf("devicekey: the TPM key signs SHA-256 digests only, not %v", opts.HashFunc())
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.NamedHandle{Handle: s.handle, Name: s.name},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.t.tpm)
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("devicekey: TPM signature: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer)})
}

// unixTPM sends raw TPM 2.0 commands over a stream socket; a response is
// read whole by its header's size (TPM 2.0 Part 1 §18: tag, size, code).
type unixTPM struct {
	c net.Conn
}

func dialUnix(path string) (*unixTPM, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &unixTPM{c: c}, nil
}

func (u *unixTPM) Send(cmd []byte) ([]byte, error) {
	if err := u.c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := u.c.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm socket write: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(u.c, hdr); err != nil {
		return nil, fmt.Errorf("tpm socket read: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<16 {
		return nil, fmt.Errorf("tpm socket: response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(u.c, rsp[10:]); err != nil {
		return nil, fmt.Errorf("tpm socket read: %w", err)
	}
	return rsp, nil
}

func (u *unixTPM) Close() error { return u.c.Close() }
