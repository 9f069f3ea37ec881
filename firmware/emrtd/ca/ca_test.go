package ca

import (
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/smcrypto"
)

// chip is a minimal card behind secure messaging: Chip Authentication
// (ca.Card), SELECT and READ BINARY of one file. It switches to the CA
// session after protecting the response, as 9303-11 §6.2.4 says.
type chip struct {
	sess, next *sm.Session
	ca         *Card
	file       []byte
	mutate     func(apdu.Response) apdu.Response
}

func (c *chip) Transmit(_ context.Context, raw []byte) ([]byte, error) {
	cmd, _, err := apdu.ParseCommand(raw)
	if err != nil {
		return []byte{0x67, 0x00}, nil
	}
	if c.sess == nil {
		return []byte{0x69, 0x88}, nil
	}
	plain, err := c.sess.UnwrapCommand(cmd)
	if err != nil {
		c.sess = nil
		return []byte{0x69, 0x88}, nil
	}
	var resp apdu.Response
	switch {
	case plain.INS == 0x22 && plain.P2 == 0xA6:
		resp, c.next = c.ca.SetKAT(plain)
	case plain.INS == 0x22:
		resp = c.ca.SetAT(plain)
	case plain.INS == 0x86:
		resp, c.next = c.ca.GeneralAuthenticate(plain)
	case plain.INS == 0xA4:
		resp = apdu.Status(apdu.SWOK)
	case plain.INS == 0xB0:
		resp = apdu.Response{Data: c.file[:min(plain.Ne, len(c.file))], SW: apdu.SWOK}
	default:
		resp = apdu.Status(apdu.SWINSNotSupported)
	}
	if c.mutate != nil {
		resp = c.mutate(resp)
	}
	w, err := c.sess.WrapResponse(resp)
	if err != nil {
		return nil, err
	}
	if c.next != nil {
		c.sess, c.next = c.next, nil
	}
	return w.Encode(), nil
}

func sessions(t testing.TB) (*sm.Session, *sm.Session) {
	k := make([]byte, 16)
	_, _ = rand.Read(k)
	a, err := sm.New(smcrypto.AES128, k, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sm.New(smcrypto.AES128, k, k, nil)
	return a, b
}

func dhGroup(t testing.TB) pubkey.DHParams {
	q, _ := rand.Prime(rand.Reader, 160)
	one := big.NewInt(1)
	for {
		k, _ := rand.Int(rand.Reader, new(big.Int).Lsh(one, 864))
		k.SetBit(k, 863, 1).SetBit(k, 0, 0)
		p := new(big.Int).Add(new(big.Int).Mul(k, q), one)
		if p.BitLen() == 1024 && p.ProbablyPrime(20) {
			if g := new(big.Int).Exp(big.NewInt(2), k, p); g.Cmp(one) != 0 {
				return pubkey.DHParams{P: p, G: g, Q: q}
			}
		}
	}
}

func genKey(t testing.TB, paramID int, dh *pubkey.DHParams) *pubkey.PrivateKey {
	if dh != nil {
		k, err := pubkey.GenerateDH(rand.Reader, *dh)
		if err != nil {
			t.Fatal(err)
		}
		return &pubkey.PrivateKey{DH: k}
	}
	c, err := pubkey.CurveByParameterID(paramID)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pubkey.GenerateEC(rand.Reader, c)
	if err != nil {
		t.Fatal(err)
	}
	return &pubkey.PrivateKey{EC: k}
}

func run(t *testing.T, ka KeyAgreement, cipher smcrypto.Cipher, paramID int, dh *pubkey.DHParams, clone bool, keyID int) (*Result, *chip, error) {
	t.Helper()
	priv := genKey(t, paramID, dh)
	info := lds.ChipAuthenticationInfo{Protocol: ProtocolOID(ka, cipher), Version: 1, KeyID: keyID, HasKeyID: keyID != 0}
	cardKey := priv
	if clone {
		cardKey = genKey(t, paramID, dh)
	}
	cc, err := NewCard(cardKey, []lds.ChipAuthenticationInfo{info})
	if err != nil {
		t.Fatal(err)
	}
	term, card := sessions(t)
	c := &chip{sess: card, ca: cc, file: []byte{0x60, 0x16, 0x5F, 0x01}}
	ch := apdu.NewChannel(c, apdu.Options{})
	ch.SetWrapper(term)
	res, err := Authenticate(context.Background(), ch, info, priv.PublicKey(), Options{})
	return res, c, err
}

func TestChipAuthentication(t *testing.T) {
	dh := dhGroup(t)
	for _, tc := range []struct {
		name    string
		ka      KeyAgreement
		cipher  smcrypto.Cipher
		paramID int
		dh      *pubkey.DHParams
		keyID   int
	}{
		{"brainpoolP256r1/AES-128", ECDH, smcrypto.AES128, 13, nil, 0},
		{"P-256/AES-128", ECDH, smcrypto.AES128, 12, nil, 0},
		{"brainpoolP256r1/3DES", ECDH, smcrypto.TDES, 13, nil, 0},
		{"P-256/3DES keyId", ECDH, smcrypto.TDES, 12, nil, 3},
		{"brainpoolP384r1/AES-192", ECDH, smcrypto.AES192, 16, nil, 0},
		{"P-521/AES-256 keyId", ECDH, smcrypto.AES256, 18, nil, 300},
		{"DH-1024/AES-128", DH, smcrypto.AES128, 0, &dh, 0},
		{"DH-1024/3DES", DH, smcrypto.TDES, 0, &dh, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, c, err := run(t, tc.ka, tc.cipher, tc.paramID, tc.dh, false, tc.keyID)
			if err != nil {
				t.Fatalf("genuine chip: %v", err)
			}
			if res.Protocol.Cipher != tc.cipher || c.sess.Cipher() != tc.cipher {
				t.Fatalf("cipher %v, card session %v", res.Protocol.Cipher, c.sess.Cipher())
			}
			_, _, err = run(t, tc.ka, tc.cipher, tc.paramID, tc.dh, true, tc.keyID)
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("cloned chip: %v", err)
			}
		})
	}
}

