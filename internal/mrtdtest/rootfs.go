package mrtdtest

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// makeRootfs makes the tiny rootfs at dir: the mount points mrtd needs,
// /bin/probe built from testdata/probe, and two files that fail as commands.
func makeRootfs(root, dir string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "run", "etc", "srv"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "not-executable"), []byte("#!/bin/probe\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "no-interp"), []byte("#!/missing/interp\n"), 0o755); err != nil {
		return err
	}
	return goBuild(root, filepath.Join(dir, "bin", "probe"), "./internal/mrtdtest/testdata/probe")
}

// WriteTarZst packs dir into a tar.zst at dst, owned by the test's uid.
func WriteTarZst(t testing.TB, dir, dst string) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = os.WriteFile(dst, buf.Bytes(), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
