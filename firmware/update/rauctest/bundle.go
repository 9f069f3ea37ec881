package rauctest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// Compatible is the compatible string of the test system and its bundles.
const Compatible = "kiosk-ota-test"

// RootFS writes an ext4 image of the directory tree (mke2fs -d: no mount
// needed), sized to the tree with room for the file system itself.
func RootFS(ctx context.Context, tree, out string) error {
	var size int64
	if err := filepath.WalkDir(tree, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil {
			size += fi.Size() + 4096
		}
		return nil
	}); err != nil {
		return fmt.Errorf("rauctest: rootfs tree: %w", err)
	}
	mib := size*5/4/(1<<20) + 8
	os.Remove(out)
	return run(ctx, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-E", "root_owner=0:0", "-d", tree, out, fmt.Sprintf("%dM", mib))
}

// Bundle writes a RAUC bundle of one root file system image, signed with
// the release key: manifest [update] compatible and version, [image.rootfs].
func Bundle(ctx context.Context, p PKI, compatible, version, rootfs, out string) error {
	dir, err := os.MkdirTemp("", "bundle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	manifest := fmt.Sprintf("[update]\ncompatible=%s\nversion=%s\nbuild=kiosk firmware %s\n\n[image.rootfs]\nfilename=rootfs.ext4\n", compatible, version, version)
	if err := os.WriteFile(filepath.Join(dir, "manifest.raucm"), []byte(manifest), 0o644); err != nil {
		return err
	}
	if err := copyFile(rootfs, filepath.Join(dir, "rootfs.ext4")); err != nil {
		return err
	}
	os.Remove(out)
	return run(ctx, "rauc", "bundle", "--cert="+p.Cert, "--key="+p.Key, dir, out)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %v: %w: %s", name, args, err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.String(), nil
}
