package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mrt-project/mrt/internal/userns"
)

// DemoWorker is the default rootfs's demo worker, the pool's default
// command.
const DemoWorker = "/usr/local/bin/mrtd-demo-worker"

// Settings are the daemon's effective configuration and where each value
// came from: flag > environment (MRTD_*) > config file > default.
type Settings struct {
	Config Config
	Pool   Pool
	// Workers holds the [worker.N] sections.
	Workers map[int]WorkerFile
	// Sources maps each key set by something other than its default to
	// "flag", "env MRTD_X" or "file PATH".
	Sources map[string]string
	// ConfigPath is the config file read, "" when none.
	ConfigPath string
	// Flags are the daemon's flags, set to the effective values.
	Flags *flag.FlagSet
}

// daemonFlags declares the daemon's flags into s. lists maps the names of
// repeatable flags to their values, which a higher-precedence source
// replaces rather than extends.
func daemonFlags(s *Settings, lists map[string]*StringList) *flag.FlagSet {
	fs := flag.NewFlagSet("mrtd", flag.ContinueOnError)
	env, mounts := &StringList{}, &StringList{}
	lists["env"], lists["mount"] = env, mounts
	lists["tmpfs"] = (*StringList)(&s.Config.Tmpfs)
	lists["ulimit"] = (*StringList)(&s.Config.Limits.Ulimits)
	containerFlags(fs, &s.Config, env)
	pc := &s.Pool
	fs.IntVar(&pc.Workers, "workers", pc.Workers, fmt.Sprintf("how many worker containers to keep running (1 to %d)", MaxWorkers))
	fs.StringVar(&pc.Instance, "instance", pc.Instance, "`name` of this pool: a letter or digit, then letters, digits, - and _, at most "+strconv.Itoa(MaxInstance)+" in all; containers and their host names are <name>-<index>; two instances can share a runtime dir")
	fs.Var(mounts, "mount", "bind-mount host `SRC[:DST[:ro]]` into every worker (repeatable; DST defaults to SRC and must exist in the rootfs); SRC may be a template rendered for each worker, such as /srv/scratch/{{.Worker}}:/scratch")
	fs.StringVar(&pc.EnvFile, "env-file", pc.EnvFile, "read KEY=VALUE lines from `FILE` (before --env)")
	fs.StringVar(&pc.Restart, "restart", pc.Restart, "`always` restart workers, or only on-failure (non-zero exit or signal)")
	fs.StringVar(&pc.StopSignal, "stop-signal", pc.StopSignal, "`signal` that asks a worker to stop")
	fs.DurationVar(&pc.StopTimeout, "stop-timeout", pc.StopTimeout, "how long workers get to stop before SIGKILL")
	fs.DurationVar(&pc.BackoffMin, "backoff-min", pc.BackoffMin, "first restart delay of a failing worker")
	fs.DurationVar(&pc.BackoffMax, "backoff-max", pc.BackoffMax, "longest restart delay")
	fs.BoolVar(&pc.Standby, "standby", pc.Standby, "keep each worker's next container created while the current one runs, so that a restart costs only a runc start; each standby (a waiting runc init) costs about 4 MiB of memory (PSS)")
	h := &pc.Health
	fs.StringVar(&h.Cmd, "health-cmd", h.Cmd, "check each worker's health by running `COMMAND` in it (sh -c COMMAND, or a JSON array as argv); default the image's HEALTHCHECK, if any")
	fs.DurationVar(&h.Interval, "health-interval", h.Interval, "time between health checks")
	fs.DurationVar(&h.Timeout, "health-timeout", h.Timeout, "how long a health check may run before it counts as failed")
	fs.IntVar(&h.Retries, "health-retries", h.Retries, "failed health checks in a row that restart a worker as unhealthy")
	fs.DurationVar(&h.StartPeriod, "health-start-period", h.StartPeriod, "time after a worker starts during which failed checks do not count")
	fs.StringVar(&pc.MetricsAddr, "metrics-addr", pc.MetricsAddr, "serve Prometheus metrics at http://`ADDR`/metrics, for example 127.0.0.1:9464 (off by default)")
	fs.StringVar(&s.ConfigPath, "config", s.ConfigPath, "read settings from the TOML `FILE` (keys are these flags' names, plus command = [...] and [worker.N] sections of env, ulimit, nice and oom-score-adj); default "+defaultConfigHint())
	return fs
}

func defaultConfigHint() string {
	if p := DefaultConfigPath(userns.EUID(), os.Getenv); p != "" {
		return p + ", if it exists"
	}
	return "none"
}

