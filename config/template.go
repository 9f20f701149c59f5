package config

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// Per-worker values. A value of the workers' containers that holds {{ is a
// Go text/template rendered for each worker: the values of --env,
// --env-file, env = [...] and [worker.N] env (only after KEY=: the key is
// the same in every worker), and the SRC of --mount SRC[:DST[:ro]] (DST
// and the mode are the same in every worker: the command finds its own
// directory at one path, and mount points in the shared rootfs are not
// multiplied). A template sees TemplateData and the functions add and
// printf. A value without {{ is used as it is, never parsed.
//
// LoadSettings parses every template and renders it for each worker of
// the pool, so that a mistake is a usage error before any worker starts;
// the daemon renders them again for each worker it starts.

// TemplateData is what a per-worker template sees.
type TemplateData struct {
	// Worker is the worker's index, from 0.
	Worker int
	// Instance is the pool's --instance.
	Instance string
	// Hostname is the worker's host name (and container id),
	// <instance>-<index>.
	Hostname string
}

// WorkerData is the TemplateData of worker i of instance.
func WorkerData(instance string, i int) TemplateData {
	return TemplateData{Worker: i, Instance: instance, Hostname: instance + "-" + strconv.Itoa(i)}
}

// templateFuncs are the functions a template has besides text/template's
// own (printf among them).
var templateFuncs = template.FuncMap{
	"add": func(a, b int) int { return a + b },
}

// templateHelp ends the errors of templates: what they may use.
const templateHelp = "a template sees .Worker, .Instance and .Hostname, and the functions add and printf, as in {{add 9600 .Worker}}"

// IsTemplate reports whether s is a template: it holds {{.
func IsTemplate(s string) bool { return strings.Contains(s, "{{") }

// Template is a parsed per-worker value.
type Template struct {
	// Key names where the value was set, for errors: --env, MRTD_ENV,
	// config file PATH: env, ...
	Key string
	// Value is the template as given.
	Value string
	t     *template.Template
}

// ParseTemplate parses value, set at key. A template that does not parse
// (an unknown function, an unclosed action) is a *UsageError naming key
// and value.
func ParseTemplate(key, value string) (*Template, error) {
	t, err := template.New("v").Funcs(templateFuncs).Parse(value)
	if err != nil {
		return nil, usagef("%s %q: %s (%s)", key, value, templateError(err), templateHelp)
	}
	return &Template{Key: key, Value: value, t: t}, nil
}

// Render renders t for the worker of d. A template that does not render
// (an unknown field, an argument of the wrong type) is a *UsageError
// naming the key, the value and the worker.
func (t *Template) Render(d TemplateData) (string, error) {
	var b strings.Builder
	if err := t.t.Execute(&b, d); err != nil {
		return "", usagef("%s %q for worker %d: %s (%s)", t.Key, t.Value, d.Worker, templateError(err), templateHelp)
	}
	return b.String(), nil
}

// templateError is err without text/template's prefixes, which name the
// template and the position in it: what is left says what is wrong.
func templateError(err error) string {
	s := strings.TrimPrefix(err.Error(), "template: v:")
	// The position: line, and column for an execution error.
	for range 2 {
		if i := strings.IndexByte(s, ':'); i > 0 && strings.Trim(s[:i], "0123456789") == "" {
			s = s[i+1:]
		}
	}
	s = strings.TrimPrefix(strings.TrimSpace(s), `executing "v" at `)
	return s
}

// ParseEnvTemplate parses the environment entry kv, set at key, whose
// VALUE is a template: KEY=VALUE with a plain KEY.
func ParseEnvTemplate(key, kv string) (*Template, error) {
	if !IsKeyValue(kv) {
		return nil, usagef("%s %q is not KEY=VALUE", key, kv)
	}
	if k, _, _ := strings.Cut(kv, "="); IsTemplate(k) {
		return nil, usagef("%s %q: only the VALUE of KEY=VALUE may be a template: write the KEY itself, the same in every worker", key, kv)
	}
	return ParseTemplate(key, kv)
}

// MountTemplate is a --mount SRC:DST[:ro] whose SRC is a template.
type MountTemplate struct {
	// Value is the mount as given.
	Value string
	// SourceText is SRC as given.
	SourceText string
	// Destination and ReadOnly are the same in every worker.
	Destination string
	ReadOnly    bool

	src  *Template // its Value is the whole mount, for errors
	rest string    // ":DST[:ro]" as given
}

