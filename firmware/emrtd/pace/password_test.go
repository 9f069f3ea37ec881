package pace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
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
