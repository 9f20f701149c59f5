package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
