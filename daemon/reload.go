package daemon

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/pool"
)

// reload re-reads the settings (SIGHUP) with load and applies the worker
// count and the workers' containers, their templates rendered anew for
// each worker: workers whose container did not change keep running. It
// returns the settings now running: cur when load is nil or the new ones
// are invalid.
func reload(ctx context.Context, log logr.Logger, cur Settings, load func() (Settings, error), e *env, pl *pool.Pool, scaled func(int)) Settings {
	next := cur
	var err error
	if load != nil {
		next, err = load()
	}
	var tmpl container.Options
	var pw *perWorker
	if err == nil {
		tmpl, err = workerTemplate(next, e, log)
	}
	if err == nil {
		pw, err = newPerWorker(next, e, tmpl)
	}
	// The worker count. A reload keeps the count `mrtd scale` set unless
	// the effective workers setting (flag > MRTD_WORKERS > config file >
	// default) changed since the last load: only the file can change it
	// between loads, so an edited workers is the newest word and wins,
	// while a reload for another edit does not undo a scale. next keeps
	// the configured value, which the next reload compares against.
	n, from := next.Pool.Workers, "config"
	scaledTo := pl.Desired()
	if scaledTo != cur.Pool.Workers && next.Pool.Workers == cur.Pool.Workers {
		n, from = scaledTo, "scale"
	}
	if err == nil {
		// Every worker the reload leaves running, scaled ones too.
		err = pw.check(tmpl, n)
	}
	if err != nil {
		log.Error(err, "reload failed; the running configuration stays")
		return cur
	}
	if scaledTo != cur.Pool.Workers {
		if from == "scale" {
			log.Info("keeping the worker count mrtd scale set: the configured workers did not change", "workers", n, "configured", next.Pool.Workers)
		} else {
			log.Info("the configured workers changed: it replaces the count mrtd scale set", "workers", n, "scaled", scaledTo, "configuredBefore", cur.Pool.Workers)
		}
	}
	if n < pl.Desired() {
		scaled(n)
		if err := pl.Scale(ctx, n); err != nil {
			log.Error(err, "scaling down on reload")
		}
	}
	restarted := pl.Reconfigure(tmpl, workerEnv(next.Workers), pw.hook())
	if n > pl.Desired() {
		scaled(n)
		if err := pl.Scale(ctx, n); err != nil {
			log.Error(err, "scaling up on reload")
		}
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
