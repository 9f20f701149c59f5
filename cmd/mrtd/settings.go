package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
)

// settings is the daemon's effective configuration and where each value
// came from: flag > environment (MRTD_*) > config file > default.
type settings struct {
	cfg     config.Config
	pool    config.Pool
	workers map[int]config.WorkerFile // [worker.N] sections
	// sources maps each key set by something other than its default to
	// "flag", "env MRTD_X" or "file PATH".
	sources    map[string]string
	configPath string
	fs         *flag.FlagSet
}

// daemon is what the daemon runs of s.
func (s *settings) daemon() daemon.Settings {
	return daemon.Settings{Container: s.cfg, Pool: s.pool, Workers: s.workers}
}

// daemonFlags declares the daemon's flags into s. lists maps the names of
// repeatable flags to their values, which a higher-precedence source
// replaces rather than extends.
func daemonFlags(s *settings, lists map[string]*stringList) *flag.FlagSet {
	fs := flag.NewFlagSet("mrtd", flag.ContinueOnError)
	env, mounts := &stringList{}, &stringList{}
	lists["env"], lists["mount"] = env, mounts
	containerFlags(fs, &s.cfg, env)
	pc := &s.pool
	fs.IntVar(&pc.Workers, "workers", pc.Workers, fmt.Sprintf("how many worker containers to keep running (1 to %d)", config.MaxWorkers))
	fs.StringVar(&pc.Instance, "instance", pc.Instance, "`name` of this pool: a letter or digit, then letters, digits, - and _, at most "+strconv.Itoa(config.MaxInstance)+" in all; containers and their host names are <name>-<index>; two instances can share a runtime dir")
	fs.Var(mounts, "mount", "bind-mount host `SRC[:DST[:ro]]` into every worker (repeatable; DST defaults to SRC and must exist in the rootfs)")
	fs.StringVar(&pc.EnvFile, "env-file", pc.EnvFile, "read KEY=VALUE lines from `FILE` (before --env)")
	fs.StringVar(&pc.Restart, "restart", pc.Restart, "`always` restart workers, or only on-failure (non-zero exit or signal)")
	fs.StringVar(&pc.StopSignal, "stop-signal", pc.StopSignal, "`signal` that asks a worker to stop")
	fs.DurationVar(&pc.StopTimeout, "stop-timeout", pc.StopTimeout, "how long workers get to stop before SIGKILL")
	fs.DurationVar(&pc.BackoffMin, "backoff-min", pc.BackoffMin, "first restart delay of a failing worker")
	fs.DurationVar(&pc.BackoffMax, "backoff-max", pc.BackoffMax, "longest restart delay")
	fs.StringVar(&pc.MetricsAddr, "metrics-addr", pc.MetricsAddr, "serve Prometheus metrics at http://`ADDR`/metrics, for example 127.0.0.1:9464 (off by default)")
	fs.StringVar(&s.configPath, "config", s.configPath, "read settings from the TOML `FILE` (keys are these flags' names, plus command = [...] and [worker.N] env = [...]); default "+defaultConfigHint())
	return fs
}

func defaultConfigHint() string {
	if p := config.DefaultConfigPath(os.Geteuid(), os.Getenv); p != "" {
		return p + ", if it exists"
	}
	return "none"
}

