package bac

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/sm"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// The 9303-11 Appendix D example document.
var appendixD = Key{DocumentNumber: "L898902C<", DateOfBirth: "690806", DateOfExpiry: "940623"}

// Appendix D values, as printed in ICAO Doc 9303-11.
const (
	dKseed   = "239AB9CB282DAF66231DC5A4DF6BFBAE"
	dKenc    = "AB94FDECF2674FDFB9B391F85D7F76F2"
	dKmac    = "7962D9ECE03D1ACD4C76089DCE131543"
	dRndIC   = "4608F91988702212"
	dRndIFD  = "781723860C06C226"
	dKIFD    = "0B795240CB7049B01C19B33E32804F0B"
	dKIC     = "0B4F80323EB3191CB04970CB4052790B"
	dEIFD    = "72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2"
	dMIFD    = "5F1448EEA8AD90A7"
	dRespIC  = "46B9342A41396CD7386BF5803104D7CEDC122B9132139BAF2EEDC94EE178534F2F2D235D074D7449"
	dKSenc   = "979EC13B1CBFE9DCD01AB0FED307EAE5"
	dKSmac   = "F1CB1F1FB5ADF208806B89DC579DC1F8"
	dSSC     = "887022120C06C226"
	dEFCOM   = "60145F0104303130365F36063034303030305C026175"
	dMRZInfo = "L898902C<369080619406236"
)

func TestAppendixDKeys(t *testing.T) {
	info, err := appendixD.MRZInformation()
	if err != nil || info != dMRZInfo {
		t.Fatalf("MRZ information %q, %v", info, err)
	}
	// Also with the short form of the document number.
	short := Key{DocumentNumber: "L898902C", DateOfBirth: "690806", DateOfExpiry: "940623"}
	if info2, _ := short.MRZInformation(); info2 != dMRZInfo {
		t.Errorf("padding: %q", info2)
	}
	seed, err := appendixD.Seed()
	if err != nil || !bytes.Equal(seed, h(dKseed)) {
		t.Fatalf("Kseed %X, %v", seed, err)
	}
	kEnc, kMac, err := appendixD.Keys()
	if err != nil || !bytes.Equal(kEnc, h(dKenc)) || !bytes.Equal(kMac, h(dKmac)) {
		t.Fatalf("Kenc %X Kmac %X, %v", kEnc, kMac, err)
	}
	c, err := cryptogram(kEnc, kMac, h(dRndIFD), h(dRndIC), h(dKIFD))
	if err != nil || !bytes.Equal(c, h(dEIFD+dMIFD)) {
		t.Fatalf("cmd_data %X, %v", c, err)
	}
	r, err := openCryptogram(kEnc, kMac, h(dRespIC))
	if err != nil || !bytes.Equal(r, h(dRndIC+dRndIFD+dKIC)) {
		t.Fatalf("R %X, %v", r, err)
	}
}

func TestCheckDigit(t *testing.T) {
	// 9303-3 and 9303-11 Appendix D examples.
	for s, want := range map[string]byte{"L898902C<": '3', "690806": '1', "940623": '6', "D23145890734": '9', "520727": '3', "L898902C3": '6', "740812": '2', "120415": '9'} {
		if got, err := CheckDigit(s); err != nil || got != want {
			t.Errorf("CheckDigit(%s) = %c %v, want %c", s, got, err, want)
		}
	}
	for _, k := range []Key{{"", "690806", "940623"}, {"L898902C<", "69086", "940623"}, {"L898902C<", "690806", "94O623"}, {"L89-902C", "690806", "940623"}} {
		if _, err := k.Seed(); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%+v: err = %v", k, err)
		}
	}
}

// script answers from a list and records what was sent.
type script struct {
	sent    []string
	answers []string
}

