package camera

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeSysfs builds the part of a sysfs tree a USB webcam and a loopback
// camera occupy: /sys/class/video4linux/videoN/device links to the
// device's interface, whose parent holds the USB attributes.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(dir string, attrs map[string]string) {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for k, v := range attrs {
			if err := os.WriteFile(filepath.Join(root, dir, k), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	link := func(node, target string) {
		dir := filepath.Join(root, "class", "video4linux", node)
		mk(filepath.Join("class", "video4linux", node), nil)
		rel, err := filepath.Rel(dir, filepath.Join(root, target))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, filepath.Join(dir, "device")); err != nil {
			t.Fatal(err)
		}
	}
	// The root hub has an identity of its own: the camera's is the nearest.
	mk("devices/pci0000:00/0000:00:14.0/usb1", map[string]string{"idVendor": "1d6b", "idProduct": "0002"})
	mk("devices/pci0000:00/0000:00:14.0/usb1/1-1", map[string]string{"idVendor": "046D", "idProduct": "0825", "serial": "A1B2C3"})
	mk("devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0", map[string]string{"bInterfaceClass": "0e"})
	link("video0", "devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0")
	// A camera without a serial number.
	mk("devices/pci0000:00/0000:00:14.0/usb1/1-2", map[string]string{"idVendor": "0c45", "idProduct": "6366"})
	mk("devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0", nil)
	link("video2", "devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0")
	// v4l2loopback: a virtual device, fed by any program.
	mk("devices/virtual/video4linux/video9", nil)
	link("video9", "devices/virtual/video4linux/video9")
	return root
}

func TestReadUSBID(t *testing.T) {
	root := fakeSysfs(t)
	for _, tc := range []struct {
		dev  string
		want USBID
		err  error
	}{
		{"/dev/video0", USBID{Vendor: "046d", Product: "0825", Serial: "A1B2C3"}, nil},
		{"0", USBID{Vendor: "046d", Product: "0825", Serial: "A1B2C3"}, nil},
		{"2", USBID{Vendor: "0c45", Product: "6366"}, nil},
		{"/dev/video9", USBID{}, ErrNotUSB},
	} {
		got, err := ReadUSBID(root, tc.dev)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v, %v", tc.dev, got, err, tc.want, tc.err)
		}
	}
	if _, err := ReadUSBID(root, "/dev/video5"); err == nil {
		t.Error("a device missing from sysfs has an identity")
	}
	if _, err := ReadUSBID(root, "/dev/sda"); err == nil {
		t.Error("/dev/sda read as a camera")
	}
}

// A pinned v4l2 source opens only the pinned camera: another model, another
// unit (serial) or a loopback device is refused before OpenCV sees it.
func TestPinnedV4L2RefusesOtherDevices(t *testing.T) {
	root := fakeSysfs(t)
	pin := &USBID{Vendor: "046d", Product: "0825", Serial: "A1B2C3"}
	for _, tc := range []struct {
		name   string
		dev    string
		pin    USBID
		notUSB bool
	}{
		{"other model", "/dev/video2", *pin, false},
		{"other unit", "/dev/video0", USBID{Vendor: "046d", Product: "0825", Serial: "ZZZ"}, false},
		{"loopback", "/dev/video9", *pin, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pin
			src, err := NewSource(Spec{Kind: KindV4L2, Device: tc.dev, USB: &p, SysfsRoot: root})
			if err != nil {
				t.Fatal(err)
			}
			err = src.Open(context.Background())
			var oe *OpenError
			var ie *IdentityError
			if !errors.As(err, &oe) || !errors.As(err, &ie) {
				t.Fatalf("open: %v, want *OpenError wrapping *IdentityError", err)
			}
			if (ie.Got == nil) != tc.notUSB {
				t.Errorf("identity error %v: got %v", ie, ie.Got)
			}
			src.Close()
		})
	}
	// The pinned camera itself passes the check; opening then fails only
	// because this machine has no /dev/video0 (not an identity error).
	src, err := NewSource(Spec{Kind: KindV4L2, Device: "/dev/video0", USB: pin, SysfsRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Open(context.Background()); err != nil {
		var ie *IdentityError
		if errors.As(err, &ie) {
			t.Errorf("pinned camera refused: %v", err)
		}
	}
}

func TestUSBSpecValidation(t *testing.T) {
	for _, s := range []Spec{
		{Kind: KindFile, Path: "x.mp4", USB: &USBID{Vendor: "046d", Product: "0825"}},
		{Kind: KindV4L2, Device: "0", USB: &USBID{Vendor: "46d", Product: "0825"}},
		{Kind: KindV4L2, Device: "0", USB: &USBID{Vendor: "046d", Product: "08x5"}},
	} {
		if _, err := NewSource(s); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: %v, want ErrInvalidSpec", s, err)
		}
	}
}
