package image

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	return tlsRegistryWith(t, wrap, nil)
}

// tlsRegistryWith is tlsRegistry with the server's TLS configuration
// starting from cfg (its certificate is httptest's).
func tlsRegistryWith(t *testing.T, wrap func(http.Handler) http.Handler, cfg *tls.Config) (*httptest.Server, string, []byte) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
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
	return newCA(t, "another CA").pem
}

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
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
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// clientCert issues a client certificate for name: the certificate and its
// private key, in PEM.
func (ca *testCA) clientCert(t *testing.T, name string) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
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

func TestClientCert(t *testing.T) {
	clientCA := newCA(t, "client CA")
	clients := x509.NewCertPool()
	clients.AddCert(clientCA.cert)
	srv, host, ca := tlsRegistryWith(t, nil, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients})
	cert, key := clientCA.clientCert(t, "mrtd")
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pusher := srv.Client().Transport.(*http.Transport).Clone()
	pusher.TLSClientConfig.Certificates = []tls.Certificate{pair}
	img := testImage(t, compression.GZip, true, tarLayer(t, "a", "1"))
	push(t, host+"/test/img:1", img, remote.WithTransport(pusher))
	ref := mustParse(t, host+"/test/img:1")
	pull := func(insecure bool) error {
		_, err := Pull(context.Background(), ref, Options{Dir: t.TempDir(), Insecure: insecure})
		return err
	}
	// wantOneLine fails t unless err is one line naming each of names.
	wantOneLine := func(t *testing.T, err error, names ...string) {
		t.Helper()
		msg := err.Error()
		for _, n := range names {
			if !strings.Contains(msg, n) {
				t.Errorf("the error %q does not name %s", msg, n)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("the error %q is more than one line", msg)
		}
		t.Log(msg)
	}

	t.Run("none names certs.d", func(t *testing.T) {
		user, system := isolateCerts(t)
		writeFile(t, filepath.Join(user, host, "ca.crt"), ca)
		err := pull(false)
		var ce *ClientCertError
		if !errors.As(err, &ce) {
			t.Fatalf("without a client certificate: %v, want a *ClientCertError", err)
		}
		wantOneLine(t, err, filepath.Join(user, host, "client.cert"), filepath.Join(user, host, "client.key"), filepath.Join(system, host))
		var le *LoginError
		if err := Login(context.Background(), host, Credentials{Username: "me", Password: "pw"}, false); !errors.As(err, &ce) || errors.As(err, &le) {
			t.Errorf("login without a client certificate: %v, want a *ClientCertError", err)
		}
	})
	t.Run("none, TLS 1.2", func(t *testing.T) {
		// A TLS 1.2 server says "bad certificate", not "certificate
		// required".
		_, host12, ca12 := tlsRegistryWith(t, nil, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients, MaxVersion: tls.VersionTLS12})
		user, _ := isolateCerts(t)
		writeFile(t, filepath.Join(user, host12, "ca.crt"), ca12)
		_, err := Pull(context.Background(), mustParse(t, host12+"/test/img:1"), Options{Dir: t.TempDir()})
		var ce *ClientCertError
		if !errors.As(err, &ce) {
			t.Fatalf("without a client certificate: %v, want a *ClientCertError", err)
		}
		wantOneLine(t, err, filepath.Join(user, host12, "client.cert"))
	})
	t.Run("user certs.d", func(t *testing.T) {
		user, _ := isolateCerts(t)
		writeFile(t, filepath.Join(user, host, "ca.crt"), ca)
		writeFile(t, filepath.Join(user, host, "client.cert"), cert)
		writeFile(t, filepath.Join(user, host, "client.key"), key)
		if err := pull(false); err != nil {
			t.Fatalf("with the pair in %s: %v", user, err)
		}
		if err := Login(context.Background(), host, Credentials{Username: "me", Password: "pw"}, false); err != nil {
			t.Errorf("login with the pair in %s: %v", user, err)
		}
	})
	t.Run("system certs.d, any name", func(t *testing.T) {
		_, system := isolateCerts(t)
		writeFile(t, filepath.Join(system, host, "ca.crt"), ca)
		writeFile(t, filepath.Join(system, host, "mrtd.cert"), cert)
		writeFile(t, filepath.Join(system, host, "mrtd.key"), key)
		if err := pull(false); err != nil {
			t.Fatalf("with the pair in %s: %v", system, err)
		}
	})
	t.Run("tls-verify=false still offers it", func(t *testing.T) {
		user, _ := isolateCerts(t)
		writeFile(t, filepath.Join(user, host, "client.cert"), cert)
		writeFile(t, filepath.Join(user, host, "client.key"), key)
		if err := pull(true); err != nil {
			t.Fatalf("insecure, with the pair in %s: %v", user, err)
		}
	})
	t.Run("one the registry does not accept", func(t *testing.T) {
		user, _ := isolateCerts(t)
		otherCert, otherKey := newCA(t, "another CA").clientCert(t, "mrtd")
		bad := filepath.Join(user, host, "client.cert")
		writeFile(t, filepath.Join(user, host, "ca.crt"), ca)
		writeFile(t, bad, otherCert)
		writeFile(t, filepath.Join(user, host, "client.key"), otherKey)
		err := pull(false)
		var ce *ClientCertError
		if !errors.As(err, &ce) {
			t.Fatalf("with another CA's client certificate: %v, want a *ClientCertError", err)
		}
		wantOneLine(t, err, "refused the client certificate "+bad)
	})
	for _, tc := range []struct {
		name, file string
		data       []byte
		missing    string
	}{
		{"certificate without its key", "client.cert", cert, "client.key"},
		{"key without its certificate", "client.key", key, "client.cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, _ := isolateCerts(t)
			writeFile(t, filepath.Join(user, host, "ca.crt"), ca)
			writeFile(t, filepath.Join(user, host, tc.file), tc.data)
			err := pull(false)
			var pe *CertPairError
			if !errors.As(err, &pe) {
				t.Fatalf("%v, want a *CertPairError", err)
			}
			wantOneLine(t, err, filepath.Join(user, host, tc.file), filepath.Join(user, host, tc.missing), "put ")
		})
	}
	t.Run("key of another certificate", func(t *testing.T) {
		user, _ := isolateCerts(t)
		_, otherKey := clientCA.clientCert(t, "other")
		writeFile(t, filepath.Join(user, host, "ca.crt"), ca)
		writeFile(t, filepath.Join(user, host, "client.cert"), cert)
		writeFile(t, filepath.Join(user, host, "client.key"), otherKey)
		err := pull(false)
		if err == nil {
			t.Fatal("a certificate with another's key: no error")
		}
		wantOneLine(t, err, filepath.Join(user, host, "client.cert"), filepath.Join(user, host, "client.key"))
	})
}

