package image

import (
	"archive/tar"
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
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// isolate keeps the tests from the credentials of whoever runs them.
func isolate(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	for _, k := range []string{"HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"} {
		t.Setenv(k, home)
	}
	t.Setenv("REGISTRY_AUTH_FILE", "")
}

// testRegistry serves go-containerregistry's in-memory registry on
// 127.0.0.1, through wrap when set.
func testRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (string, *httptest.Server) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), srv
}

// tarLayer is a tar holding the files given (name, content).
func tarLayer(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Mode: 0o644, Size: int64(len(files[i+1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	tw.Close()
	return buf.Bytes()
}

// testImage is an image of the layers given (uncompressed tars),
// compressed with comp, as OCI or Docker schema2 media types.
func testImage(t *testing.T, comp compression.Compression, oci bool, tars ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	for _, tb := range tars {
		opts := []tarball.LayerOption{tarball.WithCompression(comp)}
		if !oci {
			opts = append(opts, tarball.WithMediaType(types.DockerLayer))
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb)), nil }, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/bin/worker"}
	cf.Config.Cmd = []string{"--jobs", "4"}
	cf.Config.Env = []string{"PATH=/usr/bin", "A=1"}
	cf.Config.WorkingDir = "/work"
	cf.Config.User = "1000:1000"
	cf.Config.StopSignal = "SIGINT"
	cf.Config.Labels = map[string]string{"org.example": "yes"}
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}, "53/udp": {}}
	cf.Config.Volumes = map[string]struct{}{"/data": {}}
	cf.Config.Healthcheck = &v1.HealthConfig{Test: []string{"CMD-SHELL", "test -e /tmp/ok"}, Interval: 5 * time.Second, Retries: 2}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t *testing.T, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
}

