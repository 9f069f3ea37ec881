package ca

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/tlv"
)

// Options for Authenticate.
type Options struct {
	// VerifyFID is the file read under the new keys to prove them (in the
	// currently selected application); 0 means EF.COM.
	VerifyFID uint16
	// Rand supplies the ephemeral key; nil means crypto/rand.
	Rand io.Reader
	// Logger; nil discards.
	Logger *slog.Logger
}

// Result of a successful Chip Authentication.
type Result struct {
	Protocol Protocol
	Key      string // the chip key's curve or group, e.g. BrainpoolP256r1
	KeyID    int    // -1 when DG14 names none
}

// Authenticate runs Chip Authentication on ch, which must carry the
// secure messaging session of the access control (9303-11 §6.2 needs it).
// key is the chip's static public key from DG14 (parsed with package
// pubkey), info its ChipAuthenticationInfo. On success the channel is
// re-keyed with the new session. An error wrapping ErrFailed means the
// chip did not derive the same keys — it does not hold the DG14 private
// key, a cloned chip — and the channel's session is dead; ErrUnsupported
// means the parameters are not implemented; other errors come from the
// reader or the card (status words as *apdu.StatusError).
func Authenticate(ctx context.Context, ch *apdu.Channel, info lds.ChipAuthenticationInfo, key *pubkey.Key, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	fid := opts.VerifyFID
	if fid == 0 {
		fid = lds.FIDCOM
	}
	if ch.Wrapper() == nil {
		return nil, ErrNoSession
	}
	proto, err := ProtocolByOID(info.Protocol)
	if err != nil {
		return nil, err
	}
	res := &Result{Protocol: proto, Key: key.Describe(), KeyID: -1}
	if info.HasKeyID {
		res.KeyID = info.KeyID
	}

	// The ephemeral key pair on the chip key's domain parameters (§6.2.1).
	var ephPub, secret []byte
	switch {
	case proto.KeyAgreement == ECDH && key.EC != nil:
		eph, err := pubkey.GenerateEC(rnd, key.EC.Curve)
		if err != nil {
			return nil, err
		}
		ephPub = eph.Public.Bytes()
		secret, err = ecdhSecret(key.EC.Curve, eph.D, key.EC.Bytes())
		clear(eph.D)
		if err != nil {
			return nil, fmt.Errorf("%w: chip key: %w", ErrUnsupported, err)
		}
	case proto.KeyAgreement == DH && key.DH != nil:
		eph, err := pubkey.GenerateDH(rnd, key.DH.Params)
		if err != nil {
			return nil, err
		}
		ephPub = eph.Public.Y.FillBytes(make([]byte, key.DH.Params.ByteLen()))
		secret, err = dhSecret(key.DH.Params, eph.X, key.DH.Y.FillBytes(make([]byte, key.DH.Params.ByteLen())))
		eph.X.SetInt64(0)
		if err != nil {
			return nil, fmt.Errorf("%w: chip key: %w", ErrUnsupported, err)
		}
	default:
		return nil, fmt.Errorf("%w: %s with a %s key", ErrUnsupported, proto, key.Describe())
	}
	defer clear(secret)

	var keyDO []byte
	if info.HasKeyID {
		keyDO = tlv.Encode(0x84, keyRef(info.KeyID))
	}
	if proto.Cipher.BlockSize() == 8 {
		// §6.2.4.1: MSE:Set KAT.
		cmd := apdu.Command{CLA: 0x00, INS: 0x22, P1: 0x41, P2: 0xA6, Data: tlv.Concat(tlv.Encode(0x91, ephPub), keyDO)}
		if _, err := ch.Do(ctx, cmd); err != nil {
			return nil, fmt.Errorf("ca: MSE:Set KAT: %w", err)
		}
	} else {
		// §6.2.4.2: MSE:Set AT, then General Authenticate.
		cmd := apdu.Command{CLA: 0x00, INS: 0x22, P1: 0x41, P2: 0xA4, Data: tlv.Concat(tlv.Encode(0x80, oidValue(proto.OID)), keyDO)}
		if _, err := ch.Do(ctx, cmd); err != nil {
			return nil, fmt.Errorf("ca: MSE:Set AT: %w", err)
		}
		ga := apdu.Command{CLA: 0x00, INS: 0x86, P1: 0x00, P2: 0x00, Data: tlv.Encode(0x7C, tlv.Encode(0x80, ephPub)), Ne: apdu.MaxShortNe}
		data, err := ch.Do(ctx, ga)
		if err != nil {
			return nil, fmt.Errorf("ca: General Authenticate: %w", err)
		}
		if _, err := tlv.Unwrap(data, 0x7C); err != nil {
			return nil, fmt.Errorf("ca: General Authenticate response: %w", err)
		}
	}

	sess, err := sessionFor(proto.Cipher, secret)
	if err != nil {
		return nil, err
	}
	ch.SetWrapper(sess)
	log.Debug("chip authentication: secure messaging re-keyed", "protocol", proto.String(), "key", res.Key)

	// §6.2.4: the chip is authenticated only if a response protected with
	// the new keys verifies. Read the first bytes of a file.
	if err := ch.SelectEF(ctx, fid); err != nil {
		return nil, verifyErr(err)
	}
	if _, err := ch.ReadBinary(ctx, 0, 4); err != nil {
		return nil, verifyErr(err)
	}
	return res, nil
}

// verifyErr classifies a failure of the first exchange under the new
// keys: a response that does not verify, or a chip that dropped secure
// messaging (it could not check our MAC: 6987/6988), is the clone verdict.
// Reader failures stay what they are.
func verifyErr(err error) error {
	var se *apdu.StatusError
	if errors.As(err, &se) && se.SW != apdu.SWSMDataObjectsMissing && se.SW != apdu.SWSMDataObjectsIncorrect {
		return fmt.Errorf("ca: reading under the new keys: %w", err)
	}
	if se != nil || isSMError(err) {
		return fmt.Errorf("%w: secure messaging under the new keys did not verify: %w", ErrFailed, err)
	}
	return fmt.Errorf("ca: reading under the new keys: %w", err)
}

func isSMError(err error) bool {
	return errors.Is(err, sm.ErrBadMAC) || errors.Is(err, sm.ErrMalformed) || errors.Is(err, sm.ErrMissingDO) ||
		errors.Is(err, sm.ErrBadPadding) || errors.Is(err, sm.ErrSessionFailed)
}
