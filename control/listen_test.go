package control

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSocketPath(t *testing.T) {
	t.Parallel()
	if got, want := SocketPath("/run/user/1000/mrtd", "mrtd"), "/run/user/1000/mrtd/mrtd.sock"; got != want {
		t.Errorf("SocketPath = %s, want %s", got, want)
	}
}

func TestListen(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		stale func(path string) error // what a daemon that died left at path
	}{
		{"nothing there", func(string) error { return nil }},
		{"stale socket", func(path string) error {
			return unix.Mknod(path, unix.S_IFSOCK|0o666, 0)
		}},
		{"stale file", func(path string) error { return os.WriteFile(path, nil, 0o644) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "test.sock")
			if err := tc.stale(path); err != nil {
				t.Fatal(err)
			}
			ln, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
				t.Errorf("socket file mode %v, want a socket of mode 0600", fi.Mode())
			}
			ln.Close()
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file after Close: %v, want it gone", err)
			}
		})
	}
}

// Listen leaves the process's umask as it found it.
func TestListenKeepsUmask(t *testing.T) {
	// Not parallel: it reads the process's umask by setting it.
	before := unix.Umask(0o022)
	unix.Umask(before)
	ln, err := Listen(filepath.Join(t.TempDir(), "test.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	after := unix.Umask(0o022)
	unix.Umask(after)
	if after != before {
		t.Errorf("umask %#o after Listen, was %#o", after, before)
	}
}

func TestListenFails(t *testing.T) {
	t.Parallel()
	_, err := Listen(filepath.Join(t.TempDir(), "missing", "test.sock"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Listen in a missing directory = %v, want ENOENT", err)
	}
}