// envName is the environment variable of a key: workers -> MRTD_WORKERS.
func envName(key string) string {
	return "MRTD_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// loadSettings builds the daemon's settings from args and the environment.
func loadSettings(args []string, lookupEnv func(string) (string, bool)) (*settings, error) {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	fresh := func() (*settings, map[string]*stringList, error) {
		cfg, err := config.Default(os.Geteuid(), getenv)
		if err != nil {
			return nil, nil, err
		}
		s := &settings{cfg: cfg, pool: config.DefaultPool(), sources: map[string]string{}}
		lists := map[string]*stringList{}
		s.fs = daemonFlags(s, lists)
		return s, lists, nil
	}

	// First pass: which flags the command line sets, and --config.
	first, _, err := fresh()
	if err != nil {
		return nil, err
	}
	if err := parseFlags(first.fs, args); err != nil {
		return first, err
	}
	onCmdline := map[string]bool{}
	first.fs.Visit(func(f *flag.Flag) { onCmdline[f.Name] = true })

	s, lists, err := fresh()
	if err != nil {
		return nil, err
	}
	var command []string
	configPath, explicit := first.configPath, onCmdline["config"]
	if v, ok := lookupEnv(envName("config")); ok && !explicit {
		configPath, explicit = v, true
	}
	if configPath == "" {
		configPath = config.DefaultConfigPath(os.Geteuid(), getenv)
	}
	if configPath != "" {
		if _, err := os.Stat(configPath); err == nil || explicit {
			f, err := config.LoadFile(configPath, func(k string) (config.Kind, bool) {
				return keyKind(s.fs, lists, k)
			})
			if err != nil {
				return s, err
			}
			for _, k := range sortedKeys(f.Values) {
				if k == "command" {
					command = f.Values[k]
				} else if err := setAll(s.fs, lists, k, f.Values[k]); err != nil {
					return s, &config.UsageError{Err: fmt.Errorf("config file %s: %s: %v", f.Path, k, err)}
				}
				s.sources[k] = "file " + f.Path
			}
			s.workers = f.Workers
			s.configPath = configPath
		}
	}
	var envErr error
	s.fs.VisitAll(func(fl *flag.Flag) {
		name := envName(fl.Name)
		v, ok := lookupEnv(name)
		if !ok || fl.Name == "config" || envErr != nil {
			return
		}
		vals := []string{v}
		if lists[fl.Name] != nil {
			vals = strings.Split(strings.TrimRight(v, "\n"), "\n")
		}
		if err := setAll(s.fs, lists, fl.Name, vals); err != nil {
			kind, _ := keyKind(s.fs, lists, fl.Name)
			envErr = &config.UsageError{Err: fmt.Errorf("%s=%q: expected %s (%v)", name, v, kind.Expected(), err)}
		}
		s.sources[fl.Name] = "env " + name
	})
	if envErr != nil {
		return s, envErr
	}
	for name := range onCmdline {
		if l := lists[name]; l != nil {
			*l = nil
		}
		s.sources[name] = "flag"
	}
	if err := parseFlags(s.fs, args); err != nil {
		return s, err
	}
	if s.fs.NArg() > 0 {
		command = s.fs.Args()
		s.sources["command"] = "flag"
	}
	s.pool.Mounts = *lists["mount"]
	s.cfg.Env = *lists["env"]
	if err := s.pool.Validate(); err != nil {
		return s, err
	}
	if s.pool.EnvFile != "" {
		fileEnv, err := config.ReadEnvFile(s.pool.EnvFile)
		if err != nil {
			return s, err
		}
		s.cfg.Env = append(fileEnv, s.cfg.Env...)
	}
	for i, w := range s.workers {
		if i >= config.MaxWorkers {
			return s, &config.UsageError{Err: fmt.Errorf("config file %s: [worker.%d] is beyond the largest pool (%d)", s.configPath, i, config.MaxWorkers)}
		}
		for _, kv := range w.Env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return s, &config.UsageError{Err: fmt.Errorf("config file %s: [worker.%d] env %q is not KEY=VALUE", s.configPath, i, kv)}
			}
		}
	}
	s.cfg.Args = command
	if len(s.cfg.Args) == 0 {
		if s.cfg.Rootfs != "" {
			return s, &config.UsageError{Err: errors.New("no command given: with --rootfs, put the worker command after -- (or command = [...] in the config file)")}
		}
		s.cfg.Args = []string{DemoWorker}
	}
	return s, s.cfg.Validate()
}

// keyKind is the type a key of the config file must have: its flag's.
func keyKind(fs *flag.FlagSet, lists map[string]*stringList, key string) (config.Kind, bool) {
	if key == "command" || lists[key] != nil {
		return config.KindList, true
	}
	fl := fs.Lookup(key)
	if fl == nil || key == "config" {
		return 0, false
	}
	if g, ok := fl.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case int:
			return config.KindInt, true
		case bool:
			return config.KindBool, true
		case time.Duration:
			return config.KindDuration, true
		}
	}
	return config.KindString, true
}

// setAll sets flag name to vals, replacing what a repeatable flag held.
func setAll(fs *flag.FlagSet, lists map[string]*stringList, name string, vals []string) error {
	if l := lists[name]; l != nil {
		*l = nil
	}
	for _, v := range vals {
		if err := fs.Set(name, v); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// print writes the effective settings, one key a line, with its source.
func (s *settings) print(w *strings.Builder) {
	s.fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "config" {
			return
		}
		src := s.sources[fl.Name]
		if src == "" {
			src = "default"
		}
		fmt.Fprintf(w, "%-14s = %-40q # %s\n", fl.Name, fl.Value.String(), src)
	})
	src := s.sources["command"]
	if src == "" {
		src = "default"
	}
	fmt.Fprintf(w, "%-14s = %-40q # %s\n", "command", strings.Join(s.cfg.Args, " "), src)
	for _, i := range sortedWorkerKeys(s.workers) {
		fmt.Fprintf(w, "worker.%-7d = env %q # file %s\n", i, s.workers[i].Env, s.configPath)
	}
	if s.configPath != "" {
		fmt.Fprintf(w, "# config file: %s\n", s.configPath)
	} else {
		fmt.Fprintf(w, "# no config file\n")
	}
}

func sortedWorkerKeys(m map[int]config.WorkerFile) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}
