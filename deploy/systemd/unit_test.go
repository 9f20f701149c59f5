// Package systemd holds mrtd's systemd units. Its test checks them with
// systemd-analyze, installed as `make install` installs them.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// make installs it with the other build packages: under make
		// test, a missing systemd-analyze is a failure, not a skip.
		if os.Getenv("MRTD_INTEGRATION") == "1" {
			t.Fatal("systemd-analyze is not installed: run `make deps` (it installs systemd)")
		}
		t.Skip("systemd-analyze is not installed on this host")
	}
	home := t.TempDir()
	runtimeDir := filepath.Join(home, "run")
	unitDir := filepath.Join(home, ".config", "systemd", "user")
	bin := filepath.Join(home, ".local", "bin", "mrtd")
	for _, d := range []string{runtimeDir, unitDir, filepath.Dir(bin)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// verify checks that ExecStart's binary exists and is executable.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob("*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no unit files: %v", err)
	}
	for _, u := range units {
		t.Run(u, func(t *testing.T) {
			data, err := os.ReadFile(u)
			if err != nil {
				t.Fatal(err)
			}
			name := u
			if strings.HasSuffix(u, "@.service") {
				name = strings.TrimSuffix(u, "@.service") + "@test.service"
			}
			installed := filepath.Join(unitDir, name)
			if err := os.WriteFile(installed, data, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(analyze, "--user", "verify", installed)
			cmd.Env = append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+runtimeDir, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Fatalf("systemd-analyze --user verify %s: %v\n%s", name, err, out)
			}
		})
	}
}

func TestUnitSettings(t *testing.T) {
	data, err := os.ReadFile("mrtd.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for _, want := range []string{
		"Type=notify", "NotifyAccess=main", "ExecStart=%h/.local/bin/mrtd",
		"ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "RestartPreventExitStatus=2",
		"KillMode=mixed", "WatchdogSec=", "TimeoutStopSec=", "WantedBy=default.target",
	} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("mrtd.service lacks %q", want)
		}
	}
}
