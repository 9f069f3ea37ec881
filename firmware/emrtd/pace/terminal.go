package pace

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/smcrypto"
	"kiosk/firmware/emrtd/tlv"
)

// Options for Establish.
type Options struct {
	// SendParameterID puts DO'84' (the domain parameter id) into MSE:Set
	// AT; required when the chip offers several PACEInfos (9303-11
	// §4.4.4.1), see SecurityInfos.Select.
	SendParameterID bool
	// Rand supplies the terminal's private keys (mapping key first, then
	// the ephemeral key); nil means crypto/rand. Tests pin it to replay
	// Appendix G.
	Rand io.Reader
	// Logger; nil discards.
	Logger *slog.Logger

	// wiped, set by tests only, sees the run's secrets after they were
	// cleared.
	wiped func(*secrets)
}

// secrets are the values of one PACE run that must not outlive it
// (BSI TR-03110-1 §A.4 / 9303-11 §4.4: whoever learns Kπ, the nonce s, a
// private key or K can decrypt or impersonate the session): Kπ, s, the
// terminal's mapping and ephemeral private keys, the shared secret K and
// the session keys (the secure messaging session keeps its own copies).
type secrets struct {
	kpi, nonce, skMap, skDH, k, ksEnc, ksMac []byte
}

func (s *secrets) wipe() {
	for _, b := range [][]byte{s.kpi, s.nonce, s.skMap, s.skDH, s.k, s.ksEnc, s.ksMac} {
		clear(b)
	}
}

// Result of a successful PACE run.
type Result struct {
	// Session is the secure messaging session (SSC 0); install it with
	// ch.SetWrapper.
	Session     *sm.Session
	Protocol    Protocol
	Parameters  DomainParameters
	Password    PasswordType
	RetriesLeft int // the PIN counter reported by MSE:Set AT (63Cx), -1 if none
	// ChipPublicKey is PK_DH_IC, the chip's ephemeral public key (its
	// x-coordinate is ID_IC for Terminal Authentication).
	ChipPublicKey []byte
	// CAM is set after a Chip Authentication Mapping run: the chip's
	// decrypted CA_IC and mapping key, to be checked against the static
	// key of EF.CardSecurity (CAMData.Verify) before the chip counts as
	// authenticated.
	CAM *CAMData
}

// Establish runs PACE (9303-11 §4.4) on ch, which must be plain (no
// wrapper installed): MSE:Set AT, then General Authenticate for the
// encrypted nonce, the mapping, the key agreement and the mutual
// authentication. Errors: *WrongPasswordError (errors.Is ErrWrongPassword),
// ErrPINBlocked, ErrPasswordDeactivated, ErrUnsupportedParameters,
// ErrAuthenticationFailed; transport errors are wrapped as they are.
func Establish(ctx context.Context, ch *apdu.Channel, pw Password, info PACEInfo, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	proto, params, err := info.Resolve()
	if err != nil {
		return nil, err
	}
	g := params.group
	oid, err := proto.oidValue()
	if err != nil {
		return nil, err
	}
	sec := &secrets{}
	defer func() {
		sec.wipe()
		if opts.wiped != nil {
			opts.wiped(sec)
		}
	}()
	if sec.kpi, err = pw.key(proto.Cipher); err != nil {
		return nil, err
	}
	res := &Result{Protocol: proto, Parameters: params, Password: pw.Type, RetriesLeft: -1}

	// §4.4.4.1 MSE:Set AT: 00 22 C1 A4 {80 OID, 83 password ref, [84 id]}.
	data := tlv.Concat(tlv.Encode(0x80, oid), tlv.Encode(0x83, []byte{byte(pw.Type)}))
	if opts.SendParameterID {
		data = append(data, tlv.Encode(0x84, []byte{byte(params.ID)})...)
	}
	resp, err := ch.Transmit(ctx, apdu.Command{CLA: 0x00, INS: 0x22, P1: 0xC1, P2: 0xA4, Data: data})
	if err != nil {
		return nil, fmt.Errorf("pace: MSE:Set AT: %w", err)
	}
	if n, ok := apdu.RetriesLeft(resp.SW); ok && n > 0 {
		// A warning: the PIN has n retries left (n = 1 means suspended on
		// real cards: CAN first); the protocol continues.
		res.RetriesLeft = n
	} else if resp.SW != apdu.SWOK {
		return nil, statusError("pace: MSE:Set AT", pw.Type, resp.SW)
	}

	// §4.4.4.2 step 1: encrypted nonce. s = D(Kπ, z), CBC with zero IV.
	z, err := generalAuthenticate(ctx, ch, pw.Type, 1, nil, 0x80)
	if err != nil {
		return nil, err
	}
	if len(z) != proto.Cipher.BlockSize() {
		return nil, fmt.Errorf("pace: %w: encrypted nonce of %d bytes", ErrAuthenticationFailed, len(z))
	}
	if sec.nonce, err = smcrypto.DecryptCBC(proto.Cipher, sec.kpi, nil, z); err != nil {
		return nil, err
	}

	// Step 2: mapping (GM, §4.4.3.3.1).
	var pkMap []byte
	if sec.skMap, pkMap, err = g.generateKey(rnd, nil); err != nil {
		return nil, err
	}
	pkMapIC, err := generalAuthenticate(ctx, ch, pw.Type, 2, tlv.Encode(0x81, pkMap), 0x82)
	if err != nil {
		return nil, err
	}
	gen, err := g.mapGenerator(sec.nonce, sec.skMap, pkMapIC)
	if err != nil {
		return nil, fmt.Errorf("pace: mapping: %w: %w", ErrAuthenticationFailed, err)
	}

	// Step 3: key agreement on the mapped generator (§4.4.3.4).
	var pkDH []byte
	if sec.skDH, pkDH, err = g.generateKey(rnd, gen); err != nil {
		return nil, err
	}
	pkDHIC, err := generalAuthenticate(ctx, ch, pw.Type, 3, tlv.Encode(0x83, pkDH), 0x84)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(pkDHIC, pkDH) == 1 {
		// §4.4.3.4: the terminal SHALL check PK_DH_IC ≠ PK_DH_IFD (reflection).
		return nil, fmt.Errorf("pace: %w: chip echoed the terminal's public key", ErrAuthenticationFailed)
	}
	if sec.k, err = g.sharedSecret(sec.skDH, pkDHIC); err != nil {
		return nil, fmt.Errorf("pace: key agreement: %w: %w", ErrAuthenticationFailed, err)
	}
	if sec.ksEnc, sec.ksMac, err = smcrypto.SessionKeys(proto.Cipher, sec.k); err != nil {
		return nil, err
	}

	// Step 4: mutual authentication (§4.4.3.5): T_IFD over PK_DH_IC,
	// T_IC over PK_DH_IFD.
	tIFD, err := authToken(proto.Cipher, sec.ksMac, tokenInput(oid, g, pkDHIC))
	if err != nil {
		return nil, err
	}
	step4, err := generalAuthenticateObjs(ctx, ch, pw.Type, 4, tlv.Encode(0x85, tIFD))
	if err != nil {
		return nil, err
	}
	tIC, err := findDO(step4, 4, 0x86)
	if err != nil {
		return nil, err
	}
	want, err := authToken(proto.Cipher, sec.ksMac, tokenInput(oid, g, pkDH))
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(tIC, want) != 1 {
		return nil, fmt.Errorf("pace: %w: chip token T_IC does not verify", ErrAuthenticationFailed)
	}
	if proto.Mapping == ChipAuthenticationMapping {
		// §4.4.3.5.2: a CAM chip adds its Encrypted Chip Authentication Data.
		aIC, err := findDO(step4, 4, 0x8A)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCAMFailed, err)
		}
		caIC, err := decryptCAM(proto.Cipher, sec.ksEnc, aIC)
		if err != nil {
			return nil, err
		}
		eg, _ := g.(*ecGroup) // CAM is ECDH only (Protocol.Supported)
		res.CAM = &CAMData{CAIC: caIC, PKMapIC: pkMapIC, g: eg}
	}
	if res.Session, err = sm.New(proto.Cipher, sec.ksEnc, sec.ksMac, nil); err != nil {
		return nil, err
	}
	res.ChipPublicKey = pkDHIC
	log.Debug("pace established", "protocol", proto.String(), "parameters", params.Name, "password", pw.Type.String())
	return res, nil
}

