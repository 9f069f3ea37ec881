package pace

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"kiosk/firmware/emrtd/apdu"
)

func TestPasswordNeverPrinted(t *testing.T) {
	pw := PINPassword("246810")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "pw", pw)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "pw", pw)
	j, _ := json.Marshal(pw)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", pw, pw, pw, pw) + string(j)
	if strings.Contains(out, "246810") {
		t.Fatalf("PIN leaked: %s", out)
	}
}

// Kπ, the nonce, both private keys, K and the session keys are zeroed
// when Establish returns, and the session still works (it holds copies).
func TestSecretsWipedAfterEstablish(t *testing.T) {
	for _, oid := range []string{OIDECDHGMAES128, OIDECDHGM3DES} {
		chip := newChip(t, oid, 13, testSecrets, 3, nil)
		ch := apdu.NewChannel(chip, apdu.Options{})
		var seen *secrets
		res, err := Establish(context.Background(), ch, CANPassword("123456"), chip.pace.opts.Infos[0], Options{wiped: func(s *secrets) { seen = s }})
		if err != nil {
			t.Fatal(err)
		}
		if seen == nil {
			t.Fatal("no secrets seen")
		}
		for name, b := range map[string][]byte{"Kpi": seen.kpi, "nonce": seen.nonce, "SK_map": seen.skMap, "SK_DH": seen.skDH,
			"K": seen.k, "KSenc": seen.ksEnc, "KSmac": seen.ksMac} {
			if len(b) == 0 || !bytes.Equal(b, make([]byte, len(b))) {
				t.Errorf("%s: %s not wiped: %X", oid, name, b)
			}
		}
		ch.SetWrapper(res.Session)
		if got, err := ch.ReadFile(context.Background(), 0x011E); err != nil || !bytes.Equal(got, efCOM) {
			t.Fatalf("EF.COM over SM after the wipe: %X, %v", got, err)
		}
	}
	// A failed run wipes too.
	chip := newChip(t, OIDECDHGMAES128, 13, testSecrets, 3, nil)
	var seen *secrets
	_, err := Establish(context.Background(), apdu.NewChannel(chip, apdu.Options{}), CANPassword("000000"), chip.pace.opts.Infos[0], Options{wiped: func(s *secrets) { seen = s }})
	if err == nil || seen == nil || len(seen.kpi) == 0 || !bytes.Equal(seen.kpi, make([]byte, len(seen.kpi))) {
		t.Fatalf("wrong CAN: err %v, Kpi %X", err, seen)
	}
}
