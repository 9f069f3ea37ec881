package ctl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// fleetBundleMake: kioskctl fleet bundle make — an update_trust_bundle
// document from a directory (CSCA certificates, master lists, CRLs and,
// optionally, hub-auth.pem with the hub's authorization certificates).
// Without --url it prints the document itself (for small bundles: the job
// document holds at most 48 KiB); with --url it writes the bundle to --out,
// to be published at that URL, and prints the reference document the job
// carries (URL, size and SHA-256, sealed with the job).
func fleetBundleMake(e *env, args []string) int {
	fs := flag.NewFlagSet("fleet bundle make", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	version := fs.Int("version", 0, "bundle version (greater than the one the kiosks hold)")
	url := fs.String("url", "", "where the bundle will be published (the job then carries a reference)")
	out := fs.String("out", "", "with --url: the bundle file to publish")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *version < 1 || (*url == "") != (*out == "") {
		fmt.Fprintln(e.stderr, "usage: kioskctl fleet bundle make --version N [--url URL --out FILE] DIR")
		return ExitUsage
	}
	dir := fs.Arg(0)
	ents, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "bundle: %v\n", err)
		return ExitUsage
	}
	files := map[string][]byte{}
	var names []string
	for _, ent := range ents {
		if !ent.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			fmt.Fprintf(e.stderr, "bundle: %v\n", err)
			return ExitUsage
		}
		files[ent.Name()] = b
		names = append(names, ent.Name())
	}
	if len(files) == 0 {
		fmt.Fprintf(e.stderr, "bundle: %s holds no files\n", dir)
		return ExitUsage
	}
	body, err := json.Marshal(map[string]any{"version": *version, "files": files})
	if err != nil {
		fmt.Fprintf(e.stderr, "bundle: %v\n", err)
		return ExitFail
	}
	sort.Strings(names)
	if *url == "" {
		if len(body) > 48<<10 {
			fmt.Fprintf(e.stderr, "bundle: %d bytes, over the job document's 48 KiB: publish it (--url, --out)\n", len(body))
			return ExitFail
		}
		fmt.Fprintln(e.stdout, string(body))
		fmt.Fprintf(e.stderr, "bundle v%d: %d files %v\n", *version, len(names), names)
		return ExitOK
	}
	if err := os.WriteFile(*out, body, 0o644); err != nil {
		fmt.Fprintf(e.stderr, "bundle: %v\n", err)
		return ExitFail
	}
	sum := sha256.Sum256(body)
	ref, _ := json.Marshal(map[string]any{"version": *version, "url": *url, "size": len(body), "sha256": hex.EncodeToString(sum[:])})
	fmt.Fprintln(e.stdout, string(ref))
	fmt.Fprintf(e.stderr, "bundle v%d: %d files %v, %d bytes in %s: publish it at %s\n", *version, len(names), names, len(body), *out, *url)
	return ExitOK
}
