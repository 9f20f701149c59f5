package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

func TestRunExitStatus(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"success", []string{"/bin/probe", "echo", "hi"}, 0},
		{"exit 7", []string{"/bin/probe", "exit", "7"}, 7},
		{"found in PATH", []string{"probe", "exit", "3"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Run(t, d, e.RunArgs(d, append([]string{"--"}, tc.args...)...)...)
			if r.Code != tc.code {
				t.Fatalf("exit status %d, want %d (stderr: %s)", r.Code, tc.code, r.Stderr)
			}
		})
	}
	mrtdtest.AssertClean(t, d)
}

func TestRunOutput(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	r := e.Run(t, d, e.RunArgs(d, "--", "/bin/probe", "echo", "hello", "world")...)
	if r.Code != 0 || r.Stdout != "hello world\n" {
		t.Fatalf("got status %d stdout %q stderr %q, want 0 and %q", r.Code, r.Stdout, r.Stderr, "hello world\n")
	}
	r = e.Run(t, d, e.RunArgs(d, "--", "/bin/probe", "stderr", "to stderr")...)
	if r.Code != 0 || r.Stderr != "to stderr\n" || r.Stdout != "" {
		t.Fatalf("got status %d stdout %q stderr %q, want the line on stderr only", r.Code, r.Stdout, r.Stderr)
	}
	// A line that merely starts like runc's own failure is the container's.
	r = e.Run(t, d, e.RunArgs(d, "--", "/bin/probe", "stderr", "runc run failed: not really")...)
	if r.Stderr != "runc run failed: not really\n" {
		t.Fatalf("container's stderr %q was altered", r.Stderr)
	}
	mrtdtest.AssertClean(t, d)
}

func TestRunSandbox(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name  string
		flags []string
		args  []string
		want  string
	}{
		{"root is read-only", nil, []string{"write", "/x"}, "read-only file system"},
		{"tmp is writable", nil, []string{"write", "/tmp/x"}, "ok"},
		{"run is writable", nil, []string{"write", "/run/x"}, "ok"},
		{"container root is uid 0", nil, []string{"id"}, "0 0"},
		{"uid_map maps root to the user", nil, []string{"cat", "/proc/self/uid_map"}, fmt.Sprintf("0 %d 1", e.UID)},
		{"gid_map maps root to the group", nil, []string{"cat", "/proc/self/gid_map"}, fmt.Sprintf("0 %d 1", e.GID)},
		{"hostname is the container id", nil, []string{"cat", "/proc/sys/kernel/hostname"}, "mrtd-run-"},
		{"hostname flag", []string{"--hostname", "w1"}, []string{"cat", "/proc/sys/kernel/hostname"}, "w1"},
		{"env flag", []string{"--env", "FOO=bar baz"}, []string{"cat", "/proc/self/environ"}, "FOO=bar baz"},
		{"default env", nil, []string{"cat", "/proc/self/environ"}, "LANG=C.UTF-8"},
		{"loopback reachable with host network", nil, []string{"dial", ln.Addr().String()}, "connected"},
		{"loopback unreachable with --network none", []string{"--network", "none"}, []string{"dial", ln.Addr().String()}, "connection refused"},
		{"seccomp denies keyctl", nil, []string{"keyctl"}, "operation not permitted"},
		{"unconfined allows keyctl", []string{"--seccomp", "unconfined"}, []string{"keyctl"}, "ok"},
		{"no new privileges", nil, []string{"cat", "/proc/self/status"}, "NoNewPrivs:\t1"},
		// Masked: runc mounts /dev/null over it (this kernel has no
		// /proc/kcore, so /proc/keys stands for the masked paths).
		{"keys is masked", nil, []string{"cat", "/proc/self/mountinfo"}, " /proc/keys "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append(tc.flags, "--", "/bin/probe"), tc.args...)
			r := e.Run(t, d, e.RunArgs(d, args...)...)
			if r.Code != 0 {
				t.Fatalf("exit status %d, stderr %q", r.Code, r.Stderr)
			}
			if got := strings.Join(strings.Fields(r.Stdout), " "); !strings.Contains(r.Stdout, tc.want) && !strings.Contains(got, tc.want) {
				t.Fatalf("output %q does not contain %q", r.Stdout, tc.want)
			}
		})
	}
	mrtdtest.AssertClean(t, d)
}

