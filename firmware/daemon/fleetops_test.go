package daemon

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/enroll"
	"kiosk/firmware/enrollwire"
	"kiosk/firmware/feedback"
	"kiosk/firmware/jobwire"
	"kiosk/provisioning/ctl"
	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubd"
)

// The fleet's operations on an enrolled kiosk, end to end: real mosquitto
// over mutual TLS, kioskhub with its device CA and operations key, kioskd,
// and the operator's kioskctl. collect_logs brings back redacted lines and
// a bounded diagnostics zip; rotate_certificate renews the certificate
// now (the hub renews early only for that job); service_off takes the
// kiosk out of service across a restart, service_on back; fleet list
// shows what the kiosk reports.
func TestFleetOperationsThroughKioskhub(t *testing.T) {
	bank := startBankSide(t, bankOptions{instance: "hub-ops", operations: true})
	broker, httpAddr, tokenFile := bank.broker, bank.httpAddr, bank.tokenFile
	// Enrolled with the bank's device CA: the identity holds the
	// operations certificate too.
	const device = "kiosk-ops"
	idDir, keyFile := bank.enroll(t, device)
	salt := filepath.Join(t.TempDir(), "doc-salt")
	if err := os.WriteFile(salt, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	kioskConf := fmt.Sprintf(`
[device]
id = %q
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
brokers = [%q]
ca_file = %q
cert_file = %q
key_file = %q
auth_cert = %q
operations_cert = %q
retry_max = "1s"
telemetry_every = "1s"
[ecr]
listen = ""
[transactions]
state_dir = %q
device_key = %q
device_cert = %q
doc_salt_file = %q
`, device, broker.TLSURL(), filepath.Join(idDir, enroll.FileBrokerCA), filepath.Join(idDir, enroll.FileChain), keyFile,
		filepath.Join(idDir, enroll.FileAuthCert), filepath.Join(idDir, enroll.FileOpsCert), filepath.Join(t.TempDir(), "state"),
		keyFile, filepath.Join(idDir, enroll.FileChain), salt)
	r := start(t, kioskConf)
	r.waitHealth(t, "hub ok over mutual TLS", func(h Health) bool { return h.Components["hub"].State == "ok" })

	base := "http://" + httpAddr
	kioskctl := func(words int, args ...string) (int, string, string) {
		t.Helper()
		full := append(append(append([]string{}, args[:words]...), "--hub", base, "--token-file", tokenFile), args[words:]...)
		var out, errb bytes.Buffer
		code := ctl.Main(full, nil, &out, &errb, "test")
		return code, out.String(), errb.String()
	}
	job := func(id, kind, doc string) hubd.JobStatus {
		t.Helper()
		args := []string{"fleet", "job", "create", "--id", id, "--kind", kind, "--device", device, "--wait"}
		if doc != "" {
			args = append(args, "--doc", doc)
		}
		// --wait ends with 0 only when every execution succeeded.
		created, out, errs := kioskctl(3, args...)
		code, status, errs2 := kioskctl(3, "fleet", "job", "status", "--json", id)
		var st hubd.JobStatus
		if code != 0 || json.Unmarshal([]byte(status), &st) != nil || len(st.Executions) != 1 || !st.Summary.Done {
			t.Fatalf("%s: exit %d\n%s%s\nstatus: %d %s%s", kind, created, out, errs, code, status, errs2)
		}
		if (created == 0) != (st.Executions[0].Status == jobwire.StatusSucceeded) {
			t.Fatalf("%s: exit %d for %+v", kind, created, st.Executions[0])
		}
		return st
	}
	listed := func(what string, ok func(fleet.Device) bool) fleet.Device {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var ds []fleet.Device
			code, out, _ := kioskctl(2, "fleet", "list", "--json")
			if code == 0 && json.Unmarshal([]byte(out), &ds) == nil && len(ds) == 1 && ok(ds[0]) {
				return ds[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("fleet list never showed %s: %s", what, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// fleet list: the kiosk's own report, at once on connection.
	cert := r.d.tx.signer.Certificate()
	d := listed("the kiosk's report", func(d fleet.Device) bool { return d.Online && d.Reported != nil })
	if rep := d.Reported; rep.Firmware != "test" || !rep.CertNotAfter.Equal(cert.NotAfter) || rep.ConfigVersion != 0 || rep.OutboxDepth < 0 {
		t.Fatalf("reported %+v", rep)
	}
	code, out, _ := kioskctl(2, "fleet", "list")
	if code != 0 || !strings.Contains(out, "CERT EXPIRES") || !strings.Contains(out, cert.NotAfter.UTC().Format("2006-01-02")) ||
		!strings.Contains(out, "in service") {
		t.Fatalf("fleet list: %d\n%s", code, out)
	}

	// collect_logs: redacted lines and a diagnostics zip that fits.
	r.d.log.Info("fleet test marker", "pin", "864213", "mrz", "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<")
	st := job("logs-1", jobwire.KindCollectLogs, `{"lines":300}`)
	if x := st.Executions[0]; x.Status != jobwire.StatusSucceeded || len(x.Result) > jobwire.MaxDoc {
		t.Fatalf("collect_logs: %+v", x)
	}
	diagDir := t.TempDir()
	code, out, errs := kioskctl(3, "fleet", "job", "logs", "--diagnostics", diagDir, "logs-1")
	if code != 0 || !strings.Contains(out, "== "+device+":") || !strings.Contains(out, "kioskd running") || !strings.Contains(out, "fleet test marker") {
		t.Fatalf("fleet job logs: %d\n%s%s", code, out, errs)
	}
	for _, secret := range []string{"864213", "ERIKSSON"} {
		if strings.Contains(out, secret) || strings.Contains(st.Executions[0].Result, secret) {
			t.Fatalf("collected logs hold %q:\n%s", secret, out)
		}
	}
	zr, err := zip.OpenReader(filepath.Join(diagDir, device+"-logs-1-diagnostics.zip"))
	if err != nil {
		t.Fatalf("diagnostics zip: %v", err)
	}
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
	}
	zr.Close()
	if !names["counters.json"] || !names["health.json"] || !names["README.txt"] {
		t.Fatalf("diagnostics zip holds %v", names)
	}
	t.Logf("collect_logs: result %d bytes; zip holds %v; %s", len(st.Executions[0].Result), names, strings.SplitN(out, "\n", 2)[0])
	if st := job("logs-bad", jobwire.KindCollectLogs, `{"lines":999999}`); st.Executions[0].Status != jobwire.StatusRejected ||
		!strings.HasPrefix(st.Executions[0].Reason, jobwire.ReasonBadDocument) {
		t.Fatalf("bad collect_logs document: %+v", st.Executions[0])
	}

	// The kiosk's own renewal is not due (a year left): the hub refuses
	// it; the operator's rotate_certificate job renews now.
	var rej *enroll.RejectedError
	if err := r.d.tx.renewer.Renew(context.Background()); !errors.As(err, &rej) || rej.Code != enrollwire.CodeNotDue {
		t.Fatalf("renewal without a job: %v", err)
	}
	st = job("rotate-1", jobwire.KindRotateCert, "")
	var cr jobwire.CertResult
	if x := st.Executions[0]; x.Status != jobwire.StatusSucceeded || json.Unmarshal([]byte(x.Result), &cr) != nil {
		t.Fatalf("rotate_certificate: %+v", x)
	}
	now := r.d.tx.signer.Certificate()
	if cr.PreviousSerial != cert.SerialNumber.Text(16) || cr.Serial != now.SerialNumber.Text(16) || cr.Serial == cr.PreviousSerial ||
		!cr.NotAfter.Equal(now.NotAfter) {
		t.Fatalf("rotation result %+v, certificate now %s", cr, now.SerialNumber.Text(16))
	}
	r.waitHealth(t, "hub ok with the new certificate", func(h Health) bool { return h.Components["hub"].State == "ok" })
	// The same job cannot mint a second certificate (its execution is
	// finished, and the old key is superseded).
	if err := r.d.tx.renewer.RenewFor(context.Background(), "rotate-1"); !errors.As(err, &rej) || rej.Code != enrollwire.CodeNotDue {
		t.Fatalf("second renewal with a finished job: %v", err)
	}

	// service_off holds across a restart; staff maintenance does not lift
	// it; service_on does.
	if st := job("off-1", jobwire.KindServiceOff, ""); st.Executions[0].Status != jobwire.StatusSucceeded {
		t.Fatalf("service_off: %+v", st.Executions[0])
	}
	if got := r.d.session.OutOfService(); got != feedback.ReasonService {
		t.Fatalf("out of service %q", got)
	}
	if st := job("maint-off", jobwire.KindMaintenanceOff, ""); r.d.session.OutOfService() != feedback.ReasonService {
		t.Fatalf("maintenance_off lifted the fleet's hold: %+v", st.Executions[0])
	}
	listed("out of service", func(d fleet.Device) bool { return d.Reported != nil && d.Reported.Service == feedback.ReasonService })
	r.stop(t)
	r = start(t, kioskConf)
	waitCond(t, "out of service after a restart", func() bool { return r.d.session.OutOfService() == feedback.ReasonService })
	h := r.d.Health()
	if c := h.Components["session"]; c.State != "degraded" || !strings.Contains(fmt.Sprint(c.Info), "off-1") {
		t.Fatalf("health session %+v", c)
	}
	r.waitHealth(t, "hub ok", func(h Health) bool { return h.Components["hub"].State == "ok" })
	if st := job("on-1", jobwire.KindServiceOn, ""); st.Executions[0].Status != jobwire.StatusSucceeded || r.d.session.OutOfService() != "" {
		t.Fatalf("service_on: %+v, out of service %q", st.Executions[0], r.d.session.OutOfService())
	}
	r.stop(t)
	r = start(t, kioskConf)
	time.Sleep(500 * time.Millisecond) // the feedback controller has started
	if got := r.d.session.OutOfService(); got != "" {
		t.Fatalf("out of service after service_on and a restart: %q", got)
	}
}
