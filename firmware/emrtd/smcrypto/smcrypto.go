// Package smcrypto holds the symmetric primitives of ICAO Doc 9303 Part 11
// secure messaging and access control: ISO/IEC 9797-1 padding method 2,
// ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC") with DES, AES-CMAC
// (NIST SP 800-38B), the key derivation function of 9303-11 §9.7.1 and CBC
// helpers for 3DES and AES.
//
// Keys are plain byte slices whose length is fixed by the Cipher: 16 bytes
// for two-key 3DES (K1 || K2, used as K1 K2 K1), 16/24/32 for AES.
package smcrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Cipher selects the block cipher of a 9303 protocol run (9303-11 §9.7.1,
// §9.8): the KDF, the encryption and the MAC follow from it.
type Cipher int

// Ciphers. TDES is two-key 3DES (112-bit keys) with the retail MAC; the AES
// variants use AES-CMAC truncated to 8 bytes.
const (
	TDES Cipher = iota + 1
	AES128
	AES192
	AES256
)

func (c Cipher) String() string {
	switch c {
	case TDES:
		return "3DES"
	case AES128:
		return "AES-128"
	case AES192:
		return "AES-192"
	case AES256:
		return "AES-256"
	}
	return fmt.Sprintf("Cipher(%d)", int(c))
}

// OIDName is the cipher part of the PACE and CA protocol names
// (9303-11 §9.2.1, §9.2.5), e.g. "AES-CBC-CMAC-128" or "3DES-CBC-CBC".
func (c Cipher) OIDName() string {
	switch c {
	case AES128:
		return "AES-CBC-CMAC-128"
	case AES192:
		return "AES-CBC-CMAC-192"
	case AES256:
		return "AES-CBC-CMAC-256"
	}
	return "3DES-CBC-CBC"
}

// OIDArc is the last arc of the PACE and CA protocol OIDs that names c
// (9303-11 §9.2.1, §9.2.5): 1 for 3DES-CBC-CBC, 2/3/4 for
// AES-CBC-CMAC-128/-192/-256; 0 for an invalid cipher.
func (c Cipher) OIDArc() int {
	if !c.Valid() {
		return 0
	}
	return int(c-TDES) + 1
}

// CipherByOIDArc is the inverse of OIDArc.
func CipherByOIDArc(arc int) (Cipher, bool) {
	c := TDES + Cipher(arc-1)
	return c, c.Valid()
}

// Valid reports whether c is one of the defined ciphers.
func (c Cipher) Valid() bool { return c >= TDES && c <= AES256 }

// KeySize is the key length in bytes.
func (c Cipher) KeySize() int {
	switch c {
	case TDES, AES128:
		return 16
	case AES192:
		return 24
	case AES256:
		return 32
	}
	return 0
}

// BlockSize is the cipher block size in bytes (8 for 3DES, 16 for AES): it
// is the padding block size and, for secure messaging, the SSC length.
func (c Cipher) BlockSize() int {
	switch c {
	case TDES:
		return 8
	case AES128, AES192, AES256:
		return 16
	}
	return 0
}

// Errors.
var (
	ErrBadPadding   = errors.New("smcrypto: bad ISO/IEC 9797-1 method 2 padding")
	ErrKeySize      = errors.New("smcrypto: wrong key size")
	ErrNotBlockSize = errors.New("smcrypto: data is not a multiple of the block size")
	ErrCipher       = errors.New("smcrypto: unknown cipher")
)

// Pad applies ISO/IEC 9797-1 padding method 2: append 0x80 then zeros up to
// a multiple of blockSize. It always adds at least one byte.
func Pad(b []byte, blockSize int) []byte {
	n := len(b) + 1
	if r := n % blockSize; r != 0 {
		n += blockSize - r
	}
	out := make([]byte, n)
	copy(out, b)
	out[len(b)] = 0x80
	return out
}

// Unpad removes ISO/IEC 9797-1 method 2 padding. The result aliases b.
func Unpad(b []byte) ([]byte, error) {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case 0x00:
			continue
		case 0x80:
			return b[:i], nil
		default:
			return nil, ErrBadPadding
		}
	}
	return nil, ErrBadPadding
}

// TDESKey expands a 16-byte two-key 3DES key K1||K2 to the 24-byte K1||K2||K1
// form crypto/des wants. A 24-byte key is returned as a copy.
func TDESKey(key []byte) ([]byte, error) {
	switch len(key) {
	case 16:
		k := make([]byte, 24)
		copy(k, key)
		copy(k[16:], key[:8])
		return k, nil
	case 24:
		return append([]byte(nil), key...), nil
	}
	return nil, fmt.Errorf("%w: 3DES key of %d bytes", ErrKeySize, len(key))
}

// AdjustParity sets each byte's least significant bit so the byte has odd
// parity (the DES key convention, 9303-11 §9.7.1 note; the Appendix D keys
// are printed with adjusted parity). It modifies key in place.
func AdjustParity(key []byte) {
	for i, b := range key {
		b &= 0xFE
		ones := 0
		for v := b; v != 0; v >>= 1 {
			ones += int(v & 1)
		}
		if ones%2 == 0 {
			b |= 1
		}
		key[i] = b
	}
}

// NewBlock returns the block cipher for c with key.
func NewBlock(c Cipher, key []byte) (cipher.Block, error) {
	if !c.Valid() {
		return nil, ErrCipher
	}
	if len(key) != c.KeySize() {
		return nil, fmt.Errorf("%w: %s key of %d bytes", ErrKeySize, c, len(key))
	}
	if c == TDES {
		k, err := TDESKey(key)
		if err != nil {
			return nil, err
		}
		return des.NewTripleDESCipher(k)
	}
	return aes.NewCipher(key)
}

