package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/rootfs"
)

func TestWarnLoginHostUID(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(passwd, []byte("alice:x:1000:1000::/home/alice:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"), 0o644)
	for _, tc := range []struct {
		name string
		uid  int
		want string // "" for no warning
	}{
		{"login user", 1000, `"user":"alice"`},
		{"nobody", 65534, ""},
		{"unused uid", 4242, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := zapr.NewLogger(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel)))
			warnLoginHostUID(log, tc.uid, passwd)
			got := buf.String()
			if tc.want == "" {
				if got != "" {
					t.Fatalf("warned: %s", got)
				}
				return
			}
			for _, want := range []string{tc.want, `"level":"warn"`, `"hostUid":1000`, "can write that user's files"} {
				if !strings.Contains(got, want) {
					t.Errorf("log %q lacks %q", got, want)
				}
			}
		})
	}
}

// TestImageOptionsAuthFile fetches an image from a registry that wants a
// password, as a start of mrtd run or a worker does (and as mrtd pull
// does): with --authfile the credentials come from that file, read in
// place of $REGISTRY_AUTH_FILE.
func TestImageOptionsAuthFile(t *testing.T) {
	home := t.TempDir()
	for _, k := range []string{"HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"} {
		t.Setenv(k, home)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/test/img:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "me", Password: "secret"})); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()

	writeAuth := func(name, auths string) string {
		p := filepath.Join(home, name)
		if err := os.WriteFile(p, []byte(`{"auths":{`+auths+`}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := writeAuth("auth.json", `"`+host+`":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("me:secret"))+`"}`)
	// --authfile is read in place of $REGISTRY_AUTH_FILE, which has nothing.
	t.Setenv("REGISTRY_AUTH_FILE", writeAuth("env-auth.json", ""))

	for _, tc := range []struct {
		name     string
		authFile string
		wantAuth bool // want an *image.AuthError
	}{
		{"without --authfile", "", true},
		{"with --authfile", file, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Default(1000, func(k string) string { return map[string]string{"HOME": home}[k] })
			if err != nil {
				t.Fatal(err)
			}
			cfg.CacheDir = t.TempDir()
			cfg.Image = tag.String()
			cfg.AuthFile = tc.authFile
			ref, err := image.Parse(cfg.Image)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error) {
				t.Helper()
				var ae *image.AuthError
				if tc.wantAuth && !errors.As(err, &ae) {
					t.Errorf("%s: %v, want an *image.AuthError", what, err)
				}
				if !tc.wantAuth && err != nil {
					t.Errorf("%s: %v", what, err)
				}
			}
			// A start: the image as the rootfs, in the cache.
			src := image.NewSource(ref, imageOptions(cfg, logr.Discard()))
			tree, err := src.Open(&rootfs.Cache{Dir: filepath.Join(cfg.CacheDir, "rootfs"), DropSetID: true, Log: logr.Discard()})
			check("a start", err)
			if err == nil {
				tree.Close()
			}
			// mrtd pull.
			got, err := Pull(context.Background(), cfg, logr.Discard(), nil)
			check("mrtd pull", err)
			if err == nil && got != digest.String() {
				t.Errorf("mrtd pull: %s, want %s", got, digest)
			}
		})
	}
}
