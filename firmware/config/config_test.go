package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReferenceAndSimFilesAreValid(t *testing.T) {
	for _, f := range []string{"kioskd.toml", "sim.toml"} {
		c, err := Load(filepath.Join("..", "..", "provisioning", "config", f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if f == "sim.toml" && (c.Device.Mode != "simulation" || c.Camera.Backend != "sim" || c.Hub.KeepAlive != 30*time.Second) {
			t.Fatalf("sim.toml decoded wrongly or lost defaults: %+v", c)
		}
	}
}

// The reference file documents every key with its default value.
func TestReferenceFileMatchesDefaults(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "provisioning", "config", "kioskd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	// The file shows an example USB pin (production needs one); the
	// default pins nothing.
	if !c.Camera.USB.Pinned() || d.Camera.USB.Pinned() {
		t.Fatalf("camera.usb: file %+v, default %+v; want an example in the file only", c.Camera.USB, d.Camera.USB)
	}
	c.Camera.USB = CameraUSB{}
	if !reflect.DeepEqual(c.Camera, d.Camera) || c.Memory != d.Memory || c.CardReader != d.CardReader || c.Log != d.Log || c.HTTP != d.HTTP || c.Shutdown != d.Shutdown || c.Face != d.Face {
		t.Fatalf("reference file and Default() disagree:\nfile %+v\ndefault %+v", c, d)
	}
}

func TestParseErrors(t *testing.T) {
	base := "[device]\nmode = \"simulation\"\n[camera]\nbackend = \"none\"\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n"
	tests := []struct {
		name string
		toml string
		keys []string // every key that must be named
	}{
		{"unknown key", base + "[hub]\nbrokerz = []\n", []string{"hub.brokerz"}},
		{"unknown table", base + "[camra]\nfps = 3\n", []string{"camra"}},
		{"wrong type", base + "[shutdown]\ntimeout = true\n", []string{"timeout"}},
		{"bad duration", base + "[shutdown]\ntimeout = \"soon\"\n", []string{"timeout"}},
		{"out of range", "[device]\nmode = \"simulation\"\n[camera]\nbackend = \"sim\"\npath = \"x.mp4\"\nfps = 500.0\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n", []string{"camera.fps"}},
		{"bad enum", base + "[log]\nlevel = \"loud\"\n", []string{"log.level"}},
		{"face thresholds", base + "[face]\nsmile_threshold = 1.5\nmouth_rise = 0.0\nsmile_frames = 0\nexpression_hz = 100.0\n", []string{"face.smile_threshold", "face.mouth_rise", "face.smile_frames", "face.expression_hz"}},
		{"liveness off", base + "[policy]\nliveness_threshold = 0.0\n", []string{"policy.liveness_threshold"}},
		{"debug capture in production", "[device]\nmode = \"production\"\n[face]\ndebug_capture_dir = \"/tmp/faces\"\n", []string{"face.debug_capture_dir"}},
		{"bad CRL policy", base + "[eid]\nstale_crl = \"ignore\"\nmissing_crl = \"maybe\"\n", []string{"eid.stale_crl", "eid.missing_crl"}},
		{"chip authenticity off in production", "[device]\nmode = \"production\"\n[eid]\nchip_auth = \"none\"\n", []string{"eid.chip_auth"}},
		{"bad exempt type", base + "[eid]\nchip_auth_exempt_types = [\"P\", \"passport\", \"\"]\n", []string{"eid.chip_auth_exempt_types", "passport"}},
		{"http not loopback", base + "[http]\nlisten = \"0.0.0.0:8080\"\n", []string{"http.listen"}},
		{"bad speech", base + "[speech]\nvolume = 9\nrepeat_key = \"Enter\"\npause_key = \"5\"\nvolume_down_key = \"F6\"\nvolume_up_key = \"F6\"\n",
			[]string{"speech.volume", "speech.repeat_key", "speech.pause_key", "speech.volume_up_key"}},
		{"bad broker", base + "[hub]\nbrokers = [\"http://x\"]\n", []string{"hub.brokers[0]"}},
		{"bad gpio role", base + "[gpio.pins.lazer]\nline = \"GPIO1\"\n", []string{"gpio.pins.lazer"}},
		{"dup gpio line", base + "[gpio.pins.led_red]\nline = \"A\"\n[gpio.pins.led_green]\nline = \"A\"\n", []string{"gpio.pins.led_red.line"}},
		{"production refuses sim", "[device]\nmode = \"production\"\n[camera]\nbackend = \"sim\"\npath = \"v.mp4\"\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n",
			[]string{"camera.backend", "cardreader.backend", "gpio.backend", "hub.brokers"}},
		{"production refuses a shared staff PIN", "[device]\nmode = \"production\"\n[http]\nstaff_pin_file = \"/etc/kioskd/staff-pin\"\n", []string{"http.staff_pin_file"}},
		{"production refuses plain brokers", "[device]\nmode = \"production\"\n[hub]\nbrokers = [\"tcp://h:1883\", \"ws://h:80\", \"ssl://h:8883\"]\n",
			[]string{"hub.brokers[0]", "hub.brokers[1]", "hub.cert_file"}},
		{"production refuses a file camera", "[device]\nmode = \"production\"\n[camera]\nbackend = \"file\"\npath = \"v.mp4\"\n", []string{"camera.backend", "only v4l2"}},
		{"production refuses gstreamer", "[device]\nmode = \"production\"\n[camera]\nbackend = \"gstreamer\"\npipeline = \"filesrc location=v.mp4 ! decodebin ! appsink\"\n", []string{"camera.backend", "only v4l2"}},
		{"sim cues", "[device]\nmode = \"simulation\"\n[camera]\nbackend = \"file\"\npath = \"v.mp4\"\nsim_cues = { smile = \"17s\" }\n[memory]\nrss_ceiling_mib = 20\n", []string{"camera.sim_cues", "only for backend sim", "memory.rss_ceiling_mib"}},
		{"bad sim cue", "[device]\nmode = \"simulation\"\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n[camera]\nbackend = \"sim\"\npath = \"v.mp4\"\nsim_cues = { laugh = \"1s\", smile = \"-1s\" }\nsim_cue_length = \"2h\"\n", []string{"laugh", "out of range", "camera.sim_cue_length"}},
		{"production refuses sim cues", "[device]\nmode = \"production\"\n[camera]\nbackend = \"sim\"\npath = \"v.mp4\"\nsim_cues = { smile = \"17s\" }\n", []string{"camera.sim_cues", "refused in production"}},
		{"production needs a USB pin", "[device]\nmode = \"production\"\n", []string{"camera.usb.vendor"}},
		{"bad USB pin", base + "[camera.usb]\nvendor = \"46d\"\nproduct = \"xyzw\"\n", []string{"camera.usb", "camera.usb.vendor", "camera.usb.product"}},
		{"syntax", "[device\nid = 1\n", []string{"line 2", "table name"}},
		{"several at once", base + "[log]\nlevel = \"x\"\nformat = \"y\"\n", []string{"log.level", "log.format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.toml))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			for _, k := range tt.keys {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("error %q does not name %q", err, k)
				}
			}
		})
	}
}

