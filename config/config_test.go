package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultDirs(t *testing.T) {
	for _, tc := range []struct {
		name               string
		euid               int
		env                map[string]string
		wantCache, wantRun string
	}{
		{"xdg", 1000, map[string]string{"XDG_CACHE_HOME": "/c", "XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/u"}, "/c/mrtd", "/run/user/1000/mrtd"},
		{"home only", 1000, map[string]string{"HOME": "/home/u"}, "/home/u/.cache/mrtd", "/home/u/.cache/mrtd/run"},
		{"relative xdg ignored", 1000, map[string]string{"XDG_CACHE_HOME": "rel", "HOME": "/home/u"}, "/home/u/.cache/mrtd", "/home/u/.cache/mrtd/run"},
		{"nothing", 1000, nil, "", ""},
		{"root", 0, map[string]string{"HOME": "/root", "XDG_RUNTIME_DIR": "/run/user/0"}, "/var/cache/mrtd", "/run/mrtd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Default(tc.euid, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if c.CacheDir != tc.wantCache || c.RuntimeDir != tc.wantRun {
				t.Fatalf("cache %q runtime %q, want %q %q", c.CacheDir, c.RuntimeDir, tc.wantCache, tc.wantRun)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "img.tar.zst")
	notArchive := filepath.Join(dir, "notes.txt")
	os.WriteFile(archive, nil, 0o644)
	os.WriteFile(notArchive, nil, 0o644)
	valid := func() Config {
		c, _ := Default(1000, func(k string) string { return map[string]string{"HOME": "/home/u"}[k] })
		c.Args = []string{"true"}
		return c
	}
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"rootfs dir", func(c *Config) { c.Rootfs = dir }, ""},
		{"rootfs archive", func(c *Config) { c.Rootfs = archive }, ""},
		{"no command", func(c *Config) { c.Args = nil }, "no command given"},
		{"no cache dir", func(c *Config) { c.CacheDir = "" }, "--cache-dir"},
		{"network", func(c *Config) { c.Network = "bridge" }, "unknown --network"},
		{"seccomp", func(c *Config) { c.Seccomp = "strict" }, "unknown --seccomp"},
		{"host uid 0", func(c *Config) { c.HostUID = 0 }, "unprivileged"},
		{"env without =", func(c *Config) { c.Env = []string{"FOO"} }, "not KEY=VALUE"},
		{"env with empty key", func(c *Config) { c.Env = []string{"=x"} }, "not KEY=VALUE"},
		{"relative workdir", func(c *Config) { c.Workdir = "srv" }, "absolute"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "--log-level"},
		{"missing rootfs", func(c *Config) { c.Rootfs = filepath.Join(dir, "nope") }, "does not exist"},
		{"rootfs neither", func(c *Config) { c.Rootfs = notArchive }, "neither a directory nor"},
		{"runc not executable", func(c *Config) { c.Runc = notArchive }, "not an executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.modify(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a *UsageError containing %q", err, tc.want)
			}
		})
	}
}
