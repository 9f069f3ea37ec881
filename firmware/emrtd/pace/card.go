package pace

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/smcrypto"
	"kiosk/firmware/emrtd/tlv"
)

// CardSecrets are the chip's passwords; an empty one cannot be used
// (MSE:Set AT answers 6A88).
type CardSecrets struct {
	MRZ string // MRZ information, see bac.Key.MRZInformation
	CAN string
	PIN string
	PUK string
}

// CardOptions configure the chip side.
type CardOptions struct {
	// Infos are the PACEInfos the chip offers (its EF.CardAccess).
	Infos   []PACEInfo
	Secrets CardSecrets
	// PINRetries is the PIN retry counter now (0: blocked);
	// PINMaxRetries its reset value (default 3).
	PINRetries    int
	PINMaxRetries int
	// OnPINRetries is called with the new counter whenever it changes, so
	// the virtual card can persist it. It must not call back into Card.
	OnPINRetries func(left int)
	// Rand supplies the nonce s (block size bytes, first), then the
	// mapping key and the ephemeral key; nil means crypto/rand.
	Rand io.Reader
	// CAMKey is SK_IC, the chip's static (chip authentication) private
	// key on the PACE domain parameters, as a big-endian scalar: needed
	// for a PACEInfo with the Chip Authentication Mapping, whose answer
	// proves it (9303-11 §4.4.3.5.2).
	CAMKey []byte
}

// Card is the chip side of PACE for the virtual card: it answers MSE:Set
// AT (00 22 C1 A4) and General Authenticate (INS 86), both plain, and
// hands out the secure messaging session after the fourth step. Not safe
// for concurrent use.
//
// PIN retry counter semantics (this package owns them; the caller
// persists the counter via OnPINRetries): MSE:Set AT with the PIN answers
// 6983 when the counter is 0 (blocked, PACE refused), 63Cx when x < max
// retries are left (a warning: PACE proceeds), 9000 otherwise. A wrong
// PIN — detected when the terminal's token does not verify — decrements
// the counter and answers 63Cx with the new value (63C0: now blocked); a
// correct PIN resets it to the maximum. Wrong CAN, MRZ or PUK answer 6300
// and count nothing. Real cards suspend the PIN at 1 retry until a PACE
// with the CAN; this chip does not model suspension. The PUK may run PACE
// but unblocking the PIN (RESET RETRY COUNTER) is the caller's command.
type Card struct {
	opts    CardOptions
	maxPIN  int
	rnd     io.Reader
	state   int // 0 idle, 1 set up (MSE done), 2 nonce sent, 3 mapped, 4 keys agreed
	authPwd PasswordType

	// the run in progress
	proto  Protocol
	g      group
	oid    []byte
	pwType PasswordType
	s      []byte
	skMap  []byte
	pkMap  []byte
	gen    []byte
	pkIFD  []byte
	pkIC   []byte
	ksEnc  []byte
	ksMac  []byte
}

// NewCard returns the chip side. At least one supported PACEInfo is needed.
func NewCard(opts CardOptions) (*Card, error) {
	if len(opts.Infos) == 0 {
		return nil, fmt.Errorf("%w: the chip offers no PACEInfo", ErrUnsupportedParameters)
	}
	for _, pi := range opts.Infos {
		if _, _, err := pi.Resolve(); err != nil {
			return nil, err
		}
	}
	c := &Card{opts: opts, maxPIN: opts.PINMaxRetries, rnd: opts.Rand}
	if c.maxPIN <= 0 {
		c.maxPIN = 3
	}
	if c.rnd == nil {
		c.rnd = rand.Reader
	}
	return c, nil
}

// PINRetries returns the PIN retry counter.
func (c *Card) PINRetries() int { return c.opts.PINRetries }

// SetPINRetries sets the counter (e.g. after RESET RETRY COUNTER with
// the PUK).
func (c *Card) SetPINRetries(n int) { c.setPIN(n) }

// Authenticated returns the password of the last successful PACE run.
func (c *Card) Authenticated() (PasswordType, bool) { return c.authPwd, c.authPwd != 0 }

// Reset aborts any run in progress and forgets the authentication state
// (card reset, or the terminal started over).
func (c *Card) Reset() {
	c.abort()
	c.authPwd = 0
}

func (c *Card) abort() {
	for _, b := range [][]byte{c.s, c.skMap, c.ksEnc, c.ksMac} {
		clear(b)
	}
	*c = Card{opts: c.opts, maxPIN: c.maxPIN, rnd: c.rnd, authPwd: c.authPwd}
}

func (c *Card) setPIN(n int) {
	if n == c.opts.PINRetries {
		return
	}
	c.opts.PINRetries = n
	if c.opts.OnPINRetries != nil {
		c.opts.OnPINRetries(n)
	}
}

