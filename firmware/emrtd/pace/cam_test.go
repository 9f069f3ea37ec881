package pace

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/tlv"
)

// camChip is a PACE-CAM chip whose static key is skIC, on parameters param.
func camChip(t *testing.T, oid string, param int, skIC []byte) *chip {
	t.Helper()
	card, err := NewCard(CardOptions{
		Infos:   []PACEInfo{{Protocol: oid, Version: 2, ParameterID: param, HasParameterID: true}},
		Secrets: testSecrets, PINRetries: 3, CAMKey: skIC,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &chip{pace: card, files: map[uint16][]byte{0x011E: efCOM}}
}

func staticKey(t *testing.T, param int) (sk, pk []byte) {
	t.Helper()
	d, err := StandardizedDomainParameters(param)
	if err != nil {
		t.Fatal(err)
	}
	sk, pk, err = d.group.generateKey(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sk, pk
}

// PACE-CAM between the terminal and the chip side: secure messaging works
// as after GM, and the chip's CA_IC proves its static key — only that key.
func TestCAMRoundTrip(t *testing.T) {
	for _, param := range []int{12, 13} {
		for _, oid := range []string{OIDECDHCAMAES128, "0.4.0.127.0.7.2.2.4.6.4"} {
			sk, pk := staticKey(t, param)
			c := camChip(t, oid, param, sk)
			ch := apdu.NewChannel(c, apdu.Options{})
			res, err := Establish(context.Background(), ch, CANPassword("123456"), c.pace.opts.Infos[0], Options{})
			if err != nil {
				t.Fatalf("%d %s: %v", param, oid, err)
			}
			ch.SetWrapper(res.Session)
			if got, err := ch.ReadFile(context.Background(), 0x011E); err != nil || !bytes.Equal(got, efCOM) {
				t.Fatalf("EF.COM over SM: %X, %v", got, err)
			}
			if res.CAM == nil {
				t.Fatal("no CAM data")
			}
			if err := res.CAM.Verify(pk); err != nil {
				t.Fatalf("%d %s: the chip's own key: %v", param, oid, err)
			}
			_, other := staticKey(t, param)
			if err := res.CAM.Verify(other); !errors.Is(err, ErrCAMFailed) {
				t.Fatalf("another static key: %v", err)
			}
			if err := res.CAM.Verify(pk[:len(pk)-1]); !errors.Is(err, ErrCAMFailed) {
				t.Fatalf("a malformed static key: %v", err)
			}
			res.CAM.Wipe()
			if !bytes.Equal(res.CAM.CAIC, make([]byte, len(res.CAM.CAIC))) {
				t.Fatal("CA_IC not wiped")
			}
		}
	}
}

// A GM run yields no CAM data; a chip that does CAM without its static
// key refuses MSE:Set AT.
func TestCAMOnlyWithCAM(t *testing.T) {
	c := newChip(t, OIDECDHGMAES128, 13, testSecrets, 3, nil)
	res, err := Establish(context.Background(), apdu.NewChannel(c, apdu.Options{}), CANPassword("123456"), c.pace.opts.Infos[0], Options{})
	if err != nil || res.CAM != nil {
		t.Fatalf("GM: %v, CAM %v", err, res.CAM)
	}
	nokey := camChip(t, OIDECDHCAMAES128, 13, nil)
	_, err = Establish(context.Background(), apdu.NewChannel(nokey, apdu.Options{}), CANPassword("123456"), nokey.pace.opts.Infos[0], Options{})
	if err == nil {
		t.Fatal("CAM without a static key ran")
	}
}

// A chip whose step-4 answer lacks DO'8A', or carries it altered, does not
// pass as CAM.
func TestCAMHostile(t *testing.T) {
	sk, pk := staticKey(t, 13)
	for name, mutate := range map[string]func([]byte) []byte{
		"no 8A": func(v []byte) []byte {
			objs, _ := tlv.ParseAll(v)
			o, _ := tlv.Find(objs, 0x86)
			return tlv.Encode(0x86, o.Value)
		},
		"8A altered": func(v []byte) []byte {
			v = append([]byte(nil), v...)
			v[len(v)-1] ^= 0x01 // last byte of A_IC: garbles the last block
			return v
		},
		"8A first block altered": func(v []byte) []byte {
			objs, _ := tlv.ParseAll(v)
			o86, _ := tlv.Find(objs, 0x86)
			o8A, _ := tlv.Find(objs, 0x8A)
			a := append([]byte(nil), o8A.Value...)
			a[0] ^= 0x80
			return tlv.Concat(tlv.Encode(0x86, o86.Value), tlv.Encode(0x8A, a))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := camChip(t, OIDECDHCAMAES128, 13, sk)
			step := 0
			c.mutate = func(ins byte, resp []byte) []byte {
				if ins != 0x86 {
					return resp
				}
				if step++; step != 4 || len(resp) < 2 {
					return resp
				}
				dyn, err := tlv.Unwrap(resp[:len(resp)-2], 0x7C)
				if err != nil {
					t.Fatal(err)
				}
				return append(tlv.Encode(0x7C, mutate(dyn)), 0x90, 0x00)
			}
			res, err := Establish(context.Background(), apdu.NewChannel(c, apdu.Options{}), CANPassword("123456"), c.pace.opts.Infos[0], Options{})
			if err == nil {
				err = res.CAM.Verify(pk)
			}
			if !errors.Is(err, ErrCAMFailed) {
				t.Fatalf("got %v, want ErrCAMFailed", err)
			}
		})
	}
}
