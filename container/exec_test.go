package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHeadBuffer(t *testing.T) {
	t.Parallel()
	b := &headBuffer{max: 5}
	b.Write([]byte("abc"))
	if got, more := b.bytes(); string(got) != "abc" || more {
		t.Fatalf("after 3 bytes: %q, %v", got, more)
	}
	b.Write([]byte("defg"))
	b.Write([]byte("h"))
	if got, more := b.bytes(); string(got) != "abcde" || !more {
		t.Fatalf("after 8 bytes: %q, %v; want the first 5 and more", got, more)
	}
}

// TestExec runs commands in a running container with Runtime.Exec, in the
// helper (rootless, as the pool runs runc), which checks each result and
// prints what was wrong.
func TestExec(t *testing.T) {
	e := integration(t)
	dir := e.userDir(t, "run")
	e.runHelper(t, "init", dir)
	out := e.runHelper(t, "exec", dir, "exec", e.rootfs)
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("Exec:\n%s", out)
	}
}

// helperExec starts a container running probe pause through a reaper, as
// the pool does, runs commands in it with Exec, prints what was not as
// expected (or "ok"), then stops and deletes it.
func helperExec(ctx context.Context, rt *Runtime, id, rootfs string) error {
	ctx, rp, stop, err := startReaper(ctx)
	if err != nil {
		return err
	}
	defer stop()

	ready := make(chan struct{})
	var once sync.Once
	o := Options{Rootfs: rootfs, Args: []string{"/bin/probe", "pause"}, Env: []string{"HEALTH=yes"}, Cwd: "/tmp",
		UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	p, err := rt.Start(ctx, id, o, rp, func(stream string, line []byte, partial bool) {
		if stream == "stdout" && string(line) == "ready" {
			once.Do(func() { close(ready) })
		}
	})
	if err != nil {
		return err
	}
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		return errors.New("no ready line within 30s")
	}
	var problems []string
	xctx := ctx
	check := func(name string, args []string, timeout time.Duration, want func(ExecResult, error) string) {
		res, err := rt.Exec(xctx, id, args, timeout)
		if msg := want(res, err); msg != "" {
			problems = append(problems, fmt.Sprintf("%s: %s (exit %d, timed out %v, truncated %v, output %q, error %v)",
				name, msg, res.ExitCode, res.TimedOut, res.Truncated, res.Output, err))
		}
	}
	const long = 10 * time.Second
	check("echo", []string{"/bin/probe", "echo", "hi"}, long, func(r ExecResult, err error) string {
		if err != nil || r.ExitCode != 0 || string(r.Output) != "hi\n" || r.TimedOut || r.Truncated {
			return "want exit 0 and hi"
		}
		return ""
	})
	check("the container's env", []string{"/bin/probe", "cat", "/proc/self/environ"}, long, func(r ExecResult, err error) string {
		if err != nil || !strings.Contains(string(r.Output), "HEALTH=yes") {
			return "want the container's environment"
		}
		return ""
	})
	check("the container's cwd", []string{"/bin/probe", "pwd"}, long, func(r ExecResult, err error) string {
		if err != nil || string(r.Output) != "/tmp\n" {
			return "want /tmp"
		}
		return ""
	})
	check("exit status", []string{"/bin/probe", "exit", "3"}, long, func(r ExecResult, err error) string {
		if err != nil || r.ExitCode != 3 {
			return "want exit 3 and no error"
		}
		return ""
	})
	check("stderr", []string{"/bin/probe", "stderr", "oops"}, long, func(r ExecResult, err error) string {
		if err != nil || string(r.Output) != "oops\n" {
			return "want stderr in the output"
		}
		return ""
	})
	check("long output", []string{"/bin/probe", "long", "5000"}, long, func(r ExecResult, err error) string {
		if err != nil || len(r.Output) != MaxExecOutput || !r.Truncated {
			return fmt.Sprintf("want the first %d bytes, truncated", MaxExecOutput)
		}
		return ""
	})
	check("missing command", []string{"/nonexistent"}, long, func(r ExecResult, err error) string {
		var xe *ExecError
		if !errors.As(err, &xe) || !strings.Contains(xe.Reason, "/nonexistent") || strings.Contains(xe.Reason, "exec failed") {
			return "want an *ExecError naming the command"
		}
		return ""
	})
	check("timeout", []string{"/bin/probe", "pause"}, 300*time.Millisecond, func(r ExecResult, err error) string {
		if err != nil || !r.TimedOut || r.ExitCode != 137 {
			return "want a timeout, killed (137)"
		}
		return ""
	})
	// Only the init and ls itself: the timed-out probe is gone.
	check("nothing left", []string{"/bin/probe", "ls", "/proc"}, long, func(r ExecResult, err error) string {
		pids := 0
		for _, l := range strings.Fields(string(r.Output)) {
			if l != "" && strings.Trim(l, "0123456789") == "" {
				pids++
			}
		}
		if err != nil || pids != 2 {
			return fmt.Sprintf("want 2 processes in the container, found %d", pids)
		}
		return ""
	})
	xctx, cancelX := context.WithCancel(ctx)
	cancelX()
	check("cancelled", []string{"/bin/probe", "pause"}, long, func(r ExecResult, err error) string {
		if !r.TimedOut {
			return "want the command killed when ctx ends"
		}
		return ""
	})

	if len(problems) == 0 {
		fmt.Println("ok")
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	p.Signal(15)
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		return errors.New("the container did not stop on SIGTERM")
	}
	return rt.Delete(ctx, p)
}