// authToken computes an authentication token T = MAC(KSmac, PK data
// object) (9303-11 §4.4.3.5.1): the retail MAC over the ISO/IEC 9797-1
// method 2 padded input for 3DES; for AES the CMAC of the unpadded input
// (CMAC pads internally — unlike the secure messaging MAC, which pads
// first), truncated to 8 bytes. Appendix G pins this down.
func authToken(c smcrypto.Cipher, ksMac, input []byte) ([]byte, error) {
	if c == smcrypto.TDES {
		return smcrypto.MAC(c, ksMac, smcrypto.Pad(input, c.BlockSize()))
	}
	b, err := smcrypto.NewBlock(c, ksMac)
	if err != nil {
		return nil, err
	}
	return smcrypto.CMAC(b, input)[:8], nil
}

// generalAuthenticate sends one General Authenticate (§4.4.4.2):
// 10/00 86 00 00 {7C {do}} Le 00 — command chaining (CLA 10) on steps 1–3
// — and returns the value of the expected DO inside the answer's '7C'.
func generalAuthenticate(ctx context.Context, ch *apdu.Channel, pw PasswordType, step int, do []byte, want tlv.Tag) ([]byte, error) {
	objs, err := generalAuthenticateObjs(ctx, ch, pw, step, do)
	if err != nil {
		return nil, err
	}
	return findDO(objs, step, want)
}

// findDO returns the non-empty value of DO want from a step's answer.
func findDO(objs []tlv.Object, step int, want tlv.Tag) ([]byte, error) {
	o, ok := tlv.Find(objs, want)
	if !ok || len(o.Value) == 0 {
		return nil, fmt.Errorf("pace: general authenticate step %d: %w: no DO'%s' in the answer", step, ErrAuthenticationFailed, want)
	}
	return o.Value, nil
}

// generalAuthenticateObjs sends one General Authenticate and returns the
// data objects inside the answer's '7C'.
func generalAuthenticateObjs(ctx context.Context, ch *apdu.Channel, pw PasswordType, step int, do []byte) ([]tlv.Object, error) {
	cla := byte(0x10)
	if step == 4 {
		cla = 0x00
	}
	name := fmt.Sprintf("pace: general authenticate step %d", step)
	ne := apdu.MaxShortNe
	if ch.Extended() && len(do) > apdu.MaxShortNe-8 {
		// A 2048-bit DH public key (steps 2 and 3) makes the chip's
		// answer as long as ours: more than 256 bytes.
		ne = apdu.MaxExtendedNe
	}
	resp, err := ch.Transmit(ctx, apdu.Command{CLA: cla, INS: 0x86, Data: tlv.Encode(0x7C, do), Ne: ne})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if resp.SW != apdu.SWOK {
		return nil, statusError(name, pw, resp.SW)
	}
	dyn, err := tlv.Unwrap(resp.Data, 0x7C)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrAuthenticationFailed, err)
	}
	objs, err := tlv.ParseAll(dyn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrAuthenticationFailed, err)
	}
	return objs, nil
}