func TestRunForwardsSignals(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	for _, tc := range []struct {
		name  string
		args  []string
		sig   syscall.Signal
		code  int
		final string
	}{
		{"SIGTERM", []string{"pause"}, syscall.SIGTERM, 0, "got terminated\n"},
		{"SIGINT", []string{"pause"}, syscall.SIGINT, 0, "got interrupt\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, out, stderr := e.StartRun(t, d, e.RunArgs(d, append([]string{"--", "/bin/probe"}, tc.args...)...)...)
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			rest := readAll(out)
			err := cmd.Wait()
			code := 0
			if ee, ok := err.(interface{ ExitCode() int }); ok && err != nil {
				code = ee.ExitCode()
			}
			if code != tc.code || rest != tc.final {
				t.Fatalf("exit %d and output %q, want %d and %q (stderr %s)", code, rest, tc.code, tc.final, stderr)
			}
		})
	}
	mrtdtest.AssertClean(t, d)
}

// TestRunKilled checks that a container killed by a signal gives 128+N.
// The container's init is pid 1 of its namespace, which only SIGKILL (and
// signals it handles) can reach, so the test kills it from outside.
func TestRunKilled(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	cmd, out, stderr := e.StartRun(t, d, e.RunArgs(d, "--", "/bin/probe", "pause")...)
	ents, err := os.ReadDir(filepath.Join(d.Runtime, "runc"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("want one container in the state dir, got %v, %v", ents, err)
	}
	state := e.Command(context.Background(), e.Runc, d, "--root", filepath.Join(d.Runtime, "runc"), "state", ents[0].Name())
	b, err := state.Output()
	if err != nil {
		t.Fatalf("runc state: %v", err)
	}
	var st struct{ Pid int }
	if err := json.Unmarshal(b, &st); err != nil || st.Pid <= 1 {
		t.Fatalf("runc state: %s, %v", b, err)
	}
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	readAll(out)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 128+9 {
		t.Fatalf("mrtd exited with %v, want status 137 (stderr %s)", err, stderr)
	}
	mrtdtest.AssertClean(t, d)
}

func TestRunArchiveRootfs(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	archive := filepath.Join(e.UserDir(t, "img"), "img.tar.zst")
	mrtdtest.WriteTarZst(t, e.Rootfs, archive)
	for i := 0; i < 2; i++ { // cold, then warm
		r := e.Run(t, d, "run", "--runc", e.Runc, "--rootfs", archive, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--", "/bin/probe", "echo", "from archive")
		if r.Code != 0 || r.Stdout != "from archive\n" {
			t.Fatalf("run %d: status %d stdout %q stderr %q", i, r.Code, r.Stdout, r.Stderr)
		}
	}
	ents, err := os.ReadDir(filepath.Join(d.Cache, "rootfs"))
	if err != nil {
		t.Fatal(err)
	}
	var trees []string
	for _, ent := range ents {
		if ent.IsDir() {
			trees = append(trees, ent.Name())
		}
	}
	if len(trees) != 1 || len(trees[0]) != 64 {
		t.Fatalf("cache holds %v, want one tree named by the archive's sha256", trees)
	}
	mrtdtest.AssertClean(t, d)
}

func TestRunBadInput(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	junk := filepath.Join(e.UserDir(t, "junk"), "junk.tar.zst")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not an archive "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(e.UserDir(t, "trunc"), "trunc.tar.zst")
	mrtdtest.WriteTarZst(t, e.Rootfs, truncated)
	b, _ := os.ReadFile(truncated)
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	plainFile := filepath.Join(e.UserDir(t, "plain"), "notes.txt")
	os.WriteFile(plainFile, []byte("x"), 0o644)
	readOnlyParent := e.UserDir(t, "ro")
	os.Chmod(readOnlyParent, 0o555)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"run", "--bogus", "--", "true"}, 2, "unknown flag --bogus"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"run without a command", e.RunArgs(d), 2, "no command given"},
		{"rootfs that does not exist", []string{"run", "--runc", e.Runc, "--rootfs", "/nonexistent/rootfs", "--", "true"}, 2, "does not exist"},
		{"rootfs that is neither dir nor archive", []string{"run", "--runc", e.Runc, "--rootfs", plainFile, "--", "true"}, 2, "neither a directory nor"},
		{"rootfs archive that is not an archive", []string{"run", "--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--rootfs", junk, "--", "/bin/probe"}, 125, "not a tar or tar.zst archive"},
		{"truncated archive", []string{"run", "--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--rootfs", truncated, "--", "/bin/probe"}, 125, "truncated or corrupt"},
		{"cache dir not writable", []string{"run", "--runc", e.Runc, "--cache-dir", filepath.Join(readOnlyParent, "cache"), "--runtime-dir", d.Runtime, "--rootfs", truncated, "--", "/bin/probe"}, 125, "--cache-dir"},
		{"command not in the rootfs", e.RunArgs(d, "--", "/bin/nosuch"), 127, "command /bin/nosuch does not exist in the rootfs"},
		{"command not in PATH", e.RunArgs(d, "--", "nosuch"), 127, `command "nosuch" is not in the rootfs`},
		{"command not executable", e.RunArgs(d, "--", "/etc/not-executable"), 126, "is not executable"},
		{"command is a directory", e.RunArgs(d, "--", "/etc"), 126, "is a directory"},
		{"interpreter missing", e.RunArgs(d, "--", "/bin/no-interp"), 126, "its interpreter /missing/interp does not exist in the rootfs"},
		{"workdir not in the rootfs", e.RunArgs(d, "--workdir", "/created/by/mrtd", "--", "/bin/probe"), 2, "--workdir /created/by/mrtd is not a directory in the rootfs"},
		{"bad env", e.RunArgs(d, "--env", "NOEQUALS", "--", "/bin/probe"), 2, "not KEY=VALUE"},
		{"bad network", e.RunArgs(d, "--network", "bridge", "--", "/bin/probe"), 2, "unknown --network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Run(t, d, tc.args...)
			if r.Code != tc.code {
				t.Errorf("exit status %d, want %d", r.Code, tc.code)
			}
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "mrtd: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q, want one line starting with \"mrtd: \" containing %q", r.Stderr, tc.want)
			}
		})
	}
	// Nothing half-written: no cache entry, no temporary directory, no
	// container, no bundle.
	filepath.WalkDir(filepath.Join(d.Cache, "rootfs"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && p != filepath.Join(d.Cache, "rootfs") {
			t.Errorf("left in the cache: %s", p)
		}
		return nil
	})
	mrtdtest.AssertClean(t, d)
}

