package daemon

import (
	"fmt"
	"slices"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/pool"
)

// perWorker makes the workers' containers differ beyond their id and
// [worker.N] env: it is the pool's PerWorker hook (apply), the one place
// where per-worker options are made. Today that is the settings' templated
// values (config.IsTemplate): environment entries (--env, --env-file, env
// and [worker.N] env) and --mount sources, rendered for each worker. The
// template container holds them as given; apply replaces them with the
// worker's rendering. Whatever else is set per worker belongs here too.
type perWorker struct {
	instance string
	// env holds the templated environment entries, by the entry as
	// given: apply renders each entry of a worker's environment found
	// here (an image's entries are never templates).
	env map[string]*config.Template
	// mounts holds the templated --mount values by their SRC as given,
	// which the template's bind holds until apply renders it.
	mounts map[string]*config.MountTemplate
	// What a rendered mount is checked against, as the plain ones are
	// (checkMount).
	tree     tree
	prot     protected
	uid, gid uint32
	// workerEnv are the [worker.N] sections' environments, which check
	// renders with their worker's.
	workerEnv map[int][]string
	// limits are the process limits of the workers whose [worker.N]
	// section sets ulimit, nice or oom-score-adj (workersLimits).
	limits map[int]container.Limits
}

// newPerWorker parses the templates of st, whose workers' container
// (workerTemplate, with e's rootfs) is tmpl.
func newPerWorker(st Settings, e *env, tmpl container.Options) (*perWorker, error) {
	pw := &perWorker{
		instance:  st.Pool.Instance,
		env:       map[string]*config.Template{},
		mounts:    map[string]*config.MountTemplate{},
		tree:      e.tree(),
		prot:      protectedPaths(st, e),
		uid:       tmpl.UID,
		gid:       tmpl.GID,
		workerEnv: workerEnv(st.Workers),
	}
	var err error
	if pw.limits, err = workersLimits(st, thisLimitHost()); err != nil {
		return nil, err
	}
	addEnv := func(key string, env []string) error {
		for _, kv := range env {
			if !config.IsTemplate(kv) || pw.env[kv] != nil {
				continue
			}
			t, err := config.ParseEnvTemplate(key, kv)
			if err != nil {
				return err
			}
			pw.env[kv] = t
		}
		return nil
	}
	if err := addEnv("--env", st.Container.Env); err != nil {
		return nil, err
	}
	for i, w := range st.Workers {
		if err := addEnv(fmt.Sprintf("[worker.%d] env", i), w.Env); err != nil {
			return nil, err
		}
	}
	for _, v := range st.Pool.Mounts {
		if !config.IsTemplate(v) {
			continue
		}
		m, err := config.ParseMountTemplate("--mount", v)
		if err != nil {
			return nil, err
		}
		pw.mounts[m.SourceText] = m
	}
	return pw, nil
}

// protectedPaths are the paths the workers' mounts must not expose.
func protectedPaths(st Settings, e *env) protected {
	prot := protected{exec: []string{st.Container.CacheDir, e.Rootfs}, runtimeDir: st.Container.RuntimeDir}
	if st.Container.Runc != "" {
		prot.exec = append(prot.exec, st.Container.Runc)
	}
	return prot
}

// hook is pw as the pool's PerWorker: nil when it changes nothing, so
// that plain settings cost nothing per worker.
func (pw *perWorker) hook() pool.PerWorker {
	if len(pw.env) == 0 && len(pw.mounts) == 0 && len(pw.limits) == 0 {
		return nil
	}
	return pw.apply
}

// apply makes worker i's container from o: its templated environment
// entries and mount sources rendered, each rendered mount checked as a
// plain one is at start. A template that does not render, or a mount that
// cannot work, is a *config.UsageError naming the worker.
func (pw *perWorker) apply(i int, o *container.Options) error {
	applyWorkerLimits(o, pw.limits, i)
	d := config.TemplateData{Worker: i, Instance: pw.instance, Hostname: o.Hostname}
	for k, kv := range o.Env {
		t := pw.env[kv]
		if t == nil {
			continue
		}
		v, err := t.Render(d)
		if err != nil {
			return err
		}
		o.Env[k] = v // o.Env is the worker's own
	}
	cloned := false
	for k, b := range o.Binds {
		m := pw.mounts[b.Source]
		if m == nil {
			continue
		}
		src, err := m.RenderSource(d)
		if err != nil {
			return err
		}
		mount := config.Mount{Source: src, Destination: b.Destination, ReadOnly: b.ReadOnly}
		if err := checkMount(pw.tree, fmt.Sprintf("%s for worker %d", m.Value, i), mount, pw.uid, pw.gid, pw.prot); err != nil {
			return err
		}
		if !cloned {
			o.Binds, cloned = slices.Clone(o.Binds), true // shared with the template
		}
		o.Binds[k].Source = src
	}
	return nil
}

// check makes the containers of workers 0 to n-1 from tmpl as the pool
// will, so that a template that does not render for one of them, or a
// mount source that cannot work for one, is a usage error before the
// workers start or a reload applies.
func (pw *perWorker) check(tmpl container.Options, n int) error {
	if pw.hook() == nil {
		return nil
	}
	for i := range n {
		o := tmpl
		o.Hostname = pool.ContainerID(pw.instance, i)
		o.Env = append(slices.Clone(tmpl.Env), pw.workerEnv[i]...)
		if err := pw.apply(i, &o); err != nil {
			return err
		}
	}
	return nil
}