func TestTLSError(t *testing.T) {
	isolateCerts(t)
	alert := func(text string) error {
		return &url.Error{Op: "Get", URL: "https://r/v2/", Err: &net.OpError{Op: "remote error", Err: errors.New(text)}}
	}
	asked := &clientCerts{}
	asked.asked.Store(true)
	for _, tc := range []struct {
		name  string
		err   error
		certs *clientCerts
		want  string // the error's type, or ""
	}{
		{"unknown authority", x509.UnknownAuthorityError{}, nil, "*image.CAError"},
		{"certificate required", alert("tls: certificate required"), &clientCerts{}, "*image.ClientCertError"},
		{"bad certificate", alert("tls: bad certificate"), nil, "*image.ClientCertError"},
		{"handshake failure, a certificate asked for", alert("tls: handshake failure"), asked, "*image.ClientCertError"},
		{"handshake failure, none asked for", alert("tls: handshake failure"), &clientCerts{}, ""},
		{"another alert", alert("tls: protocol version not supported"), asked, ""},
		{"a local error", &net.OpError{Op: "local error", Err: errors.New("tls: bad certificate")}, asked, ""},
		{"not TLS", errors.New("connection refused"), asked, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tlsError("r", tc.err, tc.certs)
			if typ := fmt.Sprintf("%T", got); got == nil && tc.want != "" || got != nil && typ != tc.want {
				t.Errorf("tlsError = %v (%T), want a %q", got, got, tc.want)
			}
		})
	}
}
