package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Keychain finds registry credentials where Podman and Docker users keep
// them: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
// $XDG_CONFIG_HOME/containers/auth.json (default ~/.config), then Docker's
// config.json with its credential helpers. The first file with an entry for
// the registry wins.
func Keychain() authn.Keychain {
	return keychain("")
}

// keychain is Keychain with authFile, when set, read in place of
// $REGISTRY_AUTH_FILE (--authfile).
func keychain(authFile string) authn.Keychain {
	return authn.NewMultiKeychain(authFiles(AuthFiles(authFile)), dockerKeychain{})
}

// dockerKeychain is Docker's config.json with its credential helpers, as
// authn.DefaultKeychain reads it. Without a config.json, DefaultKeychain
// reads $REGISTRY_AUTH_FILE and Podman's files instead: authFiles has read
// those already, or was told to read another file in place of
// $REGISTRY_AUTH_FILE, so dockerKeychain has nothing then.
type dockerKeychain struct{}

func (dockerKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	found := false
	// DefaultKeychain's test for a config.json.
	if home, err := os.UserHomeDir(); err == nil {
		found = exists(filepath.Join(home, ".docker", "config.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); !found && d != "" {
		found = exists(filepath.Join(d, "config.json"))
	}
	if !found {
		return authn.Anonymous, nil
	}
	return authn.DefaultKeychain.Resolve(target)
}

// AuthFiles are the Podman-style auth files Keychain reads, in order
// (whether they exist or not): authFile, when set, in place of
// $REGISTRY_AUTH_FILE (as --authfile overrides it), then Podman's own.
// `mrtd login` writes the first.
func AuthFiles(authFile string) []string {
	var files []string
	if authFile == "" {
		authFile = os.Getenv("REGISTRY_AUTH_FILE")
	}
	if authFile != "" {
		files = append(files, authFile)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		files = append(files, filepath.Join(d, "containers", "auth.json"))
	}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cfg = filepath.Join(home, ".config")
		}
	}
	if cfg != "" {
		files = append(files, filepath.Join(cfg, "containers", "auth.json"))
	}
	return files
}

// authFiles is a keychain over Podman-style auth files:
// {"auths": {"host[/repo]": {"auth": "base64(user:pass)"}}}.
type authFiles []string

type authFile struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
}

func (files authFiles) Resolve(target authn.Resource) (authn.Authenticator, error) {
	for _, f := range files {
		a, err := resolveFile(f, target)
		if err != nil || a != nil {
			return a, err
		}
	}
	return authn.Anonymous, nil
}

// resolveFile returns the credentials file has for target, nil when it has
// none.
func resolveFile(file string, target authn.Resource) (authn.Authenticator, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading registry credentials: %w", err)
	}
	var af authFile
	if err := json.Unmarshal(data, &af); err != nil {
		return nil, fmt.Errorf("registry credentials in %s: %w (fix or remove the file)", file, err)
	}
	for _, key := range authKeys(target) {
		e, ok := af.Auths[key]
		if !ok {
			continue
		}
		if e.IdentityToken != "" {
			return authn.FromConfig(authn.AuthConfig{IdentityToken: e.IdentityToken}), nil
		}
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		user, pass, ok := strings.Cut(string(raw), ":")
		if err != nil || !ok {
			return nil, fmt.Errorf("registry credentials for %s in %s are not base64(user:password): log in again", key, file)
		}
		return authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}), nil
	}
	return nil, nil
}

// authKeys are the keys an auth file may have target's credentials under,
// most specific first: host/repo/path, its parents, then the host (Docker
// Hub under any of its names).
func authKeys(target authn.Resource) []string {
	host := target.RegistryStr()
	hosts := []string{host}
	if host == name.DefaultRegistry || host == "docker.io" {
		hosts = []string{"docker.io", name.DefaultRegistry, "registry-1.docker.io", authn.DefaultAuthKey}
	}
	var keys []string
	if repo, ok := target.(name.Repository); ok {
		path := repo.RepositoryStr()
		for path != "" && path != "." {
			for _, h := range hosts[:1] {
				keys = append(keys, h+"/"+path)
			}
			i := strings.LastIndexByte(path, '/')
			if i < 0 {
				break
			}
			path = path[:i]
		}
	}
	for _, h := range hosts {
		keys = append(keys, h)
		if !strings.HasPrefix(h, "https://") {
			keys = append(keys, "https://"+h)
		}
	}
	return keys
}

