package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

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
}

// WorkerFile is a [worker.N] section.
type WorkerFile struct {
	// Env is added to (and overrides) the pool's environment for this
	// worker.
	Env []string
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

// LoadFile reads the TOML file at path. known says which keys exist; any
// other key is an error naming it and the file.
func LoadFile(path string, known func(key string) bool) (*File, error) {
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, usagef("config file %s does not exist: create it or pass another --config", path)
		}
		return nil, usagef("config file %s: %v", path, err)
	}
	f := &File{Path: path, Values: map[string][]string{}, Workers: map[int]WorkerFile{}}
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
		if !known(k) {
			return nil, usagef("config file %s: unknown key %q", path, k)
		}
		vals, err := flagValues(v)
		if err != nil {
			return nil, usagef("config file %s: key %q: %v", path, k, err)
		}
		f.Values[k] = vals
	}
	return f, nil
}

func (f *File) loadWorkers(v any) error {
	tables, ok := v.(map[string]any)
	if !ok {
		return usagef("config file %s: worker must be a table of [worker.N] sections", f.Path)
	}
	for name, t := range tables {
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 {
			return usagef("config file %s: [worker.%s]: N must be a worker index", f.Path, name)
		}
		section, ok := t.(map[string]any)
		if !ok {
			return usagef("config file %s: [worker.%s] is not a section", f.Path, name)
		}
		var w WorkerFile
		for k, v := range section {
			if k != "env" {
				return usagef("config file %s: unknown key %q in [worker.%s] (only env)", f.Path, k, name)
			}
			vals, err := flagValues(v)
			if err != nil {
				return usagef("config file %s: [worker.%s] env: %v", f.Path, name, err)
			}
			w.Env = vals
		}
		f.Workers[i] = w
	}
	return nil
}

// flagValues turns a TOML value into flag strings.
func flagValues(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case int64:
		return []string{strconv.FormatInt(x, 10)}, nil
	case bool:
		return []string{strconv.FormatBool(x)}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("list elements must be strings, got %v", e)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unsupported value %v (%T)", v, v)
	}
}
