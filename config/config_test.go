package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
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
	authFile := filepath.Join(dir, "auth.json")
	os.WriteFile(archive, nil, 0o644)
	os.WriteFile(authFile, []byte(`{"auths":{}}`), 0o600)
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
		{"hostname", func(c *Config) { c.Hostname = "worker-1" }, ""},
		{"hostname with dots and digits", func(c *Config) { c.Hostname = "1w.example.org" }, ""},
		{"hostname of 64 bytes", func(c *Config) { c.Hostname = strings.Repeat("a", 63) + "." }, "--hostname"},
		{"hostname longest", func(c *Config) { c.Hostname = strings.Repeat("a", 31) + "." + strings.Repeat("b", 32) }, ""},
		{"hostname too long", func(c *Config) { c.Hostname = strings.Repeat("a", 32) + "." + strings.Repeat("b", 32) }, "at most 64"},
		{"hostname label too long", func(c *Config) { c.Hostname = strings.Repeat("a", 64) }, "--hostname"},
		{"hostname with space and slash", func(c *Config) { c.Hostname = "bad host/name" }, `--hostname "bad host/name" is not a host name`},
		{"hostname of 100 bytes", func(c *Config) { c.Hostname = strings.Repeat("h", 100) }, "--hostname"},
		{"hostname leading hyphen", func(c *Config) { c.Hostname = "-h" }, "--hostname"},
		{"hostname trailing hyphen", func(c *Config) { c.Hostname = "h-.x" }, "--hostname"},
		{"hostname empty label", func(c *Config) { c.Hostname = "a..b" }, "--hostname"},
		{"hostname underscore", func(c *Config) { c.Hostname = "a_b" }, "--hostname"},
		{"image", func(c *Config) { c.Image = "debian:bookworm-slim" }, ""},
		{"image without a command", func(c *Config) { c.Image = "debian:bookworm-slim"; c.Args = nil }, ""},
		{"image and rootfs", func(c *Config) { c.Image = "debian"; c.Rootfs = dir }, "--image and --rootfs exclude each other"},
		{"pull policy", func(c *Config) { c.Pull = "sometimes" }, "unknown --pull"},
		{"platform", func(c *Config) { c.Platform = "linux/arm64/v8" }, ""},
		{"platform without arch", func(c *Config) { c.Platform = "linux" }, "--platform"},
		{"max image size", func(c *Config) { c.MaxImageSize = "500M" }, ""},
		{"max image size not a size", func(c *Config) { c.MaxImageSize = "lots" }, "--max-image-size"},
		{"authfile", func(c *Config) { c.AuthFile = authFile }, ""},
		{"authfile missing", func(c *Config) { c.AuthFile = filepath.Join(dir, "none.json") },
			"--authfile " + filepath.Join(dir, "none.json") + " does not exist: create it with `mrtd login --authfile"},
		{"authfile a directory", func(c *Config) { c.AuthFile = dir }, "--authfile " + dir + " is a directory"},
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

func TestValidateMakesDirsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	wd, _ := os.Getwd()
	c, _ := Default(1000, func(k string) string { return map[string]string{"HOME": "/home/u"}[k] })
	c.Args = []string{"true"}
	c.CacheDir, c.RuntimeDir = "cache", "./run"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.CacheDir != filepath.Join(wd, "cache") || c.RuntimeDir != filepath.Join(wd, "run") {
		t.Errorf("cache dir %q, runtime dir %q; want them under %s", c.CacheDir, c.RuntimeDir, wd)
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
		{"instance like a flag", func(p *Pool) { p.Instance = "-x" }, `--instance "-x": use a name that starts with a letter or digit`},
		{"instance dot", func(p *Pool) { p.Instance = "." }, "--instance"},
		{"instance with dot", func(p *Pool) { p.Instance = "a.b" }, "--instance"},
		{"instance leading underscore", func(p *Pool) { p.Instance = "_a" }, "--instance"},
		{"instance with - and _", func(p *Pool) { p.Instance = "mcp_client-2" }, ""},
		{"instance starting with a digit", func(p *Pool) { p.Instance = "2nd" }, ""},
		{"instance longest", func(p *Pool) { p.Instance = strings.Repeat("i", MaxInstance) }, ""},
		{"instance too long", func(p *Pool) { p.Instance = strings.Repeat("i", MaxInstance+1) }, "at most 59 characters"},
		{"metrics addr", func(p *Pool) { p.MetricsAddr = "127.0.0.1:9464" }, ""},
		{"metrics addr any host", func(p *Pool) { p.MetricsAddr = ":9464" }, ""},
		{"metrics addr ipv6", func(p *Pool) { p.MetricsAddr = "[::1]:0" }, ""},
		{"metrics addr ipv6 zone", func(p *Pool) { p.MetricsAddr = "[fe80::1%eth0]:9464" }, ""},
		{"metrics addr host name", func(p *Pool) { p.MetricsAddr = "localhost:65535" }, ""},
		{"metrics addr without port", func(p *Pool) { p.MetricsAddr = "notanaddr" }, `--metrics-addr "notanaddr" is not an address: use HOST:PORT`},
		{"metrics addr port too big", func(p *Pool) { p.MetricsAddr = ":65536" }, "not a number from 0 to 65535"},
		{"metrics addr service name", func(p *Pool) { p.MetricsAddr = "localhost:http" }, "numeric port"},
		{"metrics addr negative port", func(p *Pool) { p.MetricsAddr = ":-1" }, "not a number"},
		{"metrics addr empty port", func(p *Pool) { p.MetricsAddr = "127.0.0.1:" }, "not a number"},
		{"metrics addr bad host", func(p *Pool) { p.MetricsAddr = "bad host:9464" }, "neither an IP address nor a host name"},
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

func TestInstanceMakesHostnames(t *testing.T) {
	// The longest instance with the largest worker index is still a host
	// name sethostname accepts.
	name := strings.Repeat("i", MaxInstance) + "-" + strconv.Itoa(MaxWorkers-1)
	if !validHostname(name) || len(name) != maxLabel {
		t.Fatalf("%q (%d bytes) is not a valid host name", name, len(name))
	}
}

func TestLoginUser(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(passwd, []byte(`root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment:x:5:5::/:/bin/sh
games:x:5:60:games:/usr/games:/bin/false
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
svc:x:1001:1001::/srv:
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken line
`), 0o644)
	for _, tc := range []struct {
		name string
		uid  int
		want string // "" for no login user
	}{
		{"login shell", 1000, "alice"},
		{"empty shell is /bin/sh", 1001, "svc"},
		{"nologin", 65534, ""},
		{"nologin daemon", 1, ""},
		{"false", 5, ""},
		{"no entry", 4242, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := LoginUser(tc.uid, passwd)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("LoginUser(%d) = %q, %v; want %q", tc.uid, got, ok, tc.want)
			}
		})
	}
	if _, ok := LoginUser(1000, filepath.Join(t.TempDir(), "none")); ok {
		t.Error("a missing passwd file names a login user")
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64 // 0: an error
	}{
		{"1048576", 1 << 20}, {"8G", 8 << 30}, {"500m", 500 << 20}, {"2GiB", 2 << 30}, {"1KB", 1 << 10}, {"1T", 1 << 40},
		{"", 0}, {"0", 0}, {"-1G", 0}, {"G", 0}, {"1.5G", 0}, {"9999999999T", 0},
	} {
		got, err := ParseSize(tc.in)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
