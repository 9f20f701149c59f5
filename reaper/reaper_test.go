package reaper

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func startReaper(t *testing.T) *Reaper {
	t.Helper()
	if err := SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	r := New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func TestStartWait(t *testing.T) {
	r := startReaper(t)
	for _, tc := range []struct {
		name   string
		script string
		code   int
		out    string
	}{
		{"exit 0", "echo hi", 0, "hi\n"},
		{"exit 3", "echo bye; exit 3", 3, "bye\n"},
		{"killed", "kill -9 $$", 128 + 9, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", tc.script)
			var out bytes.Buffer
			cmd.Stdout = &out // through a pipe exec copies: Wait must wait for it
			ec, err := r.Start(cmd)
			if err != nil {
				t.Fatal(err)
			}
			code, err := r.Wait(cmd, ec)
			if err != nil || code != tc.code || out.String() != tc.out {
				t.Fatalf("code %d, err %v, output %q; want %d, %q", code, err, out.String(), tc.code, tc.out)
			}
		})
	}
}

// TestOrphanIsReaped checks that a grandchild orphaned by its parent, as a
// container's init is when runc exits, is reaped and routed by pid, whether
// it is watched before or after it exits.
func TestOrphanIsReaped(t *testing.T) {
	r := startReaper(t)
	for _, tc := range []struct {
		name  string
		sleep string
		late  bool
	}{
		{"watched before it exits", "0.3", false},
		{"watched after it exits", "0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", "(sleep "+tc.sleep+"; exit 5) >/dev/null 2>&1 & echo $!")
			var out bytes.Buffer
			cmd.Stdout = &out
			ec, err := r.Start(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if code, _ := r.Wait(cmd, ec); code != 0 {
				t.Fatalf("parent exited %d", code)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
			if err != nil {
				t.Fatal(err)
			}
			if tc.late {
				// Let it exit and be reaped before anyone watches.
				deadline := time.Now().Add(10 * time.Second)
				for {
					r.mu.Lock()
					_, ok := r.unclaimed[pid]
					r.mu.Unlock()
					if ok {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("orphan was not reaped")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			select {
			case e := <-r.Watch(pid):
				if e.Pid != pid || e.Code() != 5 {
					t.Fatalf("exit %+v code %d, want pid %d code 5", e, e.Code(), pid)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no exit for the orphan")
			}
		})
	}
}