// Mutual TLS in production: TLS brokers and a client certificate pass;
// a plain broker is named, and ssl:// is not named.
func TestProductionNeedsMutualTLS(t *testing.T) {
	prod := "[device]\nmode = \"production\"\n[hub]\nauth_cert = \"/a.pem\"\n"
	_, err := Parse([]byte(prod + "brokers = [\"ssl://h:8883\", \"mqtts://h:8883\", \"wss://h/mqtt\"]\ncert_file = \"/var/lib/kioskd/identity/device.crt\"\nkey_file = \"/var/lib/kioskd/identity/device.key\"\n"))
	if err != nil && (strings.Contains(err.Error(), "hub.brokers") || strings.Contains(err.Error(), "hub.cert_file") || strings.Contains(err.Error(), "hub.key_file")) {
		t.Fatalf("mutual TLS refused: %v", err)
	}
	_, err = Parse([]byte(prod + "brokers = [\"ssl://h:8883\", \"tcp://h:1883\"]\ncert_file = \"/var/lib/kioskd/identity/device.crt\"\nkey_file = \"/var/lib/kioskd/identity/device.key\"\n"))
	if err == nil || !strings.Contains(err.Error(), "hub.brokers[1]") || strings.Contains(err.Error(), "hub.brokers[0]") || strings.Contains(err.Error(), "hub.cert_file") {
		t.Fatalf("plain broker: %v", err)
	}
	// The link's identity is the one renewal and the tamper wipe act on.
	_, err = Parse([]byte(prod + "brokers = [\"ssl://h:8883\"]\ncert_file = \"/c.crt\"\nkey_file = \"/c.key\"\n"))
	if err == nil || !strings.Contains(err.Error(), "hub.cert_file") || !strings.Contains(err.Error(), "hub.key_file") {
		t.Fatalf("hub pair other than the transactions pair: %v", err)
	}
	// Fleet jobs need the operations certificate, distinct from the
	// authorization one.
	if _, err = Parse([]byte(prod)); err == nil || !strings.Contains(err.Error(), "hub.operations_cert: required in production mode") {
		t.Fatalf("no operations_cert: %v", err)
	}
	if _, err = Parse([]byte(prod + "operations_cert = \"/a.pem\"\n")); err == nil || !strings.Contains(err.Error(), "hub.operations_cert: must not be hub.auth_cert") {
		t.Fatalf("operations_cert = auth_cert: %v", err)
	}
	// Simulation may use the plain loopback broker without a certificate.
	sim := "[device]\nmode = \"simulation\"\n[camera]\nbackend = \"none\"\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n[hub]\nbrokers = [\"tcp://127.0.0.1:1883\"]\n"
	if _, err := Parse([]byte(sim)); err != nil {
		t.Fatalf("simulation with tcp://: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func TestDefaultsNeedABrokerInProduction(t *testing.T) {
	_, err := Load("")
	if err == nil || !strings.Contains(err.Error(), "hub.brokers") {
		t.Fatalf("defaults validated without a broker: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"kioskd.toml", "sim.toml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "provisioning", "config", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("[gpio.pins.x]\nline=1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", verr)
			}
		}
	})
}

// Chip authenticity fails closed by default; legacy types are exempted
// only by name; a file from before issue 11 with the obsolete
// require_chip_auth_for still loads (kioskd warns and ignores it).
func TestChipAuthDefaults(t *testing.T) {
	d := Default()
	if d.EID.ChipAuth != "any" || len(d.EID.ChipAuthExemptTypes) != 0 {
		t.Fatalf("defaults: %+v", d.EID)
	}
	base := "[device]\nmode = \"simulation\"\n[camera]\nbackend = \"none\"\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n"
	c, err := Parse([]byte(base + "[eid]\nchip_auth_exempt_types = [\"P\", \"ID\", \"*\"]\n[policy]\nrequire_chip_auth_for = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.EID.ChipAuthExemptTypes, []string{"P", "ID", "*"}) || c.Policy.RequireChipAuthFor == nil {
		t.Fatalf("parsed %+v %+v", c.EID, c.Policy.RequireChipAuthFor)
	}
	if _, err := Parse([]byte(base + "[eid]\nchip_auth = \"none\"\n")); err != nil {
		t.Fatalf("none in simulation: %v", err)
	}
}
