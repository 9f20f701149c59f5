package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
	"github.com/mrt-project/mrt/image"
)

const pullUsage = `Usage: mrtd pull [flags] REF

Fetch the image REF into the cache and print its manifest digest: a
registry's [REGISTRY/]REPOSITORY[:TAG] or @sha256:DIGEST (unqualified names
are docker.io/library/..., as Docker's), oci:PATH[:TAG] or
docker-archive:PATH. A tag is resolved anew; later starts with --pull
missing (the default) use what this pulled, without the network.

Flags:
`

// pullCommand runs mrtd pull.
func pullCommand(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Default(os.Geteuid(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, "the cache `DIR`; images go to DIR/images")
	fs.StringVar(&cfg.Platform, "platform", cfg.Platform, "the `os/arch[/variant]` to pull from a multi-platform image (default: this host's)")
	fs.BoolVar(&cfg.TLSVerify, "tls-verify", cfg.TLSVerify, "verify the registry's TLS certificate; false also allows plain HTTP")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "`auto`, journal, console or json")
	if err := config.ParseFlags(fs, args); errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, pullUsage)
		printFlags(stdout, fs)
		return 0
	} else if err != nil {
		return fail(stderr, err)
	}
	if fs.NArg() != 1 {
		return fail(stderr, &config.UsageError{Err: errors.New("mrtd pull takes one image reference (see `mrtd pull --help`)")})
	}
	cfg.Image = fs.Arg(0)
	if cfg.CacheDir == "" {
		return fail(stderr, &config.UsageError{Err: errors.New("no cache dir: set HOME or XDG_CACHE_HOME, or pass --cache-dir")})
	}
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	// A line per blob when it is complete: progress a log can hold.
	progress := func(p image.Progress) {
		if p.Done == p.Size {
			log.Info("blob", "image", p.Ref, "digest", p.Digest, "layer", p.Layer, "bytes", p.Size, "cached", p.Cached)
		}
	}
	digest, err := daemon.Pull(ctx, cfg, log, progress)
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, digest)
	return 0
}
