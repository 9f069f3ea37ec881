package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestFormatSelection(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		format string
		env    map[string]string
		json   bool
	}{
		{"auto", nil, false},
		{"auto", map[string]string{"JOURNAL_STREAM": "8:123"}, true},
		{"auto", map[string]string{"INVOCATION_ID": "abc"}, true},
		{"text", map[string]string{"JOURNAL_STREAM": "8:123"}, false},
		{"json", nil, true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		New(&buf, "info", tt.format, env(tt.env)).Info("hello", "k", 1)
		isJSON := json.Valid(bytes.TrimSpace(buf.Bytes()))
		if isJSON != tt.json {
			t.Errorf("format %s env %v: got %q", tt.format, tt.env, buf.String())
		}
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, "warn", "text", nil)
	l.Info("quiet")
	l.Warn("loud")
	if strings.Contains(buf.String(), "quiet") || !strings.Contains(buf.String(), "loud") {
		t.Fatalf("level not applied: %q", buf.String())
	}
}
