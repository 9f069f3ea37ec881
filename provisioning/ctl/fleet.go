package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"kiosk/firmware/jobwire"
	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubd"
	"kiosk/provisioning/hubstore"
)

// kioskctl fleet talks to a kioskhub's operator API (its http.listen,
// bearer token from http.operator_token_file).

type fleetClient struct {
	base  string
	token string
	http  *http.Client
}

func fleetFlags(e *env, name string) (*flag.FlagSet, *string, *string, *bool) {
	fs := flag.NewFlagSet("kioskctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	hubURL := fs.String("hub", "http://127.0.0.1:9180", "the kioskhub's operator API (its http.listen)")
	tokenFile := fs.String("token-file", "/etc/kioskhub/operator-token", "the operator token (the hub's http.operator_token_file)")
	asJSON := fs.Bool("json", false, "JSON output for scripts")
	return fs, hubURL, tokenFile, asJSON
}

func newFleetClient(e *env, hubURL, tokenFile string) (*fleetClient, bool) {
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet: operator token: %v\n", err)
		return nil, false
	}
	return &fleetClient{base: strings.TrimRight(hubURL, "/"), token: strings.TrimSpace(string(b)), http: &http.Client{Timeout: 30 * time.Second}}, true
}

// do calls the API and decodes a 2xx answer into out; the hub's error
// message otherwise.
func (c *fleetClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("hub: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("hub: HTTP %d", resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// fleetList: kioskctl fleet list.
func fleetList(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet list")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	var ds []fleet.Device
	if err := c.do(context.Background(), "GET", "/fleet/devices", nil, &ds); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet list: %v\n", err)
		return ExitFail
	}
	if *asJSON {
		printJSON(e, ds)
		return ExitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tONLINE\tSINCE\tHEALTH\tFIRMWARE\tBUNDLE\tCONFIG\tOUTBOX\tCERT EXPIRES\tSERVICE")
	for _, d := range ds {
		since := "-"
		if !d.Since.IsZero() {
			since = d.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", d.ID, d.Online, since, reportedColumns(d.Reported))
	}
	_ = tw.Flush()
	return ExitOK
}

// reportedColumns: what the kiosk's last health telemetry says ("-"
// before the first).
func reportedColumns(r *fleet.HealthReport) string {
	if r == nil {
		return "-\t-\t-\t-\t-\t-\t-"
	}
	cert := "-"
	if !r.CertNotAfter.IsZero() {
		cert = r.CertNotAfter.UTC().Format("2006-01-02")
	}
	svc := "in service"
	if r.Service != "" {
		svc = "out: " + r.Service
	}
	fw := r.Firmware
	if fw == "" {
		fw = "-"
	}
	return fmt.Sprintf("%s\t%s\tv%d\tv%d\t%d\t%s\t%s", r.Status, fw, r.TrustBundle, r.ConfigVersion, r.OutboxDepth, cert, svc)
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, strings.Split(s, ",")...); return nil }

// fleetJobCreate: kioskctl fleet job create.
func fleetJobCreate(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet job create")
	var req hubd.JobRequest
	var devices listFlag
	fs.StringVar(&req.Kind, "kind", "", "what to do: "+strings.Join(jobKinds(), ", "))
	fs.StringVar(&req.ID, "id", "", "job id (default: random)")
	fs.StringVar(&req.Doc, "doc", "", "the kind's document (JSON)")
	fs.StringVar(&req.Group, "group", "", "target group ([fleet.groups] of the hub)")
	fs.Var(&devices, "device", "target device (repeat or comma-separate)")
	fs.StringVar(&req.TTL, "ttl", "1h", "how long the job stays valid")
	fs.IntVar(&req.PerMinute, "per-minute", 0, "rollout pace: offers a minute (0: all at once)")
	fs.IntVar(&req.InFlight, "in-flight", 0, "at most this many devices working at once (0: no limit)")
	fs.IntVar(&req.AbortPercent, "abort-percent", 0, "stop the rollout once more than this % of finished executions failed")
	fs.IntVar(&req.MinFinished, "min-finished", 1, "finished executions before the abort threshold applies")
	wait := fs.Bool("wait", false, "show the rollout's progress until it ends")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || req.Kind == "" || (req.Group == "" && len(devices) == 0) {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet job create --kind KIND (--group NAME | --device ID ...) [--ttl 1h] [--per-minute N] [--in-flight N] [--abort-percent P] [--wait] [--json]")
		return ExitUsage
	}
	req.Devices = devices
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	var j fleet.Job
	if err := c.do(context.Background(), "POST", "/fleet/jobs", req, &j); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet job create: %v\n", err)
		return ExitFail
	}
	if !*wait {
		if *asJSON {
			printJSON(e, j)
		} else {
			fmt.Fprintf(e.stdout, "job %s: %s for %d device(s), expires %s\n", j.ID, j.Kind, len(j.Devices), j.Expires.Format(time.RFC3339))
		}
		return ExitOK
	}
	return watchJob(e, c, j.ID, *asJSON)
}

func jobKinds() []string { return jobwire.Kinds }

// watchJob prints progress lines until the job is done (or ctrl-C).
func watchJob(e *env, c *fleetClient, id string, asJSON bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	last := ""
	for {
		var st hubd.JobStatus
		if err := c.do(ctx, "GET", "/fleet/jobs/"+id, nil, &st); err != nil {
			fmt.Fprintf(e.stderr, "kioskctl fleet: %v\n", err)
			return ExitFail
		}
		line := progress(st.Summary)
		if line != last && !asJSON {
			fmt.Fprintln(e.stdout, line)
			last = line
		}
		if st.Summary.Done || st.Summary.Job.State == fleet.JobCancelled {
			if asJSON {
				printJSON(e, st)
			}
			if st.Summary.Counts["succeeded"] != len(st.Executions) {
				return ExitFail
			}
			return ExitOK
		}
		select {
		case <-ctx.Done():
			return ExitFail
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func progress(s fleet.Summary) string {
	var keys []string
	total := 0
	for k, n := range s.Counts {
		keys = append(keys, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	slices.Sort(keys)
	return fmt.Sprintf("job %s (%s, %s): %d device(s): %s", s.Job.ID, s.Job.Kind, s.Job.State, total, strings.Join(keys, ", "))
}

// fleetJobStatus: kioskctl fleet job status ID.
func fleetJobStatus(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet job status")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet job status [--json] JOB_ID")
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	var st hubd.JobStatus
	if err := c.do(context.Background(), "GET", "/fleet/jobs/"+fs.Arg(0), nil, &st); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet job status: %v\n", err)
		return ExitFail
	}
	if *asJSON {
		printJSON(e, st)
		return ExitOK
	}
	fmt.Fprintln(e.stdout, progress(st.Summary))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSTATUS\tOFFERS\tUPDATED\tREASON")
	for _, x := range st.Executions {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", x.Device, x.Status, x.Offers, x.Updated.Format(time.RFC3339), x.Reason)
	}
	_ = tw.Flush()
	return ExitOK
}

// fleetJobCancel: kioskctl fleet job cancel ID.
func fleetJobCancel(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet job cancel")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet job cancel [--json] JOB_ID")
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	var out map[string]int
	if err := c.do(context.Background(), "POST", "/fleet/jobs/"+fs.Arg(0)+"/cancel", nil, &out); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet job cancel: %v\n", err)
		return ExitFail
	}
	if *asJSON {
		printJSON(e, out)
	} else {
		fmt.Fprintf(e.stdout, "job %s cancelled: %d device(s) not offered yet were cancelled; executions under way finish\n", fs.Arg(0), out["cancelled"])
	}
	return ExitOK
}

// fleetWatch: kioskctl fleet watch — the devices and running jobs now,
// then presence changes and job progress as they happen, streamed by the
// hub (GET /fleet/events, server-sent events; reconnected if it drops).
func fleetWatch(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet watch")
	count := fs.Int("count", 0, "stop after this many streamed events (0: never)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *count < 0 {
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	emit := func(line string, v any) {
		if *asJSON {
			_ = json.NewEncoder(e.stdout).Encode(v)
		} else {
			fmt.Fprintf(e.stdout, "%s %s\n", time.Now().Format("15:04:05"), line)
		}
	}
	var ds []fleet.Device
	if err := c.do(ctx, "GET", "/fleet/devices", nil, &ds); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet watch: %v\n", err)
		return ExitFail
	}
	for _, d := range ds {
		emit(fmt.Sprintf("device %s %s", d.ID, map[bool]string{true: "online", false: "offline"}[d.Online]), d)
	}
	var js []fleet.Job
	if err := c.do(ctx, "GET", "/fleet/jobs", nil, &js); err == nil {
		for _, j := range js {
			var st hubd.JobStatus
			if j.State == fleet.JobRunning && c.do(ctx, "GET", "/fleet/jobs/"+j.ID, nil, &st) == nil {
				emit(progress(st.Summary), st.Summary)
			}
		}
	}
	n := 0
	for attempt := 0; ; attempt++ {
		err := c.stream(ctx, "/fleet/events", func(ev fleet.Event) bool {
			attempt = 0
			emit(eventLine(ev), ev)
			n++
			return *count == 0 || n < *count
		}, func(note string) {
			// What the hub says of the stream itself (events dropped or
			// possibly missing) goes where the operator sees it, not into
			// the event output.
			fmt.Fprintf(e.stderr, "kioskctl fleet watch: hub: %s\n", note)
		})
		if ctx.Err() != nil || (*count > 0 && n >= *count) {
			return ExitOK
		}
		wait := min(10*time.Second, 500*time.Millisecond<<min(attempt, 5))
		fmt.Fprintf(e.stderr, "kioskctl fleet watch: stream ended (%v); again in %s\n", err, wait)
		select {
		case <-ctx.Done():
			return ExitOK
		case <-time.After(wait):
		}
	}
}

func eventLine(ev fleet.Event) string {
	switch ev.Kind {
	case "presence":
		return fmt.Sprintf("device %s %s", ev.Device, ev.Status)
	case "job":
		return strings.TrimSpace(fmt.Sprintf("job %s %s %s", ev.JobID, ev.Status, ev.Reason))
	case "warning":
		return fmt.Sprintf("job %s %s: refused something not sealed for it: %s", ev.JobID, ev.Device, ev.Reason)
	}
	return strings.TrimSpace(fmt.Sprintf("job %s %s %s %s", ev.JobID, ev.Device, ev.Status, ev.Reason))
}

// stream reads a server-sent event stream, calling f with each event
// until f returns false, the stream ends or ctx does, and note with each
// comment line but the hub's greeting and keepalives.
func (c *fleetClient) stream(ctx context.Context, path string, f func(fleet.Event) bool, note func(string)) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	// No client timeout: the stream is long-lived (the hub sends
	// keepalives).
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("hub: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if c, ok := strings.CutPrefix(sc.Text(), ": "); ok {
			if c != "keepalive" && c != "kioskhub fleet events" {
				note(c)
			}
			continue
		}
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev fleet.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		if !f(ev) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the hub closed the stream")
}

// fleetConfigSet: kioskctl fleet config set (--group G | --device D ...) key=value ...
// A value that is JSON (a number, true/false, a quoted string) is taken
// as such; anything else as a string ("45s").
func fleetConfigSet(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet config set")
	var req hubd.ConfigRequest
	var devices listFlag
	fs.StringVar(&req.Group, "group", "", "target group")
	fs.Var(&devices, "device", "target device (repeat or comma-separate)")
	fs.IntVar(&req.InFlight, "in-flight", 0, "at most this many devices working at once (0: no limit)")
	fs.IntVar(&req.AbortPercent, "abort-percent", 0, "stop the rollout once more than this % failed or refused it")
	wait := fs.Bool("wait", false, "show the rollout's progress until it ends")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 || (req.Group == "" && len(devices) == 0) {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet config set (--group NAME | --device ID ...) [--wait] [--json] KEY=VALUE ...")
		return ExitUsage
	}
	req.Devices = devices
	req.Settings = map[string]json.RawMessage{}
	for _, kv := range fs.Args() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(e.stderr, "kioskctl fleet config set: %q is not KEY=VALUE\n", kv)
			return ExitUsage
		}
		if json.Valid([]byte(v)) {
			req.Settings[k] = json.RawMessage(v)
		} else {
			b, _ := json.Marshal(v)
			req.Settings[k] = b
		}
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	var out struct {
		Version int       `json:"version"`
		Job     fleet.Job `json:"job"`
	}
	if err := c.do(context.Background(), "POST", "/fleet/config", req, &out); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet config set: %v\n", err)
		return ExitFail
	}
	if !*wait {
		if *asJSON {
			printJSON(e, out)
		} else {
			fmt.Fprintf(e.stdout, "config v%d: job %s for %d device(s)\n", out.Version, out.Job.ID, len(out.Job.Devices))
		}
		return ExitOK
	}
	if !*asJSON {
		fmt.Fprintf(e.stdout, "config v%d: job %s\n", out.Version, out.Job.ID)
	}
	return watchJob(e, c, out.Job.ID, *asJSON)
}

