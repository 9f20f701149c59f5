package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// File is a parsed config file. Its keys are the daemon's flag names
// (workers, stop-timeout, env, ...); Values holds each key's values as the
// flag would receive them, several for a list.
type File struct {
	Path   string
	Values map[string][]string
	// Workers holds [worker.N] sections: settings for worker N alone.
	Workers map[int]WorkerFile

	data []byte // the file's text, to find a key's line
}

// WorkerFile is a [worker.N] section.
type WorkerFile struct {
	// Env is added to (and overrides) the pool's environment for this
	// worker.
	Env []string
	// WorkerLimits are ulimit, nice and oom-score-adj for this worker
	// alone (see limits.go).
	WorkerLimits
}

// workerKeys are the keys of a [worker.N] section and their kinds.
var workerKeys = map[string]Kind{"env": KindList, "ulimit": KindList, "nice": KindInt, "oom-score-adj": KindInt}

// Kind is the TOML type a key's value must have.
type Kind int

const (
	KindString   Kind = iota
	KindInt           // an integer
	KindBool          // true or false
	KindDuration      // a string time.ParseDuration accepts
	KindList          // a list of strings, or one string
)

// Expected says what a value of kind k looks like, for error messages.
func (k Kind) Expected() string {
	switch k {
	case KindInt:
		return "an integer such as 4"
	case KindBool:
		return "true or false"
	case KindDuration:
		return `a duration such as "10s" or "1m30s"`
	case KindList:
		return `a list of strings such as ["A=1", "B=2"]`
	default:
		return `a string in double quotes`
	}
}

// DefaultConfigPath is $XDG_CONFIG_HOME/mrtd/config.toml, else
// ~/.config/mrtd/config.toml; /etc/mrtd/config.toml for root.
func DefaultConfigPath(euid int, getenv func(string) string) string {
	if euid == 0 {
		return "/etc/mrtd/config.toml"
	}
	if x := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "mrtd", "config.toml")
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".config", "mrtd", "config.toml")
	}
	return ""
}

// LoadFile reads the TOML file at path. kindOf says which keys exist and
// what type each must have. A key it does not know, or a value of the wrong
// type, is a *UsageError naming the file, the line, the key, what was
// expected and what was found.
func LoadFile(path string, kindOf func(key string) (Kind, bool)) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, usagef("config file %s does not exist: create it or pass another --config", path)
	}
	if err != nil {
		return nil, usagef("config file %s: %v", path, errors.Unwrap(err))
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) && pe.Position.Line > 0 {
			return nil, usagef("config file %s line %d: %s: fix the TOML syntax", path, pe.Position.Line, pe.Message)
		}
		return nil, usagef("config file %s: %v", path, err)
	}
	f := &File{Path: path, Values: map[string][]string{}, Workers: map[int]WorkerFile{}, data: data}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		if k == "worker" {
			if err := f.loadWorkers(v); err != nil {
				return nil, err
			}
			continue
		}
		kind, ok := kindOf(k)
		if !ok {
			return nil, f.errorf([]string{k}, "unknown key %q: the keys are the flags' names (see `mrtd --help`), command and [worker.N]", k)
		}
		vals, err := f.values([]string{k}, kind, v)
		if err != nil {
			return nil, err
		}
		f.Values[k] = vals
	}
	return f, nil
}

func (f *File) loadWorkers(v any) error {
	tables, ok := v.(map[string]any)
	if !ok {
		return f.errorf([]string{"worker"}, "worker = %s: expected [worker.N] sections, found %s", tomlValue(v), typeName(v))
	}
	names := make([]string, 0, len(tables))
	for name := range tables {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		at := []string{"worker", name}
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 {
			return f.errorf(at, "[worker.%s]: N must be a worker index (0, 1, ...)", name)
		}
		section, ok := tables[name].(map[string]any)
		if !ok {
			return f.errorf(at, "worker.%s = %s: expected a [worker.%s] section, found %s", name, tomlValue(tables[name]), name, typeName(tables[name]))
		}
		var w WorkerFile
		for k, v := range section {
			kind, ok := workerKeys[k]
			if !ok {
				return f.errorf(append(at, k), "unknown key %q in [worker.%s]: only env, ulimit, nice and oom-score-adj may be set per worker", k, name)
			}
			vals, err := f.values(append(at, k), kind, v)
			if err != nil {
				return err
			}
			if err := checkWorkerLimit("[worker."+name+"] "+k, k, vals); err != nil {
				return f.errorf(append(at, k), "%v", err)
			}
			switch k {
			case "env":
				w.Env = vals
			case "ulimit":
				w.Ulimits = vals
			case "nice":
				w.Nice = vals[0]
			case "oom-score-adj":
				w.OOMScoreAdj = vals[0]
			}
		}
		f.Workers[i] = w
	}
	return nil
}

