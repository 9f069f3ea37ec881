package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubd"
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
	fmt.Fprintln(tw, "DEVICE\tONLINE\tSINCE")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%v\t%s\n", d.ID, d.Online, d.Since.Format(time.RFC3339))
	}
	_ = tw.Flush()
	return ExitOK
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

func jobKinds() []string {
	return []string{"ping", "health", "reboot", "maintenance_on", "maintenance_off", "reload_trust", "…"}
}

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

// fleetWatch: kioskctl fleet watch — presence changes and job progress as
// they happen (polled once a second).
func fleetWatch(e *env, args []string) int {
	fs, hubURL, tokenFile, asJSON := fleetFlags(e, "fleet watch")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return ExitUsage
	}
	c, ok := newFleetClient(e, *hubURL, *tokenFile)
	if !ok {
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	seen := map[string]string{}
	emit := func(key, line string, v any) {
		if seen[key] == line {
			return
		}
		seen[key] = line
		if *asJSON {
			_ = json.NewEncoder(e.stdout).Encode(v)
		} else {
			fmt.Fprintf(e.stdout, "%s %s\n", time.Now().Format("15:04:05"), line)
		}
	}
	for {
		var ds []fleet.Device
		var js []fleet.Job
		if err := c.do(ctx, "GET", "/fleet/devices", nil, &ds); err != nil {
			if ctx.Err() != nil {
				return ExitOK
			}
			fmt.Fprintf(e.stderr, "kioskctl fleet watch: %v\n", err)
			return ExitFail
		}
		for _, d := range ds {
			state := "offline"
			if d.Online {
				state = "online"
			}
			emit("device/"+d.ID, fmt.Sprintf("device %s %s", d.ID, state), d)
		}
		if err := c.do(ctx, "GET", "/fleet/jobs", nil, &js); err == nil {
			for _, j := range js {
				var st hubd.JobStatus
				if j.State == fleet.JobRunning || seen["job/"+j.ID] == "" {
					if err := c.do(ctx, "GET", "/fleet/jobs/"+j.ID, nil, &st); err == nil {
						emit("job/"+j.ID, progress(st.Summary), st.Summary)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return ExitOK
		case <-time.After(time.Second):
		}
	}
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