// fleetConfigGet: kioskctl fleet config get.
func fleetConfigGet(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet config get")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	var st fleet.ConfigState
	if err := c.do(context.Background(), "GET", "/fleet/config", nil, &st); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet config get: %v\n", err)
		return ExitFail
	}
	if *asJSON {
		printJSON(e, st)
		return ExitOK
	}
	if st.Desired == nil {
		fmt.Fprintln(e.stdout, "desired: none (kiosks run their files)")
	} else {
		keys := make([]string, 0, len(st.Desired.Settings))
		for k := range st.Desired.Settings {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(e.stdout, "desired: v%d (job %s)\n", st.Desired.Version, st.DesiredJobID)
		for _, k := range keys {
			fmt.Fprintf(e.stdout, "  %s = %s\n", k, st.Desired.Settings[k])
		}
	}
	devs := make([]string, 0, len(st.Reported))
	for d := range st.Reported {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tAPPLIED\tHASH\tREFUSED")
	for _, d := range devs {
		r := st.Reported[d]
		h := r.Hash
		if len(h) > 12 {
			h = h[:12]
		}
		fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\n", d, r.Version, h, r.Rejected)
	}
	_ = tw.Flush()
	return ExitOK
}

// fleetJobLogs: kioskctl fleet job logs JOB_ID — the redacted log lines a
// collect_logs job brought back, per device, and their diagnostics
// archives written to --diagnostics DIR.
func fleetJobLogs(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet job logs")
	device := fs.String("device", "", "only this device")
	diagDir := fs.String("diagnostics", "", "write each device's diagnostics zip into this directory")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet job logs [--device ID] [--diagnostics DIR] [--json] JOB_ID")
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	id := fs.Arg(0)
	var st hubd.JobStatus
	if err := c.do(context.Background(), "GET", "/fleet/jobs/"+id, nil, &st); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet job logs: %v\n", err)
		return ExitFail
	}
	if st.Summary.Job.Kind != jobwire.KindCollectLogs {
		fmt.Fprintf(e.stderr, "kioskctl fleet job logs: job %s is a %s job, not %s\n", id, st.Summary.Job.Kind, jobwire.KindCollectLogs)
		return ExitUsage
	}
	results := map[string]jobwire.LogsResult{}
	code := ExitOK
	for _, x := range st.Executions {
		if *device != "" && x.Device != *device {
			continue
		}
		if x.Status != jobwire.StatusSucceeded {
			fmt.Fprintf(e.stderr, "%s: %s %s\n", x.Device, x.Status, x.Reason)
			code = ExitFail
			continue
		}
		var r jobwire.LogsResult
		if err := json.Unmarshal([]byte(x.Result), &r); err != nil {
			fmt.Fprintf(e.stderr, "%s: result: %v\n", x.Device, err)
			code = ExitFail
			continue
		}
		results[x.Device] = r
		if *diagDir != "" && r.Diagnostics != "" {
			zb, err := base64.StdEncoding.DecodeString(r.Diagnostics)
			if err == nil {
				err = os.WriteFile(filepath.Join(*diagDir, fmt.Sprintf("%s-%s-diagnostics.zip", x.Device, id)), zb, 0o600)
			}
			if err != nil {
				fmt.Fprintf(e.stderr, "%s: diagnostics: %v\n", x.Device, err)
				code = ExitFail
			}
		}
	}
	if *device != "" && len(results) == 0 && code == ExitOK {
		fmt.Fprintf(e.stderr, "kioskctl fleet job logs: job %s has no execution on %s\n", id, *device)
		return ExitFail
	}
	if *asJSON {
		printJSON(e, results)
		return code
	}
	devs := slices.Sorted(maps.Keys(results))
	for _, d := range devs {
		r := results[d]
		fmt.Fprintf(e.stdout, "== %s: %d line(s) since %s, %d older not sent; diagnostics: %s\n", d, len(r.Lines),
			r.Since.Format(time.RFC3339), r.Omitted, r.DiagnosticsNote)
		for _, l := range r.Lines {
			fmt.Fprintln(e.stdout, l)
		}
	}
	return code
}

