package daemon

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/control"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/pool"
)

// healthKeys are the settings of the health check, as Settings.HealthSet
// names them.
const (
	keyHealthCmd         = "health-cmd"
	keyHealthInterval    = "health-interval"
	keyHealthTimeout     = "health-timeout"
	keyHealthRetries     = "health-retries"
	keyHealthStartPeriod = "health-start-period"
)

// healthCheck is the workers' health check: each setting from
// --health-* when given (flag, MRTD_* or the config file), else from the
// image's HEALTHCHECK, else the default, field by field as Docker merges
// them. The command is --health-cmd, or the image's when --health-cmd is
// not given; "none" (or the image's ["NONE"]) is no check. nil when there
// is no check. A command that is not in the rootfs is a usage error: every
// worker would turn unhealthy and restart, over and over.
func healthCheck(st Settings, img *image.ImageConfig, tmpl container.Options, log logr.Logger) (*pool.HealthCheck, error) {
	h := st.Pool.Health
	set := func(key string) bool { return st.HealthSet[key] }
	var ih *image.Healthcheck
	if img != nil {
		ih = img.Healthcheck
	}
	what := "--health-cmd " + h.Cmd
	var argv []string
	if h.Cmd != "" {
		var err error
		if argv, err = config.ParseHealthCmd(h.Cmd); err != nil {
			return nil, err
		}
	} else if ih != nil {
		what = fmt.Sprintf("the image's HEALTHCHECK %q", ih.Test)
		var err error
		if argv, err = imageHealthCmd(ih.Test); err != nil {
			warn(log, "the image's HEALTHCHECK is not one mrtd can run; the workers run without a health check", "image", img.Ref, "healthcheck", fmt.Sprint(ih.Test), "reason", err.Error())
			return nil, nil
		}
	}
	if argv == nil {
		return nil, nil
	}
	hc := &pool.HealthCheck{Cmd: argv, Interval: h.Interval, Timeout: h.Timeout, Retries: h.Retries, StartPeriod: h.StartPeriod}
	if ih != nil {
		if !set(keyHealthInterval) && ih.Interval > 0 {
			hc.Interval = ih.Interval
		}
		if !set(keyHealthTimeout) && ih.Timeout > 0 {
			hc.Timeout = ih.Timeout
		}
		if !set(keyHealthStartPeriod) && ih.StartPeriod > 0 {
			hc.StartPeriod = ih.StartPeriod
		}
		if !set(keyHealthRetries) && ih.Retries > 0 {
			hc.Retries = ih.Retries
		}
	}
	if err := checkHealthCmd(tmpl, argv, what); err != nil {
		return nil, err
	}
	from := "flags"
	if h.Cmd == "" {
		from = "image"
	}
	log.Info("checking the workers' health", "command", strings.Join(argv, " "), "commandFrom", from,
		"interval", hc.Interval.String(), "timeout", hc.Timeout.String(), "retries", hc.Retries, "startPeriod", hc.StartPeriod.String())
	return hc, nil
}

// imageHealthCmd is the argv of an image's HEALTHCHECK test: nil for none.
func imageHealthCmd(test []string) ([]string, error) {
	if len(test) == 0 {
		return nil, nil
	}
	switch strings.ToUpper(test[0]) {
	case "NONE":
		return nil, nil
	case "CMD":
		if len(test) < 2 || test[1] == "" {
			return nil, errors.New("CMD without a command")
		}
		return test[1:], nil
	case "CMD-SHELL":
		if len(test) != 2 {
			return nil, errors.New("CMD-SHELL takes one command line")
		}
		return []string{"/bin/sh", "-c", test[1]}, nil
	}
	return nil, fmt.Errorf("unknown test type %q: want CMD, CMD-SHELL or NONE", test[0])
}

// checkHealthCmd checks that the health command can be executed in the
// workers' rootfs, as runc exec will look it up.
func checkHealthCmd(o container.Options, argv []string, what string) error {
	root, err := container.OpenRoot(o.Rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	err = root.LookCommand(argv[0], o.Env, o.Cwd)
	var cmd *container.CommandError
	if errors.As(err, &cmd) {
		fix := "give a command that is in the rootfs"
		if argv[0] == "/bin/sh" {
			fix = `the rootfs has no /bin/sh: give the command as a JSON array, --health-cmd '["/bin/check", "ARG"]'`
		}
		return &config.UsageError{Err: fmt.Errorf("%s: %v: %s (or --health-cmd none)", what, err, fix)}
	}
	return err
}

// healthStatus is a worker's health as the control protocol carries it;
// nil without a health check.
func healthStatus(h pool.HealthStatus) *control.WorkerHealth {
	if h.Health == pool.HealthNone {
		return nil
	}
	return &control.WorkerHealth{Status: string(h.Health), FailingStreak: h.FailingStreak, LastCheck: h.LastCheck,
		LastExitCode: h.LastExitCode, LastOutput: h.LastOutput}
}
