package image

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// systemCertsDir is where Podman, and so mrtd, find the CAs of registries
// for every user; tests change it.
var systemCertsDir = "/etc/containers/certs.d"

// CertDirs are the directories a registry's CA certificates are read from,
// as Podman reads them: $XDG_CONFIG_HOME/containers/certs.d/HOST[:PORT]
// (default ~/.config), then /etc/containers/certs.d/HOST[:PORT]. Every
// *.crt in them is added to the system's CAs for that registry. host is
// the registry as references name it, with its port if it has one.
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

// caError returns a *CAError when err says host's certificate has an
// unknown authority, else nil.
func caError(host string, err error) error {
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		return nil
	}
	return &CAError{Host: host, Dirs: CertDirs(host), Files: certFiles(host), Err: err}
}

// registryTLS is the TLS configuration for host: the system's CAs and
// those of its certs.d directories; nil when these have none.
func registryTLS(host string) (*tls.Config, error) {
	var files []string
	for _, dir := range CertDirs(host) {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("registry %s's CA certificates: %w", host, err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".crt") && !e.IsDir() {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("registry %s's CA certificates: %w", host, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry %s's CA certificates: %s holds no PEM certificate: put the CA's certificate there in PEM form, or remove the file", host, f)
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// registryTransport is the HTTP transport for host: TLS verified against
// the system's CAs and host's certs.d, or not verified at all when
// insecure.
func registryTransport(host string, insecure bool) (http.RoundTripper, error) {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		return t, nil
	}
	cfg, err := registryTLS(host)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		t.TLSClientConfig = cfg
	}
	return t, nil
}

// certFiles lists the *.crt files of host's certs.d directories, for
// messages.
func certFiles(host string) []string {
	var files []string
	for _, dir := range CertDirs(host) {
		m, _ := filepath.Glob(filepath.Join(dir, "*.crt"))
		files = append(files, m...)
	}
	return files
}
