package rootfs

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// The tests in this file need filesystems a test can fill or make read-only:
// each runs its body again in a child process, in a user and mount namespace
// of its own, where it may mount a tmpfs, whether the tests run as root or
// not.

const nsEnv = "MRTD_TEST_IN_NAMESPACE"

// inNamespace runs the calling test again in a child in a new user and mount
// namespace, where it is root, and reports the child's failure. It returns
// true in the child, which goes on with the test's body, and false in the
// parent, which is done.
func inNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(nsEnv) == t.Name() {
		// Mounts made here must stay here.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatalf("making / private in the child's mount namespace: %v", err)
		}
		return true
	}
	if testing.Short() {
		t.Skip("starts a process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), nsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		// The kernel or a sysctl refuses unprivileged user namespaces.
		t.Skipf("cannot start a child in a user and mount namespace: %v", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in the namespace child: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("in the namespace child:\n%s", out)
	}
	return false
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and returns it.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	d := t.TempDir()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	return d
}

// noise returns n bytes that do not compress, the same for the same n.
func noise(n int) string {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	return string(b)
}

// assertOneLine checks that err reads as one line naming dir, and contains
// each of want and none of unwanted.
func assertOneLine(t *testing.T, err error, want []string, unwanted ...string) {
	t.Helper()
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one line", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
	for _, u := range unwanted {
		if strings.Contains(msg, u) {
			t.Errorf("error %q contains %q", msg, u)
		}
	}
}

// assertRemedy checks that err is a *CacheError that says what would help:
// the caller words it.
func assertRemedy(t *testing.T, err error, want Remedy) {
	t.Helper()
	var ce *CacheError
	if !errors.As(err, &ce) {
		t.Errorf("error %v (%T) is not a *CacheError", err, err)
	} else if ce.Remedy != want {
		t.Errorf("CacheError.Remedy = %d, want %d", ce.Remedy, want)
	}
}

// TestRootfsNoSpace fills a 1 MiB filesystem: the error names the cache dir
// and what to do, blames no archive, and leaves no partial entry.
func TestRootfsNoSpace(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	fsDir := mountTmpfs(t, 1<<20)
	c := &Cache{Dir: filepath.Join(fsDir, "cache"), Log: logr.Discard(), DropSetID: true}
	a, _ := memArchive("big.tar.zst", makeTarZst(t,
		tDir("etc/", 0o755),
		tFile("etc/hostname", "box\n", 0o644),
		tFile("big", noise(2<<20), 0o644),
	))
	ref, err := c.Rootfs(a)
	if err == nil {
		ref.Close()
		t.Fatal("Rootfs into a 1 MiB filesystem succeeded")
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Rootfs: %v, want ENOSPC", err)
	}
	assertOneLine(t, err, []string{c.Dir, "no space left on device"}, "truncated", "corrupt")
	assertRemedy(t, err, FreeSpace)
	// No partial entry: no tree, no temporary directory, no lock file.
	if names := dirNames(t, filepath.Join(c.Dir, "rootfs")); len(names) != 0 {
		t.Errorf("rootfs dir holds %q after the failure, want nothing", names)
	}

	// runc does not fit either.
	data := []byte(noise(2 << 20))
	rref, err := c.Runc(data, sha256Hex(data))
	if err == nil {
		rref.Close()
		t.Fatal("Runc into a full filesystem succeeded")
	}
	assertOneLine(t, err, []string{c.Dir, "no space left on device"})
	assertRemedy(t, err, FreeSpace)
	for _, n := range dirNames(t, c.Dir) {
		if n != "rootfs" && n != "lock" {
			t.Errorf("cache dir holds %s after the failure", n)
		}
	}
}

// TestReadOnlyCacheMount uses a pre-filled cache on a read-only mount: a warm
// start works, a cold one fails saying why and what to do.
func TestReadOnlyCacheMount(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	fsDir := mountTmpfs(t, 16<<20)
	c := &Cache{Dir: filepath.Join(fsDir, "cache"), Log: logr.Discard(), DropSetID: true}
	a, _ := memArchive("good", makeTarZst(t, goodArchive()...))
	other, _ := memArchive("other", makeTarZst(t, tFile("etc/hostname", "other\n", 0o644)))
	data := []byte("runc")
	fill(t, c, a, data)
	if err := unix.Mount("", fsDir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting read-only: %v", err)
	}
	checkReadOnly(t, c, a, other, data, syscall.EROFS)
}

// TestReadOnlyCacheDir uses a pre-filled cache this user may not write into:
// as root, from a process running as uid 65534; otherwise, a directory of
// mode 0555.
func TestReadOnlyCacheDir(t *testing.T) {
	if dir := os.Getenv(roHelperEnv); dir != "" {
		c := &Cache{Dir: dir, Log: logr.Discard(), DropSetID: true}
		a, err := FileArchive(filepath.Join(dir, "..", "good.tar.zst"))
		if err != nil {
			t.Fatal(err)
		}
		other, err := FileArchive(filepath.Join(dir, "..", "other.tar.zst"))
		if err != nil {
			t.Fatal(err)
		}
		checkReadOnly(t, c, a, other, []byte("runc"), syscall.EACCES)
		return
	}
	if testing.Short() {
		t.Skip("starts a process")
	}
	base := t.TempDir()
	makeRemovable(t, base)
	c := &Cache{Dir: filepath.Join(base, "cache"), Log: logr.Discard(), DropSetID: true}
	good := makeTarZst(t, goodArchive()...)
	a, _ := memArchive("good", good)
	fill(t, c, a, []byte("runc"))

	if os.Geteuid() != 0 {
		for _, d := range []string{filepath.Join(c.Dir, "rootfs"), c.Dir} {
			if err := os.Chmod(d, 0o555); err != nil {
				t.Fatal(err)
			}
		}
		other, _ := memArchive("other", makeTarZst(t, tFile("etc/hostname", "other\n", 0o644)))
		checkReadOnly(t, c, a, other, []byte("runc"), syscall.EACCES)
		return
	}
	// Root may write anywhere: the reader is uid 65534, which may read the
	// cache (as an admin would ship it) but not write into it. Its lock
	// files (mode 0600) it cannot even open.
	for _, f := range []struct {
		name string
		data []byte
	}{{"good.tar.zst", good}, {"other.tar.zst", makeTarZst(t, tFile("etc/hostname", "other\n", 0o644))}} {
		if err := os.WriteFile(filepath.Join(base, f.name), f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p := c.Dir; ; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if p == filepath.Dir(base) {
			break
		}
	}
	if err := os.Chmod(filepath.Join(c.Dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary may sit where uid 65534 cannot reach it.
	exe := filepath.Join(base, "rootfs.test")
	b, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.WriteFile(exe, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), roHelperEnv+"="+c.Dir)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
}

const roHelperEnv = "MRTD_TEST_READ_ONLY_CACHE"

// fill puts runc data and the tree of a into c, as an admin shipping a
// pre-filled cache would.
func fill(t *testing.T, c *Cache, a *Archive, data []byte) {
	t.Helper()
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	ref.Close()
	rref, err := c.Runc(data, sha256Hex(data))
	if err != nil {
		t.Fatalf("Runc: %v", err)
	}
	rref.Close()
}

// checkReadOnly checks a cache holding a and data that this process cannot
// write into because of why.
func checkReadOnly(t *testing.T, c *Cache, a, other *Archive, data []byte, why error) {
	t.Helper()
	before := dirNames(t, filepath.Join(c.Dir, "rootfs"))

	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("warm Rootfs in a read-only cache: %v", err)
	}
	if want := filepath.Join(c.Dir, "rootfs", a.Digest); ref.Path != want || ref.Extracted {
		t.Errorf("warm Rootfs = {%s, extracted %t}, want {%s, false}", ref.Path, ref.Extracted, want)
	}
	if got := readFile(t, filepath.Join(ref.Path, "etc/hostname")); got != "box\n" {
		t.Errorf("etc/hostname = %q", got)
	}
	rref, err := c.Runc(data, sha256Hex(data))
	if err != nil {
		t.Fatalf("warm Runc in a read-only cache: %v", err)
	}
	if want := filepath.Join(c.Dir, "runc-"+sha256Hex(data)); rref.Path != want || rref.Extracted {
		t.Errorf("warm Runc = {%s, extracted %t}, want {%s, false}", rref.Path, rref.Extracted, want)
	}
	if err := c.Prune(); err != nil {
		t.Errorf("Prune of a read-only cache: %v, want nil (nothing to do)", err)
	}
	ref.Close()
	rref.Close()

	// A cold start cannot work: it says which dir, why, and what to do.
	ref, err = c.Rootfs(other)
	if err == nil {
		ref.Close()
		t.Fatal("cold Rootfs in a read-only cache succeeded")
	}
	var ce *CacheError
	if !errors.As(err, &ce) || !errors.Is(err, why) {
		t.Errorf("cold Rootfs: %v (%T), want a CacheError wrapping %v", err, err, why)
	}
	assertOneLine(t, err, []string{c.Dir, "rootfs/" + short(other.Digest), why.Error()})
	assertRemedy(t, err, FillOnce)
	more := []byte("another runc")
	if _, err := c.Runc(more, sha256Hex(more)); err == nil || !errors.Is(err, why) {
		t.Errorf("cold Runc in a read-only cache: %v, want an error wrapping %v", err, why)
	} else {
		assertOneLine(t, err, []string{c.Dir, "runc-" + short(sha256Hex(more))})
		assertRemedy(t, err, FillOnce)
	}
	if after := dirNames(t, filepath.Join(c.Dir, "rootfs")); !slices.Equal(before, after) {
		t.Errorf("rootfs dir changed from %q to %q", before, after)
	}
}
