package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadFile(t *testing.T) {
	kinds := map[string]Kind{"workers": KindInt, "env": KindList, "stop-timeout": KindDuration, "command": KindList, "network": KindString, "flag": KindBool}
	known := func(k string) (Kind, bool) { kind, ok := kinds[k]; return kind, ok }
	for _, tc := range []struct {
		name string
		body string
		want map[string][]string
		w    map[int]WorkerFile
		err  string
	}{
		{"values", "workers = 4\nstop-timeout = \"5s\"\nenv = [\"A=1\", \"B=2\"]\ncommand = [\"python3\", \"-u\"]\n",
			map[string][]string{"workers": {"4"}, "stop-timeout": {"5s"}, "env": {"A=1", "B=2"}, "command": {"python3", "-u"}}, map[int]WorkerFile{}, ""},
		{"worker sections", "workers = 2\n[worker.1]\nenv = [\"X=1\"]\n",
			map[string][]string{"workers": {"2"}}, map[int]WorkerFile{1: {Env: []string{"X=1"}}}, ""},
		{"unknown key", "wrokers = 2\n", nil, nil, `unknown key "wrokers"`},
		{"unknown worker key", "[worker.1]\nworkers = 2\n", nil, nil, `unknown key "workers" in [worker.1]`},
		{"bad worker index", "[worker.x]\nenv = []\n", nil, nil, "worker index"},
		{"not toml", "workers = = 2\n", nil, nil, "config file"},
		{"one string for a list", "env = \"A=B\"\n", map[string][]string{"env": {"A=B"}}, map[int]WorkerFile{}, ""},
		{"one string for a worker's list", "[worker.0]\nenv = \"A=B\"\n", map[string][]string{}, map[int]WorkerFile{0: {Env: []string{"A=B"}}}, ""},
		{"list of numbers", "env = [1, 2]\n", nil, nil, `line 1: env = [1, 2]: expected a list of strings such as ["A=1", "B=2"], found a list holding an integer`},
		{"integer as a string", "# workers\n\nworkers = \"three\"\n", nil, nil, `line 3: workers = "three": expected an integer such as 4, found a string`},
		{"integer as a float", "workers = 4.5\n", nil, nil, `line 1: workers = 4.5: expected an integer such as 4, found a float`},
		{"duration as an integer", "workers = 2\nstop-timeout = 10\n", nil, nil, `line 2: stop-timeout = 10: expected a duration such as "10s"`},
		{"duration that does not parse", "stop-timeout = \"10 parsecs\"\n", nil, nil, `line 1: stop-timeout = "10 parsecs": expected a duration such as "10s" or "1m30s", found a string that is not a duration`},
		{"string as a number", "network = 1\n", nil, nil, `line 1: network = 1: expected a string in double quotes, found an integer`},
		{"boolean as a string", "flag = \"yes\"\n", nil, nil, `line 1: flag = "yes": expected true or false, found a string`},
		{"list as a table", "env = { a = 1 }\n", nil, nil, `line 1: env = {...}: expected a list of strings`},
		{"worker list as a number", "workers = 2\n[worker.0]\nenv = [\"A=1\"]\n[worker.1]\n\nenv = 3\n", nil, nil, `line 6: [worker.1] env = 3: expected a list of strings`},
		{"worker as a dotted key", "worker.3.env = 4\n", nil, nil, `line 1: [worker.3] env = 4`},
		{"worker not a table", "worker = 4\n", nil, nil, `line 1: worker = 4: expected [worker.N] sections, found an integer`},
		{"unknown key in a section", "workers = 2\n\n[worker.1]\nworkers = 2\n", nil, nil, `line 4: unknown key "workers" in [worker.1]`},
		{"unknown key line", "workers = 2\nwrokers = 2\n", nil, nil, `line 2: unknown key "wrokers"`},
		{"syntax error line", "workers = 2\nenv = [\n", nil, nil, "line 2: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			os.WriteFile(path, []byte(tc.body), 0o644)
			f, err := LoadFile(path, known)
			if tc.err != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v, want a *UsageError naming %s and containing %q", err, path, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.Values, tc.want) || !reflect.DeepEqual(f.Workers, tc.w) {
				t.Fatalf("got %v %v, want %v %v", f.Values, f.Workers, tc.want, tc.w)
			}
		})
	}
	if _, err := LoadFile("/nonexistent/config.toml", known); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing file: %v", err)
	}
}
