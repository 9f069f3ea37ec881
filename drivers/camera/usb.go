package camera

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// USBID is a USB device's identity as the kernel reports it in sysfs
// (the idVendor, idProduct and serial attributes of the USB device).
type USBID struct {
	Vendor  string // 4 hex digits, e.g. "046d"
	Product string // 4 hex digits
	Serial  string // "" when the device reports none
}

func (u USBID) String() string {
	s := u.Vendor + ":" + u.Product
	if u.Serial != "" {
		s += " serial " + u.Serial
	}
	return s
}

var hex4 = regexp.MustCompile(`^[0-9a-fA-F]{4}$`)

// ValidUSBHex reports whether s is a USB vendor or product id as sysfs
// writes it: four hex digits.
func ValidUSBHex(s string) bool { return hex4.MatchString(s) }

// IdentityError reports a V4L2 device whose USB identity is not the pinned
// one, or that is not a USB device at all (a virtual or loopback camera).
type IdentityError struct {
	Device string
	Want   USBID
	Got    *USBID // nil: the device has no USB parent
	Err    error  // why the identity could not be read, if it could not
}

func (e *IdentityError) Error() string {
	switch {
	case e.Got != nil:
		return fmt.Sprintf("camera %s is USB %s, want the pinned %s", e.Device, *e.Got, e.Want)
	case e.Err != nil:
		return fmt.Sprintf("camera %s: cannot read its USB identity (want %s): %v", e.Device, e.Want, e.Err)
	default:
		return fmt.Sprintf("camera %s is not a USB device (want %s)", e.Device, e.Want)
	}
}

func (e *IdentityError) Unwrap() error { return e.Err }

// ErrNotUSB means a video device has no USB device among its sysfs
// ancestors (a loopback, platform or virtual camera).
var ErrNotUSB = errors.New("camera: not a USB device")

var videoNode = regexp.MustCompile(`^video[0-9]+$`)

// nodeName returns the kernel name ("video0") of a V4L2 device given as an
// index or a path; symlinks such as /dev/v4l/by-id/... are followed.
func nodeName(dev string) (string, error) {
	idx, path, err := parseDevice(dev)
	if err != nil {
		return "", err
	}
	if path == "" {
		return fmt.Sprintf("video%d", idx), nil
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	name := filepath.Base(path)
	if !videoNode.MatchString(name) {
		return "", fmt.Errorf("%s is not a /dev/videoN node", dev)
	}
	return name, nil
}

// ReadUSBID reads the USB identity of V4L2 device dev (an index or a
// path) from the sysfs tree at root ("/sys" on a kiosk): the device's
// class entry leads to its interface, whose nearest ancestor with idVendor
// and idProduct is the USB device.
func ReadUSBID(root, dev string) (USBID, error) {
	name, err := nodeName(dev)
	if err != nil {
		return USBID{}, err
	}
	link := filepath.Join(root, "class", "video4linux", name, "device")
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return USBID{}, fmt.Errorf("sysfs %s: %w", link, err)
	}
	stop := filepath.Clean(root)
	if r, err := filepath.EvalSymlinks(root); err == nil {
		stop = r
	}
	for d := dir; d != stop && d != filepath.Dir(d) && strings.HasPrefix(d, stop); d = filepath.Dir(d) {
		vendor, verr := readAttr(d, "idVendor")
		product, perr := readAttr(d, "idProduct")
		if verr != nil || perr != nil {
			continue
		}
		serial, _ := readAttr(d, "serial") // optional: many cameras have none
		return USBID{Vendor: strings.ToLower(vendor), Product: strings.ToLower(product), Serial: serial}, nil
	}
	return USBID{}, ErrNotUSB
}

func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// checkUSB verifies that dev has the pinned identity: vendor and product
// always, the serial when one is pinned.
func checkUSB(root, dev string, want USBID) error {
	got, err := ReadUSBID(root, dev)
	if errors.Is(err, ErrNotUSB) {
		return &IdentityError{Device: dev, Want: want}
	}
	if err != nil {
		return &IdentityError{Device: dev, Want: want, Err: err}
	}
	if !strings.EqualFold(got.Vendor, want.Vendor) || !strings.EqualFold(got.Product, want.Product) ||
		(want.Serial != "" && got.Serial != want.Serial) {
		return &IdentityError{Device: dev, Want: want, Got: &got}
	}
	return nil
}
