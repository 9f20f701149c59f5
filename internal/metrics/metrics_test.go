package metrics

import (
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func text(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestText checks a registry of every kind against testdata/text.txt:
// families sorted by name, samples by label values in the order of the
// label names, escaping, the histogram's cumulative buckets, values.
func TestText(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	c := r.NewCounter("b_total", "A counter.")
	c.Inc()
	c.Add(1.5)
	g := r.NewGauge("a_gauge", "Help with a \\ backslash\nand a line feed.")
	g.Set(-3)
	g.Add(1)
	cv := r.NewCounterVec("c_total", "A vector, labels given z first.", "z", "a")
	cv.WithLabelValues("1", "y").Inc()
	cv.WithLabelValues("2", "x").Add(2)
	cv.WithLabelValues("0", "x").Add(1e6)
	cv.WithLabelValues("gone", "x").Inc()
	if !cv.DeleteLabelValues("gone", "x") || cv.DeleteLabelValues("gone", "x") {
		t.Error("DeleteLabelValues: want true once, then false")
	}
	gv := r.NewGaugeVec("d", "Escaped label values.", "v")
	gv.WithLabelValues("quote \" backslash \\ newline \n end").Set(1)
	gv.WithLabelValues("").Set(math.Inf(+1))
	gv.WithLabelValues("nan").Set(math.NaN())
	gv.WithLabelValues("neg").Set(math.Inf(-1))
	gv.WithLabelValues("small").Set(0.000125)
	r.NewGaugeVec("e_empty", "A vector without children is not written.", "x")
	h := r.NewHistogram("f_seconds", "A histogram.", ExponentialBuckets(0.01, 2, 4))
	for _, v := range []float64{0.005, 0.01, 0.011, 0.05, 0.07, 100} {
		h.Observe(v)
	}
	r.NewHistogram("g_empty_seconds", "An empty histogram.", []float64{1, math.Inf(+1)})

	want, err := os.ReadFile(filepath.Join("testdata", "text.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := text(t, r); got != string(want) {
		t.Errorf("text:\n%s\nwant (testdata/text.txt):\n%s", got, want)
	}
}

func TestExponentialBuckets(t *testing.T) {
	t.Parallel()
	got := ExponentialBuckets(0.01, 2, 10)
	var s []string
	for _, b := range got {
		s = append(s, string(appendFloat(nil, b)))
	}
	if j := strings.Join(s, " "); j != "0.01 0.02 0.04 0.08 0.16 0.32 0.64 1.28 2.56 5.12" {
		t.Errorf("ExponentialBuckets(0.01, 2, 10) = %s", j)
	}
}

func TestMisuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		f    func(r *Registry)
	}{
		{"twice", func(r *Registry) { r.NewGauge("x", ""); r.NewCounter("x", "") }},
		{"bad name", func(r *Registry) { r.NewGauge("1x", "") }},
		{"bad name char", func(r *Registry) { r.NewGauge("x-y", "") }},
		{"bad label", func(r *Registry) { r.NewGaugeVec("x", "", "a:b") }},
		{"reserved label", func(r *Registry) { r.NewGaugeVec("x", "", "__name") }},
		{"repeated label", func(r *Registry) { r.NewGaugeVec("x", "", "a", "a") }},
		{"label count", func(r *Registry) { r.NewGaugeVec("x", "", "a", "b").WithLabelValues("1") }},
		{"counter down", func(r *Registry) { r.NewCounter("x", "").Add(-1) }},
		{"buckets", func(r *Registry) { r.NewHistogram("x", "", []float64{1, 1}) }},
		{"runtime twice", func(r *Registry) { r.RegisterRuntime(); r.RegisterRuntime() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.f(NewRegistry())
		})
	}
}

func TestServeHTTP(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	r.NewGauge("up", "Up.").Set(1)
	for _, tc := range []struct {
		method string
		status int
		body   string
	}{
		{"GET", 200, "# HELP up Up.\n# TYPE up gauge\nup 1\n"},
		{"HEAD", 200, ""},
		{"POST", 405, "method not allowed\n"},
	} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(tc.method, "/metrics", nil))
		if rec.Code != tc.status || rec.Body.String() != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.method, rec.Code, rec.Body.String(), tc.status, tc.body)
		}
		if tc.status == http.StatusOK && rec.Header().Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", tc.method, rec.Header().Get("Content-Type"))
		}
	}
}

// TestRuntime checks that every runtime figure is written once, with its
// documented name and type, and that the values are plausible.
func TestRuntime(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	r.RegisterRuntime()
	got := map[string]float64{}
	types := map[string]string{}
	for line := range strings.Lines(text(t, r)) {
		line = strings.TrimSuffix(line, "\n")
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			types[name] = typ
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name, _, _ := strings.Cut(line[:i], "{")
		if _, dup := got[name]; dup {
			t.Errorf("%s written twice", name)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Errorf("%q: %v", line, err)
		}
		got[name] = v
	}
	for _, name := range runtimeNames {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing", name)
		}
		want := "gauge"
		if strings.HasSuffix(name, "_total") {
			want = "counter"
		}
		if types[name] != want {
			t.Errorf("%s has type %q, want %q", name, types[name], want)
		}
	}
	if len(got) != len(runtimeNames) {
		t.Errorf("%d figures written, want the %d of runtimeNames: %v", len(got), len(runtimeNames), got)
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
		"process_max_fds", "go_goroutines", "go_threads", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes", "process_start_time_seconds"} {
		if !(got[name] > 0) {
			t.Errorf("%s = %v, want > 0", name, got[name])
		}
	}
	if start := got["process_start_time_seconds"]; start > float64(time.Now().Unix()+1) {
		t.Errorf("process_start_time_seconds %v is after now", start)
	}
	if got["process_virtual_memory_bytes"] < got["process_resident_memory_bytes"] {
		t.Errorf("vsize %v < rss %v", got["process_virtual_memory_bytes"], got["process_resident_memory_bytes"])
	}
}

func TestReadStat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A command with a space and a parenthesis, as proc(5) allows.
	const line = "4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	p := filepath.Join(dir, "stat")
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := readStat(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := (stat{utime: 250, stime: 50, starttime: 12345, vsize: 1000000, rss: 200}); st != want {
		t.Errorf("readStat = %+v, want %+v", st, want)
	}
	os.WriteFile(p, []byte("4242 (x) S 1 2\n"), 0o600)
	if _, err := readStat(p); err == nil {
		t.Error("a short stat parsed")
	}
	bt := filepath.Join(dir, "procstat")
	os.WriteFile(bt, []byte("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"), 0o600)
	if b, err := bootTime(bt); err != nil || b != 1700000000 {
		t.Errorf("bootTime = %d, %v", b, err)
	}
}