func (s *script) Transmit(_ context.Context, c []byte) ([]byte, error) {
	s.sent = append(s.sent, strings.ToUpper(hex.EncodeToString(c)))
	if len(s.answers) == 0 {
		return nil, errors.New("script exhausted")
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return h(a), nil
}

// The complete Appendix D transcript: BAC, then SELECT EF.COM and the two
// READ BINARY commands of D.4, produced by Authenticate and ReadFile with
// the standard's terminal randoms.
func TestAppendixDTranscript(t *testing.T) {
	s := &script{answers: []string{
		dRndIC + "9000",
		dRespIC + "9000",
		"990290008E08FA855A5D4C50A8ED9000",
		"8709019FF0EC34F9922651990290008E08AD55CC17140B2DED9000",
		"871901FB9235F4E4037F2327DCC8964F1F9B8C30F42C8E2FFF224A990290008E08C8B2787EAEA07D749000",
	}}
	ch := apdu.NewChannel(s, apdu.Options{})
	sess, err := Authenticate(context.Background(), ch, appendixD, Options{Rand: bytes.NewReader(h(dRndIFD + dKIFD))})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sess.SSC(), h(dSSC)) {
		t.Errorf("SSC %X", sess.SSC())
	}
	ch.SetWrapper(sess)
	com, err := ch.ReadFile(context.Background(), 0x011E)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(com, h(dEFCOM)) {
		t.Errorf("EF.COM %X", com)
	}
	want := []string{
		"0084000008",
		"0082000028" + dEIFD + dMIFD + "28",
		"0CA4020C158709016375432908C044F68E08BF8B92D635FF24F800",
		"0CB000000D9701048E08ED6705417E96BA5500",
		"0CB000040D9701128E082EA28A70F3C7B53500",
	}
	if strings.Join(s.sent, "\n") != strings.Join(want, "\n") {
		t.Errorf("sent\n%s\nwant\n%s", strings.Join(s.sent, "\n"), strings.Join(want, "\n"))
	}
	if st := ch.Stats(); st.APDUs != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestAppendixDSessionKeys(t *testing.T) {
	sess, err := session(h(dKIFD), h(dKIC), h(dRndIC), h(dRndIFD))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sess.SSC(), h(dSSC)) {
		t.Errorf("SSC %X", sess.SSC())
	}
	ref, _ := sm.New(sess.Cipher(), h(dKSenc), h(dKSmac), h(dSSC))
	a, _ := sess.Wrap(apdu.Command{INS: 0xB0, Ne: 4})
	b, _ := ref.Wrap(apdu.Command{INS: 0xB0, Ne: 4})
	if !bytes.Equal(a.Data, b.Data) {
		t.Errorf("session keys differ from KSenc/KSmac of Appendix D")
	}
}

// memCard is an in-process BAC chip with EF.COM behind secure messaging.
type memCard struct {
	bac  *Card
	sess *sm.Session
	efs  map[uint16][]byte
	cur  []byte
	raw  []string
}

func (m *memCard) Transmit(_ context.Context, b []byte) ([]byte, error) {
	m.raw = append(m.raw, strings.ToUpper(hex.EncodeToString(b)))
	cmd, _, err := apdu.ParseCommand(b)
	if err != nil {
		return apdu.Status(apdu.SWWrongLength).Encode(), nil
	}
	if m.sess == nil {
		switch cmd.INS {
		case 0x84:
			return m.bac.GetChallenge(cmd).Encode(), nil
		case 0x82:
			r, s := m.bac.ExternalAuthenticate(cmd)
			m.sess = s
			return r.Encode(), nil
		}
		return apdu.Status(apdu.SWSecurityNotSatisfied).Encode(), nil
	}
	plain, err := m.sess.UnwrapCommand(cmd)
	if err != nil {
		sw := sm.ErrorStatus(err)
		m.sess = nil
		return apdu.Status(sw).Encode(), nil
	}
	var r apdu.Response
	switch plain.INS {
	case 0xA4:
		fid := uint16(plain.Data[0])<<8 | uint16(plain.Data[1])
		if f, ok := m.efs[fid]; ok {
			m.cur, r = f, apdu.Status(apdu.SWOK)
		} else {
			r = apdu.Status(apdu.SWFileNotFound)
		}
	case 0xB0:
		off := int(plain.P1)<<8 | int(plain.P2)
		end := min(off+plain.Ne, len(m.cur))
		r = apdu.Response{Data: m.cur[off:end], SW: apdu.SWOK}
	default:
		r = apdu.Status(apdu.SWINSNotSupported)
	}
	pr, err := m.sess.WrapResponse(r)
	if err != nil {
		return nil, err
	}
	return pr.Encode(), nil
}

