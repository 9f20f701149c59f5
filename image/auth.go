package image

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Keychain finds registry credentials where Podman and Docker users keep
// them: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
// $XDG_CONFIG_HOME/containers/auth.json (default ~/.config), then Docker's
// config.json with its credential helpers. The first file with an entry for
// the registry wins.
func Keychain() authn.Keychain {
	return authn.NewMultiKeychain(authFiles(AuthFiles()), authn.DefaultKeychain)
}

// AuthFiles are the Podman-style auth files Keychain reads, in order
// (whether they exist or not). `mrtd login` writes the first.
func AuthFiles() []string {
	var files []string
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		files = append(files, f)
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
