package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/audit"
	"kiosk/firmware/event"
	"kiosk/firmware/staff"
	"kiosk/firmware/tamperlatch"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
)

// Opening the enclosure: the latch is persisted, a signed alarm reaches
// the hub through the outbox (acknowledged, so it leaves the outbox), the
// key file and the document salt are wiped; a reset is refused until the
// kiosk is enrolled again; the latch survives a restart; after
// re-enrollment staff put it back in service and the reset reaches the hub
// the same way.
func TestTamperLatchWipesAndPersists(t *testing.T) {
	dir, k := keyedKiosk(t, "kiosk-tamper")
	keyFile, certFile, salt, state := k.key, k.cert, k.salt, k.state
	conf := k.conf()
	r := start(t, conf)
	r.waitHealth(t, "hub ok", func(h Health) bool { return h.Components["hub"].State == "ok" && h.KeyStorage == "file" })

	// Health and sessions read the key store and the salt while the
	// feedback goroutine wipes them (under go test -race a data race here
	// fails the test).
	readers := make(chan struct{})
	readersDone := make(chan struct{})
	go func() {
		defer close(readersDone)
		for {
			select {
			case <-readers:
				return
			default:
			}
			_ = r.d.Health()
			_ = r.d.tx.docHash("D", "C01X00T47")
			time.Sleep(time.Millisecond)
		}
	}()
	if code, body := postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":true}`); code != 200 {
		t.Fatalf("tamper: %d %s", code, body)
	}
	r.waitEvent(t, "kiosk.service", func(e event.Event) bool { return true })
	waitCond(t, "key and salt wiped", func() bool {
		_, kerr := os.Stat(keyFile)
		_, serr := os.Stat(salt)
		return os.IsNotExist(kerr) && os.IsNotExist(serr)
	})
	close(readers)
	<-readersDone
	st, err := tamperlatch.File{Path: filepath.Join(state, "tamper.json")}.Load()
	if err != nil || !st.Latched || !st.Wiped || !st.AlarmQueued {
		t.Fatalf("latch %+v %v", st, err)
	}
	if _, err := r.d.tx.signer.Sign(r.d.event(txreport.EventTamperAlarm)); err == nil {
		t.Fatal("the kiosk still signs after the wipe")
	}
	hubEvents := func(name string) int {
		items, err := hubstore.All(context.Background(), r.d.tx.store, hubstore.ListQuery{Terminal: "kiosk-tamper"}, 100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, it := range items {
			if it.Report.Kind == txreport.KindEvent && it.Report.Service == name {
				n++
			}
		}
		return n
	}
	waitCond(t, "alarm at the hub and out of the outbox", func() bool {
		return hubEvents(txreport.EventTamperAlarm) == 1 && r.d.tx.outbox.Stats().Depth == 0
	})

	// Enclosure shut, but no new key: the reset is refused.
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":false}`)
	if err := r.d.tamperResetBlocked(context.Background()); err == nil {
		t.Fatal("reset allowed without re-enrollment")
	}
	r.d.bus.Publish(event.Event{Source: "test", Kind: "staff.action", Data: staffAction{Action: "reset_tamper"}})
	time.Sleep(300 * time.Millisecond)
	if s := r.d.findUI(); s != nil {
		s.mu.Lock()
		svc := s.service
		s.mu.Unlock()
		if !svc.OutOfService {
			t.Fatalf("back in service without re-enrollment: %+v", svc)
		}
	}

	// A restart (or power cut) keeps the latch.
	r.stop(t)
	r = start(t, conf)
	waitCond(t, "out of service after restart", func() bool {
		u := r.d.findUI()
		if u == nil {
			return false
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.service.OutOfService && u.service.Reason == "tamper"
	})

	// Re-enrolled (a new key and certificate where the old were) and the
	// salt restored: staff reset it.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if _, err := devkey.Create(dir, "", "kiosk-tamper"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(salt, []byte("fedcba9876543210fedc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.d.tamperResetBlocked(context.Background()); err != nil {
		t.Fatalf("reset blocked after re-enrollment: %v", err)
	}
	r.d.bus.Publish(event.Event{Source: "test", Kind: "staff.action", Data: staffAction{Action: "reset_tamper"}})
	waitCond(t, "back in service", func() bool {
		u := r.d.findUI()
		u.mu.Lock()
		defer u.mu.Unlock()
		return !u.service.OutOfService
	})
	if st, err := (tamperlatch.File{Path: filepath.Join(state, "tamper.json")}).Load(); err != nil || st.Latched {
		t.Fatalf("latch after reset: %+v %v", st, err)
	}
	waitCond(t, "reset at the hub", func() bool {
		return hubEvents(txreport.EventTamperReset) == 1 && r.d.tx.outbox.Stats().Depth == 0
	})
}