// The card side reproduces the chip's half of Appendix D: given RND.IC
// and K.IC it answers the standard's EXTERNAL AUTHENTICATE response and
// then the standard's protected responses.
func TestCardSideAppendixD(t *testing.T) {
	card, err := NewCard(appendixD, bytes.NewReader(h(dRndIC+dKIC)))
	if err != nil {
		t.Fatal(err)
	}
	m := &memCard{bac: card, efs: map[uint16][]byte{0x011E: h(dEFCOM)}}
	var log []string
	ch := apdu.NewChannel(recorder{m, &log}, apdu.Options{})
	sess, err := Authenticate(context.Background(), ch, appendixD, Options{Rand: bytes.NewReader(h(dRndIFD + dKIFD))})
	if err != nil {
		t.Fatal(err)
	}
	ch.SetWrapper(sess)
	com, err := ch.ReadFile(context.Background(), 0x011E)
	if err != nil || !bytes.Equal(com, h(dEFCOM)) {
		t.Fatalf("EF.COM %X, %v", com, err)
	}
	want := []string{dRndIC + "9000", dRespIC + "9000", "990290008E08FA855A5D4C50A8ED9000",
		"8709019FF0EC34F9922651990290008E08AD55CC17140B2DED9000",
		"871901FB9235F4E4037F2327DCC8964F1F9B8C30F42C8E2FFF224A990290008E08C8B2787EAEA07D749000"}
	if strings.Join(log, "\n") != strings.Join(want, "\n") {
		t.Errorf("card answered\n%s\nwant\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
}

type recorder struct {
	t   apdu.Transport
	log *[]string
}

func (r recorder) Transmit(ctx context.Context, b []byte) ([]byte, error) {
	out, err := r.t.Transmit(ctx, b)
	*r.log = append(*r.log, strings.ToUpper(hex.EncodeToString(out)))
	return out, err
}

func TestRoundTripRandom(t *testing.T) {
	key := Key{DocumentNumber: "L898902C3", DateOfBirth: "740812", DateOfExpiry: "120415"}
	card, err := NewCard(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := append([]byte{0x75, 0x82, 0x0F, 0xA0}, bytes.Repeat([]byte{0xC3}, 4000)...)
	m := &memCard{bac: card, efs: map[uint16][]byte{0x0102: big}}
	ch := apdu.NewChannel(m, apdu.Options{})
	sess, err := Authenticate(context.Background(), ch, key, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch.SetWrapper(sess)
	got, err := ch.ReadFile(context.Background(), 0x0102)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("DG2: %d bytes, %v", len(got), err)
	}
	if _, err := ch.ReadFile(context.Background(), 0x0109); !apdu.IsSW(err, apdu.SWFileNotFound) {
		t.Fatalf("missing DG: %v", err)
	}
}

func TestWrongMRZ(t *testing.T) {
	card, _ := NewCard(appendixD, nil)
	m := &memCard{bac: card}
	ch := apdu.NewChannel(m, apdu.Options{})
	wrong := Key{DocumentNumber: "L898902C<", DateOfBirth: "690806", DateOfExpiry: "940624"}
	_, err := Authenticate(context.Background(), ch, wrong, Options{})
	if !errors.Is(err, ErrAuthenticationFailed) || !apdu.IsSW(err, apdu.SWVerificationFailed) {
		t.Fatalf("err = %v", err)
	}
	// The challenge is single use: replaying EXTERNAL AUTHENTICATE fails.
	if r, s := card.ExternalAuthenticate(apdu.Command{INS: 0x82, Data: make([]byte, 40)}); r.SW != apdu.SWConditionsNotSatisfied || s != nil {
		t.Errorf("without challenge: %04X", r.SW)
	}
}

// A hostile chip: a well-formed answer whose MAC does not verify, or that
// does not echo our nonce.
func TestHostileChip(t *testing.T) {
	kEnc, kMac, _ := appendixD.Keys()
	bad := h(dRespIC)
	bad[39] ^= 1
	noEcho, _ := cryptogram(kEnc, kMac, h(dRndIC), h("0000000000000000"), h(dKIC))
	for name, answer := range map[string]string{
		"bad MAC":    hex.EncodeToString(bad) + "9000",
		"no echo":    hex.EncodeToString(noEcho) + "9000",
		"short":      "0102039000",
		"empty 9000": "9000",
	} {
		s := &script{answers: []string{dRndIC + "9000", answer}}
		_, err := Authenticate(context.Background(), apdu.NewChannel(s, apdu.Options{}), appendixD, Options{Rand: bytes.NewReader(h(dRndIFD + dKIFD))})
		if !errors.Is(err, ErrAuthenticationFailed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	s := &script{answers: []string{"01029000"}}
	if _, err := Authenticate(context.Background(), apdu.NewChannel(s, apdu.Options{}), appendixD, Options{}); !errors.Is(err, ErrAuthenticationFailed) {
		t.Errorf("short challenge: %v", err)
	}
}

// The MRZ fields are the BAC password: no log handler, format verb or
// JSON encoding shows them.
func TestKeyNeverPrinted(t *testing.T) {
	k := Key{DocumentNumber: "L898902C3", DateOfBirth: "690806", DateOfExpiry: "940623"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", k)
	j, _ := json.Marshal(k)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", k, k, k, k) + string(j)
	for _, s := range []string{"L898902C3", "690806", "940623"} {
		if strings.Contains(out, s) {
			t.Fatalf("%s leaked: %s", s, out)
		}
	}
}
