package session

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
)

// docChip returns documents of any driver, one per read (the last
// repeats).
type docChip struct {
	mu   sync.Mutex
	docs []document.Document
	pins []string
}

func (c *docChip) Read(_ context.Context, pw emrtd.Password) (document.Document, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pins = append(c.pins, pw.Secret)
	d := c.docs[0]
	if len(c.docs) > 1 {
		c.docs = c.docs[1:]
	}
	return d, nil
}

func bankDoc(failures ...string) *document.BankEID {
	r := &bankeid.Report{Document: "bankeid", Profile: bankeid.Profile, Passed: len(failures) == 0, Failures: failures,
		Checks: []bankeid.Check{{Name: "pin", OK: len(failures) == 0}}}
	if len(failures) == 0 {
		r.Identity = &bankeid.Identity{Number: "EID-3301-0001", Name: "ZHANG SAN", Authority: "Test eID Authority"}
		r.Evidence = &bankeid.Evidence{Profile: bankeid.Profile, Algorithm: "SM2-SM3", Challenge: []byte{1}, Signature: []byte{2}, Certificate: []byte{3}}
	} else {
		two := 2
		r.PINRetriesLeft = &two
	}
	return &document.BankEID{R: r}
}

type fakeRefs struct {
	ref    []byte
	err    error
	holder document.Holder
}

func (f *fakeRefs) FaceReference(_ context.Context, h document.Holder) ([]byte, error) {
	f.holder = h
	if f.err != nil {
		return nil, f.err
	}
	return append([]byte(nil), f.ref...), nil
}

// A bank eID card carries no face: the session asks the bank for the
// holder's reference, matches it, and the record carries the holder's
// signature. Without a reference it declines with its own reason.
func TestBankEIDSession(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refs    *fakeRefs
		want    []string
		matched bool
	}{
		{"reference from the bank", &fakeRefs{ref: []byte("enrolled-template")}, nil, true},
		{"no source", nil, []string{"no_face_reference"}, false},
		{"bank has none", &fakeRefs{err: fmt.Errorf("hub: %w", ErrNoFaceReference)}, []string{"no_face_reference"}, false},
		{"hub down", &fakeRefs{err: fmt.Errorf("hub unreachable")}, []string{"face_reference_unavailable"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chip := &docChip{docs: []document.Document{bankDoc("pin_wrong"), bankDoc()}}
			face := &fakeFace{res: goodFace()}
			h := newHarnessWith(t, nil, face, Authorization{Approved: true, Online: true}, func(o *Options) {
				o.Chip = chip
				if tc.refs != nil {
					o.FaceReferences = tc.refs
				}
			})
			h.pay(t, "till-b")
			h.m.CardPresent(true)
			h.expect(t, AwaitPassword)
			if err := h.m.EnterPassword(emrtd.Password{Kind: emrtd.PIN, Secret: "111111"}); err != nil {
				t.Fatal(err)
			}
			// The wrong PIN comes back to the pad with the counter.
			h.expect(t, AwaitPassword)
			if st := h.m.Status(); st.PINRetriesLeft == nil || *st.PINRetriesLeft != 2 {
				t.Fatalf("retries after a wrong PIN: %v", st.PINRetriesLeft)
			}
			if err := h.m.EnterPassword(emrtd.Password{Kind: emrtd.PIN, Secret: "246810"}); err != nil {
				t.Fatal(err)
			}
			o := h.outcome(t)
			if got := codes(o); !slices.Equal(got, tc.want) || o.Approved != (tc.want == nil) {
				t.Fatalf("outcome %v approved %v, want %v", got, o.Approved, tc.want)
			}
			if tc.matched != (string(face.got) == "enrolled-template") {
				t.Errorf("face step got %q", face.got)
			}
			if tc.refs != nil && tc.refs.holder.ID != "EID-3301-0001" {
				t.Errorf("reference asked for %+v", tc.refs.holder)
			}
			h.auth.mu.Lock()
			rec := h.auth.commits[len(h.auth.commits)-1]
			h.auth.mu.Unlock()
			if rec.Chip == nil || rec.Chip.Document != "bankeid" || rec.HolderSignature == nil || rec.DocNumber != "EID-3301-0001" {
				t.Errorf("record chip %+v signature %v", rec.Chip, rec.HolderSignature)
			}
		})
	}
}