// fleetTxTail: kioskctl fleet tx tail — transactions as the hub applies
// them (long-polls GET /fleet/tx), until ctrl-C or --count.
func fleetTxTail(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet tx tail")
	since := fs.Duration("since", 0, "start with the transactions of this last while (0: only new ones)")
	terminal := fs.String("terminal", "", "only this kiosk")
	count := fs.Int("count", 0, "stop after this many transactions (0: never)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *since < 0 || *count < 0 {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet tx tail [--since 10m] [--terminal ID] [--count N] [--json]")
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	// A long poll waits up to TxTailMaxWait at the hub; the client allows more.
	c.http.Timeout = hubd.TxTailMaxWait + 15*time.Second
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	from := time.Now().Add(-*since)
	var tw *tabwriter.Writer
	if !*asJSON {
		tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RECEIVED\tTERMINAL\tTX\tKIND\tDECISION\tAMOUNT\tAUTH\tREASONS\tBY")
		_ = tw.Flush()
	}
	tail := newTxTail(from)
	n := 0
	for {
		q := url.Values{"after": {tail.cursor()}, "wait": {hubd.TxTailMaxWait.String()}}
		if *terminal != "" {
			q.Set("terminal", *terminal)
		}
		var page hubd.TxPage
		if err := c.do(ctx, "GET", "/fleet/tx?"+q.Encode(), nil, &page); err != nil {
			if ctx.Err() != nil {
				return ExitOK
			}
			fmt.Fprintf(e.stderr, "kioskctl fleet tx tail: %v\n", err)
			return ExitFail
		}
		for _, t := range tail.fresh(page.Items) {
			if *asJSON {
				_ = json.NewEncoder(e.stdout).Encode(t)
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Received.Format(time.RFC3339Nano), t.Terminal, t.TxID, t.Kind,
					t.Decision, fmt.Sprintf("%d %s", t.Amount, t.Currency), t.AuthMode, strings.Join(t.Reasons, ","), t.AppliedBy)
				_ = tw.Flush()
			}
			n++
			if *count > 0 && n >= *count {
				return ExitOK
			}
		}
	}
}

