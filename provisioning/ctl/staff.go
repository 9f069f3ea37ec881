package ctl

import (
	"bufio"
	"flag"
	"fmt"
	"strings"

	"kiosk/firmware/staff"
)

// staffAdd adds a per-person staff account. The PIN is read from stdin
// (one line), never from the command line, where ps and the shell
// history would see it.
func staffAdd(e *env, args []string) int {
	fs := flag.NewFlagSet("staff add", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	file := fs.String("file", "/etc/kioskd/staff", "account file (http.staff_accounts_file), created with mode 0600")
	name := fs.String("name", "", "the person's account name (lowercase)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *name == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl staff add --file FILE --name NAME   (the PIN, 6-12 digits, on stdin)")
		return ExitUsage
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	pin := strings.TrimSpace(line)
	if pin == "" && err != nil {
		fmt.Fprintln(e.stderr, "kioskctl staff add: no PIN on stdin")
		return ExitUsage
	}
	if err := staff.Add(*file, *name, pin); err != nil {
		fmt.Fprintln(e.stderr, "kioskctl staff add:", err)
		return ExitUsage
	}
	fmt.Fprintf(e.stdout, "staff account %s added to %s\n", *name, *file)
	return ExitOK
}
