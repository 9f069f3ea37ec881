package issuer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"

	"kiosk/firmware/emrtd/aa"
	"kiosk/firmware/emrtd/ca"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/smcrypto"
)

// CAParams asks for Chip Authentication (9303-11 §6.2): DG14 gets a
// ChipAuthenticationInfo and a ChipAuthenticationPublicKeyInfo, the card
// image the private key.
type CAParams struct {
	// Cipher of the id-CA protocol; 0 means AES-128.
	Cipher smcrypto.Cipher
	// ParameterID is the curve (9303-11 §9.5.1), e.g. ParamBrainpoolP256
	// (the default) or ParamNISTP256. Ignored for DH.
	ParameterID int
	// DH uses a Diffie-Hellman key (a freshly generated 1024-bit group with
	// a 160-bit subgroup) instead of ECDH.
	DH bool
	// ExplicitParams writes the EC domain parameters explicitly (as most
	// issuers do) instead of a namedCurve.
	ExplicitParams bool
	// KeyID, when not 0, is written as keyId in both SecurityInfos.
	KeyID int
	// NoInfo leaves the ChipAuthenticationInfo out of DG14, as early
	// documents do: only the ChipAuthenticationPublicKeyInfo says the
	// chip does Chip Authentication, and a terminal assumes 3DES
	// (9303-11 §9.2.5). Needs Cipher 3DES.
	NoInfo bool
}

// AAAlg is the Active Authentication key type (9303-11 §6.1).
type AAAlg string

// Active Authentication keys.
const (
	AAECDSAP256 AAAlg = "ECDSA-P256" // DG14 carries an ActiveAuthenticationInfo
	AARSA2048   AAAlg = "RSA-2048"   // ISO/IEC 9796-2 scheme 1
)

// chipKeys holds what the chip protocols add to a document.
type chipKeys struct {
	dg14, dg15   []byte
	caPEM, aaPEM []byte
	aaHash       string
}

func hashName(h crypto.Hash) string {
	return map[crypto.Hash]string{crypto.SHA1: "SHA-1", crypto.SHA224: "SHA-224", crypto.SHA256: "SHA-256",
		crypto.SHA384: "SHA-384", crypto.SHA512: "SHA-512"}[h]
}

