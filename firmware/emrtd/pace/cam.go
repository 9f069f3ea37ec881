package pace

//lint:file-ignore SA1019 CAM's check CA_IC·PK_IC = PK_Map,IC is an arbitrary-base scalar multiplication on brainpool curves too, which crypto/ecdh cannot do (see ec.go); points are validated before use.

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"

	"kiosk/firmware/emrtd/smcrypto"
)

// Chip Authentication Mapping (9303-11 §4.4.3.3.3 and §4.4.3.5.2; BSI
// TR-03110-2 §3.4.4 and TR-03110-3 §A.3): the nonce is mapped as in the
// Generic Mapping, and in the mutual authentication step the chip adds
// the Encrypted Chip Authentication Data DO'8A':
//
//	CA_IC = SK_IC⁻¹ · SK_Map,IC  mod n
//	A_IC  = E(KSenc, CA_IC), AES-CBC, IV = E(KSenc, -1), ISO/IEC 9797-1
//	        padding method 2
//
// The terminal decrypts CA_IC and checks PK_Map,IC = CA_IC · PK_IC, with
// PK_IC the chip's static key from EF.CardSecurity once passive
// authentication vouched for that file: only the holder of SK_IC can
// answer for the mapping key it used in this very run.

// ErrCAMFailed: the chip's Chip Authentication Mapping data does not
// prove the static key (wrong key, altered or missing data).
var ErrCAMFailed = errors.New("pace: chip authentication mapping does not verify")

// CAMData is what the terminal keeps from a PACE-CAM run for the check
// against EF.CardSecurity (the decrypted CA_IC and the chip's mapping
// public key PK_Map,IC).
type CAMData struct {
	CAIC    []byte
	PKMapIC []byte
	g       *ecGroup
}

// Verify checks PK_Map,IC = CA_IC · PK_IC (9303-11 §4.4.3.5.2) where pkIC
// is the chip's static public key as an uncompressed point on the PACE
// domain parameters.
func (d *CAMData) Verify(pkIC []byte) error {
	if d == nil || d.g == nil {
		return fmt.Errorf("%w: no chip authentication mapping data", ErrCAMFailed)
	}
	if _, _, err := d.g.decode(pkIC); err != nil {
		return fmt.Errorf("%w: static key: %w", ErrCAMFailed, err)
	}
	k := new(big.Int).SetBytes(d.CAIC)
	if k.Sign() == 0 || k.Cmp(d.g.n) >= 0 {
		return fmt.Errorf("%w: CA_IC out of range", ErrCAMFailed)
	}
	got, err := d.g.publicKey(d.CAIC, pkIC)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCAMFailed, err)
	}
	if subtle.ConstantTimeCompare(got, d.PKMapIC) != 1 {
		return fmt.Errorf("%w: CA_IC·PK_IC is not the chip's mapping key", ErrCAMFailed)
	}
	return nil
}

// Wipe clears CA_IC.
func (d *CAMData) Wipe() {
	if d != nil {
		clear(d.CAIC)
	}
}

// camIV is E(KSenc, -1): the block of all one bits encrypted
// (TR-03110-3 §A.3: the IV of the encrypted chip authentication data).
func camIV(c smcrypto.Cipher, ksEnc []byte) ([]byte, error) {
	return smcrypto.EncryptCBC(c, ksEnc, nil, bytes.Repeat([]byte{0xFF}, c.BlockSize()))
}

func encryptCAM(c smcrypto.Cipher, ksEnc, caIC []byte) ([]byte, error) {
	iv, err := camIV(c, ksEnc)
	if err != nil {
		return nil, err
	}
	return smcrypto.EncryptCBC(c, ksEnc, iv, smcrypto.Pad(caIC, c.BlockSize()))
}

func decryptCAM(c smcrypto.Cipher, ksEnc, aIC []byte) ([]byte, error) {
	if len(aIC) == 0 || len(aIC)%c.BlockSize() != 0 {
		return nil, fmt.Errorf("%w: encrypted data of %d bytes", ErrCAMFailed, len(aIC))
	}
	iv, err := camIV(c, ksEnc)
	if err != nil {
		return nil, err
	}
	p, err := smcrypto.DecryptCBC(c, ksEnc, iv, aIC)
	if err != nil {
		return nil, err
	}
	out, err := smcrypto.Unpad(p)
	if err != nil {
		clear(p)
		return nil, fmt.Errorf("%w: %w", ErrCAMFailed, err)
	}
	return out, nil
}

// camScalar is CA_IC = SK_IC⁻¹ · SK_Map,IC mod n, as many bytes as n.
func camScalar(g *ecGroup, skIC, skMap []byte) ([]byte, error) {
	sk := new(big.Int).SetBytes(skIC)
	if sk.Sign() == 0 || sk.Cmp(g.n) >= 0 {
		return nil, errors.New("pace: chip authentication key out of range")
	}
	inv := new(big.Int).ModInverse(sk, g.n)
	ca := inv.Mul(inv, new(big.Int).SetBytes(skMap))
	ca.Mod(ca, g.n)
	return ca.FillBytes(make([]byte, (g.n.BitLen()+7)/8)), nil
}
