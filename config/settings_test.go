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

// TestSettingsAuthFile sets authfile by flag, MRTD_AUTHFILE and the config
// file, each over the next, for the pool and mrtd run.
func TestSettingsAuthFile(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range []string{"flag", "env", "file"} {
		files[name] = filepath.Join(dir, name+".json")
		os.WriteFile(files[name], []byte(`{"auths":{}}`), 0o600)
	}
	conf := filepath.Join(dir, "config.toml")
	os.WriteFile(conf, []byte("authfile = \""+files["file"]+"\"\n"), 0o644)
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		want     string
		wantFrom string
	}{
		{"default", nil, nil, "", ""},
		{"file", []string{"--config", conf}, nil, files["file"], "file " + conf},
		{"env over file", []string{"--config", conf}, map[string]string{"MRTD_AUTHFILE": files["env"]}, files["env"], "env MRTD_AUTHFILE"},
		{"flag over env", []string{"--config", conf, "--authfile", files["flag"]}, map[string]string{"MRTD_AUTHFILE": files["env"]}, files["flag"], "flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"HOME": dir}
			for k, v := range tc.env {
				env[k] = v
			}
			st, err := LoadSettings(tc.args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatal(err)
			}
			if st.Config.AuthFile != tc.want || st.Sources["authfile"] != tc.wantFrom {
				t.Errorf("authfile = %q from %q, want %q from %q", st.Config.AuthFile, st.Sources["authfile"], tc.want, tc.wantFrom)
			}
			var b strings.Builder
			st.Print(&b)
			if !strings.Contains(b.String(), `authfile            = "`+tc.want+`"`) {
				t.Errorf("mrtd config output lacks authfile %q:\n%s", tc.want, b.String())
			}
		})
	}

	missing := filepath.Join(dir, "none.json")
	badConf := filepath.Join(dir, "missing.toml")
	os.WriteFile(badConf, []byte("authfile = \""+missing+"\"\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"--authfile", missing}, nil},
		{"env", nil, map[string]string{"MRTD_AUTHFILE": missing}},
		{"file", []string{"--config", badConf}, nil},
	} {
		t.Run("missing by "+tc.name, func(t *testing.T) {
			env := map[string]string{"HOME": dir}
			for k, v := range tc.env {
				env[k] = v
			}
			_, err := LoadSettings(tc.args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			want := "--authfile " + missing + " does not exist"
			if err == nil || !strings.Contains(err.Error(), want) || !isUsage(err) {
				t.Fatalf("error %v, want a usage error containing %q", err, want)
			}
		})
	}

	// mrtd run has the flag too.
	cfg, err := Default(1000, func(k string) string { return map[string]string{"HOME": dir}[k] })
	if err != nil {
		t.Fatal(err)
	}
	var envList StringList
	fs := RunFlags(&cfg, &envList)
	if err := ParseFlags(fs, []string{"--authfile", files["flag"], "--image", "debian"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || cfg.AuthFile != files["flag"] {
		t.Errorf("mrtd run --authfile: %q, %v; want %q", cfg.AuthFile, err, files["flag"])
	}
}
