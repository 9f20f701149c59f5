package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTemplateRender(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		worker      int
		want        string
	}{
		{"add", "PORT={{add 9600 .Worker}}", 3, "PORT=9603"},
		{"printf", `DIR={{printf "%s-%03d" .Instance .Worker}}`, 7, "DIR=ingest-007"},
		{"hostname", "NAME={{.Hostname}}", 12, "NAME=ingest-12"},
		{"builtin", `ROLE={{if eq .Worker 0}}leader{{else}}follower{{end}}`, 0, "ROLE=leader"},
		{"literal braces", `A={{"{{"}}x}}`, 1, "A={{x}}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := ParseEnvTemplate("--env", tc.value)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tm.Render(WorkerData("ingest", tc.worker))
			if err != nil || got != tc.want {
				t.Errorf("Render(worker %d) = %q, %v; want %q", tc.worker, got, err, tc.want)
			}
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		parse       bool // fails to parse, else to render
		want        string
	}{
		{"unclosed action", "PORT={{add 9600 .Worker", true, `--env "PORT={{add 9600 .Worker": unclosed action`},
		{"unknown function", "PORT={{mul 2 .Worker}}", true, `--env "PORT={{mul 2 .Worker}}": function "mul" not defined`},
		{"wrong type", `PORT={{add .Worker "x"}}`, false, `--env "PORT={{add .Worker \"x\"}}" for worker 2: <"x">: expected integer; found "x"`},
		{"unknown field", "PORT={{.Index}}", false, `--env "PORT={{.Index}}" for worker 2: <.Index>: can't evaluate field Index`},
		{"templated key", "P{{.Worker}}=1", true, `only the VALUE of KEY=VALUE may be a template`},
		{"not KEY=VALUE", "{{.Worker}}", true, `--env "{{.Worker}}" is not KEY=VALUE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := ParseEnvTemplate("--env", tc.value)
			if err == nil && tc.parse {
				t.Fatalf("%q parsed", tc.value)
			}
			if err == nil {
				_, err = tm.Render(WorkerData("mrtd", 2))
			}
			if err == nil || !isUsage(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line of usage error holding %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "a template sees .Worker") && tc.name != "templated key" && tc.name != "not KEY=VALUE" {
				t.Errorf("error %v does not say what a template may use", err)
			}
		})
	}
}

func TestMountTemplate(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"0", "1"} {
		os.Mkdir(filepath.Join(dir, sub), 0o755)
	}
	m, err := ParseMountTemplate("--mount", dir+"/{{.Worker}}:/scratch:ro")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Render(WorkerData("mrtd", 1))
	if want := (Mount{Source: dir + "/1", Destination: "/scratch", ReadOnly: true}); err != nil || got != want {
		t.Errorf("Render(worker 1) = %+v, %v; want %+v", got, err, want)
	}
	_, err = m.Render(WorkerData("mrtd", 3))
	if want := `--mount "` + dir + `/{{.Worker}}:/scratch:ro" for worker 3: source ` + dir + `/3 does not exist`; err == nil || !isUsage(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("Render(worker 3) = %v, want %q", err, want)
	}
	// A colon inside an action is SRC's, not a separator.
	m, err = ParseMountTemplate("--mount", `{{printf "%s/%d" "`+dir+`" .Worker}}:/scratch`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Render(WorkerData("mrtd", 0)); err != nil || got.Source != dir+"/0" {
		t.Errorf("Render = %+v, %v", got, err)
	}

	for _, tc := range []struct{ name, value, want string }{
		{"templated DST", dir + "/{{.Worker}}:/scratch/{{.Worker}}", "only SRC may be a template"},
		{"templated mode", dir + `/{{.Worker}}:/scratch:{{"ro"}}`, "only SRC may be a template"},
		{"does not parse", dir + "/{{.Worker", "unclosed action"},
		{"no DST", dir + "/{{.Worker}}", "needs a DST"},
		{"no DST, a mode", dir + "/{{.Worker}}::ro", "needs a DST"},
		{"relative DST", dir + "/{{.Worker}}:scratch", "must be absolute paths"},
		{"bad mode", dir + "/{{.Worker}}:/scratch:rx", "the third field must be ro or rw"},
		{"four fields", dir + "/{{.Worker}}:/scratch:ro:x", "use SRC[:DST[:ro]]"},
	} {
		if _, err := ParseMountTemplate("--mount", tc.value); err == nil || !isUsage(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseMountTemplate(%q) = %v, want %q", tc.name, tc.value, err, tc.want)
		}
	}
	m, _ = ParseMountTemplate("--mount", `{{printf "%s:%d" "`+dir+`" .Worker}}:/scratch`)
	if _, err := m.Render(WorkerData("mrtd", 0)); err == nil || !strings.Contains(err.Error(), "holds a colon") {
		t.Errorf("a SRC rendered with a colon: %v", err)
	}
	m, _ = ParseMountTemplate("--mount", `{{.Worker}}:/scratch`)
	if _, err := m.Render(WorkerData("mrtd", 0)); err == nil || !strings.Contains(err.Error(), `SRC renders to "0", which is not an absolute path`) {
		t.Errorf("a relative SRC: %v", err)
	}
}

// TestSettingsTemplates: LoadSettings renders every template for every
// worker before anything starts, and names where a bad one was set.
func TestSettingsTemplates(t *testing.T) {
	dir := t.TempDir()
	scratch := filepath.Join(dir, "scratch")
	for _, sub := range []string{"0", "1", "2"} {
		os.MkdirAll(filepath.Join(scratch, sub), 0o755)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	lookupWith := func(env map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k == "HOME" {
				return dir, true
			}
			v, ok := env[k]
			return v, ok
		}
	}
	lookup := lookupWith(nil)
	good := []string{"--workers", "3", "--env", "PORT={{add 9600 .Worker}}", "--mount", scratch + "/{{.Worker}}:/scratch"}

	st, err := LoadSettings(good, lookup)
	if err != nil {
		t.Fatal(err)
	}
	// The settings keep the templates; the daemon renders them per worker.
	if !slices.Equal(st.Config.Env, []string{"PORT={{add 9600 .Worker}}"}) || !slices.Equal(st.Pool.Mounts, []string{scratch + "/{{.Worker}}:/scratch"}) {
		t.Errorf("env %q mounts %q", st.Config.Env, st.Pool.Mounts)
	}

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag", []string{"--env", "PORT={{add .Worker \"x\"}}"}, nil, `--env "PORT={{add .Worker \"x\"}}" for worker 0: <"x">: expected integer`},
		{"environment", nil, map[string]string{"MRTD_ENV": "A=1\nPORT={{.Wrker}}"}, `MRTD_ENV "PORT={{.Wrker}}" for worker 0: <.Wrker>: can't evaluate field Wrker`},
		{"config file", []string{"--config", write("env.toml", "env = [\"PORT={{nope}}\"]\n")}, nil, `config file ` + dir + `/env.toml: env "PORT={{nope}}": function "nope" not defined`},
		{"env file", []string{"--env-file", write("env.list", "A=1\nPORT={{add 1}}\n")}, nil, `--env-file ` + dir + `/env.list "PORT={{add 1}}" for worker 0: <add>: wrong number of args for add: want 2 got 1`},
		{"worker section", []string{"--config", write("w.toml", "[worker.7]\nenv = [\"ROLE={{.Role}}\"]\n")}, nil, `config file ` + dir + `/w.toml: [worker.7] env "ROLE={{.Role}}" for worker 7`},
		{"mount for one worker", []string{"--workers", "4", "--mount", scratch + "/{{.Worker}}:/scratch"}, nil, `--mount "` + scratch + `/{{.Worker}}:/scratch" for worker 3: source ` + scratch + `/3 does not exist: create it first`},
		{"mount in the config file", []string{"--workers", "4", "--config", write("m.toml", "mount = [\""+scratch+"/{{.Worker}}:/scratch\"]\n")}, nil, `config file ` + dir + `/m.toml: mount "` + scratch + `/{{.Worker}}:/scratch" for worker 3: source`},
		{"mount with a templated DST", []string{"--mount", scratch + "/{{.Worker}}:/s/{{.Worker}}"}, nil, `only SRC may be a template`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadSettings(tc.args, lookupWith(tc.env))
			if err == nil || !isUsage(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line of usage error holding %q", err, tc.want)
			}
		})
	}

	// mrtd config: a line per worker with its rendered values, only when
	// templates are used.
	cfg := write("both.toml", "[worker.1]\nenv = [\"ROLE=one\", \"PEER={{add .Worker 1}}\"]\n")
	st, err = LoadSettings(append([]string{"--config", cfg}, good...), lookup)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	st.Print(&b)
	for _, want := range []string{
		`worker.0            = env ["PORT=9600"] mount ["` + scratch + `/0:/scratch"] # rendered`,
		`worker.1            = env ["PORT=9601" "PEER=2"] mount ["` + scratch + `/1:/scratch"] # rendered`,
		`worker.2            = env ["PORT=9602"] mount ["` + scratch + `/2:/scratch"] # rendered`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("mrtd config output lacks %q:\n%s", want, b.String())
		}
	}
	st, err = LoadSettings([]string{"--workers", "3", "--env", "PORT=9600", "--env", "ODD=}}{ {", "--mount", scratch + "/0:/scratch"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	st.Print(&b)
	if strings.Contains(b.String(), "# rendered") {
		t.Errorf("mrtd config without templates prints rendered lines:\n%s", b.String())
	}
	if !slices.Equal(st.Config.Env, []string{"PORT=9600", "ODD=}}{ {"}) {
		t.Errorf("plain values changed: %q", st.Config.Env)
	}
}

func TestRunEnv(t *testing.T) {
	plain := []string{"A=1", "B={ }"}
	if got, err := RunEnv(plain); err != nil || &got[0] != &plain[0] {
		t.Errorf("RunEnv(plain) = %q, %v; want the same slice", got, err)
	}
	got, err := RunEnv([]string{"A=1", `B={{add 1 2}}`, `C={{"{{"}}`})
	if err != nil || !slices.Equal(got, []string{"A=1", "B=3", "C={{"}) {
		t.Errorf("RunEnv = %q, %v", got, err)
	}
	for _, v := range []string{"PORT={{add 9600 .Worker}}", "H={{.Hostname}}"} {
		if _, err := RunEnv([]string{v}); err == nil || !isUsage(err) || !strings.Contains(err.Error(), "mrtd run has no worker") {
			t.Errorf("RunEnv(%q) = %v, want a usage error saying mrtd run has no worker", v, err)
		}
	}
	if _, err := RunEnv([]string{"A={{add 1}}"}); err == nil || !strings.Contains(err.Error(), "wrong number of args") {
		t.Errorf("RunEnv of a bad template = %v", err)
	}
}