// A wipe whose salt step fails (the salt path cannot be wiped) records
// the key step; after staff enroll a new key, the retry at the next start
// must not wipe that new key again.
func TestTamperRetryKeepsNewKey(t *testing.T) {
	dir, k := keyedKiosk(t, "kiosk-tr")
	keyFile, certFile, salt, state := k.key, k.cert, k.salt, k.state
	// A directory: opening it for writing fails, even as root.
	if err := os.Remove(salt); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(salt, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := k.conf()
	latch := tamperlatch.File{Path: filepath.Join(state, "tamper.json")}
	r := start(t, conf)
	r.waitHealth(t, "hub ok", func(h Health) bool { return h.Components["hub"].State == "ok" })
	if code, body := postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":true}`); code != 200 {
		t.Fatalf("tamper: %d %s", code, body)
	}
	waitCond(t, "key step recorded", func() bool {
		st, _ := latch.Load()
		return st.KeyWiped
	})
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("key after the wipe: %v", err)
	}
	st, _ := latch.Load()
	if st.Wiped || st.SaltWiped {
		t.Fatalf("latch claims the salt was wiped: %+v", st)
	}
	r.stop(t)

	// Staff enroll a new key; then a restart retries the salt step.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if _, err := devkey.Create(dir, "", "kiosk-tr"); err != nil {
		t.Fatal(err)
	}
	r = start(t, conf)
	waitCond(t, "out of service after restart", func() bool {
		u := r.d.findUI()
		if u == nil {
			return false
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.service.OutOfService
	})
	time.Sleep(500 * time.Millisecond) // the retry runs before the service state is published
	if _, err := os.Stat(keyFile); err != nil {
		t.Fatalf("the newly enrolled key was wiped again at restart: %v", err)
	}
	if err := r.d.tamperResetBlocked(context.Background()); err != nil {
		t.Fatalf("reset blocked with the new key: %v", err)
	}
}

