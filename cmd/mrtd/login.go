package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/image"
)

const loginUsage = `Usage: mrtd login [flags] HOST[:PORT]

Check a user name and password against the registry and keep them in the
Podman-style auth file, where mrtd (and Podman, skopeo and buildah) find
them: --authfile, else $REGISTRY_AUTH_FILE, else
$XDG_RUNTIME_DIR/containers/auth.json, else
$XDG_CONFIG_HOME/containers/auth.json (default ~/.config). Without
--password-stdin the password is asked for on the terminal.

Flags:
`

const logoutUsage = `Usage: mrtd logout [flags] HOST[:PORT]

Remove the registry's entry from the auth file mrtd login writes (see
mrtd login --help); the file's other entries stay.

Flags:
`

// loginTimeout bounds the check of the credentials against the registry.
const loginTimeout = time.Minute

// loginCommand runs mrtd login and mrtd logout (cmd). The password comes
// from stdin: read whole with --password-stdin, else asked for without
// echo when stdin is a terminal.
func loginCommand(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var user, authFile string
	var passwordStdin bool
	tlsVerify := true
	authUsage := "keep the credentials in the auth `FILE` (default: $REGISTRY_AUTH_FILE, else Podman's, as above)"
	if cmd == "logout" {
		authUsage = "remove the entry from the auth `FILE` (default: the one mrtd login writes)"
	}
	fs.StringVar(&authFile, "authfile", "", authUsage)
	if cmd == "login" {
		fs.StringVar(&user, "username", "", "the user `NAME` (asked for on a terminal when not given)")
		fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
		fs.BoolVar(&tlsVerify, "tls-verify", true, "verify the registry's TLS certificate; false also allows plain HTTP")
	}
	if err := config.ParseFlags(fs, args); errors.Is(err, config.ErrHelp) {
		if cmd == "login" {
			fmt.Fprint(stdout, loginUsage)
			printFlags(stdout, fs)
		} else {
			fmt.Fprint(stdout, logoutUsage)
			printFlags(stdout, fs)
		}
		return 0
	} else if err != nil {
		return fail(stderr, err)
	}
	if fs.NArg() != 1 {
		return fail(stderr, &config.UsageError{Err: fmt.Errorf("mrtd %s takes one registry, HOST[:PORT] (see `mrtd %s --help`)", cmd, cmd)})
	}
	key, host, err := image.LoginKey(fs.Arg(0))
	if err != nil {
		return fail(stderr, &config.UsageError{Err: err})
	}
	file := image.AuthFiles(authFile)[0]
	if cmd == "logout" {
		found, err := image.RemoveLogin(file, key)
		if err != nil {
			return fail(stderr, err)
		}
		if !found {
			return fail(stderr, fmt.Errorf("not logged in to %s: %s has no entry for it", key, file))
		}
		fmt.Fprintf(stdout, "Removed login credentials for %s\n", key)
		return 0
	}

	c, err := readCredentials(user, passwordStdin, stdin, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	if err := image.Login(ctx, host, c, !tlsVerify); err != nil {
		return fail(stderr, err)
	}
	if err := image.SaveLogin(file, key, c); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, "Login Succeeded!")
	return 0
}

// readCredentials returns the user name and password login was given, or
// asks for them on the terminal.
func readCredentials(user string, passwordStdin bool, stdin io.Reader, stderr io.Writer) (image.Credentials, error) {
	if passwordStdin {
		if user == "" {
			return image.Credentials{}, &config.UsageError{Err: errors.New("--password-stdin needs --username")}
		}
		data, err := io.ReadAll(stdin)
		if err != nil {
			return image.Credentials{}, fmt.Errorf("reading the password from standard input: %w", err)
		}
		pass := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		if pass == "" {
			return image.Credentials{}, &config.UsageError{Err: errors.New("--password-stdin: standard input holds no password")}
		}
		return image.Credentials{Username: user, Password: pass}, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return image.Credentials{}, &config.UsageError{Err: errors.New("standard input is not a terminal to ask for the password on: pass --username and --password-stdin, with the password on standard input")}
	}
	if user == "" {
		fmt.Fprint(stderr, "Username: ")
		line, err := bufio.NewReader(f).ReadString('\n')
		if err != nil && line == "" {
			return image.Credentials{}, fmt.Errorf("reading the user name: %w", err)
		}
		if user = strings.TrimSpace(line); user == "" {
			return image.Credentials{}, &config.UsageError{Err: errors.New("no user name given")}
		}
	}
	fmt.Fprint(stderr, "Password: ")
	pass, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return image.Credentials{}, fmt.Errorf("reading the password: %w", err)
	}
	if len(pass) == 0 {
		return image.Credentials{}, &config.UsageError{Err: errors.New("no password given")}
	}
	return image.Credentials{Username: user, Password: string(pass)}, nil
}
