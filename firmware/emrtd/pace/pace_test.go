package pace

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/smcrypto"
	"kiosk/firmware/emrtd/tlv"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// ICAO Doc 9303-11 Appendix G: PACE id-PACE-ECDH-GM-AES-CBC-CMAC-128 on
// brainpoolP256r1 (parameter id 13) with the MRZ password of document
// T22000129, born 640812, expiring 101031.
var gKey = bac.Key{DocumentNumber: "T22000129", DateOfBirth: "640812", DateOfExpiry: "101031"}

const (
	gCardAccess = "31143012060A04007F0007020204020202010202010D"
	gK          = "7E2D2A41C74EA0B38CD36F863939BFA8E9032AAD" // SHA-1(MRZ information)
	gKpi        = "89DED1B26624EC1E634C1989302849DD"
	gS          = "3F00C4D39D153F2B2A214A078D899B22"
	gZ          = "95A3A016522EE98D01E76CB6B98B42C3"
	gSKMapIFD   = "7F4EF07B9EA82FD78AD689B38D0BC78CF21F249D953BC46F4C6E19259C010F99"
	gPKMapIFD   = "047ACF3EFC982EC45565A4B155129EFBC74650DCBFA6362D896FC70262E0C2CC5E544552DCB6725218799115B55C9BAA6D9F6BC3A9618E70C25AF71777A9C4922D"
	gSKMapIC    = "498FF49756F2DC1587840041839A85982BE7761D14715FB091EFA7BCE9058560"
	gPKMapIC    = "04824FBA91C9CBE26BEF53A0EBE7342A3BF178CEA9F45DE0B70AA601651FBA3F5730D8C879AAA9C9F73991E61B58F4D52EB87A0A0C709A49DC63719363CCD13C54"
	gHx         = "60332EF2450B5D247EF6D3868397D398852ED6E8CAF6FFEEF6BF85CA57057FD5"
	gMappedG    = "048CED63C91426D4F0EB1435E7CB1D74A46723A0AF21C89634F65A9AE87A9265E28C879506743F8611AC33645C5B985C80B5F09A0B83407C1B6A4D857AE76FE522"
	gSKDHIFD    = "A73FB703AC1436A18E0CFA5ABB3F7BEC7A070E7A6788486BEE230C4A22762595"
	gPKDHIFD    = "042DB7A64C0355044EC9DF190514C625CBA2CEA48754887122F3A5EF0D5EDD301C3556F3B3B186DF10B857B58F6A7EB80F20BA5DC7BE1D43D9BF850149FBB36462"
	gSKDHIC     = "107CF58696EF6155053340FD633392BA81909DF7B9706F226F32086C7AFF974A"
	gPKDHIC     = "049E880F842905B8B3181F7AF7CAA9F0EFB743847F44A306D2D28C1D9EC65DF6DB7764B22277A2EDDC3C265A9F018F9CB852E111B768B326904B59A0193776F094"
	gSecret     = "28768D20701247DAE81804C9E780EDE582A9996DB4A315020B2733197DB84925"
	gKSenc      = "F5F0E35C0D7161EE6724EE513A0D9A7F"
	gKSmac      = "FE251C7858B356B24514B3BD5F4297D1"
	gTIFD       = "C2B0BD78D94BA866"
	gTIC        = "3ABB9674BCE93C08"
)

// The APDUs of Appendix G.
var (
	gCommands = []string{
		"0022C1A40F800A04007F000702020402028301" + "01",
		"10860000027C0000",
		"10860000457C438141" + gPKMapIFD + "00",
		"10860000457C438341" + gPKDHIFD + "00",
		"008600000C7C0A8508" + gTIFD + "00",
	}
	gResponses = []string{
		"9000",
		"7C128010" + gZ + "9000",
		"7C438241" + gPKMapIC + "9000",
		"7C438441" + gPKDHIC + "9000",
		"7C0A8608" + gTIC + "9000",
	}
)

func gInfo(t testing.TB) PACEInfo {
	sec, err := ParseCardAccess(h(gCardAccess))
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.PACE) != 1 {
		t.Fatalf("PACEInfos: %+v", sec.PACE)
	}
	return sec.PACE[0]
}

