package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestRunExitStatus(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
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
			r := e.run(t, d, e.runArgs(d, append([]string{"--"}, tc.args...)...)...)
			if r.code != tc.code {
				t.Fatalf("exit status %d, want %d (stderr: %s)", r.code, tc.code, r.stderr)
			}
		})
	}
	assertClean(t, d)
}

func TestRunOutput(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	r := e.run(t, d, e.runArgs(d, "--", "/bin/probe", "echo", "hello", "world")...)
	if r.code != 0 || r.stdout != "hello world\n" {
		t.Fatalf("got status %d stdout %q stderr %q, want 0 and %q", r.code, r.stdout, r.stderr, "hello world\n")
	}
	r = e.run(t, d, e.runArgs(d, "--", "/bin/probe", "stderr", "to stderr")...)
	if r.code != 0 || r.stderr != "to stderr\n" || r.stdout != "" {
		t.Fatalf("got status %d stdout %q stderr %q, want the line on stderr only", r.code, r.stdout, r.stderr)
	}
	// A line that merely starts like runc's own failure is the container's.
	r = e.run(t, d, e.runArgs(d, "--", "/bin/probe", "stderr", "runc run failed: not really")...)
	if r.stderr != "runc run failed: not really\n" {
		t.Fatalf("container's stderr %q was altered", r.stderr)
	}
	assertClean(t, d)
}

func TestRunSandbox(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
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
		{"uid_map maps root to the user", nil, []string{"cat", "/proc/self/uid_map"}, fmt.Sprintf("0 %d 1", e.uid)},
		{"gid_map maps root to the group", nil, []string{"cat", "/proc/self/gid_map"}, fmt.Sprintf("0 %d 1", e.gid)},
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
			r := e.run(t, d, e.runArgs(d, args...)...)
			if r.code != 0 {
				t.Fatalf("exit status %d, stderr %q", r.code, r.stderr)
			}
			if got := strings.Join(strings.Fields(r.stdout), " "); !strings.Contains(r.stdout, tc.want) && !strings.Contains(got, tc.want) {
				t.Fatalf("output %q does not contain %q", r.stdout, tc.want)
			}
		})
	}
	assertClean(t, d)
}

func TestRunForwardsSignals(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
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
			cmd, out, stderr := e.start(t, d, e.runArgs(d, append([]string{"--", "/bin/probe"}, tc.args...)...)...)
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
	assertClean(t, d)
}

// TestRunKilled checks that a container killed by a signal gives 128+N.
// The container's init is pid 1 of its namespace, which only SIGKILL (and
// signals it handles) can reach, so the test kills it from outside.
func TestRunKilled(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	cmd, out, stderr := e.start(t, d, e.runArgs(d, "--", "/bin/probe", "pause")...)
	ents, err := os.ReadDir(filepath.Join(d.runtime, "runc"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("want one container in the state dir, got %v, %v", ents, err)
	}
	state := e.command(context.Background(), e.runc, d, "--root", filepath.Join(d.runtime, "runc"), "state", ents[0].Name())
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
	assertClean(t, d)
}

func TestRunArchiveRootfs(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	archive := filepath.Join(e.userDir(t, "img"), "img.tar.zst")
	writeTarZst(t, e.rootfs, archive)
	for i := 0; i < 2; i++ { // cold, then warm
		r := e.run(t, d, "run", "--runc", e.runc, "--rootfs", archive, "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--", "/bin/probe", "echo", "from archive")
		if r.code != 0 || r.stdout != "from archive\n" {
			t.Fatalf("run %d: status %d stdout %q stderr %q", i, r.code, r.stdout, r.stderr)
		}
	}
	ents, err := os.ReadDir(filepath.Join(d.cache, "rootfs"))
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
	assertClean(t, d)
}

// writeTarZst packs dir into a tar.zst at dst, owned by the test's uid.
func writeTarZst(t *testing.T, dir, dst string) {
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

func TestRunBadInput(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	junk := filepath.Join(e.userDir(t, "junk"), "junk.tar.zst")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not an archive "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(e.userDir(t, "trunc"), "trunc.tar.zst")
	writeTarZst(t, e.rootfs, truncated)
	b, _ := os.ReadFile(truncated)
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	plainFile := filepath.Join(e.userDir(t, "plain"), "notes.txt")
	os.WriteFile(plainFile, []byte("x"), 0o644)
	readOnlyParent := e.userDir(t, "ro")
	os.Chmod(readOnlyParent, 0o555)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"run", "--bogus", "--", "true"}, 2, "unknown flag --bogus"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"run without a command", e.runArgs(d), 2, "no command given"},
		{"rootfs that does not exist", []string{"run", "--runc", e.runc, "--rootfs", "/nonexistent/rootfs", "--", "true"}, 2, "does not exist"},
		{"rootfs that is neither dir nor archive", []string{"run", "--runc", e.runc, "--rootfs", plainFile, "--", "true"}, 2, "neither a directory nor"},
		{"rootfs archive that is not an archive", []string{"run", "--runc", e.runc, "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--rootfs", junk, "--", "/bin/probe"}, 125, "not a tar or tar.zst archive"},
		{"truncated archive", []string{"run", "--runc", e.runc, "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--rootfs", truncated, "--", "/bin/probe"}, 125, "truncated or corrupt"},
		{"cache dir not writable", []string{"run", "--runc", e.runc, "--cache-dir", filepath.Join(readOnlyParent, "cache"), "--runtime-dir", d.runtime, "--rootfs", truncated, "--", "/bin/probe"}, 125, "--cache-dir"},
		{"command not in the rootfs", e.runArgs(d, "--", "/bin/nosuch"), 127, "command /bin/nosuch does not exist in the rootfs"},
		{"command not in PATH", e.runArgs(d, "--", "nosuch"), 127, `command "nosuch" is not in the rootfs`},
		{"command not executable", e.runArgs(d, "--", "/etc/not-executable"), 126, "is not executable"},
		{"command is a directory", e.runArgs(d, "--", "/etc"), 126, "is a directory"},
		{"interpreter missing", e.runArgs(d, "--", "/bin/no-interp"), 126, "its interpreter /missing/interp does not exist in the rootfs"},
		{"workdir not in the rootfs", e.runArgs(d, "--workdir", "/created/by/mrtd", "--", "/bin/probe"), 2, "--workdir /created/by/mrtd is not a directory in the rootfs"},
		{"bad env", e.runArgs(d, "--env", "NOEQUALS", "--", "/bin/probe"), 2, "not KEY=VALUE"},
		{"bad network", e.runArgs(d, "--network", "bridge", "--", "/bin/probe"), 2, "unknown --network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(t, d, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit status %d, want %d", r.code, tc.code)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "mrtd: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q, want one line starting with \"mrtd: \" containing %q", r.stderr, tc.want)
			}
		})
	}
	// Nothing half-written: no cache entry, no temporary directory, no
	// container, no bundle.
	filepath.WalkDir(filepath.Join(d.cache, "rootfs"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && p != filepath.Join(d.cache, "rootfs") {
			t.Errorf("left in the cache: %s", p)
		}
		return nil
	})
	assertClean(t, d)
}

