package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte(`workers = 3
stop-timeout = "5s"
backoff-max = "2m"
env = ["FROM=file", "FILE=1"]
command = ["/usr/bin/worker", "--queue", "a"]
[worker.2]
env = ["ONLY=two"]
`), 0o644)
	env := map[string]string{
		"HOME":              dir,
		"MRTD_CONFIG":       path,
		"MRTD_WORKERS":      "5",
		"MRTD_STOP_TIMEOUT": "6s",
		"MRTD_ENV":          "FROM=env\nENV=1",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	st, err := loadSettings([]string{"--stop-timeout", "7s"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key  string
		got  any
		want any
		src  string
	}{
		{"stop-timeout", st.pool.StopTimeout, 7 * time.Second, "flag"},
		{"workers", st.pool.Workers, 5, "env MRTD_WORKERS"},
		{"backoff-max", st.pool.BackoffMax, 2 * time.Minute, "file " + path},
		{"env", strings.Join(st.cfg.Env, ","), "FROM=env,ENV=1", "env MRTD_ENV"},
		{"command", strings.Join(st.cfg.Args, " "), "/usr/bin/worker --queue a", "file " + path},
		{"backoff-min", st.pool.BackoffMin, 100 * time.Millisecond, ""},
	}
	for _, c := range checks {
		if c.got != c.want || st.sources[c.key] != c.src {
			t.Errorf("%s = %v from %q, want %v from %q", c.key, c.got, st.sources[c.key], c.want, c.src)
		}
	}
	if got := st.workers[2].Env; len(got) != 1 || got[0] != "ONLY=two" {
		t.Errorf("[worker.2] env = %v", got)
	}

	// Flags replace lists rather than extend them.
	st, err = loadSettings([]string{"--env", "FROM=flag", "--", "/bin/other"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.cfg.Env, ","); got != "FROM=flag" || st.cfg.Args[0] != "/bin/other" || st.sources["command"] != "flag" {
		t.Errorf("env %q args %v sources %v", got, st.cfg.Args, st.sources)
	}

	var b strings.Builder
	st.print(&b)
	for _, want := range []string{`# flag`, `# env MRTD_WORKERS`, `# file ` + path, `# default`, "worker.2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("mrtd config output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte("workers = 2\nbogus = true\n"), 0o644)
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOME": dir}[k]
		return v, ok
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown key names key and file", []string{"--config", path}, `config file ` + path + `: unknown key "bogus"`},
		{"missing explicit file", []string{"--config", filepath.Join(dir, "none.toml")}, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSettings(tc.args, lookup)
			if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != exitUsage {
				t.Fatalf("error %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
	// The default config file is optional.
	if _, err := loadSettings(nil, lookup); err != nil {
		t.Fatalf("no config file at the default path: %v", err)
	}
}
