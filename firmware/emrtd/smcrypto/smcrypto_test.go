package smcrypto

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 4493 §4 (AES-128) and NIST SP 800-38B Appendix D.2/D.3 (AES-192/256).
func TestCMACVectors(t *testing.T) {
	msg := h("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51 30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710")
	cases := []struct {
		key  string
		tags [4]string // for 0, 16, 40, 64 bytes
	}{
		{"2b7e151628aed2a6abf7158809cf4f3c", [4]string{"bb1d6929e95937287fa37d129b756746", "070a16b46b4d4144f79bdd9dd04a287c", "dfa66747de9ae63030ca32611497c827", "51f0bebf7e3b9d92fc49741779363cfe"}},
		{"8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", [4]string{"d17ddf46adaacde531cac483de7a9367", "9e99a7bf31e710900662f65e617c5184", "8a1de5be2eb31aad089a82e6ee908b0e", "a1d5df0eed790f794d77589659f39a11"}},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", [4]string{"028962f61b7bf89efc6b551f4667d983", "28a7023f452e8f82bd4bf28d8c37c35c", "aaf3d8f1de5640c232f5b169b9c911e6", "e1992190549f6ed5696a2c056c315410"}},
	}
	for _, c := range cases {
		b, err := aes.NewCipher(h(c.key))
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range []int{0, 16, 40, 64} {
			if got := CMAC(b, msg[:n]); !bytes.Equal(got, h(c.tags[i])) {
				t.Errorf("key %d bits, %d bytes: CMAC %X, want %s", len(c.key)*4, n, got, c.tags[i])
			}
		}
	}
	// RFC 4493 §4 subkeys.
	b, _ := aes.NewCipher(h("2b7e151628aed2a6abf7158809cf4f3c"))
	k1, k2 := cmacSubkeys(b)
	if !bytes.Equal(k1, h("fbeed618357133667c85e08f7236a8de")) || !bytes.Equal(k2, h("f7ddac306ae266ccf90bc11ee46d513b")) {
		t.Errorf("subkeys %X %X", k1, k2)
	}
}

func TestPadUnpad(t *testing.T) {
	cases := []struct {
		in   string
		bs   int
		want string
	}{
		{"011E", 8, "011E800000000000"},
		{"011E", 16, "011E8000000000000000000000000000"},
		{"0CA4020C", 8, "0CA4020C80000000"},
		{"1122334455667788", 8, "11223344556677888000000000000000"},
		{"", 8, "8000000000000000"},
	}
	for _, c := range cases {
		p := Pad(h(c.in), c.bs)
		if !bytes.Equal(p, h(c.want)) {
			t.Errorf("Pad(%s) = %X, want %s", c.in, p, c.want)
		}
		u, err := Unpad(p)
		if err != nil || !bytes.Equal(u, h(c.in)) {
			t.Errorf("Unpad(%X) = %X, %v", p, u, err)
		}
	}
	for _, bad := range []string{"", "0000", "0102030000", "80FF"} {
		if _, err := Unpad(h(bad)); !errors.Is(err, ErrBadPadding) {
			t.Errorf("Unpad(%s) err = %v, want ErrBadPadding", bad, err)
		}
	}
}

// 9303-11 Appendix D.2/D.3 (BAC) and Appendix G (PACE Kπ).
func TestKDF(t *testing.T) {
	cases := []struct {
		c       Cipher
		secret  string
		counter uint32
		want    string
	}{
		{TDES, "239AB9CB282DAF66231DC5A4DF6BFBAE", KDFEnc, "AB94FDECF2674FDFB9B391F85D7F76F2"},
		{TDES, "239AB9CB282DAF66231DC5A4DF6BFBAE", KDFMAC, "7962D9ECE03D1ACD4C76089DCE131543"},
		{TDES, "0036D272F5C350ACAC50C3F572D23600", KDFEnc, "979EC13B1CBFE9DCD01AB0FED307EAE5"},
		{TDES, "0036D272F5C350ACAC50C3F572D23600", KDFMAC, "F1CB1F1FB5ADF208806B89DC579DC1F8"},
		{AES128, "7E2D2A41C74EA0B38CD36F863939BFA8E9032AAD", KDFPassword, "89DED1B26624EC1E634C1989302849DD"},
		{AES128, "28768D20701247DAE81804C9E780EDE582A9996DB4A315020B2733197DB84925", KDFEnc, "F5F0E35C0D7161EE6724EE513A0D9A7F"},
		{AES128, "28768D20701247DAE81804C9E780EDE582A9996DB4A315020B2733197DB84925", KDFMAC, "FE251C7858B356B24514B3BD5F4297D1"},
	}
	for _, c := range cases {
		got, err := KDF(c.c, h(c.secret), c.counter)
		if err != nil || !bytes.Equal(got, h(c.want)) {
			t.Errorf("KDF(%s, %s, %d) = %X, %v; want %s", c.c, c.secret, c.counter, got, err, c.want)
		}
	}
	for _, c := range []Cipher{AES192, AES256} {
		k, err := KDF(c, []byte("x"), 1)
		if err != nil || len(k) != c.KeySize() {
			t.Errorf("KDF %s: %d bytes, %v", c, len(k), err)
		}
	}
	if _, err := KDF(Cipher(0), nil, 1); !errors.Is(err, ErrCipher) {
		t.Errorf("KDF bad cipher err = %v", err)
	}
}

