package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/internal/systemd"
	"github.com/mrt-project/mrt/internal/userns"
)

const pullUsage = `Usage: mrtd pull [flags] REF

Fetch the image REF into the cache and print its manifest digest: a
registry's [REGISTRY/]REPOSITORY[:TAG] or @sha256:DIGEST (unqualified names
are docker.io/library/..., as Docker's), oci:PATH[:TAG] or
docker-archive:PATH. A tag is resolved anew; later starts with --pull
missing (the default) use what this pulled, without the network.
Credentials are those mrtd login keeps (see mrtd login --help); --authfile
names the auth file to read first, in place of $REGISTRY_AUTH_FILE.

Flags:
`

// pullCommand runs mrtd pull.
func pullCommand(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Default(userns.EUID(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, "the cache `DIR`; images go to DIR/images")
	fs.StringVar(&cfg.Platform, "platform", cfg.Platform, "the `os/arch[/variant]` to pull from a multi-platform image (default: this host's)")
	fs.BoolVar(&cfg.TLSVerify, "tls-verify", cfg.TLSVerify, "verify the registry's TLS certificate; false also allows plain HTTP")
	fs.StringVar(&cfg.AuthFile, "authfile", cfg.AuthFile, "read registry credentials from the auth `FILE` first, in place of $REGISTRY_AUTH_FILE (mrtd login --authfile writes it)")
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
	disp, log := newPullDisplay(os.Stderr, isTerminal(os.Stderr), systemd.StderrIsJournal(), os.Getenv("TERM"), cfg)
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	// The image options of mrtd run and the pool: what this pulls, their
	// starts find in the cache.
	digest, err := daemon.Pull(ctx, cfg, log, disp.progress)
	disp.finish(err)
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, digest)
	return 0
}

// pullDisplay shows how a pull goes: told of each blob's progress, then
// finished with the pull's outcome.
type pullDisplay interface {
	progress(image.Progress)
	finish(err error)
}

// useBars says whether mrtd pull draws progress bars: only on a terminal
// where logs are console lines; never under systemd, in a pipe or with
// JSON logs, whose readers want a line per layer.
func useBars(tty, journal bool, term, logFormat string) bool {
	if !tty || journal || term == "dumb" {
		return false
	}
	switch logFormat {
	case "", "auto", "console":
		return true
	}
	return false
}

// newPullDisplay returns the display for a pull that logs to stderr, and
// the logger the pull is to use: on a terminal (tty) bars, with log lines
// printed above them and info lines left to the bars; else a line per
// layer and a summary, in the log.
func newPullDisplay(stderr *os.File, tty, journal bool, term string, cfg config.Config) (pullDisplay, logr.Logger) {
	if !useBars(tty, journal, term, cfg.LogFormat) {
		log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
		return &lineDisplay{log: log, stats: newPullStats(time.Now)}, log
	}
	d := newBarDisplay(stderr, time.Now)
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil || lvl == zapcore.InfoLevel {
		lvl = zapcore.WarnLevel
	}
	ec := zap.NewDevelopmentEncoderConfig()
	ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.Lock(zapcore.AddSync(d)), lvl)
	return d, zapr.NewLogger(zap.New(core)).WithName("mrtd")
}

// pullStats counts a pull's layers and bytes, for its summary.
type pullStats struct {
	now     func() time.Time
	start   time.Time
	done    map[string]bool // layers complete, by digest
	fetched int
	cached  int
	bytes   int64 // of the layers fetched
}

func newPullStats(now func() time.Time) *pullStats {
	return &pullStats{now: now, start: now(), done: map[string]bool{}}
}

// add counts p when it completes a layer, and says whether it did.
func (s *pullStats) add(p image.Progress) bool {
	if p.Layer < 0 || p.Done != p.Size || s.done[p.Digest] {
		return false
	}
	s.done[p.Digest] = true
	if p.Cached {
		s.cached++
	} else {
		s.fetched++
		s.bytes += p.Size
	}
	return true
}

// rate is the bytes fetched per second since the start.
func (s *pullStats) rate() (time.Duration, int64) {
	d := s.now().Sub(s.start)
	if d <= 0 {
		return d, 0
	}
	return d, int64(float64(s.bytes) / d.Seconds())
}

// lineDisplay logs a line per blob complete, as a log can hold it, and a
// summary.
type lineDisplay struct {
	log   logr.Logger
	stats *pullStats
}

func (l *lineDisplay) progress(p image.Progress) {
	l.stats.add(p)
	if p.Done == p.Size {
		l.log.Info("blob", "image", p.Ref, "digest", p.Digest, "layer", p.Layer, "bytes", p.Size, "cached", p.Cached)
	}
}

func (l *lineDisplay) finish(err error) {
	if err != nil {
		return // the error is mrtd's last line
	}
	d, rate := l.stats.rate()
	l.log.Info("pull summary", "layers", len(l.stats.done), "fetched", l.stats.fetched, "cached", l.stats.cached,
		"bytes", l.stats.bytes, "duration", d.Round(time.Millisecond).String(), "bytesPerSecond", rate)
}

// barDisplay draws a bar per layer (mpb: several bars at once, as layers
// are fetched in parallel), then a summary line.
type barDisplay struct {
	w     io.Writer
	p     *mpb.Progress
	stats *pullStats
	mu    sync.Mutex // guards bars and done, for Write
	bars  map[string]*mpb.Bar
	done  bool
}

func newBarDisplay(w io.Writer, now func() time.Time) *barDisplay {
	return &barDisplay{
		w: w,
		p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond),
			// Bars are drawn on terminals only; refreshing always lets the
			// tests see what a terminal would.
			mpb.WithAutoRefresh()),
		bars:  map[string]*mpb.Bar{},
		stats: newPullStats(now),
	}
}

func (b *barDisplay) progress(p image.Progress) {
	if p.Layer < 0 || p.Size <= 0 {
		return // a config or a manifest: small, and not a layer
	}
	b.stats.add(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	bar := b.bars[p.Digest]
	if bar == nil {
		name := fmt.Sprintf("layer %d %s", p.Layer+1, shortDigest(p.Digest))
		done := "done"
		if p.Cached {
			done = "cached"
		}
		bar = b.p.AddBar(p.Size,
			mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(
				decor.OnComplete(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace), done),
				decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), ""),
			),
		)
		b.bars[p.Digest] = bar
	}
	bar.SetCurrent(p.Done)
}

func (b *barDisplay) finish(err error) {
	b.mu.Lock()
	for _, bar := range b.bars {
		if !bar.Completed() {
			bar.Abort(false)
		}
	}
	b.mu.Unlock()
	// Waiting renders the bars a last time, and the lines written above
	// them since the last time.
	b.p.Wait()
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	if err != nil {
		return
	}
	d, rate := b.stats.rate()
	fmt.Fprintf(b.w, "%d layers (%d fetched, %d cached), %s fetched in %s, %s/s\n", len(b.stats.done), b.stats.fetched,
		b.stats.cached, formatSize(b.stats.bytes), d.Round(100*time.Millisecond), formatSize(rate))
}

// Write prints log lines above the bars while they are drawn, and
// directly before the first and after the last: mpb prints what it is
// given only when it draws bars.
func (b *barDisplay) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done || len(b.bars) == 0 {
		return b.w.Write(p)
	}
	return b.p.Write(p)
}