// TestRunAsRoot checks the mode for mrtd started by root: container root is
// the unprivileged --host-uid, never host root.
func TestRunAsRoot(t *testing.T) {
	e := needIntegration(t)
	if !e.Dropped {
		t.Skip("root mode needs the tests to run as root (make test in CI does)")
	}
	d := e.NewDirs(t)
	// Root's own: as root, mrtd refuses a cache dir another uid could change.
	d.Cache = filepath.Join(e.Dir, "TestRunAsRoot-cache")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := e.AsRoot()
	archive := filepath.Join(e.UserDir(t, "img"), "img.tar.zst")
	mrtdtest.WriteTarZst(t, e.Rootfs, archive)
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"default host uid", nil, "0 65534 1"},
		{"--host-uid", []string{"--host-uid", "4000", "--host-gid", "4000"}, "0 4000 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "--runc", e.Runc, "--rootfs", archive, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime}, tc.flags...)
			r := root.RunBin(t, ctx, e.Mrtd, d, append(args, "--", "/bin/probe", "cat", "/proc/self/uid_map")...)
			if got := strings.Join(strings.Fields(r.Stdout), " "); r.Code != 0 || got != tc.want {
				t.Fatalf("status %d, uid_map %q, want %q (stderr %s)", r.Code, got, tc.want, r.Stderr)
			}
		})
	}
	mrtdtest.AssertClean(t, d)
}

// TestEndToEnd runs the real bin/mrtd, with its embedded runc and rootfs,
// as an unprivileged user.
func TestEndToEnd(t *testing.T) {
	e := needIntegration(t)
	local := e.RealMrtd(t)
	d := e.NewDirs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := e.RunBin(t, ctx, local, d, "run", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--", "python3", "-V")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "Python 3.") {
		t.Fatalf("status %d stdout %q stderr %q, want Python 3.x", r.Code, r.Stdout, r.Stderr)
	}
	r = e.RunBin(t, ctx, local, d, "run", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--", "python3", "-c", "import os; print(os.getuid())")
	if r.Code != 0 || r.Stdout != "0\n" {
		t.Fatalf("status %d stdout %q stderr %q, want 0", r.Code, r.Stdout, r.Stderr)
	}
	r = e.RunBin(t, ctx, local, d, "run", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--", "sh", "-c", "exit 7")
	if r.Code != 7 {
		t.Fatalf("sh -c 'exit 7': status %d, stderr %q", r.Code, r.Stderr)
	}
	mrtdtest.AssertClean(t, d)
}

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}