func digestOf(t *testing.T, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func mustParse(t *testing.T, s string) Ref {
	t.Helper()
	r, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readTree reads every layer of tr to its end, checking its diff_id, and
// returns the uncompressed tars.
func readTree(t *testing.T, tr *tree) [][]byte {
	t.Helper()
	var out [][]byte
	for _, l := range tr.layers {
		rc, err := l.open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("reading layer %s: %v", l.diffID, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

func TestParse(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, want string
		kind     Kind
		path     string
		tag      string
		err      string
	}{
		{in: "debian", want: "docker.io/library/debian:latest"},
		{in: "debian:bookworm-slim", want: "docker.io/library/debian:bookworm-slim"},
		{in: "docker.io/debian:12", want: "docker.io/library/debian:12"},
		{in: "index.docker.io/library/debian", want: "docker.io/library/debian:latest"},
		{in: "me/worker:2", want: "docker.io/me/worker:2"},
		{in: "registry.example.org/team/worker:2", want: "registry.example.org/team/worker:2"},
		{in: "127.0.0.1:5000/test/img:1", want: "127.0.0.1:5000/test/img:1"},
		{in: "localhost:5000/img", want: "localhost:5000/img:latest"},
		{in: "debian@" + d, want: "docker.io/library/debian@" + d},
		{in: "debian:12@" + d, want: "docker.io/library/debian:12@" + d},
		{in: "127.0.0.1:5000/img@" + d, want: "127.0.0.1:5000/img@" + d},
		{in: "oci:./worker-layout:2", kind: OCILayout, path: "worker-layout", tag: "2", want: "oci:worker-layout:2"},
		{in: "oci:/srv/layout", kind: OCILayout, path: "/srv/layout", want: "oci:/srv/layout"},
		{in: "oci:/srv/a:b/layout", kind: OCILayout, path: "/srv/a:b/layout", want: "oci:/srv/a:b/layout"},
		{in: "docker-archive:./worker.tar", kind: DockerArchive, path: "worker.tar", want: "docker-archive:worker.tar"},
		{in: "", err: "empty image reference"},
		{in: "Debian", err: "invalid image reference"},
		{in: "debian@sha256:abc", err: "invalid image reference"},
		{in: "oci:", err: "names no directory"},
		{in: "oci:dir:", err: "empty tag"},
		{in: "docker-archive:", err: "names no file"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse(%q) = %v, want error %q", tc.in, err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.String() != tc.want || r.Kind != tc.kind || r.Path != tc.path || r.Tag != tc.tag {
				t.Errorf("Parse(%q) = %+v (%s), want %s", tc.in, r, r, tc.want)
			}
			if r2, err := Parse(r.String()); err != nil || r2 != r {
				t.Errorf("Parse(String()) = %+v, %v, want %+v", r2, err, r)
			}
		})
	}
}

func TestPullByTagAndDigest(t *testing.T) {
	isolate(t)
	host, _ := testRegistry(t, nil)
	img := testImage(t, compression.GZip, false, tarLayer(t, "a", "1"), tarLayer(t, "b", "2"))
	push(t, host+"/test/img:1", img)
	want := digestOf(t, img)
	dir := t.TempDir()

	var mu sync.Mutex
	done := map[string]int64{}
	opts := Options{Dir: dir, Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Layer >= 0 {
			done[p.Digest] = p.Done
		}
	}}
	got, err := Pull(context.Background(), mustParse(t, host+"/test/img:1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Pull = %s, want %s", got, want)
	}
	m, _ := img.Manifest()
	for _, l := range m.Layers {
		fi, err := os.Stat(filepath.Join(dir, "blobs", "sha256", l.Digest.Hex))
		if err != nil || fi.Size() != l.Size {
			t.Errorf("layer %s not in the blob store: %v", l.Digest, err)
		}
		if done[l.Digest.String()] != l.Size {
			t.Errorf("progress of layer %s ended at %d, want %d", l.Digest, done[l.Digest.String()], l.Size)
		}
	}
	rec, err := (&store{dir: dir}).lookup(host + "/test/img:1")
	if err != nil || rec == nil || rec.Digest != want {
		t.Errorf("record = %+v, %v; want digest %s", rec, err, want)
	}

	byDigest := t.TempDir()
	got, err = Pull(context.Background(), mustParse(t, host+"/test/img@"+want), Options{Dir: byDigest})
	if err != nil || got != want {
		t.Errorf("Pull by digest = %s, %v; want %s", got, err, want)
	}
	// Recorded for listings, under the reference as given.
	if rec, err := (&store{dir: byDigest}).lookup(host + "/test/img@" + want); err != nil || rec == nil || rec.Digest != want {
		t.Errorf("record of the digest reference = %+v, %v; want digest %s", rec, err, want)
	}
}

func TestCacheHitRegistryDown(t *testing.T) {
	isolate(t)
	host, srv := testRegistry(t, nil)
	tars := [][]byte{tarLayer(t, "a", "1"), tarLayer(t, "b", "2")}
	img := testImage(t, compression.GZip, true, tars...)
	push(t, host+"/test/img:1", img)
	dir := t.TempDir()
	ref := mustParse(t, host+"/test/img:1")
	if _, err := Pull(context.Background(), ref, Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	srv.Close()

	for _, p := range []Policy{"", PullMissing, PullNever} {
		tr, _, err := prepare(context.Background(), ref, Options{Dir: dir, Policy: p})
		if err != nil {
			t.Fatalf("policy %q, registry down: %v", p, err)
		}
		if tr.digest != digestOf(t, img) {
			t.Errorf("digest %s, want %s", tr.digest, digestOf(t, img))
		}
		if got := readTree(t, tr); !slices.EqualFunc(got, tars, bytes.Equal) {
			t.Errorf("policy %q: the layers read are not those pushed", p)
		}
		c := tr.config
		if !slices.Equal(c.Entrypoint, []string{"/bin/worker"}) || !slices.Equal(c.Cmd, []string{"--jobs", "4"}) ||
			c.WorkingDir != "/work" || c.User != "1000:1000" || c.StopSignal != "SIGINT" || c.Labels["org.example"] != "yes" ||
			!slices.Equal(c.ExposedPorts, []string{"53/udp", "8080/tcp"}) || !slices.Equal(c.Volumes, []string{"/data"}) ||
			!slices.Equal(c.Env, []string{"PATH=/usr/bin", "A=1"}) || c.Digest != tr.digest || c.Platform != "linux/amd64" {
			t.Errorf("config = %+v", c)
		}
		if h := c.Healthcheck; h == nil || !slices.Equal(h.Test, []string{"CMD-SHELL", "test -e /tmp/ok"}) ||
			h.Interval != 5*time.Second || h.Timeout != 0 || h.Retries != 2 {
			t.Errorf("healthcheck = %+v", h)
		}
	}
	_, _, err := prepare(context.Background(), ref, Options{Dir: dir, Policy: PullAlways})
	if err == nil || !strings.Contains(err.Error(), "pull policy always") {
		t.Errorf("policy always with the registry down: %v, want an error", err)
	}
	t.Log(err)
}

func TestPolicies(t *testing.T) {
	isolate(t)
	host, _ := testRegistry(t, nil)
	old := testImage(t, compression.GZip, false, tarLayer(t, "a", "old"))
	push(t, host+"/test/img:1", old)
	ref := mustParse(t, host+"/test/img:1")
	dir := t.TempDir()

	_, _, err := prepare(context.Background(), ref, Options{Dir: dir, Policy: PullNever})
	var nc *NotCachedError
	if !errors.As(err, &nc) || !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "run mrtd pull "+ref.String()) {
		t.Fatalf("policy never, nothing cached: %v", err)
	}
	t.Log(err)

	tr, done, err := prepare(context.Background(), ref, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	readTree(t, tr)
	if err := done(); err != nil {
		t.Fatal(err)
	}

	updated := testImage(t, compression.GZip, false, tarLayer(t, "a", "new"))
	push(t, host+"/test/img:1", updated)
	for _, tc := range []struct {
		policy Policy
		want   v1.Image
	}{{PullMissing, old}, {PullNever, old}, {PullAlways, updated}, {PullMissing, updated}} {
		tr, done, err := prepare(context.Background(), ref, Options{Dir: dir, Policy: tc.policy})
		if err != nil {
			t.Fatalf("policy %s: %v", tc.policy, err)
		}
		if tr.digest != digestOf(t, tc.want) {
			t.Errorf("policy %s: digest %s, want %s", tc.policy, tr.digest, digestOf(t, tc.want))
		}
		readTree(t, tr)
		if err := done(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIndex(t *testing.T) {
	isolate(t)
	host, _ := testRegistry(t, nil)
	amd := testImage(t, compression.GZip, true, tarLayer(t, "arch", "amd64"))
	arm := testImage(t, compression.GZip, true, tarLayer(t, "arch", "arm64"))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	r, _ := name.ParseReference(host + "/test/multi:1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	ref := mustParse(t, host+"/test/multi:1")
	for _, tc := range []struct {
		platform string
		want     v1.Image
	}{{"linux/amd64", amd}, {"linux/arm64", arm}, {"linux/arm64/v8", arm}} {
		got, err := Pull(context.Background(), ref, Options{Dir: t.TempDir(), Platform: tc.platform})
		if err != nil || got != digestOf(t, tc.want) {
			t.Errorf("platform %s: %s, %v; want %s", tc.platform, got, err, digestOf(t, tc.want))
		}
	}
	if runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") {
		want := map[string]v1.Image{"amd64": amd, "arm64": arm}[runtime.GOARCH]
		if got, err := Pull(context.Background(), ref, Options{Dir: t.TempDir()}); err != nil || got != digestOf(t, want) {
			t.Errorf("host platform: %s, %v; want %s", got, err, digestOf(t, want))
		}
	}
	_, err := Pull(context.Background(), ref, Options{Dir: t.TempDir(), Platform: "linux/s390x"})
	var pe *PlatformError
	if !errors.As(err, &pe) || !slices.Equal(pe.Have, []string{"linux/amd64", "linux/arm64/v8"}) ||
		!strings.Contains(err.Error(), "linux/amd64, linux/arm64/v8") {
		t.Errorf("platform linux/s390x: %v, want a *PlatformError listing the index's", err)
	}
	t.Log(err)

	// The record names the index: a start for another platform,
	// offline, chooses again from it.
	dir := t.TempDir()
	if _, err := Pull(context.Background(), ref, Options{Dir: dir, Platform: "linux/arm64"}); err != nil {
		t.Fatal(err)
	}
	tr, _, err := prepare(context.Background(), ref, Options{Dir: dir, Policy: PullNever, Platform: "linux/arm64"})
	if err != nil || tr.digest != digestOf(t, arm) {
		t.Errorf("cached index: %v", err)
	}
	_, _, err = prepare(context.Background(), ref, Options{Dir: dir, Policy: PullNever, Platform: "linux/amd64"})
	if !errors.Is(err, ErrNotCached) {
		t.Errorf("another platform, never: %v, want ErrNotCached", err)
	}
}

func TestCompressions(t *testing.T) {
	isolate(t)
	host, _ := testRegistry(t, nil)
	tars := [][]byte{tarLayer(t, "a", "1"), tarLayer(t, "b", strings.Repeat("x", 100000))}
	for _, tc := range []struct {
		name string
		comp compression.Compression
		oci  bool
	}{{"gzip-docker", compression.GZip, false}, {"gzip-oci", compression.GZip, true}, {"zstd-oci", compression.ZStd, true}, {"none-oci", compression.None, true}} {
		t.Run(tc.name, func(t *testing.T) {
			img := testImage(t, tc.comp, tc.oci, tars...)
			push(t, host+"/test/"+tc.name+":1", img)
			ref := mustParse(t, host+"/test/"+tc.name+":1")
			tr, _, err := prepare(context.Background(), ref, Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if got := readTree(t, tr); !slices.EqualFunc(got, tars, bytes.Equal) {
				t.Error("the layers read are not those pushed")
			}
		})
	}
}

func TestCorruptBlob(t *testing.T) {
	isolate(t)
	img := testImage(t, compression.GZip, false, tarLayer(t, "a", "1"), tarLayer(t, "b", "2"))
	m, _ := img.Manifest()
	bad := m.Layers[1].Digest
	var mu sync.Mutex
	corrupt := true
	host, _ := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			c := corrupt
			mu.Unlock()
			if c && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String()) {
				// As many bytes as the layer, not its bytes.
				w.Write(bytes.Repeat([]byte{'z'}, int(m.Layers[1].Size)))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, host+"/test/img:1", img)
	dir := t.TempDir()
	ref := mustParse(t, host+"/test/img:1")
	var pulled []string
	opts := Options{Dir: dir, Progress: func(p Progress) {
		if p.Layer >= 0 && p.Done == p.Size && !p.Cached {
			pulled = append(pulled, p.Digest)
		}
	}}
	_, err := Pull(context.Background(), ref, opts)
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.Digest != bad.String() || !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("corrupt layer: %v, want a *DigestMismatchError naming %s", err, bad)
	}
	t.Log(err)
	ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, e := range ents {
		if e.Name() == bad.Hex || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("the blob store keeps %s", e.Name())
		}
	}
	if rec, _ := (&store{dir: dir}).lookup(ref.Name); rec != nil {
		t.Errorf("an incomplete image's tag was recorded")
	}

	// The registry mended, the next pull fetches only what it lacks: the
	// bad layer, and the other one only if the failure cancelled its
	// download before it was complete (they are fetched in parallel).
	want := []string{}
	for _, l := range m.Layers {
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", l.Digest.Hex)); err != nil {
			want = append(want, l.Digest.String())
		}
	}
	if !slices.Contains(want, bad.String()) {
		t.Fatalf("the bad layer is in the store")
	}
	mu.Lock()
	corrupt = false
	mu.Unlock()
	pulled = nil
	if _, err := Pull(context.Background(), ref, opts); err != nil {
		t.Fatal(err)
	}
	slices.Sort(pulled)
	slices.Sort(want)
	if !slices.Equal(pulled, want) {
		t.Errorf("second pull fetched %v, want only what the store lacked, %v", pulled, want)
	}
}

func TestAuth(t *testing.T) {
	isolate(t)
	host, _ := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	img := testImage(t, compression.GZip, false, tarLayer(t, "a", "1"))
	push(t, host+"/test/img:1", img, remote.WithAuth(&authn.Basic{Username: "me", Password: "secret"}))
	ref := mustParse(t, host+"/test/img:1")

	_, err := Pull(context.Background(), ref, Options{Dir: t.TempDir()})
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "run mrtd login "+host) {
		t.Fatalf("without credentials: %v, want an *AuthError naming mrtd login %s", err, host)
	}
	t.Log(err)

	file := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("me:secret"))
	if err := os.WriteFile(file, []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", file)
	if got, err := Pull(context.Background(), ref, Options{Dir: t.TempDir()}); err != nil || got != digestOf(t, img) {
		t.Errorf("with $REGISTRY_AUTH_FILE: %s, %v", got, err)
	}

	// --authfile is read in place of $REGISTRY_AUTH_FILE.
	empty := filepath.Join(t.TempDir(), "empty.json")
	if err := os.WriteFile(empty, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(context.Background(), ref, Options{Dir: t.TempDir(), AuthFile: empty}); !errors.As(err, &ae) {
		t.Errorf("with an --authfile without the registry: %v, want an *AuthError", err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", empty)
	if _, err := Pull(context.Background(), ref, Options{Dir: t.TempDir(), AuthFile: file}); err != nil {
		t.Errorf("with --authfile: %v", err)
	}

	// $XDG_RUNTIME_DIR/containers/auth.json, repo-scoped.
	t.Setenv("REGISTRY_AUTH_FILE", "")
	run := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", run)
	os.MkdirAll(filepath.Join(run, "containers"), 0o700)
	if err := os.WriteFile(filepath.Join(run, "containers", "auth.json"), []byte(`{"auths":{"`+host+`/test":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(context.Background(), ref, Options{Dir: t.TempDir()}); err != nil {
		t.Errorf("with $XDG_RUNTIME_DIR/containers/auth.json: %v", err)
	}

	// Docker's config.json, last.
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", filepath.Join(home, ".docker"))
	writeFile(t, filepath.Join(home, ".docker", "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`))
	if _, err := Pull(context.Background(), ref, Options{Dir: t.TempDir(), AuthFile: empty}); err != nil {
		t.Errorf("with ~/.docker/config.json: %v", err)
	}
}

func TestOCILayout(t *testing.T) {
	isolate(t)
	tars := [][]byte{tarLayer(t, "a", "1"), tarLayer(t, "b", "2")}
	img := testImage(t, compression.ZStd, true, tars...)
	other := testImage(t, compression.GZip, true, tarLayer(t, "c", "3"))
	dir := filepath.Join(t.TempDir(), "worker-layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: "2"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(other, layout.WithAnnotations(map[string]string{refNameAnnotation: "3"})); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	tr, _, err := prepare(context.Background(), mustParse(t, "oci:"+dir+":2"), Options{Dir: cache, Policy: PullNever})
	if err != nil {
		t.Fatal(err)
	}
	if tr.digest != digestOf(t, img) {
		t.Errorf("digest %s, want %s", tr.digest, digestOf(t, img))
	}
	if got := readTree(t, tr); !slices.EqualFunc(got, tars, bytes.Equal) {
		t.Error("the layers read are not those written")
	}
	_, _, err = prepare(context.Background(), mustParse(t, "oci:"+dir), Options{Dir: cache})
	if err == nil || !strings.Contains(err.Error(), "holds 2 images") {
		t.Errorf("untagged, two images: %v", err)
	}
	_, _, err = prepare(context.Background(), mustParse(t, "oci:"+dir+":9"), Options{Dir: cache})
	if err == nil || !strings.Contains(err.Error(), "use one it has: 2, 3") {
		t.Errorf("unknown tag: %v", err)
	}
}

func TestDockerArchive(t *testing.T) {
	isolate(t)
	tars := [][]byte{tarLayer(t, "a", "1"), tarLayer(t, "b", "2")}
	img := testImage(t, compression.GZip, false, tars...)
	file := filepath.Join(t.TempDir(), "worker.tar")
	tag, _ := name.NewTag("example.org/worker:2")
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		t.Fatal(err)
	}
	ref := mustParse(t, "docker-archive:"+file)
	tr, _, err := prepare(context.Background(), ref, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := img.ConfigName()
	if tr.digest != cd.String() || tr.config.ConfigDigest != cd.String() || tr.config.WorkingDir != "/work" {
		t.Errorf("tree %s config %+v, want the config digest %s", tr.digest, tr.config, cd)
	}
	if got := readTree(t, tr); !slices.EqualFunc(got, tars, bytes.Equal) {
		t.Error("the layers read are not those written")
	}
	if got, err := Pull(context.Background(), ref, Options{Dir: t.TempDir()}); err != nil || got != cd.String() {
		t.Errorf("Pull = %s, %v", got, err)
	}
}

func TestDiffIDMismatch(t *testing.T) {
	want := "sha256:" + strings.Repeat("0", 64)
	rc := verifyDiffID(io.NopCloser(strings.NewReader("not it")), "sha256:layer", want)
	_, err := io.ReadAll(rc)
	var de *DiffIDError
	if !errors.As(err, &de) || de.DiffID != want {
		t.Errorf("read: %v, want a *DiffIDError", err)
	}
	// Closed before its end: Close reads the rest and checks it.
	rc = verifyDiffID(io.NopCloser(strings.NewReader("not it")), "sha256:layer", want)
	if err := rc.Close(); !errors.As(err, &de) {
		t.Errorf("close: %v, want a *DiffIDError", err)
	}
}

func TestUnknownTag(t *testing.T) {
	isolate(t)
	host, _ := testRegistry(t, nil)
	push(t, host+"/test/img:1", testImage(t, compression.GZip, false, tarLayer(t, "a", "1")))
	push(t, host+"/test/img:2", testImage(t, compression.GZip, false, tarLayer(t, "a", "2")))
	_, err := Pull(context.Background(), mustParse(t, host+"/test/img:3"), Options{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "use one it has: 1, 2") || strings.Contains(err.Error(), "\n") {
		t.Errorf("unknown tag: %v, want the tags the registry has", err)
	}
}