// envName is the environment variable of a key: workers -> MRTD_WORKERS.
func envName(key string) string {
	return "MRTD_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// LoadSettings builds the daemon's settings from its arguments and the
// environment.
func LoadSettings(args []string, lookupEnv func(string) (string, bool)) (*Settings, error) {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	fresh := func() (*Settings, map[string]*StringList, error) {
		cfg, err := Default(userns.EUID(), getenv)
		if err != nil {
			return nil, nil, err
		}
		s := &Settings{Config: cfg, Pool: DefaultPool(), Sources: map[string]string{}}
		lists := map[string]*StringList{}
		s.Flags = daemonFlags(s, lists)
		return s, lists, nil
	}

	// First pass: which flags the command line sets, and --
	first, _, err := fresh()
	if err != nil {
		return nil, err
	}
	if err := ParseFlags(first.Flags, args); err != nil {
		return first, err
	}
	onCmdline := map[string]bool{}
	first.Flags.Visit(func(f *flag.Flag) { onCmdline[f.Name] = true })

	s, lists, err := fresh()
	if err != nil {
		return nil, err
	}
	var command []string
	configPath, explicit := first.ConfigPath, onCmdline["config"]
	if v, ok := lookupEnv(envName("config")); ok && !explicit {
		configPath, explicit = v, true
	}
	if configPath == "" {
		configPath = DefaultConfigPath(userns.EUID(), getenv)
	}
	if configPath != "" {
		if _, err := os.Stat(configPath); err == nil || explicit {
			f, err := LoadFile(configPath, func(k string) (Kind, bool) {
				return keyKind(s.Flags, lists, k)
			})
			if err != nil {
				return s, err
			}
			for _, k := range sortedKeys(f.Values) {
				if k == "command" {
					command = f.Values[k]
				} else if err := setAll(s.Flags, lists, k, f.Values[k]); err != nil {
					return s, &UsageError{Err: fmt.Errorf("config file %s: %s: %v", f.Path, k, err)}
				}
				s.Sources[k] = "file " + f.Path
			}
			s.Workers = f.Workers
			s.ConfigPath = configPath
		}
	}
	var envErr error
	s.Flags.VisitAll(func(fl *flag.Flag) {
		name := envName(fl.Name)
		v, ok := lookupEnv(name)
		if !ok || fl.Name == "config" || envErr != nil {
			return
		}
		vals := []string{v}
		if lists[fl.Name] != nil {
			vals = strings.Split(strings.TrimRight(v, "\n"), "\n")
		}
		if err := setAll(s.Flags, lists, fl.Name, vals); err != nil {
			kind, _ := keyKind(s.Flags, lists, fl.Name)
			envErr = &UsageError{Err: fmt.Errorf("%s=%q: expected %s (%v)", name, v, kind.Expected(), err)}
		}
		s.Sources[fl.Name] = "env " + name
	})
	if envErr != nil {
		return s, envErr
	}
	for name := range onCmdline {
		if l := lists[name]; l != nil {
			*l = nil
		}
		s.Sources[name] = "flag"
	}
	if err := ParseFlags(s.Flags, args); err != nil {
		return s, err
	}
	if s.Flags.NArg() > 0 {
		command = s.Flags.Args()
		s.Sources["command"] = "flag"
	}
	s.Pool.Mounts = *lists["mount"]
	s.Config.Env = *lists["env"]
	if err := s.Pool.validate(s.keyName); err != nil {
		return s, err
	}
	poolEnv, fileEnv := s.Config.Env, []string(nil)
	if s.Pool.EnvFile != "" {
		fileEnv, err = ReadEnvFile(s.Pool.EnvFile)
		if err != nil {
			return s, err
		}
		s.Config.Env = append(fileEnv, s.Config.Env...)
	}
	for i, w := range s.Workers {
		if i >= MaxWorkers {
			return s, &UsageError{Err: fmt.Errorf("config file %s: [worker.%d] is beyond the largest pool (%d)", s.ConfigPath, i, MaxWorkers)}
		}
		for _, kv := range w.Env {
			if !IsKeyValue(kv) {
				return s, &UsageError{Err: fmt.Errorf("config file %s: [worker.%d] env %q is not KEY=VALUE", s.ConfigPath, i, kv)}
			}
		}
	}
	if err := s.checkTemplates(poolEnv, fileEnv); err != nil {
		return s, err
	}
	s.Config.Args = command
	if len(s.Config.Args) == 0 && s.Config.Image == "" {
		if s.Config.Rootfs != "" {
			return s, &UsageError{Err: errors.New("no command given: with --rootfs, put the worker command after -- (or command = [...] in the config file)")}
		}
		s.Config.Args = []string{DemoWorker}
	}
	return s, s.Config.Validate()
}

// keyKind is the type a key of the config file must have: its flag's.
func keyKind(fs *flag.FlagSet, lists map[string]*StringList, key string) (Kind, bool) {
	if key == "command" || lists[key] != nil {
		return KindList, true
	}
	fl := fs.Lookup(key)
	if fl == nil || key == "config" {
		return 0, false
	}
	if g, ok := fl.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case int:
			return KindInt, true
		case bool:
			return KindBool, true
		case time.Duration:
			return KindDuration, true
		}
	}
	return KindString, true
}

// setAll sets flag name to vals, replacing what a repeatable flag held.
func setAll(fs *flag.FlagSet, lists map[string]*StringList, name string, vals []string) error {
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

// Print writes the effective settings, one key a line, with its source.
func (s *Settings) Print(w io.Writer) {
	s.Flags.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "config" {
			return
		}
		src := s.Sources[fl.Name]
		if src == "" {
			src = "default"
		}
		fmt.Fprintf(w, "%-19s = %-40q # %s\n", fl.Name, fl.Value.String(), src)
	})
	src := s.Sources["command"]
	if src == "" {
		src = "default"
	}
	fmt.Fprintf(w, "%-19s = %-40q # %s\n", "command", strings.Join(s.Config.Args, " "), src)
	for _, i := range sortedWorkerKeys(s.Workers) {
		wf := s.Workers[i]
		fmt.Fprintf(w, "worker.%-12d = env %q%s # file %s\n", i, wf.Env, wf.WorkerLimits.describe(), s.ConfigPath)
	}
	s.printRendered(w)
	if s.ConfigPath != "" {
		fmt.Fprintf(w, "# config file: %s\n", s.ConfigPath)
	} else {
		fmt.Fprintf(w, "# no config file\n")
	}
}

func sortedWorkerKeys(m map[int]WorkerFile) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}
