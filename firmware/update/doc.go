// Package update installs signed firmware bundles on an A/B kiosk with
// RAUC: the update_firmware fleet job's document (docs/mqtt.md, "Firmware
// update"), a resumable bounded download to the state directory, the
// bundle's signature and version checked with `rauc info` against the
// release keyring before anything is written, `rauc install` into the
// inactive slot, and the record of the pending update that lets the kioskd
// booted after the reboot commit the slot (`rauc status mark-good`) or
// report the rollback.
//
// The conventions are RAUC's and Mender's: a signed bundle, two root file
// systems, install into the inactive one, boot it with a bounded number of
// attempts, mark it good only after the application's own health check,
// otherwise the boot loader falls back to the old slot.
package update

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Doc is the update_firmware job's document.
type Doc struct {
	// URL of the bundle (http or https: integrity comes from SHA256 in the
	// sealed job and from the bundle's own signature, not the transport).
	URL string `json:"url"`
	// Size is the bundle's exact length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the bundle's digest, lower-case hex.
	SHA256 string `json:"sha256"`
	// AllowDowngrade lets a bundle whose version is not newer than the
	// running firmware install (a deliberate rollback by the operator).
	AllowDowngrade bool `json:"allow_downgrade,omitempty"`
}

// ErrBadDoc wraps every problem of a job document.
var ErrBadDoc = errors.New("update: bad document")

// ParseDoc decodes and checks a document; maxSize bounds Size.
func ParseDoc(s string, maxSize int64) (Doc, error) {
	var d Doc
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Doc{}, fmt.Errorf("%w: %v", ErrBadDoc, err)
	}
	if dec.More() {
		return Doc{}, fmt.Errorf("%w: data after the document", ErrBadDoc)
	}
	if err := d.Check(maxSize); err != nil {
		return Doc{}, err
	}
	return d, nil
}

// Check checks a document's URL, size (up to maxSize) and digest; a trust
// bundle fetched by reference is named the same way.
func (d Doc) Check(maxSize int64) error {
	u, err := url.Parse(d.URL)
	switch {
	case d.URL == "" || err != nil:
		return fmt.Errorf("%w: url %q", ErrBadDoc, d.URL)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w: url scheme %q (http or https)", ErrBadDoc, u.Scheme)
	case u.Host == "" || u.User != nil:
		return fmt.Errorf("%w: url %q needs a host and no credentials", ErrBadDoc, d.URL)
	case d.Size <= 0:
		return fmt.Errorf("%w: size %d", ErrBadDoc, d.Size)
	case d.Size > maxSize:
		return fmt.Errorf("%w: size %d bytes exceeds the limit of %d (update.max_bundle_size)", ErrBadDoc, d.Size, maxSize)
	}
	if b, err := hex.DecodeString(d.SHA256); err != nil || len(b) != 32 || strings.ToLower(d.SHA256) != d.SHA256 {
		return fmt.Errorf("%w: sha256 must be 64 lower-case hex digits", ErrBadDoc)
	}
	return nil
}