// values checks that v, the value of the key at path, is of kind, and
// turns it into flag strings.
func (f *File) values(path []string, kind Kind, v any) ([]string, error) {
	key := path[len(path)-1]
	if len(path) > 1 {
		key = "[" + strings.Join(path[:len(path)-1], ".") + "] " + key
	}
	bad := func(found string) error {
		return f.errorf(path, "%s = %s: expected %s, found %s", key, tomlValue(v), kind.Expected(), found)
	}
	switch kind {
	case KindInt:
		if x, ok := v.(int64); ok {
			return []string{strconv.FormatInt(x, 10)}, nil
		}
	case KindBool:
		if x, ok := v.(bool); ok {
			return []string{strconv.FormatBool(x)}, nil
		}
	case KindDuration:
		if x, ok := v.(string); ok {
			if _, err := time.ParseDuration(x); err != nil {
				return nil, bad("a string that is not a duration (units are ns, us, ms, s, m, h)")
			}
			return []string{x}, nil
		}
	case KindList:
		switch x := v.(type) {
		case string:
			return []string{x}, nil
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, bad("a list holding " + typeName(e))
				}
				out = append(out, s)
			}
			return out, nil
		}
	default:
		if x, ok := v.(string); ok {
			return []string{x}, nil
		}
	}
	return nil, bad(typeName(v))
}

// errorf returns a *UsageError that begins with the file and, when it can
// be found, the line of the key at path.
func (f *File) errorf(path []string, format string, args ...any) error {
	where := "config file " + f.Path
	if line := keyLine(f.data, path); line > 0 {
		where += " line " + strconv.Itoa(line)
	}
	return usagef("%s: %s", where, fmt.Sprintf(format, args...))
}

// typeName names the TOML type of v, as the decoder returns it.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date or time"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// tomlValue writes v roughly as it appears in TOML, shortened.
func tomlValue(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = tomlValue(e)
		}
		s = "[" + strings.Join(parts, ", ") + "]"
	case map[string]any, []map[string]any:
		s = "{...}"
	case time.Time:
		s = x.Format(time.RFC3339Nano)
	default:
		s = fmt.Sprint(x)
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// errLineProbe is what lineProbe returns to make the decoder report where
// it stands.
var errLineProbe = errors.New("line probe")

// lineProbe fails to decode, so that the decoder's error carries the
// position of the key holding it.
type lineProbe struct{}

func (lineProbe) UnmarshalTOML(any) error { return errLineProbe }

// keyLine returns the line of the key at path (["workers"], or ["worker",
// "1", "env"]) in the TOML document data, or 0 when it cannot tell. The
// toml package records every key's position but only reveals it in a
// decoding error: keyLine decodes data into a struct that holds a lineProbe
// at path alone.
func keyLine(data []byte, path []string) int {
	t := reflect.TypeFor[lineProbe]()
	for i := len(path) - 1; i >= 0; i-- {
		if strings.Contains(path[i], ",") {
			return 0 // a struct tag cannot name it
		}
		t = reflect.StructOf([]reflect.StructField{{
			Name: "F", Type: t, Tag: reflect.StructTag("toml:" + strconv.Quote(path[i])),
		}})
	}
	_, err := toml.Decode(string(data), reflect.New(t).Interface())
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Message == errLineProbe.Error() {
		return pe.Position.Line
	}
	return 0
}