// TestRunAsRoot checks the mode for mrtd started by root: container root is
// the unprivileged --host-uid, never host root.
func TestRunAsRoot(t *testing.T) {
	e := needIntegration(t)
	if !e.dropped {
		t.Skip("root mode needs the tests to run as root (make test in CI does)")
	}
	d := e.newDirs(t)
	// Root's own: as root, mrtd refuses a cache dir another uid could change.
	d.cache = filepath.Join(e.dir, "TestRunAsRoot-cache")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := &integrationEnv{dir: e.dir, mrtd: e.mrtd, runc: e.runc, rootfs: e.rootfs, uid: 0, gid: 0}
	archive := filepath.Join(e.userDir(t, "img"), "img.tar.zst")
	writeTarZst(t, e.rootfs, archive)
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"default host uid", nil, "0 65534 1"},
		{"--host-uid", []string{"--host-uid", "4000", "--host-gid", "4000"}, "0 4000 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "--runc", e.runc, "--rootfs", archive, "--cache-dir", d.cache, "--runtime-dir", d.runtime}, tc.flags...)
			r := root.runBin(t, ctx, e.mrtd, d, append(args, "--", "/bin/probe", "cat", "/proc/self/uid_map")...)
			if got := strings.Join(strings.Fields(r.stdout), " "); r.code != 0 || got != tc.want {
				t.Fatalf("status %d, uid_map %q, want %q (stderr %s)", r.code, got, tc.want, r.stderr)
			}
		})
	}
	assertClean(t, d)
}

// TestEndToEnd runs the real bin/mrtd, with its embedded runc and rootfs,
// as an unprivileged user.
func TestEndToEnd(t *testing.T) {
	e := needIntegration(t)
	local := e.realMrtd(t)
	d := e.newDirs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := e.runBin(t, ctx, local, d, "run", "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--", "python3", "-V")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Python 3.") {
		t.Fatalf("status %d stdout %q stderr %q, want Python 3.x", r.code, r.stdout, r.stderr)
	}
	r = e.runBin(t, ctx, local, d, "run", "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--", "python3", "-c", "import os; print(os.getuid())")
	if r.code != 0 || r.stdout != "0\n" {
		t.Fatalf("status %d stdout %q stderr %q, want 0", r.code, r.stdout, r.stderr)
	}
	r = e.runBin(t, ctx, local, d, "run", "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--", "sh", "-c", "exit 7")
	if r.code != 7 {
		t.Fatalf("sh -c 'exit 7': status %d, stderr %q", r.code, r.stderr)
	}
	assertClean(t, d)
}
