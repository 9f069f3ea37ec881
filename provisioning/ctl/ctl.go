// Package ctl implements kioskctl's subcommands.
package ctl

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"kiosk/firmware/config"
)

// Exit statuses shared by the subcommands.
const (
	ExitOK    = 0
	ExitFail  = 1 // the check or operation failed
	ExitUsage = 2 // bad usage or input
)

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	version        string
}

type command struct {
	usage string
	run   func(e *env, args []string) int
}

func commands() map[string]command {
	return map[string]command{
		"config check":      {"config check FILE  validate a kioskd configuration file", configCheck},
		"eid issue":         {"eid issue [--kind emrtd] --out DIR --photo FACE.jpg [...] | --kind bankeid --out DIR [...]  make a virtual test eID card (ICAO or bank eID) and its trust store", eidIssue},
		"eid emulate":       {"eid emulate --card DIR --vpcd 127.0.0.1:PORT  run a virtual card against pcscd", eidEmulate},
		"eid read":          {"eid read (--can N | --pin N | --mrz D,B,E) --trust DIR [--json]  read and verify an eID (ICAO or bank eID, from the card)", eidRead},
		"eid trust import":  {"eid trust import --master-list FILE --root CERT --out DIR [--json]  verify an ICAO master list and write its CSCAs into a trust directory", eidTrustImport},
		"eid verify":        {"eid verify --sod FILE [--dg N=FILE ...] --trust DIR [--at RFC3339|signing] [--sod-only] [--json]  passive authentication of files", eidVerify},
		"face compare":      {"face compare A.jpg B.jpg [--json] [--models DIR]  compare the faces of two pictures", faceCompare},
		"face embed":        {"face embed --json [--models DIR] FILE...  print face templates (lab/staff tool)", faceEmbed},
		"face eval":         {"face eval --dataset DIR [--chip] [--json] [--far F]  ROC of the matcher on DIR/person/image; --chip: chip-photo FAR/FRR table", faceEval},
		"face consent":      {"face consent --reference IMG --camera VIDEO_OR_DIR [--json]  run the face step (match, liveness, smile)", faceConsent},
		"face bench":        {"face bench [--camera VIDEO] [--json]  per-stage face timings, sustained fps, peak RSS", faceBench},
		"hub serve":         {"hub serve --broker URL [--broker URL2] --devices DIR --db FILE [--max-tx MINOR --max-daily MINOR] [--group NAME]  run the reference bank hub", hubServe},
		"hub tx list":       {"hub tx list --db FILE [--json]  list the transactions a reference hub holds", hubTxList},
		"hub face enroll":   {"hub face enroll --identity ID --photo FILE.jpg [--config FILE | --dsn URL | --db FILE]  enrol a bank eID holder's face reference at the hub", func(e *env, a []string) int { return hubFace(e, a, true) }},
		"hub face remove":   {"hub face remove --identity ID [--config FILE | --dsn URL | --db FILE]  remove a holder's face reference", func(e *env, a []string) int { return hubFace(e, a, false) }},
		"hub audit verify":  {"hub audit verify (--db FILE | --dsn URL) --terminal ID [--json]  check a kiosk's staff audit chain from the hub's copies", hubAuditVerify},
		"ca init":           {"ca init --out DIR [--org NAME]  make the bank's device CA (root + issuing)", caInit},
		"provision token":   {"provision token --device ID --ttl 30m [--config FILE]  mint a one-time enrollment token at the hub", provisionToken},
		"provision csr":     {"provision csr --device ID --out FILE [--dir DIR] [--tpm DEV]  offline: make the key, write a CSR file (kiosk)", provisionCSR},
		"provision sign":    {"provision sign --csr FILE --device ID --out BUNDLE [--config FILE]  offline: sign a CSR file into a bundle (bank)", provisionSign},
		"provision import":  {"provision import --bundle FILE --root-sha256 HEX [--dir DIR] [--tpm DEV]  offline: verify and install a bundle (kiosk)", provisionImport},
		"provision revoke":  {"provision revoke (--device ID | --serial HEX) [--config FILE]  revoke device certificates at the hub", provisionRevoke},
		"provision enroll":  {"provision enroll --hub BROKER_URL --token T [--dir DIR] [--ca FILE]  enroll this kiosk with the hub", provisionEnroll},
		"staff add":         {"staff add --file FILE --name NAME  add a staff account (PIN of 6-12 digits on stdin; argon2id)", staffAdd},
		"dev-key create":    {"dev-key create --out DIR --device ID [--devices HUBDIR]  make a development device key and certificate", devKeyCreate},
		"fleet config set":  {"fleet config set (--group NAME | --device ID ...) [--wait] [--json] KEY=VALUE ...  the next desired configuration version", fleetConfigSet},
		"fleet config get":  {"fleet config get [--json]  the desired configuration and what each kiosk applied", fleetConfigGet},
		"fleet list":        {"fleet list [--hub URL] [--token-file F] [--json]  kiosks the hub sees: online, health, firmware, trust bundle, config, outbox, certificate, service", fleetList},
		"fleet group set":   {"fleet group set [--device ID ...] [--json] NAME  store a group at the hub (no device: remove it)", fleetGroupSet},
		"fleet group list":  {"fleet group list [--json]  groups stored at the hub and in its configuration", fleetGroupList},
		"fleet bundle make": {"fleet bundle make --version N [--url URL --out FILE] DIR  a trust bundle document (CSCAs, master lists, CRLs, hub-auth.pem) for update_trust_bundle", fleetBundleMake},
		"fleet tx tail":     {"fleet tx tail [--since 10m] [--terminal ID] [--count N] [--json]  transactions as the hub applies them", fleetTxTail},
		"fleet job logs":    {"fleet job logs [--device ID] [--diagnostics DIR] [--json] JOB_ID  what a collect_logs job brought back", fleetJobLogs},
		"fleet watch":       {"fleet watch [--hub URL] [--token-file F] [--json] [--count N]  presence changes and job progress as they happen (streamed by the hub)", fleetWatch},
		"fleet job create":  {"fleet job create --kind KIND (--group NAME | --device ID ...) [--ttl 1h] [--per-minute N] [--in-flight N] [--abort-percent P] [--wait] [--json]  a signed job for kiosks", fleetJobCreate},
		"fleet job status":  {"fleet job status [--json] JOB_ID  a job's executions", fleetJobStatus},
		"fleet job cancel":  {"fleet job cancel [--json] JOB_ID  cancel what is not offered yet", fleetJobCancel},
		"version":           {"version            print the version", func(e *env, _ []string) int { fmt.Fprintln(e.stdout, "kioskctl", e.version); return ExitOK }},
	}
}

// Main runs kioskctl with args (without the program name).
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, version string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, version: version}
	cmds := commands()
	// Longest match first: "config check" before "config".
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := cmds[strings.Join(args[:n], " ")]; ok {
			return c.run(e, args[n:])
		}
	}
	usage(e, cmds)
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return ExitOK
	}
	fmt.Fprintf(stderr, "kioskctl: unknown command %q\n", strings.Join(args, " "))
	return ExitUsage
}

func usage(e *env, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(e.stderr, "usage: kioskctl COMMAND [ARGS]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintln(e.stderr, "  "+cmds[n].usage)
	}
}

func configCheck(e *env, args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(e.stderr, "usage: kioskctl config check FILE")
		return ExitUsage
	}
	if _, err := config.Load(args[0]); err != nil {
		fmt.Fprintf(e.stderr, "%s: invalid\n%v\n", args[0], err)
		return ExitUsage
	}
	fmt.Fprintf(e.stdout, "%s: valid\n", args[0])
	return ExitOK
}