// txTail follows the hub's transactions by cursor. Instances stamp
// "received" before their commit, so one transaction can become visible
// after another stamped later: each poll asks again from tailOverlap
// before the newest seen and drops what it already showed.
type txTail struct {
	newest time.Time
	seen   map[string]time.Time // terminal/tx → received
}

const tailOverlap = 5 * time.Second

func newTxTail(from time.Time) *txTail {
	return &txTail{newest: from.Add(tailOverlap), seen: map[string]time.Time{}}
}

// cursor is where the next poll starts: a page cursor names a
// transaction, so this one names a made-up one a microsecond (the stores'
// precision) before the time.
func (t *txTail) cursor() string {
	return hubstore.Cursor(hubstore.Transaction{Received: t.newest.Add(-tailOverlap - time.Microsecond), Terminal: "~", TxID: "~"})
}

// fresh returns the items not shown before, and remembers them.
func (t *txTail) fresh(items []hubd.TxLine) []hubd.TxLine {
	var out []hubd.TxLine
	for _, it := range items {
		k := it.Terminal + "/" + it.TxID
		if _, ok := t.seen[k]; ok {
			continue
		}
		t.seen[k] = it.Received
		out = append(out, it)
		if it.Received.After(t.newest) {
			t.newest = it.Received
		}
	}
	for k, r := range t.seen {
		if r.Before(t.newest.Add(-2 * tailOverlap)) {
			delete(t.seen, k)
		}
	}
	return out
}

