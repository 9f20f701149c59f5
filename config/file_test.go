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
	known := func(k string) bool { return k == "workers" || k == "env" || k == "stop-timeout" || k == "command" }
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
		{"list of numbers", "env = [1, 2]\n", nil, nil, "must be strings"},
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
