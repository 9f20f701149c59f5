package container

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is a rootfs directory opened for lookups that resolve every path,
// symlinks included, inside it, as the container will see them: an
// absolute symlink in the rootfs never leads to the host's files.
type Root struct {
	Dir string
	fd  int
}

// OpenRoot opens the rootfs directory dir.
func OpenRoot(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Root{Dir: dir, fd: fd}, nil
}

// Close releases the directory.
func (r *Root) Close() error { return unix.Close(r.fd) }

// open opens p (absolute inside the root) with flags.
func (r *Root) open(p string, flags int) (*os.File, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(r.fd, rel, how)
	if errors.Is(err, unix.EAGAIN) {
		// A rename elsewhere in the tree raced the lookup: once more.
		fd, err = unix.Openat2(r.fd, rel, how)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Open opens the file p (absolute inside the root) for reading, its
// symlinks resolved as if the root were /.
func (r *Root) Open(p string) (*os.File, error) {
	return r.open(p, unix.O_RDONLY)
}

// Stat returns the file p (absolute inside the root) resolves to.
func (r *Root) Stat(p string) (fs.FileInfo, error) {
	f, err := r.open(p, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// CommandError is a command that cannot start in the rootfs, found before
// any container is created.
type CommandError struct {
	Command string
	Reason  string
	// NotFound is true when the command does not exist (exit status 127);
	// otherwise it exists but cannot be executed (126).
	NotFound bool
}

func (e *CommandError) Error() string { return e.Reason }

// LookCommand checks that args0 can be executed in the rootfs as runc will
// look it up: through PATH (from env, else the default) when it has no
// slash, relative to cwd when it is relative. A script's interpreter and an
// ELF program's dynamic loader must exist too: the kernel fails the exec
// with "no such file or directory" otherwise, which runc reports only as
// the container's exit status 255.
func (r *Root) LookCommand(args0 string, env []string, cwd string) error {
	if cwd == "" {
		cwd = "/"
	}
	if !strings.Contains(args0, "/") {
		pathEnv := envValue(mergeEnv(DefaultEnv, env), "PATH")
		for _, dir := range strings.Split(pathEnv, ":") {
			if dir == "" {
				dir = "."
			}
			p := path.Join(dir, args0)
			if !path.IsAbs(dir) {
				p = path.Join(cwd, dir, args0)
			}
			if fi, err := r.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return r.checkExec(args0, p, 0)
			}
		}
		return &CommandError{Command: args0, NotFound: true,
			Reason: fmt.Sprintf("command %q is not in the rootfs (searched PATH=%s): install it there, or give its full path", args0, pathEnv)}
	}
	p := args0
	if !path.IsAbs(p) {
		p = path.Join(cwd, p)
	}
	fi, err := r.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR):
		return &CommandError{Command: args0, NotFound: true,
			Reason: fmt.Sprintf("command %s does not exist in the rootfs: check the path, or add it to the rootfs", args0)}
	case err != nil:
		return &CommandError{Command: args0, Reason: fmt.Sprintf("command %s: %v", args0, unwrapPathError(err))}
	case fi.IsDir():
		return &CommandError{Command: args0, Reason: fmt.Sprintf("command %s is a directory, not a program", args0)}
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
		return &CommandError{Command: args0, Reason: fmt.Sprintf("command %s is not executable (mode %04o): chmod +x it in the rootfs", args0, fi.Mode().Perm())}
	}
	return r.checkExec(args0, p, 0)
}

// checkExec checks what the kernel needs to execute p besides p itself: a
// script's interpreter, an ELF program's dynamic loader.
func (r *Root) checkExec(cmd, p string, depth int) error {
	f, err := r.open(p, unix.O_RDONLY)
	if err != nil {
		// Not readable by mrtd: leave the verdict to runc.
		return nil
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	var interp string
	switch {
	case bytes.HasPrefix(head, []byte("#!")):
		line, _, _ := bytes.Cut(head[2:], []byte("\n"))
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			return nil // the kernel runs it with the default shell's rules
		}
		interp = fields[0]
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		ef, err := elf.NewFile(f)
		if err != nil {
			return nil
		}
		for _, prog := range ef.Progs {
			if prog.Type == elf.PT_INTERP {
				b, err := io.ReadAll(io.LimitReader(prog.Open(), 4096))
				if err == nil {
					interp = string(bytes.TrimRight(b, "\x00"))
				}
			}
		}
	}
	if interp == "" || !path.IsAbs(interp) || depth >= 4 {
		return nil
	}
	fi, err := r.Stat(interp)
	if err != nil || !fi.Mode().IsRegular() {
		what := "its interpreter"
		if !bytes.HasPrefix(head, []byte("#!")) {
			what = "its dynamic loader"
		}
		return &CommandError{Command: cmd,
			Reason: fmt.Sprintf("command %s cannot be executed: %s %s does not exist in the rootfs (fix its first line, or add %s to the rootfs)", cmd, what, interp, interp)}
	}
	return r.checkExec(cmd, interp, depth+1)
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
