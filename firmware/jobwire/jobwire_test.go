package jobwire

import (
	"errors"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
)

func signer(t testing.TB, cn string) *txreport.Signer {
	t.Helper()
	k, c, err := devkey.Generate(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := txreport.NewSigner(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ring(t testing.TB, s *txreport.Signer) *txreport.Keyring {
	t.Helper()
	r := txreport.NewKeyring()
	if err := r.Add(s.Certificate()); err != nil {
		t.Fatal(err)
	}
	return r
}

func testJob() Job {
	now := time.Now().UTC().Truncate(time.Second)
	return Job{V: Version, ID: "job-1", Device: "kiosk-1", Kind: KindPing, Doc: `{"lines":3.5}`, Created: now, Expires: now.Add(time.Hour)}
}

func TestSealOpen(t *testing.T) {
	ops, other := signer(t, "hub-ops"), signer(t, "hub-ops")
	b, err := Seal(ops, testJob())
	if err != nil {
		t.Fatal(err)
	}
	j, err := Open(ring(t, ops), b)
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != "job-1" || j.Doc != `{"lines":3.5}` || !j.Expires.Equal(testJob().Expires) {
		t.Fatalf("opened %+v", j)
	}
	if _, err := Open(ring(t, other), b); !errors.Is(err, txreport.ErrUnknownDevice) {
		t.Fatalf("foreign key: %v", err)
	}
	// A body changed after sealing no longer verifies.
	forged := strings.Replace(string(b), `"kind":"ping"`, `"kind":"reboot"`, 1)
	if forged == string(b) {
		t.Fatal("test did not change the body")
	}
	if _, err := Open(ring(t, ops), []byte(forged)); !errors.Is(err, txreport.ErrBadSignature) {
		t.Fatalf("forged: %v", err)
	}
	p, err := Peek([]byte(forged))
	if err != nil || p.Kind != "reboot" || p.ID != "job-1" {
		t.Fatalf("peek %+v %v", p, err)
	}
}

func TestJobCheck(t *testing.T) {
	for name, f := range map[string]func(*Job){
		"version":  func(j *Job) { j.V = 2 },
		"id":       func(j *Job) { j.ID = "a/b" },
		"device":   func(j *Job) { j.Device = "+" },
		"kind":     func(j *Job) { j.Kind = "Reboot!" },
		"doc":      func(j *Job) { j.Doc = strings.Repeat("x", MaxDoc+1) },
		"expiry":   func(j *Job) { j.Expires = j.Created },
		"lifetime": func(j *Job) { j.Expires = j.Created.Add(MaxLifetime + time.Second) },
		"zero":     func(j *Job) { j.Created = time.Time{} },
	} {
		j := testJob()
		f(&j)
		if err := j.Check(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestStatus(t *testing.T) {
	dev, other := signer(t, "kiosk-1"), signer(t, "kiosk-2")
	keys := ring(t, dev)
	if err := keys.Add(other.Certificate()); err != nil {
		t.Fatal(err)
	}
	st := Status{V: Version, JobID: "job-1", Device: "kiosk-1", Status: StatusSucceeded, Result: `{"x":1.5}`, Time: time.Now(), Seq: 3}
	b, err := SealStatus(dev, st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenStatus(keys, "kiosk-1", b)
	if err != nil || got.Seq != 3 || got.Result != st.Result {
		t.Fatalf("%+v %v", got, err)
	}
	// On another kiosk's topic, or signed by another kiosk: refused.
	if _, err := OpenStatus(keys, "kiosk-2", b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("other topic: %v", err)
	}
	b2, err := SealStatus(other, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStatus(keys, "kiosk-1", b2); !errors.Is(err, ErrMalformed) {
		t.Fatalf("signed by another kiosk: %v", err)
	}
	st.Status = StatusCanceled
	if _, err := SealStatus(dev, st); !errors.Is(err, ErrMalformed) {
		t.Fatalf("kiosk reports canceled: %v", err)
	}
}

// FuzzOpen feeds network bytes to the job and status parsers: they must
// never panic, and whatever opens must pass Check.
func FuzzOpen(f *testing.F) {
	ops := signer(f, "hub-ops")
	dev := signer(f, "kiosk-1")
	b, err := Seal(ops, testJob())
	if err != nil {
		f.Fatal(err)
	}
	sb, err := SealStatus(dev, Status{V: Version, JobID: "j", Device: "kiosk-1", Status: StatusQueued, Time: time.Now(), Seq: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(sb)
	f.Add([]byte(`{"body":{"v":1},"alg":"ES256","sig":"","cert":""}`))
	f.Add([]byte(`{}`))
	opsRing, devRing := ring(f, ops), ring(f, dev)
	f.Fuzz(func(t *testing.T, in []byte) {
		if j, err := Open(opsRing, in); err == nil {
			if err := j.Check(); err != nil {
				t.Fatalf("opened a job that fails Check: %v", err)
			}
		}
		_, _ = Peek(in)
		if s, err := OpenStatus(devRing, "kiosk-1", in); err == nil {
			if err := s.Check(); err != nil {
				t.Fatalf("opened a status that fails Check: %v", err)
			}
		}
	})
}
