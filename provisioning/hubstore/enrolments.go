package hubstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"sync"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"

	"kiosk/firmware/hub"
)

// Enrolments is the bank's store of enrolled face references by eID
// identity (the document driver's Holder.ID: the eID number; one eID per
// person). The hub answers kiosks' face reference requests from it
// (docs/mqtt.md, "Face reference"). FaceReference returns nil, nil when
// it holds none. The face is personal data: implementations never log it.
type Enrolments interface {
	FaceReference(ctx context.Context, identity string) ([]byte, error)
}

// EnrolmentStore is Enrolments with the bank staff's writes
// (`kioskctl hub face enroll|remove`). Every store implements it.
type EnrolmentStore interface {
	Enrolments
	// EnrolFace stores (or replaces) identity's face reference after
	// CheckEnrolment.
	EnrolFace(ctx context.Context, identity string, face []byte, now time.Time) error
	// RemoveFace deletes identity's face reference (ErrNotFound: none).
	RemoveFace(ctx context.Context, identity string) error
}

// MaxIdentity bounds an eID identity (the hub refuses longer requests).
const MaxIdentity = 64

// ErrBadEnrolment is wrapped by CheckEnrolment's refusals.
var ErrBadEnrolment = errors.New("hubstore: bad enrolment")

// CheckEnrolment is the rule every store applies before storing: an
// identity of 1 to MaxIdentity printable characters without spaces, and
// a face that is a whole JPEG of at most hub.MaxFaceRef bytes (what the
// sealed answer can carry and the kiosk decodes).
func CheckEnrolment(identity string, face []byte) error {
	if identity == "" || len(identity) > MaxIdentity {
		return fmt.Errorf("%w: identity of %d bytes (1 to %d)", ErrBadEnrolment, len(identity), MaxIdentity)
	}
	for _, r := range identity {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: identity %q has a space or control character", ErrBadEnrolment, identity)
		}
	}
	if len(face) == 0 || len(face) > hub.MaxFaceRef {
		return fmt.Errorf("%w: face photo of %d bytes (1 to %d: crop it to the face or save it at a lower JPEG quality)",
			ErrBadEnrolment, len(face), hub.MaxFaceRef)
	}
	// A full decode: a truncated or corrupt file would only fail at the
	// kiosk, in front of the customer.
	if _, err := jpeg.Decode(bytes.NewReader(face)); err != nil {
		return fmt.Errorf("%w: face photo is not a readable JPEG: %v", ErrBadEnrolment, err)
	}
	return nil
}

// MemoryEnrolments is an EnrolmentStore in memory (tests, simulation).
type MemoryEnrolments struct {
	mu    sync.Mutex
	faces map[string][]byte
}

var (
	_ EnrolmentStore = (*MemoryEnrolments)(nil)
	_ EnrolmentStore = (*Bolt)(nil)
)

// Enrol stores identity's face reference as given (tests: no checks).
func (m *MemoryEnrolments) Enrol(identity string, face []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.faces == nil {
		m.faces = map[string][]byte{}
	}
	m.faces[identity] = bytes.Clone(face)
}

// EnrolFace implements EnrolmentStore.
func (m *MemoryEnrolments) EnrolFace(_ context.Context, identity string, face []byte, _ time.Time) error {
	if err := CheckEnrolment(identity, face); err != nil {
		return err
	}
	m.Enrol(identity, face)
	return nil
}

// RemoveFace implements EnrolmentStore.
func (m *MemoryEnrolments) RemoveFace(_ context.Context, identity string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.faces[identity]
	if !ok {
		return ErrNotFound
	}
	clear(f)
	delete(m.faces, identity)
	return nil
}

// FaceReference implements Enrolments.
func (m *MemoryEnrolments) FaceReference(_ context.Context, identity string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.faces[identity]; ok {
		return bytes.Clone(f), nil
	}
	return nil, nil
}

// faceRecord is a face reference in the Bolt store.
type faceRecord struct {
	Face     []byte    `json:"face"`
	Enrolled time.Time `json:"enrolled"`
}

// EnrolFace implements EnrolmentStore.
func (s *Bolt) EnrolFace(ctx context.Context, identity string, face []byte, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckEnrolment(identity, face); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketFaces), identity, faceRecord{Face: face, Enrolled: now.UTC()})
	})
}

// RemoveFace implements EnrolmentStore.
func (s *Bolt) RemoveFace(ctx context.Context, identity string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFaces)
		if b.Get([]byte(identity)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(identity))
	})
}

// FaceReference implements Enrolments.
func (s *Bolt) FaceReference(ctx context.Context, identity string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rec faceRecord
	var found bool
	err := s.update(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFaces).Get([]byte(identity))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &rec)
	})
	if err != nil || !found {
		return nil, err
	}
	return rec.Face, nil
}
