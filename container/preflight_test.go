package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckUserNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    map[string]string
		rootless bool
		want     string // "" for no error
	}{
		{"all allowed", map[string]string{"user/max_user_namespaces": "15000", "kernel/unprivileged_userns_clone": "1"}, true, ""},
		{"no sysctls at all", nil, true, ""},
		{"max_user_namespaces 0", map[string]string{"user/max_user_namespaces": "0"}, false, "max_user_namespaces"},
		{"debian clone switch off", map[string]string{"kernel/unprivileged_userns_clone": "0"}, true, "unprivileged_userns_clone=1"},
		{"debian clone switch off, root", map[string]string{"kernel/unprivileged_userns_clone": "0"}, false, ""},
		{"ubuntu apparmor restriction", map[string]string{"kernel/apparmor_restrict_unprivileged_userns": "1"}, true, "AppArmor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, v := range tc.files {
				p := filepath.Join(dir, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, []byte(v+"\n"), 0o644)
			}
			err := CheckUserNamespaces(dir, tc.rootless)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *UserNamespaceError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a *UserNamespaceError containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckReachable(t *testing.T) {
	dir := t.TempDir()
	// t.TempDir's directories are private: open them for the check.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	open := filepath.Join(dir, "open", "rootfs")
	closed := filepath.Join(dir, "closed", "rootfs")
	os.MkdirAll(open, 0o755)
	os.MkdirAll(closed, 0o755)
	os.Chmod(filepath.Dir(closed), 0o700)
	if err := CheckReachable(open, 65534, 65534); err != nil {
		t.Errorf("open tree: %v", err)
	}
	if err := CheckReachable(closed, 65534, 65534); err == nil || !strings.Contains(err.Error(), "mode 0700") {
		t.Errorf("closed tree: error %v, want one naming mode 0700", err)
	}
}

// A relative path is checked as the absolute one: the walk up to "/" used
// to loop for ever on filepath.Dir(".").
func TestCheckRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "share"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	done := make(chan error, 1)
	go func() { done <- CheckReadable("share", uid, gid) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("CheckReadable(share) = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CheckReadable of a relative path did not return")
	}
	go func() { done <- CheckReachable("share", uid, gid) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("CheckReachable(share) = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CheckReachable of a relative path did not return")
	}
	if err := CheckReadable("missing", uid, gid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckReadable(missing) = %v, want not found", err)
	}
}
