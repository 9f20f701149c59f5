package image

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// systemCertsDir is where Podman, and so mrtd, find the CAs of registries
// for every user; tests change it.
var systemCertsDir = "/etc/containers/certs.d"

// CertDirs are the directories a registry's certificates are read from,
// as Podman reads them (containers-certs.d(5)):
// $XDG_CONFIG_HOME/containers/certs.d/HOST[:PORT] (default ~/.config),
// then /etc/containers/certs.d/HOST[:PORT]. Every *.crt in them is added
// to the system's CAs for that registry, and every *.cert with the *.key
// of the same name is a client certificate offered to it. host is the
// registry as references name it, with its port if it has one.
func CertDirs(host string) []string {
	var dirs []string
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cfg = filepath.Join(home, ".config")
		}
	}
	if cfg != "" {
		dirs = append(dirs, filepath.Join(cfg, "containers", "certs.d", host))
	}
	return append(dirs, filepath.Join(systemCertsDir, host))
}

// CAError reports a registry whose TLS certificate is signed by an
// authority neither the system nor the registry's certs.d directories
// know.
type CAError struct {
	Host string
	// Dirs are the certs.d directories for Host (CertDirs).
	Dirs []string
	// Files are the *.crt files of Dirs, none of which signs the
	// certificate.
	Files []string
	Err   error
}

func (e *CAError) Error() string {
	var alt []string
	for _, d := range e.Dirs[1:] {
		alt = append(alt, filepath.Join(d, "ca.crt"))
	}
	also := ""
	if len(alt) > 0 {
		also = " (or " + strings.Join(alt, ", or ") + ")"
	}
	tried := ""
	if len(e.Files) > 0 {
		tried = " (not by " + strings.Join(e.Files, " nor ") + ")"
	}
	return fmt.Sprintf("registry %s's TLS certificate is signed by an unknown authority%s: put the CA's certificate in %s%s",
		e.Host, tried, filepath.Join(e.Dirs[0], "ca.crt"), also)
}

func (e *CAError) Unwrap() error { return e.Err }

// ClientCertError reports a registry that asks for a client certificate
// and was offered none it accepts.
type ClientCertError struct {
	Host string
	// Dirs are the certs.d directories for Host (CertDirs).
	Dirs []string
	// Files are the client certificates (*.cert) of Dirs, none of which
	// the registry accepted; empty when there are none.
	Files []string
	// Err is the TLS alert the registry sent.
	Err error
}

func (e *ClientCertError) Error() string {
	var alt []string
	for _, d := range e.Dirs[1:] {
		alt = append(alt, d+string(filepath.Separator))
	}
	also := ""
	if len(alt) > 0 {
		also = " (or in " + strings.Join(alt, ", or ") + ")"
	}
	what := "wants a client certificate and certs.d has none"
	if len(e.Files) > 0 {
		what = "refused the client certificate " + strings.Join(e.Files, " and ")
	}
	alert := strings.TrimPrefix(e.Err.Error(), "remote error: ")
	return fmt.Sprintf("registry %s %s (%s): put a certificate it accepts in %s and its private key in %s%s",
		e.Host, what, alert, filepath.Join(e.Dirs[0], "client.cert"), filepath.Join(e.Dirs[0], "client.key"), also)
}

func (e *ClientCertError) Unwrap() error { return e.Err }

// CertPairError reports a client certificate without its key in a
// certs.d directory, or a key without its certificate.
type CertPairError struct {
	Host string
	// Cert and Key are the pair's paths: NAME.cert and NAME.key.
	Cert, Key string
	// MissingKey is set when Key is missing, else Cert is.
	MissingKey bool
}

func (e *CertPairError) Error() string {
	if e.MissingKey {
		return fmt.Sprintf("registry %s's client certificate %s has no key %s: put its private key there, or remove the certificate (a CA's certificate is named *.crt)",
			e.Host, e.Cert, e.Key)
	}
	return fmt.Sprintf("registry %s's client key %s has no certificate %s: put the client certificate there, or remove the key",
		e.Host, e.Key, e.Cert)
}