func waitCond(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Decommission: the event is delivered (the outbox drains), then the key,
// salt, identity and transaction state are wiped and the kiosk stays out
// of service, also after a restart; a reset is refused.
func TestDecommission(t *testing.T) {
	_, k := keyedKiosk(t, "kiosk-dc")
	keyFile, certFile, salt, state := k.key, k.cert, k.salt, k.state
	conf := k.conf()
	r := start(t, conf)
	r.waitHealth(t, "hub ok", func(h Health) bool { return h.Components["hub"].State == "ok" })
	if err := r.d.decommission(context.Background(), 20*time.Second, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{keyFile, certFile, salt, filepath.Join(state, "outbox.db"), filepath.Join(state, "offline.db"), filepath.Join(state, "payments.db")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s after decommission: %v", f, err)
		}
	}
	items, err := hubstore.All(context.Background(), r.d.tx.store, hubstore.ListQuery{Terminal: "kiosk-dc"}, 10)
	if err != nil || len(items) != 1 || items[0].Report.Service != txreport.EventDecommission {
		t.Fatalf("hub holds %+v %v", items, err)
	}
	if err := r.d.tamperResetBlocked(context.Background()); err == nil {
		t.Fatal("reset allowed after decommission")
	}
	r.stop(t)
	st, err := tamperlatch.File{Path: filepath.Join(state, "tamper.json")}.Load()
	if err != nil || !st.Latched || !st.Decommissioned || !st.Wiped {
		t.Fatalf("latch %+v %v", st, err)
	}
}

// A decommission that cannot drain the outbox (the hub is unreachable)
// fails and leaves the kiosk as it was: key, salt (file and memory) and
// signer in place, back in service, the decommission event still queued.
func TestDecommissionFailureRestores(t *testing.T) {
	_, k := keyedKiosk(t, "kiosk-dcf")
	keyFile, certFile, salt, state := k.key, k.cert, k.salt, k.state
	r := start(t, fmt.Sprintf(`
[device]
id = "kiosk-dcf"
mode = "simulation"
[http]
listen = "127.0.0.1:0"
[camera]
backend = "none"
[cardreader]
backend = "sim"
[gpio]
backend = "sim"
[hub]
brokers = ["tcp://127.0.0.1:1"]
[ecr]
listen = ""
[transactions]
state_dir = %q
device_key = %q
device_cert = %q
doc_salt_file = %q
`, state, keyFile, certFile, salt))
	waitCond(t, "staff screen up", func() bool { return r.d.findUI() != nil })
	if r.d.key() == nil {
		t.Fatal("no device key at start")
	}
	if err := r.d.decommission(context.Background(), time.Second, false); err == nil || !strings.Contains(err.Error(), "outbox") {
		t.Fatalf("decommission with the hub unreachable: %v", err)
	}
	if r.d.key() == nil || r.d.tx.signer.Withdrawn() {
		t.Fatal("a failed decommission dropped the device key")
	}
	if !r.d.tx.saltSet() {
		t.Fatal("a failed decommission cleared the salt in memory")
	}
	for _, f := range []string{keyFile, certFile, salt} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s after a failed decommission: %v", f, err)
		}
	}
	if st, _ := (tamperlatch.File{Path: filepath.Join(state, "tamper.json")}).Load(); st.Latched {
		t.Fatalf("latch after a failed decommission: %+v", st)
	}
	waitCond(t, "back in service", func() bool {
		u := r.d.findUI()
		u.mu.Lock()
		defer u.mu.Unlock()
		return !u.service.OutOfService
	})
}