// ParseMountTemplate parses the --mount value s, set at key, whose SRC is
// a template. DST must be given (it would default to SRC), and it and the
// mode may not be templates: they are the same in every worker.
func ParseMountTemplate(key, s string) (*MountTemplate, error) {
	src, rest := cutOutsideActions(s, ':')
	if IsTemplate(rest) {
		return nil, usagef("%s %q: only SRC may be a template: DST is the same path in every worker (give each worker its own SRC, as in /srv/scratch/{{.Worker}}:/scratch)", key, s)
	}
	t, err := ParseTemplate(key, src)
	if err != nil {
		return nil, err
	}
	dst, mode, _ := strings.Cut(strings.TrimPrefix(rest, ":"), ":")
	if dst == "" {
		return nil, usagef("%s %q: a SRC that is a template needs a DST, the same path in every worker, as in /srv/scratch/{{.Worker}}:/scratch", key, s)
	}
	t.Value = s
	m := &MountTemplate{Value: s, SourceText: src, Destination: filepath.Clean(dst), src: t, rest: rest}
	switch mode {
	case "ro":
		m.ReadOnly = true
	case "rw", "":
	default:
		if strings.Contains(mode, ":") {
			return nil, usagef("%s %q: use SRC[:DST[:ro]]", key, s)
		}
		return nil, usagef("%s %q: the third field must be ro or rw", key, s)
	}
	if !filepath.IsAbs(dst) {
		return nil, usagef("%s %q: SRC and DST must be absolute paths", key, s)
	}
	return m, nil
}

// RenderSource renders SRC for the worker of d: an absolute path, cleaned,
// that may not exist.
func (m *MountTemplate) RenderSource(d TemplateData) (string, error) {
	src, err := m.src.Render(d)
	if err != nil {
		return "", err
	}
	switch {
	case strings.Contains(src, ":"):
		return "", usagef("%s %q for worker %d: SRC renders to %s, which holds a colon: mrtd cannot tell it from DST", m.src.Key, m.Value, d.Worker, src)
	case !filepath.IsAbs(src):
		return "", usagef("%s %q for worker %d: SRC renders to %q, which is not an absolute path", m.src.Key, m.Value, d.Worker, src)
	}
	return filepath.Clean(src), nil
}

// Render returns the mount of the worker of d, checked as ParseMount
// checks a plain one; errors name the mount as given and the worker.
func (m *MountTemplate) Render(d TemplateData) (Mount, error) {
	src, err := m.RenderSource(d)
	if err != nil {
		return Mount{}, err
	}
	return parseMount(src+m.rest, fmt.Sprintf("%s %q for worker %d", m.src.Key, m.Value, d.Worker))
}

// cutOutsideActions cuts s around the first sep outside {{ }} actions; it
// returns s and "" when there is none, else what precedes sep and sep with
// what follows.
func cutOutsideActions(s string, sep byte) (before, after string) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			depth++
			i++
		case strings.HasPrefix(s[i:], "}}") && depth > 0:
			depth--
			i++
		case s[i] == sep && depth == 0:
			return s[:i], s[i:]
		}
	}
	return s, ""
}