func TestChipAuthenticationHostile(t *testing.T) {
	priv := genKey(t, 13, nil)
	info := lds.ChipAuthenticationInfo{Protocol: ProtocolOID(ECDH, smcrypto.AES128), Version: 1}
	for name, mutate := range map[string]func(apdu.Response) apdu.Response{
		"refuses":      func(r apdu.Response) apdu.Response { return apdu.Status(apdu.SWConditionsNotSatisfied) },
		"garbage GA":   func(r apdu.Response) apdu.Response { return apdu.Response{Data: []byte{0x7C, 0x05, 0x01}, SW: r.SW} },
		"long garbage": func(r apdu.Response) apdu.Response { return apdu.Response{Data: make([]byte, 300), SW: r.SW} },
	} {
		cc, _ := NewCard(priv, []lds.ChipAuthenticationInfo{info})
		term, card := sessions(t)
		c := &chip{sess: card, ca: cc, file: []byte{1, 2, 3, 4}, mutate: mutate}
		ch := apdu.NewChannel(c, apdu.Options{})
		ch.SetWrapper(term)
		if _, err := Authenticate(context.Background(), ch, info, priv.PublicKey(), Options{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// No secure messaging: refused before anything is sent.
	ch := apdu.NewChannel(&chip{}, apdu.Options{})
	if _, err := Authenticate(context.Background(), ch, info, priv.PublicKey(), Options{}); !errors.Is(err, ErrNoSession) {
		t.Fatalf("plain channel: %v", err)
	}
	// A DH protocol with an EC key is not run.
	term, _ := sessions(t)
	ch.SetWrapper(term)
	if _, err := Authenticate(context.Background(), ch, lds.ChipAuthenticationInfo{Protocol: ProtocolOID(DH, smcrypto.AES128)}, priv.PublicKey(), Options{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("DH protocol, EC key: %v", err)
	}
	// Card side: hostile terminal keys never panic and are refused.
	cc, _ := NewCard(priv, []lds.ChipAuthenticationInfo{info})
	for _, d := range [][]byte{nil, {0x91}, {0x91, 0x01, 0x04}, append([]byte{0x91, 0x41, 0x04}, make([]byte, 64)...)} {
		if r, s := cc.SetKAT(apdu.Command{INS: 0x22, P1: 0x41, P2: 0xA6, Data: d}); r.SW == apdu.SWOK || s != nil {
			t.Errorf("SetKAT %X accepted", d)
		}
	}
	if r := cc.SetAT(apdu.Command{INS: 0x22, P1: 0x41, P2: 0xA4, Data: []byte{0x80, 0x01, 0x00}}); r.SW == apdu.SWOK {
		t.Error("SetAT with a foreign OID accepted")
	}
	if r, s := cc.GeneralAuthenticate(apdu.Command{INS: 0x86, Data: []byte{0x7C, 0x00}}); r.SW == apdu.SWOK || s != nil {
		t.Error("GA without SetAT accepted")
	}
}

func TestProtocolByOID(t *testing.T) {
	p, err := ProtocolByOID(lds.OIDCA) // too short
	if err == nil {
		t.Fatalf("id-CA parsed: %v", p)
	}
	p, err = ProtocolByOID(ProtocolOID(ECDH, smcrypto.AES256))
	if err != nil || p.String() != "id-CA-ECDH-AES-CBC-CMAC-256" || p.OID.String() != "0.4.0.127.0.7.2.2.3.2.4" {
		t.Fatalf("%v %v", p, err)
	}
}

func BenchmarkChipAuthentication(b *testing.B) {
	priv := genKey(b, 13, nil)
	info := lds.ChipAuthenticationInfo{Protocol: ProtocolOID(ECDH, smcrypto.AES128), Version: 1}
	cc, _ := NewCard(priv, []lds.ChipAuthenticationInfo{info})
	for b.Loop() {
		term, card := sessions(b)
		c := &chip{sess: card, ca: cc, file: []byte{1, 2, 3, 4}}
		ch := apdu.NewChannel(c, apdu.Options{})
		ch.SetWrapper(term)
		if _, err := Authenticate(context.Background(), ch, info, priv.PublicKey(), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