func TestAppendixGPrimitives(t *testing.T) {
	pw, err := MRZPassword(gKey)
	if err != nil {
		t.Fatal(err)
	}
	if kpi, err := pw.key(smcrypto.AES128); err != nil || !bytes.Equal(kpi, h(gKpi)) {
		t.Fatalf("Kπ %X, %v", kpi, err)
	}
	if s, err := smcrypto.DecryptCBC(smcrypto.AES128, h(gKpi), nil, h(gZ)); err != nil || !bytes.Equal(s, h(gS)) {
		t.Fatalf("s %X, %v", s, err)
	}
	d, err := StandardizedDomainParameters(13)
	if err != nil {
		t.Fatal(err)
	}
	g := d.group
	check := func(name string, got []byte, err error, want string) {
		t.Helper()
		if err != nil || !bytes.Equal(got, h(want)) {
			t.Errorf("%s = %X, %v\nwant %s", name, got, err, want)
		}
	}
	pk, err := g.publicKey(h(gSKMapIFD), nil)
	check("PK_map_IFD", pk, err, gPKMapIFD)
	pk, err = g.publicKey(h(gSKMapIC), nil)
	check("PK_map_IC", pk, err, gPKMapIC)
	hx, err := g.sharedSecret(h(gSKMapIFD), h(gPKMapIC))
	check("H.x (terminal)", hx, err, gHx)
	hx, err = g.sharedSecret(h(gSKMapIC), h(gPKMapIFD))
	check("H.x (chip)", hx, err, gHx)
	gen, err := g.mapGenerator(h(gS), h(gSKMapIFD), h(gPKMapIC))
	check("G' (terminal)", gen, err, gMappedG)
	gen, err = g.mapGenerator(h(gS), h(gSKMapIC), h(gPKMapIFD))
	check("G' (chip)", gen, err, gMappedG)
	pk, err = g.publicKey(h(gSKDHIFD), h(gMappedG))
	check("PK_DH_IFD", pk, err, gPKDHIFD)
	pk, err = g.publicKey(h(gSKDHIC), h(gMappedG))
	check("PK_DH_IC", pk, err, gPKDHIC)
	k, err := g.sharedSecret(h(gSKDHIFD), h(gPKDHIC))
	check("K", k, err, gSecret)
	enc, mac, err := smcrypto.SessionKeys(smcrypto.AES128, k)
	check("KSenc", enc, err, gKSenc)
	check("KSmac", mac, err, gKSmac)
	oid, _ := Protocol{OID: OIDECDHGMAES128}.oidValue()
	tIFD, err := authToken(smcrypto.AES128, h(gKSmac), tokenInput(oid, g, h(gPKDHIC)))
	check("T_IFD", tIFD, err, gTIFD)
	tIC, err := authToken(smcrypto.AES128, h(gKSmac), tokenInput(oid, g, h(gPKDHIFD)))
	check("T_IC", tIC, err, gTIC)
}

// script answers from a list and records the commands.
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

// The terminal side replays Appendix G byte for byte: with the standard's
// terminal keys it sends the standard's commands, accepts the standard's
// chip answers (T_IC included) and derives the standard's session keys.
func TestAppendixGTerminal(t *testing.T) {
	s := &script{answers: append([]string(nil), gResponses...)}
	ch := apdu.NewChannel(s, apdu.Options{})
	pw, _ := MRZPassword(gKey)
	res, err := Establish(context.Background(), ch, pw, gInfo(t), Options{Rand: bytes.NewReader(h(gSKMapIFD + gSKDHIFD))})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.sent, "\n") != strings.Join(gCommands, "\n") {
		t.Errorf("sent\n%s\nwant\n%s", strings.Join(s.sent, "\n"), strings.Join(gCommands, "\n"))
	}
	if res.Parameters.ID != 13 || res.Protocol.Cipher != smcrypto.AES128 || !bytes.Equal(res.ChipPublicKey, h(gPKDHIC)) {
		t.Errorf("result %+v", res)
	}
	assertSessionKeys(t, res.Session, smcrypto.AES128, gKSenc, gKSmac)
}

// assertSessionKeys checks a session against KSenc/KSmac by wrapping the
// same command with a reference session (the keys are not exported).
func assertSessionKeys(t *testing.T, s *sm.Session, c smcrypto.Cipher, ksEnc, ksMac string) {
	t.Helper()
	ref, err := sm.New(c, h(ksEnc), h(ksMac), s.SSC())
	if err != nil {
		t.Fatal(err)
	}
	cmd := apdu.Command{INS: 0xA4, P1: 2, P2: 0x0C, Data: h("011E")}
	a, err1 := s.Wrap(cmd)
	b, err2 := ref.Wrap(cmd)
	if err1 != nil || err2 != nil || !bytes.Equal(a.Data, b.Data) {
		t.Errorf("session keys differ from KSenc %s / KSmac %s", ksEnc, ksMac)
	}
}