func (c *Card) secret(t PasswordType) string {
	switch t {
	case MRZ:
		return c.opts.Secrets.MRZ
	case CAN:
		return c.opts.Secrets.CAN
	case PIN:
		return c.opts.Secrets.PIN
	case PUK:
		return c.opts.Secrets.PUK
	}
	return ""
}

// SetAT answers MSE:Set AT for PACE (00 22 C1 A4, 9303-11 §4.4.4.1).
func (c *Card) SetAT(cmd apdu.Command) apdu.Response {
	c.abort()
	c.authPwd = 0
	if cmd.P1 != 0xC1 || cmd.P2 != 0xA4 {
		return apdu.Status(apdu.SWIncorrectP1P2)
	}
	objs, err := tlv.ParseAll(cmd.Data)
	if err != nil {
		return apdu.Status(apdu.SWWrongData)
	}
	oidDO, ok1 := tlv.Find(objs, 0x80)
	pwDO, ok2 := tlv.Find(objs, 0x83)
	if !ok1 || !ok2 || len(pwDO.Value) != 1 {
		return apdu.Status(apdu.SWWrongData)
	}
	paramID := -1
	if d, ok := tlv.Find(objs, 0x84); ok {
		if len(d.Value) != 1 {
			return apdu.Status(apdu.SWWrongData)
		}
		paramID = int(d.Value[0])
	}
	var chosen *PACEInfo
	for i, pi := range c.opts.Infos {
		p, err := ProtocolByOID(pi.Protocol)
		if err != nil {
			continue
		}
		v, err := p.oidValue()
		if err != nil || subtle.ConstantTimeCompare(v, oidDO.Value) != 1 {
			continue
		}
		if paramID >= 0 && pi.ParameterID != paramID {
			continue
		}
		chosen = &c.opts.Infos[i]
		break
	}
	if chosen == nil {
		return apdu.Status(apdu.SWReferencedDataNotFound)
	}
	pwType := PasswordType(pwDO.Value[0])
	if c.secret(pwType) == "" {
		return apdu.Status(apdu.SWReferencedDataNotFound)
	}
	sw := apdu.SWOK
	if pwType == PIN {
		switch n := c.opts.PINRetries; {
		case n <= 0:
			return apdu.Status(apdu.SWAuthMethodBlocked)
		case n < c.maxPIN:
			sw = 0x63C0 | uint16(min(n, 15))
		}
	}
	proto, params, err := chosen.Resolve()
	if err != nil {
		return apdu.Status(apdu.SWReferencedDataNotFound)
	}
	if proto.Mapping == ChipAuthenticationMapping && len(c.opts.CAMKey) == 0 {
		return apdu.Status(apdu.SWReferencedDataNotFound)
	}
	oid, _ := proto.oidValue()
	c.proto, c.g, c.oid, c.pwType, c.state = proto, params.group, oid, pwType, 1
	return apdu.Status(sw)
}

// GeneralAuthenticate answers the four General Authenticate steps
// (9303-11 §4.4.4.2). After a successful fourth step it returns the
// secure messaging session the card must use from the next command on.
// Any error aborts the run (a new MSE:Set AT is needed).
func (c *Card) GeneralAuthenticate(cmd apdu.Command) (apdu.Response, *sm.Session) {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		c.abort()
		return apdu.Status(apdu.SWIncorrectP1P2), nil
	}
	if c.state == 0 {
		return apdu.Status(apdu.SWConditionsNotSatisfied), nil
	}
	dyn, err := tlv.Unwrap(cmd.Data, 0x7C)
	if err != nil {
		c.abort()
		return apdu.Status(apdu.SWWrongData), nil
	}
	objs, err := tlv.ParseAll(dyn)
	if err != nil {
		c.abort()
		return apdu.Status(apdu.SWWrongData), nil
	}
	var r apdu.Response
	var sess *sm.Session
	switch c.state {
	case 1:
		r, err = c.stepNonce(objs)
	case 2:
		r, err = c.stepMap(objs)
	case 3:
		r, err = c.stepAgree(objs)
	case 4:
		r, sess = c.stepMutual(objs)
		return r, sess
	}
	if err != nil {
		c.abort()
		return apdu.Status(apdu.SWWrongData), nil
	}
	return r, nil
}

func dynamic(do []byte) apdu.Response {
	return apdu.Response{Data: tlv.Encode(0x7C, do), SW: apdu.SWOK}
}

