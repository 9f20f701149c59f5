package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// loginRegistry answers /v2/ on 127.0.0.1 over plain HTTP, 200 for
// me:secret and 401 otherwise.
func loginRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestLoginLogout(t *testing.T) {
	host := loginRegistry(t)
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("XDG_RUNTIME_DIR", dir)
	file := filepath.Join(dir, "auth.json")
	t.Setenv("REGISTRY_AUTH_FILE", file)
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := mrtd(args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	login := func(stdin string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := loginCommand("login", args, strings.NewReader(stdin), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	t.Run("not a terminal", func(t *testing.T) {
		code, _, stderr := login("", "--username", "me", host)
		if code != exitUsage || !strings.Contains(stderr, "--password-stdin") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("exit status %d, stderr %q; want %d and one line naming --password-stdin", code, stderr, exitUsage)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		code, stdout, stderr := login("wrong\n", "--username", "me", "--password-stdin", host)
		if code == 0 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "refused the password of me") {
			t.Errorf("exit status %d, stdout %q, stderr %q; want a failure in one line", code, stdout, stderr)
		}
		if _, err := os.Stat(file); err == nil {
			t.Errorf("a refused login wrote %s", file)
		}
	})
	t.Run("login", func(t *testing.T) {
		code, stdout, stderr := login("secret\n", "--username", "me", "--password-stdin", host)
		if code != 0 || stdout != "Login Succeeded!\n" {
			t.Fatalf("exit status %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		data, err := os.ReadFile(file)
		var af struct {
			Auths map[string]struct{ Auth string }
		}
		if err != nil || json.Unmarshal(data, &af) != nil || af.Auths[host].Auth == "" {
			t.Fatalf("%s after login: %v\n%s", file, err, data)
		}
	})
	t.Run("logout", func(t *testing.T) {
		code, stdout, stderr := run("logout", host)
		if code != 0 || !strings.Contains(stdout, host) {
			t.Fatalf("exit status %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		if data, _ := os.ReadFile(file); strings.Contains(string(data), host) {
			t.Errorf("%s after logout: %s", file, data)
		}
		code, _, stderr = run("logout", host)
		if code == 0 || !strings.Contains(stderr, "not logged in") {
			t.Errorf("a second logout: exit status %d, stderr %q; want a failure saying it is not logged in", code, stderr)
		}
	})
}

// TestAuthFileFlag logs in and out with --authfile, and pulls with it.
func TestAuthFileFlag(t *testing.T) {
	home := t.TempDir()
	for _, k := range []string{"HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"} {
		t.Setenv(k, home)
	}
	// $REGISTRY_AUTH_FILE, which --authfile overrides, has nothing.
	envFile := filepath.Join(home, "env-auth.json")
	t.Setenv("REGISTRY_AUTH_FILE", envFile)
	file := filepath.Join(t.TempDir(), "auth.json")

	auth := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(auth(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(host + "/test/img:1")
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "me", Password: "secret"})); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()

	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := loginCommand(args[0], args[1:], strings.NewReader("secret\n"), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	pull := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		args = append([]string{"--cache-dir", t.TempDir(), "--log-level", "error"}, args...)
		code := pullCommand(append(args, host+"/test/img:1"), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	if code, _, stderr := pull("--authfile", file); code == 0 || !strings.Contains(stderr, "mrtd login "+host) {
		t.Errorf("pull before login: exit status %d, stderr %q; want a failure saying mrtd login", code, stderr)
	}
	if code, stdout, stderr := run("login", "--authfile", file, "--username", "me", "--password-stdin", host); code != 0 || stdout != "Login Succeeded!\n" {
		t.Fatalf("login --authfile: exit status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if data, err := os.ReadFile(file); err != nil || !strings.Contains(string(data), host) {
		t.Fatalf("%s after login --authfile: %v\n%s", file, err, data)
	}
	if _, err := os.Stat(envFile); err == nil {
		t.Errorf("login --authfile wrote $REGISTRY_AUTH_FILE too")
	}
	if code, stdout, stderr := pull("--authfile", file); code != 0 || strings.TrimSpace(stdout) != digest.String() {
		t.Errorf("pull --authfile: exit status %d, stdout %q, stderr %q; want %s", code, stdout, stderr, digest)
	}
	if code, _, stderr := pull(); code == 0 || !strings.Contains(stderr, "mrtd login "+host) {
		t.Errorf("pull without --authfile: exit status %d, stderr %q; want a failure saying mrtd login", code, stderr)
	}

	if code, _, stderr := run("logout", host); code == 0 || !strings.Contains(stderr, envFile) {
		t.Errorf("logout without --authfile: exit status %d, stderr %q; want a failure naming %s", code, stderr, envFile)
	}
	if code, stdout, stderr := run("logout", "--authfile", file, host); code != 0 || !strings.Contains(stdout, host) {
		t.Fatalf("logout --authfile: exit status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if data, _ := os.ReadFile(file); strings.Contains(string(data), host) {
		t.Errorf("%s after logout --authfile: %s", file, data)
	}

	var help bytes.Buffer
	for _, cmd := range []string{"login", "logout", "pull"} {
		help.Reset()
		if code := mrtd([]string{cmd, "--help"}, &help, io.Discard); code != 0 || !strings.Contains(help.String(), "--authfile FILE") {
			t.Errorf("mrtd %s --help: exit status %d, want --authfile listed:\n%s", cmd, code, help.String())
		}
	}
}
