package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseTmpfs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		dst     string
		opts    []string
		wantErr string // "" for no error
	}{
		{in: "/data", dst: "/data"},
		{in: "/data/", dst: "/data"},
		{in: "/data:", dst: "/data"},
		{in: "/data:size=64m,mode=1777", dst: "/data", opts: []string{"size=64m", "mode=1777"}},
		{in: "/cache:size=50%,nr_inodes=10k,uid=0,gid=0,noexec,nosuid,nodev", dst: "/cache",
			opts: []string{"size=50%", "nr_inodes=10k", "uid=0", "gid=0", "noexec", "nosuid", "nodev"}},
		{in: "/tmp:size=1G", dst: "/tmp", opts: []string{"size=1G"}},
		{in: "data", wantErr: "absolute path"},
		{in: "", wantErr: "absolute path"},
		{in: "/", wantErr: "rootfs itself"},
		{in: "/data:exec", wantErr: `unknown option "exec"`},
		{in: "/data:suid", wantErr: "unknown option"},
		{in: "/data:ro", wantErr: "unknown option"},
		{in: "/data:size=lots", wantErr: `bad option "size=lots"`},
		{in: "/data:size=", wantErr: "bad option"},
		{in: "/data:size", wantErr: "bad option"},
		{in: "/data:nr_inodes=5%", wantErr: "bad option"},
		{in: "/data:mode=999", wantErr: "bad option"},
		{in: "/data:mode=17777", wantErr: "bad option"},
		{in: "/data:uid=alice", wantErr: "bad option"},
		{in: "/data:noexec=1", wantErr: "bad option"},
		{in: "/data:size=1m,size=2m", wantErr: "size is given twice"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTmpfs(tc.in)
			if tc.wantErr != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("ParseTmpfs(%q) = %v, want a one-line usage error with %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Destination != tc.dst || !slices.Equal(got.Options, tc.opts) {
				t.Fatalf("ParseTmpfs(%q) = %+v, %v; want %s %q", tc.in, got, err, tc.dst, tc.opts)
			}
		})
	}
}

func TestSettingsTmpfs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte(`tmpfs = ["/data:size=8m", "/cache"]`+"\n"), 0o644)
	env := map[string]string{"HOME": dir, "MRTD_CONFIG": path}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	st, err := LoadSettings(nil, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Config.Tmpfs, []string{"/data:size=8m", "/cache"}) || st.Sources["tmpfs"] != "file "+path {
		t.Errorf("tmpfs = %q from %q, want the file's", st.Config.Tmpfs, st.Sources["tmpfs"])
	}

	env["MRTD_TMPFS"] = "/env1\n/env2:mode=700"
	st, err = LoadSettings(nil, lookup)
	if err != nil || !slices.Equal(st.Config.Tmpfs, []string{"/env1", "/env2:mode=700"}) {
		t.Errorf("with MRTD_TMPFS: tmpfs = %q, %v; want the environment's", st.Config.Tmpfs, err)
	}

	// Flags replace the list rather than extend it.
	st, err = LoadSettings([]string{"--tmpfs", "/flag", "--tmpfs", "/flag2:noexec"}, lookup)
	if err != nil || !slices.Equal(st.Config.Tmpfs, []string{"/flag", "/flag2:noexec"}) || st.Sources["tmpfs"] != "flag" {
		t.Errorf("with --tmpfs: tmpfs = %q from %q, %v; want the flags'", st.Config.Tmpfs, st.Sources["tmpfs"], err)
	}

	for _, args := range [][]string{
		{"--tmpfs", "/data:size=big"},
		{"--tmpfs", "relative"},
		{"--tmpfs", "/data", "--tmpfs", "/data/:size=1m"},
	} {
		_, err := LoadSettings(args, lookup)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--tmpfs") {
			t.Errorf("LoadSettings(%q) = %v, want a usage error about --tmpfs", args, err)
		}
	}

	// mrtd run has the flag too.
	var cfg Config
	var envList StringList
	fs := RunFlags(&cfg, &envList)
	if err := ParseFlags(fs, []string{"--tmpfs", "/a", "--tmpfs", "/b:size=1m", "--", "true"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Tmpfs, []string{"/a", "/b:size=1m"}) {
		t.Errorf("mrtd run --tmpfs: %q", cfg.Tmpfs)
	}
}
