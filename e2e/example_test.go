package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestArchivematicaExample: the shipped example config for Archivematica's
// MCPClient is valid as it stands (only its host paths are moved into the
// test's directory), and gives each worker its own Prometheus port.
func TestArchivematicaExample(t *testing.T) {
	e := needIntegration(t)
	root, err := mrtdtest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "examples", "archivematica", "mcpclient.toml"))
	if err != nil {
		t.Fatal(err)
	}
	d := e.NewDirs(t)
	shared := e.UserDir(t, "sharedDirectory")
	secrets := filepath.Join(d.Home, "mcpclient.secrets")
	if err := os.WriteFile(secrets, []byte("ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD=demo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		`"/var/archivematica/sharedDirectory:`, `"`+shared+`:`,
		"/home/archivematica/.config/mrtd/mcpclient.secrets", secrets,
	).Replace(string(b))
	if conf == string(b) {
		t.Fatal("the example's host paths were not found: update this test with the example")
	}
	path := filepath.Join(d.Home, "mcpclient.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.Run(t, d, "config", "--config", path, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime)
	if r.Code != 0 {
		t.Fatalf("mrtd config --config the example: exit status %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{
		`workers             = "4"`,
		`init                = "true"`,
		`PROMETHEUS_BIND_PORT=9600`,
		`PROMETHEUS_BIND_PORT=9603`,
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("mrtd config of the example lacks %q:\n%s", want, r.Stdout)
		}
	}
}
