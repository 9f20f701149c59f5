package config

import (
	"errors"
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
	st, err := LoadSettings([]string{"--stop-timeout", "7s"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key  string
		got  any
		want any
		src  string
	}{
		{"stop-timeout", st.Pool.StopTimeout, 7 * time.Second, "flag"},
		{"workers", st.Pool.Workers, 5, "env MRTD_WORKERS"},
		{"backoff-max", st.Pool.BackoffMax, 2 * time.Minute, "file " + path},
		{"env", strings.Join(st.Config.Env, ","), "FROM=env,ENV=1", "env MRTD_ENV"},
		{"command", strings.Join(st.Config.Args, " "), "/usr/bin/worker --queue a", "file " + path},
		{"backoff-min", st.Pool.BackoffMin, 100 * time.Millisecond, ""},
	}
	for _, c := range checks {
		if c.got != c.want || st.Sources[c.key] != c.src {
			t.Errorf("%s = %v from %q, want %v from %q", c.key, c.got, st.Sources[c.key], c.want, c.src)
		}
	}
	if got := st.Workers[2].Env; len(got) != 1 || got[0] != "ONLY=two" {
		t.Errorf("[worker.2] env = %v", got)
	}

	// Flags replace lists rather than extend them.
	st, err = LoadSettings([]string{"--env", "FROM=flag", "--", "/bin/other"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.Config.Env, ","); got != "FROM=flag" || st.Config.Args[0] != "/bin/other" || st.Sources["command"] != "flag" {
		t.Errorf("env %q args %v sources %v", got, st.Config.Args, st.Sources)
	}

	var b strings.Builder
	st.Print(&b)
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
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOME": dir}[k]
		return v, ok
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown key names key and file", []string{"--config", path}, `config file ` + path + ` line 2: unknown key "bogus"`},
		{"missing explicit file", []string{"--config", filepath.Join(dir, "none.toml")}, "does not exist"},
		{"integer as a string", []string{"--config", write("workers.toml", "# pool\nenv = [\"A=1\"]\nworkers = \"three\"\n")},
			`config file ` + dir + `/workers.toml line 3: workers = "three": expected an integer such as 4, found a string`},
		{"duration as an integer", []string{"--config", write("stop.toml", "stop-timeout = 10\n")},
			`line 1: stop-timeout = 10: expected a duration such as "10s"`},
		{"string as an integer", []string{"--config", write("net.toml", "metrics-addr = 9464\n")},
			`line 1: metrics-addr = 9464: expected a string in double quotes, found an integer`},
		{"worker env as a number", []string{"--config", write("w.toml", "[worker.2]\nenv = 7\n")},
			`line 2: [worker.2] env = 7: expected a list of strings`},
		{"instance like a flag", []string{"--instance", "-x"}, `--instance "-x": use a name that starts with a letter or digit`},
		{"instance dot", []string{"--instance", "."}, `--instance "."`},
		{"metrics addr that does not parse", []string{"--metrics-addr", "notanaddr"}, `--metrics-addr "notanaddr" is not an address: use HOST:PORT with a numeric port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadSettings(tc.args, lookup)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !isUsage(err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
	// The default config file is optional.
	if _, err := LoadSettings(nil, lookup); err != nil {
		t.Fatalf("no config file at the default path: %v", err)
	}
}

func TestSettingsEnvErrorSaysWhatIsExpected(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, key, value, want string
	}{
		{"integer", "MRTD_WORKERS", "three", `MRTD_WORKERS="three": expected an integer such as 4`},
		{"duration", "MRTD_STOP_TIMEOUT", "10", `MRTD_STOP_TIMEOUT="10": expected a duration such as "10s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"HOME": dir, tc.key: tc.value}
			_, err := LoadSettings(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err == nil || !strings.Contains(err.Error(), tc.want) || !isUsage(err) {
				t.Fatalf("error %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

func isUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}