// fleetGroupSet: kioskctl fleet group set NAME --device ID ... — store a
// group at the hub (none: remove it).
func fleetGroupSet(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet group set")
	var devices listFlag
	fs.Var(&devices, "device", "a member (repeat or comma-separate); none removes the group")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet group set [--device ID ...] [--json] NAME")
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	body := map[string][]string{"devices": devices}
	if body["devices"] == nil {
		body["devices"] = []string{}
	}
	var out map[string]any
	if err := c.do(context.Background(), "PUT", "/fleet/groups/"+url.PathEscape(fs.Arg(0)), body, &out); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet group set: %v\n", err)
		return ExitFail
	}
	switch {
	case *asJSON:
		printJSON(e, out)
	case len(devices) == 0:
		fmt.Fprintf(e.stdout, "group %s removed from the hub\n", fs.Arg(0))
	default:
		fmt.Fprintf(e.stdout, "group %s: %d device(s) stored at the hub\n", fs.Arg(0), len(devices))
	}
	return ExitOK
}

// fleetGroupList: kioskctl fleet group list.
func fleetGroupList(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet group list")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	var g hubd.Groups
	if err := c.do(context.Background(), "GET", "/fleet/groups", nil, &g); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl fleet group list: %v\n", err)
		return ExitFail
	}
	if *asJSON {
		printJSON(e, g)
		return ExitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tFROM\tDEVICES")
	for _, name := range slices.Sorted(maps.Keys(g.Stored)) {
		fmt.Fprintf(tw, "%s\thub\t%s\n", name, strings.Join(g.Stored[name], ","))
	}
	for _, name := range slices.Sorted(maps.Keys(g.Static)) {
		from := "config"
		if _, ok := g.Stored[name]; ok {
			from = "config (overridden)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, from, strings.Join(g.Static[name], ","))
	}
	_ = tw.Flush()
	return ExitOK
}
