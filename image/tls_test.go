package image

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// tlsRegistry serves go-containerregistry's in-memory registry over TLS on
// 127.0.0.1, with a certificate of its own CA, through wrap when set. It
// returns the host and the CA's certificate in PEM.
func tlsRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (*httptest.Server, string, []byte) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	// Handshakes the tests make fail on purpose are not news.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, strings.TrimPrefix(srv.URL, "https://"), ca
}

// isolateCerts points the certs.d directories at temporary ones: the
// user's under $XDG_CONFIG_HOME, and the system's.
func isolateCerts(t *testing.T) (user, system string) {
	t.Helper()
	isolate(t)
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	old := systemCertsDir
	systemCertsDir = t.TempDir()
	t.Cleanup(func() { systemCertsDir = old })
	return filepath.Join(cfg, "containers", "certs.d"), systemCertsDir
}

// selfSignedCA is the PEM of a CA's certificate that signs nothing here
// (httptest's servers all share one certificate).
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "another CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryCA(t *testing.T) {
	srv, host, ca := tlsRegistry(t, nil)
	img := testImage(t, compression.GZip, true, tarLayer(t, "a", "1"))
	push(t, host+"/test/img:1", img, remote.WithTransport(srv.Client().Transport))
	ref := mustParse(t, host+"/test/img:1")
	otherCA := selfSignedCA(t)

	pull := func() error {
		_, err := Pull(context.Background(), ref, Options{Dir: t.TempDir()})
		return err
	}
	t.Run("unknown CA names certs.d", func(t *testing.T) {
		user, system := isolateCerts(t)
		err := pull()
		var ce *CAError
		if !errors.As(err, &ce) {
			t.Fatalf("without the CA: %v, want a *CAError", err)
		}
		msg := err.Error()
		for _, p := range []string{filepath.Join(user, host, "ca.crt"), filepath.Join(system, host, "ca.crt")} {
			if !strings.Contains(msg, p) {
				t.Errorf("the error %q does not name %s", msg, p)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("the error %q is more than one line", msg)
		}
		t.Log(msg)
	})
	t.Run("user certs.d", func(t *testing.T) {
		user, _ := isolateCerts(t)
		writeFile(t, filepath.Join(user, host, "ca.crt"), ca)
		if err := pull(); err != nil {
			t.Fatalf("with the CA in %s: %v", user, err)
		}
	})
	t.Run("system certs.d, any .crt", func(t *testing.T) {
		_, system := isolateCerts(t)
		writeFile(t, filepath.Join(system, host, "registry.crt"), ca)
		if err := pull(); err != nil {
			t.Fatalf("with the CA in %s: %v", system, err)
		}
	})
	t.Run("another registry's CA", func(t *testing.T) {
		user, _ := isolateCerts(t)
		wrong := filepath.Join(user, host, "ca.crt")
		writeFile(t, wrong, otherCA)
		// The right CA under another port's name is not for this registry.
		writeFile(t, filepath.Join(user, "127.0.0.1", "ca.crt"), ca)
		err := pull()
		var ce *CAError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "not by "+wrong) {
			t.Fatalf("with another CA in certs.d: %v, want a *CAError saying %s does not sign", err, wrong)
		}
	})
	t.Run("not PEM", func(t *testing.T) {
		user, _ := isolateCerts(t)
		bad := filepath.Join(user, host, "ca.crt")
		writeFile(t, bad, []byte("not a certificate\n"))
		if err := pull(); err == nil || !strings.Contains(err.Error(), bad) {
			t.Fatalf("with a ca.crt that is not PEM: %v, want an error naming it", err)
		}
	})
	t.Run("tls-verify=false", func(t *testing.T) {
		isolateCerts(t)
		if _, err := Pull(context.Background(), ref, Options{Dir: t.TempDir(), Insecure: true}); err != nil {
			t.Fatalf("insecure, without the CA: %v", err)
		}
	})
}