// 9303-11 Appendix D.3: E_IFD and M_IFD of the BAC worked example.
func TestTDESAndRetailMAC(t *testing.T) {
	kEnc := h("AB94FDECF2674FDFB9B391F85D7F76F2")
	kMac := h("7962D9ECE03D1ACD4C76089DCE131543")
	s := h("781723860C06C2264608F919887022120B795240CB7049B01C19B33E32804F0B")
	e, err := EncryptCBC(TDES, kEnc, nil, s)
	if err != nil || !bytes.Equal(e, h("72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2")) {
		t.Fatalf("E_IFD = %X, %v", e, err)
	}
	m, err := MAC(TDES, kMac, Pad(e, 8))
	if err != nil || !bytes.Equal(m, h("5F1448EEA8AD90A7")) {
		t.Fatalf("M_IFD = %X, %v", m, err)
	}
	d, err := DecryptCBC(TDES, kEnc, nil, e)
	if err != nil || !bytes.Equal(d, s) {
		t.Fatalf("decrypt = %X, %v", d, err)
	}
	if _, err := RetailMAC(kMac, []byte{1, 2, 3}); !errors.Is(err, ErrNotBlockSize) {
		t.Errorf("unpadded retail MAC err = %v", err)
	}
	if _, err := RetailMAC(kMac[:8], make([]byte, 8)); !errors.Is(err, ErrKeySize) {
		t.Errorf("short key err = %v", err)
	}
	if _, err := EncryptCBC(AES128, kEnc[:15], nil, s); !errors.Is(err, ErrKeySize) {
		t.Errorf("short AES key err = %v", err)
	}
}

// NIST SP 800-38A F.2.1, first block.
func TestAESCBC(t *testing.T) {
	got, err := EncryptCBC(AES128, h("2B7E151628AED2A6ABF7158809CF4F3C"), h("000102030405060708090A0B0C0D0E0F"), h("6BC1BEE22E409F96E93D7E117393172A"))
	if err != nil || !bytes.Equal(got, h("7649ABAC8119B246CEE98E9B12E9197D")) {
		t.Fatalf("CBC = %X, %v", got, err)
	}
	if _, err := EncryptCBC(AES128, make([]byte, 16), nil, make([]byte, 15)); !errors.Is(err, ErrNotBlockSize) {
		t.Errorf("err = %v", err)
	}
}

func TestAdjustParity(t *testing.T) {
	k := h("AB94FCEDF2664EDFB9B291F85D7F77F2")
	AdjustParity(k)
	if !bytes.Equal(k, h("AB94FDECF2674FDFB9B391F85D7F76F2")) {
		t.Fatalf("parity = %X", k)
	}
}

// The cipher arc of the PACE and CA OIDs (9303-11 §9.2.1, §9.2.5).
func TestOIDArc(t *testing.T) {
	for arc, want := range map[int]Cipher{1: TDES, 2: AES128, 3: AES192, 4: AES256} {
		c, ok := CipherByOIDArc(arc)
		if !ok || c != want || c.OIDArc() != arc {
			t.Errorf("arc %d: %v %v, OIDArc %d; want %v", arc, c, ok, c.OIDArc(), want)
		}
	}
	for _, arc := range []int{0, 5, -1} {
		if c, ok := CipherByOIDArc(arc); ok {
			t.Errorf("arc %d accepted as %v", arc, c)
		}
	}
	if a := Cipher(0).OIDArc(); a != 0 {
		t.Errorf("invalid cipher has arc %d", a)
	}
}
