package mrtdtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The image tests run a real registry server, Debian's docker-registry (the
// CNCF distribution registry), on 127.0.0.1, and push to it with skopeo.
// `make e2e` installs both and sets MRTD_E2E_REGISTRY=1; without it the
// tests skip, so that `make test` needs neither.

// Paths of the tools the registry tests use, as Debian installs them.
const (
	RegistryBin = "/usr/bin/docker-registry"
	SkopeoBin   = "/usr/bin/skopeo"
)

// NeedRegistry skips t unless MRTD_E2E_REGISTRY=1 asks for the registry
// tests; then a missing docker-registry or skopeo fails t.
func NeedRegistry(t testing.TB) {
	t.Helper()
	if os.Getenv("MRTD_E2E_REGISTRY") != "1" {
		t.Skip("registry tests: run `make e2e` (it installs docker-registry and skopeo and sets MRTD_E2E_REGISTRY=1)")
	}
	for _, bin := range []string{RegistryBin, SkopeoBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("MRTD_E2E_REGISTRY=1 but %v: `make e2e` installs Debian's docker-registry and skopeo", err)
		}
	}
}

// Registry is one docker-registry on 127.0.0.1, its storage in a
// temporary directory: plain HTTP with no auth, unless started with
// WithTLS or WithHtpasswd.
type Registry struct {
	// Addr is host:port, 127.0.0.1:PORT.
	Addr string
	// Storage is the filesystem driver's root directory.
	Storage string
	// CA is the PEM certificate of the CA that signed the registry's
	// certificate (for 127.0.0.1), with WithTLS; nil without.
	CA []byte
	// User and Password are those of WithHtpasswd; empty without.
	User, Password string

	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
	once   sync.Once
}

// registryConfig is docker-registry's configuration: filesystem storage,
// deletes allowed, no auth, HTTP on the address given.
const registryConfig = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: mrtd-e2e
  headers:
    X-Content-Type-Options: [nosniff]
`

// registryTLSConfig and registryAuthConfig follow registryConfig for
// WithTLS and WithHtpasswd.
const (
	registryTLSConfig = `  tls:
    certificate: %s
    key: %s
`
	registryAuthConfig = `auth:
  htpasswd:
    realm: mrtd-e2e
    path: %s