// Credentials are a user name and password for a registry.
type Credentials struct {
	Username, Password string
}

// LoginKey is the auth-file key for what `mrtd login` is given,
// HOST[:PORT][/REPOSITORY] with or without https://, and the registry
// host it names.
func LoginKey(s string) (key, host string, err error) {
	key = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://"), "/")
	host, _, _ = strings.Cut(key, "/")
	if _, err := name.NewRegistry(host); err != nil || host == "" {
		return "", "", fmt.Errorf("%q is not a registry: give HOST[:PORT], such as registry.example.org or 127.0.0.1:5000", s)
	}
	return key, host, nil
}

// LoginError reports credentials the registry refused.
type LoginError struct {
	Host     string
	Username string
	// Status is the HTTP status: 401 or 403.
	Status int
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("registry %s refused the password of %s (%d %s): check the user name and password",
		e.Host, e.Username, e.Status, http.StatusText(e.Status))
}

// Login checks c against the registry host, as Podman's login does: GET
// /v2/ with the credentials (after a token exchange, for a registry that
// wants one). insecure allows plain HTTP and certificates that do not
// verify. Credentials refused are a *LoginError; a certificate of an
// unknown authority a *CAError.
func Login(ctx context.Context, host string, c Credentials, insecure bool) error {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, nopts...)
	if err != nil {
		return err
	}
	base, certs, err := registryTransport(host, insecure)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		if ce := tlsError(host, err, certs); ce != nil {
			return ce
		}
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return &LoginError{Host: host, Username: c.Username, Status: te.StatusCode}
		}
		var ue *url.Error
		return &RegistryError{Host: host, Unreachable: te == nil && errors.As(err, &ue), Err: err}
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password})
	t, err := transport.NewWithContext(ctx, reg, auth, transport.NewUserAgent(base, "mrtd"), nil)
	if err != nil {
		return fail(err)
	}
	// NewWithContext learnt the scheme the registry answers on; the
	// transport it returned puts it on requests for the registry.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return fail(err)
	}
	return nil
}

// SaveLogin writes c under key into the Podman-style auth file file,
// keeping its other entries and the keys mrtd does not know. The file is
// replaced atomically and is the user's alone (0600).
func SaveLogin(file, key string, c Credentials) error {
	auth, err := json.Marshal(map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))})
	if err != nil {
		return err
	}
	return editAuthFile(file, func(auths map[string]json.RawMessage) bool {
		auths[key] = auth
		return true
	})
}

// RemoveLogin removes the entry for key (and https://key) from the auth
// file file, keeping the others; it returns false when there was none.
func RemoveLogin(file, key string) (bool, error) {
	found := false
	err := editAuthFile(file, func(auths map[string]json.RawMessage) bool {
		for _, k := range []string{key, "https://" + key} {
			if _, ok := auths[k]; ok {
				delete(auths, k)
				found = true
			}
		}
		return found
	})
	return found, err
}

// editAuthFile lets edit change the "auths" of file (created when
// missing) and, when edit returns true, writes the file anew: a temporary
// file in the same directory, synced, renamed over it.
func editAuthFile(file string, edit func(auths map[string]json.RawMessage) bool) error {
	top := map[string]json.RawMessage{}
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading registry credentials: %w", err)
	case len(strings.TrimSpace(string(data))) > 0:
		if err := json.Unmarshal(data, &top); err != nil {
			return fmt.Errorf("registry credentials in %s: %w (fix or remove the file)", file, err)
		}
	}
	auths := map[string]json.RawMessage{}
	if raw, ok := top["auths"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return fmt.Errorf("registry credentials in %s: auths: %w (fix or remove the file)", file, err)
		}
	}
	if !edit(auths) {
		return nil
	}
	if top["auths"], err = json.Marshal(auths); err != nil {
		return err
	}
	out, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return err
	}
	return writeFileAtomic(file, append(out, '\n'))
}

// writeFileAtomic replaces file by one holding data, mode 0600, creating
// its directory (0700) when missing.
func writeFileAtomic(file string, data []byte) (err error) {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing registry credentials: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing registry credentials: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp makes it 0600 already; a umask cannot widen that.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("writing registry credentials: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing registry credentials: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing registry credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing registry credentials: %w", err)
	}
	if err := os.Rename(f.Name(), file); err != nil {
		return fmt.Errorf("writing registry credentials: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