// newChipKeys generates the CA and AA keys and DG14/DG15. For the clone
// defects the card gets a different private key of the same kind than
// the one DG14/DG15 publish: a genuine SOD on a chip without the issuer's
// keys. paceInfos are EF.CardAccess's SecurityInfos (DER), which DG14
// repeats (9303-11 §9.3); a PACE document always has a DG14.
func newChipKeys(opts Options, paceInfos [][]byte) (*chipKeys, error) {
	out := &chipKeys{}
	dg14 := &lds.DG14{}
	for _, raw := range paceInfos {
		dg14.Other = append(dg14.Other, lds.OtherSecurityInfo{Raw: raw})
	}
	if p := opts.ChipAuth; p != nil {
		c := p.Cipher
		if c == 0 {
			c = smcrypto.AES128
		}
		if !c.Valid() {
			return nil, optErr("chip authentication cipher %v", c)
		}
		var gen func() (*pubkey.PrivateKey, error)
		pkOID := lds.OIDPKECD
		ka := ca.ECDH
		if p.DH {
			params, err := dhGroup()
			if err != nil {
				return nil, err
			}
			gen = func() (*pubkey.PrivateKey, error) {
				k, err := pubkey.GenerateDH(rand.Reader, params)
				return &pubkey.PrivateKey{DH: k}, err
			}
			pkOID, ka = lds.OIDPKDH, ca.DH
		} else {
			id := p.ParameterID
			if id == 0 {
				id = ParamBrainpoolP256
			}
			curve, err := pubkey.CurveByParameterID(id)
			if err != nil {
				return nil, optErr("chip authentication curve: %v", err)
			}
			gen = func() (*pubkey.PrivateKey, error) {
				k, err := pubkey.GenerateEC(rand.Reader, curve)
				return &pubkey.PrivateKey{EC: k}, err
			}
		}
		key, err := gen()
		if err != nil {
			return nil, fmt.Errorf("chip authentication key: %w", err)
		}
		var spki []byte
		if key.EC != nil {
			spki, err = pubkey.MarshalECSPKI(key.EC.Public.Curve, key.EC.Public.X, key.EC.Public.Y, p.ExplicitParams)
		} else {
			spki, err = pubkey.MarshalDHSPKI(&key.DH.Public)
		}
		if err != nil {
			return nil, err
		}
		if p.NoInfo && c != smcrypto.TDES {
			return nil, optErr("chip authentication without ChipAuthenticationInfo implies 3DES")
		}
		if !p.NoInfo {
			dg14.CA = append(dg14.CA, lds.ChipAuthenticationInfo{Protocol: ca.ProtocolOID(ka, c), Version: 1, KeyID: p.KeyID, HasKeyID: p.KeyID != 0})
		}
		dg14.CAKeys = append(dg14.CAKeys, lds.ChipAuthenticationPublicKeyInfo{Protocol: pkOID, PublicKey: spki, KeyID: p.KeyID, HasKeyID: p.KeyID != 0})
		if opts.ClonedCA {
			if key, err = gen(); err != nil {
				return nil, fmt.Errorf("chip authentication key: %w", err)
			}
		}
		if out.caPEM, err = key.MarshalPEM(); err != nil {
			return nil, err
		}
	} else if opts.ClonedCA {
		return nil, optErr("ClonedCA needs ChipAuth")
	}

	switch opts.ActiveAuth {
	case "":
		if opts.ClonedAA {
			return nil, optErr("ClonedAA needs ActiveAuth")
		}
	case AAECDSAP256, AARSA2048:
		h := opts.AAHash
		gen := func() (*pubkey.PrivateKey, error) {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			return &pubkey.PrivateKey{RSA: k}, err
		}
		if opts.ActiveAuth == AAECDSAP256 {
			if h == 0 {
				h = crypto.SHA256
			}
			oid, ok := aa.SignatureOID(h)
			if !ok {
				return nil, optErr("active authentication hash %v", h)
			}
			dg14.AA = append(dg14.AA, lds.ActiveAuthenticationInfo{Version: 1, SignatureAlgorithm: oid})
			curve, _ := pubkey.CurveByParameterID(ParamNISTP256)
			gen = func() (*pubkey.PrivateKey, error) {
				k, err := pubkey.GenerateEC(rand.Reader, curve)
				return &pubkey.PrivateKey{EC: k}, err
			}
		} else {
			if h == 0 {
				h = crypto.SHA1
			}
			if hashName(h) == "" {
				return nil, optErr("active authentication hash %v", h)
			}
			out.aaHash = hashName(h)
		}
		key, err := gen()
		if err != nil {
			return nil, fmt.Errorf("active authentication key: %w", err)
		}
		var spki []byte
		if key.EC != nil {
			spki, err = pubkey.MarshalECSPKI(key.EC.Public.Curve, key.EC.Public.X, key.EC.Public.Y, false)
		} else {
			spki, err = pubkey.MarshalRSASPKI(&key.RSA.PublicKey)
		}
		if err != nil {
			return nil, err
		}
		out.dg15 = lds.EncodeDG15(spki)
		if opts.ClonedAA {
			if key, err = gen(); err != nil {
				return nil, fmt.Errorf("active authentication key: %w", err)
			}
		}
		if out.aaPEM, err = key.MarshalPEM(); err != nil {
			return nil, err
		}
	default:
		return nil, optErr("active authentication key %q", opts.ActiveAuth)
	}
	if len(dg14.CA) > 0 || len(dg14.CAKeys) > 0 || len(dg14.AA) > 0 || len(dg14.Other) > 0 {
		var err error
		if out.dg14, err = lds.EncodeDG14(dg14); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dhGroup generates a DSA-style group: a 160-bit prime q and a 1024-bit
// prime p = k·q + 1, g of order q (the sizes of RFC 5114 group 1). Test
// cards only: real documents use the standardized groups.
func dhGroup() (pubkey.DHParams, error) {
	q, err := rand.Prime(rand.Reader, 160)
	if err != nil {
		return pubkey.DHParams{}, err
	}
	one := big.NewInt(1)
	for range 100000 {
		k, err := rand.Int(rand.Reader, new(big.Int).Lsh(one, 1024-160))
		if err != nil {
			return pubkey.DHParams{}, err
		}
		k.SetBit(k, 1024-160-1, 1).SetBit(k, 0, 0) // even, full size
		p := new(big.Int).Mul(k, q)
		p.Add(p, one)
		if p.BitLen() != 1024 || !p.ProbablyPrime(20) {
			continue
		}
		for h := int64(2); h < 100; h++ {
			g := new(big.Int).Exp(big.NewInt(h), k, p)
			if g.Cmp(one) != 0 {
				return pubkey.DHParams{P: p, G: g, Q: q}, nil
			}
		}
	}
	return pubkey.DHParams{}, fmt.Errorf("no DH group found")
}
