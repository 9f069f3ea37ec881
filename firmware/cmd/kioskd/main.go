// Command kioskd is the kiosk appliance daemon. See README.md.
package main

import (
	"os"

	"kiosk/firmware/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(daemon.Main(os.Args[1:], os.Stderr, version))
}
