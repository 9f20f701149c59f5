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

func TestPoolValidate(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		modify func(*Pool)
		want   string
	}{
		{"defaults", func(*Pool) {}, ""},
		{"zero workers", func(p *Pool) { p.Workers = 0 }, "--workers 0"},
		{"too many workers", func(p *Pool) { p.Workers = MaxWorkers + 1 }, "1 to 512"},
		{"instance with slash", func(p *Pool) { p.Instance = "a/b" }, "--instance"},
		{"empty instance", func(p *Pool) { p.Instance = "" }, "--instance"},
		{"restart", func(p *Pool) { p.Restart = "never" }, "unknown --restart"},
		{"stop signal", func(p *Pool) { p.StopSignal = "FOO" }, "not a signal"},
		{"backoff max below min", func(p *Pool) { p.BackoffMax = p.BackoffMin / 2 }, "--backoff-max"},
		{"mount ok", func(p *Pool) { p.Mounts = []string{dir + ":/srv:ro"} }, ""},
		{"mount missing source", func(p *Pool) { p.Mounts = []string{"/nonexistent"} }, "does not exist"},
		{"mount relative", func(p *Pool) { p.Mounts = []string{"rel:/srv"} }, "absolute"},
		{"mount bad mode", func(p *Pool) { p.Mounts = []string{dir + ":/srv:rx"} }, "ro or rw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPool()
			tc.modify(&p)
			err := p.Validate()
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

func TestParseMount(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		in   string
		want Mount
	}{
		{dir, Mount{Source: dir, Destination: dir}},
		{dir + ":/srv", Mount{Source: dir, Destination: "/srv"}},
		{dir + ":/srv:ro", Mount{Source: dir, Destination: "/srv", ReadOnly: true}},
		{dir + "::ro", Mount{Source: dir, Destination: dir, ReadOnly: true}},
	} {
		got, err := ParseMount(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"TERM": 15, "SIGTERM": 15, "term": 15, "15": 15, "INT": 2, "QUIT": 3, "USR1": 10} {
		got, err := ParseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseSignal("NOPE"); err == nil {
		t.Error("ParseSignal(NOPE) succeeded")
	}
}

func TestReadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	os.WriteFile(p, []byte("# comment\n\nA=1\n  B=two words  \nC=\n"), 0o644)
	got, err := ReadEnvFile(p)
	if err != nil || strings.Join(got, "|") != "A=1|B=two words|C=" {
		t.Fatalf("ReadEnvFile = %q, %v", got, err)
	}
	os.WriteFile(p, []byte("A=1\nnot a pair\n"), 0o644)
	if _, err := ReadEnvFile(p); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v, want one naming line 2", err)
	}
}