// The chip side replays Appendix G too: with the standard's nonce and chip
// keys it answers exactly the standard's responses to the standard's
// terminal.
func TestAppendixGCard(t *testing.T) {
	pw, _ := MRZPassword(gKey)
	card, err := NewCard(CardOptions{
		Infos:   []PACEInfo{gInfo(t)},
		Secrets: CardSecrets{MRZ: pw.Secret},
		Rand:    bytes.NewReader(h(gS + gSKMapIC + gSKDHIC)),
	})
	if err != nil {
		t.Fatal(err)
	}
	chip := &chip{pace: card}
	var answers []string
	ch := apdu.NewChannel(recorder{chip, &answers}, apdu.Options{})
	res, err := Establish(context.Background(), ch, pw, gInfo(t), Options{Rand: bytes.NewReader(h(gSKMapIFD + gSKDHIFD))})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(answers, "\n") != strings.Join(gResponses, "\n") {
		t.Errorf("chip answered\n%s\nwant\n%s", strings.Join(answers, "\n"), strings.Join(gResponses, "\n"))
	}
	if chip.sess == nil {
		t.Fatal("chip has no session")
	}
	assertSessionKeys(t, chip.sess, smcrypto.AES128, gKSenc, gKSmac)
	assertSessionKeys(t, res.Session, smcrypto.AES128, gKSenc, gKSmac)
	if pt, ok := card.Authenticated(); !ok || pt != MRZ {
		t.Errorf("Authenticated() = %v %v", pt, ok)
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

// chip is an in-process PACE chip with files behind secure messaging.
type chip struct {
	pace   *Card
	sess   *sm.Session
	files  map[uint16][]byte
	cur    []byte
	tamper bool
	mutate func(ins byte, resp []byte) []byte // hostile chip
}

func (c *chip) Transmit(_ context.Context, b []byte) ([]byte, error) {
	cmd, _, err := apdu.ParseCommand(b)
	if err != nil {
		return apdu.Status(apdu.SWWrongLength).Encode(), nil
	}
	out := c.process(cmd)
	if len(out)-2 > cmd.Ne && cmd.Ne > 0 {
		return nil, fmt.Errorf("chip answer of %d bytes exceeds Ne %d", len(out)-2, cmd.Ne)
	}
	if c.mutate != nil {
		out = c.mutate(cmd.INS, out)
	}
	return out, nil
}

func (c *chip) process(cmd apdu.Command) []byte {
	if cmd.CLA&0x0C == 0 { // plain: PACE (re)starts, any session ends
		c.sess = nil
		switch {
		case cmd.INS == 0x22 && cmd.P1 == 0xC1 && cmd.P2 == 0xA4:
			return c.pace.SetAT(cmd).Encode()
		case cmd.INS == 0x86:
			r, s := c.pace.GeneralAuthenticate(cmd)
			c.sess = s
			return r.Encode()
		}
		return apdu.Status(apdu.SWSecurityNotSatisfied).Encode()
	}
	if c.sess == nil {
		return apdu.Status(apdu.SWSMDataObjectsMissing).Encode()
	}
	plain, err := c.sess.UnwrapCommand(cmd)
	if err != nil {
		c.sess = nil
		return apdu.Status(sm.ErrorStatus(err)).Encode()
	}
	var r apdu.Response
	switch plain.INS {
	case 0xA4:
		if len(plain.Data) != 2 {
			r = apdu.Status(apdu.SWWrongData)
			break
		}
		if f, ok := c.files[uint16(plain.Data[0])<<8|uint16(plain.Data[1])]; ok {
			c.cur, r = f, apdu.Status(apdu.SWOK)
		} else {
			r = apdu.Status(apdu.SWFileNotFound)
		}
	case 0xB0:
		off := int(plain.P1)<<8 | int(plain.P2)
		if off > len(c.cur) {
			r = apdu.Status(apdu.SWWrongP1P2)
			break
		}
		r = apdu.Response{Data: c.cur[off:min(off+plain.Ne, len(c.cur))], SW: apdu.SWOK}
	case 0xB1: // offset in DO'54', data in DO'53' (ISO/IEC 7816-4 §11.3.3)
		v, err := tlv.Unwrap(plain.Data, 0x54)
		if err != nil || len(v) == 0 || len(v) > 3 {
			r = apdu.Status(apdu.SWWrongData)
			break
		}
		off := 0
		for _, b := range v {
			off = off<<8 | int(b)
		}
		if off > len(c.cur) {
			r = apdu.Status(apdu.SWWrongP1P2)
			break
		}
		n := plain.Ne - 2 // the largest DO'53' that fits Ne
		for n > 0 && 1+len(tlv.EncodeLength(n))+n > plain.Ne {
			n--
		}
		part := c.cur[off:min(off+n, len(c.cur))]
		r = apdu.Response{Data: tlv.Encode(0x53, part), SW: apdu.SWOK}
	default:
		r = apdu.Status(apdu.SWINSNotSupported)
	}
	pr, err := c.sess.WrapResponse(r)
	if err != nil {
		return apdu.Status(apdu.SWUnknown).Encode()
	}
	out := pr.Encode()
	if c.tamper {
		out[len(out)-3] ^= 0x01 // last MAC byte
	}
	return out
}

var efCOM = h("60145F0104303130365F36063034303030305C026175")

func newChip(t testing.TB, oid string, param int, secrets CardSecrets, retries int, onPIN func(int)) *chip {
	t.Helper()
	card, err := NewCard(CardOptions{
		Infos:        []PACEInfo{{Protocol: oid, Version: 2, ParameterID: param, HasParameterID: true}},
		Secrets:      secrets,
		PINRetries:   retries,
		OnPINRetries: onPIN,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &chip{pace: card, files: map[uint16][]byte{0x011E: efCOM}}
}

// testSecrets: the MRZ is Appendix G's document.
var testSecrets = CardSecrets{MRZ: "T22000129364081251010318", CAN: "123456", PIN: "654321", PUK: "1234567890"}

func TestRoundTrip(t *testing.T) {
	mrz, _ := MRZPassword(gKey)
	type tc struct {
		oid   string
		param int
		pw    Password
	}
	var cases []tc
	for _, param := range []int{12, 13} {
		for _, oid := range []string{OIDECDHGM3DES, OIDECDHGMAES128} {
			for _, pw := range []Password{CANPassword("123456"), PINPassword("654321"), mrz} {
				cases = append(cases, tc{oid, param, pw})
			}
		}
	}
	// The rest of the table: every other implemented curve and the
	// AES-192/256 suites, with the CAN.
	for _, param := range []int{9, 10, 11, 14, 15, 16, 17, 18} {
		cases = append(cases, tc{OIDECDHGMAES128, param, CANPassword("123456")})
	}
	cases = append(cases, tc{OIDECDHGMAES192, 12, CANPassword("123456")}, tc{OIDECDHGMAES256, 13, PUKPassword("1234567890")})
	// DH Generic Mapping on the three RFC 5114 groups (ids 0–2).
	cases = append(cases, tc{OIDDHGM3DES, 0, CANPassword("123456")}, tc{OIDDHGMAES128, 1, PINPassword("654321")},
		tc{OIDDHGMAES256, 2, mrz}, tc{OIDDHGMAES192, 0, CANPassword("123456")})
	for _, c := range cases {
		p, _ := ProtocolByOID(c.oid)
		t.Run(fmt.Sprintf("%d/%s/%s", c.param, p.Cipher, c.pw.Type), func(t *testing.T) {
			chip := newChip(t, c.oid, c.param, testSecrets, 3, nil)
			// 2048-bit DH public keys (256 bytes) need extended length.
			ch := apdu.NewChannel(chip, apdu.Options{Extended: c.param == 1 || c.param == 2})
			res, err := Establish(context.Background(), ch, c.pw, chip.pace.opts.Infos[0], Options{})
			if err != nil {
				t.Fatal(err)
			}
			ch.SetWrapper(res.Session)
			got, err := ch.ReadFile(context.Background(), 0x011E)
			if err != nil || !bytes.Equal(got, efCOM) {
				t.Fatalf("EF.COM over SM: %X, %v", got, err)
			}
			if res.Session.Cipher() != p.Cipher {
				t.Errorf("session cipher %s", res.Session.Cipher())
			}
		})
	}
}

// The RFC 5114 constants as transcribed: p and q prime, q | p−1, g of
// order q — a typo in any digit breaks one of these.
func TestRFC5114Groups(t *testing.T) {
	for id, bits := range map[int][2]int{0: {1024, 160}, 1: {2048, 224}, 2: {2048, 256}} {
		d, err := StandardizedDomainParameters(id)
		if err != nil {
			t.Fatal(err)
		}
		g := d.group.(*dhGroup)
		one := big.NewInt(1)
		pm1 := new(big.Int).Sub(g.p, one)
		if g.p.BitLen() != bits[0] || g.q.BitLen() != bits[1] || !g.p.ProbablyPrime(20) || !g.q.ProbablyPrime(20) ||
			new(big.Int).Mod(pm1, g.q).Sign() != 0 || new(big.Int).Exp(g.g, g.q, g.p).Cmp(one) != 0 || g.g.Cmp(one) == 0 {
			t.Errorf("group %d (%s) is not as RFC 5114 defines it", id, d.Name)
		}
		// Keys outside the subgroup are refused.
		for _, bad := range [][]byte{{1}, pm1.Bytes(), g.p.Bytes(), {}} {
			if err := g.checkPublic(bad); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("group %d accepted %X...", id, bad[:min(len(bad), 4)])
			}
		}
	}
}

func TestWrongPassword(t *testing.T) {
	ctx := context.Background()
	var persisted []int
	chip := newChip(t, OIDECDHGMAES128, 13, testSecrets, 3, func(n int) { persisted = append(persisted, n) })
	info := chip.pace.opts.Infos[0]
	run := func(pw Password) (*Result, error) {
		return Establish(ctx, apdu.NewChannel(chip, apdu.Options{}), pw, info, Options{})
	}
	var wpe *WrongPasswordError
	_, err := run(CANPassword("111111"))
	if !errors.Is(err, ErrWrongPassword) || !errors.As(err, &wpe) || wpe.RetriesLeft != -1 || wpe.Password != CAN {
		t.Fatalf("wrong CAN: %v", err)
	}
	_, err = run(PINPassword("000000"))
	if !errors.As(err, &wpe) || wpe.RetriesLeft != 2 {
		t.Fatalf("wrong PIN 1: %v", err)
	}
	// A correct PIN now: MSE:Set AT warns 63C2, PACE succeeds, the
	// counter resets.
	res, err := run(PINPassword("654321"))
	if err != nil || res.RetriesLeft != 2 || chip.pace.PINRetries() != 3 {
		t.Fatalf("right PIN: %v, reported %d, counter %d", err, res.RetriesLeft, chip.pace.PINRetries())
	}
	for want := 2; want >= 1; want-- {
		_, err = run(PINPassword("000000"))
		if !errors.As(err, &wpe) || wpe.RetriesLeft != want {
			t.Fatalf("wrong PIN, want %d left: %v", want, err)
		}
	}
	_, err = run(PINPassword("000000"))
	if !errors.Is(err, ErrPINBlocked) || errors.Is(err, ErrWrongPassword) {
		t.Fatalf("last wrong PIN: %v", err)
	}
	_, err = run(PINPassword("654321"))
	if !errors.Is(err, ErrPINBlocked) || !apdu.IsSW(err, apdu.SWAuthMethodBlocked) {
		t.Fatalf("blocked PIN, right value: %v", err)
	}
	if want := []int{2, 3, 2, 1, 0}; fmt.Sprint(persisted) != fmt.Sprint(want) {
		t.Errorf("persisted counters %v, want %v", persisted, want)
	}
	// The CAN still works while the PIN is blocked.
	if _, err := run(CANPassword("123456")); err != nil {
		t.Fatalf("CAN with blocked PIN: %v", err)
	}
	// Unknown password reference / protocol the chip does not offer.
	chip2 := newChip(t, OIDECDHGMAES128, 13, CardSecrets{CAN: "123456"}, 3, nil)
	_, err = Establish(ctx, apdu.NewChannel(chip2, apdu.Options{}), PINPassword("1"), info, Options{})
	if !errors.Is(err, ErrUnsupportedParameters) {
		t.Errorf("no PIN on the chip: %v", err)
	}
	other := PACEInfo{Protocol: OIDECDHGM3DES, Version: 2, ParameterID: 12, HasParameterID: true}
	_, err = Establish(ctx, apdu.NewChannel(chip2, apdu.Options{}), CANPassword("123456"), other, Options{})
	if !errors.Is(err, ErrUnsupportedParameters) {
		t.Errorf("protocol the chip lacks: %v", err)
	}
}

// Large files over secure messaging, short and extended length: chunk
// sizes leave room for the SM overhead (the chip refuses answers longer
// than Ne) and offsets beyond 32767 use READ BINARY B1 with DO'85'.
func TestReadLargeFileOverSM(t *testing.T) {
	dg2 := append([]byte{0x75, 0x82, 0x9C, 0x40}, bytes.Repeat([]byte{0xD2, 0x17, 0x5A}, 40000/3+1)[:40000]...)
	for _, oid := range []string{OIDECDHGM3DES, OIDECDHGMAES128} {
		for _, ext := range []bool{false, true} {
			chip := newChip(t, oid, 12, testSecrets, 3, nil)
			chip.files[0x0102] = dg2
			ch := apdu.NewChannel(chip, apdu.Options{Extended: ext})
			res, err := Establish(context.Background(), ch, CANPassword("123456"), chip.pace.opts.Infos[0], Options{})
			if err != nil {
				t.Fatal(err)
			}
			ch.SetWrapper(res.Session)
			got, err := ch.ReadFile(context.Background(), 0x0102)
			if err != nil || !bytes.Equal(got, dg2) {
				t.Fatalf("%s extended=%v: %d bytes, %v", oid, ext, len(got), err)
			}
			t.Logf("%s extended=%v: %d APDUs, %d bytes in", oid, ext, ch.Stats().APDUs, ch.Stats().BytesIn)
		}
	}
}

func TestTamperedResponseMAC(t *testing.T) {
	chip := newChip(t, OIDECDHGMAES128, 12, testSecrets, 3, nil)
	ch := apdu.NewChannel(chip, apdu.Options{})
	res, err := Establish(context.Background(), ch, CANPassword("123456"), chip.pace.opts.Infos[0], Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch.SetWrapper(res.Session)
	chip.tamper = true
	if _, err := ch.ReadFile(context.Background(), 0x011E); !errors.Is(err, sm.ErrBadMAC) {
		t.Fatalf("err = %v, want ErrBadMAC", err)
	}
}

// A hostile chip must never panic the terminal: invalid points, the point
// at infinity, echoed keys, garbage and bad tokens all end in
// ErrAuthenticationFailed.
func TestHostileChip(t *testing.T) {
	offCurve := h(gPKMapIC)
	offCurve[64] ^= 1
	bigX := append([]byte{0x04}, bytes.Repeat([]byte{0xFF}, 64)...)
	infinity := make([]byte, 65)
	infinity[0] = 0x04
	step := func(n int, f func([]byte) []byte) func(byte, []byte) []byte {
		count := 0
		return func(ins byte, r []byte) []byte {
			if ins == 0x86 {
				count++
				if count == n {
					return f(r)
				}
			}
			return r
		}
	}
	replacePoint := func(tag byte, p []byte) func([]byte) []byte {
		return func([]byte) []byte {
			return append(append([]byte{0x7C, byte(len(p) + 2), tag, byte(len(p))}, p...), 0x90, 0x00)
		}
	}
	cases := map[string]func(byte, []byte) []byte{
		"mapping key off curve":    step(2, replacePoint(0x82, offCurve)),
		"mapping key x ≥ p":        step(2, replacePoint(0x82, bigX)),
		"mapping key infinity":     step(2, replacePoint(0x82, infinity)),
		"mapping key compressed":   step(2, replacePoint(0x82, append([]byte{0x02}, h(gPKMapIC)[1:33]...))),
		"ephemeral key off curve":  step(3, replacePoint(0x84, offCurve)),
		"ephemeral key infinity":   step(3, replacePoint(0x84, infinity)),
		"ephemeral key empty":      step(3, replacePoint(0x84, nil)),
		"bad token":                step(4, func(r []byte) []byte { r[5] ^= 1; return r }),
		"garbage 7C":               step(1, func([]byte) []byte { return h("7C8599009000") }),
		"wrong tag":                step(1, func([]byte) []byte { return h("7C0281009000") }),
		"short nonce":              step(1, func([]byte) []byte { return h("7C0480020102 9000") }),
		"no data":                  step(2, func([]byte) []byte { return h("9000") }),
		"trailing after 7C":        step(4, func(r []byte) []byte { return append(r[:len(r)-2], 0x00, 0x90, 0x00) }),
		"unknown status at step 3": step(3, func([]byte) []byte { return h("6F00") }),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			chip := newChip(t, OIDECDHGMAES128, 13, testSecrets, 3, nil)
			chip.mutate = m
			_, err := Establish(context.Background(), apdu.NewChannel(chip, apdu.Options{}), CANPassword("123456"), chip.pace.opts.Infos[0], Options{})
			if !errors.Is(err, ErrAuthenticationFailed) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// A chip that reflects the terminal's ephemeral key.
	t.Run("echoed ephemeral key", func(t *testing.T) {
		chip := newChip(t, OIDECDHGMAES128, 13, testSecrets, 3, nil)
		rec := &echo{chip: chip}
		_, err := Establish(context.Background(), apdu.NewChannel(rec, apdu.Options{}), CANPassword("123456"), chip.pace.opts.Infos[0], Options{})
		if !errors.Is(err, ErrAuthenticationFailed) || !strings.Contains(err.Error(), "echoed") {
			t.Fatalf("err = %v", err)
		}
	})
}

// echo forwards to the chip but answers step 3 with the terminal's key.
type echo struct{ chip *chip }

func (e *echo) Transmit(ctx context.Context, b []byte) ([]byte, error) {
	out, err := e.chip.Transmit(ctx, b)
	if len(b) > 9 && b[1] == 0x86 && b[7] == 0x83 {
		pk := b[9 : 9+int(b[8])]
		return append(append([]byte{0x7C, byte(len(pk) + 2), 0x84, byte(len(pk))}, pk...), 0x90, 0x00), nil
	}
	return out, err
}

// A hostile terminal must not panic the chip either.
func TestCardRejectsGarbage(t *testing.T) {
	chip := newChip(t, OIDECDHGMAES128, 13, testSecrets, 3, nil)
	c := chip.pace
	if r, s := c.GeneralAuthenticate(apdu.Command{INS: 0x86, Data: h("7C00")}); r.SW != apdu.SWConditionsNotSatisfied || s != nil {
		t.Errorf("GA before MSE: %04X", r.SW)
	}
	for _, data := range []string{"", "80", "800A04007F00070202040202", "830102", "800A04007F0007020204020283010284020D0D"} {
		if r := c.SetAT(apdu.Command{INS: 0x22, P1: 0xC1, P2: 0xA4, Data: h(data)}); r.SW == apdu.SWOK {
			t.Errorf("SetAT(%s) accepted", data)
		}
	}
	ok := h("800A04007F000702020402028301 02")
	if r := c.SetAT(apdu.Command{INS: 0x22, P1: 0xC1, P2: 0xA4, Data: ok}); r.SW != apdu.SWOK {
		t.Fatalf("SetAT: %04X", r.SW)
	}
	if r, _ := c.GeneralAuthenticate(apdu.Command{CLA: 0x10, INS: 0x86, Data: h("7C00")}); r.SW != apdu.SWOK {
		t.Fatalf("step 1: %04X", r.SW)
	}
	bad := append([]byte{0x7C, 0x43, 0x81, 0x41}, h(gPKMapIC)...)
	bad[len(bad)-1] ^= 1
	if r, _ := c.GeneralAuthenticate(apdu.Command{CLA: 0x10, INS: 0x86, Data: bad}); r.SW != apdu.SWWrongData {
		t.Errorf("off-curve mapping key: %04X", r.SW)
	}
	if r, _ := c.GeneralAuthenticate(apdu.Command{CLA: 0x10, INS: 0x86, Data: h("7C00")}); r.SW != apdu.SWConditionsNotSatisfied {
		t.Errorf("after abort: %04X", r.SW)
	}
}

func TestParseCardAccess(t *testing.T) {
	info := gInfo(t)
	if info.Protocol != OIDECDHGMAES128 || info.Version != 2 || !info.HasParameterID || info.ParameterID != 13 {
		t.Errorf("Appendix G PACEInfo %+v", info)
	}
	// Four PACEInfos (GM AES-128 bp256, GM AES-256 bp384, DH-GM 3DES
	// MODP-1024, CAM AES-256 bp384) plus a ChipAuthenticationInfo.
	many := "3164" +
		"3012060A04007F0007020204020202010202010D" +
		"3012060A04007F00070202040204020102020110" +
		"3012060A04007F00070202040101020102020100" +
		"3012060A04007F00070202040604020102020110" +
		"3012060A04007F00070202030204020101020101"
	sec, err := ParseCardAccess(h(many))
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.PACE) != 4 || len(sec.Other) != 1 || sec.Other[0].Protocol != "0.4.0.127.0.7.2.2.3.2.4" {
		t.Fatalf("parsed %+v", sec)
	}
	sel, several, err := sec.Select()
	// The strongest cipher; between GM and CAM on the same parameters,
	// CAM (it proves the chip in the same run).
	if err != nil || !several || sel.Protocol != "0.4.0.127.0.7.2.2.4.6.4" || sel.ParameterID != 16 {
		t.Errorf("Select = %+v %v %v", sel, several, err)
	}
	enc, err := EncodeCardAccess(sec.PACE, sec.Other)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseCardAccess(enc)
	if err != nil || len(again.PACE) != 4 || len(again.Other) != 1 {
		t.Fatalf("re-parse: %+v %v", again, err)
	}
	if enc1, _ := EncodeCardAccess([]PACEInfo{info}, nil); !bytes.Equal(enc1, h(gCardAccess)) {
		t.Errorf("encode Appendix G: %X", enc1)
	}
	// DH Generic Mapping alone is supported now.
	dhOnly, _ := ParseCardAccess(h("3114" + "3012060A04007F00070202040101020102020100"))
	if sel, _, err := dhOnly.Select(); err != nil || sel.Protocol != OIDDHGM3DES {
		t.Errorf("DH only: %+v %v", sel, err)
	}
	// Nothing supported: Integrated Mapping only.
	none, _ := ParseCardAccess(h("3114" + "3012060A04007F0007020204040102010202010D"))
	if _, _, err := none.Select(); !errors.Is(err, ErrUnsupportedParameters) {
		t.Errorf("IM only: %v", err)
	}
	for _, bad := range []string{
		"", "00", "3100" + "00", "3003020102", "31043002" + "0500", "3105300306012A",
		"31083006060A04007F", "3114" + "3012060A04007F0007020204020202010202010D" + "FF",
		"3115" + "3013060A04007F0007020204020202010202010D05",
		"3111" + "300F060A04007F00070202040202040102",
		"3117" + "3015060A04007F0007020204020202010202010D020100",
	} {
		if _, err := ParseCardAccess(h(bad)); !errors.Is(err, ErrMalformedCardAccess) {
			t.Errorf("ParseCardAccess(%s) err = %v", bad, err)
		}
	}
	// An empty SET is valid but offers nothing.
	if sec, err := ParseCardAccess(h("3100")); err != nil || len(sec.PACE) != 0 {
		t.Errorf("empty SET: %+v %v", sec, err)
	}
}

func TestResolve(t *testing.T) {
	cases := []struct {
		info PACEInfo
		ok   bool
	}{
		{PACEInfo{OIDECDHGMAES128, 2, 13, true}, true},
		{PACEInfo{OIDECDHGM3DES, 2, 12, true}, true},
		{PACEInfo{OIDECDHGMAES128, 1, 13, true}, false}, // version
		{PACEInfo{OIDECDHGMAES128, 2, 0, false}, false}, // proprietary parameters
		{PACEInfo{OIDECDHGMAES128, 2, 2, true}, false},  // DH parameters for ECDH
		{PACEInfo{OIDECDHGMAES128, 2, 8, true}, false},  // P-192 not implemented
		{PACEInfo{OIDECDHGMAES128, 2, 31, true}, false}, // unknown id
		{PACEInfo{OIDDHGMAES128, 2, 1, true}, true},     // DH
		{PACEInfo{OIDDHGMAES128, 2, 13, true}, false},   // ECDH parameters for DH
		{PACEInfo{OIDECDHIM3DES, 2, 13, true}, false},   // IM
		{PACEInfo{OIDECDHCAMAES128, 2, 13, true}, true}, // CAM
		{PACEInfo{OIDECDHCAMAES128, 2, 1, true}, false}, // CAM on DH parameters
		{PACEInfo{"0.4.0.127.0.7.2.2.4.2.9", 2, 13, true}, false},
	}
	for _, c := range cases {
		_, _, err := c.info.Resolve()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrUnsupportedParameters)) {
			t.Errorf("Resolve(%+v) = %v", c.info, err)
		}
	}
	p, err := ProtocolByOID(OIDECDHGMAES128)
	if err != nil || p.String() != "id-PACE-ECDH-GM-AES-CBC-CMAC-128" {
		t.Errorf("%v %v", p, err)
	}
}

func FuzzParseCardAccess(f *testing.F) {
	f.Add(h(gCardAccess))
	f.Add(h("3164" +
		"3012060A04007F0007020204020202010202010D" +
		"3012060A04007F00070202040204020102020110" +
		"3012060A04007F00070202040101020102020100" +
		"3012060A04007F00070202040604020102020110" +
		"3012060A04007F00070202030204020101020101"))
	f.Add(h("3100"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sec, err := ParseCardAccess(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedCardAccess) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		_, _, _ = sec.Select()
		for _, pi := range sec.PACE {
			_, _, _ = pi.Resolve()
		}
	})
}

// BenchmarkPACEHandshake measures the terminal's CPU per PACE run: the
// chip's answers are recorded once (fixed keys on both sides make the run
// deterministic) and replayed, so the chip's own work is not counted.
func BenchmarkPACEHandshake(b *testing.B) {
	for _, bc := range []struct {
		name  string
		oid   string
		param int
	}{
		{"P-256/AES-128", OIDECDHGMAES128, 12},
		{"brainpoolP256r1/AES-128", OIDECDHGMAES128, 13},
		{"P-256/3DES", OIDECDHGM3DES, 12},
		{"brainpoolP256r1/3DES", OIDECDHGM3DES, 13},
	} {
		b.Run(bc.name, func(b *testing.B) {
			termRand := h(gSKMapIFD + gSKDHIFD)
			info := PACEInfo{Protocol: bc.oid, Version: 2, ParameterID: bc.param, HasParameterID: true}
			card, err := NewCard(CardOptions{Infos: []PACEInfo{info}, Secrets: testSecrets, Rand: bytes.NewReader(h(gS + gSKMapIC + gSKDHIC))})
			if err != nil {
				b.Fatal(err)
			}
			var answers []string
			ch := apdu.NewChannel(recorder{&chip{pace: card}, &answers}, apdu.Options{})
			if _, err := Establish(context.Background(), ch, CANPassword("123456"), info, Options{Rand: bytes.NewReader(termRand)}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			apdus := 0
			for b.Loop() {
				s := &script{answers: append([]string(nil), answers...)}
				ch := apdu.NewChannel(s, apdu.Options{})
				if _, err := Establish(context.Background(), ch, CANPassword("123456"), info, Options{Rand: bytes.NewReader(termRand)}); err != nil {
					b.Fatal(err)
				}
				apdus = ch.Stats().APDUs
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/handshake")
			b.ReportMetric(float64(apdus), "apdus/handshake")
		})
	}
}
