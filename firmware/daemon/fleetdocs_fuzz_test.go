package daemon

import (
	"strings"
	"testing"

	"kiosk/firmware/config"
)

// FuzzFleetDocs: the documents of set_configuration, update_trust_bundle
// and collect_logs jobs come from the network (inside a verified job,
// but a parser must not trust even that). Whatever parses keeps the
// bounds; a configuration document never changes anything but operator
// keys.
func FuzzFleetDocs(f *testing.F) {
	f.Add(`{"version":2,"settings":{"policy.card_timeout":"45s","policy.time_extensions":2}}`)
	f.Add(`{"version":2,"files":{"csca.pem":"AAAA","csca.crl":"AAAA"}}`)
	f.Add(`{"version":1,"files":{"../x":"AAAA"}}`)
	f.Add(`{"version":3,"url":"http://127.0.0.1/b.json","size":1024,"sha256":"` + strings.Repeat("ab", 32) + `"}`)
	f.Add(`{"version":3,"files":{"hub-auth.pem":"AAAA","csca.pem":"AAAA"}}`)
	f.Add(`{"version":-1,"settings":{}}`)
	f.Add(`{"lines":200,"diagnostics":false}`)
	f.Add(`{"lines":-1}`)
	base := config.Default()
	base.Device.Mode = "simulation"
	base.Camera.Backend, base.CardReader.Backend, base.GPIO.Backend = "none", "sim", "sim"
	base.Hub.Brokers = []string{"tcp://127.0.0.1:1"}
	f.Fuzz(func(t *testing.T, s string) {
		if doc, err := parseBundleDoc(s); err == nil {
			byRef := doc.URL != ""
			if doc.Version < 1 || byRef == (len(doc.Files) != 0) || len(doc.Files) > maxBundleFiles || byRef && (doc.Size < 1 || doc.Size > maxBundleFetch || len(doc.SHA256) != 64) {
				t.Fatalf("bundle out of bounds: %d files, url %q size %d, version %d", len(doc.Files), doc.URL, doc.Size, doc.Version)
			}
			for name := range doc.Files {
				if !bundleFileRe.MatchString(name) {
					t.Fatalf("file name %q accepted", name)
				}
			}
		}
		if doc, err := parseLogsDoc(s); err == nil && (doc.Lines < 0 || doc.Lines > maxLogLines) {
			t.Fatalf("collect_logs lines %d accepted", doc.Lines)
		}
		if doc, err := parseConfigDoc(s); err == nil {
			got, err := base.WithSettings(doc.Settings)
			if err == nil && (got.Device != base.Device || got.Tx != base.Tx || got.EID.TrustDir != base.EID.TrustDir || got.Hub.AuthCert != base.Hub.AuthCert) {
				t.Fatal("a setting changed more than operator keys")
			}
		}
	})
}