// checkEnvTemplates checks the templates among env, set at key: each
// parses and renders for the workers from to to-1 of instance.
func checkEnvTemplates(key string, env []string, instance string, from, to int) error {
	for _, kv := range env {
		if !IsTemplate(kv) {
			continue
		}
		t, err := ParseEnvTemplate(key, kv)
		if err != nil {
			return err
		}
		for i := from; i < to; i++ {
			if _, err := t.Render(WorkerData(instance, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkMount checks the --mount value v, set at key: ParseMount's checks,
// made on each worker's mount when its SRC is a template.
func (p *Pool) checkMount(key, v string) error {
	if !IsTemplate(v) {
		_, err := ParseMount(v)
		return err
	}
	m, err := ParseMountTemplate(key, v)
	if err != nil {
		return err
	}
	for i := range p.Workers {
		if _, err := m.Render(WorkerData(p.Instance, i)); err != nil {
			return err
		}
	}
	return nil
}

// keyName names key as the user set it, for errors: --key for a flag (or
// a default), MRTD_KEY, or config file PATH: key.
func (s *Settings) keyName(key string) string {
	src := s.Sources[key]
	if v, ok := strings.CutPrefix(src, "env "); ok {
		return v
	}
	if path, ok := strings.CutPrefix(src, "file "); ok {
		return "config file " + path + ": " + key
	}
	return "--" + key
}

// workerEnvKey names a [worker.N] section's env, for errors.
func (s *Settings) workerEnvKey(i int) string {
	return fmt.Sprintf("config file %s: [worker.%d] env", s.ConfigPath, i)
}

// checkTemplates checks the env templates of the pool (poolEnv as set at
// env, fileEnv read from --env-file) and of the [worker.N] sections: each
// renders for its workers.
func (s *Settings) checkTemplates(poolEnv, fileEnv []string) error {
	pc := &s.Pool
	if err := checkEnvTemplates(s.keyName("env"), poolEnv, pc.Instance, 0, pc.Workers); err != nil {
		return err
	}
	if err := checkEnvTemplates("--env-file "+pc.EnvFile, fileEnv, pc.Instance, 0, pc.Workers); err != nil {
		return err
	}
	for _, i := range sortedWorkerKeys(s.Workers) {
		if err := checkEnvTemplates(s.workerEnvKey(i), s.Workers[i].Env, pc.Instance, i, i+1); err != nil {
			return err
		}
	}
	return nil
}

// RunEnv renders the templates among mrtd run's environment env. mrtd run
// has no worker: a template that uses .Worker, .Instance or .Hostname is a
// usage error, rather than a value made up for a worker that does not
// exist (worker 0's port would clash with the pool's worker 0); the rest of
// the language works as in the pool, so {{"{{"}} still writes {{.
func RunEnv(env []string) ([]string, error) {
	var out []string
	for k, kv := range env {
		if !IsTemplate(kv) {
			continue
		}
		t, err := ParseEnvTemplate("--env", kv)
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		if err := t.t.Execute(&b, struct{}{}); err != nil {
			if strings.Contains(err.Error(), "can't evaluate field") {
				return nil, usagef("--env %q: mrtd run has no worker: .Worker, .Instance and .Hostname are the pool's; give the value itself", kv)
			}
			return nil, usagef("--env %q: %s (%s)", kv, templateError(err), templateHelp)
		}
		if out == nil {
			out = append([]string(nil), env...)
		}
		out[k] = b.String()
	}
	if out == nil {
		return env, nil
	}
	return out, nil
}

// printRendered writes, when the pool's env or mounts hold templates, one
// line per worker with its rendered values: the templated env entries (the
// pool's, then its [worker.N] section's) and mounts. Without templates it
// writes nothing.
func (s *Settings) printRendered(w io.Writer) {
	var env, mounts []string
	for _, kv := range s.Config.Env {
		if IsTemplate(kv) {
			env = append(env, kv)
		}
	}
	for _, m := range s.Pool.Mounts {
		if IsTemplate(m) {
			mounts = append(mounts, m)
		}
	}
	workerTemplates := false
	for _, wf := range s.Workers {
		for _, kv := range wf.Env {
			workerTemplates = workerTemplates || IsTemplate(kv)
		}
	}
	if len(env) == 0 && len(mounts) == 0 && !workerTemplates {
		return
	}
	// LoadSettings rendered all of these: an error here is shown, not
	// expected.
	render := func(key, v string, d TemplateData) string {
		t, err := ParseTemplate(key, v)
		if err == nil {
			v, err = t.Render(d)
		}
		if err != nil {
			return "error: " + err.Error()
		}
		return v
	}
	for i := range s.Pool.Workers {
		d := WorkerData(s.Pool.Instance, i)
		var renderedEnv, renderedMounts []string
		for _, kv := range append(slices.Clone(env), s.Workers[i].Env...) {
			if IsTemplate(kv) {
				renderedEnv = append(renderedEnv, render("env", kv, d))
			}
		}
		for _, v := range mounts {
			m, err := ParseMountTemplate("mount", v)
			var src string
			if err == nil {
				src, err = m.RenderSource(d)
			}
			if err != nil {
				renderedMounts = append(renderedMounts, "error: "+err.Error())
				continue
			}
			renderedMounts = append(renderedMounts, src+m.rest)
		}
		var parts []string
		if len(renderedEnv) > 0 {
			parts = append(parts, fmt.Sprintf("env %q", renderedEnv))
		}
		if len(renderedMounts) > 0 {
			parts = append(parts, fmt.Sprintf("mount %q", renderedMounts))
		}
		if len(parts) == 0 {
			continue
		}
		fmt.Fprintf(w, "worker.%-12d = %s # rendered\n", i, strings.Join(parts, " "))
	}
}
