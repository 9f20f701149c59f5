package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestClientNotRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a socket left by a daemon that died

	cases := []struct {
		name  string
		path  string
		errno syscall.Errno
	}{
		{"no socket", filepath.Join(dir, "none.sock"), syscall.ENOENT},
		{"stale socket", stale, syscall.ECONNREFUSED},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := (&Client{Path: tc.path}).Status(context.Background())
			var nr *NotRunningError
			if !errors.As(err, &nr) {
				t.Fatalf("Status = %+v, %v; want a *NotRunningError", resp, err)
			}
			if nr.Path != tc.path || !errors.Is(err, tc.errno) {
				t.Errorf("got %#v, want path %s and %v", nr, tc.path, tc.errno)
			}
			want := "no mrtd answers at " + tc.path + ": connect: " + tc.errno.Error() +
				" (is it running, with this --instance and --runtime-dir?)"
			if err.Error() != want {
				t.Errorf("error\n got %s\nwant %s", err, want)
			}
		})
	}
}

// silent accepts connections and never answers, until the test ends.
func silent(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "silent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return path
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := (&Client{Path: silent(t), Timeout: 100 * time.Millisecond}).Status(context.Background())
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Status of a daemon that does not answer = %v, want a deadline error", err)
	}
	var nr *NotRunningError
	if errors.As(err, &nr) {
		t.Errorf("a daemon that does not answer is reported as not running: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Status took %v with a 100ms Timeout", took)
	}
}

func TestClientCancel(t *testing.T) {
	t.Parallel()
	path := silent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := (&Client{Path: path}).Status(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Status = %v, want the ctx's error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Status took %v after its ctx ended", took)
	}

	done, cancel := context.WithCancel(context.Background())
	cancel()
	var nr *NotRunningError
	if _, err := (&Client{Path: path}).Status(done); !errors.Is(err, context.Canceled) || errors.As(err, &nr) {
		t.Errorf("Status with a done ctx = %v, want context.Canceled", err)
	}
}
