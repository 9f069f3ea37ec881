package emrtd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"kiosk/firmware/emrtd/bac"
)

// No password type leaks a digit: through the JSON log handler (the
// kiosk's production format), the text handler, every format verb and
// JSON encoding, a CAN, a PIN and the MRZ fields all show as the kind
// only.
func TestPasswordNeverLogged(t *testing.T) {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	for _, pw := range []Password{
		{Kind: CAN, Secret: "493715"},
		{Kind: PIN, Secret: "2468"},
		{Kind: MRZ, MRZ: bac.Key{DocumentNumber: "T22000129", DateOfBirth: "640812", DateOfExpiry: "351031"}},
	} {
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: noTime})).Info("read", "pw", pw, "mrz", pw.MRZ)
		slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: noTime})).Info("read", "pw", pw)
		j, err := json.Marshal(pw)
		if err != nil {
			t.Fatal(err)
		}
		out := buf.String() + fmt.Sprintf("%v %+v %#v %s %#v", pw, pw, pw, pw, pw.MRZ) + string(j)
		if strings.ContainsAny(out, "0123456789") {
			t.Fatalf("%s password leaked a digit: %s", pw.Kind, out)
		}
		if !strings.Contains(out, string(pw.Kind)) {
			t.Fatalf("the kind is not shown: %s", out)
		}
	}
}
