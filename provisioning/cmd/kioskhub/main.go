// Command kioskhub is the bank hub daemon. See README.md and docs/scale.md.
package main

import (
	"os"

	"kiosk/provisioning/hubd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(hubd.Main(os.Args[1:], os.Stdout, os.Stderr, version))
}