// stepNonce: z = E(Kπ, s) with a random s (§4.4.3.2).
func (c *Card) stepNonce(objs []tlv.Object) (apdu.Response, error) {
	if len(objs) != 0 {
		return apdu.Response{}, fmt.Errorf("step 1 carries data")
	}
	kpi, err := Password{Type: c.pwType, Secret: c.secret(c.pwType)}.key(c.proto.Cipher)
	if err != nil {
		return apdu.Response{}, err
	}
	c.s = make([]byte, c.proto.Cipher.BlockSize())
	if _, err := io.ReadFull(c.rnd, c.s); err != nil {
		return apdu.Response{}, err
	}
	z, err := smcrypto.EncryptCBC(c.proto.Cipher, kpi, nil, c.s)
	if err != nil {
		return apdu.Response{}, err
	}
	c.state = 2
	return dynamic(tlv.Encode(0x80, z)), nil
}

// stepMap: the chip's mapping key and G' = s·G + SK_map_IC·PK_map_IFD.
func (c *Card) stepMap(objs []tlv.Object) (apdu.Response, error) {
	o, ok := tlv.Find(objs, 0x81)
	if !ok {
		return apdu.Response{}, fmt.Errorf("no DO'81'")
	}
	if err := c.g.checkPublic(o.Value); err != nil {
		return apdu.Response{}, err
	}
	sk, pk, err := c.g.generateKey(c.rnd, nil)
	if err != nil {
		return apdu.Response{}, err
	}
	if c.gen, err = c.g.mapGenerator(c.s, sk, o.Value); err != nil {
		return apdu.Response{}, err
	}
	c.skMap, c.pkMap, c.state = sk, pk, 3
	return dynamic(tlv.Encode(0x82, pk)), nil
}

// stepAgree: the chip's ephemeral key on G' and the session keys.
func (c *Card) stepAgree(objs []tlv.Object) (apdu.Response, error) {
	o, ok := tlv.Find(objs, 0x83)
	if !ok {
		return apdu.Response{}, fmt.Errorf("no DO'83'")
	}
	if err := c.g.checkPublic(o.Value); err != nil {
		return apdu.Response{}, err
	}
	sk, pk, err := c.g.generateKey(c.rnd, c.gen)
	if err != nil {
		return apdu.Response{}, err
	}
	if subtle.ConstantTimeCompare(pk, o.Value) == 1 {
		return apdu.Response{}, fmt.Errorf("terminal key equals the chip's")
	}
	k, err := c.g.sharedSecret(sk, o.Value)
	if err != nil {
		return apdu.Response{}, err
	}
	clear(sk)
	if c.ksEnc, c.ksMac, err = smcrypto.SessionKeys(c.proto.Cipher, k); err != nil {
		return apdu.Response{}, err
	}
	c.pkIFD, c.pkIC, c.state = append([]byte(nil), o.Value...), pk, 4
	return dynamic(tlv.Encode(0x84, pk)), nil
}

// stepMutual verifies T_IFD; this is where a wrong password shows.
func (c *Card) stepMutual(objs []tlv.Object) (apdu.Response, *sm.Session) {
	defer c.abort()
	o, ok := tlv.Find(objs, 0x85)
	if !ok {
		return apdu.Status(apdu.SWWrongData), nil
	}
	want, err := authToken(c.proto.Cipher, c.ksMac, tokenInput(c.oid, c.g, c.pkIC))
	if err != nil {
		return apdu.Status(apdu.SWUnknown), nil
	}
	if subtle.ConstantTimeCompare(want, o.Value) != 1 {
		if c.pwType == PIN {
			left := max(c.opts.PINRetries-1, 0)
			c.setPIN(left)
			return apdu.Status(0x63C0 | uint16(min(left, 15))), nil
		}
		return apdu.Status(apdu.SWVerificationFailed), nil
	}
	tIC, err := authToken(c.proto.Cipher, c.ksMac, tokenInput(c.oid, c.g, c.pkIFD))
	if err != nil {
		return apdu.Status(apdu.SWUnknown), nil
	}
	sess, err := sm.New(c.proto.Cipher, c.ksEnc, c.ksMac, nil)
	if err != nil {
		return apdu.Status(apdu.SWUnknown), nil
	}
	if c.pwType == PIN {
		c.setPIN(c.maxPIN)
	}
	do := tlv.Encode(0x86, tIC)
	if c.proto.Mapping == ChipAuthenticationMapping {
		eg, ok := c.g.(*ecGroup)
		if !ok {
			return apdu.Status(apdu.SWUnknown), nil
		}
		caIC, err := camScalar(eg, c.opts.CAMKey, c.skMap)
		if err != nil {
			return apdu.Status(apdu.SWUnknown), nil
		}
		aIC, err := encryptCAM(c.proto.Cipher, c.ksEnc, caIC)
		clear(caIC)
		if err != nil {
			return apdu.Status(apdu.SWUnknown), nil
		}
		do = append(do, tlv.Encode(0x8A, aIC)...)
	}
	pw := c.pwType
	defer func() { c.authPwd = pw }()
	return dynamic(do), sess
}
