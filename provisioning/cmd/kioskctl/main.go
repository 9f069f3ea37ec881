// Command kioskctl is the staff and operator tool for kiosks. See README.md.
package main

import (
	"os"

	"kiosk/provisioning/ctl"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(ctl.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, version))
}