`
)

// registryStartTimeout bounds the wait for /v2/ to answer.
const registryStartTimeout = 20 * time.Second

// RegistryOption changes how StartRegistry starts a registry.
type RegistryOption func(*registrySetup)

// registrySetup is what the options ask for.
type registrySetup struct {
	tls            bool
	user, password string
}

// WithTLS serves HTTPS only, with a certificate for 127.0.0.1 signed by a
// CA made for the registry (Registry.CA).
func WithTLS() RegistryOption {
	return func(s *registrySetup) { s.tls = true }
}

// WithHtpasswd asks for basic auth: user with password, from an htpasswd
// file with a bcrypt hash. The registry allows it only with TLS: use it
// with WithTLS.
func WithHtpasswd(user, password string) RegistryOption {
	return func(s *registrySetup) { s.user, s.password = user, password }
}

// StartRegistry starts a registry for t and stops it when t ends. A port
// taken between choosing it and the registry's bind is retried.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	NeedRegistry(t)
	dir := t.TempDir()
	var setup registrySetup
	for _, o := range opts {
		o(&setup)
	}
	var err error
	for range 3 {
		var r *Registry
		r, err = startRegistryWith(dir, setup)
		if err == nil {
			t.Cleanup(r.Stop)
			return r
		}
	}
	t.Fatalf("starting docker-registry: %v", err)
	return nil
}

// startRegistry starts a plain registry, as StartRegistry without
// options.
func startRegistry(dir string) (*Registry, error) {
	return startRegistryWith(dir, registrySetup{})
}

func startRegistryWith(dir string, setup registrySetup) (*Registry, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	storage := filepath.Join(dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, err
	}
	r := &Registry{Addr: addr, Storage: storage, User: setup.user, Password: setup.password, log: &syncBuffer{}, exited: make(chan struct{})}
	config := fmt.Appendf(nil, registryConfig, storage, addr)
	if setup.tls {
		cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		if r.CA, err = writeServerCert(cert, key); err != nil {
			return nil, err
		}
		config = fmt.Appendf(config, registryTLSConfig, cert, key)
	}
	if setup.user != "" {
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, setup.user, setup.password); err != nil {
			return nil, err
		}
		config = fmt.Appendf(config, registryAuthConfig, htpasswd)
	}
	conf := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(conf, config, 0o644); err != nil {
		return nil, err
	}
	r.cmd = exec.Command(RegistryBin, "serve", conf)
	r.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		r.cmd.Wait()
		close(r.exited)
	}()
	if err := r.waitReady(registryStartTimeout); err != nil {
		r.Stop()
		return nil, fmt.Errorf("%w\n%s", err, r.log.String())
	}
	return r, nil
}

// freeLoopbackAddr returns 127.0.0.1:PORT with a port free a moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls /v2/ until it answers 200 (401 with auth), the
// registry exits, or timeout passes.
func (r *Registry) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	scheme := "http"
	if r.CA != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(r.CA)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		scheme = "https"
	}
	want := http.StatusOK
	if r.User != "" {
		want = http.StatusUnauthorized
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+r.Addr+"/v2/", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
		}
		select {
		case <-r.exited:
			return errors.New("docker-registry exited before /v2/ answered")
		case <-ctx.Done():
			return fmt.Errorf("docker-registry's /v2/ did not answer within %v", timeout)
		case <-tick.C:
		}
	}
}

// Stop stops the registry (SIGTERM, then SIGKILL after 10s) and waits for
// it; it may be called more than once.
func (r *Registry) Stop() {
	r.once.Do(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-r.exited:
		case <-t.C:
			r.cmd.Process.Kill()
			<-r.exited
		}
	})
}

// Log is what the registry wrote so far.
func (r *Registry) Log() string { return r.log.String() }

// Ref is the registry's reference of repo:tag, as mrtd and skopeo take it
// (skopeo with docker:// before it).
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

// BlobPath is the file holding the blob digest (sha256:HEX) in the
// registry's storage.
func (r *Registry) BlobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Storage, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// Manifest is what the tests read of a pushed image's manifest.
type Manifest struct {
	// Digest is the manifest's digest, sha256:HEX.
	Digest    string
	MediaType string
	Config    Descriptor
	Layers    []Descriptor
}

// Descriptor is a blob a Manifest names: its config or a layer.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// skopeoTimeout bounds every skopeo command.
const skopeoTimeout = 2 * time.Minute

// Skopeo runs skopeo with args, for two minutes at most, and returns its
// stdout; a failure fails t.
func Skopeo(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), skopeoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, SkopeoBin, args...)
	// No policy.json or registries.conf of the host's is needed: the
	// policy is given, the registry is on loopback and named in full.
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// insecurePolicy accepts every image: skopeo wants a signature policy, and
// a fresh host may have no /etc/containers/policy.json.
const insecurePolicy = `{"default":[{"type":"insecureAcceptAnything"}]}`

// PolicyFile writes insecurePolicy in a temporary directory of t.
func PolicyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, []byte(insecurePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Push copies the image src (a skopeo transport:reference, such as
// oci:DIR:1) to repoTag in the registry, with skopeo's extra flags (such
// as --format v2s2), and returns its manifest as the registry serves it.
//
// skopeo 1.9 reuses a blob the registry has (or its blob-info cache says
// it has) instead of converting: to push another compression, convert to
// a layout first with CopyImage, then Push it with --preserve-digests.
func (r *Registry) Push(t testing.TB, src, repoTag string, flags ...string) Manifest {
	t.Helper()
	pre := []string{"--dest-tls-verify=false"}
	if r.User != "" {
		pre = append(pre, "--dest-creds", r.User+":"+r.Password)
	}
	CopyImage(t, src, "docker://"+r.Ref(repoTag), append(pre, flags...)...)
	return r.Inspect(t, repoTag)
}

// CopyImage copies the image src to dst (skopeo transport:references) with
// skopeo's extra flags.
func CopyImage(t testing.TB, src, dst string, flags ...string) {
	t.Helper()
	args := append([]string{"--policy", PolicyFile(t), "copy", "--quiet"}, flags...)
	Skopeo(t, append(args, src, dst)...)
}

// Inspect returns the manifest the registry serves for repoTag.
func (r *Registry) Inspect(t testing.TB, repoTag string) Manifest {
	t.Helper()
	ref := "docker://" + r.Ref(repoTag)
	var m Manifest
	inspect := []string{"inspect", "--tls-verify=false"}
	if r.User != "" {
		inspect = append(inspect, "--creds", r.User+":"+r.Password)
	}
	raw := Skopeo(t, append(inspect, "--raw", ref)...)
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("skopeo inspect --raw %s: %v\n%s", ref, err, raw)
	}
	m.Digest = strings.TrimSpace(Skopeo(t, append(inspect, "--format", "{{.Digest}}", ref)...))
	if !strings.HasPrefix(m.Digest, "sha256:") || len(m.Layers) == 0 {
		t.Fatalf("skopeo inspect %s: digest %q, %d layers", ref, m.Digest, len(m.Layers))
	}
	return m
}

// syncBuffer is a bytes.Buffer safe for a process's writes and a test's
// reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeServerCert makes a CA and a certificate it signs for 127.0.0.1,
// writes the certificate (then the CA's) to cert and its key to key, and
// returns the CA's certificate in PEM.
func writeServerCert(cert, key string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mrtd e2e CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), caPEM...)
	if err := os.WriteFile(cert, chain, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	return caPEM, nil
}

// writeHtpasswd writes an htpasswd file with user's bcrypt hash, the only
// kind docker-registry takes; the lowest cost, as every request checks it.
func writeHtpasswd(file, user, password string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	return os.WriteFile(file, []byte(user+":"+string(hash)+"\n"), 0o644)
}
