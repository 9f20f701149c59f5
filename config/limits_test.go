package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseUlimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ulimit
		err  string // "" for valid
	}{
		{"nofile=1024:4096", Ulimit{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Soft: 1024, Hard: 4096}, ""},
		{"nofile=64", Ulimit{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Soft: 64, Hard: 64}, ""},
		{"NPROC=100:200", Ulimit{Name: "nproc", Resource: unix.RLIMIT_NPROC, Soft: 100, Hard: 200}, ""},
		{"core=0", Ulimit{Name: "core", Resource: unix.RLIMIT_CORE}, ""},
		{"as=-1", Ulimit{Name: "as", Resource: unix.RLIMIT_AS, Soft: Unlimited, Hard: Unlimited}, ""},
		{"stack=8388608:-1", Ulimit{Name: "stack", Resource: unix.RLIMIT_STACK, Soft: 8 << 20, Hard: Unlimited}, ""},
		{"rttime=1000", Ulimit{Name: "rttime", Resource: unix.RLIMIT_RTTIME, Soft: 1000, Hard: 1000}, ""},
		{"nofile", Ulimit{}, `--ulimit "nofile": use NAME=SOFT[:HARD], such as nofile=1024:4096`},
		{"=5", Ulimit{}, "use NAME=SOFT[:HARD]"},
		{"nofile=", Ulimit{}, "use NAME=SOFT[:HARD]"},
		{"files=10", Ulimit{}, `--ulimit "files=10": unknown rlimit "files": use one of as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack`},
		{"nofile=ten", Ulimit{}, `--ulimit "nofile=ten": "ten" is not a limit: use whole numbers, -1 for unlimited`},
		{"nofile=1:2:3", Ulimit{}, `"2:3" is not a limit`},
		{"nofile=-2", Ulimit{}, `"-2" is not a limit`},
		{"nofile=1k", Ulimit{}, `"1k" is not a limit`},
		{"nofile=18446744073709551615", Ulimit{}, "is not a limit"},
		{"nofile=4096:1024", Ulimit{}, `--ulimit "nofile=4096:1024": the soft limit 4096 is above the hard limit 1024`},
		{"nofile=-1:1024", Ulimit{}, "the soft limit -1 is above the hard limit 1024"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseUlimit(tc.in)
			if tc.err != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want a one-line *UsageError containing %q", err, tc.err)
				}
				return
			}
			if err != nil || u != tc.want {
				t.Fatalf("got %+v, %v; want %+v", u, err, tc.want)
			}
		})
	}
	if u, _ := ParseUlimit("memlock=65536"); u.Type() != "RLIMIT_MEMLOCK" {
		t.Errorf("Type() = %q", u.Type())
	}
	if FormatRlimit(Unlimited) != "-1" || FormatRlimit(64) != "64" {
		t.Errorf("FormatRlimit: %q %q", FormatRlimit(Unlimited), FormatRlimit(64))
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Limits
		err  string // "" for valid
	}{
		{"none", Limits{}, ""},
		{"all", Limits{Ulimits: []string{"nofile=64:128", "core=0"}, OOMScoreAdj: "500", Nice: "5", Memory: "512M", CPUs: "1.5", PidsLimit: 100}, ""},
		{"extremes", Limits{OOMScoreAdj: "-1000", Nice: "-20", Memory: "6M", CPUs: "0.01"}, ""},
		{"other extremes", Limits{OOMScoreAdj: "1000", Nice: "19"}, ""},
		{"ulimit twice", Limits{Ulimits: []string{"nofile=64", "NOFILE=128"}}, "--ulimit nofile is given twice: keep one"},
		{"bad ulimit", Limits{Ulimits: []string{"nofile=x"}}, `--ulimit "nofile=x"`},
		{"oom too low", Limits{OOMScoreAdj: "-1001"}, `--oom-score-adj "-1001": use a whole number from -1000 (never killed when memory runs out) to 1000 (killed first)`},
		{"oom too high", Limits{OOMScoreAdj: "1001"}, `--oom-score-adj "1001"`},
		{"oom not a number", Limits{OOMScoreAdj: "high"}, `--oom-score-adj "high"`},
		{"nice too low", Limits{Nice: "-21"}, `--nice "-21": use a whole number from -20`},
		{"nice too high", Limits{Nice: "20"}, `--nice "20"`},
		{"nice fraction", Limits{Nice: "1.5"}, `--nice "1.5"`},
		{"memory not a size", Limits{Memory: "lots"}, `--memory "lots": not a positive size: use a size such as 512M or 2G`},
		{"memory zero", Limits{Memory: "0"}, `--memory "0"`},
		{"memory tiny", Limits{Memory: "1M"}, `--memory "1M" is below 6M`},
		{"cpus zero", Limits{CPUs: "0"}, `--cpus "0": use a number of CPUs above 0`},
		{"cpus negative", Limits{CPUs: "-1"}, `--cpus "-1"`},
		{"cpus NaN", Limits{CPUs: "NaN"}, `--cpus "NaN"`},
		{"cpus inf", Limits{CPUs: "Inf"}, `--cpus "Inf"`},
		{"cpus tiny", Limits{CPUs: "0.001"}, `--cpus "0.001" is below 0.01`},
		{"cpus absurd", Limits{CPUs: "1e300"}, `--cpus "1e300": use at most`},
		{"pids negative", Limits{PidsLimit: -1}, "--pids-limit -1: use a positive number of processes, or 0 for no limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want a one-line *UsageError containing %q", err, tc.err)
			}
		})
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]int64{"1": 100000, "1.5": 150000, "0.01": 1000, "0.5": 50000, "16": 1600000} {
		if got, err := ParseCPUs(in); err != nil || got != want {
			t.Errorf("ParseCPUs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if got, _ := ParseMemory("512M"); got != 512<<20 {
		t.Errorf("ParseMemory(512M) = %d", got)
	}
}

func TestNeedsCgroups(t *testing.T) {
	for _, l := range []Limits{{Memory: "1G"}, {CPUs: "1"}, {PidsLimit: 5}} {
		if !l.NeedsCgroups() {
			t.Errorf("%+v: NeedsCgroups false", l)
		}
	}
	l := Limits{Ulimits: []string{"nofile=5"}, Nice: "5", OOMScoreAdj: "5"}
	if l.NeedsCgroups() {
		t.Errorf("%+v: NeedsCgroups true", l)
	}
}

func TestWorkerLimitsApply(t *testing.T) {
	pool := Limits{Ulimits: []string{"nofile=64:128", "core=0"}, Nice: "5", OOMScoreAdj: "500", Memory: "1G"}
	for _, tc := range []struct {
		name string
		w    WorkerLimits
		want Limits
	}{
		{"nothing", WorkerLimits{}, pool},
		{"nice", WorkerLimits{Nice: "10"}, Limits{Ulimits: pool.Ulimits, Nice: "10", OOMScoreAdj: "500", Memory: "1G"}},
		{"oom", WorkerLimits{OOMScoreAdj: "900"}, Limits{Ulimits: pool.Ulimits, Nice: "5", OOMScoreAdj: "900", Memory: "1G"}},
		{"ulimit replaces by name", WorkerLimits{Ulimits: []string{"NOFILE=32:64", "nproc=10"}},
			Limits{Ulimits: []string{"core=0", "NOFILE=32:64", "nproc=10"}, Nice: "5", OOMScoreAdj: "500", Memory: "1G"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Apply(pool); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if pool.Ulimits[0] != "nofile=64:128" || len(pool.Ulimits) != 2 {
		t.Fatalf("Apply changed the pool's limits: %v", pool.Ulimits)
	}
}

func TestLoadFileWorkerLimits(t *testing.T) {
	known := func(k string) (Kind, bool) { return KindList, k == "env" }
	for _, tc := range []struct {
		name string
		body string
		want WorkerFile
		err  string
	}{
		{"all", "[worker.1]\nenv = [\"A=1\"]\nulimit = [\"nofile=32:64\"]\nnice = 10\noom-score-adj = -5\n",
			WorkerFile{Env: []string{"A=1"}, WorkerLimits: WorkerLimits{Ulimits: []string{"nofile=32:64"}, Nice: "10", OOMScoreAdj: "-5"}}, ""},
		{"one ulimit as a string", "[worker.1]\nulimit = \"core=0\"\n", WorkerFile{WorkerLimits: WorkerLimits{Ulimits: []string{"core=0"}}}, ""},
		{"nice as a string", "[worker.1]\nnice = \"10\"\n", WorkerFile{}, `line 2: [worker.1] nice = "10": expected an integer such as 4, found a string`},
		{"nice out of range", "[worker.1]\n\nnice = 30\n", WorkerFile{}, `line 3: [worker.1] nice "30": use a whole number from -20`},
		{"oom out of range", "[worker.1]\noom-score-adj = 2000\n", WorkerFile{}, `line 2: [worker.1] oom-score-adj "2000": use a whole number from -1000`},
		{"bad ulimit", "[worker.1]\nulimit = [\"nofile=9:1\"]\n", WorkerFile{}, `line 2: [worker.1] ulimit "nofile=9:1": the soft limit 9 is above the hard limit 1`},
		{"ulimit twice", "[worker.1]\nulimit = [\"core=0\", \"core=1\"]\n", WorkerFile{}, `[worker.1] ulimit core is given twice`},
		{"memory per worker", "[worker.1]\nmemory = \"1G\"\n", WorkerFile{}, `unknown key "memory" in [worker.1]: only env, ulimit, nice and oom-score-adj may be set per worker`},
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
			if !reflect.DeepEqual(f.Workers[1], tc.want) {
				t.Fatalf("got %+v, want %+v", f.Workers[1], tc.want)
			}
		})
	}
}

func TestSettingsLimits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte("nice = 5\noom-score-adj = 500\nulimit = [\"nofile=64:128\"]\nmemory = \"512M\"\n[worker.1]\nnice = 10\n"), 0o644)
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOME": dir, "MRTD_CONFIG": path, "MRTD_ULIMIT": "core=0\nnproc=100"}[k]
		return v, ok
	}
	st, err := LoadSettings([]string{"--cpus", "1.5"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	l := st.Config.Limits
	want := Limits{Ulimits: []string{"core=0", "nproc=100"}, Nice: "5", OOMScoreAdj: "500", Memory: "512M", CPUs: "1.5"}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("limits %+v, want %+v", l, want)
	}
	if st.Workers[1].Nice != "10" {
		t.Errorf("[worker.1] nice = %q", st.Workers[1].Nice)
	}
	var b strings.Builder
	st.Print(&b)
	for _, want := range []string{`nice                = "5"`, `worker.1`, `nice 10`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("mrtd config output lacks %q:\n%s", want, b.String())
		}
	}

	// A flag's value is checked as the file's.
	if _, err := LoadSettings([]string{"--nice", "-30"}, lookup); err == nil || !strings.Contains(err.Error(), `--nice "-30"`) {
		t.Errorf("--nice -30: %v", err)
	}
	os.WriteFile(path, []byte("nice = \"5\"\n"), 0o644)
	if _, err := LoadSettings(nil, lookup); err == nil || !strings.Contains(err.Error(), `nice = "5": expected an integer`) {
		t.Errorf("nice as a string in the file: %v", err)
	}
}
