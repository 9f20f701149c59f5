package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A child that holds a copy of the lock's descriptor (as one forked by
// another goroutine does until it execs) does not keep the lock past
// Unlock.
func TestUnlockWithACopyInAChild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	l, err := lockFile(path, unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "30")
	child.ExtraFiles = []*os.File{l.f}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Process.Kill()
		child.Wait()
	}()
	l.Unlock()
	ex, err := lockFile(path, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		t.Fatalf("exclusive lock after Unlock, with a copy of the descriptor in a child: %v", err)
	}
	ex.Unlock()
}
