// Command probe is the only program in the integration tests' tiny rootfs.
// Each subcommand checks one thing from inside a container and prints what
// it found.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe echo|stderr|exit|write|cat|dial|keyctl|pause|pause-ignore|fail-unless|fail-if-worker|healthy-unless|long|id|pwd|ls|stat ...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "stderr":
		fmt.Fprintln(os.Stderr, strings.Join(args, " "))
	case "exit":
		n, _ := strconv.Atoi(args[0])
		os.Exit(n)
	case "write":
		// One line per path: ok, or the error.
		for _, p := range args {
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				fmt.Println("error:", err)
				continue
			}
			fmt.Println("ok")
		}
	case "cat":
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		os.Stdout.Write(b)
	case "dial":
		c, err := net.DialTimeout("tcp", args[0], 2*time.Second)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		c.Close()
		fmt.Println("connected")
	case "keyctl":
		// KEYCTL_GET_KEYRING_ID of the session keyring: Docker's seccomp
		// profile denies keyctl(2) altogether.
		const keyctlGetKeyringID, keySpecSessionKeyring = 0, -3
		sessionKeyring := keySpecSessionKeyring
		if _, _, errno := syscall.Syscall(syscall.SYS_KEYCTL, keyctlGetKeyringID, uintptr(sessionKeyring), 0); errno != 0 {
			fmt.Println("error:", errno)
			return
		}
		fmt.Println("ok")
	case "pause":
		// As the container's pid 1, probe gets only the signals it
		// handles (and SIGKILL): it catches SIGTERM and SIGINT, says
		// which came, and exits 0.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		fmt.Println("ready")
		fmt.Println("got", <-c)
	case "pause-ignore":
		// Says it got SIGTERM, and goes on: only SIGKILL stops it.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		for sig := range c {
			fmt.Println("got", sig, "and ignored it")
		}
	case "fail-unless":
		// Exits 1 at once until the file args[0] exists, then waits.
		if _, err := os.Stat(args[0]); err != nil {
			os.Exit(1)
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
	case "healthy-unless":
		// A health check: exits 1 when the file args[0] ($VARS of the
		// environment expanded, as $MRTD_WORKER) exists, else 0.
		p := os.ExpandEnv(args[0])
		if _, err := os.Stat(p); err == nil {
			fmt.Println(p, "exists")
			os.Exit(1)
		}
		fmt.Println("ok")
	case "fail-if-worker":
		if os.Getenv("MRTD_WORKER") == args[0] {
			fmt.Println("failing")
			os.Exit(1)
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
	case "long":
		// A line of args[0] bytes, then a short one.
		n, _ := strconv.Atoi(args[0])
		os.Stdout.WriteString(strings.Repeat("x", n) + "\nafter\n")
	case "id":
		fmt.Println(os.Getuid(), os.Getgid())
	case "pwd":
		wd, err := os.Getwd()
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Println(wd)
	case "ls":
		// The names in args[0], sorted, one a line.
		ents, err := os.ReadDir(args[0])
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		for _, e := range ents {
			fmt.Println(e.Name())
		}
	case "stat":
		// One line per path: its lstat as path mode=PERM uid= gid= nlink=
		// ino= size=, or path error: ....
		for _, p := range args {
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				fmt.Println(p, "error:", err)
				continue
			}
			fmt.Printf("%s mode=%04o uid=%d gid=%d nlink=%d ino=%d size=%d\n",
				p, st.Mode&0o7777, st.Uid, st.Gid, st.Nlink, st.Ino, st.Size)
		}
	case "orphans":
		// Leaves args[0] orphans behind, then says ready and waits for
		// SIGTERM, as pause does: a child of probe's starts them and
		// exits at once, and each exits once that child is gone, as the
		// child of the container's pid 1, which must reap it. probe as
		// pid 1 does not: they stay zombies.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		pid, err := syscall.ForkExec("/proc/self/exe", []string{"probe", "orphan-parent", args[0]}, nil)
		if err == nil {
			_, err = syscall.Wait4(pid, nil, 0, nil)
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		fmt.Println("got", <-c)
	case "orphan-parent":
		n, _ := strconv.Atoi(args[0])
		self := strconv.Itoa(os.Getpid())
		for range n {
			if _, err := syscall.ForkExec("/proc/self/exe", []string{"probe", "orphan", self}, nil); err != nil {
				os.Exit(1)
			}
		}
	case "orphan":
		// Exits once its parent, the pid args[0], is gone.
		parent, _ := strconv.Atoi(args[0])
		for os.Getppid() == parent {
			time.Sleep(5 * time.Millisecond)
		}
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown subcommand", os.Args[1])
		os.Exit(2)
	}
}
