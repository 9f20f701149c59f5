package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// basicAuth refuses what does not carry user:pass.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestLogin(t *testing.T) {
	_, host, ca := tlsRegistry(t, basicAuth("me", "secret"))
	user, _ := isolateCerts(t)
	ctx := context.Background()
	right := Credentials{Username: "me", Password: "secret"}

	var ce *CAError
	if err := Login(ctx, host, right, false); !errors.As(err, &ce) {
		t.Fatalf("without the CA: %v, want a *CAError", err)
	}
	if err := Login(ctx, host, right, true); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	writeFile(t, filepath.Join(user, host, "ca.crt"), ca)
	if err := Login(ctx, host, right, false); err != nil {
		t.Fatalf("with the CA and the right password: %v", err)
	}
	err := Login(ctx, host, Credentials{Username: "me", Password: "wrong"}, false)
	var le *LoginError
	if !errors.As(err, &le) || le.Status != http.StatusUnauthorized || strings.Contains(err.Error(), "\n") {
		t.Fatalf("with a wrong password: %v, want a one-line *LoginError with 401", err)
	}
	t.Log(err)
}

func TestAuthFiles(t *testing.T) {
	isolate(t)
	run, cfg := t.TempDir(), t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", run)
	t.Setenv("XDG_CONFIG_HOME", cfg)
	podman := []string{filepath.Join(run, "containers", "auth.json"), filepath.Join(cfg, "containers", "auth.json")}
	for _, tc := range []struct {
		name, env, flag string
		want            []string
	}{
		{"Podman's", "", "", podman},
		{"$REGISTRY_AUTH_FILE first", "/env.json", "", append([]string{"/env.json"}, podman...)},
		{"--authfile first", "", "/flag.json", append([]string{"/flag.json"}, podman...)},
		{"--authfile in place of $REGISTRY_AUTH_FILE", "/env.json", "/flag.json", append([]string{"/flag.json"}, podman...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("REGISTRY_AUTH_FILE", tc.env)
			if got := AuthFiles(tc.flag); !slices.Equal(got, tc.want) {
				t.Errorf("AuthFiles(%q) = %q, want %q", tc.flag, got, tc.want)
			}
		})
	}
}

func TestLoginKey(t *testing.T) {
	for _, tc := range []struct{ in, key, host string }{
		{"registry.example.org", "registry.example.org", "registry.example.org"},
		{"https://registry.example.org/", "registry.example.org", "registry.example.org"},
		{"127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"},
		{"registry.example.org/team", "registry.example.org/team", "registry.example.org"},
		{"docker.io", "docker.io", "docker.io"},
	} {
		key, host, err := LoginKey(tc.in)
		if err != nil || key != tc.key || host != tc.host {
			t.Errorf("LoginKey(%q) = %q, %q, %v; want %q, %q", tc.in, key, host, err, tc.key, tc.host)
		}
	}
	for _, bad := range []string{"", "/repo", "UPPER CASE"} {
		if _, _, err := LoginKey(bad); err == nil {
			t.Errorf("LoginKey(%q) took it", bad)
		}
	}
}

// readAuthFile returns file's JSON as generic maps.
func readAuthFile(t *testing.T, file string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v\n%s", file, err, data)
	}
	return m
}

func TestSaveLogin(t *testing.T) {
	c := Credentials{Username: "me", Password: "p:a:ss"}
	wantAuth := base64.StdEncoding.EncodeToString([]byte("me:p:a:ss"))

	t.Run("new file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "containers", "auth.json")
		if err := SaveLogin(file, "registry.example.org", c); err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o700 | os.ModeDir} {
			if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
				t.Errorf("%s: %v, %v; want mode %v", p, fi.Mode(), err, want)
			}
		}
		// Keychain reads what SaveLogin wrote.
		repo, _ := name.NewRepository("registry.example.org/team/img")
		a, err := authFiles{file}.Resolve(repo)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Authorization()
		if err != nil || got.Username != "me" || got.Password != "p:a:ss" {
			t.Errorf("Keychain reads %+v, %v back", got, err)
		}
	})

	t.Run("keeps the rest", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "auth.json")
		old := `{"auths":{"other.example.org":{"auth":"b3RoZXI6cHc=","email":"x@example.org"},` +
			`"registry.example.org":{"auth":"b2xkOm9sZA=="}},"credHelpers":{"gcr.io":"gcloud"}}`
		writeFile(t, file, []byte(old))
		// A second name of the old file: atomic replacement leaves it as
		// it was, an update in place would not.
		keep := filepath.Join(dir, "old")
		if err := os.Link(file, keep); err != nil {
			t.Fatal(err)
		}
		if err := SaveLogin(file, "registry.example.org", c); err != nil {
			t.Fatal(err)
		}
		m := readAuthFile(t, file)
		auths := m["auths"].(map[string]any)
		if got := auths["registry.example.org"].(map[string]any)["auth"]; got != wantAuth {
			t.Errorf("registry.example.org's auth is %v, want %s", got, wantAuth)
		}
		other, _ := auths["other.example.org"].(map[string]any)
		if other["auth"] != "b3RoZXI6cHc=" || other["email"] != "x@example.org" {
			t.Errorf("other.example.org's entry became %v", other)
		}
		if h, _ := m["credHelpers"].(map[string]any); h["gcr.io"] != "gcloud" {
			t.Errorf("credHelpers became %v", m["credHelpers"])
		}
		if fi, _ := os.Stat(file); fi.Mode() != 0o600 {
			t.Errorf("the file's mode is %v, want 0600", fi.Mode())
		}
		if data, _ := os.ReadFile(keep); string(data) != old {
			t.Errorf("the old file was written in place: %s", data)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Errorf("the directory holds %d entries, want auth.json and old: a temporary file is left", len(entries))
		}
	})

	t.Run("remove", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "auth.json")
		writeFile(t, file, []byte(`{"auths":{"a.example.org":{"auth":"YTpi"},"https://b.example.org":{"auth":"YTpi"},"c.example.org":{"auth":"YTpi"}},"x":1}`))
		for _, key := range []string{"a.example.org", "b.example.org"} {
			if found, err := RemoveLogin(file, key); !found || err != nil {
				t.Errorf("RemoveLogin %s: %v, %v", key, found, err)
			}
		}
		if found, err := RemoveLogin(file, "a.example.org"); found || err != nil {
			t.Errorf("RemoveLogin of what is gone: %v, %v; want false, nil", found, err)
		}
		m := readAuthFile(t, file)
		auths := m["auths"].(map[string]any)
		if len(auths) != 1 || auths["c.example.org"] == nil || m["x"] != 1.0 {
			t.Errorf("after removing a and b: %v", m)
		}
		missing := filepath.Join(t.TempDir(), "auth.json")
		if found, err := RemoveLogin(missing, "a.example.org"); found || err != nil {
			t.Errorf("RemoveLogin with no file: %v, %v", found, err)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("RemoveLogin created %s", missing)
		}
	})

	t.Run("malformed file is left alone", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "auth.json")
		writeFile(t, file, []byte(`{"auths":`))
		if err := SaveLogin(file, "registry.example.org", c); err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("SaveLogin over a malformed file: %v, want an error naming it", err)
		}
		if data, _ := os.ReadFile(file); string(data) != `{"auths":` {
			t.Errorf("the malformed file became %s", data)
		}
	})
}
