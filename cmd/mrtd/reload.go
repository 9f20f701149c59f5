package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/pool"
)

// liveKeys are the settings a reload applies; the others need a restart.
var liveKeys = map[string]bool{
	"workers": true, "env": true, "env-file": true, "mount": true, "network": true,
	"seccomp": true, "workdir": true, "config": true,
}

// reload re-reads the settings (SIGHUP) and applies the worker count and the
// workers' containers: workers whose container did not change keep running.
// It returns the new settings, or nil when they were invalid and the running
// ones stay.
func reload(ctx context.Context, log logr.Logger, cur *settings, args []string, rootfs string, pl *pool.Pool, scaled func(int)) *settings {
	next, err := loadSettings(args, os.LookupEnv)
	var tmpl container.Options
	if err == nil {
		tmpl, err = workerTemplate(next, rootfs)
	}
	if err != nil {
		log.Error(err, "reload failed; the running configuration stays")
		return nil
	}
	cur.fs.VisitAll(func(f *flag.Flag) {
		if nf := next.fs.Lookup(f.Name); !liveKeys[f.Name] && nf != nil && nf.Value.String() != f.Value.String() {
			log.Info("setting changed; it takes effect when mrtd restarts", "key", f.Name, "running", f.Value.String(), "new", nf.Value.String())
		}
	})
	// The worker count. A reload keeps the count `mrtd scale` set unless
	// the effective workers setting (flag > MRTD_WORKERS > config file >
	// default) changed since the last load: only the file can change it
	// between loads, so an edited workers is the newest word and wins,
	// while a reload for another edit does not undo a scale. next keeps
	// the configured value, which the next reload compares against.
	n, from := next.pool.Workers, "config"
	if scaled := pl.Desired(); scaled != cur.pool.Workers {
		if next.pool.Workers == cur.pool.Workers {
			n, from = scaled, "scale"
			log.Info("keeping the worker count mrtd scale set: the configured workers did not change", "workers", n, "configured", next.pool.Workers)
		} else {
			log.Info("the configured workers changed: it replaces the count mrtd scale set", "workers", n, "scaled", scaled, "configuredBefore", cur.pool.Workers)
		}
	}
	if n < pl.Desired() {
		scaled(n)
		if err := pl.Scale(ctx, n); err != nil {
			log.Error(err, "scaling down on reload")
		}
	}
	restarted := pl.Reconfigure(tmpl, workerEnv(next.workers))
	if n > pl.Desired() {
		scaled(n)
		pl.Scale(ctx, n)
	}
	log.Info("reloaded", "workers", n, "workersFrom", from, "restarted", fmt.Sprint(restarted))
	return next
}

// workerEnv turns [worker.N] sections into per-worker environments.
func workerEnv(ws map[int]config.WorkerFile) map[int][]string {
	out := map[int][]string{}
	for i, w := range ws {
		out[i] = w.Env
	}
	return out
}