// tlsError returns a *CAError when err says host's certificate has an
// unknown authority, a *ClientCertError when host refused the client
// certificate or wanted one, else nil. certs are those the transport
// offered (registryTransport).
func tlsError(host string, err error, certs *clientCerts) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		cas, _, _ := certsD(host)
		return &CAError{Host: host, Dirs: CertDirs(host), Files: cas, Err: err}
	}
	// A TLS alert the registry sent about a certificate can only be
	// about the client's. crypto/tls's alert type is not exported; its
	// text is.
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return nil
	}
	switch oe.Err.Error() {
	case "tls: certificate required", "tls: bad certificate", "tls: unsupported certificate",
		"tls: revoked certificate", "tls: expired certificate", "tls: unknown certificate",
		"tls: unknown certificate authority", "tls: access denied":
	case "tls: handshake failure":
		// What a TLS 1.2 server says when it gets no certificate, and
		// when it has no cipher suite in common with the client: only
		// the first if it asked for one.
		if certs == nil || !certs.asked.Load() {
			return nil
		}
	default:
		return nil
	}
	_, pairs, _ := certsD(host)
	var files []string
	for _, p := range pairs {
		files = append(files, p.cert)
	}
	return &ClientCertError{Host: host, Dirs: CertDirs(host), Files: files, Err: oe}
}

// clientCerts are the client certificates offered to a registry.
type clientCerts struct {
	certs []tls.Certificate
	// asked is set once the registry asked for a client certificate.
	asked atomic.Bool
}

// get is tls.Config.GetClientCertificate: the first certificate the
// registry accepts, as crypto/tls chooses among tls.Config.Certificates,
// or none.
func (c *clientCerts) get(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.asked.Store(true)
	for i := range c.certs {
		if cri.SupportsCertificate(&c.certs[i]) == nil {
			return &c.certs[i], nil
		}
	}
	return new(tls.Certificate), nil
}

// certPair is the paths of a client certificate and its key.
type certPair struct {
	cert, key string
}

// certsD lists the files of host's certs.d directories: the CAs (*.crt)
// and the client certificates (*.cert) with their keys (*.key of the same
// name). A certificate without its key, or a key without its
// certificate, is a *CertPairError.
func certsD(host string) (cas []string, pairs []certPair, err error) {
	for _, dir := range CertDirs(host) {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("registry %s's certificates: %w", host, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			base, ext := strings.TrimSuffix(p, filepath.Ext(p)), filepath.Ext(p)
			switch ext {
			case ".crt":
				cas = append(cas, p)
			case ".cert":
				pe := &CertPairError{Host: host, Cert: p, Key: base + ".key", MissingKey: true}
				if _, err := os.Stat(pe.Key); errors.Is(err, fs.ErrNotExist) {
					return nil, nil, pe
				}
				pairs = append(pairs, certPair{cert: pe.Cert, key: pe.Key})
			case ".key":
				pe := &CertPairError{Host: host, Cert: base + ".cert", Key: p}
				if _, err := os.Stat(pe.Cert); errors.Is(err, fs.ErrNotExist) {
					return nil, nil, pe
				}
			}
		}
	}
	return cas, pairs, nil
}

// registryTLS is the TLS configuration for host: the system's CAs and
// those of its certs.d directories (none when insecure: the registry's
// certificate is not verified), and the client certificates there.
func registryTLS(host string, insecure bool) (*tls.Config, *clientCerts, error) {
	cas, pairs, err := certsD(host)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if len(cas) > 0 && !insecure {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, f := range cas {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, nil, fmt.Errorf("registry %s's CA certificates: %w", host, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("registry %s's CA certificates: %s holds no PEM certificate: put the CA's certificate there in PEM form, or remove the file", host, f)
			}
		}
		cfg.RootCAs = pool
	}
	certs := &clientCerts{}
	for _, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.cert, p.key)
		if err != nil {
			return nil, nil, fmt.Errorf("registry %s's client certificate %s and key %s (put a PEM certificate and its private key there, or remove both): %w", host, p.cert, p.key, err)
		}
		certs.certs = append(certs.certs, c)
	}
	cfg.GetClientCertificate = certs.get
	return cfg, certs, nil
}

// registryTransport is the HTTP transport for host: TLS verified against
// the system's CAs and host's certs.d, or not verified at all when
// insecure, with host's client certificates either way, which it also
// returns.
func registryTransport(host string, insecure bool) (http.RoundTripper, *clientCerts, error) {
	cfg, certs, err := registryTLS(host, insecure)
	if err != nil {
		return nil, nil, err
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	return t, certs, nil
}
