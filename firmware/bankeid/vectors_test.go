package bankeid

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/asn1"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// GB/T 32905-2016 Appendix A: SM3("abc") (A.1) and SM3 of the 64-byte
// message "abcd" x 16 (A.2).
func TestSM3Vectors(t *testing.T) {
	for _, v := range []struct{ msg, digest string }{
		{"abc", "66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0"},
		{strings.Repeat("abcd", 16), "debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732"},
	} {
		got := sm3.Sum([]byte(v.msg))
		if !bytes.Equal(got[:], unhex(t, v.digest)) {
			t.Errorf("SM3(%q) = %x", v.msg, got)
		}
	}
}

// The SM2 signature sample on the recommended curve (GB/T 32918.5-2017
// Appendix A, the signature procedure of GB/T 32918.2-2016 §6): "message
// digest" signed with the sample key d by the user with the default ID
// 1234567812345678. Z_A, e and (r, s) are the standard's; the test checks
// gmsm's public key, Z_A, e, that the sample signature verifies, that a
// changed message or another ID does not, and that our Digest is e.
func TestSM2SampleVector(t *testing.T) {
	// The sample's private key d as SEC 1 ECPrivateKey without the public
	// key: gmsm derives it, and the test compares with the sample's.
	sec1, err := asn1.Marshal(struct {
		Version int
		D       []byte
		Curve   asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	}{1, unhex(t, "3945208F 7B2144B1 3F36E38A C6D39F95 88939369 2860B51A 42FB81EF 4DF7C5B8"), asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := smx509.ParseSM2PrivateKey(sec1)
	if err != nil {
		t.Fatal(err)
	}
	pub := &priv.PublicKey
	wantX := unhex(t, "09F9DF31 1E5421A1 50DD7D16 1E4BC5C6 72179FAD 1833FC07 6BB08FF3 56F35020")
	wantY := unhex(t, "CCEA490C E26775A5 2DC6EA71 8CC1AA60 0AED05FB F35E084A 6632F607 2DA9AD13")
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	// The SubjectPublicKeyInfo ends in the uncompressed point 04 || x || y.
	if point := append(append([]byte{0x04}, wantX...), wantY...); !bytes.HasSuffix(spki, point) {
		t.Fatalf("public key from the sample d: %X", spki)
	}
	uid := []byte("1234567812345678")
	za, err := sm2.CalculateZA(pub, uid)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "B2E14C5C 79C6DF5B 85F4FE7E D8DB7A26 2B9DA7E0 7CCB0EA9 F4747B8C CDA8A4F3"); !bytes.Equal(za, want) {
		t.Errorf("Z_A = %X", za)
	}
	msg := []byte("message digest")
	h := sm3.New()
	h.Write(za)
	h.Write(msg)
	e := h.Sum(nil)
	if want := unhex(t, "F0B43E94 BA45ACCA ACE692ED 534382EB 17E6AB5A 19CE7B31 F4486FDF C0D28640"); !bytes.Equal(e, want) {
		t.Errorf("e = %X", e)
	}
	r := unhex(t, "F5A03B06 48D2C463 0EEAC513 E1BB81A1 5944DA38 27D5B741 43AC7EAC EEE720B3")
	s := unhex(t, "B1B6AA29 DF212FD8 763182BC 0D421CA1 BB9038FD 1F7F42D4 840B69C4 85BBC1AA")
	sig, err := ParseSignature(append(r, s...), sm2.P256())
	if err != nil {
		t.Fatal(err)
	}
	if !sm2.VerifyASN1WithSM2(pub, uid, msg, sig) {
		t.Error("the standard's sample signature does not verify")
	}
	if sm2.VerifyASN1WithSM2(pub, uid, []byte("message digesT"), sig) {
		t.Error("the sample signature verifies over another message")
	}
	if sm2.VerifyASN1WithSM2(pub, []byte("ALICE123@YAHOO.COM"), msg, sig) {
		t.Error("the sample signature verifies with another ID")
	}
	if !bytes.Equal(mustDigest(t, pub, msg), e) {
		t.Error("Digest differs from the standard's e")
	}
	if err := VerifySignature(pub, msg, sig); err != nil {
		t.Errorf("VerifySignature refuses the standard's sample: %v", err)
	}
	// Our digest (default uid) and gmsm's verification agree.
	own, err := sm2.SignASN1(bytes.NewReader(bytes.Repeat([]byte{7}, 256)), priv, mustDigest(t, pub, msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(pub, msg, own); err != nil {
		t.Errorf("a signature over Digest does not verify: %v", err)
	}
}

func mustDigest(t *testing.T, pub *ecdsa.PublicKey, m []byte) []byte {
	t.Helper()
	d, err := Digest(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
