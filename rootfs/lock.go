package rootfs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// fileLock is a held flock(2) on a file.
type fileLock struct {
	f *os.File
}

// lockFile opens (creating it if needed) and locks path with how
// (unix.LOCK_SH or unix.LOCK_EX, optionally | unix.LOCK_NB). It returns
// errWouldBlock when LOCK_NB was given and the lock is held elsewhere.
//
// A lock file may be unlinked by whoever removes the thing it guards; a lock
// taken on a file that was unlinked meanwhile guards nothing, so the lock is
// retried until the locked file is the one at path.
func lockFile(path string, how int) (*fileLock, error) {
	return openLock(path, os.O_RDWR|os.O_CREATE, how)
}

// lockFileReadOnly locks path as lockFile does, but opens it read-only and
// never creates it: for a cache this process cannot write into. flock(2)
// needs no write access.
func lockFileReadOnly(path string, how int) (*fileLock, error) {
	return openLock(path, os.O_RDONLY, how)
}

func openLock(path string, flag, how int) (*fileLock, error) {
	for {
		f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		if err := flock(f, how); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errWouldBlock
			}
			return nil, err
		}
		var held, now unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, err
		}
		if err := unix.Stat(path, &now); err == nil && now.Ino == held.Ino && now.Dev == held.Dev {
			return &fileLock{f: f}, nil
		}
		f.Close()
	}
}

var errWouldBlock = errors.New("lock is held by another process")

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Unlock releases the lock. It is safe to call on a nil lock.
//
// It unlocks before it closes: a flock belongs to the open file
// description, which a child forked at that moment by another goroutine
// (os/exec, os's pidfd probe) holds too until it execs or exits; closing
// alone would leave the lock held that long.
func (l *fileLock) Unlock() {
	if l != nil && l.f != nil {
		flock(l.f, unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}
