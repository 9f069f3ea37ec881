package ctl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb, "test")
	return code, out.String(), errb.String()
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join("..", "config", "sim.toml")
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[camera]\nfsp = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := run("config", "check", good); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("good config: code %d out %q err %q", code, out, errs)
	}
	code, _, errs := run("config", "check", bad)
	if code != ExitUsage || !strings.Contains(errs, "camera.fsp: unknown key") {
		t.Fatalf("bad config: code %d err %q", code, errs)
	}
	if code, _, _ := run("config", "check", filepath.Join(dir, "missing.toml")); code != ExitUsage {
		t.Fatalf("missing file: code %d", code)
	}
	if code, _, _ := run("config", "check"); code != ExitUsage {
		t.Fatalf("no file: code %d", code)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, errs := run("frobnicate"); code != ExitUsage || !strings.Contains(errs, "unknown command") {
		t.Fatalf("code %d err %q", code, errs)
	}
	if code, _, errs := run(); code != ExitOK || !strings.Contains(errs, "config check FILE") {
		t.Fatalf("usage: code %d err %q", code, errs)
	}
}

func TestStaffAdd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "staff")
	runIn := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(args, strings.NewReader(stdin), &out, &errb, "test")
		return code, out.String(), errb.String()
	}
	if code, out, errs := runIn("246810\n", "staff", "add", "--file", file, "--name", "anna"); code != ExitOK || !strings.Contains(out, "anna") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, _, errs := runIn("1234\n", "staff", "add", "--file", file, "--name", "ben"); code != ExitUsage || !strings.Contains(errs, "6 to 12 digits") {
		t.Fatalf("short PIN: %d %q", code, errs)
	}
	if code, _, errs := runIn("246810\n", "staff", "add", "--file", file, "--name", "ben"); code != ExitUsage || !strings.Contains(errs, "taken") {
		t.Fatalf("taken PIN: %d %q", code, errs)
	}
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), "246810") {
		t.Fatal("the PIN is in the file")
	}
}