// EncryptCBC encrypts already padded data in CBC mode. A nil iv means zero.
func EncryptCBC(c Cipher, key, iv, data []byte) ([]byte, error) {
	b, err := NewBlock(c, key)
	if err != nil {
		return nil, err
	}
	return EncryptCBCBlock(b, iv, data)
}

// DecryptCBC decrypts data in CBC mode (padding is left in place). A nil iv
// means zero.
func DecryptCBC(c Cipher, key, iv, data []byte) ([]byte, error) {
	b, err := NewBlock(c, key)
	if err != nil {
		return nil, err
	}
	return DecryptCBCBlock(b, iv, data)
}

// EncryptCBCBlock is EncryptCBC with a ready block cipher.
func EncryptCBCBlock(b cipher.Block, iv, data []byte) ([]byte, error) {
	return cbcBlock(b, iv, data, true)
}

// DecryptCBCBlock is DecryptCBC with a ready block cipher.
func DecryptCBCBlock(b cipher.Block, iv, data []byte) ([]byte, error) {
	return cbcBlock(b, iv, data, false)
}

func cbcBlock(b cipher.Block, iv, data []byte, encrypt bool) ([]byte, error) {
	bs := b.BlockSize()
	if len(data)%bs != 0 {
		return nil, ErrNotBlockSize
	}
	if iv == nil {
		iv = make([]byte, bs)
	}
	if len(iv) != bs {
		return nil, fmt.Errorf("smcrypto: IV of %d bytes, want %d", len(iv), bs)
	}
	out := make([]byte, len(data))
	if encrypt {
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, data)
	} else {
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, data)
	}
	return out, nil
}

// RetailMAC computes ISO/IEC 9797-1 MAC algorithm 3 with DES (single-DES
// CBC-MAC under K1, final block decrypted with K2 and encrypted with K1)
// over data that the caller has already padded (9303-11 §9.8.3.1 pads the
// MAC input explicitly). key is the 16-byte K1||K2. The MAC is 8 bytes.
func RetailMAC(key, data []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("%w: retail MAC key of %d bytes", ErrKeySize, len(key))
	}
	if len(data) == 0 || len(data)%8 != 0 {
		return nil, ErrNotBlockSize
	}
	k1, err := des.NewCipher(key[:8])
	if err != nil {
		return nil, err
	}
	k2, err := des.NewCipher(key[8:16])
	if err != nil {
		return nil, err
	}
	h := make([]byte, 8)
	for i := 0; i < len(data); i += 8 {
		for j := 0; j < 8; j++ {
			h[j] ^= data[i+j]
		}
		k1.Encrypt(h, h)
	}
	k2.Decrypt(h, h)
	k1.Encrypt(h, h)
	return h, nil
}

// MAC computes the 8-byte 9303 MAC of already padded data (9303-11 §9.8.3):
// the retail MAC for TDES, AES-CMAC truncated to 8 bytes for AES (the CMAC
// of padded data, as §9.8.6.1 pads before the MAC for both ciphers).
func MAC(c Cipher, key, padded []byte) ([]byte, error) {
	switch c {
	case TDES:
		return RetailMAC(key, padded)
	case AES128, AES192, AES256:
		if len(key) != c.KeySize() {
			return nil, fmt.Errorf("%w: %s key of %d bytes", ErrKeySize, c, len(key))
		}
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return CMAC(b, padded)[:8], nil
	}
	return nil, ErrCipher
}

// KDF counters of 9303-11 §9.7.1.
const (
	KDFEnc      uint32 = 1 // encryption key
	KDFMAC      uint32 = 2 // MAC key
	KDFPassword uint32 = 3 // PACE password key Kπ
)

// SessionKeys derives the encryption and MAC keys KDF(K, 1) and KDF(K, 2)
// from K (9303-11 §9.7.1): BAC's document basic access keys and the
// secure messaging keys after BAC, PACE and Chip Authentication.
func SessionKeys(c Cipher, secret []byte) (kEnc, kMac []byte, err error) {
	if kEnc, err = KDF(c, secret, KDFEnc); err != nil {
		return nil, nil, err
	}
	if kMac, err = KDF(c, secret, KDFMAC); err != nil {
		return nil, nil, err
	}
	return kEnc, kMac, nil
}

// KDF derives a key from the shared secret K and counter c (9303-11 §9.7.1):
// keydata = H(K || c) with c a 32-bit big-endian counter; 3DES and AES-128
// take the first 16 bytes of SHA-1 (3DES with adjusted parity), AES-192 the
// first 24 and AES-256 all 32 bytes of SHA-256.
func KDF(c Cipher, secret []byte, counter uint32) ([]byte, error) {
	var ctr [4]byte
	binary.BigEndian.PutUint32(ctr[:], counter)
	switch c {
	case TDES, AES128:
		h := sha1.New()
		h.Write(secret)
		h.Write(ctr[:])
		k := h.Sum(nil)[:16]
		if c == TDES {
			AdjustParity(k)
		}
		return k, nil
	case AES192, AES256:
		h := sha256.New()
		h.Write(secret)
		h.Write(ctr[:])
		return h.Sum(nil)[:c.KeySize()], nil
	}
	return nil, ErrCipher
}