// Per-person staff accounts: the PIN finds the account (argon2id), a
// wrong PIN counts towards the growing lockout.
func TestStaffAccounts(t *testing.T) {
	dir := t.TempDir()
	accounts := filepath.Join(dir, "staff")
	if err := staff.Add(accounts, "anna", "246810"); err != nil {
		t.Fatal(err)
	}
	if err := staff.Add(accounts, "ben", "135790"); err != nil {
		t.Fatal(err)
	}
	conf := embeddedKiosk{id: "kiosk-staff", accounts: accounts, state: filepath.Join(dir, "state"), salt: filepath.Join(dir, "salt")}.conf()
	r := start(t, conf)
	r.waitHealth(t, "hub ok", func(h Health) bool { return h.Components["hub"].State == "ok" })
	code, body := postJSON(t, r.base+"/api/staff/login", `{"pin":"135790"}`)
	var login struct{ Token string }
	if code != 200 || json.Unmarshal([]byte(body), &login) != nil || login.Token == "" {
		t.Fatalf("ben: %d %s", code, body)
	}
	// A staff action, by ben: it joins the hash-chained audit log, which
	// reaches the hub through the outbox.
	req, _ := http.NewRequest("POST", r.base+"/api/staff/maintenance", strings.NewReader(`{"on":true}`))
	req.Header.Set("X-Staff-Token", login.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	entries, err := audit.Read(filepath.Join(dir, "state", "audit.log"))
	if err != nil || len(entries) != 2 || entries[0].Staff != "ben" || entries[0].Action != "login" || entries[1].Action != "maintenance_on" || audit.Verify(entries) != nil {
		t.Fatalf("audit log %+v %v", entries, err)
	}
	waitCond(t, "audit entries at the hub", func() bool {
		items, err := hubstore.All(context.Background(), r.d.tx.store, hubstore.ListQuery{Terminal: "kiosk-staff"}, 10)
		if err != nil {
			return false
		}
		var got []txreport.AuditEntry
		for _, it := range items {
			if it.Report.Audit != nil {
				got = append(got, *it.Report.Audit)
			}
		}
		slices.SortFunc(got, func(a, b txreport.AuditEntry) int { return int(a.Seq) - int(b.Seq) })
		return len(got) == 2 && audit.Verify(got) == nil && got[1].Staff == "ben"
	})
	for i := range staff.Free {
		if code, _ := postJSON(t, r.base+"/api/staff/login", `{"pin":"000000"}`); code != 401 {
			t.Fatalf("wrong PIN %d: %d", i, code)
		}
	}
	if code, _ := postJSON(t, r.base+"/api/staff/login", `{"pin":"246810"}`); code != 200 {
		t.Fatalf("anna within the free tries: %d", code)
	}
	for range staff.Free + 1 {
		postJSON(t, r.base+"/api/staff/login", `{"pin":"000000"}`)
	}
	if code, _ := postJSON(t, r.base+"/api/staff/login", `{"pin":"246810"}`); code != 429 {
		t.Fatalf("right PIN during the lockout: %d, want 429", code)
	}
	// A restart does not lift it: the lockout lives in the state directory.
	r.stop(t)
	r = start(t, conf)
	if code, _ := postJSON(t, r.base+"/api/staff/login", `{"pin":"246810"}`); code != 429 {
		t.Fatalf("right PIN during the lockout after a restart: %d, want 429", code)
	}
}

// The first entry of a log started again (after a decommission) does not
// reuse the report id of the first entry of the old log: the hub would
// drop it as a duplicate.
func TestAuditTxIDUniqueAfterReset(t *testing.T) {
	ids := map[string]bool{}
	for i := range 2 {
		l, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		e, err := l.Append("anna", "login", "", time.Date(2026, 12, 7, 6, i, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		id, err := auditTxID(e)
		if err != nil {
			t.Fatal(err)
		}
		if ids[id] {
			t.Fatalf("report id %s repeats after a reset", id)
		}
		ids[id] = true
	}
}

// embeddedKiosk is the configuration of the staff, tamper and decommission
// tests: no camera, the simulated card reader and GPIO, the embedded hub;
// accounts, key and cert are left out when empty.
type embeddedKiosk struct {
	id, accounts, state, key, cert, salt string
}

func (k embeddedKiosk) conf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[device]\nid = %q\nmode = \"simulation\"\n[http]\nlisten = \"127.0.0.1:0\"\n", k.id)
	if k.accounts != "" {
		fmt.Fprintf(&b, "staff_accounts_file = %q\n", k.accounts)
	}
	b.WriteString("[camera]\nbackend = \"none\"\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n" +
		"[hub.embedded]\nlisten = \"127.0.0.1:0\"\n[ecr]\nlisten = \"\"\n")
	fmt.Fprintf(&b, "[transactions]\nstate_dir = %q\n", k.state)
	if k.key != "" {
		fmt.Fprintf(&b, "device_key = %q\ndevice_cert = %q\n", k.key, k.cert)
	}
	fmt.Fprintf(&b, "doc_salt_file = %q\nembedded_hub = true\n", k.salt)
	return b.String()
}

// keyedKiosk makes a device key and certificate for id in a fresh
// directory, writes a document salt there and names the state directory.
func keyedKiosk(t *testing.T, id string) (string, embeddedKiosk) {
	t.Helper()
	dir := t.TempDir()
	if _, err := devkey.Create(dir, "", id); err != nil {
		t.Fatal(err)
	}
	k := embeddedKiosk{id: id, state: filepath.Join(dir, "state"), salt: filepath.Join(dir, "doc-salt"),
		key: filepath.Join(dir, id+".key"), cert: filepath.Join(dir, id+".crt")}
	if err := os.WriteFile(k.salt, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, k
}
