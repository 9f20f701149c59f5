package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// login runs `mrtd login` with args and stdin.
func login(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs, stdin string, args ...string) mrtdtest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := e.Command(ctx, e.Mrtd, d, append([]string{"login"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := mrtdtest.Result{}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("mrtd login: %v", err)
		}
		r.Code = ee.ExitCode()
	}
	r.Stdout, r.Stderr = stdout.String(), stderr.String()
	return r
}

// wantOneLine fails t unless r failed with one line on stderr holding
// want, and ran nothing.
func wantOneLine(t *testing.T, what string, r mrtdtest.Result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	if r.Code == 0 || len(lines) != 1 || !strings.Contains(lines[0], want) || r.Stdout != "" {
		t.Fatalf("%s: exit status %d, stdout %q, stderr %q; want a failure in one line holding %q", what, r.Code, r.Stdout, r.Stderr, want)
	}
	t.Logf("%s: %s", what, lines[0])
}

// writeUserFile writes data to path below home, making the directories
// between them, all owned by the uid mrtd runs as.
func writeUserFile(t *testing.T, e *mrtdtest.Env, home, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if !e.Dropped {
		return
	}
	for p := path; p != home && p != "/"; p = filepath.Dir(p) {
		if err := os.Chown(p, e.UID, e.GID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestImageLoginTLS runs an image from a registry with TLS (its own CA)
// and basic auth: what to do is said before each step, and after the CA
// in ~/.config/containers/certs.d and mrtd login it runs.
func TestImageLoginTLS(t *testing.T) {
	e := needIntegration(t)
	mrtdtest.NeedRegistry(t)
	const user, password = "u", "pw-e2e"
	img := e.BuildImage(t, e.UserDir(t, "layout"), "1")
	reg := mrtdtest.StartRegistry(t, mrtdtest.WithTLS(), mrtdtest.WithHtpasswd(user, password))
	reg.Push(t, img.Ref(), "test/img:1")
	ref := reg.Ref("test/img:1")
	d := e.NewDirs(t)
	// No --tls-verify=false: the certificate is checked.
	run := func(flags ...string) mrtdtest.Result {
		args := append([]string{"run", "--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--image", ref}, flags...)
		return e.Run(t, d, args...)
	}
	ca := filepath.Join(d.Home, ".config", "containers", "certs.d", reg.Addr, "ca.crt")
	authFile := filepath.Join(d.Home, ".config", "containers", "auth.json")

	wantOneLine(t, "run without the CA", run(), ca)
	wantOneLine(t, "login without the CA", login(t, e, d, password+"\n", "--username", user, "--password-stdin", reg.Addr), ca)

	writeUserFile(t, e, d.Home, ca, reg.CA)
	wantOneLine(t, "run without login", run(), "mrtd login "+reg.Addr)
	wantOneLine(t, "login without a terminal", login(t, e, d, "", "--username", user, reg.Addr), "--password-stdin")
	wantOneLine(t, "login with a wrong password", login(t, e, d, "wrong\n", "--username", user, "--password-stdin", reg.Addr), "refused the password")
	if _, err := os.Stat(authFile); err == nil {
		t.Fatalf("a refused login wrote %s", authFile)
	}

	r := login(t, e, d, password+"\n", "--username", user, "--password-stdin", reg.Addr)
	if r.Code != 0 || r.Stdout != "Login Succeeded!\n" {
		t.Fatalf("mrtd login: exit status %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	fi, err := os.Stat(authFile)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("the auth file after login: %v, %v; want %s, mode 0600", fi, err, authFile)
	}
	wantOutput(t, run(), "from-image\n")
	wantOutput(t, run("--pull", "always", "--", "cat", "/srv/replaced"), "v3\n")

	r = e.Run(t, d, "logout", reg.Addr)
	if r.Code != 0 {
		t.Fatalf("mrtd logout: exit status %d, stderr %q", r.Code, r.Stderr)
	}
	if data, _ := os.ReadFile(authFile); strings.Contains(string(data), reg.Addr) {
		t.Errorf("%s after logout still has %s:\n%s", authFile, reg.Addr, data)
	}
	wantOneLine(t, "run --pull always after logout", run("--pull", "always"), "mrtd login "+reg.Addr)

	// --authfile: read in place of the default files, which have nothing now.
	other := filepath.Join(d.Home, "other-auth.json")
	wantOneLine(t, "run --authfile before login", run("--authfile", other), "--authfile "+other+" does not exist")
	r = login(t, e, d, password+"\n", "--authfile", other, "--username", user, "--password-stdin", reg.Addr)
	if r.Code != 0 {
		t.Fatalf("mrtd login --authfile: exit status %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	wantOutput(t, run("--pull", "always", "--authfile", other), "from-image\n")
	mrtdtest.AssertClean(t, d)
}
